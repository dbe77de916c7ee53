//! Proof on the wire: loopback traffic between the components is captured
//! (tcpdump) while a marker value is written; the marker must never appear
//! in clear. A control run on a plaintext setup proves the capture sees it
//! when it is not encrypted.
//!
//! Two workloads: the KV client writing to PD + TiKV, and SQL: the marker is
//! INSERTed over MySQL TLS into a table of `tidb-server --store=tikv` on a
//! 3-replica mutual-TLS cluster and read back with SELECT, with the MySQL
//! port and the cluster's ports (PD, TiKV gRPC, which also carries the
//! TiKV-to-TiKV Raft traffic) captured separately.
//!
//! Needs tcpdump and the right to capture (root): `.ci/run` installs it.
//! Elsewhere the test is skipped loudly; under CI=true it fails instead.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/sql.rs"]
mod sql;
mod tidb_common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cluster::Cluster;
use mysql_async::prelude::*;

/// The scenarios run one after the other (several clusters on 2 cores).
static SERIAL: std::sync::LazyLock<tokio::sync::Mutex<()>> =
    std::sync::LazyLock::new(|| tokio::sync::Mutex::new(()));

fn can_capture() -> bool {
    let ok = Command::new("tcpdump")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("CI").is_ok() {
            panic!("tcpdump is not installed but CI is set; .ci/run must install it");
        }
        eprintln!(
            "\n*** SKIPPED wire proof: tcpdump is not installed (apt-get install tcpdump) ***\n"
        );
    }
    ok
}

struct Capture {
    child: Child,
    file: std::path::PathBuf,
}

