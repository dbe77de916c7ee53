//! The admin tools' logic: `pd-ctl` (an HTTP client of PD's API) and
//! `tikv-ctl` (a gRPC client of one TiKV), both over mutual TLS.
//!
//! Not yet implemented (issues 3 and 4).
