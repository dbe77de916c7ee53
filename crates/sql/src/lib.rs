//! The SQL layer behind `tidb-server`: the MySQL wire protocol with client
//! TLS, accounts and privileges, the SQL engine over a store (the cluster
//! or the embedded one), and the session executor (statements without
//! tables, behind the engine).
//!
//! ```text
//!  client ─TCP/TLS─► server (accept, TCP_NODELAY)
//!                     └► protocol (packets, handshake, auth, commands)
//!                          └► backend::Backend ◄── engine::Engine ─► store::Store
//!                                │                  └► executor::Interim   ├ Cluster (--store=tikv)
//!                                ├► parser (sqlparser tokens + ours)      └ Embedded (--store=unistore)
//!                                └► users::UserStore (accounts, REQUIRE)
//!  value, json: the values rows carry (JSON documents: `json`)
//!  tls: the MySQL-facing certificate set (ssl-ca/ssl-cert/ssl-key)
//!  config: tidb-server's TOML file
//! ```

pub mod auth;
pub mod backend;
pub mod cluster_users;
pub mod config;
pub mod engine;
pub mod error;
pub mod executor;
pub mod json;
pub mod parser;
pub mod protocol;
pub mod server;
pub mod status;
pub mod store;
pub mod tls;
pub mod users;
pub mod value;

pub use backend::{Backend, Session};
pub use error::{Error, Result, SqlError};
pub use server::{serve, Settings, Shared};

#[cfg(test)]
mod source_text {
    //! Text every crate's sources must not contain.

    use std::path::{Path, PathBuf};

    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                files(&p, out);
            } else {
                out.push(p);
            }
        }
    }

    /// Whether `text` has the word "issue", a space or `#`, then a digit.
    fn cites_tracker(text: &str) -> bool {
        let lower = text.to_ascii_lowercase();
        let word = "issue";
        lower.match_indices(word).any(|(i, _)| {
            let rest = &lower.as_bytes()[i + word.len()..];
            match rest {
                [b' ', b'#', d, ..] => d.is_ascii_digit(),
                [b' ' | b'#', d, ..] => d.is_ascii_digit(),
                _ => false,
            }
        })
    }

    #[test]
    fn no_source_file_cites_tracker_numbers() {
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut all = Vec::new();
        for c in std::fs::read_dir(&crates).expect("crates dir").flatten() {
            files(&c.path().join("src"), &mut all);
        }
        assert!(!all.is_empty(), "no sources under {}", crates.display());
        let bad: Vec<String> = all
            .iter()
            .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| cites_tracker(&t)))
            .map(|p| p.display().to_string())
            .collect();
        assert!(bad.is_empty(), "tracker numbers in: {bad:?}");
    }

    #[test]
    fn the_check_sees_numbers() {
        assert!(cites_tracker(&format!("comes with {} 8", "Issue")));
        assert!(cites_tracker(&format!("see {} #12", "issue")));
        assert!(!cites_tracker("an issue with the tests"));
    }
}
