//! etcd's `Watch` service: one bidirectional stream carries many watchers.
//!
//! ```text
//!  client ──create/cancel/progress──► stream task ◄── Hub (every write's events)
//!                                        │ per watcher: range, filters,
//!                                        │ prev_kv, next revision to send
//!  client ◄──created / events / progress / canceled ──┘
//! ```
//!
//! No gap, no duplicate: the stream subscribes to the hub before any
//! watcher is created; a watcher with a start revision first gets the
//! history from it, read under the core's lock (so nothing is published
//! meanwhile), and from then on only events above what it was sent. A
//! stream that falls behind the hub catches up from the history the same
//! way. When this member stops leading, the stream ends with
//! `Unavailable` and the client re-creates its watchers elsewhere from the
//! next revision.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tiox_proto::etcdserverpb::{self as pb, watch_server::Watch};
use tiox_proto::mvccpb::{self, event::EventType};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::store::in_range;
use super::Published;

/// A watch stream's error when this member cannot serve it. Not etcd's "no
/// leader" message: etcd's client takes that one as final for a watch,
/// while any other `Unavailable` makes it re-create its watchers.
fn unavailable(e: crate::Error) -> Status {
    match e {
        crate::Error::NotLeader { .. } => {
            Status::unavailable("etcdserver: this PD member does not lead; retry")
        }
        other => super::Error::from(other).into(),
    }
}
use crate::server::State;

/// How often a watcher that asked for progress notifications and saw no
/// event is told the current revision.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// The Watch service.
#[derive(Clone, Debug)]
pub struct WatchService {
    state: Arc<State>,
}

impl WatchService {
    /// A service over the shared state.
    pub fn new(state: Arc<State>) -> WatchService {
        WatchService { state }
    }
}

struct Watcher {
    key: Vec<u8>,
    range_end: Vec<u8>,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    progress_notify: bool,
    /// The lowest revision not yet sent.
    next: i64,
    /// Whether an event went out since the last progress tick.
    active: bool,
}

impl Watcher {
    fn select(&self, events: &[mvccpb::Event]) -> Vec<mvccpb::Event> {
        events
            .iter()
            .filter(|e| {
                e.kv.as_ref().is_some_and(|kv| {
                    kv.mod_revision >= self.next && in_range(&kv.key, &self.key, &self.range_end)
                })
            })
            .filter(|e| {
                let put = e.r#type == EventType::Put as i32;
                !(put && self.no_put || !put && self.no_delete)
            })
            .map(|e| {
                let mut e = e.clone();
                if !self.prev_kv {
                    e.prev_kv = None;
                }
                e
            })
            .collect()
    }
}

type Out = mpsc::Sender<Result<pb::WatchResponse, Status>>;

struct Session {
    state: Arc<State>,
    out: Out,
    watchers: BTreeMap<i64, Watcher>,
    next_id: i64,
    hub: broadcast::Receiver<Arc<Published>>,
}

impl Session {
    async fn send(&self, r: pb::WatchResponse) -> bool {
        self.out.send(Ok(r)).await.is_ok()
    }

    fn response(&self, id: i64, revision: i64) -> pb::WatchResponse {
        pb::WatchResponse {
            header: Some(self.state.etcd_header(revision)),
            watch_id: id,
            ..Default::default()
        }
    }

    /// Reads, under the core's lock, what `id` has not been sent yet from
    /// the history. Returns the responses to send, or the compaction
    /// revision if that history is gone.
    fn catch_up(&mut self, id: i64) -> Result<Vec<pb::WatchResponse>, Result<i64, Status>> {
        let mut c = self.state.cluster().map_err(|e| Err(unavailable(e)))?;
        let (store, _) = c.etcd();
        let current = store.revision();
        let Some(w) = self.watchers.get_mut(&id) else {
            return Ok(Vec::new());
        };
        if w.next > current {
            return Ok(Vec::new());
        }
        let events = store
            .history_since(w.next, &w.key, &w.range_end, true)
            .map_err(|_| Ok(store.compact_revision()))?;
        let mut out = Vec::new();
        let mut by_rev: BTreeMap<i64, Vec<mvccpb::Event>> = BTreeMap::new();
        for e in events {
            let rev = e.kv.as_ref().map_or(0, |kv| kv.mod_revision);
            by_rev.entry(rev).or_default().push(e);
        }
        for (rev, evs) in by_rev {
            let sel = w.select(&evs);
            if !sel.is_empty() {
                out.push(pb::WatchResponse {
                    header: Some(self.state.etcd_header(rev.max(current))),
                    watch_id: id,
                    events: sel,
                    ..Default::default()
                });
            }
        }
        w.next = current + 1;
        Ok(out)
    }

    async fn create(&mut self, req: pb::WatchCreateRequest) -> Result<(), Status> {
        let id = if req.watch_id != 0 {
            req.watch_id
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        };
        let revision = {
            let mut c = self.state.cluster().map_err(unavailable)?;
            c.etcd().0.revision()
        };
        if self.watchers.contains_key(&id) {
            let mut r = self.response(id, revision);
            r.created = true;
            r.canceled = true;
            r.cancel_reason = "etcdserver: duplicate watch id".into();
            self.send(r).await;
            return Ok(());
        }
        let filters = &req.filters;
        use pb::watch_create_request::FilterType as F;
        let w = Watcher {
            no_put: filters.contains(&(F::Noput as i32)),
            no_delete: filters.contains(&(F::Nodelete as i32)),
            prev_kv: req.prev_kv,
            progress_notify: req.progress_notify,
            next: if req.start_revision > 0 {
                req.start_revision
            } else {
                revision + 1
            },
            key: req.key,
            range_end: req.range_end,
            active: false,
        };
        self.watchers.insert(id, w);
        let mut created = self.response(id, revision);
        created.created = true;
        self.send(created).await;
        self.flush_history(id).await
    }

