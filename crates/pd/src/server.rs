//! The client port: one listener per client URL serving gRPC (`pdpb.PD`)
//! and the HTTP JSON API on the same connection.
//!
//! ```text
//!  TCP accept ─► tiox_security::serve (client cert required; refused peers
//!      │          are logged with their address and reason, counted, dropped)
//!      ▼
//!  hyper-util auto (HTTP/1.1 or h2) ─► axum Router
//!                                       ├─ /pdpb.PD/*  ─► grpc::PdService
//!                                       ├─ /pd/api/v1/* ─► http::*
//!                                       └─ /metrics
//! ```
//!
//! With TLS configured nothing here speaks plaintext; without it the
//! server logs a loud warning at startup. The wall clock enters the core
//! only through [`now_ms`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tiox_proto::pdpb;
use tiox_security::serve::Port;
use tiox_security::{ServerTls, TlsSettings};
use tokio::net::TcpListener;

use crate::cluster::Cluster;
use crate::config::Validated;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::replication::{member_id, MemberInfo, PeerAddr, Replica};
use crate::storage::Storage;

/// The version PD reports (`/pd/api/v1/version`, StoreHeartbeat).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Unix milliseconds from the wall clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Everything the request handlers share.
#[derive(Debug)]
pub struct State {
    /// The core; `None` while this member is not the serving leader.
    cluster: Mutex<Option<Cluster>>,
    /// The cluster id (fixed).
    pub cluster_id: u64,
    /// This member, as GetMembers and `/members` report it.
    pub member: pdpb::Member,
    /// The validated configuration.
    pub config: Validated,
    /// Counters.
    pub metrics: Metrics,
    /// Unix ms at startup.
    pub started_ms: u64,
    /// Raft replication, when the PD cluster has several members.
    replica: Option<Replica>,
    /// The connection followers forward gRPC calls over.
    pub forwarder: crate::forward::Forwarder,
    /// The etcd watch hub (this member's Watch streams).
    pub etcd: crate::etcd::Hub,
}

/// The locked core of a serving leader.
#[derive(Debug)]
pub struct ClusterGuard<'a>(MutexGuard<'a, Option<Cluster>>);

impl Deref for ClusterGuard<'_> {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        match self.0.as_ref() {
            Some(c) => c,
            None => unreachable!("a ClusterGuard is only made over Some"),
        }
    }
}

impl DerefMut for ClusterGuard<'_> {
    fn deref_mut(&mut self) -> &mut Cluster {
        match self.0.as_mut() {
            Some(c) => c,
            None => unreachable!("a ClusterGuard is only made over Some"),
        }
    }
}

