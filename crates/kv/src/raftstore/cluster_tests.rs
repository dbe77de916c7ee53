//! In-process multi-store scenarios: three Raft loops, each with its own
//! engine in a temporary directory, joined by a router task instead of
//! gRPC, with a switch that cuts a store off (a partition). The same store
//! code as production runs; only the transport's far end is replaced.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tiox_engine::Engine as _;
use tiox_proto::{eraftpb, kvrpcpb, metapb, pdpb};

use super::store::{self, StoreHandle};
use super::transport::Transport;
use crate::codec::raw_key;
use crate::command::{Cmd, Command};
use crate::engine_fjall::{FjallEngine, FjallOptions};

const REGION: u64 = 1;

struct Node {
    engine: FjallEngine,
    handle: StoreHandle,
    _dir: tempfile::TempDir,
}

struct Net {
    nodes: HashMap<u64, Node>,
    cut: Arc<Mutex<HashSet<u64>>>,
    /// For every MsgTimeoutNow a store sent (a leadership transfer's
    /// "campaign now"): whether that store still published a read lease
    /// for the region at that moment, as seen on its Raft thread.
    timeout_now_with_lease: Arc<Mutex<Vec<bool>>>,
}

impl Net {
    /// Store 1 holds the region (peer 101); stores 2 and 3 start empty.
    fn start() -> Net {
        let routes: Arc<Mutex<HashMap<u64, StoreHandle>>> = Arc::default();
        let cut: Arc<Mutex<HashSet<u64>>> = Arc::default();
        let timeout_now_with_lease: Arc<Mutex<Vec<bool>>> = Arc::default();
        let mut nodes = HashMap::new();
        for store_id in 1..=3u64 {
            let dir = tempfile::tempdir().unwrap();
            let engine = FjallEngine::open(dir.path(), &FjallOptions::default()).unwrap();
            if store_id == 1 {
                let region = metapb::Region {
                    id: REGION,
                    region_epoch: Some(metapb::RegionEpoch {
                        conf_ver: 1,
                        version: 1,
                    }),
                    peers: vec![metapb::Peer {
                        id: 101,
                        store_id: 1,
                        ..Default::default()
                    }],
                    ..Default::default()
                };
                store::write_new_region(&engine, &region).unwrap();
            }
            let (transport, mut rx) = Transport::new();
            let me: Arc<std::sync::OnceLock<StoreHandle>> = Arc::default();
            let transport = transport.with_tap({
                let (me, seen) = (me.clone(), timeout_now_with_lease.clone());
                Arc::new(move |_to, msg| {
                    let timeout_now = msg
                        .message
                        .as_ref()
                        .is_some_and(|m| m.msg_type == eraftpb::MessageType::MsgTimeoutNow as i32);
                    if let (true, Some(h)) = (timeout_now, me.get()) {
                        seen.lock().unwrap().push(h.can_read_now(msg.region_id));
                    }
                })
            });
            let handle = store::start(engine.clone(), store_id, transport).unwrap();
            let _ = me.set(handle.clone());
            routes.lock().unwrap().insert(store_id, handle.clone());
            let (routes, cut) = (routes.clone(), cut.clone());
            tokio::spawn(async move {
                while let Some((to, msg)) = rx.recv().await {
                    let blocked = {
                        let cut = cut.lock().unwrap();
                        cut.contains(&store_id) || cut.contains(&to)
                    };
                    if blocked {
                        continue;
                    }
                    let target = routes.lock().unwrap().get(&to).cloned();
                    if let Some(h) = target {
                        let _ = h.step(msg);
                    }
                }
            });
            nodes.insert(
                store_id,
                Node {
                    engine,
                    handle,
                    _dir: dir,
                },
            );
        }
        Net {
            nodes,
            cut,
            timeout_now_with_lease,
        }
    }

    fn handle(&self, store_id: u64) -> &StoreHandle {
        &self.nodes[&store_id].handle
    }

    fn leader(&self) -> Option<&StoreHandle> {
        self.nodes
            .values()
            .map(|n| &n.handle)
            .find(|h| h.region(REGION).is_some_and(|r| r.is_leader))
    }

