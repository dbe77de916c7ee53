//! `tiox`: the umbrella tool: `tiox cert` (make and inspect certificates)
//! and `tiox playground` (a local cluster with mutual TLS everywhere).

mod cert;
mod check;
mod playground;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tiox",
    version,
    about = "tiox: a TiDB-compatible database, secure by default"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create and inspect TLS certificates for a cluster.
    #[command(subcommand)]
    Cert(cert::CertCommand),
    /// Start a local cluster (3 PD, 3 TiKV, 1 TiDB) with mutual TLS on
    /// every link; Ctrl-C stops it.
    Playground(playground::PlaygroundArgs),
    /// Audit a running cluster's TLS from the outside (every PD member and
    /// store: mutual TLS, certificates, refusal of plaintext and of clients
    /// without certificates). Exits non-zero on any failure.
    Check(check::CheckArgs),
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Cert(c) => cert::run(c),
        Command::Playground(a) => playground::run(a).await,
        Command::Check(a) => check::run(a).await,
    };
    std::process::exit(code);
}
