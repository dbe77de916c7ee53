//! The SQL compatibility suite in-process: every `tests/sql/*.slt` file
//! runs against the SQL engine over a temporary embedded store
//! (`tiox_sql::store::Store::temporary`, the real request layer and MVCC
//! code of `tiox-kv`), served on a 127.0.0.1 port by this test process and
//! reached through a real MySQL client. No process is started; the same
//! files run against a real cluster in `crates/bin/tests/sql_logic.rs`.
//! The dialect and runner: `slt/mod.rs`. `SLT_FILTER=substr` runs only the
//! files whose name contains `substr`; `UPDATE_SLT=1` rewrites expected
//! rows (review the diff against MySQL).

mod slt;

use std::sync::Arc;

use tiox_sql::backend::Backend;
use tiox_sql::engine::Engine;
use tiox_sql::store::Store;
use tiox_sql::users::{MemoryUserStore, UserRecord};
use tiox_sql::{Settings, Shared};

/// Serves the engine over a temporary embedded store on a free port
/// (root@'%' without a password); returns the port and the store.
async fn serve_embedded() -> (u16, Store) {
    let store = Store::temporary(None).expect("temporary store");
    let engine = Engine::open(store.txn()).await.expect("engine");
    let root = UserRecord::root(String::new());
    let shared = Shared::new(
        Arc::new(MemoryUserStore::new(vec![root])),
        None,
        Settings::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("local address").port();
    let backend: Arc<dyn Backend> = Arc::new(engine);
    tokio::spawn(tiox_sql::serve(listener, shared, backend));
    (port, store)
}

/// As tidb-server runs statements: worker threads with 16 MiB stacks.
#[test]
fn sql_logic_files_match_mysql_behaviour_on_the_embedded_store() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(16 << 20)
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(run_all());
}

async fn run_all() {
    let mut files = slt::slt_files();
    files.retain(|f| match slt::cluster_only(f) {
        Some(reason) => {
            eprintln!("{}: cluster only ({reason})", f.display());
            false
        }
        None => true,
    });
    let (port, _store) = serve_embedded().await;
    slt::run_files(port, &files).await;
}
