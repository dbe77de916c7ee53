//! `pd-ctl`: PD's admin CLI, an HTTP client of PD's API. A thin shell over
//! `tiox_ctl::pd`: parses flags, then runs one command (`-d`, or a command
//! given on the command line) or reads commands from stdin, one per line.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use tiox_ctl::pd::{Command, PdCtl};

/// PD control (tiox).
#[derive(Parser, Debug)]
#[command(name = "pd-ctl", version)]
struct Args {
    /// PD endpoints, comma separated; no scheme means http://.
    #[arg(short = 'u', long = "pd", default_value = "http://127.0.0.1:2379")]
    pd: String,
    /// CA certificate (PEM) to verify PD with.
    #[arg(long)]
    cacert: Option<String>,
    /// Client certificate (PEM) presented to PD.
    #[arg(long)]
    cert: Option<String>,
    /// Client private key (PEM).
    #[arg(long)]
    key: Option<String>,
    /// Run the given command once and exit.
    #[arg(short = 'd', long)]
    detach: bool,
    /// The command (e.g. `store 1`); none starts the interactive mode.
    command: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let ctl = match PdCtl::new(
        &args.pd,
        args.cacert.as_deref(),
        args.cert.as_deref(),
        args.key.as_deref(),
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pd-ctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let run = |words: &[&str]| -> bool {
        let result = Command::parse(words)
            .map_err(|e| e.to_string())
            .and_then(|cmd| runtime.block_on(ctl.run(&cmd)).map_err(|e| e.to_string()));
        match result {
            Ok(out) => {
                println!("{out}");
                true
            }
            Err(e) => {
                eprintln!("{e}");
                false
            }
        }
    };
    if args.detach || !args.command.is_empty() {
        let words: Vec<&str> = args.command.iter().map(String::as_str).collect();
        return if run(&words) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    // Interactive: one command per line; `exit`/`quit` or EOF ends.
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let mut ok = true;
    loop {
        if tty {
            print!("» ");
            let _ = std::io::stdout().flush();
        }
        let mut line = String::new();
        match stdin.lock().read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("pd-ctl: reading stdin: {e}");
                return ExitCode::FAILURE;
            }
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => continue,
            ["exit"] | ["quit"] => break,
            _ => ok &= run(&words),
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
