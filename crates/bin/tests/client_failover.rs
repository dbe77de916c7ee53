//! Our client across a leader change: with three replicas, the store that
//! leads the region is SIGKILLed; the client's region cache drops the dead
//! leader (unreachable store / NotLeader with the new leader's hint) and the
//! next reads and writes go to the new leader without the caller noticing.

#[path = "support/cluster.rs"]
mod cluster;

use std::time::{Duration, Instant};

use cluster::Cluster;
use tiox_client::ClusterClient;
use tiox_security::{Component, SecurityConfig};

async fn leader_store(c: &Cluster) -> Option<(u64, usize)> {
    let (code, body) = c.pd_get("/pd/api/v1/regions").await.ok()?;
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let r = v["regions"].as_array()?.first()?.clone();
    let voters = r["peers"]
        .as_array()?
        .iter()
        .filter(|p| p["role_name"] == "Voter")
        .count();
    (voters == 3).then_some(())?;
    Some((r["leader"]["store_id"].as_u64()?, voters))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_follows_a_leader_change_after_the_leader_store_dies() {
    let mut c = Cluster::start(true, 3).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let leader = loop {
        if let Some((store, _)) = leader_store(&c).await {
            break store;
        }
        assert!(
            Instant::now() < deadline,
            "no three-voter region within 90s\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let certs = c.certs.as_ref().unwrap();
    let settings = SecurityConfig::from_paths(
        &certs.path("ca.pem"),
        &certs.path("client.pem"),
        &certs.path("client-key.pem"),
    )
    .validate(Component::Tiox)
    .unwrap();
    let client = ClusterClient::connect(&[format!("https://{}", c.pd_addr)], settings)
        .await
        .unwrap();
    let raw = client.raw();
    let txn = client.txn();
    raw.put(b"before", b"1").await.unwrap();
    let mut t = txn.begin().await.unwrap();
    t.put(b"t/before".to_vec(), b"1".to_vec());
    t.commit().await.unwrap();

    // Find and kill the leader's process (store ids come from PD; the
    // status port tells which process holds which id).
    let mut victim = None;
    for (i, status) in c.kv_status.iter().enumerate() {
        let tls = Some(certs.client_tls());
        if let Ok((200, body)) = cluster::http_get(status, "/status", tls).await {
            if body.contains(&format!("\"store_id\":{leader}")) {
                victim = Some(i);
            }
        }
    }
    let victim = victim.unwrap_or_else(|| panic!("no process holds store {leader}\n{}", c.logs()));
    c.kv[victim].kill();

    // The same client keeps working: its cache learns the new leader.
    raw.put(b"after", b"2")
        .await
        .unwrap_or_else(|e| panic!("write after the leader died: {e}\n{}", c.logs()));
    assert_eq!(raw.get(b"before").await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(raw.get(b"after").await.unwrap(), Some(b"2".to_vec()));
    let mut t = txn.begin().await.unwrap();
    assert_eq!(t.get(b"t/before").await.unwrap(), Some(b"1".to_vec()));
    t.put(b"t/after".to_vec(), b"2".to_vec());
    t.commit().await.unwrap();
    assert_eq!(
        txn.get_latest(b"t/after").await.unwrap(),
        Some(b"2".to_vec())
    );
}