impl State {
    /// The core, locked, if this member serves (single member, or the
    /// Raft leader that has caught up); otherwise `NotLeader` naming the
    /// leader's client URL when known. A poisoned lock (a panic elsewhere)
    /// is recovered: the core's methods leave it consistent between calls.
    pub fn cluster(&self) -> Result<ClusterGuard<'_>> {
        let serving = self
            .replica
            .as_ref()
            .is_none_or(|r| r.status().ready_leader);
        let guard = self.cluster.lock().unwrap_or_else(|p| p.into_inner());
        if serving && guard.is_some() {
            return Ok(ClusterGuard(guard));
        }
        drop(guard);
        let leader = self
            .members_view()
            .1
            .filter(|m| m.member_id != self.member.member_id)
            .and_then(|m| m.client_urls.first().cloned());
        Err(Error::NotLeader { leader })
    }

    /// All members (from `--initial-cluster`, with what each told us about
    /// itself) and the leader, if known and reachable.
    pub fn members_view(&self) -> (Vec<pdpb::Member>, Option<pdpb::Member>) {
        let Some(r) = &self.replica else {
            return (vec![self.member.clone()], Some(self.member.clone()));
        };
        let known: BTreeMap<u64, MemberInfo> = r.members().into_iter().map(|m| (m.id, m)).collect();
        let mut entries: Vec<(String, String)> = self
            .config
            .initial_cluster
            .iter()
            .map(|(n, u)| (n.clone(), u.to_string()))
            .collect();
        for info in known.values() {
            if !entries.iter().any(|(n, _)| *n == info.name) {
                entries.push((
                    info.name.clone(),
                    info.peer_urls.first().cloned().unwrap_or_default(),
                ));
            }
        }
        let voters = r.voters();
        let list: Vec<pdpb::Member> = entries
            .iter()
            .filter(|(name, _)| voters.is_empty() || voters.contains(&member_id(name)))
            .map(|(name, url)| {
                let id = member_id(name);
                if id == self.member.member_id {
                    return self.member.clone();
                }
                match known.get(&id) {
                    Some(info) => pdpb::Member {
                        name: info.name.clone(),
                        member_id: id,
                        peer_urls: info.peer_urls.clone(),
                        client_urls: info.client_urls.clone(),
                        binary_version: VERSION.to_string(),
                        ..Default::default()
                    },
                    None => pdpb::Member {
                        name: name.clone(),
                        member_id: id,
                        peer_urls: vec![url.clone()],
                        ..Default::default()
                    },
                }
            })
            .collect();
        let leader_id = r.status().leader_id;
        let leader = list
            .iter()
            .find(|m| m.member_id == leader_id && !m.client_urls.is_empty())
            .cloned();
        (list, leader)
    }

    /// Adds a member (the leader's side of `--join`); blocks on Raft.
    pub fn add_member(&self, info: MemberInfo) -> Result<Vec<MemberInfo>> {
        let Some(r) = &self.replica else {
            return Err(Error::InvalidValue(
                "this PD runs as a single member without Raft (started without \
                 --initial-cluster), so it cannot be joined; start it with \
                 --initial-cluster name=peer-url to allow members to join"
                    .into(),
            ));
        };
        // Only the serving leader changes membership.
        drop(self.cluster()?);
        r.add_member(info)
    }

    /// Removes the member called `name` (the leader's side of
    /// `pd-ctl member delete name NAME`); blocks on Raft.
    pub fn remove_member(&self, name: &str) -> Result<()> {
        let Some(r) = &self.replica else {
            return Err(Error::InvalidValue(
                "this PD runs as a single member without Raft; there is no member to remove".into(),
            ));
        };
        drop(self.cluster()?);
        r.remove_member(member_id(name))
    }

    /// Members that are up as far as this one can tell: itself and every
    /// peer that has connected to it.
    pub fn reachable_member_ids(&self) -> Vec<u64> {
        match &self.replica {
            None => vec![self.member.member_id],
            Some(r) => r.members().iter().map(|m| m.id).collect(),
        }
    }

    /// Builds the core from the replicated state when this member has
    /// become the serving leader. Blocks on Raft (the TSO window and any
    /// first-start keys are written through it).
    fn take_over(&self) -> Result<Cluster> {
        let Some(r) = &self.replica else {
            return Err(Error::NotLeader { leader: None });
        };
        let storage = Storage::replicated(r.applied_map(), r.proposer());
        let mut cluster = Cluster::with_storage(storage, now_ms(), self.cluster_id)?;
        apply_max_replicas(&mut cluster, self.config.config.replication.max_replicas)?;
        cluster.set_max_store_down_ms(self.config.max_store_down_ms);
        Ok(cluster)
    }

    /// The Raft status, when PD is replicated.
    pub fn raft_status(&self) -> Option<crate::replication::RaftStatus> {
        self.replica.as_ref().map(Replica::status)
    }

    /// The last Raft index applied here (0 for a single member).
    pub fn raft_applied_index(&self) -> u64 {
        self.replica.as_ref().map_or(0, Replica::applied_index)
    }

    /// The TLS settings in use, if any.
    pub fn tls(&self) -> Option<&TlsSettings> {
        self.config.tls.as_ref()
    }
}

/// A PD server with its listeners bound.
#[derive(Debug)]
pub struct Server {
    state: Arc<State>,
    listeners: Vec<TcpListener>,
    acceptor: Option<Arc<ServerTls>>,
    audit: Option<Arc<tiox_security::audit::AuditLog>>,
}

