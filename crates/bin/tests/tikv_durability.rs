//! SIGKILL of a store under a write load, then restart: every acknowledged
//! write is there, no transaction is half-visible, and the store rejoins PD.

#[path = "support/cluster.rs"]
mod cluster;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster::Cluster;
use tikv_client::{Config, RawClient, TransactionClient};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_and_transactions_stay_atomic() {
    let mut c = Cluster::start(true, 1).await;
    let raw = RawClient::new_with_config(vec![c.pd_addr.clone()], config(&c))
        .await
        .unwrap();
    let txn = TransactionClient::new_with_config(vec![c.pd_addr.clone()], config(&c))
        .await
        .unwrap();
    let acked_raw = Arc::new(Mutex::new(Vec::new()));
    let acked_txn = Arc::new(Mutex::new(Vec::new()));
    let attempted = Arc::new(Mutex::new(0u32));
    let writer = {
        let (acked_raw, acked_txn, attempted) =
            (acked_raw.clone(), acked_txn.clone(), attempted.clone());
        tokio::spawn(async move {
            for i in 0u32.. {
                *attempted.lock().unwrap() = i + 1;
                if raw
                    .put(format!("raw/{i:06}"), format!("v{i}"))
                    .await
                    .is_ok()
                {
                    acked_raw.lock().unwrap().push(i);
                }
                let Ok(mut t) = txn.begin_optimistic().await else {
                    continue;
                };
                let ok = t
                    .put(format!("pair/a/{i:06}"), format!("{i}"))
                    .await
                    .is_ok()
                    && t.put(format!("pair/b/{i:06}"), format!("{i}"))
                        .await
                        .is_ok()
                    && t.commit().await.is_ok();
                if ok {
                    acked_txn.lock().unwrap().push(i);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.kv[0].kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    writer.abort();
    let _ = writer.await;
    let raw_acked = acked_raw.lock().unwrap().clone();
    let txn_acked = acked_txn.lock().unwrap().clone();
    let attempted = *attempted.lock().unwrap();
    assert!(
        !raw_acked.is_empty() && !txn_acked.is_empty(),
        "the load wrote nothing before the kill\n{}",
        c.logs()
    );

    c.kv[0].start();
    c.wait_store_serving(0).await;
    let raw = RawClient::new_with_config(vec![c.pd_addr.clone()], config(&c))
        .await
        .unwrap();
    let txn = TransactionClient::new_with_config(vec![c.pd_addr.clone()], config(&c))
        .await
        .unwrap();
    for i in &raw_acked {
        let v = raw
            .get(format!("raw/{i:06}"))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
        assert_eq!(
            v,
            Some(format!("v{i}").into_bytes()),
            "acknowledged raw write {i} lost"
        );
    }
    let ts = txn.current_timestamp().await.unwrap();
    // A transaction caught mid-commit by the kill leaves a lock that lives
    // for its TTL (3 s); tikv-client's lock backoff (~1.5 s) can give up
    // before it expires, so the read is retried until it resolves.
    let get = |key: String| {
        let (txn, ts) = (&txn, ts.clone());
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            loop {
                let mut snap = txn.snapshot(ts.clone(), Default::default());
                match snap.get(key.clone()).await {
                    Ok(v) => return v,
                    Err(e) if std::time::Instant::now() < deadline => {
                        eprintln!("{key}: {e}; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => panic!("{key}: {e}"),
                }
            }
        }
    };
    for i in 0..attempted {
        let a = get(format!("pair/a/{i:06}")).await;
        let b = get(format!("pair/b/{i:06}")).await;
        assert_eq!(
            a.is_some(),
            b.is_some(),
            "transaction {i} is half-visible: a={a:?} b={b:?}"
        );
        if txn_acked.contains(&i) {
            assert!(a.is_some(), "acknowledged transaction {i} lost");
        }
    }
    eprintln!(
        "durability: {} raw and {} transactional writes acknowledged before SIGKILL, all present after restart",
        raw_acked.len(),
        txn_acked.len()
    );
}
