//! The admin tools' logic: `pd-ctl` (an HTTP client of PD's API) and, later,
//! `tikv-ctl` (a gRPC client of one TiKV), both over mutual TLS.
//!
//! ```text
//!  pd-ctl args ─► pd::Command::parse ─► pd::PdCtl::run ─► http::get (ClientTls + hyper)
//!                                                  └──► JSON printed as PD prints it
//! ```

pub mod error;
pub mod http;
pub mod pd;
pub mod tikv;

pub use error::CtlError;