    async fn wait(&self, what: &str, mut ok: impl FnMut(&Net) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ok(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends PD's "add a voter" for `peer_id` on `store_id` to the leader.
    async fn add_voter(&self, peer_id: u64, store_id: u64) {
        let leader = self.leader().unwrap();
        let region = leader.region(REGION).unwrap().region;
        leader.operator(pdpb::RegionHeartbeatResponse {
            region_id: REGION,
            region_epoch: region.region_epoch,
            change_peer: Some(pdpb::ChangePeer {
                peer: Some(metapb::Peer {
                    id: peer_id,
                    store_id,
                    ..Default::default()
                }),
                change_type: eraftpb::ConfChangeType::AddNode as i32,
            }),
            ..Default::default()
        });
        self.wait("the new voter", |n| {
            n.leader().is_some_and(|l| {
                l.region(REGION).is_some_and(|r| {
                    r.region
                        .peers
                        .iter()
                        .any(|p| p.id == peer_id && p.role == metapb::PeerRole::Voter as i32)
                })
            })
        })
        .await;
    }

    async fn put(&self, key: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let Some(leader) = self.leader() else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let cmd = Command {
                now_ms: 1,
                cmd: Some(Cmd::RawPut(kvrpcpb::RawPutRequest {
                    key: key.as_bytes().to_vec(),
                    value: b"v".to_vec(),
                    ..Default::default()
                })),
                ..Default::default()
            };
            match leader.propose(REGION, None, cmd).await {
                Ok(_) => return,
                Err(e) => {
                    assert!(Instant::now() < deadline, "put {key}: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    fn has(&self, store_id: u64, key: &str) -> bool {
        let snap = self.nodes[&store_id].engine.snapshot();
        tiox_engine::Snapshot::get(&snap, tiox_engine::Cf::Default, &raw_key(key.as_bytes()))
            .unwrap()
            .is_some()
    }
}

async fn three_voters() -> Net {
    let net = Net::start();
    net.wait("store 1 to lead", |n| {
        n.handle(1).region(REGION).is_some_and(|r| r.is_leader)
    })
    .await;
    net.put("before").await;
    net.add_voter(102, 2).await;
    net.add_voter(103, 3).await;
    net
}

/// A leader that hands its leadership over must stop serving local reads
/// before the transferee can campaign: the transferee is elected without
/// waiting for the followers' lease (a forced campaign) and may acknowledge
/// writes at once. The lease used to be dropped only in the peer and
/// withdrawn from the published status (what readers on other threads
/// check) after the next round of Readies had already sent MsgTimeoutNow,
/// so a snapshot read could be served from the old leader's stale data
/// (PD balances leaders all the time, most of all after a store restarts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_withdraws_its_read_lease_before_the_transferee_may_campaign() {
    let net = three_voters().await;
    let old = net.leader().unwrap().clone();
    let region = old.region(REGION).unwrap().region;
    let to = *region
        .peers
        .iter()
        .find(|p| p.store_id != old.store_id)
        .unwrap();
    // A fresh lease (confirmed by a quorum): reads are served locally.
    old.read_index(REGION).await.unwrap();
    assert!(old.can_read_now(REGION), "the leader holds a lease");
    old.operator(pdpb::RegionHeartbeatResponse {
        region_id: REGION,
        region_epoch: region.region_epoch,
        transfer_leader: Some(pdpb::TransferLeader {
            peer: Some(to),
            ..Default::default()
        }),
        ..Default::default()
    });
    net.wait("the transferee to lead", |n| {
        n.handle(to.store_id)
            .region(REGION)
            .is_some_and(|r| r.is_leader)
    })
    .await;
    let seen = net.timeout_now_with_lease.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the transfer sent MsgTimeoutNow");
    assert!(
        seen.iter().all(|with_lease| !with_lease),
        "MsgTimeoutNow left while the old leader still published its lease: {seen:?}"
    );
    assert!(!old.can_read_now(REGION));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pd_add_voter_joins_as_learner_gets_a_snapshot_and_is_promoted() {
    let net = three_voters().await;
    // The new peers were created empty and filled by snapshots.
    net.wait("the data on every store", |n| {
        (1..=3).all(|s| n.has(s, "before"))
    })
    .await;
    let r = net.handle(3).region(REGION).unwrap().region;
    assert_eq!(r.peers.len(), 3);
    // 1 + learner 102 + promote 102 + learner 103 + promote 103.
    assert_eq!(r.region_epoch.unwrap().conf_ver, 5);
    net.put("after").await;
    net.wait("replication of a new write", |n| {
        (1..=3).all(|s| n.has(s, "after"))
    })
    .await;
}

/// Healthy followers are never reported down to PD: raft's check_quorum
/// clears their "recently active" mark once per election timeout and the
/// next heartbeat reply sets it again, and a leader that published the
/// cleared mark as a down peer kept the playground (which waits for a
/// cluster with no down peers) waiting forever. A follower cut off is
/// reported down once it has been silent for two election timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_reports_a_follower_down_only_after_it_has_been_silent() {
    let net = three_voters().await;
    net.wait("both followers caught up", |n| {
        (1..=3).all(|s| n.has(s, "before"))
    })
    .await;
    let leader = net.leader().unwrap().clone();
    // Several election timeouts, sampled more often than heartbeats.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let r = leader.region(REGION).unwrap();
        assert!(
            r.down_peers.is_empty(),
            "healthy followers reported down: {:?}",
            r.down_peers
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let victim = *leader
        .region(REGION)
        .unwrap()
        .region
        .peers
        .iter()
        .find(|p| p.store_id != leader.store_id)
        .unwrap();
    net.cut.lock().unwrap().insert(victim.store_id);
    net.wait("the cut-off follower reported down", |_| {
        leader
            .region(REGION)
            .is_some_and(|r| r.down_peers.iter().any(|(p, _)| p.id == victim.id))
    })
    .await;
    let r = leader.region(REGION).unwrap();
    assert_eq!(r.down_peers.len(), 1, "only the cut-off follower is down");
    net.cut.lock().unwrap().clear();
    net.wait(
        "the follower no longer down after the partition heals",
        |_| {
            leader
                .region(REGION)
                .is_some_and(|r| r.down_peers.is_empty())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_store_beyond_log_retention_rejoins_by_snapshot() {
    let net = three_voters().await;
    let victim = 3;
    net.cut.lock().unwrap().insert(victim);
    // More entries than the leader keeps for a lagging peer.
    let n = (2 * store::LOG_RETAIN_ENTRIES + 200) as usize;
    for chunk in (0..n).collect::<Vec<_>>().chunks(64) {
        let puts = chunk.iter().map(|i| net.put_owned(format!("k{i:05}")));
        futures::future::join_all(puts).await;
    }
    assert!(!net.has(victim, "k00000"));
    // The leader no longer has the entries the victim needs: only a
    // snapshot can bring it back.
    let behind = net.handle(victim).region(REGION).unwrap().applied;
    let truncated = net
        .leader()
        .unwrap()
        .region(REGION)
        .unwrap()
        .truncated_index;
    assert!(
        truncated > behind,
        "leader log compacted to {truncated}, victim at {behind}"
    );
    net.cut.lock().unwrap().clear();
    let last = format!("k{:05}", n - 1);
    net.wait("the partitioned store to converge", |net| {
        net.has(victim, "k00000") && net.has(victim, &last)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_peer_destroys_its_data_and_leaves_a_tombstone() {
    let net = three_voters().await;
    net.wait("the data on store 3", |n| n.has(3, "before"))
        .await;
    let leader = net.leader().unwrap();
    let region = leader.region(REGION).unwrap().region;
    let victim = *region.peers.iter().find(|p| p.store_id == 3).unwrap();
    leader.operator(pdpb::RegionHeartbeatResponse {
        region_id: REGION,
        region_epoch: region.region_epoch,
        change_peer: Some(pdpb::ChangePeer {
            peer: Some(victim),
            change_type: eraftpb::ConfChangeType::RemoveNode as i32,
        }),
        ..Default::default()
    });
    net.wait("store 3 to drop the region", |n| {
        n.handle(3).region(REGION).is_none()
    })
    .await;
    assert!(
        !net.has(3, "before"),
        "the removed peer's data is still there"
    );
    // Writes go on with two voters.
    net.put("after").await;
    assert!(net.has(1, "after") || net.has(2, "after"));
}

impl Net {
    async fn put_owned(&self, key: String) {
        self.put(&key).await
    }
}

impl Net {
    /// The store leading `region_id`.
    fn leader_of(&self, region_id: u64) -> Option<&StoreHandle> {
        self.nodes
            .values()
            .map(|n| &n.handle)
            .find(|h| h.region(region_id).is_some_and(|r| r.is_leader))
    }

    async fn put_in(&self, region_id: u64, key: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let cmd = Command {
                now_ms: 1,
                cmd: Some(Cmd::RawPut(kvrpcpb::RawPutRequest {
                    key: key.as_bytes().to_vec(),
                    value: b"v".to_vec(),
                    ..Default::default()
                })),
                ..Default::default()
            };
            if let Some(leader) = self.leader_of(region_id) {
                match leader.propose(region_id, None, cmd).await {
                    Ok(_) => return,
                    Err(e) => assert!(Instant::now() < deadline, "put {key}: {e}"),
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader for region {region_id}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Proposes a split of REGION at `key` into new region 2 (peers 201..).
    async fn split(&self, key: &[u8]) -> Vec<metapb::Region> {
        let leader = self.leader().unwrap();
        let region = leader.region(REGION).unwrap().region;
        let new_peer_ids = region.peers.iter().map(|p| 200 + p.store_id).collect();
        let cmd = Command {
            split: Some(super::split::BatchSplit {
                requests: vec![super::split::SplitRequest {
                    split_key: key.to_vec(),
                    new_region_id: 2,
                    new_peer_ids,
                }],
            }),
            ..Default::default()
        };
        match leader.propose(REGION, region.region_epoch, cmd).await {
            Ok(crate::command::Response::Split(regions)) => regions,
            other => panic!("split: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_applies_on_every_replica_and_the_new_region_serves_writes() {
    let net = three_voters().await;
    net.put("a1").await;
    net.put("x1").await;
    // Store 3 misses the split and the new region's first writes.
    net.wait("store 3 to have the data", |n| n.has(3, "x1"))
        .await;
    net.cut.lock().unwrap().insert(3);
    let regions = net.split(b"m").await;
    assert_eq!(regions.len(), 2);
    assert_eq!(
        (
            regions[0].end_key.as_slice(),
            regions[1].start_key.as_slice()
        ),
        (&b"m"[..], &b"m"[..])
    );
    let version = regions[0].region_epoch.unwrap().version;
    assert_eq!(version, 2);
    // A writer holding the old epoch is told the regions changed.
    let leader = net.leader().unwrap();
    let stale = metapb::RegionEpoch {
        version: 1,
        conf_ver: 5,
    };
    let err = leader
        .propose(REGION, Some(stale), Command::default())
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("EpochNotMatch"), "{err:?}");
    net.put_in(2, "y1").await;
    net.put_in(REGION, "b1").await;
    // The partitioned store catches up: both regions, both writes.
    net.cut.lock().unwrap().clear();
    net.wait("store 3 to apply the split and the new writes", |n| {
        let h = n.handle(3);
        h.region(2).is_some_and(|r| {
            r.region.region_epoch.unwrap().version == 2 && r.region.start_key == b"m"
        }) && h.region(REGION).is_some_and(|r| r.region.end_key == b"m")
            && n.has(3, "y1")
            && n.has(3, "b1")
    })
    .await;
    for s in 1..=3 {
        let r = net.handle(s).region(2).unwrap().region;
        assert_eq!(r.peers.len(), 3, "store {s}: {r:?}");
        assert!(r.peers.iter().all(|p| p.id == 200 + p.store_id));
    }
    // Both regions keep replicating.
    net.put_in(2, "z9").await;
    net.wait("a later write everywhere", |n| {
        (1..=3).all(|s| n.has(s, "z9"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_that_missed_its_removal_takes_a_new_peer_of_the_region() {
    let net = three_voters().await;
    net.wait("the data on store 3", |n| n.has(3, "before"))
        .await;
    // Store 3 is away while its peer is removed: it never hears of it.
    net.cut.lock().unwrap().insert(3);
    let leader = net.leader().unwrap();
    let region = leader.region(REGION).unwrap().region;
    let stale = *region.peers.iter().find(|p| p.store_id == 3).unwrap();
    leader.operator(pdpb::RegionHeartbeatResponse {
        region_id: REGION,
        region_epoch: region.region_epoch,
        change_peer: Some(pdpb::ChangePeer {
            peer: Some(stale),
            change_type: eraftpb::ConfChangeType::RemoveNode as i32,
        }),
        ..Default::default()
    });
    net.wait("the removal", |n| {
        n.leader().is_some_and(|l| {
            l.region(REGION)
                .is_some_and(|r| r.region.peers.iter().all(|p| p.store_id != 3))
        })
    })
    .await;
    net.put("while-away").await;
    assert_eq!(net.handle(3).region(REGION).unwrap().peer.id, stale.id);
    // Back, and PD puts a new peer of the region on it.
    net.cut.lock().unwrap().clear();
    net.add_voter(stale.id + 100, 3).await;
    net.wait("store 3 to hold the new peer and the data", |n| {
        n.handle(3)
            .region(REGION)
            .is_some_and(|r| r.peer.id == stale.id + 100)
            && n.has(3, "while-away")
    })
    .await;
}
