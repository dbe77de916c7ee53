//! End-to-end tests of `pd-server` and `pd-ctl` as operators run them: real
//! binaries as child processes, certificates made for the test in a temp
//! dir, ports chosen free at run time, children killed on drop.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tiox_proto::pdpb;
use tiox_security::certgen::{CertAuthority, KeyType, Profile, Spec, Validity};
use tiox_security::{ClientTls, Component, SecurityConfig};

const PD_SERVER: &str = env!("CARGO_BIN_EXE_pd-server");
const PD_CTL: &str = env!("CARGO_BIN_EXE_pd-ctl");

/// A CA plus server and client certificates in a temp dir.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki { dir };
        pki.make("", "tiox test CA");
        pki
    }

    /// Writes `{prefix}ca.pem`, `{prefix}pd.pem`, `{prefix}client.pem` (+ keys).
    fn make(&self, prefix: &str, ca_name: &str) {
        let ca = CertAuthority::generate(ca_name, Validity::Days(2), KeyType::EcdsaP256).unwrap();
        std::fs::write(self.path(&format!("{prefix}ca.pem")), &ca.cert_pem).unwrap();
        for (name, hosts, profile) in [
            ("pd", vec!["127.0.0.1", "localhost"], Profile::Server),
            ("client", vec![], Profile::Client),
        ] {
            let issued = ca.issue(&Spec::new(name, &hosts, profile)).unwrap();
            std::fs::write(self.path(&format!("{prefix}{name}.pem")), &issued.cert_pem).unwrap();
            std::fs::write(
                self.path(&format!("{prefix}{name}-key.pem")),
                issued.key_pem.expose(),
            )
            .unwrap();
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn client_tls(&self, alpn: &[u8]) -> Arc<ClientTls> {
        let settings = SecurityConfig::from_paths(
            &self.s("ca.pem"),
            &self.s("client.pem"),
            &self.s("client-key.pem"),
        )
        .validate(Component::PdCtl)
        .unwrap()
        .unwrap();
        Arc::new(ClientTls::with_alpn(settings, vec![alpn.to_vec()]).unwrap())
    }
}

fn free_port() -> u16 {
    tiox_bin::launch::free_port()
}

/// A running pd-server, killed on drop.
struct Pd {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Pd {
    fn start(data_dir: &Path, port: u16, tls: Option<&Pki>) -> Pd {
        Self::start_member(data_dir, "pd1", port, free_port(), None, tls)
    }

    /// Starts one member; `initial` is the `--initial-cluster` value (or a
    /// whole `--join=...` flag).
    fn start_member(
        data_dir: &Path,
        name: &str,
        port: u16,
        peer: u16,
        initial: Option<&str>,
        tls: Option<&Pki>,
    ) -> Pd {
        Self::start_with(data_dir, name, port, peer, initial, tls, &[])
    }

    /// As `start_member`, with extra flags.
    fn start_with(
        data_dir: &Path,
        name: &str,
        port: u16,
        peer: u16,
        initial: Option<&str>,
        tls: Option<&Pki>,
        extra: &[String],
    ) -> Pd {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let log = data_dir.with_extension(format!("{port}.log"));
        let mut cmd = Command::new(PD_SERVER);
        cmd.arg(format!("--name={name}"))
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--client-urls={scheme}://127.0.0.1:{port}"))
            .arg(format!("--peer-urls={scheme}://127.0.0.1:{peer}"));
        if let Some(initial) = initial {
            // Either "--join=..." or an --initial-cluster value.
            if initial.starts_with("--join=") {
                cmd.arg(initial);
            } else {
                cmd.arg(format!("--initial-cluster={initial}"));
            }
        }
        cmd.args(extra);
        match tls {
            Some(pki) => {
                cmd.args(["--cacert", &pki.s("ca.pem")])
                    .args(["--cert", &pki.s("pd.pem")])
                    .args(["--key", &pki.s("pd-key.pem")]);
            }
            // A plaintext test member, on purpose.
            None => {
                cmd.arg("--insecure");
            }
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        let pd = Pd { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "pd-server did not start: {}",
                pd.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        pd
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Pd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn pd_ctl(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(PD_CTL)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn pd_ctl_how_to_command_works_verbatim_against_tls_pd() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let pd = Pd::start(&data.path().join("pd"), free_port(), Some(&pki));
    let url = pd.url("https");
    let how_to = [
        "-u",
        &url,
        "--cacert",
        &pki.s("ca.pem"),
        "--cert",
        &pki.s("client.pem"),
        "--key",
        &pki.s("client-key.pem"),
    ];
    for cmd in [
        &["store"][..],
        &["member"],
        &["cluster"],
        &["health"],
        &["config", "show"],
        &["member", "leader", "show"],
        &["region"],
    ] {
        let mut args = how_to.to_vec();
        args.push("-d");
        args.extend_from_slice(cmd);
        let out = pd_ctl(&args, None);
        assert!(
            out.status.success(),
            "pd-ctl {cmd:?} failed: {}\nPD log:\n{}",
            text(&out.stderr),
            pd.log_text()
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "pd-ctl {cmd:?} printed no JSON ({e}): {}",
                text(&out.stdout)
            )
        });
        if cmd == ["store"] {
            assert_eq!(v["count"], 0);
        }
        if cmd == ["member"] {
            assert_eq!(v["leader"]["name"], "pd1");
            assert_eq!(v["members"][0]["client_urls"][0], url);
        }
    }
    // Interactive mode: commands on stdin.
    let out = pd_ctl(&how_to, Some("cluster\nhealth\nexit\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("\"health\": true"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn pd_ctl_without_client_certificate_fails_clearly() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let pd = Pd::start(&data.path().join("pd"), free_port(), Some(&pki));
    let url = pd.url("https");
    let out = pd_ctl(&["-u", &url, "--cacert", &pki.s("ca.pem"), "store"], None);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("requires a client certificate"), "{err}");
    assert!(err.contains("--cert, --key"), "{err}");
    // And the http:// spelling against a TLS port does not get an answer.
    let out = pd_ctl(&["-u", &pd.url("http"), "-d", "store"], None);
    assert!(!out.status.success(), "{}", text(&out.stdout));
}

#[test]
fn curl_with_client_certificate_gets_json() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIPPED curl_with_client_certificate_gets_json: curl is not installed");
        return;
    }
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let pd = Pd::start(&data.path().join("pd"), free_port(), Some(&pki));
    let url = format!("{}/pd/api/v1/members", pd.url("https"));
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--cacert", &pki.s("ca.pem")])
        .args([
            "--cert",
            &pki.s("client.pem"),
            "--key",
            &pki.s("client-key.pem"),
        ])
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl failed: {}\n{}",
        text(&out.stderr),
        pd.log_text()
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["leader"]["name"], "pd1");
    // Without the client certificate curl gets nothing.
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--cacert", &pki.s("ca.pem"), &url])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "curl without a certificate got: {}",
        text(&out.stdout)
    );
}

#[test]
fn plaintext_and_foreign_ca_clients_are_refused_on_the_client_port() {
    let pki = Pki::new();
    pki.make("foreign-", "some other CA");
    let data = tempfile::tempdir().unwrap();
    let pd = Pd::start(&data.path().join("pd"), free_port(), Some(&pki));
    let rt = runtime();
    rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Plaintext HTTP: no HTTP answer, connection closed.
        let mut tcp = tokio::net::TcpStream::connect(pd.addr()).await.unwrap();
        tcp.write_all(b"GET /pd/api/v1/members HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
        assert!(
            !text(&buf).contains("HTTP/1.1 200"),
            "plaintext got an answer: {}",
            text(&buf)
        );

        // A client whose certificate comes from another CA (it trusts ours).
        let foreign = tiox_pd_test_client(&pki, "foreign-client.pem", "foreign-client-key.pem");
        let connector = tokio_rustls::TlsConnector::from(foreign);
        let tcp = tokio::net::TcpStream::connect(pd.addr()).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let refused = match connector.connect(name, tcp).await {
            Err(_) => true,
            Ok(mut tls) => {
                let _ = tls
                    .write_all(b"GET /pd/api/v1/members HTTP/1.1\r\nHost: x\r\n\r\n")
                    .await;
                let mut buf = Vec::new();
                let r =
                    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut buf)).await;
                !matches!(r, Ok(Ok(_))) || !text(&buf).contains("200 OK")
            }
        };
        assert!(refused, "a client certificate from another CA was accepted");
    });
    // PD logs the refusals with the peer's address.
    std::thread::sleep(Duration::from_millis(300));
    let log = pd.log_text();
    assert!(log.contains("refused connection"), "{log}");
    assert!(log.contains("127.0.0.1:"), "{log}");
}

