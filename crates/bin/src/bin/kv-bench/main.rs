//! `kv-bench`: the KV benchmark of issues 4 and 5. Starts its own PD + TiKV
//! (from the binaries beside it), once with mutual TLS and once without,
//! drives raw put, raw get and 2-key transactions through `tiox-client` at
//! 1 and 32 concurrent callers, and prints ops/s, p99 latency, the store's
//! peak resident memory, and the TLS/plaintext ratio measured in this run.
//!
//! ```text
//! cargo run --release --bin kv-bench -- [--seconds 5] [--fill-mib 0] [--replicas 3]
//! ```
//! `--replicas 3` runs the plaintext and mTLS clusters with three stores
//! (every region replicated three ways, PD's default) and adds a third
//! cluster, mTLS with one store, to print the cost of replication (3
//! replicas vs 1) beside the TLS/plaintext ratio.
//! `--fill-mib N` first writes N MiB of 64 KiB raw values and reports the
//! store's resident memory while it holds them.

use std::time::{Duration, Instant};

use clap::Parser;
use tiox_bin::launch::Cluster;
use tiox_client::ClusterClient;
use tiox_security::{Component, SecurityConfig};

#[derive(Parser)]
#[command(name = "kv-bench")]
struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// MiB of data to load before measuring memory (0: skip).
    #[arg(long, default_value_t = 0)]
    fill_mib: u64,
    /// Concurrency levels.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    concurrency: Vec<usize>,
    /// Stores per cluster (1, or 3 for three-way replication plus a
    /// one-store mTLS cluster to compare with).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Workload {
    RawPut,
    RawGet,
    Txn2Key,
}

struct Result {
    ops_per_sec: f64,
    p99_ms: f64,
    errors: u64,
}

async fn connect(c: &Cluster) -> ClusterClient {
    let settings = c.certs.as_ref().map(|certs| {
        SecurityConfig::from_paths(
            &certs.path("ca.pem"),
            &certs.path("client.pem"),
            &certs.path("client-key.pem"),
        )
        .validate(Component::Tiox)
        .expect("client certificates")
        .expect("TLS settings")
    });
    let scheme = if settings.is_some() { "https" } else { "http" };
    ClusterClient::connect(&[format!("{scheme}://{}", c.pd_addr)], settings)
        .await
        .expect("connect")
}

