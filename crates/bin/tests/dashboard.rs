//! PD's dashboard end to end: a real cluster (PD with Raft, three stores,
//! mutual TLS), every page fetched with the cluster's client certificate,
//! rendered in headless Chromium, checked for the cluster's real values
//! (store ids, PD's certificate serial and days left, a refused plaintext
//! attempt among the security events), and screenshotted to
//! `target/dashboard-screenshots/` (or `$TIOX_DASHBOARD_SCREENSHOTS`).
//!
//! The pages are fetched by the test over mutual TLS and rendered by
//! Chromium from the saved files: headless Chromium cannot present a
//! client certificate without a managed policy in a system directory
//! (docs/dashboard.md says why). Without `chromium` on PATH the browser
//! part is skipped with a message; the fetches and checks still run.
//!
//! Every dashboard URL without a client certificate gets a refused
//! handshake, never data; plaintext gets no HTTP answer.

#[path = "support/cluster.rs"]
mod cluster;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::{http_get, Cluster, Options};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tiox_security::CertInfo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The tests of this file run one at a time: each starts a cluster, and on
/// a small shared machine three at once starve each other.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Every page: (path under /dashboard/, file name).
const PAGES: [(&str, &str); 6] = [
    ("", "overview"),
    ("regions", "regions"),
    ("certificates", "certificates"),
    ("audit?run=1", "audit"),
    ("events", "events"),
    ("metrics", "metrics"),
];

/// Every URL the dashboard serves.
const URLS: [&str; 16] = [
    "/dashboard",
    "/dashboard/",
    "/dashboard/regions",
    "/dashboard/certificates",
    "/dashboard/audit?run=1",
    "/dashboard/events",
    "/dashboard/metrics",
    "/dashboard/metrics?chart=1",
    "/dashboard/assets/dashboard.css",
    "/dashboard/assets/dashboard.js",
    "/dashboard/api/overview",
    "/dashboard/api/regions",
    "/dashboard/api/certificates",
    "/dashboard/api/audit",
    "/dashboard/api/events",
    "/dashboard/api/metrics",
];

fn screenshot_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TIOX_DASHBOARD_SCREENSHOTS") {
        return PathBuf::from(d);
    }
    // <target>/debug/deps/<test exe> -> <target>/dashboard-screenshots
    let mut p = std::env::current_exe().unwrap();
    p.pop();
    if p.ends_with("deps") {
        p.pop();
    }
    p.pop();
    p.join("dashboard-screenshots")
}

