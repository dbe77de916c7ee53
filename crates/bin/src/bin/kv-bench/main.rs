//! `kv-bench`: the KV benchmark of issues 4 and 5. Starts its own PD + TiKV
//! (from the binaries beside it), once with mutual TLS and once without,
//! drives raw put, raw get and 2-key transactions through `tiox-client` at
//! 1 and 32 concurrent callers, and prints ops/s, p99 latency, the store's
//! peak resident memory, and the TLS/plaintext ratio measured in this run.
//!
//! ```text
//! cargo run --release --bin kv-bench -- [--seconds 5] [--fill-mib 0]
//! ```
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

/// Runs every (workload, concurrency) against both clusters, interleaved
/// (plain, mTLS, plain, mTLS) so that load from anything else on the
/// machine falls on both sides alike; each side's result is the mean of its
/// two rounds.
async fn measure_both(args: &Args) -> Vec<((Workload, usize), Result, Result)> {
    let plain = Cluster::start(false, 1).await;
    let tls = Cluster::start(true, 1).await;
    let (cp, ct) = (connect(&plain).await, connect(&tls).await);
    let half = (args.seconds / 2).max(1);
    let mut out = Vec::new();
    for w in [Workload::RawPut, Workload::RawGet, Workload::Txn2Key] {
        for &conc in &args.concurrency {
            let p1 = run(&cp, w, conc, half).await;
            let t1 = run(&ct, w, conc, half).await;
            let p2 = run(&cp, w, conc, half).await;
            let t2 = run(&ct, w, conc, half).await;
            let mean = |a: Result, b: Result| Result {
                ops_per_sec: (a.ops_per_sec + b.ops_per_sec) / 2.0,
                p99_ms: a.p99_ms.max(b.p99_ms),
                errors: a.errors + b.errors,
            };
            let (p, t) = (mean(p1, p2), mean(t1, t2));
            eprintln!(
                "  {w:?} x{conc}: plain {:.0} ops/s (p99 {:.2} ms), mTLS {:.0} ops/s (p99 {:.2} ms){}",
                p.ops_per_sec,
                p.p99_ms,
                t.ops_per_sec,
                t.p99_ms,
                if p.errors + t.errors > 0 { format!(", {} errors", p.errors + t.errors) } else { String::new() }
            );
            out.push(((w, conc), p, t));
        }
    }
    eprintln!(
        "  tikv-server peak resident memory: plaintext {:.1} MiB, mTLS {:.1} MiB",
        plain.kv[0].peak_rss_bytes().unwrap_or(0) as f64 / 1048576.0,
        tls.kv[0].peak_rss_bytes().unwrap_or(0) as f64 / 1048576.0
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
    eprintln!(
        "kv-bench: {}s per measurement (two interleaved rounds per side), 1 PD + 1 TiKV per cluster on this machine",
        args.seconds
    );
    tso_batching().await;
    let rows = measure_both(&args).await;
    println!(
        "\n{:<10} {:>5} {:>12} {:>10} {:>12} {:>10} {:>10}",
        "workload", "conc", "plain ops/s", "p99 ms", "mTLS ops/s", "p99 ms", "TLS/plain"
    );
    for ((w, conc), p, t) in &rows {
        println!(
            "{:<10} {:>5} {:>12.0} {:>10.2} {:>12.0} {:>10.2} {:>10.3}",
            format!("{w:?}"),
            conc,
            p.ops_per_sec,
            p.p99_ms,
            t.ops_per_sec,
            t.p99_ms,
            if p.ops_per_sec > 0.0 {
                t.ops_per_sec / p.ops_per_sec
            } else {
                0.0
            }
        );
    }
}