/// A raw rustls client trusting our CA but presenting `cert`/`key`.
fn tiox_pd_test_client(pki: &Pki, cert: &str, key: &str) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pki.path("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pki.path(cert))
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(pki.path(key)).unwrap();
    let provider = tiox_security::material::provider();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap(),
    )
}

async fn tso(
    client: &mut tiox_proto::pdpb::pd_client::PdClient<tonic::transport::Channel>,
    n: usize,
) -> Vec<u64> {
    let reqs: Vec<pdpb::TsoRequest> = (0..n)
        .map(|i| pdpb::TsoRequest {
            header: None,
            count: 1 + (i as u32 % 5),
            dc_location: String::new(),
        })
        .collect();
    let mut out = client
        .tso(futures::stream::iter(reqs.clone()))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    for req in reqs {
        let resp = out.next().await.unwrap().unwrap();
        assert!(resp.header.as_ref().unwrap().error.is_none(), "{resp:?}");
        assert_ne!(resp.header.as_ref().unwrap().cluster_id, 0);
        assert_eq!(resp.count, req.count, "count must echo the request");
        let ts = resp.timestamp.unwrap();
        got.push(((ts.physical as u64) << 18) | ts.logical as u64);
    }
    got
}

#[test]
fn tso_is_monotonic_across_pd_restart() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("pd");
    let port = free_port();
    let tls = pki.client_tls(b"h2");
    let rt = runtime();
    let mut pd = Pd::start(&dir, port, Some(&pki));
    let first = rt.block_on(async {
        let mut c = tiox_pd::client::connect(&pd.addr(), Some(tls.clone()))
            .await
            .unwrap();
        tso(&mut c, 200).await
    });
    assert!(
        first.windows(2).all(|w| w[0] < w[1]),
        "not strictly increasing"
    );
    pd.kill(); // SIGKILL: no clean shutdown.
    let pd = Pd::start(&dir, port, Some(&pki));
    let second = rt.block_on(async {
        let mut c = tiox_pd::client::connect(&pd.addr(), Some(tls.clone()))
            .await
            .unwrap();
        tso(&mut c, 50).await
    });
    assert!(
        second[0] > *first.last().unwrap(),
        "after restart {} is not above {}",
        second[0],
        first.last().unwrap()
    );
    // Physical part is wall-clock milliseconds (within the 3s window).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let physical = (second[0] >> 18) as i64;
    assert!(
        (physical - now_ms).abs() < 10_000,
        "physical {physical} vs now {now_ms}"
    );
}

