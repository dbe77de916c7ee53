//! PD speaks etcd v3: the gRPC services etcd clients (etcdctl, TiDB's and
//! client-go's etcd client) call on PD's client port, over the same mutual
//! TLS and allow-lists as `pdpb.PD`.
//!
//! ```text
//!  client port ─► forward::forward_grpc ── follower: to the leader (all but
//!       │                                   MemberList and Status)
//!       ▼ leader
//!  kv / watch / lease / cluster / maintenance  (one file per service)
//!       │ State::cluster() (the leader's core, locked)
//!       ▼
//!  store::Store ── writes ─► Storage ─► Raft (one entry per etcd write)
//!       │ events of each write
//!       ▼
//!  Hub (broadcast) ─► every Watch stream of this member
//! ```
//!
//! Reads and watches are served by the serving PD leader only (a follower
//! forwards them), so they are linearizable. Lease expiry is decided by the
//! leader, which proposes the revokes ([`expire_leases`]); a new leader
//! starts every lease's TTL over, as etcd does. Not served: Auth, the
//! membership-changing Cluster RPCs, and Maintenance other than Status;
//! they are answered `Unimplemented`.

pub mod cluster;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod store;
pub mod watch;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tiox_proto::etcdserverpb as pb;
use tiox_proto::mvccpb;
use tokio::sync::broadcast;

use crate::server::{now_ms, State};

/// What an etcd request can fail with; each maps to the gRPC code and the
/// `etcdserver: ...` message etcd clients recognise.
#[derive(Debug)]
pub enum Error {
    /// The request has no key.
    EmptyKey,
    /// The revision asked for was compacted away: read a newer one.
    Compacted,
    /// The revision asked for is above the current one.
    FutureRevision,
    /// No such lease (or it expired).
    LeaseNotFound,
    /// A lease with this id exists already.
    LeaseExists,
    /// `ignore_value`/`ignore_lease` on a key that does not exist.
    KeyNotFound,
    /// A transaction writes one key twice.
    DuplicateKey,
    /// PD itself failed (not the leader, storage); the client retries.
    Pd(crate::Error),
}

/// Result alias for the etcd module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::Error> for Error {
    fn from(e: crate::Error) -> Error {
        Error::Pd(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::EmptyKey => "etcdserver: key is not provided",
            Error::Compacted => "etcdserver: mvcc: required revision has been compacted",
            Error::FutureRevision => "etcdserver: mvcc: required revision is a future revision",
            Error::LeaseNotFound => "etcdserver: requested lease not found",
            Error::LeaseExists => "etcdserver: lease already exists",
            Error::KeyNotFound => "etcdserver: key not found",
            Error::DuplicateKey => "etcdserver: duplicate key given in txn request",
            Error::Pd(crate::Error::NotLeader { leader: None }) => "etcdserver: no leader",
            Error::Pd(crate::Error::NotLeader { .. }) => "etcdserver: not leader",
            Error::Pd(e) => return write!(f, "etcdserver: {e}"),
        })
    }
}

impl std::error::Error for Error {}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> tonic::Status {
        use tonic::Code;
        let code = match &e {
            Error::EmptyKey | Error::KeyNotFound | Error::DuplicateKey => Code::InvalidArgument,
            Error::Compacted | Error::FutureRevision => Code::OutOfRange,
            Error::LeaseNotFound => Code::NotFound,
            Error::LeaseExists => Code::FailedPrecondition,
            Error::Pd(crate::Error::NotLeader { .. }) => Code::Unavailable,
            Error::Pd(crate::Error::InvalidValue(_)) => Code::InvalidArgument,
            Error::Pd(_) => Code::Internal,
        };
        tonic::Status::new(code, e.to_string())
    }
}

/// One revision's events, as published to the watch streams.
#[derive(Debug)]
pub struct Published {
    /// The revision.
    pub revision: i64,
    /// Its events, with `prev_kv` filled in.
    pub events: Vec<mvccpb::Event>,
}

/// Fans each write's events out to this member's watch streams. Publishing
/// happens under the core's lock, right after the write, so the order is
/// the revision order.
#[derive(Debug)]
pub struct Hub {
    tx: broadcast::Sender<Arc<Published>>,
}

impl Default for Hub {
    fn default() -> Hub {
        Hub {
            tx: broadcast::channel(4096).0,
        }
    }
}

impl Hub {
    /// Publishes a write (nothing if it changed no key).
    pub fn publish(&self, revision: i64, written: store::Written) {
        if !written.events.is_empty() {
            let _ = self.tx.send(Arc::new(Published {
                revision,
                events: written.events,
            }));
        }
    }

    /// A receiver of everything published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.tx.subscribe()
    }
}

impl State {
    /// An etcd response header at `revision`.
    pub fn etcd_header(&self, revision: i64) -> pb::ResponseHeader {
        pb::ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member.member_id,
            revision,
            raft_term: self.raft_status().map_or(1, |s| s.term),
        }
    }
}

