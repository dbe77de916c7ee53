//! `tidb-server --store=unistore`: the SQL engine over the embedded store
//! in the server's own process, reached by a real MySQL client
//! (`mysql_async`). With `--path DIR` the tables survive a restart (here
//! even a SIGKILL: commits are fsynced before the client hears of them);
//! without it the store is temporary.

mod tidb_common;

use std::path::Path;

use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder};
use tidb_common::*;

async fn connect(s: &TidbServer) -> Conn {
    let opts = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(s.port)
        .prefer_socket(false)
        .user(Some("root"))
        .db_name(Some("test"));
    Conn::new(opts)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", s.log()))
}

fn unistore(path: Option<&Path>, initialize: bool) -> Vec<String> {
    let mut args = vec!["--store=unistore".to_string()];
    if let Some(p) = path {
        args.push(format!("--path={}", p.display()));
    }
    if initialize {
        args.push("--initialize-insecure".into());
    }
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_on_the_embedded_store_survive_a_restart() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let rows: Vec<(i64, String)> = {
        let s = TidbServer::start(work.path(), &unistore(Some(&store), true));
        assert!(
            s.wait_for_log("stored in the embedded store at"),
            "{}",
            s.log()
        );
        let mut c = connect(&s).await;
        c.query_drop(
            "CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(20), KEY (name))",
        )
        .await
        .unwrap();
        c.query_drop("INSERT INTO t (name) VALUES ('ada'), ('grace'), ('edsger')")
            .await
            .unwrap();
        c.query_drop("UPDATE t SET name = 'barbara' WHERE name = 'edsger'")
            .await
            .unwrap();
        let rows = c.query("SELECT id, name FROM t ORDER BY id").await.unwrap();
        c.disconnect().await.unwrap();
        rows
        // Dropping the server kills it (SIGKILL): no clean shutdown.
    };
    assert_eq!(rows.len(), 3);
    let s = TidbServer::start(work.path(), &unistore(Some(&store), false));
    let mut c = connect(&s).await;
    let again: Vec<(i64, String)> = c.query("SELECT id, name FROM t ORDER BY id").await.unwrap();
    assert_eq!(again, rows, "the rows read back after the restart");
    let by_index: Vec<i64> = c
        .query("SELECT id FROM t WHERE name = 'barbara'")
        .await
        .unwrap();
    assert_eq!(by_index, vec![rows[2].0], "the index survived too");
    // New writes go on after the old ones (timestamps and ids move on).
    c.query_drop("INSERT INTO t (name) VALUES ('alan')")
        .await
        .unwrap();
    let max: Option<i64> = c.query_first("SELECT MAX(id) FROM t").await.unwrap();
    assert!(max.unwrap() > rows[2].0, "{max:?}");
    c.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_path_the_embedded_store_is_temporary() {
    let work = tempfile::tempdir().unwrap();
    {
        let s = TidbServer::start(work.path(), &unistore(None, true));
        assert!(s.wait_for_log("temporary store"), "{}", s.log());
        let mut c = connect(&s).await;
        c.query_drop("CREATE TABLE t (a INT PRIMARY KEY)")
            .await
            .unwrap();
        c.query_drop("INSERT INTO t VALUES (1)").await.unwrap();
        let n: Option<i64> = c.query_first("SELECT COUNT(*) FROM t").await.unwrap();
        assert_eq!(n, Some(1));
        c.disconnect().await.unwrap();
    }
    // Accounts are in --data-dir and stay; the tables were temporary.
    let s = TidbServer::start(work.path(), &unistore(None, false));
    let mut c = connect(&s).await;
    let err = c
        .query_drop("SELECT * FROM t")
        .await
        .expect_err("the table is gone");
    assert!(
        matches!(&err, mysql_async::Error::Server(e) if e.code == 1146),
        "{err:?}"
    );
    c.disconnect().await.unwrap();
}