impl Capture {
    /// Captures loopback traffic on `ports` into a file.
    fn start(dir: &std::path::Path, name: &str, ports: &[u16]) -> Option<Capture> {
        let file = dir.join(format!("{name}.pcap"));
        let filter = ports
            .iter()
            .map(|p| format!("port {p}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let child = Command::new("tcpdump")
            .args(["-i", "lo", "-U", "-s", "0", "-w", file.to_str()?, &filter])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        std::thread::sleep(Duration::from_millis(800));
        Some(Capture { child, file })
    }

    /// Stops the capture and returns the bytes captured.
    fn finish(mut self) -> Vec<u8> {
        std::thread::sleep(Duration::from_millis(500));
        // SAFETY: kill(2) on our own child's pid; SIGINT makes tcpdump flush.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGINT);
        }
        let _ = self.child.wait();
        std::fs::read(&self.file).unwrap_or_default()
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    occurrences(hay, needle) > 0
}

fn occurrences(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

fn port(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap()
}

async fn write_marker(c: &Cluster, marker: &[u8]) {
    let client = c.client().await;
    client.raw().put(b"wire/raw", marker).await.unwrap();
    let mut t = client.txn().begin().await.unwrap();
    t.put(b"wire/txn".to_vec(), marker.to_vec());
    t.commit().await.unwrap();
    assert_eq!(
        client.raw().get(b"wire/raw").await.unwrap().as_deref(),
        Some(marker)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marker_written_over_mutual_tls_never_appears_in_clear_on_the_wire() {
    if !can_capture() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let marker = b"TIOX-WIRE-MARKER-7f3a9c";
    let dir = tempfile::tempdir().unwrap();

    // Control: on a plaintext cluster the capture does see the marker.
    let plain = Cluster::start(false, 1).await;
    let Some(cap) = Capture::start(
        dir.path(),
        "plain",
        &[port(&plain.pd_addr), port(&plain.kv_addrs[0])],
    ) else {
        panic!("tcpdump could not start (capturing needs root)");
    };
    write_marker(&plain, marker).await;
    let bytes = cap.finish();
    assert!(
        contains(&bytes, marker),
        "the control capture ({} bytes) must see the plaintext marker",
        bytes.len()
    );

    // The real run: mutual TLS on every link.
    let tls = Cluster::start(true, 1).await;
    let cap = Capture::start(
        dir.path(),
        "tls",
        &[port(&tls.pd_addr), port(&tls.kv_addrs[0])],
    )
    .unwrap();
    write_marker(&tls, marker).await;
    let bytes = cap.finish();
    assert!(
        bytes.len() > 1000,
        "the TLS capture saw the traffic ({} bytes)",
        bytes.len()
    );
    assert!(
        !contains(&bytes, marker),
        "the marker appeared in clear on a mutual-TLS link"
    );
}

/// What the captures of one SQL run saw.
struct SqlCapture {
    /// Traffic on tidb-server's MySQL port.
    mysql: Vec<u8>,
    /// Traffic on PD's and every TiKV's port (client and Raft peer links).
    cluster: Vec<u8>,
}

/// A 3-store cluster (mutual TLS everywhere and TLS on the MySQL port if
/// `tls`) with tidb-server; the marker is INSERTed through SQL (text and
/// prepared statement) and read back while both captures run.
async fn sql_run(tls: bool, dir: &std::path::Path, marker: &str) -> SqlCapture {
    let c = Cluster::start(tls, 3).await;
    c.wait_for_voters(3).await;
    let work = tempfile::tempdir().unwrap();
    let s = sql::start_tidb(&c, work.path());
    let mut conn = sql::connect(&c, &s).await;
    if tls {
        let cipher: Option<(String, String)> = conn
            .query_first("SHOW STATUS LIKE 'Ssl_cipher'")
            .await
            .unwrap();
        assert!(
            cipher.is_some_and(|(_, v)| !v.is_empty()),
            "the MySQL connection is TLS"
        );
    }
    conn.query_drop("CREATE DATABASE wire").await.unwrap();
    conn.query_drop("CREATE TABLE wire.t (id INT PRIMARY KEY, v VARCHAR(64))")
        .await
        .unwrap();
    let name = if tls { "sql-tls" } else { "sql-plain" };
    let mysql_cap = Capture::start(dir, &format!("{name}-mysql"), &[s.port])
        .expect("tcpdump could not start (capturing needs root)");
    let mut cluster_ports = vec![port(&c.pd_addr)];
    cluster_ports.extend(c.kv_addrs.iter().map(|a| port(a)));
    let cluster_cap = Capture::start(dir, &format!("{name}-cluster"), &cluster_ports).unwrap();
    conn.query_drop(format!("INSERT INTO wire.t VALUES (1, '{marker}')"))
        .await
        .unwrap();
    conn.exec_drop("INSERT INTO wire.t VALUES (?, ?)", (2, marker))
        .await
        .unwrap();
    let read: Vec<String> = conn
        .query("SELECT v FROM wire.t ORDER BY id")
        .await
        .unwrap();
    assert_eq!(read, vec![marker.to_string(), marker.to_string()]);
    // Replication to the followers is asynchronous to the client's ack.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mysql = mysql_cap.finish();
    let cluster = cluster_cap.finish();
    drop(s);
    SqlCapture { mysql, cluster }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marker_inserted_through_sql_never_appears_in_clear_on_any_link() {
    if !can_capture() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let marker = "TIOX-SQL-MARKER-4b1e8d0c";
    let dir = tempfile::tempdir().unwrap();

    // Control: plaintext everywhere; both captures see the marker. Each of
    // the two rows crosses the cluster's ports at least three times (the
    // prewrite to the region's leader and the Raft append to each of the two
    // followers), so the peer links are seen too.
    let plain = sql_run(false, dir.path(), marker).await;
    let on_cluster = occurrences(&plain.cluster, marker.as_bytes());
    eprintln!(
        "plaintext control: marker seen {} times on the MySQL port, {on_cluster} times on PD/TiKV ports",
        occurrences(&plain.mysql, marker.as_bytes())
    );
    assert!(
        contains(&plain.mysql, marker.as_bytes()),
        "the control capture of the MySQL port ({} bytes) must see the plaintext marker",
        plain.mysql.len()
    );
    assert!(
        on_cluster >= 6,
        "the control capture of the cluster's ports ({} bytes) must see each row on the way \
         to the leader and to both followers (seen {on_cluster} times, expected >= 6)",
        plain.cluster.len()
    );

    // The real run: TLS on the MySQL port, mutual TLS on every cluster link.
    let tls = sql_run(true, dir.path(), marker).await;
    for (what, bytes) in [("MySQL port", &tls.mysql), ("PD/TiKV ports", &tls.cluster)] {
        assert!(
            bytes.len() > 1000,
            "the TLS capture of the {what} saw the traffic ({} bytes)",
            bytes.len()
        );
        assert!(
            !contains(bytes, marker.as_bytes()),
            "the marker appeared in clear on the {what}"
        );
    }
}
