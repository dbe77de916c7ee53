//! The `pdpb.PD` RPCs a storage node uses, over a real socket against an
//! in-process PD (plaintext here; TLS is covered by the binary tests):
//! bootstrap, stores, store heartbeats, region heartbeats answered with
//! scheduling operators, splits, scans, previous-region lookup and GC safe
//! points.

use std::net::TcpListener;

use futures::StreamExt;
use tiox_pd::config::PdConfig;
use tiox_pd::server::Server;
use tiox_proto::{eraftpb, metapb, pdpb};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn epoch(conf_ver: u64, version: u64) -> Option<metapb::RegionEpoch> {
    Some(metapb::RegionEpoch { conf_ver, version })
}

fn peer(id: u64, store_id: u64) -> metapb::Peer {
    metapb::Peer {
        id,
        store_id,
        role: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_node_rpcs_work_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = PdConfig {
        data_dir: dir.path().join("pd").display().to_string(),
        client_urls: format!("http://127.0.0.1:{port}"),
        peer_urls: format!("http://127.0.0.1:{}", free_port()),
        // Plaintext on purpose (what --insecure sets).
        security: tiox_security::SecurityConfig::insecure(),
        ..Default::default()
    };
    let server = Server::bind(config.validate().unwrap()).await.unwrap();
    tokio::spawn(server.run());
    let mut c = tiox_pd::client::connect(&format!("127.0.0.1:{port}"), None)
        .await
        .unwrap();
    let h = None;
    let ok = |h: Option<pdpb::ResponseHeader>| {
        let h = h.expect("every response has a header");
        assert_ne!(h.cluster_id, 0);
        assert!(h.error.is_none(), "{:?}", h.error);
    };

    // Ids come from PD (as TiKV gets them): a fresh PD hands out 1..=5,
    // used below for stores 1, 4, 5, region 2 and peer 3.
    for want in 1..=5u64 {
        let r = c
            .alloc_id(pdpb::AllocIdRequest { header: h })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.id, want);
    }

    // Not bootstrapped: store calls say so with the kvproto error type.
    let r = c
        .put_store(pdpb::PutStoreRequest {
            header: h,
            store: Some(metapb::Store {
                id: 1,
                address: "a:1".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.header.unwrap().error.unwrap().r#type,
        pdpb::ErrorType::NotBootstrapped as i32
    );

    // Bootstrap with store 1 and region 2 covering everything.
    let r = c
        .bootstrap(pdpb::BootstrapRequest {
            header: h,
            store: Some(metapb::Store {
                id: 1,
                address: "127.0.0.1:20161".into(),
                ..Default::default()
            }),
            region: Some(metapb::Region {
                id: 2,
                region_epoch: epoch(1, 1),
                peers: vec![peer(3, 1)],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    ok(r.header);
    for id in [4, 5] {
        let r = c
            .put_store(pdpb::PutStoreRequest {
                header: h,
                store: Some(metapb::Store {
                    id,
                    address: format!("127.0.0.1:2016{id}"),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        ok(r.header);
    }
    let all = c
        .get_all_stores(pdpb::GetAllStoresRequest {
            header: h,
            exclude_tombstone_stores: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.stores.len(), 3);
    let missing = c
        .get_store(pdpb::GetStoreRequest {
            header: h,
            store_id: 99,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(missing.header.unwrap().error.is_some());

    // Heartbeats make stores alive; the under-replicated region gets an
    // add-learner operator on its heartbeat stream.
    for id in [1, 4, 5] {
        let r = c
            .store_heartbeat(pdpb::StoreHeartbeatRequest {
                header: h,
                stats: Some(pdpb::StoreStats {
                    store_id: id,
                    capacity: 1 << 30,
                    available: 1 << 29,
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        ok(r.header);
    }
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut ops = c
        .region_heartbeat(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(pdpb::RegionHeartbeatRequest {
        header: h,
        region: Some(metapb::Region {
            id: 2,
            region_epoch: epoch(1, 1),
            peers: vec![peer(3, 1)],
            ..Default::default()
        }),
        leader: Some(peer(3, 1)),
        ..Default::default()
    })
    .await
    .unwrap();
    let op = ops.next().await.unwrap().unwrap();
    ok(op.header);
    assert_eq!(op.region_id, 2);
    let change = op.change_peer.unwrap();
    assert_eq!(
        change.change_type,
        eraftpb::ConfChangeType::AddLearnerNode as i32
    );
    assert!([4, 5].contains(&change.peer.unwrap().store_id));
    // A stale epoch on the same stream is refused, and says so.
    tx.send(pdpb::RegionHeartbeatRequest {
        header: h,
        region: Some(metapb::Region {
            id: 2,
            region_epoch: epoch(0, 0),
            peers: vec![peer(3, 1)],
            ..Default::default()
        }),
        leader: Some(peer(3, 1)),
        ..Default::default()
    })
    .await
    .unwrap();
    let stale = ops.next().await.unwrap().unwrap();
    assert!(stale
        .header
        .unwrap()
        .error
        .unwrap()
        .message
        .contains("stale"));
    drop(tx);

    // Split region 2 at "m".
    let ids = c
        .ask_batch_split(pdpb::AskBatchSplitRequest {
            header: h,
            region: Some(metapb::Region {
                id: 2,
                region_epoch: epoch(1, 1),
                peers: vec![peer(3, 1)],
                ..Default::default()
            }),
            split_count: 1,
        })
        .await
        .unwrap()
        .into_inner();
    ok(ids.header);
    let split = &ids.ids[0];
    let left = metapb::Region {
        id: split.new_region_id,
        end_key: b"m".to_vec(),
        region_epoch: epoch(1, 2),
        peers: vec![peer(split.new_peer_ids[0], 1)],
        ..Default::default()
    };
    let right = metapb::Region {
        id: 2,
        start_key: b"m".to_vec(),
        region_epoch: epoch(1, 2),
        peers: vec![peer(3, 1)],
        ..Default::default()
    };
    let r = c
        .report_batch_split(pdpb::ReportBatchSplitRequest {
            header: h,
            regions: vec![left.clone(), right.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    ok(r.header);
    let get = |key: &'static [u8]| pdpb::GetRegionRequest {
        header: h,
        region_key: key.to_vec(),
        need_buckets: false,
    };
    let r = c.get_region(get(b"a")).await.unwrap().into_inner();
    assert_eq!(r.region.unwrap().id, left.id);
    let r = c.get_region(get(b"z")).await.unwrap().into_inner();
    assert_eq!(r.region.unwrap().id, 2);
    let r = c.get_prev_region(get(b"z")).await.unwrap().into_inner();
    assert_eq!(r.region.unwrap().id, left.id);
    let r = c
        .get_region_by_id(pdpb::GetRegionByIdRequest {
            header: h,
            region_id: 424242,
            need_buckets: false,
        })
        .await
        .unwrap()
        .into_inner();
    ok(r.header);
    assert!(r.region.is_none());
    let scan = c
        .scan_regions(pdpb::ScanRegionsRequest {
            header: h,
            start_key: Vec::new(),
            limit: 0,
            end_key: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scan.regions.len(), 2);
    assert_eq!(scan.region_metas.len(), 2);

    // GC safe points: never backwards; service safe points report the minimum.
    let r = c
        .update_gc_safe_point(pdpb::UpdateGcSafePointRequest {
            header: h,
            safe_point: 100,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.new_safe_point, 100);
    let r = c
        .update_gc_safe_point(pdpb::UpdateGcSafePointRequest {
            header: h,
            safe_point: 50,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.new_safe_point, 100);
    let r = c
        .get_gc_safe_point(pdpb::GetGcSafePointRequest { header: h })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.safe_point, 100);
    let r = c
        .update_service_gc_safe_point(pdpb::UpdateServiceGcSafePointRequest {
            header: h,
            service_id: b"br".to_vec(),
            ttl: 60,
            safe_point: 150,
        })
        .await
        .unwrap()
        .into_inner();
    ok(r.header);
    assert_eq!(r.min_safe_point, 150);
    let cfg = c
        .get_cluster_config(pdpb::GetClusterConfigRequest { header: h })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cfg.cluster.unwrap().max_peer_count, 3);

    // Bad TSO counts get an INVALID_VALUE header, the stream stays usable.
    let reqs = vec![
        pdpb::TsoRequest {
            header: h,
            count: 0,
            dc_location: String::new(),
        },
        pdpb::TsoRequest {
            header: h,
            count: 2,
            dc_location: String::new(),
        },
    ];
    let mut out = c
        .tso(futures::stream::iter(reqs))
        .await
        .unwrap()
        .into_inner();
    let bad = out.next().await.unwrap().unwrap();
    assert_eq!(
        bad.header.unwrap().error.unwrap().r#type,
        pdpb::ErrorType::InvalidValue as i32
    );
    let good = out.next().await.unwrap().unwrap();
    assert_eq!(good.count, 2);
    assert!(good.timestamp.is_some());
}
