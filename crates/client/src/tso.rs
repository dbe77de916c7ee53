//! Timestamps from PD, batched: one long-lived TSO stream, and every caller
//! waiting at the moment a request is sent is served by that one RPC.
//!
//! The batching rule is a deterministic core ([`Batch`]): PD answers a
//! request for `count` timestamps with the LAST of them (physical, logical);
//! the callers get `logical - count + 1 ..= logical` in arrival order.
//!
//! Every exchange is bounded: a batch is answered, or fails with an error
//! naming PD, within [`PD_TIMEOUT`] (opening the stream, sending, hearing
//! the answer), preceded after a failure by one re-discovery of the PD
//! leader (each GetMembers also bounded by [`PD_TIMEOUT`]). A frozen PD,
//! whose connections stay open and silent, therefore fails a timestamp
//! request within [`crate::pd::PD_CALL_BUDGET`] rather than when HTTP/2
//! keep-alive gives up on the connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tiox_proto::pdpb;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::pd::{pd_rpc_error, PdClient, PD_TIMEOUT};
use crate::transport::Timestamps;

/// Bits of the logical part.
pub const LOGICAL_BITS: u32 = 18;

/// Composes a timestamp.
pub fn compose(physical_ms: u64, logical: u64) -> u64 {
    (physical_ms << LOGICAL_BITS) | logical
}

/// Callers waiting for one TSO response.
pub struct Batch<W> {
    waiters: Vec<W>,
}

impl<W> Batch<W> {
    /// A batch of waiters (in arrival order).
    pub fn new(waiters: Vec<W>) -> Self {
        Batch { waiters }
    }

    /// How many timestamps to ask for.
    pub fn count(&self) -> u32 {
        self.waiters.len() as u32
    }

    /// The timestamps for the waiters, in order, given PD's answer (the
    /// last timestamp of the `count` allocated). Errors if PD answered a
    /// different count or a logical part too small to hold them.
    pub fn timestamps(&self, physical: u64, last_logical: u64, count: u32) -> Result<Vec<u64>> {
        if count != self.count() {
            return Err(Error::Pd(format!(
                "TSO answered {count} timestamps for {} asked",
                self.count()
            )));
        }
        let n = u64::from(count);
        if last_logical + 1 < n {
            return Err(Error::Pd(format!(
                "TSO logical {last_logical} cannot hold {n} timestamps"
            )));
        }
        let first = last_logical + 1 - n;
        Ok((0..n).map(|i| compose(physical, first + i)).collect())
    }

    /// The waiters.
    pub fn into_waiters(self) -> Vec<W> {
        self.waiters
    }
}

type Waiter = oneshot::Sender<Result<u64>>;

/// Counters of the batching, for the benchmark.
#[derive(Debug, Default)]
pub struct TsoStats {
    /// TSO RPCs sent.
    pub rpcs: AtomicU64,
    /// Timestamps delivered.
    pub timestamps: AtomicU64,
}

/// The batching TSO client (or an in-process oracle's handle).
#[derive(Clone)]
pub struct TsoClient {
    source: Source,
    /// Counters.
    pub stats: Arc<TsoStats>,
}

#[derive(Clone)]
enum Source {
    /// PD, through the batching task.
    Pd(mpsc::UnboundedSender<Waiter>),
    /// An in-process oracle (see [`crate::transport`]).
    Local(Arc<dyn Timestamps>),
}

impl TsoClient {
    /// Starts the batching task on `pd`.
    pub fn start(pd: Arc<PdClient>) -> TsoClient {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(TsoStats::default());
        tokio::spawn(run(pd, rx, stats.clone()));
        TsoClient {
            source: Source::Pd(tx),
            stats,
        }
    }

    /// Timestamps from an in-process oracle (no batching: a call is cheap).
    pub fn local(oracle: Arc<dyn Timestamps>) -> TsoClient {
        TsoClient {
            source: Source::Local(oracle),
            stats: Arc::new(TsoStats::default()),
        }
    }

