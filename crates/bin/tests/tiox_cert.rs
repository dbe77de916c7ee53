//! `tiox cert` as an operator runs it: the real binary, files on disk.

use std::path::Path;
use std::process::{Command, Output};

use tiox_security::certgen::{CertAuthority, Profile, Spec, Validity};
use tiox_security::{Component, SecurityConfig};

fn tiox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tiox"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn validate(dir: &Path, ca: &str, cert: &str, component: Component) {
    let p = |f: &str| dir.join(f).display().to_string();
    SecurityConfig::from_paths(
        &p(ca),
        &p(&format!("{cert}.pem")),
        &p(&format!("{cert}-key.pem")),
    )
    .validate(component)
    .unwrap_or_else(|e| panic!("{cert}: {e}"))
    .expect("TLS settings");
}

#[test]
fn cert_init_writes_cluster_and_mysql_sets_that_validate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("certs");
    let out = tiox(&[
        "cert",
        "init",
        "--dir",
        d.to_str().unwrap(),
        "--hosts",
        "127.0.0.1,localhost,tikv-1",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    validate(&d, "ca.pem", "pd-server", Component::PdServer);
    validate(&d, "ca.pem", "tikv-server", Component::TikvServer);
    validate(&d, "ca.pem", "tidb-server", Component::TidbServer);
    validate(&d, "ca.pem", "client", Component::PdCtl);
    validate(&d, "mysql/ca.pem", "mysql/client", Component::TikvCtl);
    // The MySQL-facing set is separate: its CA did not sign the cluster's.
    let err = SecurityConfig::from_paths(
        d.join("mysql/ca.pem").to_str().unwrap(),
        d.join("tikv-server.pem").to_str().unwrap(),
        d.join("tikv-server-key.pem").to_str().unwrap(),
    )
    .validate(Component::TikvServer)
    .unwrap_err();
    assert!(
        err.to_string().contains("was not issued by the CA"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn cert_init_writes_private_keys_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = tiox(&["cert", "init", "--dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    for key in [
        "ca-key.pem",
        "pd-server-key.pem",
        "client-key.pem",
        "mysql/server-key.pem",
        "mysql/ca-key.pem",
    ] {
        let mode = std::fs::metadata(dir.path().join(key))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    let mode = std::fs::metadata(dir.path().join("ca.pem"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o644);
}

#[test]
fn cert_init_never_overwrites_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(tiox(&["cert", "init", "--dir", d]).status.success());
    let before = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let out = tiox(&["cert", "init", "--dir", d]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("refusing to overwrite"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("--force"), "{}", text(&out));
    assert_eq!(before, std::fs::read(dir.path().join("ca.pem")).unwrap());
    let out = tiox(&["cert", "init", "--dir", d, "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_ne!(before, std::fs::read(dir.path().join("ca.pem")).unwrap());
}

#[test]
fn cert_issue_signs_with_an_existing_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(tiox(&["cert", "init", "--dir", d.to_str().unwrap()])
        .status
        .success());
    let out = tiox(&[
        "cert",
        "issue",
        "--ca",
        d.join("ca.pem").to_str().unwrap(),
        "--ca-key",
        d.join("ca-key.pem").to_str().unwrap(),
        "--cn",
        "tikv-4",
        "--hosts",
        "10.0.0.4,tikv-4",
        "--profile",
        "server",
        "--days",
        "90",
        "--out",
        d.join("tikv-4").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    validate(d, "ca.pem", "tikv-4", Component::TikvServer);
    let out = tiox(&["cert", "inspect", d.join("tikv-4.pem").to_str().unwrap()]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("CN=tikv-4") && t.contains("IP:10.0.0.4") && t.contains("DNS:tikv-4"),
        "{t}"
    );
    assert!(t.contains("serverAuth, clientAuth"), "{t}");
    assert!(t.contains("private key matches"), "{t}");
    assert!(
        t.contains("valid for 89 more days") || t.contains("valid for 90 more days"),
        "{t}"
    );
}

#[test]
fn cert_issue_server_profile_without_hosts_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(tiox(&["cert", "init", "--dir", d.to_str().unwrap()])
        .status
        .success());
    let out = tiox(&[
        "cert",
        "issue",
        "--ca",
        d.join("ca.pem").to_str().unwrap(),
        "--ca-key",
        d.join("ca-key.pem").to_str().unwrap(),
        "--cn",
        "tikv-4",
        "--out",
        d.join("x").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("needs at least one host"),
        "{}",
        text(&out)
    );
}

#[test]
fn cert_inspect_exits_nonzero_for_expired_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertAuthority::generate("ca", Validity::Days(10), Default::default()).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let mut spec = Spec::new("old", &["127.0.0.1"], Profile::Server);
    spec.validity = Validity::Window {
        not_before: now - time::Duration::days(9),
        not_after: now - time::Duration::days(1),
    };
    let issued = ca.issue(&spec).unwrap();
    let path = dir.path().join("old.pem");
    std::fs::write(&path, &issued.cert_pem).unwrap();
    let out = tiox(&["cert", "inspect", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("EXPIRED on"), "{}", text(&out));
}

#[test]
fn cert_inspect_warns_when_expiry_is_within_30_days() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertAuthority::generate("ca", Validity::Days(100), Default::default()).unwrap();
    let mut spec = Spec::new("soon", &["127.0.0.1"], Profile::Server);
    spec.validity = Validity::Days(10);
    let path = dir.path().join("soon.pem");
    std::fs::write(&path, ca.issue(&spec).unwrap().cert_pem).unwrap();
    let out = tiox(&["cert", "inspect", path.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(text(&out).contains("WARNING: expires in"), "{}", text(&out));
}

#[test]
fn cert_inspect_exits_nonzero_for_mismatched_pair() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(tiox(&["cert", "init", "--dir", d.to_str().unwrap()])
        .status
        .success());
    let out = tiox(&[
        "cert",
        "inspect",
        d.join("pd-server.pem").to_str().unwrap(),
        d.join("tikv-server-key.pem").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("MISMATCH"), "{}", text(&out));
    // The twin beside the certificate is found and matches.
    assert!(
        text(&out).contains("pd-server-key.pem: private key matches"),
        "{}",
        text(&out)
    );
}
