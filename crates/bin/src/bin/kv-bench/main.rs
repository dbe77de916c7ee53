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

use std::collections::BTreeMap;
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

async fn measure(tls: bool, args: &Args) -> (BTreeMap<(Workload, usize), Result>, u64) {
    let c = Cluster::start(tls, 1).await;
    let client = connect(&c).await;
    let mut out = BTreeMap::new();
    for w in [Workload::RawPut, Workload::RawGet, Workload::Txn2Key] {
        for &conc in &args.concurrency {
            let r = run(&client, w, conc, args.seconds).await;
            eprintln!(
                "  {} {w:?} x{conc}: {:.0} ops/s, p99 {:.2} ms{}",
                if tls { "mTLS " } else { "plain" },
                r.ops_per_sec,
                r.p99_ms,
                if r.errors > 0 {
                    format!(", {} errors", r.errors)
                } else {
                    String::new()
                }
            );
            out.insert((w, conc), r);
        }
    }
    let rss = c.kv[0].peak_rss_bytes().unwrap_or(0);
    (out, rss)
}

async fn fill(args: &Args) {
    let c = Cluster::start(true, 1).await;
    let raw = connect(&c).await.raw();
    let value = vec![7u8; 64 * 1024];
    let n = args.fill_mib * 16;
    let started = Instant::now();
    let mut written = 0u64;
    for chunk in (0..n).collect::<Vec<_>>().chunks(16) {
        let pairs = chunk
            .iter()
            .map(|i| (format!("fill/{i:08}").into_bytes(), value.clone()))
            .collect();
        raw.batch_put(pairs).await.expect("fill");
        written += chunk.len() as u64;
        if written.is_multiple_of(1024) {
            eprintln!(
                "  filled {} MiB ({:.0}s)",
                written / 16,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let rss = c.kv[0].peak_rss_bytes().unwrap_or(0);
    println!(
        "fill: {} MiB of raw data written in {:.1}s; tikv-server peak resident memory {:.1} MiB (block cache default 64 MiB)",
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
        "kv-bench: {}s per measurement, 1 PD + 1 TiKV on this machine",
        args.seconds
    );
    let (plain, rss_plain) = measure(false, &args).await;
    let (tls, rss_tls) = measure(true, &args).await;
    println!(
        "\n{:<10} {:>5} {:>12} {:>10} {:>12} {:>10} {:>10}",
        "workload", "conc", "plain ops/s", "p99 ms", "mTLS ops/s", "p99 ms", "TLS/plain"
    );
    for ((w, conc), p) in &plain {
        let t = &tls[&(*w, *conc)];
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
    println!(
        "tikv-server peak resident memory: plaintext run {:.1} MiB, mTLS run {:.1} MiB",
        rss_plain as f64 / 1048576.0,
        rss_tls as f64 / 1048576.0
    );
}
