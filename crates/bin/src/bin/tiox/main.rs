//! `tiox`: the umbrella tool. Today: `tiox cert` (make and inspect
//! certificates). The playground and `tiox check` join it later.

mod cert;

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
}

fn main() {
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
    };
    std::process::exit(code);
}
