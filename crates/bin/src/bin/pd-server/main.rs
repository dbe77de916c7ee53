//! `pd-server`: the placement driver. A thin shell: reads flags and the TOML
//! file into `tiox_pd::config::PdConfig`, validates it (TLS files, URL
//! schemes) and runs `tiox_pd::server::Server`. All logic lives in
//! `crates/pd`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tiox_pd::config::PdConfig;
use tiox_pd::server::Server;

/// The tiox placement driver (TiDB-compatible PD).
#[derive(Parser, Debug)]
#[command(name = "pd-server", version)]
struct Args {
    /// This member's name, unique in the PD cluster.
    #[arg(long)]
    name: Option<String>,
    /// Where PD keeps its state.
    #[arg(long)]
    data_dir: Option<String>,
    /// URLs to serve clients on (gRPC and HTTP on one port), comma separated.
    #[arg(long)]
    client_urls: Option<String>,
    /// URLs to serve PD peers on.
    #[arg(long)]
    peer_urls: Option<String>,
    /// Client URLs told to clients and peers.
    #[arg(long)]
    advertise_client_urls: Option<String>,
    /// Peer URLs told to peers.
    #[arg(long)]
    advertise_peer_urls: Option<String>,
    /// Initial members, name=peer-url,...
    #[arg(long)]
    initial_cluster: Option<String>,
    /// Client URLs of an existing PD cluster to join.
    #[arg(long)]
    join: Option<String>,
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// CA certificate (PEM): [security] cacert-path.
    #[arg(long)]
    cacert: Option<String>,
    /// This server's certificate (PEM): [security] cert-path.
    #[arg(long)]
    cert: Option<String>,
    /// This server's private key (PEM): [security] key-path.
    #[arg(long)]
    key: Option<String>,
    /// Serve without TLS, on purpose ([security] insecure = true). Without
    /// TLS files and without this flag the server refuses to start.
    #[arg(long)]
    insecure: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => match PdConfig::from_file(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
        None => PdConfig::default(),
    };
    let set = |field: &mut String, flag: &Option<String>| {
        if let Some(v) = flag {
            *field = v.clone();
        }
    };
    set(&mut config.name, &args.name);
    set(&mut config.data_dir, &args.data_dir);
    set(&mut config.client_urls, &args.client_urls);
    set(&mut config.peer_urls, &args.peer_urls);
    set(
        &mut config.advertise_client_urls,
        &args.advertise_client_urls,
    );
    set(&mut config.advertise_peer_urls, &args.advertise_peer_urls);
    set(&mut config.initial_cluster, &args.initial_cluster);
    set(&mut config.join, &args.join);
    set(&mut config.security.ca_path, &args.cacert);
    set(&mut config.security.cert_path, &args.cert);
    config.security.insecure |= args.insecure;
    set(&mut config.security.key_path, &args.key);
    let validated = match config.validate() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pd-server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let tls = validated.tls.is_some();
        let server = match Server::bind(validated).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("pd-server: {e}");
                return ExitCode::FAILURE;
            }
        };
        let state = server.state();
        for addr in server.local_addrs() {
            tracing::info!(
                cluster_id = state.cluster_id,
                name = %state.member.name,
                "serving gRPC and HTTP on {addr} ({})",
                if tls { "mutual TLS" } else { "PLAINTEXT" }
            );
        }
        server.run().await;
        ExitCode::SUCCESS
    })
}