#[test]
fn grpc_bootstrap_then_http_api_shows_stores_and_regions_and_404s_unknown_ids() {
    let data = tempfile::tempdir().unwrap();
    let pd = Pd::start(&data.path().join("pd"), free_port(), None);
    let rt = runtime();
    rt.block_on(async {
        let mut c = tiox_pd::client::connect(&pd.addr(), None).await.unwrap();
        let members = c
            .get_members(pdpb::GetMembersRequest::default())
            .await
            .unwrap()
            .into_inner();
        let cluster_id = members.header.unwrap().cluster_id;
        let header = Some(pdpb::RequestHeader {
            cluster_id,
            sender_id: 0,
        });
        let boot = c
            .is_bootstrapped(pdpb::IsBootstrappedRequest { header })
            .await
            .unwrap()
            .into_inner();
        assert!(!boot.bootstrapped);
        let store_id = c
            .alloc_id(pdpb::AllocIdRequest { header })
            .await
            .unwrap()
            .into_inner()
            .id;
        let region_id = c
            .alloc_id(pdpb::AllocIdRequest { header })
            .await
            .unwrap()
            .into_inner()
            .id;
        let peer_id = c
            .alloc_id(pdpb::AllocIdRequest { header })
            .await
            .unwrap()
            .into_inner()
            .id;
        let store = tiox_proto::metapb::Store {
            id: store_id,
            address: "127.0.0.1:20160".into(),
            version: "0.1.0".into(),
            ..Default::default()
        };
        let region = tiox_proto::metapb::Region {
            id: region_id,
            region_epoch: Some(tiox_proto::metapb::RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            peers: vec![tiox_proto::metapb::Peer {
                id: peer_id,
                store_id,
                role: 0,
            }],
            ..Default::default()
        };
        let resp = c
            .bootstrap(pdpb::BootstrapRequest {
                header,
                store: Some(store),
                region: Some(region),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(resp.header.unwrap().error.is_none());
        let again = c
            .bootstrap(pdpb::BootstrapRequest {
                header,
                store: None,
                region: None,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            again.header.unwrap().error.unwrap().r#type,
            pdpb::ErrorType::AlreadyBootstrapped as i32
        );
        let r = c
            .get_region(pdpb::GetRegionRequest {
                header,
                region_key: b"anything".to_vec(),
                need_buckets: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.region.unwrap().id, region_id);
        assert_eq!(r.leader.unwrap().id, peer_id);
        // A wrong cluster id is refused with an error in the header.
        let bad = Some(pdpb::RequestHeader {
            cluster_id: cluster_id ^ 1,
            sender_id: 0,
        });
        let r = c
            .get_store(pdpb::GetStoreRequest {
                header: bad,
                store_id,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.header.unwrap().error.unwrap().message.contains("cluster"));
        let sp = c
            .update_gc_safe_point(pdpb::UpdateGcSafePointRequest {
                header,
                safe_point: 42,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(sp.new_safe_point, 42);

        let ctl = tiox_ctl::pd::PdCtl::new(&pd.url("http"), None, None, None).unwrap();
        let json = |path: &'static str| {
            let ctl = &ctl;
            async move {
                let (status, body) = ctl.get(path).await.unwrap();
                (
                    status,
                    serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
                )
            }
        };
        let (s, v) = json("/pd/api/v1/stores").await;
        assert_eq!(s, 200);
        assert_eq!(v["count"], 1);
        assert_eq!(v["stores"][0]["store"]["address"], "127.0.0.1:20160");
        assert!(v["stores"][0]["store"]["state_name"].is_string());
        let (s, v) = json("/pd/api/v1/regions").await;
        assert_eq!(s, 200);
        assert_eq!(v["regions"][0]["id"], region_id);
        let (s, v) = json("/pd/api/v1/region/key/zzz").await;
        assert_eq!((s, v["id"].as_u64()), (200, Some(region_id)));
        let (s, v) = json("/pd/api/v1/store/999999").await;
        assert_eq!(s, 404);
        assert!(v["error"].as_str().unwrap().contains("999999"));
        let (s, _) = json("/pd/api/v1/region/id/424242").await;
        assert_eq!(s, 404);
        let (s, v) = json("/pd/api/v1/store/abc").await;
        assert_eq!(s, 400, "{v}");
        let (s, _) = json("/pd/api/v1/region/key/%zz").await;
        assert_eq!(s, 400);
        let (s, _) = json("/pd/api/v1/no-such-thing").await;
        assert_eq!(s, 404);
        let (s, body) = ctl.get("/metrics").await.unwrap();
        assert_eq!(s, 200);
        assert!(
            text(&body).contains("pd_grpc_requests_total{method=\"Bootstrap\"} 2"),
            "{}",
            text(&body)
        );
    });
    // pd-ctl store ID for an unknown store fails and says why.
    let out = pd_ctl(&["-u", &pd.addr(), "-d", "store", "31337"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("404"), "{}", text(&out.stderr));
}

#[test]
fn metrics_show_the_certificate_not_after() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let pd = Pd::start(&data.path().join("pd"), free_port(), Some(&pki));
    let ctl = tiox_ctl::pd::PdCtl::new(
        &pd.url("https"),
        Some(&pki.s("ca.pem")),
        Some(&pki.s("client.pem")),
        Some(&pki.s("client-key.pem")),
    )
    .unwrap();
    let (status, body) = runtime().block_on(ctl.get("/metrics")).unwrap();
    assert_eq!(status, 200);
    let body = text(&body);
    let line = body
        .lines()
        .find(|l| {
            l.starts_with("tiox_tls_cert_not_after_seconds{") && l.contains("kind=\"server\"")
        })
        .unwrap_or_else(|| panic!("no not-after gauge in:\n{body}"));
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    assert!(
        value > now && value < now + 11.0 * 365.0 * 86400.0,
        "{line}"
    );
}

#[test]
fn url_scheme_that_does_not_match_tls_is_a_startup_error() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    // TLS configured, http:// URL.
    let out = Command::new(PD_SERVER)
        .arg(format!("--data-dir={}", data.path().join("a").display()))
        .arg(format!("--client-urls=http://127.0.0.1:{port}"))
        .args([
            "--cacert",
            &pki.s("ca.pem"),
            "--cert",
            &pki.s("pd.pem"),
            "--key",
            &pki.s("pd-key.pem"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("must be https://"), "{err}");
    // No TLS (on purpose), https:// URL.
    let out = Command::new(PD_SERVER)
        .arg(format!("--data-dir={}", data.path().join("b").display()))
        .arg(format!("--client-urls=https://127.0.0.1:{port}"))
        .arg("--insecure")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("TLS is not configured"),
        "{}",
        text(&out.stderr)
    );
    // Half-configured [security] names the missing key.
    let out = Command::new(PD_SERVER)
        .arg(format!("--data-dir={}", data.path().join("c").display()))
        .arg(format!("--client-urls=https://127.0.0.1:{port}"))
        .args(["--cacert", &pki.s("ca.pem")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cert-path"),
        "{}",
        text(&out.stderr)
    );
}

type PdClient = tiox_proto::pdpb::pd_client::PdClient<tonic::transport::Channel>;

/// Asks each running member for the leader until one serves: returns its
/// index in `pds`.
async fn wait_for_serving_leader(pds: &[&Pd], tls: &Arc<ClientTls>) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for pd in pds {
            let Ok(mut c) = tiox_pd::client::connect(&pd.addr(), Some(tls.clone())).await else {
                continue;
            };
            let Ok(m) = c.get_members(pdpb::GetMembersRequest::default()).await else {
                continue;
            };
            let m = m.into_inner();
            let Some(leader) = m.leader else { continue };
            let Some(url) = leader.client_urls.first() else {
                continue;
            };
            if let Some(i) = pds.iter().position(|p| &p.url("https") == url) {
                // Serving means answering data requests, not just elected.
                let Ok(mut lc) = tiox_pd::client::connect(&pds[i].addr(), Some(tls.clone())).await
                else {
                    continue;
                };
                if let Ok(r) = lc.alloc_id(pdpb::AllocIdRequest::default()).await {
                    if r.into_inner().header.is_some_and(|h| h.error.is_none()) {
                        return i;
                    }
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no PD leader within 30s; logs:\n{}",
            pds.iter()
                .map(|p| p.log_text())
                .collect::<Vec<_>>()
                .join("\n----\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn bootstrap(c: &mut PdClient) -> u64 {
    let id = |c: &mut PdClient| {
        let mut c = c.clone();
        async move {
            c.alloc_id(pdpb::AllocIdRequest::default())
                .await
                .unwrap()
                .into_inner()
                .id
        }
    };
    let (store_id, region_id, peer_id) = (id(c).await, id(c).await, id(c).await);
    let store = tiox_proto::metapb::Store {
        id: store_id,
        address: "127.0.0.1:20160".into(),
        ..Default::default()
    };
    let region = tiox_proto::metapb::Region {
        id: region_id,
        region_epoch: Some(tiox_proto::metapb::RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers: vec![tiox_proto::metapb::Peer {
            id: peer_id,
            store_id,
            role: 0,
        }],
        ..Default::default()
    };
    let r = c
        .bootstrap(pdpb::BootstrapRequest {
            header: None,
            store: Some(store),
            region: Some(region),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.header.unwrap().error.is_none());
    region_id
}

#[test]
fn three_pds_replicate_metadata_and_keep_tso_monotonic_across_leader_sigkill() {
    let pki = Pki::new();
    pki.make("foreign-", "some other CA");
    let data = tempfile::tempdir().unwrap();
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let initial = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("pd{}=https://127.0.0.1:{peer}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut pds: Vec<Pd> = ports
        .iter()
        .enumerate()
        .map(|(i, (client, peer))| {
            let name = format!("pd{}", i + 1);
            Pd::start_member(
                &data.path().join(&name),
                &name,
                *client,
                *peer,
                Some(&initial),
                Some(&pki),
            )
        })
        .collect();
    let tls = pki.client_tls(b"h2");
    let rt = runtime();
    let (leader, region_id, last) = rt.block_on(async {
        let refs: Vec<&Pd> = pds.iter().collect();
        let leader = wait_for_serving_leader(&refs, &tls).await;
        let mut c = tiox_pd::client::connect(&pds[leader].addr(), Some(tls.clone()))
            .await
            .unwrap();
        let members = c
            .get_members(pdpb::GetMembersRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(members.members.len(), 3);
        let region_id = bootstrap(&mut c).await;
        let first = tso(&mut c, 200).await;
        assert!(first.windows(2).all(|w| w[0] < w[1]));
        // A follower forwards data calls (unary and streaming) to the leader.
        let follower = (leader + 1) % 3;
        let mut f = tiox_pd::client::connect(&pds[follower].addr(), Some(tls.clone()))
            .await
            .unwrap();
        let r = f
            .get_region(pdpb::GetRegionRequest {
                header: None,
                region_key: b"k".to_vec(),
                need_buckets: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.header.unwrap().error.is_none());
        assert_eq!(r.region.map(|r| r.id), Some(region_id));
        let via_follower = tso(&mut f, 20).await;
        assert!(via_follower[0] > *first.last().unwrap());
        let first = via_follower;
        (leader, region_id, *first.last().unwrap())
    });
    // pd-ctl against a follower is redirected to the leader.
    let follower = (leader + 1) % 3;
    let out = pd_ctl(
        &[
            "-u",
            &pds[follower].url("https"),
            "--cacert",
            &pki.s("ca.pem"),
            "--cert",
            &pki.s("client.pem"),
            "--key",
            &pki.s("client-key.pem"),
            "-d",
            "region",
            &region_id.to_string(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("\"id\": {region_id}")),
        "{}",
        text(&out.stdout)
    );

    // The peer port refuses a plaintext peer and one from another CA, and
    // logs the address.
    rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let peer_addr = format!("127.0.0.1:{}", ports[follower].1);
        let mut tcp = tokio::net::TcpStream::connect(&peer_addr).await.unwrap();
        let _ = tcp.write_all(b"\x01\x00\x00\x00\x04junk").await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
        let foreign = tiox_pd_test_client(&pki, "foreign-client.pem", "foreign-client-key.pem");
        let tcp = tokio::net::TcpStream::connect(&peer_addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        if let Ok(mut s) = tokio_rustls::TlsConnector::from(foreign)
            .connect(name, tcp)
            .await
        {
            let _ = s.write_all(b"\x01\x00\x00\x00\x04junk").await;
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let log = pds[follower].log_text();
    assert!(
        log.matches("peer port: refused connection").count() >= 2,
        "peer refusals not logged:\n{log}"
    );

    // SIGKILL the leader while a TSO stream is running against it; the
    // survivors elect a new one that serves timestamps above everything
    // handed out and has the metadata.
    let seen = Arc::new(std::sync::atomic::AtomicU64::new(last));
    let streaming = {
        let (seen, tls, addr) = (seen.clone(), tls.clone(), pds[leader].addr());
        rt.spawn(async move {
            let mut c = tiox_pd::client::connect(&addr, Some(tls)).await.unwrap();
            let (tx, rx) = tokio::sync::mpsc::channel::<pdpb::TsoRequest>(1);
            let req = pdpb::TsoRequest {
                header: None,
                count: 3,
                dc_location: String::new(),
            };
            tx.send(req.clone()).await.unwrap();
            let mut out = c
                .tso(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .unwrap()
                .into_inner();
            let mut n = 0u64;
            while let Ok(Some(r)) = out.message().await {
                let Some(ts) = r.timestamp else { break };
                let v = ((ts.physical as u64) << 18) | ts.logical as u64;
                assert!(v > seen.load(std::sync::atomic::Ordering::SeqCst));
                seen.store(v, std::sync::atomic::Ordering::SeqCst);
                n += 1;
                if tx.send(req.clone()).await.is_err() {
                    break;
                }
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    pds[leader].kill();
    let streamed = rt.block_on(streaming).unwrap();
    assert!(streamed > 0, "the TSO stream got nothing before the kill");
    let last = seen.load(std::sync::atomic::Ordering::SeqCst);
    rt.block_on(async {
        let refs: Vec<&Pd> = pds
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != leader)
            .map(|(_, p)| p)
            .collect();
        let new = wait_for_serving_leader(&refs, &tls).await;
        let mut c = tiox_pd::client::connect(&refs[new].addr(), Some(tls.clone()))
            .await
            .unwrap();
        let after = tso(&mut c, 50).await;
        assert!(
            after[0] > last,
            "new leader's {} is not above {last}",
            after[0]
        );
        let r = c
            .get_region(pdpb::GetRegionRequest {
                header: None,
                region_key: b"any".to_vec(),
                need_buckets: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.region.map(|r| r.id),
            Some(region_id),
            "metadata not replicated"
        );
        let boot = c
            .is_bootstrapped(pdpb::IsBootstrappedRequest { header: None })
            .await
            .unwrap()
            .into_inner();
        assert!(boot.bootstrapped);
    });

    // The killed member restarts from its data directory, rejoins as a
    // follower and points clients at the new leader.
    let (client, peer) = ports[leader];
    let name = format!("pd{}", leader + 1);
    pds[leader] = Pd::start_member(
        &data.path().join(&name),
        &name,
        client,
        peer,
        Some(&initial),
        Some(&pki),
    );
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut c = tiox_pd::client::connect(&pds[leader].addr(), Some(tls.clone()))
                .await
                .unwrap();
            let m = c
                .get_members(pdpb::GetMembersRequest::default())
                .await
                .unwrap()
                .into_inner();
            let leader_url = m.leader.and_then(|l| l.client_urls.first().cloned());
            if leader_url.is_some() && leader_url != Some(pds[leader].url("https")) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "restarted member never saw the new leader"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });

    // pd-ctl removes that member (through a follower or the leader: the
    // request is redirected); the remaining two keep serving.
    let other = (leader + 2) % 3;
    let out = pd_ctl(
        &[
            "-u",
            &pds[other].url("https"),
            "--cacert",
            &pki.s("ca.pem"),
            "--cert",
            &pki.s("client.pem"),
            "--key",
            &pki.s("client-key.pem"),
            "-d",
            "member",
            "delete",
            "name",
            &name,
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    pds[leader].kill();
    rt.block_on(async {
        let refs: Vec<&Pd> = pds
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != leader)
            .map(|(_, p)| p)
            .collect();
        let l = wait_for_serving_leader(&refs, &tls).await;
        let mut c = tiox_pd::client::connect(&refs[l].addr(), Some(tls.clone()))
            .await
            .unwrap();
        let m = c
            .get_members(pdpb::GetMembersRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(m.members.len(), 2, "{:?}", m.members);
        assert!(!m.members.iter().any(|x| x.name == name));
        tso(&mut c, 10).await;
    });
}

#[test]
fn join_grows_a_cluster_that_survives_losing_its_first_member() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let tls = pki.client_tls(b"h2");
    let rt = runtime();
    let first = format!("pd1=https://127.0.0.1:{}", ports[0].1);
    let mut pds = vec![Pd::start_member(
        &data.path().join("pd1"),
        "pd1",
        ports[0].0,
        ports[0].1,
        Some(&first),
        Some(&pki),
    )];
    let (region_id, last) = rt.block_on(async {
        wait_for_serving_leader(&[&pds[0]], &tls).await;
        let mut c = tiox_pd::client::connect(&pds[0].addr(), Some(tls.clone()))
            .await
            .unwrap();
        let region_id = bootstrap(&mut c).await;
        let got = tso(&mut c, 20).await;
        (region_id, *got.last().unwrap())
    });
    // Two new members join through the first one's client URL.
    let join = format!("--join=https://127.0.0.1:{}", ports[0].0);
    for (i, (client, peer)) in ports.iter().enumerate().skip(1) {
        let name = format!("pd{}", i + 1);
        pds.push(Pd::start_member(
            &data.path().join(&name),
            &name,
            *client,
            *peer,
            Some(&join),
            Some(&pki),
        ));
    }
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut c = tiox_pd::client::connect(&pds[0].addr(), Some(tls.clone()))
                .await
                .unwrap();
            let m = c
                .get_members(pdpb::GetMembersRequest::default())
                .await
                .unwrap()
                .into_inner();
            if m.members.len() == 3 && m.members.iter().all(|m| !m.client_urls.is_empty()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "members never reached 3: {:?}\n{}",
                m.members,
                pds.iter()
                    .map(|p| p.log_text())
                    .collect::<Vec<_>>()
                    .join("\n----\n")
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    // Give the joiners a moment to catch up with the log, then lose pd1.
    std::thread::sleep(Duration::from_millis(1500));
    pds[0].kill();
    rt.block_on(async {
        let refs: Vec<&Pd> = pds[1..].iter().collect();
        let new = wait_for_serving_leader(&refs, &tls).await;
        let mut c = tiox_pd::client::connect(&refs[new].addr(), Some(tls.clone()))
            .await
            .unwrap();
        let after = tso(&mut c, 20).await;
        assert!(after[0] > last, "{} is not above {last}", after[0]);
        let r = c
            .get_region(pdpb::GetRegionRequest {
                header: None,
                region_key: b"x".to_vec(),
                need_buckets: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.region.map(|r| r.id),
            Some(region_id),
            "joined members lack the metadata"
        );
    });
}

#[test]
fn members_that_join_after_log_compaction_catch_up_from_a_snapshot() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("pd.toml");
    std::fs::write(&config, "[replication]\nraft-log-keep-entries = 5\n").unwrap();
    let extra = vec![format!("--config={}", config.display())];
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let tls = pki.client_tls(b"h2");
    let rt = runtime();
    let first = format!("pd1=https://127.0.0.1:{}", ports[0].1);
    let mut pds = vec![Pd::start_with(
        &data.path().join("pd1"),
        "pd1",
        ports[0].0,
        ports[0].1,
        Some(&first),
        Some(&pki),
        &extra,
    )];
    const STORES: u64 = 40;
    rt.block_on(async {
        wait_for_serving_leader(&[&pds[0]], &tls).await;
        let mut c = tiox_pd::client::connect(&pds[0].addr(), Some(tls.clone()))
            .await
            .unwrap();
        bootstrap(&mut c).await;
        // Every PutStore is one Raft entry; with 5 entries kept, the early
        // log is compacted away long before the new members arrive.
        for i in 0..STORES {
            let r = c
                .put_store(pdpb::PutStoreRequest {
                    header: None,
                    store: Some(tiox_proto::metapb::Store {
                        id: 10_000 + i,
                        address: format!("10.0.0.{i}:20160"),
                        ..Default::default()
                    }),
                })
                .await
                .unwrap()
                .into_inner();
            assert!(r.header.unwrap().error.is_none());
        }
    });
    let join = format!("--join=https://127.0.0.1:{}", ports[0].0);
    for (i, (client, peer)) in ports.iter().enumerate().skip(1) {
        let name = format!("pd{}", i + 1);
        pds.push(Pd::start_with(
            &data.path().join(&name),
            &name,
            *client,
            *peer,
            Some(&join),
            Some(&pki),
            &extra,
        ));
    }
    // Wait until both new members have installed a snapshot.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pds[1..]
        .iter()
        .all(|p| p.log_text().contains("installed a Raft snapshot"))
    {
        assert!(
            Instant::now() < deadline,
            "no snapshot installed:\n{}",
            pds.iter()
                .map(|p| p.log_text())
                .collect::<Vec<_>>()
                .join("\n----\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    pds[0].kill();
    rt.block_on(async {
        let refs: Vec<&Pd> = pds[1..].iter().collect();
        let new = wait_for_serving_leader(&refs, &tls).await;
        let mut c = tiox_pd::client::connect(&refs[new].addr(), Some(tls.clone()))
            .await
            .unwrap();
        let all = c
            .get_all_stores(pdpb::GetAllStoresRequest {
                header: None,
                exclude_tombstone_stores: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            all.stores.len() as u64,
            STORES + 1,
            "state lost in the snapshot"
        );
    });
}
