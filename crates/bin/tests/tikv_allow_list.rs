//! TiKV's `cert-allowed-cn`: a client whose certificate is from the cluster
//! CA but whose common name is not listed gets gRPC UNAUTHENTICATED on every
//! RPC (as from TiKV, "Common name check fail"), and the store logs the
//! address and the CN; a listed CN is served.

#[path = "support/cluster.rs"]
mod cluster;

use std::sync::Arc;

use cluster::Cluster;
use tiox_proto::kvrpcpb;
use tiox_proto::tikvpb::tikv_client::TikvClient;
use tiox_security::{ClientTls, Component, SecurityConfig};

fn tls_as(c: &Cluster, cert: &str) -> Arc<ClientTls> {
    let certs = c.certs.as_ref().unwrap();
    let settings = SecurityConfig::from_paths(
        &certs.path("ca.pem"),
        &certs.path(&format!("{cert}.pem")),
        &certs.path(&format!("{cert}-key.pem")),
    )
    .validate(Component::Tiox)
    .unwrap()
    .unwrap();
    Arc::new(ClientTls::with_alpn(settings, vec![b"h2".to_vec()]).unwrap())
}

async fn raw_get(c: &Cluster, cert: &str) -> Result<kvrpcpb::RawGetResponse, tonic::Status> {
    let ch = tiox_client::channel::channel(&c.kv_addrs[0], Some(tls_as(c, cert))).unwrap();
    TikvClient::new(ch)
        .raw_get(kvrpcpb::RawGetRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cn_outside_cert_allowed_cn_gets_unauthenticated_and_a_log_line() {
    let c = Cluster::start_with(
        true,
        1,
        Some("[security]\ncert-allowed-cn = [\"tidb-server\", \"tikv-server\"]\n"),
    )
    .await;
    let err = raw_get(&c, "client")
        .await
        .expect_err("CN \"client\" is not allowed");
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert!(
        err.message().contains("Common name check fail") && err.message().contains("\"client\""),
        "{err:?}"
    );
    let log = c.kv[0].log_text();
    assert!(
        log.contains("refusing every request from 127.0.0.1:") && log.contains("\"client\""),
        "{log}"
    );

    // tidb-server's certificate (server + client auth) is listed: served
    // (a region error for the missing context, but no refusal).
    let ok = raw_get(&c, "tidb-server")
        .await
        .expect("listed CN is served");
    assert!(ok.region_error.is_some());
}
