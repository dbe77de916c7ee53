//! No silent plaintext: pd-server and tikv-server without TLS files, and
//! tidb-server on a cluster without `cluster-ssl-*`, refuse to start unless
//! `--insecure` asks for plaintext, naming the keys to add; with
//! `--insecure` they serve, and PD's and TiKV's `/metrics` say TLS is off. A
//! non-AEAD `cipher-suites` entry stops each server, naming file and key.

#[path = "support/cluster.rs"]
mod cluster;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluster::{bin, free_port, http_get, Cluster};

/// Runs `name` with `args` and asserts that it refuses to start (a
/// non-zero exit within 20 s) with a message naming every one of `names`.
fn assert_refused(name: &str, args: &[String], names: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.txt");
    let file = std::fs::File::create(&out).unwrap();
    let mut child = Command::new(bin(name))
        .args(args)
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name} kept running without TLS and without --insecure:\n{}",
                std::fs::read_to_string(&out).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = std::fs::read_to_string(&out).unwrap_or_default();
    assert_ne!(code, 0, "{out}");
    for needle in names {
        assert!(
            out.contains(needle),
            "{name}'s refusal names {needle}: {out}"
        );
    }
}

#[test]
fn servers_without_tls_refuse_to_start_unless_started_with_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let pd_addr = format!("127.0.0.1:{}", free_port());
    assert_refused(
        "pd-server",
        &[
            "--name".into(),
            "pd1".into(),
            "--data-dir".into(),
            dir.path().join("pd").display().to_string(),
            "--client-urls".into(),
            format!("http://{pd_addr}"),
            "--peer-urls".into(),
            format!("http://127.0.0.1:{}", free_port()),
        ],
        &["cacert-path", "cert-path", "key-path", "--insecure"],
    );
    assert_refused(
        "tikv-server",
        &[
            "--addr".into(),
            format!("127.0.0.1:{}", free_port()),
            "--status-addr".into(),
            format!("127.0.0.1:{}", free_port()),
            "--pd".into(),
            format!("http://{pd_addr}"),
            "--data-dir".into(),
            dir.path().join("kv").display().to_string(),
        ],
        &["ca-path", "cert-path", "key-path", "--insecure"],
    );
    assert_refused(
        "tidb-server",
        &[
            "-P".into(),
            free_port().to_string(),
            "--host=127.0.0.1".into(),
            "--store=tikv".into(),
            format!("--path={pd_addr}"),
        ],
        &[
            "cluster-ssl-ca",
            "cluster-ssl-cert",
            "cluster-ssl-key",
            "--insecure",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_servers_serve_and_say_so_in_metrics_and_logs() {
    // The launcher passes --insecure to a plaintext cluster.
    let c = Cluster::start(false, 1).await;
    c.wait_store_serving(0).await;
    let (status, body) = c.pd_get("/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("tiox_tls_enabled{component=\"pd-server\"} 0"),
        "{body}"
    );
    let (status, body) = http_get(&c.kv_status[0], "/metrics", None).await.unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("tiox_tls_enabled{component=\"tikv-server\"} 0"),
        "{body}"
    );
    assert!(c.pd.log_text().contains("--insecure"), "{}", c.logs());
    assert!(c.kv[0].log_text().contains("--insecure"), "{}", c.logs());
}

/// A non-AEAD name in `cipher-suites` stops each server at startup, naming
/// the component, the config file, the key and the suites to use instead.
#[test]
fn non_aead_cipher_suite_is_a_startup_error_naming_component_file_key_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let certs = cluster::Certs::make(&dir.path().join("certs"));
    let toml = dir.path().join("bad.toml");
    std::fs::write(
        &toml,
        "[security]\ncipher-suites = [\"TLS_AES_128_GCM_SHA256\", \"DES-CBC3-SHA\"]\n",
    )
    .unwrap();
    let config = toml.display().to_string();
    let pd = format!("127.0.0.1:{}", free_port());
    let needles = [
        config.as_str(),
        "[security] cipher-suites",
        "\"DES-CBC3-SHA\" is not an AEAD cipher suite",
        "TLS_AES_256_GCM_SHA384",
    ];
    assert_refused(
        "tikv-server",
        &[
            "--config".into(),
            config.clone(),
            "--addr".into(),
            format!("127.0.0.1:{}", free_port()),
            "--pd".into(),
            format!("https://{pd}"),
            "--data-dir".into(),
            dir.path().join("kv").display().to_string(),
            "--ca-path".into(),
            certs.path("ca.pem"),
            "--cert-path".into(),
            certs.path("tikv-server.pem"),
            "--key-path".into(),
            certs.path("tikv-server-key.pem"),
        ],
        &[&["tikv-server"][..], &needles[..]].concat(),
    );
    assert_refused(
        "pd-server",
        &[
            "--config".into(),
            config.clone(),
            "--name".into(),
            "pd1".into(),
            "--data-dir".into(),
            dir.path().join("pd").display().to_string(),
            "--client-urls".into(),
            format!("https://{pd}"),
            "--cacert".into(),
            certs.path("ca.pem"),
            "--cert".into(),
            certs.path("pd-server.pem"),
            "--key".into(),
            certs.path("pd-server-key.pem"),
        ],
        &[&["pd-server"][..], &needles[..]].concat(),
    );
    assert_refused(
        "tidb-server",
        &[
            format!("--config={config}"),
            format!("-P={}", free_port()),
            format!("--status={}", free_port()),
            format!("--data-dir={}", dir.path().join("db").display()),
        ],
        &[&["tidb-server"][..], &needles[..]].concat(),
    );
}
