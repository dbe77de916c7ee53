//! `tikv-ctl`: admin client of one TiKV over mutual TLS. A thin shell over
//! `tiox_ctl::tikv`.

use std::process::ExitCode;

use tiox_ctl::tikv::{parse, TikvCtl};
use tiox_ctl::CtlError;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tikv-ctl: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        let ctl = TikvCtl::new(&args)?;
        ctl.run(&args.rest).await
    });
    match result {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e @ CtlError::Usage(_)) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("tikv-ctl: {e}");
            ExitCode::from(1)
        }
    }
}
