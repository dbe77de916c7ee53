//! Acceptance: the Debian `sysbench` runs its eight OLTP workloads against
//! PD + 3 TiKV (mutual TLS on every cluster link) + tidb-server with MySQL
//! TLS from the separate `mysql/` CA, with `--mysql-ssl=on`, once with
//! server-side prepared statements (`--db-ps-mode=auto`, the default) and
//! once without (`--db-ps-mode=disable`). Each workload is prepared, run
//! and cleaned up; every step must exit 0 without `FATAL`, and the only
//! errors sysbench may skip are deadlocks (1213) and lock wait timeouts
//! (1205), and only a few of them.
//!
//! sysbench reads `client-key.pem`, `client-cert.pem` and `cacert.pem`
//! from its working directory, so it runs in a directory holding copies of
//! the MySQL client certificate. The server requires secure transport and
//! the sysbench account `REQUIRE X509`, so a run that silently fell back to
//! plaintext, or presented no client certificate, could not log in.
//!
//! A missing `sysbench` binary skips the test LOUDLY (fails when `CI` is
//! set: `.ci/run` installs it).

#[path = "support/cluster.rs"]
mod cluster;
mod tidb_common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use cluster::Cluster;
use tidb_common::{missing, mysql, mysql_client, TidbServer};

const WORKLOADS: [&str; 8] = [
    "oltp_point_select",
    "oltp_read_only",
    "oltp_read_write",
    "oltp_write_only",
    "oltp_insert",
    "oltp_update_index",
    "oltp_update_non_index",
    "oltp_delete",
];

/// The only errors sysbench is allowed to skip (and retry the event).
const IGNORED: &str = "1213,1205";

/// What one sysbench step printed.
struct Step {
    what: String,
    ok: bool,
    out: String,
}

impl Step {
    /// `name: N` on a line of the statistics, if present.
    fn counter(&self, name: &str) -> Option<u64> {
        self.out.lines().find_map(|l| {
            let rest = l.trim_start().strip_prefix(name)?.trim_start();
            rest.split_whitespace().next()?.parse().ok()
        })
    }

    /// Exit 0 and no FATAL line.
    fn check(&self) {
        assert!(
            self.ok && !self.out.contains("FATAL"),
            "{} failed:\n{}",
            self.what,
            self.out
        );
    }
}

fn sysbench(dir: &Path, port: u16, workload: &str, ps_mode: &str, cmd: &str) -> Step {
    let out = Command::new("sysbench")
        .current_dir(dir)
        .args([
            "--db-driver=mysql",
            "--mysql-host=127.0.0.1",
            &format!("--mysql-port={port}"),
            "--mysql-user=sbtest",
            "--mysql-password=sb-pw-1",
            "--mysql-db=sbtest",
            "--mysql-ssl=on",
            &format!("--mysql-ignore-errors={IGNORED}"),
            &format!("--db-ps-mode={ps_mode}"),
            "--tables=2",
            "--table-size=200",
            "--threads=4",
            "--time=2",
            workload,
            cmd,
        ])
        .output()
        .expect("run sysbench");
    Step {
        what: format!("sysbench {workload} {cmd} --db-ps-mode={ps_mode}"),
        ok: out.status.success(),
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn in_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysbench_oltp_suite_over_tls_with_and_without_prepared_statements() {
    const TEST: &str = "sysbench_oltp_suite_over_tls_with_and_without_prepared_statements";
    if !in_path("sysbench") {
        missing("sysbench (Debian package `sysbench`)", TEST);
        return;
    }
    let Some(client) = mysql_client(TEST) else {
        return;
    };
    let started = Instant::now();
    let c = Cluster::start(true, 3).await;
    let certs = c.certs.as_ref().expect("TLS cluster");
    let work = tempfile::tempdir().expect("tempdir");
    let server = TidbServer::start(
        work.path(),
        &[
            "--store=tikv".into(),
            format!("--path={}", c.pd_addr),
            format!("--cluster-ssl-ca={}", certs.path("ca.pem")),
            format!("--cluster-ssl-cert={}", certs.path("tidb-server.pem")),
            format!("--cluster-ssl-key={}", certs.path("tidb-server-key.pem")),
            format!("--ssl-ca={}", certs.path("mysql/ca.pem")),
            format!("--ssl-cert={}", certs.path("mysql/server.pem")),
            format!("--ssl-key={}", certs.path("mysql/server-key.pem")),
            "--require-secure-transport".into(),
            "--initialize-insecure".into(),
        ],
    );
    let tls = [
        format!("--ssl-ca={}", certs.path("mysql/ca.pem")),
        format!("--ssl-cert={}", certs.path("mysql/client.pem")),
        format!("--ssl-key={}", certs.path("mysql/client-key.pem")),
    ];
    let r = mysql(
        &client,
        &server,
        "root",
        None,
        &tls,
        "CREATE DATABASE sbtest; \
         CREATE USER 'sbtest'@'%' IDENTIFIED BY 'sb-pw-1' REQUIRE X509; \
         GRANT ALL PRIVILEGES ON *.* TO 'sbtest'@'%'",
    );
    assert!(r.ok, "setup: {r:?}\n{}", server.log());

    // sysbench's fixed file names for --mysql-ssl=on.
    let sb_dir = tempfile::tempdir().expect("tempdir");
    for (from, to) in [
        ("mysql/ca.pem", "cacert.pem"),
        ("mysql/client.pem", "client-cert.pem"),
        ("mysql/client-key.pem", "client-key.pem"),
    ] {
        std::fs::copy(certs.path(from), sb_dir.path().join(to)).expect("copy certificate");
    }
    eprintln!("cluster up in {:?}", started.elapsed());

    for ps_mode in ["auto", "disable"] {
        for workload in WORKLOADS {
            let t = Instant::now();
            let dump = |s: &Step| format!("{}\n--- tidb-server ---\n{}", s.out, server.log());
            let prepare = sysbench(sb_dir.path(), server.port, workload, ps_mode, "prepare");
            if !prepare.ok || prepare.out.contains("FATAL") {
                panic!("{} failed:\n{}", prepare.what, dump(&prepare));
            }
            let run = sysbench(sb_dir.path(), server.port, workload, ps_mode, "run");
            if !run.ok || run.out.contains("FATAL") {
                panic!("{} failed:\n{}", run.what, dump(&run));
            }
            let transactions = run
                .counter("transactions:")
                .unwrap_or_else(|| panic!("{}: no transaction count:\n{}", run.what, run.out));
            let ignored = run
                .counter("ignored errors:")
                .unwrap_or_else(|| panic!("{}: no ignored-error count:\n{}", run.what, run.out));
            // A counter named plainly "errors:" (newer sysbench) must be 0.
            if let Some(errors) = run.counter("errors:") {
                assert_eq!(errors, 0, "{}:\n{}", run.what, run.out);
            }
            assert!(transactions > 0, "{}: nothing done:\n{}", run.what, run.out);
            // Deadlocks and lock wait timeouts happen on 2 x 200 rows with 4
            // threads, but they stay rare.
            assert!(
                ignored <= 10 + transactions / 5,
                "{}: {ignored} ignored errors ({IGNORED}) for {transactions} transactions:\n{}",
                run.what,
                run.out
            );
            let cleanup = sysbench(sb_dir.path(), server.port, workload, ps_mode, "cleanup");
            cleanup.check();
            eprintln!(
                "{workload:<22} ps-mode={ps_mode:<7} {transactions:>6} transactions, \
                 {ignored} ignored errors, {:.1?}",
                t.elapsed()
            );
        }
    }
    eprintln!("total {:?}", started.elapsed());
}