    async fn flush_history(&mut self, id: i64) -> Result<(), Status> {
        match self.catch_up(id) {
            Ok(rs) => {
                for r in rs {
                    self.send(r).await;
                }
                Ok(())
            }
            Err(Ok(compact)) => {
                self.watchers.remove(&id);
                let mut r = self.response(id, compact);
                r.canceled = true;
                r.compact_revision = compact;
                r.cancel_reason = super::Error::Compacted.to_string();
                self.send(r).await;
                Ok(())
            }
            Err(Err(status)) => Err(status),
        }
    }

    async fn on_published(&mut self, p: &Published) {
        let mut out = Vec::new();
        for (id, w) in &mut self.watchers {
            if p.revision < w.next {
                continue;
            }
            let sel = w.select(&p.events);
            w.next = p.revision + 1;
            if !sel.is_empty() {
                w.active = true;
                out.push(pb::WatchResponse {
                    header: Some(self.state.etcd_header(p.revision)),
                    watch_id: *id,
                    events: sel,
                    ..Default::default()
                });
            }
        }
        for r in out {
            self.send(r).await;
        }
    }

    async fn progress(&mut self, all: bool) -> Result<(), Status> {
        let revision = {
            let mut c = self.state.cluster().map_err(unavailable)?;
            c.etcd().0.revision()
        };
        if all {
            // A requested progress report goes to the whole stream.
            self.send(self.response(-1, revision)).await;
            return Ok(());
        }
        let mut ids = Vec::new();
        for (id, w) in &mut self.watchers {
            if w.progress_notify && !w.active && w.next > revision {
                ids.push(*id);
            }
            w.active = false;
        }
        for id in ids {
            self.send(self.response(id, revision)).await;
        }
        Ok(())
    }

    async fn run(mut self, mut inbound: Streaming<pb::WatchRequest>) {
        use pb::watch_request::RequestUnion as U;
        let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
        tick.tick().await;
        let mut check = tokio::time::interval(Duration::from_secs(1));
        loop {
            let r: Result<(), Status> = tokio::select! {
                m = inbound.next() => match m {
                    Some(Ok(pb::WatchRequest { request_union: Some(U::CreateRequest(c)) })) => {
                        self.create(c).await
                    }
                    Some(Ok(pb::WatchRequest { request_union: Some(U::CancelRequest(c)) })) => {
                        let rev = self.state.cluster().map_or(0, |mut c| c.etcd().0.revision());
                        if self.watchers.remove(&c.watch_id).is_some() {
                            let mut r = self.response(c.watch_id, rev);
                            r.canceled = true;
                            self.send(r).await;
                        }
                        Ok(())
                    }
                    Some(Ok(pb::WatchRequest { request_union: Some(U::ProgressRequest(_)) })) => {
                        self.progress(true).await
                    }
                    Some(Ok(_)) => Ok(()),
                    Some(Err(_)) | None => return,
                },
                p = self.hub.recv() => match p {
                    Ok(p) => {
                        self.on_published(&p).await;
                        Ok(())
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Fell behind: resubscribe, then read the missed
                        // revisions from the history.
                        self.hub = self.state.etcd.subscribe();
                        let ids: Vec<i64> = self.watchers.keys().copied().collect();
                        let mut r = Ok(());
                        for id in ids {
                            r = r.and(self.flush_history(id).await);
                        }
                        r
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => self.progress(false).await,
                _ = check.tick() => self.state.cluster().map(drop).map_err(unavailable),
            };
            if let Err(status) = r {
                let _ = self.out.send(Err(status)).await;
                return;
            }
            if self.out.is_closed() {
                return;
            }
        }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let state = self.state.clone();
        state.metrics.grpc("etcd.Watch");
        drop(state.cluster().map_err(unavailable)?);
        let (tx, rx) = mpsc::channel(256);
        let session = Session {
            hub: state.etcd.subscribe(),
            state,
            out: tx,
            watchers: BTreeMap::new(),
            next_id: 0,
        };
        tokio::spawn(session.run(req.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiox_proto::mvccpb::KeyValue;

    fn event(kind: EventType, key: &str, rev: i64) -> mvccpb::Event {
        mvccpb::Event {
            r#type: kind as i32,
            kv: Some(KeyValue {
                key: key.into(),
                mod_revision: rev,
                ..Default::default()
            }),
            prev_kv: Some(KeyValue {
                key: key.into(),
                ..Default::default()
            }),
        }
    }

    fn watcher(no_put: bool, prev_kv: bool, next: i64) -> Watcher {
        Watcher {
            key: b"p/".to_vec(),
            range_end: b"p0".to_vec(),
            no_put,
            no_delete: false,
            prev_kv,
            progress_notify: false,
            next,
            active: false,
        }
    }

    #[test]
    fn a_watcher_gets_its_range_above_its_next_revision_with_filters_applied() {
        let evs = vec![
            event(EventType::Put, "p/a", 5),
            event(EventType::Delete, "p/b", 5),
            event(EventType::Put, "q", 5),
            event(EventType::Put, "p/c", 3),
        ];
        let all = watcher(false, false, 4).select(&evs);
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|e| e.prev_kv.is_none()));
        let no_put = watcher(true, true, 4).select(&evs);
        assert_eq!(no_put.len(), 1);
        assert_eq!(no_put[0].r#type, EventType::Delete as i32);
        assert!(no_put[0].prev_kv.is_some());
    }
}
