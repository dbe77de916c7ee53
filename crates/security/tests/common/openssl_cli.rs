//! The `openssl` command line, for tests that make certificates the way
//! operators do. Shared by `crates/security/tests/openssl.rs` and
//! `crates/bin/tests/howto_walkthrough.rs` (included with `#[path]`).

use std::path::Path;
use std::process::Command;

/// Whether `openssl` runs. A missing one skips the test LOUDLY; under CI
/// (`CI` set) it fails it, since `.ci/run` installs openssl.
pub fn have_openssl(test: &str) -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("CI").is_ok() {
            panic!("{test}: openssl is not installed but CI is set; .ci/run must install it");
        }
        eprintln!("\n*** SKIPPED {test}: the openssl command line is not installed (apt-get install openssl) ***\n");
    }
    ok
}

/// Runs `openssl ARGS` in `dir`; panics with its stderr if it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