/// A TLS client that trusts the cluster CA but has no certificate: what a
/// browser without the bundle imported is.
fn anonymous_tls(ca: &str) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config =
        rustls::ClientConfig::builder_with_provider(tiox_security::material::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// What came back to an anonymous TLS GET: the bytes read (none expected).
async fn anonymous_get(tls: &tokio_rustls::TlsConnector, addr: &str, path: &str) -> String {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let attempt = async {
        let mut s = tls.connect(name, tcp).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<Vec<u8>, std::io::Error>(buf)
    };
    match tokio::time::timeout(Duration::from_secs(10), attempt).await {
        Ok(Ok(buf)) => String::from_utf8_lossy(&buf).into_owned(),
        Ok(Err(_)) => String::new(),
        Err(_) => panic!("an anonymous GET {path} was neither answered nor refused in 10 s"),
    }
}

/// A plaintext GET: the bytes read (no HTTP answer expected).
async fn plaintext_get(addr: &str, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// Runs Chromium headless with a private HOME and profile, bounded in time.
fn chromium(home: &Path, args: &[String]) -> (bool, String) {
    let mut child = Command::new("chromium")
        .env("HOME", home)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--allow-file-access-from-files",
        ])
        .arg(format!(
            "--user-data-dir={}",
            home.join("profile").display()
        ))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let ok = loop {
        match child.try_wait().unwrap() {
            Some(status) => break status.success(),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    (ok, reader.join().unwrap_or_default())
}

fn has_chromium() -> bool {
    Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_pages_show_the_real_cluster_and_refuse_anonymous_access() {
    let _serial = SERIAL.lock().await;
    let opts = Options {
        pd_raft: true,
        ..Options::default()
    };
    let c = Cluster::start_opts(true, 3, &opts).await;
    c.wait_for_stores(3).await;
    c.wait_for_voters(3).await;
    let certs = c.certs.as_ref().unwrap();
    let tls = certs.client_tls();

    // Without a client certificate, nothing: every URL.
    let anon = anonymous_tls(&certs.path("ca.pem"));
    for url in URLS {
        let got = anonymous_get(&anon, &c.pd_addr, url).await;
        assert!(
            !got.contains("HTTP/"),
            "{url} answered a client without a certificate:\n{got}"
        );
    }
    // Plaintext: no HTTP answer, and a refusal in the audit log.
    let got = plaintext_get(&c.pd_addr, "/dashboard/").await;
    assert!(
        !got.contains("HTTP/1.1 200"),
        "plaintext was served:\n{got}"
    );
    // curl, as an operator would try it, when present.
    if let Ok(out) = Command::new("curl")
        .args(["-s", "-o", "-", "--max-time", "10", "--cacert"])
        .arg(certs.path("ca.pem"))
        .arg(format!("https://{}/dashboard/api/overview", c.pd_addr))
        .output()
    {
        assert!(
            !out.status.success(),
            "curl without a client certificate got data"
        );
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // The real values to find.
    let (_, stores) = c.pd_get("/pd/api/v1/stores").await.unwrap();
    let stores: serde_json::Value = serde_json::from_str(&stores).unwrap();
    let store_ids: Vec<u64> = stores["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["store"]["id"].as_u64().unwrap())
        .collect();
    assert_eq!(store_ids.len(), 3, "{stores}");
    let pd_cert = CertificateDer::from_pem_file(certs.path("pd-server.pem")).unwrap();
    let pd_cert = CertInfo::from_der(&pd_cert).unwrap();
    let days = pd_cert.days_left(time::OffsetDateTime::now_utc());

    // Let the metrics sampler collect a few points.
    let _ = http_get(&c.pd_addr, "/dashboard/metrics", Some(tls.clone())).await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Fetch every page with the client certificate and save it.
    let dir = screenshot_dir();
    let site = dir.join("site");
    std::fs::create_dir_all(site.join("assets")).unwrap();
    for asset in ["dashboard.css", "dashboard.js"] {
        let (code, body) = http_get(
            &c.pd_addr,
            &format!("/dashboard/assets/{asset}"),
            Some(tls.clone()),
        )
        .await
        .unwrap();
        assert_eq!(code, 200, "{asset}: {body}");
        std::fs::write(site.join("assets").join(asset), body).unwrap();
    }
    let mut saved = Vec::new();
    for (path, name) in PAGES {
        let (code, body) = http_get(&c.pd_addr, &format!("/dashboard/{path}"), Some(tls.clone()))
            .await
            .unwrap();
        assert_eq!(code, 200, "{name}: {body}\n{}", c.logs());
        // Links between the saved pages work in the browser.
        let body = body
            .replace("href=\"./\"", "href=\"overview.html\"")
            .replace("action=\"audit\"", "action=\"audit.html\"");
        let file = site.join(format!("{name}.html"));
        std::fs::write(&file, &body).unwrap();
        saved.push((name, file, body));
    }
    for (path, _) in PAGES {
        let api = path.split('?').next().unwrap();
        let api = if api.is_empty() { "overview" } else { api };
        let (code, body) = http_get(
            &c.pd_addr,
            &format!("/dashboard/api/{api}"),
            Some(tls.clone()),
        )
        .await
        .unwrap();
        assert_eq!(code, 200, "api {api}: {body}");
        serde_json::from_str::<serde_json::Value>(&body)
            .unwrap_or_else(|e| panic!("api {api}: {e}: {body}"));
    }

    if !has_chromium() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium is not on PATH and CI=true: install it (apt-get install chromium)"
        );
        eprintln!(
            "SKIPPED the browser part: `chromium` is not on PATH (apt-get install chromium); \
             the pages were fetched and saved in {}",
            site.display()
        );
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let started = Instant::now();
    for (name, file, _) in &saved {
        let url = format!("file://{}", file.display());
        let (ok, dom) = chromium(home.path(), &["--dump-dom".into(), url.clone()]);
        assert!(ok, "chromium could not render {name}");
        assert!(
            dom.contains("<nav>"),
            "{name}: no navigation in the DOM:\n{dom}"
        );
        match *name {
            "overview" => {
                for id in &store_ids {
                    let cell = format!("<span class=\"store-id\">{id}</span>");
                    assert!(dom.contains(&cell), "overview lacks store {id}:\n{dom}");
                }
                assert!(dom.contains("badge leader"), "no PD leader marked:\n{dom}");
                assert!(dom.contains("id=\"health\""), "{dom}");
            }
            "regions" => {
                assert!(dom.contains("id=\"heatmap\""), "{dom}");
                assert!(
                    dom.contains("cell leader"),
                    "no leader in the heat map:\n{dom}"
                );
            }
            "certificates" => {
                assert!(
                    dom.contains(&pd_cert.serial),
                    "serial {} missing:\n{dom}",
                    pd_cert.serial
                );
                assert!(
                    dom.contains(&format!("\">{days}</span>")),
                    "{days} days left missing:\n{dom}"
                );
                for id in &store_ids {
                    assert!(dom.contains(&format!("TiKV {id} gRPC")), "{dom}");
                }
            }
            "audit" => {
                assert!(dom.contains("PASS: 8 endpoints"), "audit verdict:\n{dom}");
                assert!(dom.contains("plaintext refused"), "{dom}");
            }
            "events" => {
                assert!(
                    dom.contains("<span class=\"reason\">plaintext</span>"),
                    "no refused plaintext attempt among the events:\n{dom}"
                );
                assert!(dom.contains("127.0.0.1"), "{dom}");
            }
            "metrics" => {
                assert!(dom.contains("id=\"chart-tso\""), "{dom}");
                assert!(
                    dom.contains("class=\"line\""),
                    "no chart line drawn:\n{dom}"
                );
                assert!(dom.contains("pd_tso_requests_total"), "{dom}");
            }
            _ => unreachable!(),
        }
        let png = dir.join(format!("{name}.png"));
        let _ = std::fs::remove_file(&png);
        let (ok, _) = chromium(
            home.path(),
            &[
                format!("--screenshot={}", png.display()),
                "--window-size=1280,900".into(),
                "--hide-scrollbars".into(),
                url,
            ],
        );
        assert!(ok && png.exists(), "no screenshot of {name}");
    }
    eprintln!(
        "screenshots in {} (browser part took {:?})",
        dir.display(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pd_member_serves_the_dashboard_with_the_leaders_data() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let certs = cluster::Certs::make(&dir.path().join("certs"));
    let tls = certs.client_tls();
    let (procs, addrs) = cluster::pd_members(dir.path(), &certs, 3);
    let logs = || {
        procs
            .iter()
            .map(|p| format!("--- {} ---\n{}", p.name, p.log_text()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    // Until a leader serves, members answer 503 (or are not up yet).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut answers = Vec::new();
    while answers.len() < addrs.len() {
        answers.clear();
        for a in &addrs {
            match http_get(a, "/dashboard/api/overview", Some(tls.clone())).await {
                Ok((200, body)) => answers.push(body),
                _ => break,
            }
        }
        assert!(
            Instant::now() < deadline,
            "not every member served the dashboard within 60 s\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let views: Vec<serde_json::Value> = answers
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    let leader_of = |v: &serde_json::Value| -> Vec<String> {
        v["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["leader"] == true)
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect()
    };
    for v in &views {
        assert_eq!(v["members"].as_array().unwrap().len(), 3, "{v}");
        assert_eq!(leader_of(v).len(), 1, "exactly one leader marked: {v}");
        assert_eq!(
            leader_of(v),
            leader_of(&views[0]),
            "members disagree: {views:?}"
        );
        assert_eq!(v["cluster_id"], views[0]["cluster_id"]);
    }
    // The pages too, on every member (followers forward to the leader).
    for a in &addrs {
        let (code, body) = http_get(a, "/dashboard/", Some(tls.clone())).await.unwrap();
        assert_eq!(code, 200, "{a}: {body}");
        assert!(body.contains("badge leader"), "{a}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_pd_serves_no_dashboard() {
    let _serial = SERIAL.lock().await;
    let c = Cluster::start(false, 1).await;
    for url in URLS {
        let (code, body) = http_get(&c.pd_addr, url, None).await.unwrap();
        assert_eq!(code, 403, "{url}: {body}");
        assert!(body.contains("only over mutual TLS"), "{url}: {body}");
    }
}
