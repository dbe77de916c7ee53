//! Region split across real processes (PD + 3 tikv-server over mutual TLS,
//! small `[coprocessor]` limits): writes make the region split, every
//! piece is replicated three ways with a leader and a new epoch, the data
//! stays readable through tikv-client and our client, `pd-ctl region` and
//! `tikv-ctl region -r ID` show it, `tikv-ctl split-region` splits by hand;
//! and our client's region cache follows a split it did not see (stale
//! region → EpochNotMatch → re-route, invisible to the caller).

#[path = "support/cluster.rs"]
mod cluster;

use std::process::Command;
use std::time::{Duration, Instant};

use cluster::Cluster;
use tikv_client::{Config, RawClient, TransactionClient};

/// Small limits so a few hundred KiB split the region several times.
const SPLIT_TOML: &str = r#"
[coprocessor]
region-max-size = "64KiB"
region-split-size = "32KiB"
region-max-keys = 100000
region-split-keys = 50000
[raftstore]
split-region-check-tick-interval = "300ms"
"#;

/// Checks off: only manual splits.
const NO_SPLIT_TOML: &str = r#"
[raftstore]
split-region-check-tick-interval = "0s"
"#;

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

fn run(name: &str, args: &[String]) -> (bool, String) {
    let out = Command::new(cluster::bin(name))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn tikv_ctl(c: &Cluster, i: usize, cmd: &[&str]) -> (bool, String) {
    let certs = c.certs.as_ref().unwrap();
    let mut args = vec![
        format!("--host={}", c.kv_addrs[i]),
        format!("--ca-path={}", certs.path("ca.pem")),
        format!("--cert-path={}", certs.path("client.pem")),
        format!("--key-path={}", certs.path("client-key.pem")),
    ];
    args.extend(cmd.iter().map(|s| s.to_string()));
    run("tikv-ctl", &args)
}

fn pd_ctl(c: &Cluster, cmd: &[&str]) -> (bool, String) {
    let certs = c.certs.as_ref().unwrap();
    let mut args = vec![
        "-u".to_string(),
        format!("https://{}", c.pd_addr),
        "--cacert".into(),
        certs.path("ca.pem"),
        "--cert".into(),
        certs.path("client.pem"),
        "--key".into(),
        certs.path("client-key.pem"),
    ];
    args.extend(cmd.iter().map(|s| s.to_string()));
    run("pd-ctl", &args)
}

/// PD's regions, once every one has `voters` voters and a leader.
async fn settled_regions(c: &Cluster, voters: usize) -> Option<Vec<serde_json::Value>> {
    let (code, body) = c.pd_get("/pd/api/v1/regions").await.ok()?;
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let regions = v["regions"].as_array()?.clone();
    let ok = regions.iter().all(|r| {
        let n = r["peers"].as_array().map_or(0, |ps| {
            ps.iter().filter(|p| p["role_name"] == "Voter").count()
        });
        n == voters && r["leader"]["store_id"].as_u64().is_some()
    });
    ok.then_some(regions)
}

async fn wait_regions(
    c: &Cluster,
    voters: usize,
    at_least: usize,
    what: &str,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(r) = settled_regions(c, voters).await {
            if r.len() >= at_least {
                return r;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: PD never showed {at_least} regions with {voters} voters and a leader: {:?}\n{}",
            c.pd_get("/pd/api/v1/regions").await,
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
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

fn value(i: u32) -> Vec<u8> {
    let mut v = format!("value-{i:05}-").into_bytes();
    v.resize(1024, b'.');
    v
}

async fn retry<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), f()).await {
            Ok(Ok(v)) => return v,
            Ok(Err(e)) if Instant::now() < deadline => eprintln!("{what}: {e}; retrying"),
            Err(_) if Instant::now() < deadline => eprintln!("{what}: timed out; retrying"),
            Ok(Err(e)) => panic!("{what}: {e}"),
            Err(_) => panic!("{what}: timed out"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_split_the_region_and_every_piece_is_replicated_and_readable() {
    let c = Cluster::start_with(true, 3, Some(SPLIT_TOML)).await;
    let first = wait_regions(&c, 3, 1, "three voters").await;
    assert_eq!(first.len(), 1);
    let version0 = first[0]["epoch"]["version"].as_u64().unwrap();

    // ~300 KiB of raw data and ~60 KiB in transactions.
    let raw = RawClient::new_with_config(vec![c.pd_addr.clone()], config(&c))
        .await
        .unwrap();
    for chunk in (0..300u32).collect::<Vec<_>>().chunks(20) {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = chunk
            .iter()
            .map(|i| (format!("raw/{i:05}").into_bytes(), value(*i)))
            .collect();
        retry("raw batch_put", || raw.batch_put(pairs.clone())).await;
    }
    let txn = TransactionClient::new_with_config(vec![c.pd_addr.clone()], config(&c))
        .await
        .unwrap();
    for chunk in (0..60u32).collect::<Vec<_>>().chunks(10) {
        retry("transaction", || async {
            let mut t = txn.begin_optimistic().await?;
            for i in chunk {
                t.put(format!("txn/{i:05}").into_bytes(), value(*i)).await?;
            }
            match t.commit().await {
                Ok(_) => Ok(()),
                Err(e) => {
                    let _ = t.rollback().await;
                    Err(e)
                }
            }
        })
        .await;
    }

    // The split check cuts the region; PD's scheduler gives every piece
    // three voters (the split copies the parent's peers) and a leader.
    let regions = wait_regions(&c, 3, 4, "splits").await;
    eprintln!("{} regions after the writes", regions.len());
    for r in &regions {
        assert!(
            r["epoch"]["version"].as_u64().unwrap() > version0,
            "a region kept the pre-split version: {r}"
        );
    }

    // Everything is readable, through the new regions.
    let raw = RawClient::new_with_config(vec![c.pd_addr.clone()], config(&c))
        .await
        .unwrap();
    for i in 0..300u32 {
        let key = format!("raw/{i:05}").into_bytes();
        let got = retry("raw get", || raw.get(key.clone())).await;
        assert_eq!(got, Some(value(i)), "raw/{i:05}");
    }
    let ts = txn.current_timestamp().await.unwrap();
    for i in 0..60u32 {
        let key = format!("txn/{i:05}").into_bytes();
        let got = retry("snapshot get", || {
            let mut snap = txn.snapshot(ts.clone(), Default::default());
            let key = key.clone();
            async move { snap.get(key).await }
        })
        .await;
        assert_eq!(got, Some(value(i)), "txn/{i:05}");
    }
    // A transaction spanning regions commits atomically.
    retry("cross-region transaction", || async {
        let mut t = txn.begin_optimistic().await?;
        t.put(b"txn/00000".to_vec(), b"first".to_vec()).await?;
        t.put(b"txn/00059".to_vec(), b"last".to_vec()).await?;
        t.commit().await
    })
    .await;

    // pd-ctl: every region has three peers, a leader and a bumped epoch.
    let (ok, out) = pd_ctl(&c, &["region"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("pd-ctl region is not JSON ({e}): {out}"));
    let listed = v["regions"].as_array().unwrap();
    assert!(listed.len() >= 4, "{out}");
    for r in listed {
        assert_eq!(r["peers"].as_array().map(Vec::len), Some(3), "{r}");
        assert!(r["leader"]["id"].as_u64().is_some(), "{r}");
        assert!(r["epoch"]["version"].as_u64().unwrap() > version0, "{r}");
    }

    // tikv-ctl on a new region's leader store shows the same.
    let new_region = listed
        .iter()
        .find(|r| r["id"] != first[0]["id"])
        .expect("a new region");
    let id = new_region["id"].as_u64().unwrap().to_string();
    let leader_store = new_region["leader"]["store_id"].as_u64().unwrap();
    let li = store_index(&c, leader_store).await;
    let (ok, out) = tikv_ctl(&c, li, &["region", "-r", &id]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["peers"].as_array().map(Vec::len), Some(3), "{out}");
    assert!(v["leader"]["id"].as_u64().is_some(), "{out}");
    assert!(v["epoch"]["version"].as_u64().unwrap() > version0, "{out}");

    // A manual split with tikv-ctl on the leader of the region holding
    // "raw/00150": PD then lists one region more.
    let before = listed.len();
    // PD's leader may be a heartbeat behind (its scheduler balances
    // leaders across the new regions): retry on NotLeader.
    let deadline = Instant::now() + Duration::from_secs(30);
    let out = loop {
        let (_, body) = c.pd_get("/pd/api/v1/region/key/raw%2F00150").await.unwrap();
        let holder: serde_json::Value = serde_json::from_str(&body).unwrap();
        let id = holder["id"].as_u64().unwrap().to_string();
        let li = store_index(&c, holder["leader"]["store_id"].as_u64().unwrap()).await;
        let (ok, out) = tikv_ctl(
            &c,
            li,
            &["split-region", "-r", &id, "-k", "raw/00150", "--raw"],
        );
        if ok {
            break out;
        }
        assert!(
            out.contains("NotLeader") && Instant::now() < deadline,
            "{out}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let made = v["regions"].as_array().unwrap();
    assert_eq!(made.len(), 2, "{out}");
    assert_eq!(
        made[1]["start_key"],
        "raw/00150"
            .bytes()
            .map(|b| format!("{b:02X}"))
            .collect::<String>(),
        "{out}"
    );
    wait_regions(&c, 3, before + 1, "the manual split").await;
    let got = retry("raw get after manual split", || {
        raw.get(b"raw/00150".to_vec())
    })
    .await;
    assert_eq!(got, Some(value(150)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_region_cache_follows_a_split_it_did_not_see() {
    let c = Cluster::start_with(true, 1, Some(NO_SPLIT_TOML)).await;
    wait_regions(&c, 1, 1, "one region").await;
    let client = c.client().await;
    let raw = client.raw();
    let txn = client.txn();
    raw.put(b"a", b"1").await.unwrap();
    raw.put(b"z", b"26").await.unwrap();
    let mut t = txn.begin().await.unwrap();
    t.put(b"t/a".to_vec(), b"1".to_vec());
    t.put(b"t/z".to_vec(), b"26".to_vec());
    t.commit().await.unwrap();
    let cached = client.kv.locate(b"z").await.unwrap().region;
    assert!(cached.start_key.is_empty() && cached.end_key.is_empty());

    // Another client splits: ours still caches the whole key space.
    let other = c.client().await;
    let made = other.split_region(b"m", true).await.unwrap();
    assert_eq!(made.len(), 2, "{made:?}");
    let made = other.split_region(b"t/m", false).await.unwrap();
    assert_eq!(made.len(), 2, "{made:?}");
    assert_eq!(
        client.kv.locate(b"z").await.unwrap().region,
        cached,
        "the cache is stale on purpose"
    );

    // The stale region gets EpochNotMatch; the client re-routes without
    // the caller seeing anything.
    assert_eq!(raw.get(b"z").await.unwrap(), Some(b"26".to_vec()));
    assert_eq!(raw.get(b"a").await.unwrap(), Some(b"1".to_vec()));
    raw.put(b"y", b"25").await.unwrap();
    let now = client.kv.locate(b"z").await.unwrap().region;
    // Raw "z" sorts after the encoded "t/m" boundary.
    assert_eq!(
        now.start_key,
        tiox_client::keys::encode_bytes(b"t/m"),
        "{now:?}"
    );
    assert!(
        now.region_epoch.unwrap().version > cached.region_epoch.unwrap().version,
        "{now:?}"
    );
    // Transactions across the new boundary work too.
    let mut t = txn.begin().await.unwrap();
    assert_eq!(t.get(b"t/z").await.unwrap(), Some(b"26".to_vec()));
    t.put(b"t/a".to_vec(), b"2".to_vec());
    t.put(b"t/z".to_vec(), b"27".to_vec());
    t.commit().await.unwrap();
    let t = txn.begin().await.unwrap();
    assert_eq!(t.get(b"t/a").await.unwrap(), Some(b"2".to_vec()));
    assert_eq!(t.get(b"t/z").await.unwrap(), Some(b"27".to_vec()));
    // A scan across the boundaries sees every pair once.
    let pairs = raw.scan(b"", b"", 10).await.unwrap();
    let keys: Vec<&[u8]> = pairs.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(keys, vec![&b"a"[..], b"y", b"z"], "{pairs:?}");
}

/// Splits happen while stores are killed and restarted: a writer keeps
/// going through tikv-client; afterwards every acknowledged write is
/// readable and every region has three voters and a leader (a restarted
/// store applies the splits it missed from the log or by snapshot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_split_while_stores_are_killed_and_restarted() {
    let mut c = Cluster::start_with(true, 3, Some(SPLIT_TOML)).await;
    wait_regions(&c, 3, 1, "three voters").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u32>::new()));
    let writer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        let (pd, cfg) = (c.pd_addr.clone(), config(&c));
        tokio::spawn(async move {
            let mut raw = RawClient::new_with_config(vec![pd.clone()], cfg.clone())
                .await
                .unwrap();
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let put = raw.put(format!("w/{i:06}").into_bytes(), value(i));
                match tokio::time::timeout(Duration::from_secs(5), put).await {
                    Ok(Ok(())) => acked.lock().unwrap().push(i),
                    _ => {
                        // A fresh client after a failure (see replication.rs).
                        if let Ok(r) =
                            RawClient::new_with_config(vec![pd.clone()], cfg.clone()).await
                        {
                            raw = r;
                        }
                    }
                }
                i += 1;
            }
        })
    };
    for round in 0..3 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let victim = round % 3;
        c.kv[victim].kill();
        eprintln!("killed kv{victim}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        c.kv[victim].start();
        eprintln!("restarted kv{victim}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(30), writer).await;
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "few writes acknowledged\n{}", c.logs());
    let regions = wait_regions(&c, 3, 2, "regions after the kills").await;
    eprintln!(
        "{} writes acknowledged, {} regions",
        acked.len(),
        regions.len()
    );
    let raw = RawClient::new_with_config(vec![c.pd_addr.clone()], config(&c))
        .await
        .unwrap();
    for i in acked {
        let key = format!("w/{i:06}").into_bytes();
        let got = retry("read back", || raw.get(key.clone())).await;
        assert_eq!(
            got,
            Some(value(i)),
            "acknowledged w/{i:06} lost\n{}",
            c.logs()
        );
    }
}
