//! Stores as hosts of their own: PD and three tikv-servers over mutual TLS,
//! each store in its own network namespace with its own address (see
//! `support/netns.rs`). A follower's host is partitioned away while more
//! entries are written than the leader's log keeps for a lagging peer; once
//! healed it catches up by snapshot and its own engine converges to the
//! others' (same applied index, same keys); then its process is SIGKILLed
//! and restarted inside its namespace and converges again.
//!
//! Needs root (skipped loudly otherwise).

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/netns.rs"]
mod netns;

use std::time::{Duration, Instant};

use cluster::{http_get, Cluster, Options};
use tiox_kv::raftstore::store::LOG_RETAIN_ENTRIES;

const TEST: &str = "partitioned_host_beyond_log_retention_rejoins_by_snapshot_and_converges";

#[test]
fn partitioned_host_beyond_log_retention_rejoins_by_snapshot_and_converges() {
    if !netns::isolate(TEST) {
        return;
    }
    let net = match netns::Net::new(3) {
        Ok(n) => n,
        Err(e) => {
            netns::skip(TEST, &format!("cannot make the namespaces: {e}"));
            return;
        }
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(partition_and_heal(&net));
}

async fn json(c: &Cluster, addr: &str, path: &str) -> Option<serde_json::Value> {
    let tls = c.certs.as_ref().map(|c| c.client_tls());
    // A partitioned host does not answer at all: give up after a while.
    let got = tokio::time::timeout(Duration::from_secs(3), http_get(addr, path, tls)).await;
    match got {
        Ok(Ok((200, body))) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// Store `i`'s own view of the region: (applied index, raw keys in its
/// engine), from its debug API.
async fn local_state(c: &Cluster, i: usize, region: u64) -> Option<(u64, u64)> {
    let addr = &c.kv_addrs[i];
    let r = json(c, addr, &format!("/debug/region/{region}")).await?;
    let p = json(c, addr, &format!("/debug/region/{region}/properties")).await?;
    Some((r["applied_index"].as_u64()?, p["raw"]["num_keys"].as_u64()?))
}

/// Waits until every store reports the same applied index and `keys` raw
/// keys in its own engine.
async fn wait_converged(c: &Cluster, region: u64, keys: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let mut states = Vec::new();
        for i in 0..c.kv.len() {
            states.push(local_state(c, i, region).await);
        }
        let first = states[0];
        if first.is_some_and(|(_, k)| k == keys) && states.iter().all(|s| *s == first) {
            eprintln!("{what}: every store at (applied index, raw keys) {first:?}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: stores did not converge to {keys} keys: (applied, keys) = {states:?}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Writes keys `prefix/{from..to}` with 16 concurrent writers.
async fn write(c: &Cluster, prefix: &str, from: u32, to: u32) {
    let raw = c.client().await.raw();
    let mut tasks = Vec::new();
    for w in 0..16u32 {
        let raw = raw.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut i = from + w;
            while i < to {
                let key = format!("{prefix}/{i:06}");
                raw.put(key.as_bytes(), value(&key).as_bytes())
                    .await
                    .unwrap_or_else(|e| panic!("put {key}: {e}"));
                i += 16;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn value(key: &str) -> String {
    format!("value of {key}")
}

fn snapshots_applied(c: &Cluster, i: usize) -> usize {
    c.kv[i].log_text().matches("applied a snapshot").count()
}

async fn partition_and_heal(net: &netns::Net) {
    let started = Instant::now();
    let opts = Options {
        pd_ip: Some(net.hub_ip()),
        kv_hosts: net.hosts(),
        // One region: the split check stays off.
        kv_toml: Some("[raftstore]\nsplit-region-check-tick-interval = \"0s\"\n".into()),
        ..Options::default()
    };
    let mut c = Cluster::start_opts(true, 3, &opts).await;
    c.wait_for_voters(3).await;
    let (_, body) = c.pd_get("/pd/api/v1/regions").await.unwrap();
    let regions: serde_json::Value = serde_json::from_str(&body).unwrap();
    let region = &regions["regions"][0];
    let region_id = region["id"].as_u64().unwrap();
    let leader_store = region["leader"]["store_id"].as_u64().unwrap();
    let (_, body) = c.pd_get("/pd/api/v1/stores").await.unwrap();
    let stores: serde_json::Value = serde_json::from_str(&body).unwrap();
    let leader_addr = stores["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["store"]["id"].as_u64() == Some(leader_store))
        .and_then(|s| s["store"]["address"].as_str())
        .unwrap();
    assert!(
        leader_addr.starts_with("10.77.0."),
        "stores advertise their own hosts' addresses: {leader_addr}"
    );
    let li = c.kv_addrs.iter().position(|a| a == leader_addr).unwrap();
    let f = (li + 1) % 3;
    eprintln!(
        "region {region_id}: leader kv{li} at {leader_addr}; partitioning kv{f} at {}",
        c.kv_addrs[f]
    );

    write(&c, "a", 0, 100).await;
    wait_converged(&c, region_id, 100, "before the partition").await;
    let (cut_at, _) = local_state(&c, f, region_id).await.unwrap();
    let snaps_before = snapshots_applied(&c, f);

    net.partition(f);
    let cut = Instant::now();
    assert!(
        local_state(&c, f, region_id).await.is_none(),
        "kv{f} still answers while partitioned"
    );
    // More entries than the leader keeps for a lagging peer.
    let n = 3 * LOG_RETAIN_ENTRIES as u32;
    write(&c, "b", 0, n).await;
    let (leader_applied, _) = local_state(&c, li, region_id).await.unwrap();
    assert!(
        leader_applied > cut_at + 2 * LOG_RETAIN_ENTRIES,
        "the leader applied {leader_applied}, kv{f} was cut off at {cut_at}: not past the retention"
    );
    net.heal(f);
    eprintln!(
        "healed kv{f} after {:?} and {n} writes (leader at index {leader_applied}, kv{f} at {cut_at})",
        cut.elapsed()
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    while snapshots_applied(&c, f) <= snaps_before {
        assert!(
            Instant::now() < deadline,
            "kv{f} did not apply a snapshot after the partition healed\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let total = 100 + u64::from(n);
    wait_converged(&c, region_id, total, "after the partition").await;

    // SIGKILL the rejoined store; writes go on; it restarts in its
    // namespace and converges again.
    c.kv[f].kill();
    eprintln!("killed kv{f}");
    write(&c, "c", 0, 200).await;
    c.kv[f].start();
    eprintln!("restarted kv{f}");
    wait_converged(&c, region_id, total + 200, "after the restart").await;

    let raw = c.client().await.raw();
    for (prefix, count) in [("a", 100), ("b", n), ("c", 200)] {
        for i in (0..count).step_by(13) {
            let key = format!("{prefix}/{i:06}");
            let got = raw.get(key.as_bytes()).await.unwrap();
            assert_eq!(got, Some(value(&key).into_bytes()), "{key}");
        }
    }
    eprintln!("done in {:?}", started.elapsed());
}