/// A cluster id all initial members compute alike (FNV-1a over the sorted
/// `--initial-cluster` entries; unix seconds are not shared, so unlike the
/// single-member case no time goes in).
fn initial_cluster_id(initial: &[(String, crate::config::Url)]) -> u64 {
    let mut entries: Vec<String> = initial.iter().map(|(n, u)| format!("{n}={u}")).collect();
    entries.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in entries.join(",").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

fn apply_max_replicas(cluster: &mut Cluster, max: u32) -> Result<()> {
    if cluster.meta.cluster.max_peer_count != max {
        let c = tiox_proto::metapb::Cluster {
            id: cluster.cluster_id(),
            max_peer_count: max,
        };
        cluster.put_cluster_config(c)?;
    }
    Ok(())
}

/// Asks a running cluster (the `--join` URLs) to add this member; retries
/// for a while (the cluster may be electing a leader). Returns the members
/// the leader knows, this one included.
async fn request_join(config: &Validated, me: &MemberInfo) -> Result<Vec<MemberInfo>> {
    let tls = match &config.tls {
        Some(s) => Some(Arc::new(
            tiox_security::ClientTls::with_alpn(s.clone(), vec![b"http/1.1".to_vec()])
                .map_err(|e| Error::Tls(e.to_string()))?,
        )),
        None => None,
    };
    let body = serde_json::to_vec(me).unwrap_or_default();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut last_error = String::new();
    while std::time::Instant::now() < deadline {
        for url in &config.join {
            let mut target = url.clone();
            for _hop in 0..2 {
                match post_json(&target, tls.as_ref(), "/pd/api/v1/members", &body).await {
                    Ok((200, resp, _)) => {
                        #[derive(serde::Deserialize)]
                        struct Answer {
                            members: Vec<MemberInfo>,
                        }
                        let a: Answer = serde_json::from_slice(&resp).map_err(|e| {
                            Error::InvalidValue(format!(
                                "{target} answered the join with bad JSON: {e}"
                            ))
                        })?;
                        tracing::info!(via = %target, members = a.members.len(), "joined the PD cluster");
                        return Ok(a.members);
                    }
                    Ok((307 | 308, _, Some(location))) => {
                        let base = location.split("/pd/").next().unwrap_or_default();
                        match crate::config::Url::parse(base, "join redirect") {
                            Ok(u) if u.scheme == target.scheme => target = u,
                            _ => {
                                last_error = format!("{target} redirected to {location}");
                                break;
                            }
                        }
                    }
                    Ok((status, resp, _)) => {
                        last_error = format!(
                            "{target} answered {status}: {}",
                            String::from_utf8_lossy(&resp)
                        );
                        break;
                    }
                    Err(e) => {
                        last_error = format!("{target}: {e}");
                        break;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(Error::InvalidValue(format!(
        "join (--join): could not join the PD cluster within 30s: {last_error}"
    )))
}

type HttpAnswer = (u16, Vec<u8>, Option<String>);

async fn post_json(
    url: &crate::config::Url,
    tls: Option<&Arc<tiox_security::ClientTls>>,
    path: &str,
    body: &[u8],
) -> std::result::Result<HttpAnswer, String> {
    let req = tiox_security::http::Request {
        method: tiox_security::http::Method::POST,
        path,
        json: Some(body),
        agent: "pd-server (tiox)",
        timeout: Duration::from_secs(10),
    };
    let a = tiox_security::http::request(&url.authority(), tls.map(|t| t.as_ref()), &req).await?;
    Ok((a.status, a.body, a.location))
}

/// Builds the core when this member becomes the serving Raft leader and
/// drops it when it stops being one.
async fn follow_leadership(state: Arc<State>) {
    let Some(replica) = &state.replica else {
        return;
    };
    let mut rx = replica.watch();
    loop {
        let serving = rx.borrow_and_update().ready_leader;
        let has = state
            .cluster
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        if serving && !has {
            let st = state.clone();
            match tokio::task::spawn_blocking(move || st.take_over()).await {
                Ok(Ok(c)) => {
                    *state.cluster.lock().unwrap_or_else(|p| p.into_inner()) = Some(c);
                    tracing::info!(name = %state.member.name, "this member is now the serving PD leader");
                }
                Ok(Err(e)) => tracing::warn!("cannot take over as PD leader yet: {e}"),
                Err(e) => tracing::warn!("take-over task failed: {e}"),
            }
        } else if !serving && has {
            *state.cluster.lock().unwrap_or_else(|p| p.into_inner()) = None;
            tracing::info!(name = %state.member.name, "this member stopped serving as PD leader");
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

fn new_cluster_id(now_ms: u64) -> u64 {
    // As PD: unix seconds in the high 32 bits, randomness below.
    let mut r = [0u8; 4];
    if getrandom(&mut r).is_err() {
        r = (now_ms as u32).to_le_bytes();
    }
    ((now_ms / 1000) << 32) | u64::from(u32::from_le_bytes(r))
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

impl Server {
    /// Opens the data directory and binds the client URLs.
    pub async fn bind(config: Validated) -> Result<Server> {
        let now = now_ms();
        let metrics = Metrics::default();
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            Error::InvalidValue(format!(
                "pd-server: --data-dir {}: cannot create it: {e}",
                config.data_dir.display()
            ))
        })?;
        let audit = Some(Arc::new(
            tiox_security::audit::AuditLog::open(
                tiox_security::Component::PdServer,
                "[security] audit-log",
                &config.config.security.audit_log_path(&config.data_dir),
            )
            .map_err(|e| Error::InvalidValue(e.to_string()))?,
        ));
        let replicated = config.replicated;
        let advertise_peer: Vec<String> = config
            .advertise_peer_urls
            .iter()
            .map(ToString::to_string)
            .collect();
        let (cluster, cluster_id, replica) = if replicated {
            let me = MemberInfo {
                id: member_id(&config.config.name),
                name: config.config.name.clone(),
                client_urls: config
                    .advertise_client_urls
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                peer_urls: advertise_peer.clone(),
            };
            let peers = config
                .initial_cluster
                .iter()
                .map(|(name, url)| PeerAddr {
                    id: member_id(name),
                    name: name.clone(),
                    url: url.clone(),
                })
                .collect();
            let joined =
                if !config.join.is_empty() && crate::replication::is_fresh(&config.data_dir)? {
                    Some(request_join(&config, &me).await?)
                } else {
                    None
                };
            let replica = Replica::start(
                &config.data_dir,
                me,
                peers,
                joined,
                &config.peer_urls,
                config.config.replication.raft_log_keep_entries,
                crate::replication::PeerPort {
                    tls: config.tls.clone(),
                    stats: metrics.peer.clone(),
                    audit: audit.clone(),
                },
            )?;
            let stored = replica
                .applied_map()
                .get(b"cluster/id".as_slice())
                .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
                .map(u64::from_be_bytes);
            let id = stored.unwrap_or_else(|| initial_cluster_id(&config.initial_cluster));
            (None, id, Some(replica))
        } else {
            let mut cluster = Cluster::open(&config.data_dir, now, new_cluster_id(now))?;
            apply_max_replicas(&mut cluster, config.config.replication.max_replicas)?;
            cluster.set_max_store_down_ms(config.max_store_down_ms);
            let id = cluster.cluster_id();
            (Some(cluster), id, None)
        };
        let acceptor = match &config.tls {
            Some(settings) => Some(Arc::new(
                ServerTls::new(settings.clone()).map_err(|e| Error::Tls(e.to_string()))?,
            )),
            None => {
                tracing::warn!(
                    "!!! --insecure: TLS IS OFF: pd-server serves PLAINTEXT on {} and anyone who can reach \
                     the port can read and change cluster metadata. Set [security] cacert-path, \
                     cert-path and key-path (or --cacert/--cert/--key) and use https:// URLs. !!!",
                    config.config.client_urls
                );
                None
            }
        };
        let mut listeners = Vec::new();
        for url in &config.client_urls {
            let addr = url.authority();
            let l = TcpListener::bind(&addr)
                .await
                .map_err(|source| Error::Listen {
                    addr: addr.clone(),
                    source,
                })?;
            listeners.push(l);
        }
        let peer_urls = advertise_peer;
        let member = pdpb::Member {
            name: config.config.name.clone(),
            member_id: member_id(&config.config.name),
            client_urls: config
                .advertise_client_urls
                .iter()
                .map(ToString::to_string)
                .collect(),
            peer_urls,
            binary_version: VERSION.to_string(),
            deploy_path: std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.display().to_string()))
                .unwrap_or_default(),
            ..Default::default()
        };
        let state = Arc::new(State {
            cluster_id,
            cluster: Mutex::new(cluster),
            member,
            config,
            metrics,
            started_ms: now,
            replica,
            forwarder: crate::forward::Forwarder::default(),
            etcd: crate::etcd::Hub::default(),
        });
        Ok(Server {
            state,
            listeners,
            acceptor,
            audit,
        })
    }

    /// The bound client addresses.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The shared state (for tests and benchmarks).
    pub fn state(&self) -> Arc<State> {
        self.state.clone()
    }

    /// Serves until the process ends.
    pub async fn run(self) {
        if self.state.replica.is_some() {
            tokio::spawn(follow_leadership(self.state.clone()));
        }
        tokio::spawn(crate::etcd::expire_leases(self.state.clone()));
        let app = crate::http::router(self.state.clone());
        let mut tasks = Vec::new();
        for listener in self.listeners {
            let port = Port::new(
                "pd-server client port",
                self.acceptor.clone(),
                self.state.metrics.client.clone(),
            )
            .with_audit(self.audit.clone());
            tasks.push(tokio::spawn(tiox_security::serve::serve(
                listener,
                port,
                app.clone(),
            )));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}
