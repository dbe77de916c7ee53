//! `pd-bench`: TSO throughput of a real PD server over the real client path
//! (tonic gRPC over `ClientTls`), with mutual TLS and without, on 1 and 16
//! concurrent streams, printing requests/s, timestamps/s and the TLS /
//! plaintext ratio measured in the same run.
//!
//! The server runs in-process on its own runtime (the machine's cores are
//! shared by client and server, so absolute numbers are a lower bound);
//! certificates are generated for the run in a temp directory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use tiox_pd::config::PdConfig;
use tiox_pd::server::Server;
use tiox_proto::pdpb;
use tiox_security::certgen::{CertAuthority, KeyType, Profile, Spec, Validity};
use tiox_security::{ClientTls, Component, SecurityConfig};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// TSO benchmark: plaintext vs mutual TLS.
#[derive(Parser, Debug)]
#[command(name = "pd-bench")]
struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Timestamps asked for per request (a client batching its callers).
    #[arg(long, default_value_t = 10)]
    count: u32,
    /// Requests in flight per stream (1 = strict ping-pong).
    #[arg(long, default_value_t = 4)]
    inflight: usize,
    /// Stream counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    streams: Vec<usize>,
    /// Alternating plaintext/TLS rounds per stream count; medians are
    /// printed (the machine may be shared: alternation spreads the noise).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn make_pki(dir: &std::path::Path) -> Result<()> {
    let ca = CertAuthority::generate("pd-bench CA", Validity::Days(1), KeyType::EcdsaP256)?;
    std::fs::write(dir.join("ca.pem"), &ca.cert_pem)?;
    for (name, hosts, profile) in [
        ("pd", vec!["127.0.0.1"], Profile::Server),
        ("client", vec![], Profile::Client),
    ] {
        let issued = ca.issue(&Spec::new(name, &hosts, profile))?;
        std::fs::write(dir.join(format!("{name}.pem")), &issued.cert_pem)?;
        std::fs::write(dir.join(format!("{name}-key.pem")), issued.key_pem.expose())?;
    }
    Ok(())
}

fn p(dir: &std::path::Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// Starts a PD on a free port; returns its address.
fn start_pd(
    server_rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    tls: bool,
) -> Result<String> {
    let scheme = if tls { "https" } else { "http" };
    let mut config = PdConfig {
        name: "bench".into(),
        data_dir: p(dir, if tls { "data-tls" } else { "data-plain" }),
        client_urls: format!("{scheme}://127.0.0.1:0"),
        peer_urls: format!("{scheme}://127.0.0.1:0"),
        ..Default::default()
    };
    if tls {
        config.security =
            SecurityConfig::from_paths(&p(dir, "ca.pem"), &p(dir, "pd.pem"), &p(dir, "pd-key.pem"));
    }
    let validated = config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let server = server_rt.block_on(Server::bind(validated))?;
    let addr = server
        .local_addrs()
        .first()
        .context("the server bound no address")?
        .to_string();
    server_rt.spawn(server.run());
    Ok(addr)
}

struct Measured {
    requests: u64,
    secs: f64,
}

async fn measure(
    addr: &str,
    tls: Option<Arc<ClientTls>>,
    streams: usize,
    args: &Args,
) -> Result<Measured> {
    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..streams {
        clients.push(tiox_pd::client::connect(addr, tls.clone()).await?);
    }
    let start = Instant::now();
    for mut client in clients {
        let (tx, rx) = mpsc::channel::<pdpb::TsoRequest>(args.inflight * 2);
        let stop = stop.clone();
        let requests = requests.clone();
        let (count, inflight) = (args.count, args.inflight);
        tasks.push(tokio::spawn(async move {
            let req = pdpb::TsoRequest {
                header: None,
                count,
                dc_location: String::new(),
            };
            for _ in 0..inflight {
                tx.send(req.clone()).await?;
            }
            let mut resp = client.tso(ReceiverStream::new(rx)).await?.into_inner();
            let mut last = 0u64;
            while let Some(r) = resp.message().await? {
                let ts = r.timestamp.context("a TSO response without a timestamp")?;
                let v = ((ts.physical as u64) << 18) | ts.logical as u64;
                anyhow::ensure!(v > last, "TSO went backwards: {v} after {last}");
                last = v;
                requests.fetch_add(1, Ordering::Relaxed);
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                tx.send(req.clone()).await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let n = requests.load(Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    for t in tasks {
        t.await??;
    }
    Ok(Measured { requests: n, secs })
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dir = TempDir(std::env::temp_dir().join(format!("pd-bench-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;
    make_pki(&dir.0)?;
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let plain_addr = start_pd(&server_rt, &dir.0, false)?;
    let tls_addr = start_pd(&server_rt, &dir.0, true)?;
    let settings = SecurityConfig::from_paths(
        &p(&dir.0, "ca.pem"),
        &p(&dir.0, "client.pem"),
        &p(&dir.0, "client-key.pem"),
    )
    .validate(Component::Tiox)?
    .context("TLS settings missing")?;
    let client_tls = Arc::new(ClientTls::with_alpn(settings, vec![b"h2".to_vec()])?);
    println!(
        "pd-bench: TSO, {} timestamps per request, {} in flight per stream, {:.1}s per run, \
         median of {} alternating rounds, {} cores",
        args.count,
        args.inflight,
        args.seconds,
        args.rounds.max(1),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:>8} {:>10} {:>14} {:>16}",
        "streams", "transport", "requests/s", "timestamps/s"
    );
    let rate = |m: &Measured| m.requests as f64 / m.secs;
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    for &streams in &args.streams {
        let (mut plain, mut tls) = (Vec::new(), Vec::new());
        for _ in 0..args.rounds.max(1) {
            plain.push(rate(&client_rt.block_on(measure(
                &plain_addr,
                None,
                streams,
                &args,
            ))?));
            tls.push(rate(&client_rt.block_on(measure(
                &tls_addr,
                Some(client_tls.clone()),
                streams,
                &args,
            ))?));
        }
        let (plain, tls) = (median(plain), median(tls));
        for (name, r) in [("plaintext", plain), ("mTLS", tls)] {
            println!(
                "{:>8} {:>10} {:>14.0} {:>16.0}",
                streams,
                name,
                r,
                r * f64::from(args.count)
            );
        }
        println!("{:>8} {:>10} {:>14.3}", streams, "TLS/plain", tls / plain);
    }
    client_rt.shutdown_timeout(Duration::from_secs(1));
    server_rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