/// The leader's lease keeper: every half second, revokes the leases whose
/// TTL has run out (each revoke is one replicated write) and publishes the
/// deletions. Runs for the life of the server; does nothing on a follower.
pub async fn expire_leases(state: Arc<State>) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(mut c) = state.cluster() else {
            continue;
        };
        let (store, storage) = c.etcd();
        for id in store.expired_leases(now_ms()) {
            match store.lease_revoke(storage, id) {
                Ok(w) => {
                    tracing::debug!(lease = id, keys = w.events.len(), "etcd lease expired");
                    state.etcd.publish(store.revision(), w);
                }
                Err(e) => {
                    tracing::warn!(lease = id, "cannot revoke an expired etcd lease: {e}");
                    break;
                }
            }
        }
    }
}

/// Adds the etcd services to the client port's gRPC routes.
pub fn add_services(routes: tonic::service::Routes, state: &Arc<State>) -> tonic::service::Routes {
    use tiox_proto::etcdserverpb::{
        cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
        maintenance_server::MaintenanceServer, watch_server::WatchServer,
    };
    routes
        .add_service(KvServer::new(kv::KvService::new(state.clone())))
        .add_service(WatchServer::new(watch::WatchService::new(state.clone())))
        .add_service(LeaseServer::new(lease::LeaseService::new(state.clone())))
        .add_service(ClusterServer::new(cluster::ClusterService::new(
            state.clone(),
        )))
        .add_service(MaintenanceServer::new(
            maintenance::MaintenanceService::new(state.clone()),
        ))
}

/// Whether a follower forwards this gRPC path to the leader: every etcd
/// call but the two each member answers for itself.
pub fn forwarded(path: &str) -> bool {
    path.starts_with("/etcdserverpb.")
        && path != "/etcdserverpb.Cluster/MemberList"
        && path != "/etcdserverpb.Maintenance/Status"
}

/// The etcd RPCs PD serves; any other `/etcdserverpb.*` call is answered
/// [`unsupported`].
const SERVED: &[&str] = &[
    "/etcdserverpb.KV/Range",
    "/etcdserverpb.KV/Put",
    "/etcdserverpb.KV/DeleteRange",
    "/etcdserverpb.KV/Txn",
    "/etcdserverpb.KV/Compact",
    "/etcdserverpb.Watch/Watch",
    "/etcdserverpb.Lease/LeaseGrant",
    "/etcdserverpb.Lease/LeaseRevoke",
    "/etcdserverpb.Lease/LeaseKeepAlive",
    "/etcdserverpb.Lease/LeaseTimeToLive",
    "/etcdserverpb.Lease/LeaseLeases",
    "/etcdserverpb.Cluster/MemberList",
    "/etcdserverpb.Maintenance/Status",
];

/// gRPC `Unimplemented` with an etcd-style message for an etcd RPC PD does
/// not serve (Auth, membership changes, most of Maintenance); `None` for
/// any other path.
pub fn unsupported(path: &str) -> Option<axum::response::Response> {
    if !path.starts_with("/etcdserverpb.") || SERVED.contains(&path) {
        return None;
    }
    let method = path.trim_start_matches("/etcdserverpb.");
    let status = tonic::Status::unimplemented(format!(
        "etcdserver: {method} is not supported by tiox's PD (it serves KV, Watch, Lease, \
         Cluster/MemberList and Maintenance/Status)"
    ));
    Some(status.into_http())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followers_forward_etcd_calls_but_answer_member_list_and_status_themselves() {
        assert!(forwarded("/etcdserverpb.KV/Put"));
        assert!(forwarded("/etcdserverpb.Watch/Watch"));
        assert!(!forwarded("/etcdserverpb.Cluster/MemberList"));
        assert!(!forwarded("/etcdserverpb.Maintenance/Status"));
        assert!(!forwarded("/pdpb.PD/Tso"));
    }

    #[test]
    fn rpcs_not_served_are_unimplemented_with_an_etcd_message() {
        let resp = unsupported("/etcdserverpb.Auth/UserList").expect("refused");
        let h = resp.headers();
        assert_eq!(h.get("grpc-status").unwrap(), "12");
        let msg = h.get("grpc-message").unwrap().to_str().unwrap();
        assert!(msg.starts_with("etcdserver:"), "{msg}");
        assert!(unsupported("/etcdserverpb.Cluster/MemberAdd").is_some());
        assert!(unsupported("/etcdserverpb.KV/Range").is_none());
        assert!(unsupported("/pdpb.PD/Tso").is_none());
    }

    #[test]
    fn errors_carry_etcds_codes_and_messages() {
        let s: tonic::Status = Error::Compacted.into();
        assert_eq!(s.code(), tonic::Code::OutOfRange);
        assert_eq!(
            s.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        let s: tonic::Status = Error::Pd(crate::Error::NotLeader { leader: None }).into();
        assert_eq!(s.code(), tonic::Code::Unavailable);
        let s: tonic::Status = Error::LeaseNotFound.into();
        assert_eq!(s.code(), tonic::Code::NotFound);
    }
}
