//! `tikv-server`: the transactional key-value store. A thin shell: reads
//! flags and the TOML file into `tiox_kv::config::TikvConfig`, validates it
//! (TLS files, addresses, PD URLs) and runs `tiox_kv::server`. All logic
//! lives in `crates/kv`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tiox_kv::config::TikvConfig;

/// The tiox storage node (TiKV-compatible).
#[derive(Parser, Debug)]
#[command(name = "tikv-server", version)]
struct Args {
    /// gRPC listen address ([server] addr).
    #[arg(long, short = 'A')]
    addr: Option<String>,
    /// Address advertised to PD and clients ([server] advertise-addr).
    #[arg(long)]
    advertise_addr: Option<String>,
    /// Status (HTTP) listen address ([server] status-addr).
    #[arg(long)]
    status_addr: Option<String>,
    /// Status address advertised to PD ([server] advertise-status-addr).
    #[arg(long)]
    advertise_status_addr: Option<String>,
    /// PD endpoints, comma separated ([pd] endpoints).
    #[arg(long)]
    pd: Option<String>,
    /// Data directory ([storage] data-dir).
    #[arg(long, short = 's')]
    data_dir: Option<String>,
    /// TOML configuration file.
    #[arg(long, short = 'C')]
    config: Option<PathBuf>,
    /// CA certificate (PEM): [security] ca-path.
    #[arg(long)]
    ca_path: Option<String>,
    /// This store's certificate (PEM): [security] cert-path.
    #[arg(long)]
    cert_path: Option<String>,
    /// This store's private key (PEM): [security] key-path.
    #[arg(long)]
    key_path: Option<String>,
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
        Some(path) => match TikvConfig::from_file(path) {
            Ok((c, unknown)) => {
                if !unknown.is_empty() {
                    tracing::warn!(
                        "ignoring configuration keys tiox does not use: {}",
                        unknown.join(", ")
                    );
                }
                c
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
        None => TikvConfig::default(),
    };
    let set = |field: &mut String, flag: &Option<String>| {
        if let Some(v) = flag {
            *field = v.clone();
        }
    };
    set(&mut config.server.addr, &args.addr);
    set(&mut config.server.advertise_addr, &args.advertise_addr);
    set(&mut config.server.status_addr, &args.status_addr);
    set(
        &mut config.server.advertise_status_addr,
        &args.advertise_status_addr,
    );
    set(&mut config.storage.data_dir, &args.data_dir);
    set(&mut config.security.ca_path, &args.ca_path);
    set(&mut config.security.cert_path, &args.cert_path);
    config.security.insecure |= args.insecure;
    set(&mut config.security.key_path, &args.key_path);
    if let Some(pd) = &args.pd {
        config.pd.endpoints = pd
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
    }
    let validated = match config.validate() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tikv-server: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        match tiox_kv::server::start(validated).await {
            Ok(server) => {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(s) => s,
                        Err(e) => {
                            eprintln!("tikv-server: cannot watch SIGTERM: {e}");
                            return ExitCode::from(1);
                        }
                    };
                tokio::select! {
                    _ = server_wait(server) => ExitCode::from(1),
                    _ = tokio::signal::ctrl_c() => {
                        tracing::info!("tikv-server: shutting down (SIGINT)");
                        ExitCode::SUCCESS
                    }
                    _ = term.recv() => {
                        tracing::info!("tikv-server: shutting down (SIGTERM)");
                        ExitCode::SUCCESS
                    }
                }
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        }
    })
}

async fn server_wait(server: tiox_kv::server::RunningServer) {
    server.wait().await;
}
