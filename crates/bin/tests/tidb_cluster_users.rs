//! `--store=tikv`: tidb-server connects to PD and TiKV over mutual TLS with
//! its `cluster-ssl-*` certificate and keeps the accounts in the cluster, so
//! every tidb-server sees the same users.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/sql.rs"]
mod sql;
mod tidb_common;

use cluster::Cluster;
use sql::cluster_args;
use tidb_common::{mysql, mysql_client, plain_args, TidbServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_created_on_one_tidb_server_log_in_on_another() {
    let Some(client) = mysql_client("accounts_created_on_one_tidb_server_log_in_on_another") else {
        return;
    };
    let c = Cluster::start(true, 1).await;
    let (wa, wb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a_args = cluster_args(&c);
    a_args.push("--initialize-insecure".into());
    let a = TidbServer::start(wa.path(), &a_args);
    let b = TidbServer::start(wb.path(), &cluster_args(&c));
    assert!(
        a.log().contains("accounts are kept in the cluster"),
        "{}",
        a.log()
    );

    let r = mysql(
        &client,
        &a,
        "root",
        None,
        &plain_args(),
        "CREATE USER 'alice'@'%' IDENTIFIED BY 'pw-1'; GRANT SELECT ON *.* TO 'alice'@'%'",
    );
    assert!(r.ok, "{r:?}");
    let r = mysql(
        &client,
        &b,
        "alice",
        Some("pw-1"),
        &plain_args(),
        "SELECT CURRENT_USER()",
    );
    assert!(
        r.ok && r.out.contains("alice@%"),
        "the account made on A logs in on B: {r:?}\n{}",
        b.log()
    );

    let r = mysql(
        &client,
        &b,
        "root",
        None,
        &plain_args(),
        "DROP USER 'alice'@'%'",
    );
    assert!(r.ok, "{r:?}");
    let r = mysql(
        &client,
        &a,
        "alice",
        Some("pw-1"),
        &plain_args(),
        "SELECT 1",
    );
    assert!(
        !r.ok && r.err.contains("1045"),
        "the account dropped on B is gone on A: {r:?}"
    );

    // A second --initialize on an initialized cluster is refused.
    let again = TidbServer::try_start(tempfile::tempdir().unwrap().path(), &a_args);
    assert!(again.is_err_and(|e| e.contains("already initialized")));
}
