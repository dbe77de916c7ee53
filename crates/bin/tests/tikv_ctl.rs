//! `tikv-ctl` as the TLS how-to runs it, against a real store over mutual
//! TLS; and the refusals an operator sees without the certificates.

#[path = "support/cluster.rs"]
mod cluster;

use std::process::Command;

use cluster::Cluster;

fn tikv_ctl(args: &[String]) -> (bool, String) {
    let mut p = std::env::current_exe().unwrap();
    p.pop();
    if p.ends_with("deps") {
        p.pop();
    }
    let out = Command::new(p.join("tikv-ctl"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn howto_flags(c: &Cluster) -> Vec<String> {
    let certs = c.certs.as_ref().unwrap();
    // Exactly the how-to's spelling: --flag="value".
    vec![
        format!("--host={}", c.kv_addrs[0]),
        format!("--ca-path={}", certs.path("ca.pem")),
        format!("--cert-path={}", certs.path("client.pem")),
        format!("--key-path={}", certs.path("client-key.pem")),
    ]
}

fn with(mut base: Vec<String>, rest: &[&str]) -> Vec<String> {
    base.extend(rest.iter().map(|s| s.to_string()));
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn howto_tikv_ctl_command_works_verbatim_over_mutual_tls() {
    let c = Cluster::start(true, 1).await;
    let (ok, out) = tikv_ctl(&howto_flags(&c));
    assert!(ok, "{out}\n{}", c.logs());
    assert!(
        out.contains("\"store_id\"") && out.contains("\"tls\": true"),
        "{out}"
    );

    let (ok, out) = tikv_ctl(&with(
        howto_flags(&c),
        &["raw-put", "-k", "greeting", "-v", "hello"],
    ));
    assert!(ok && out.contains("\"ok\": true"), "{out}");
    let (ok, out) = tikv_ctl(&with(howto_flags(&c), &["raw-get", "-k", "greeting"]));
    assert!(ok && out.contains("\"value\": \"hello\""), "{out}");
    let (ok, out) = tikv_ctl(&with(
        howto_flags(&c),
        &["raw-scan", "--from", "g", "--to", "h"],
    ));
    assert!(ok && out.contains("\"count\": 1"), "{out}");

    let (ok, out) = tikv_ctl(&with(howto_flags(&c), &["region", "--all"]));
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = v["regions"][0]["id"].as_u64().unwrap();
    let (ok, out) = tikv_ctl(&with(howto_flags(&c), &["region", "-r", &id.to_string()]));
    assert!(
        ok && out.contains("\"peers\"") && out.contains("\"leader\"") && out.contains("\"epoch\""),
        "{out}"
    );
    let (ok, out) = tikv_ctl(&with(
        howto_flags(&c),
        &["region-properties", "-r", &id.to_string()],
    ));
    assert!(
        ok && out.contains("\"column_families\"") && out.contains("\"raw\""),
        "{out}"
    );
    let (ok, out) = tikv_ctl(&with(howto_flags(&c), &["mvcc", "-k", "greeting"]));
    assert!(ok && out.contains("\"raw_value\""), "{out}");
    let (ok, out) = tikv_ctl(&with(howto_flags(&c), &["metrics"]));
    assert!(
        ok && out.contains("tikv_grpc_requests_total")
            && out.contains("tiox_tls_certificate_not_after_seconds"),
        "{out}"
    );
    let (ok, out) = tikv_ctl(&with(howto_flags(&c), &["region", "-r", "999999"]));
    assert!(
        !ok && out.contains("404") && out.contains("not on this store"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tikv_ctl_without_certificates_is_refused_and_the_store_logs_it() {
    let c = Cluster::start(true, 1).await;
    let (ok, out) = tikv_ctl(&[format!("--host={}", c.kv_addrs[0]), "store".into()]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("--ca-path"),
        "the error points at the fix: {out}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let log = c.kv[0].log_text();
    assert!(
        log.contains("refused connection") && log.contains("did not speak TLS"),
        "{log}"
    );

    // A client certificate from another CA is refused too.
    let other = tempfile::tempdir().unwrap();
    let foreign = cluster::Certs::make(other.path());
    let (ok, out) = tikv_ctl(&[
        format!("--host={}", c.kv_addrs[0]),
        format!("--ca-path={}", c.certs.as_ref().unwrap().path("ca.pem")),
        format!("--cert-path={}", foreign.path("client.pem")),
        format!("--key-path={}", foreign.path("client-key.pem")),
    ]);
    assert!(!ok, "{out}");
    // tikv-ctl validates its own flags first: the foreign certificate does
    // not chain to the CA it was given.
    assert!(
        out.contains("--cert-path") && out.contains("was not issued by the CA"),
        "{out}"
    );
}
