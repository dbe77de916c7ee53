//! The cluster client used by TiKV (to reach PD), TiDB, the ctl tools,
//! benchmarks and tests: gRPC channels over mutual TLS, and a PD client that
//! follows the PD leader. The region cache and the raw and transactional KV
//! APIs grow here (issue 6).

pub mod channel;
pub mod error;
pub mod pd;

pub use error::{Error, Result};
