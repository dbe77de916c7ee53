//! Stores as hosts of their own: PD and three tikv-servers over mutual TLS,
//! each store in its own network namespace with its own address (see
//! `support/netns.rs`). A follower's host is partitioned away while more
//! entries are written than the leader's log keeps for a lagging peer; once
//! healed it catches up by snapshot and its own engine converges to the
//! others' (same applied index, same keys); then its process is SIGKILLed
//! and restarted inside its namespace and converges again.
//!
//! The bank checker (`support/bank.rs`) runs here too, over our client's
//! transactions, while hosts are partitioned and healed and a store is
//! SIGKILLed and restarted.
//!
//! Needs root (skipped loudly otherwise).

#[path = "support/bank.rs"]
mod bank;
#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/netns.rs"]
mod netns;

use std::time::{Duration, Instant};

use bank::{Bank, TioxBank, Workload};
use cluster::{http_get, Cluster, Options};
use tiox_kv::raftstore::store::LOG_RETAIN_ENTRIES;

#[test]
fn partitioned_host_beyond_log_retention_rejoins_by_snapshot_and_converges() {
    let test = "partitioned_host_beyond_log_retention_rejoins_by_snapshot_and_converges";
    if let Some(net) = hosts(test) {
        block_on(partition_and_heal(&net));
    }
}

#[test]
fn bank_transfers_keep_the_total_while_hosts_are_partitioned_and_killed() {
    let test = "bank_transfers_keep_the_total_while_hosts_are_partitioned_and_killed";
    if let Some(net) = hosts(test) {
        block_on(bank_under_partitions(&net));
    }
}

/// In the isolated child: three hosts. None in the parent (the child ran
/// the test) or when the test is skipped.
fn hosts(test: &str) -> Option<netns::Net> {
    if !netns::isolate(test) {
        return None;
    }
    match netns::Net::new(3) {
        Ok(n) => Some(n),
        Err(e) => {
            netns::skip(test, &format!("cannot make the namespaces: {e}"));
            None
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
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

/// The first region's id and the index of the store leading it, from PD.
async fn leader(c: &Cluster) -> (u64, usize) {
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
    (region_id, li)
}

/// PD on the hub, a store on each host, TLS; once the region has three
/// voters.
async fn cluster(net: &netns::Net, kv_toml: Option<String>) -> Cluster {
    let opts = Options {
        pd_ip: Some(net.hub_ip()),
        kv_hosts: net.hosts(),
        kv_toml,
        ..Options::default()
    };
    let c = Cluster::start_opts(true, 3, &opts).await;
    c.wait_for_voters(3).await;
    c
}

async fn partition_and_heal(net: &netns::Net) {
    let started = Instant::now();
    // One region: the split check stays off.
    let toml = "[raftstore]\nsplit-region-check-tick-interval = \"0s\"\n";
    let mut c = cluster(net, Some(toml.into())).await;
    let (region_id, li) = leader(&c).await;
    let leader_addr = &c.kv_addrs[li];
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

/// A fault of the bank scenario.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// The host's veth down for a while, then up.
    Partition(usize),
    /// SIGKILL, restart a while later in the same namespace.
    Kill(usize),
}

/// xorshift64: the fault schedule's victims. The seed is printed; set
/// `TIOX_BANK_SEED` to replay a schedule.
fn victims(n: usize) -> (u64, Vec<usize>) {
    let seed = std::env::var("TIOX_BANK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            t.map_or(1, |d| d.as_nanos() as u64) | 1
        });
    let mut x = seed;
    let picks = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 3) as usize
        })
        .collect();
    (seed, picks)
}

/// The bank workload over our client's transactions (3 workers, a
/// snapshot checker) while hosts are cut off and healed and a store is
/// SIGKILLed and restarted: first the region leader's host is partitioned,
/// then a random store is killed, then two random hosts are partitioned in
/// turn. Every snapshot total and the final one must be the initial total.
async fn bank_under_partitions(net: &netns::Net) {
    let started = Instant::now();
    let mut c = cluster(net, None).await;
    let setup = TioxBank::connect(&c).await;
    setup.init().await.expect("write the accounts");
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(TioxBank::connect(&c).await);
    }
    let load = Workload::start(workers, TioxBank::connect(&c).await);

    let (_, li) = leader(&c).await;
    let (seed, picks) = victims(3);
    let faults = [
        Fault::Partition(li),
        Fault::Kill(picks[0]),
        Fault::Partition(picks[1]),
        Fault::Partition(picks[2]),
    ];
    eprintln!("seed {seed} (TIOX_BANK_SEED): faults {faults:?}, kv{li} leads the region");
    let (up, down) = (Duration::from_secs(3), Duration::from_secs(4));
    for fault in faults {
        tokio::time::sleep(up).await;
        match fault {
            Fault::Partition(i) => {
                net.partition(i);
                eprintln!("partitioned kv{i}");
                tokio::time::sleep(down).await;
                net.heal(i);
                eprintln!("healed kv{i}");
            }
            Fault::Kill(i) => c.kill_and_restart(i, down).await,
        }
    }
    tokio::time::sleep(up).await;
    let report = load.finish(&setup, &c).await;
    eprintln!(
        "bank over partitions: {report}; done in {:?}",
        started.elapsed()
    );
}
