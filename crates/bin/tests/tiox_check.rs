//! `tiox check` audits a running cluster's TLS from the outside.

#[path = "support/cluster.rs"]
mod cluster;

use std::process::Command;

use cluster::{bin, Certs, Cluster, Options};

fn check(pd: &str, certs: &Certs) -> (Option<i32>, String) {
    let out = Command::new(bin("tiox"))
        .args([
            "check",
            "--pd",
            pd,
            "--cacert",
            &certs.path("ca.pem"),
            "--cert",
            &certs.path("client.pem"),
            "--key",
            &certs.path("client-key.pem"),
        ])
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_a_mutual_tls_cluster_and_lists_every_endpoint() {
    // PD with Raft, so that its peer port listens too.
    let opts = Options {
        pd_raft: true,
        ..Options::default()
    };
    let c = Cluster::start_opts(true, 1, &opts).await;
    let (code, out) = check(&format!("https://{}", c.pd_addr), c.certs.as_ref().unwrap());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("VERDICT: PASS: 4 endpoints"), "{out}");
    for role in ["PD pd1", "PD pd1 peer", "TiKV 1 gRPC", "TiKV 1 status"] {
        assert!(out.contains(role), "{role} missing:\n{out}");
    }
    assert!(out.contains(&c.pd_peer_addr), "{out}");
    assert_eq!(
        out.matches("client without certificate refused").count(),
        4,
        "{out}"
    );
    assert_eq!(out.matches("plaintext refused").count(), 4, "{out}");
    // Every port negotiates the post-quantum hybrid with a tiox client.
    assert_eq!(
        out.matches("key exchange X25519MLKEM768 (post-quantum hybrid)")
            .count(),
        4,
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_a_plaintext_cluster_with_the_reason() {
    let c = Cluster::start(false, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path());
    let (code, out) = check(&format!("https://{}", c.pd_addr), &certs);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL") && out.contains("did not answer with TLS"),
        "{out}"
    );
}
