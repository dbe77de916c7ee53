//! Accounts kept in the cluster (`--store=tikv`): the account table is one
//! transactional key in TiKV, read and written through the cluster client
//! over mutual TLS, so every tidb-server of the cluster sees the same users
//! and grants. Updates are optimistic transactions, retried on a write
//! conflict, so two servers changing accounts at once never lose a change.
//!
//! [`UserStore`] is synchronous (called from the login path); the calls
//! block the current worker with `block_in_place`, which needs the
//! multi-threaded runtime tidb-server runs on.

use std::future::Future;

use tiox_client::txn::TxnClient;

use crate::error::{Error, Result};
use crate::users::{UserRecord, UserStore};

/// The key of the account table (outside any table's key range: TiDB's
/// table keys start with `t`).
pub const USERS_KEY: &[u8] = b"\xffsys/mysql.user";

/// The cluster-backed account table.
pub struct ClusterUserStore {
    txn: TxnClient,
    handle: tokio::runtime::Handle,
}

impl std::fmt::Debug for ClusterUserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterUserStore")
    }
}

fn store_err(e: impl std::fmt::Display) -> Error {
    Error::Store(format!("the cluster's account table: {e}"))
}

fn decode(bytes: Option<Vec<u8>>) -> Result<Vec<UserRecord>> {
    match bytes {
        None => Ok(Vec::new()),
        Some(b) => serde_json::from_slice(&b).map_err(store_err),
    }
}

impl ClusterUserStore {
    /// A store over the cluster's transactions; must be created inside the
    /// (multi-threaded) runtime.
    pub fn new(txn: TxnClient) -> ClusterUserStore {
        ClusterUserStore {
            txn,
            handle: tokio::runtime::Handle::current(),
        }
    }

    fn block<F: Future>(&self, f: F) -> F::Output {
        tokio::task::block_in_place(|| self.handle.block_on(f))
    }
}

impl UserStore for ClusterUserStore {
    fn load(&self) -> Result<Vec<UserRecord>> {
        decode(
            self.block(self.txn.get_latest(USERS_KEY))
                .map_err(store_err)?,
        )
    }

    fn update(&self, change: &mut dyn FnMut(&mut Vec<UserRecord>) -> Result<()>) -> Result<()> {
        for _ in 0..20 {
            let outcome = self.block(async {
                let mut t = self.txn.begin().await.map_err(store_err)?;
                let mut users = decode(t.get(USERS_KEY).await.map_err(store_err)?)?;
                change(&mut users)?;
                t.put(
                    USERS_KEY.to_vec(),
                    serde_json::to_vec(&users).map_err(store_err)?,
                );
                Ok::<_, Error>(t.commit().await)
            })?;
            match outcome {
                Ok(_) => return Ok(()),
                // Another server changed the accounts: redo on the new state.
                Err(tiox_client::Error::Conflict { .. }) => continue,
                Err(e) => return Err(store_err(e)),
            }
        }
        Err(store_err("too many concurrent account changes; retry"))
    }
}