    /// One timestamp.
    pub async fn get_ts(&self) -> Result<u64> {
        let tx = match &self.source {
            Source::Pd(tx) => tx,
            Source::Local(oracle) => {
                let ts = oracle.next()?;
                self.stats.timestamps.fetch_add(1, Ordering::Relaxed);
                return Ok(ts);
            }
        };
        let (reply, rx) = oneshot::channel();
        tx.send(reply)
            .map_err(|_| Error::Pd("the TSO task stopped".into()))?;
        rx.await
            .map_err(|_| Error::Pd("the TSO task stopped".into()))?
    }
}

async fn run(pd: Arc<PdClient>, mut rx: mpsc::UnboundedReceiver<Waiter>, stats: Arc<TsoStats>) {
    let mut stream: Option<(
        mpsc::Sender<pdpb::TsoRequest>,
        tonic::Streaming<pdpb::TsoResponse>,
    )> = None;
    // After a failure the next batch first looks for the leader again.
    let mut rediscover = false;
    while let Some(first) = rx.recv().await {
        let mut waiters = vec![first];
        while let Ok(w) = rx.try_recv() {
            waiters.push(w);
            if waiters.len() >= 10_000 {
                break;
            }
        }
        let batch = Batch::new(waiters);
        let count = batch.count();
        let result = async {
            if rediscover {
                pd.reconnect().await?;
                rediscover = false;
            }
            let leader = pd.leader_addr().await;
            let exchange = async {
                if stream.is_none() {
                    stream = Some(pd.tso_stream().await?);
                }
                let (tx, resp) = stream
                    .as_mut()
                    .ok_or_else(|| Error::Pd("no TSO stream".into()))?;
                tx.send(pdpb::TsoRequest {
                    header: Some(pd.request_header()),
                    count,
                    ..Default::default()
                })
                .await
                .map_err(|_| Error::Pd("the TSO stream closed".into()))?;
                let r = resp
                    .message()
                    .await
                    .map_err(|s| match pd_rpc_error(&leader, s) {
                        Error::PdUnreachable { addr, reason } => Error::PdUnreachable {
                            addr,
                            reason: format!("TSO stream: {reason}"),
                        },
                        other => other,
                    })?
                    .ok_or_else(|| Error::Pd("the TSO stream closed".into()))?;
                if let Some(e) = r.header.as_ref().and_then(|h| h.error.as_ref()) {
                    return Err(Error::Pd(format!("TSO: {}", e.message)));
                }
                let ts = r
                    .timestamp
                    .ok_or_else(|| Error::Pd("TSO response without a timestamp".into()))?;
                Ok((ts.physical as u64, ts.logical as u64, r.count))
            };
            match tokio::time::timeout(PD_TIMEOUT, exchange).await {
                Ok(r) => r,
                Err(_) => Err(Error::PdUnreachable {
                    addr: leader.clone(),
                    reason: format!("no timestamp within {}s", PD_TIMEOUT.as_secs()),
                }),
            }
        }
        .await;
        stats.rpcs.fetch_add(1, Ordering::Relaxed);
        match result.and_then(|(p, l, c)| batch.timestamps(p, l, c)) {
            Ok(timestamps) => {
                stats
                    .timestamps
                    .fetch_add(timestamps.len() as u64, Ordering::Relaxed);
                for (w, ts) in batch.into_waiters().into_iter().zip(timestamps) {
                    let _ = w.send(Ok(ts));
                }
            }
            Err(e) => {
                // Drop the stream; the next batch finds the leader again
                // and re-opens it (following a PD leader change). These
                // callers get the error at once and may retry.
                stream = None;
                rediscover = true;
                for w in batch.into_waiters() {
                    let _ = w.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_response_serves_every_waiter_in_order_with_distinct_timestamps() {
        let batch = Batch::new(vec!['a', 'b', 'c', 'd']);
        let got = batch.timestamps(1000, 9, 4).unwrap();
        assert_eq!(
            got,
            vec![
                compose(1000, 6),
                compose(1000, 7),
                compose(1000, 8),
                compose(1000, 9)
            ]
        );
        assert_eq!(batch.into_waiters(), vec!['a', 'b', 'c', 'd']);
    }

    #[test]
    fn a_response_with_the_wrong_count_is_refused() {
        assert!(Batch::new(vec![1, 2]).timestamps(5, 10, 3).is_err());
        assert!(
            Batch::new(vec![1, 2, 3]).timestamps(5, 1, 3).is_err(),
            "logical too small"
        );
    }
}
