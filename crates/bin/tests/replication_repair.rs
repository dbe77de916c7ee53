//! A lost replica is repaired on a surviving store: PD + 4 tikv-server over
//! mutual TLS, `[schedule] max-store-down-time = "3s"`; a store holding a
//! follower of the region is SIGKILLed and stays down; PD adds a learner on
//! the fourth store (one peer id for the whole operator), promotes it once
//! it has caught up, and removes the dead peer. The data is all there.

#[path = "support/cluster.rs"]
mod cluster;

use std::time::{Duration, Instant};

use cluster::{Cluster, Options};
use tikv_client::{Config, RawClient};

fn config(c: &Cluster) -> Config {
    let certs = c.certs.as_ref().unwrap();
    Config::default()
        .with_security(
            certs.path("ca.pem"),
            certs.path("client.pem"),
            certs.path("client-key.pem"),
        )
        .with_timeout(Duration::from_secs(3))
}

async fn region(c: &Cluster) -> Option<serde_json::Value> {
    let (code, body) = c.pd_get("/pd/api/v1/regions").await.ok()?;
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let regions = v["regions"].as_array()?;
    (regions.len() == 1).then(|| regions[0].clone())
}

fn voter_stores(r: &serde_json::Value) -> Vec<u64> {
    let mut s: Vec<u64> = r["peers"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["role_name"] == "Voter")
                .filter_map(|p| p["store_id"].as_u64())
                .collect()
        })
        .unwrap_or_default();
    s.sort_unstable();
    s
}

/// The index in `c.kv` of the store with this id.
async fn store_index(c: &Cluster, store_id: u64) -> usize {
    let (_, body) = c.pd_get("/pd/api/v1/stores").await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    for s in v["stores"].as_array().unwrap() {
        if s["store"]["id"].as_u64() == Some(store_id) {
            let addr = s["store"]["address"].as_str().unwrap();
            return c.kv_addrs.iter().position(|a| a == addr).unwrap();
        }
    }
    panic!("store {store_id} unknown to PD: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_on_a_dead_store_is_replaced_on_a_surviving_store() {
    let opts = Options {
        pd_toml: Some("[schedule]\nmax-store-down-time = \"3s\"\n".into()),
        ..Default::default()
    };
    let mut c = Cluster::start_opts(true, 4, &opts).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let before = loop {
        if let Some(r) = region(&c).await {
            if voter_stores(&r).len() == 3 && r["leader"]["store_id"].as_u64().is_some() {
                break r;
            }
        }
        assert!(Instant::now() < deadline, "no 3 voters\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let raw = RawClient::new_with_config(vec![c.pd_addr.clone()], config(&c))
        .await
        .unwrap();
    for i in 0..50u32 {
        raw.put(format!("k{i:03}").into_bytes(), b"v".to_vec())
            .await
            .unwrap();
    }
    // Kill a store holding a follower; it stays down.
    let leader = before["leader"]["store_id"].as_u64().unwrap();
    let victim = *voter_stores(&before)
        .iter()
        .find(|s| **s != leader)
        .unwrap();
    let vi = store_index(&c, victim).await;
    c.kv[vi].kill();
    eprintln!("killed store {victim} (kv{vi}), a follower");

    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        if let Some(r) = region(&c).await {
            let voters = voter_stores(&r);
            if voters.len() == 3
                && !voters.contains(&victim)
                && r["peers"].as_array().map(Vec::len) == Some(3)
                && r["leader"]["store_id"].as_u64().is_some()
            {
                break r;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the lost replica was not replaced within 60s: {:?}\n{}",
            region(&c).await,
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    eprintln!("region after repair: {after}");
    assert!(
        after["epoch"]["conf_ver"].as_u64() > before["epoch"]["conf_ver"].as_u64(),
        "{after}"
    );
    // Every write is there, and new writes commit with the new voters.
    let raw = RawClient::new_with_config(vec![c.pd_addr.clone()], config(&c))
        .await
        .unwrap();
    for i in 0..50u32 {
        let got = raw.get(format!("k{i:03}").into_bytes()).await.unwrap();
        assert_eq!(got, Some(b"v".to_vec()), "k{i:03}");
    }
    raw.put(b"after".to_vec(), b"1".to_vec()).await.unwrap();
    // The new voter's store holds the data (it got a snapshot).
    let newcomer = *voter_stores(&after)
        .iter()
        .find(|s| !voter_stores(&before).contains(s))
        .unwrap();
    let ni = store_index(&c, newcomer).await;
    let certs = c.certs.as_ref().unwrap();
    let out = std::process::Command::new(cluster::bin("tikv-ctl"))
        .args([
            format!("--host={}", c.kv_addrs[ni]),
            format!("--ca-path={}", certs.path("ca.pem")),
            format!("--cert-path={}", certs.path("client.pem")),
            format!("--key-path={}", certs.path("client-key.pem")),
            "region-properties".into(),
            "-r".into(),
            after["id"].as_u64().unwrap().to_string(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    eprintln!("tikv-ctl region-properties on the new voter's store: {text}");
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert!(v["raw"]["num_keys"].as_u64().unwrap_or(0) >= 50, "{text}");
}
