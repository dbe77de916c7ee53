//! Where the SQL engine's data lives: the one place that opens the store a
//! `tidb-server` was started with and hands the engine its transactional
//! client.
//!
//! ```text
//!  --store=tikv --path=PD      ─► Store::Cluster  (PD + TiKV over mutual TLS)
//!  --store=unistore --path=DIR ─► Store::Embedded (tiox_kv::unistore at DIR, fsynced)
//!  --store=unistore            ─► Store::Embedded (temporary: removed at exit)
//!                                   └► Store::txn() ─► engine::Engine::open
//! ```
//!
//! Both give the same [`TxnClient`]: the engine, its catalog and its
//! transactions cannot tell them apart (the embedded store runs the
//! store's request layer and MVCC code in-process; see
//! `tiox_kv::unistore`). TiDB's default store is unistore too; here a
//! server without `--path` gets a temporary one, as TiDB's does.

use std::path::Path;
use std::sync::Arc;

use tiox_client::txn::TxnClient;
use tiox_client::ClusterClient;
use tiox_kv::unistore::Unistore;
use tiox_security::TlsSettings;

use crate::error::Error;

/// The store the engine runs on.
#[derive(Clone)]
pub enum Store {
    /// A cluster, through PD.
    Cluster(ClusterClient),
    /// The embedded store in this process.
    Embedded(Arc<Unistore>),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Cluster(_) => f.write_str("Store::Cluster"),
            Store::Embedded(u) => write!(f, "Store::Embedded({u:?})"),
        }
    }
}

impl Store {
    /// Connects to the cluster whose PD answers at `endpoints`.
    pub async fn cluster(endpoints: &[String], tls: Option<TlsSettings>) -> Result<Store, Error> {
        ClusterClient::connect(endpoints, tls)
            .await
            .map(Store::Cluster)
            .map_err(|e| Error::Config(format!("--path {}: {e}", endpoints.join(","))))
    }

    /// Opens the embedded store in `dir` (created if missing); it keeps
    /// its data across restarts.
    pub fn embedded(dir: &Path) -> Result<Store, Error> {
        Unistore::open(dir).map(Store::Embedded).map_err(|e| {
            Error::Config(format!(
                "--store=unistore --path {}: cannot open the embedded store: {e}. Fix: \
                 give a writable directory that no other tidb-server is using",
                dir.display()
            ))
        })
    }

    /// A temporary embedded store in `dir` (cleared first, removed when
    /// the store is dropped), or in a fresh temporary directory.
    pub fn temporary(dir: Option<&Path>) -> Result<Store, Error> {
        match dir {
            Some(d) => Unistore::temporary_at(d),
            None => Unistore::temporary(),
        }
        .map(Store::Embedded)
        .map_err(|e| {
            Error::Config(format!(
                "--store=unistore: cannot create a temporary store: {e}. Fix: give --path DIR \
                 for a lasting store, or make the directory writable"
            ))
        })
    }

    /// The transactional client of this store.
    pub fn txn(&self) -> TxnClient {
        match self {
            Store::Cluster(c) => c.txn(),
            Store::Embedded(u) => u.txn_client(),
        }
    }

    /// Where the data is, for the startup log.
    pub fn describe(&self) -> String {
        match self {
            Store::Cluster(_) => "the cluster".into(),
            Store::Embedded(u) => format!("{u:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_embedded_store_keeps_what_was_committed_when_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let commit_ts = {
            let store = Store::embedded(dir.path()).unwrap();
            let mut t = store.txn().begin().await.unwrap();
            t.put(b"k".to_vec(), b"v".to_vec());
            t.commit().await.unwrap()
        };
        // tidb-server keeps its account file beside the store's files.
        std::fs::write(dir.path().join("users.json"), "[]").unwrap();
        let store = Store::embedded(dir.path()).unwrap();
        assert!(store.describe().contains(&dir.path().display().to_string()));
        let txn = store.txn();
        assert!(txn.current_ts().await.unwrap() > commit_ts);
        assert_eq!(txn.get_latest(b"k").await.unwrap(), Some(b"v".to_vec()));
    }

    #[tokio::test]
    async fn a_temporary_store_starts_empty_and_is_removed_when_dropped() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("scratch");
        std::fs::create_dir_all(dir.join("left-over")).unwrap();
        let store = Store::temporary(Some(&dir)).unwrap();
        assert!(!dir.join("left-over").exists(), "cleared at start");
        let txn = store.txn();
        let mut t = txn.begin().await.unwrap();
        t.put(b"k".to_vec(), b"v".to_vec());
        t.commit().await.unwrap();
        drop((store, txn));
        assert!(!dir.exists(), "removed on drop");
    }

    #[test]
    fn an_unusable_directory_names_the_path_and_the_fix() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let e = Store::embedded(file.path()).unwrap_err().to_string();
        assert!(e.contains(&file.path().display().to_string()), "{e}");
        assert!(e.contains("Fix:"), "{e}");
    }
}