async fn run(client: &ClusterClient, w: Workload, conc: usize, secs: u64) -> Result {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for t in 0..conc {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let raw = client.raw();
            let txn = client.txn();
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut i = 0u64;
            while Instant::now() < deadline {
                let key = format!("bench/{t:03}/{:06}", i % 10_000).into_bytes();
                let start = Instant::now();
                let ok = match w {
                    Workload::RawPut => raw.put(&key, b"value-0123456789").await.is_ok(),
                    Workload::RawGet => raw.get(&key).await.is_ok(),
                    Workload::Txn2Key => async {
                        let mut x = txn.begin().await?;
                        x.put(format!("tb/{t:03}/a/{i}").into_bytes(), b"1".to_vec());
                        x.put(format!("tb/{t:03}/b/{i}").into_bytes(), b"2".to_vec());
                        x.commit().await
                    }
                    .await
                    .is_ok(),
                };
                if ok {
                    lat.push(start.elapsed().as_micros() as u32);
                } else {
                    errors += 1;
                }
                i += 1;
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("bench task");
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    let p99 = all
        .get(all.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or(0);
    Result {
        ops_per_sec: all.len() as f64 / secs as f64,
        p99_ms: f64::from(p99) / 1000.0,
        errors,
    }
}

/// Waits until PD reports the first region with `n` voters and a leader.
async fn wait_voters(c: &Cluster, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok((200, body)) = c.pd_get("/pd/api/v1/regions").await {
            if body.matches("\"role_name\":\"Voter\"").count() >= n && body.contains("\"leader\":{")
            {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the region did not reach {n} voters within 120s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// One measured row: plaintext, mTLS, and (with `--replicas 3`) mTLS on
/// one store.
type Row = ((Workload, usize), Result, Result, Option<Result>);

/// Runs every (workload, concurrency) against the clusters, interleaved
/// (plain, mTLS[, mTLS x1], plain, mTLS[, mTLS x1]) so that load from
/// anything else on the machine falls on every side alike; each side's
/// result is the mean of its two rounds.
async fn measure(args: &Args) -> Vec<Row> {
    let n = args.replicas.max(1);
    let plain = Cluster::start(false, n).await;
    let tls = Cluster::start(true, n).await;
    let single = if n > 1 {
        Some(Cluster::start(true, 1).await)
    } else {
        None
    };
    wait_voters(&plain, n).await;
    wait_voters(&tls, n).await;
    let (cp, ct) = (connect(&plain).await, connect(&tls).await);
    let c1 = match &single {
        Some(c) => Some(connect(c).await),
        None => None,
    };
    let half = (args.seconds / 2).max(1);
    let mean = |a: Result, b: Result| Result {
        ops_per_sec: (a.ops_per_sec + b.ops_per_sec) / 2.0,
        p99_ms: a.p99_ms.max(b.p99_ms),
        errors: a.errors + b.errors,
    };
    let mut out = Vec::new();
    for w in [Workload::RawPut, Workload::RawGet, Workload::Txn2Key] {
        for &conc in &args.concurrency {
            let mut rounds: [Vec<Result>; 3] = Default::default();
            for _ in 0..2 {
                rounds[0].push(run(&cp, w, conc, half).await);
                rounds[1].push(run(&ct, w, conc, half).await);
                if let Some(c1) = &c1 {
                    rounds[2].push(run(c1, w, conc, half).await);
                }
            }
            let mut side = |i: usize| {
                let b = rounds[i].pop()?;
                let a = rounds[i].pop()?;
                Some(mean(a, b))
            };
            let (Some(p), Some(t), one) = (side(0), side(1), side(2)) else {
                continue;
            };
            let errors = p.errors + t.errors + one.as_ref().map_or(0, |o| o.errors);
            eprintln!(
                "  {w:?} x{conc}: plain {:.0} ops/s (p99 {:.2} ms), mTLS {:.0} ops/s (p99 {:.2} ms){}{}",
                p.ops_per_sec,
                p.p99_ms,
                t.ops_per_sec,
                t.p99_ms,
                one.as_ref().map_or(String::new(), |o| format!(
                    ", mTLS 1 replica {:.0} ops/s (p99 {:.2} ms)",
                    o.ops_per_sec, o.p99_ms
                )),
                if errors > 0 { format!(", {errors} errors") } else { String::new() }
            );
            out.push(((w, conc), p, t, one));
        }
    }
    let rss = |c: &Cluster| {
        c.kv.iter()
            .map(|k| k.peak_rss_bytes().unwrap_or(0))
            .max()
            .unwrap_or(0) as f64
            / 1048576.0
    };
    eprintln!(
        "  tikv-server peak resident memory (largest store): plaintext {:.1} MiB, mTLS {:.1} MiB",
        rss(&plain),
        rss(&tls)
    );
    out
}

/// Timestamps delivered per PD RPC with 64 concurrent callers (the TSO
/// batching of `tiox-client`), over mutual TLS.
async fn tso_batching() {
    let c = Cluster::start(true, 1).await;
    let client = connect(&c).await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..500 {
                let _ = client.tso.get_ts().await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let rpcs = client
        .tso
        .stats
        .rpcs
        .load(std::sync::atomic::Ordering::Relaxed);
    let ts = client
        .tso
        .stats
        .timestamps
        .load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "TSO batching: 64 callers x 500 timestamps = {ts} timestamps in {rpcs} PD RPCs ({:.1} per RPC), {:.0} timestamps/s, mTLS",
        ts as f64 / rpcs.max(1) as f64,
        ts as f64 / started.elapsed().as_secs_f64()
    );
}

async fn fill(args: &Args) {
    let c = Cluster::start(true, 1).await;
    let raw = connect(&c).await.raw();
    let n = args.fill_mib * 16; // 64 KiB values
    let started = Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (raw, next) = (raw.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let value = vec![7u8; 64 * 1024];
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return;
                }
                raw.put(format!("fill/{i:08}").as_bytes(), &value)
                    .await
                    .expect("fill");
                if i > 0 && i.is_multiple_of(16 * 128) {
                    eprintln!(
                        "  filled {} MiB ({:.0}s)",
                        i / 16,
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let rss = c.kv[0].peak_rss_bytes().unwrap_or(0);
    println!(
        "fill: {} MiB of raw data (64 KiB values) written in {:.1}s; tikv-server peak resident memory {:.1} MiB (block cache default 64 MiB)",
        args.fill_mib,
        started.elapsed().as_secs_f64(),
        rss as f64 / 1048576.0
    );
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if args.fill_mib > 0 {
        fill(&args).await;
    }
    let n = args.replicas.max(1);
    eprintln!(
        "kv-bench: {}s per measurement (two interleaved rounds per side), 1 PD + {n} TiKV per cluster{} on this machine",
        args.seconds,
        if n > 1 { " (+ a 1-TiKV mTLS cluster)" } else { "" }
    );
    tso_batching().await;
    let rows = measure(&args).await;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    if n > 1 {
        println!(
            "\n{n} replicas (plain and mTLS) vs 1 replica (mTLS)\n{:<10} {:>5} {:>12} {:>8} {:>12} {:>8} {:>10} {:>12} {:>8} {:>10}",
            "workload", "conc", "plain ops/s", "p99 ms", "mTLS ops/s", "p99 ms", "TLS/plain", "1-rep ops/s", "p99 ms", format!("{n}rep/1rep")
        );
    } else {
        println!(
            "\n{:<10} {:>5} {:>12} {:>8} {:>12} {:>8} {:>10}",
            "workload", "conc", "plain ops/s", "p99 ms", "mTLS ops/s", "p99 ms", "TLS/plain"
        );
    }
    for ((w, conc), p, t, one) in &rows {
        print!(
            "{:<10} {:>5} {:>12.0} {:>8.2} {:>12.0} {:>8.2} {:>10.3}",
            format!("{w:?}"),
            conc,
            p.ops_per_sec,
            p.p99_ms,
            t.ops_per_sec,
            t.p99_ms,
            ratio(t.ops_per_sec, p.ops_per_sec)
        );
        match one {
            Some(o) => println!(
                " {:>12.0} {:>8.2} {:>10.3}",
                o.ops_per_sec,
                o.p99_ms,
                ratio(t.ops_per_sec, o.ops_per_sec)
            ),
            None => println!(),
        }
    }
}
