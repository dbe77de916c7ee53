//! The SQL layer behind `tidb-server`: the MySQL wire protocol with client TLS,
//! then parser, planner and executor over the cluster client.
//!
//! Not yet implemented (issues 7 and 8).
