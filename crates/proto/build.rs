//! Compiles `proto/*.proto` with protox (a protobuf compiler written in Rust;
//! no system `protoc`) and generates prost messages plus tonic client and
//! server stubs for every service.

use std::path::PathBuf;

const FILES: &[&str] = &[
    "eraftpb.proto",
    "metapb.proto",
    "errorpb.proto",
    "kvrpcpb.proto",
    "raft_serverpb.proto",
    "tikvpb.proto",
    "pdpb.proto",
    "keyspacepb.proto",
    "kv.proto",
    "rpc.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    let files: Vec<PathBuf> = FILES.iter().map(|f| dir.join(f)).collect();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&dir])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
