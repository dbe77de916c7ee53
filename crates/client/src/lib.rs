//! The cluster client used by TiDB, the ctl tools, benchmarks and tests: a PD
//! client with TSO batching, a region cache, per-store connection pooling over
//! mutual TLS, and raw and transactional (Percolator 2PC) KV APIs.
//!
//! Not yet implemented (issue 6).
