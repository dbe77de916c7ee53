//! Accounts and privileges: the [`UserStore`] trait, its file-backed
//! implementation for the embedded store (`--store=unistore`), and the pure
//! logic over account records (host matching, privilege checks, `REQUIRE`
//! rules, `SHOW GRANTS` text).
//!
//! The store holds whole [`UserRecord`]s; every change is one atomic
//! read-modify-write through [`UserStore::update`]. On a cluster,
//! `cluster_users` implements the same trait as a transaction, so every
//! tidb-server sees the same users.
//!
//! [`FileUserStore`] (the embedded store) keeps the accounts in
//! `DATA_DIR/users.json` (written to a temporary file, fsynced, renamed,
//! directory fsynced). It is per-server: two tidb-servers do not share it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use tiox_security::CertInfo;

/// The privileges tiox knows, in `SHOW GRANTS` order and spelling.
pub const PRIVILEGES: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "DROP",
    "PROCESS",
    "REFERENCES",
    "ALTER",
    "SHOW DATABASES",
    "SUPER",
    "EXECUTE",
    "INDEX",
    "CREATE USER",
    "CREATE TABLESPACE",
    "TRIGGER",
    "CREATE VIEW",
    "SHOW VIEW",
    "CREATE ROLE",
    "DROP ROLE",
    "CREATE TEMPORARY TABLES",
    "LOCK TABLES",
    "CREATE ROUTINE",
    "ALTER ROUTINE",
    "EVENT",
    "RELOAD",
    "SHUTDOWN",
    "CONFIG",
    "CONNECTION_ADMIN",
];

/// Privileges that exist only at the global level.
pub const GLOBAL_ONLY: &[&str] = &[
    "PROCESS",
    "SHOW DATABASES",
    "SUPER",
    "CREATE USER",
    "CREATE TABLESPACE",
    "CREATE ROLE",
    "DROP ROLE",
    "RELOAD",
    "SHUTDOWN",
    "CONFIG",
    "CONNECTION_ADMIN",
];

/// A per-user TLS rule (`REQUIRE ...`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TlsRequire {
    /// `REQUIRE SSL`: any TLS connection.
    pub ssl: bool,
    /// `REQUIRE X509`: TLS with a client certificate verified against ssl-ca.
    pub x509: bool,
    /// `REQUIRE ISSUER '...'`: the client certificate's issuer DN.
    pub issuer: Option<String>,
    /// `REQUIRE SUBJECT '...'`: the client certificate's subject DN.
    pub subject: Option<String>,
    /// `REQUIRE CIPHER '...'`: the negotiated cipher suite.
    pub cipher: Option<String>,
    /// `REQUIRE SAN '...'`: every listed `DNS:`, `URI:`, `IP:` entry must be
    /// among the client certificate's SANs.
    pub san: Option<String>,
}

impl TlsRequire {
    /// `REQUIRE NONE`.
    pub fn is_none(&self) -> bool {
        *self == TlsRequire::default()
    }

    /// The `REQUIRE ...` clause as `SHOW CREATE USER` prints it.
    pub fn to_sql(&self) -> String {
        if self.is_none() {
            return "REQUIRE NONE".into();
        }
        let mut parts = Vec::new();
        if self.x509 && self.issuer.is_none() && self.subject.is_none() {
            parts.push("X509".to_string());
        }
        for (k, v) in [
            ("ISSUER", &self.issuer),
            ("SUBJECT", &self.subject),
            ("CIPHER", &self.cipher),
            ("SAN", &self.san),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k} '{}'", v.replace('\'', "''")));
            }
        }
        if parts.is_empty() {
            return "REQUIRE SSL".into();
        }
        format!("REQUIRE {}", parts.join(" AND "))
    }

    /// Checks a login's transport against the rule. `Err` says why (for the
    /// server log; the client only gets ERROR 1045).
    pub fn check(&self, tls: Option<&TlsInfo>) -> std::result::Result<(), String> {
        if self.is_none() {
            return Ok(());
        }
        let Some(tls) = tls else {
            return Err("the account requires TLS and the connection is plaintext".into());
        };
        if let Some(cipher) = &self.cipher {
            if !cipher.eq_ignore_ascii_case(&tls.cipher) {
                return Err(format!(
                    "the account requires cipher {cipher}, the connection uses {}",
                    tls.cipher
                ));
            }
        }
        let needs_cert =
            self.x509 || self.issuer.is_some() || self.subject.is_some() || self.san.is_some();
        if !needs_cert {
            return Ok(());
        }
        let Some(cert) = &tls.peer else {
            return Err("the account requires a client certificate and none was presented".into());
        };
        if let Some(issuer) = &self.issuer {
            if !dn_eq(issuer, &cert.issuer) {
                return Err(format!(
                    "the account requires issuer \"{issuer}\", the certificate's is \"{}\"",
                    cert.issuer
                ));
            }
        }
        if let Some(subject) = &self.subject {
            if !dn_eq(subject, &cert.subject) {
                return Err(format!(
                    "the account requires subject \"{subject}\", the certificate's is \"{}\"",
                    cert.subject
                ));
            }
        }
        if let Some(san) = &self.san {
            let have: Vec<String> = cert
                .sans
                .iter()
                .map(|s| s.to_string().to_ascii_lowercase())
                .collect();
            for want in san.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let want = normalize_san(want);
                if !have.contains(&want) {
                    return Err(format!(
                        "the account requires SAN {want}, the certificate has [{}]",
                        have.join(", ")
                    ));
                }
            }
        }
        Ok(())
    }
}

fn normalize_san(s: &str) -> String {
    match s.split_once(':') {
        Some((k, v)) => {
            format!("{}:{}", k.trim().to_ascii_uppercase(), v.trim()).to_ascii_lowercase()
        }
        None => s.to_ascii_lowercase(),
    }
}

/// Compares distinguished names in either spelling: OpenSSL's
/// `/C=US/O=x/CN=y` (what MySQL users write) or RFC 4514 `C=US, O=x, CN=y`
/// (what x509-parser prints), ignoring order-preserving punctuation.
pub fn dn_eq(a: &str, b: &str) -> bool {
    fn parts(s: &str) -> Vec<String> {
        let s = s.trim();
        let raw: Vec<&str> = if let Some(rest) = s.strip_prefix('/') {
            rest.split('/').collect()
        } else {
            s.split(',').collect()
        };
        raw.iter()
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                format!("{}={}", k.trim().to_ascii_uppercase(), v.trim())
            })
            .filter(|p| p != "=")
            .collect()
    }
    parts(a) == parts(b)
}

/// What a session knows about its TLS connection.
#[derive(Clone, Debug)]
pub struct TlsInfo {
    /// Negotiated protocol (`TLSv1.3`).
    pub version: String,
    /// Negotiated cipher suite, in MySQL/OpenSSL spelling where one exists.
    pub cipher: String,
    /// Negotiated key exchange group (`X25519MLKEM768`, `X25519`, ...).
    pub kx_group: String,
    /// The verified client certificate, if presented.
    pub peer: Option<CertInfo>,
}

/// One account, `'user'@'host'`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct UserRecord {
    /// User name (may be empty: the anonymous user; tiox never creates one).
    pub user: String,
    /// Host pattern: `%`, `localhost`, `127.0.0.1`, `10.0.%`, ...
    pub host: String,
    /// `mysql_native_password` or `caching_sha2_password`.
    pub plugin: String,
    /// The stored password hash (see `auth`); empty means no password.
    pub auth_string: String,
    /// The TLS rule.
    #[serde(default)]
    pub require: TlsRequire,
    /// Global privileges (`ON *.*`).
    #[serde(default)]
    pub global: BTreeSet<String>,
    /// `WITH GRANT OPTION` at the global level.
    #[serde(default)]
    pub grant_option: bool,
    /// Database-level privileges (`ON db.*`), by database name.
    #[serde(default)]
    pub dbs: BTreeMap<String, BTreeSet<String>>,
    /// `ACCOUNT LOCK`.
    #[serde(default)]
    pub locked: bool,
}

impl UserRecord {
    /// A new account without privileges.
    pub fn new(user: &str, host: &str, plugin: &str, auth_string: String) -> Self {
        UserRecord {
            user: user.to_string(),
            host: host.to_string(),
            plugin: plugin.to_string(),
            auth_string,
            require: TlsRequire::default(),
            global: BTreeSet::new(),
            grant_option: false,
            dbs: BTreeMap::new(),
            locked: false,
        }
    }

    /// `root@'%'` with every privilege and the grant option
    /// (`mysql_native_password`; `auth_string` is the stored hash, empty
    /// for no password): the account a new server is bootstrapped with.
    pub fn root(auth_string: String) -> Self {
        let mut root = UserRecord::new("root", "%", "mysql_native_password", auth_string);
        root.global.insert("ALL PRIVILEGES".into());
        root.grant_option = true;
        root
    }

    /// Whether the account holds `privilege` globally (or ALL).
    pub fn has_global(&self, privilege: &str) -> bool {
        self.global.contains(privilege) || self.global.contains("ALL PRIVILEGES")
    }

    /// Whether the account holds `privilege` on database `db` (globally or
    /// at the database level, `ALL` included).
    pub fn has_on_db(&self, db: &str, privilege: &str) -> bool {
        self.has_global(privilege)
            || self.dbs.iter().any(|(d, privs)| {
                like_match(d, db) && (privs.contains(privilege) || privs.contains("ALL PRIVILEGES"))
            })
    }

    /// Whether the account holds any privilege on `db` (global or db level).
    pub fn has_any_on_db(&self, db: &str) -> bool {
        self.global
            .iter()
            .any(|p| !GLOBAL_ONLY.contains(&p.as_str()))
            || self
                .dbs
                .iter()
                .any(|(d, privs)| !privs.is_empty() && like_match(d, db))
    }

    /// `SHOW GRANTS` lines.
    pub fn grants_sql(&self) -> Vec<String> {
        let who = format!("'{}'@'{}'", self.user, self.host);
        let mut out = Vec::new();
        let global = if self.global.contains("ALL PRIVILEGES") {
            "ALL PRIVILEGES".to_string()
        } else if self.global.is_empty() {
            "USAGE".to_string()
        } else {
            sorted(&self.global).join(",")
        };
        out.push(format!(
            "GRANT {global} ON *.* TO {who}{}",
            if self.grant_option {
                " WITH GRANT OPTION"
            } else {
                ""
            }
        ));
        for (db, privs) in &self.dbs {
            if privs.is_empty() {
                continue;
            }
            let list = if privs.contains("ALL PRIVILEGES") {
                "ALL PRIVILEGES".to_string()
            } else {
                sorted(privs).join(",")
            };
            out.push(format!("GRANT {list} ON `{db}`.* TO {who}"));
        }
        out
    }

    /// `SHOW CREATE USER` text.
    pub fn create_sql(&self) -> String {
        format!(
            "CREATE USER '{}'@'{}' IDENTIFIED WITH '{}' AS '{}' {} PASSWORD EXPIRE DEFAULT ACCOUNT {}",
            self.user,
            self.host,
            self.plugin,
            self.auth_string,
            self.require.to_sql(),
            if self.locked { "LOCK" } else { "UNLOCK" }
        )
    }
}

fn sorted(set: &BTreeSet<String>) -> Vec<String> {
    let mut v: Vec<String> = set.iter().cloned().collect();
    v.sort_by_key(|p| PRIVILEGES.iter().position(|q| q == p).unwrap_or(usize::MAX));
    v
}

/// MySQL `LIKE`-style matching with `%` and `_` (case-insensitive), as used
/// for host patterns, database patterns in grants and `SHOW ... LIKE`.
pub fn like_match(pattern: &str, text: &str) -> bool {
    crate::engine::expr::string::like(text, pattern, Some('\\'))
}

/// Whether an account's host pattern matches a client address.
pub fn host_matches(pattern: &str, client_ip: &str) -> bool {
    if pattern == "%" {
        return true;
    }
    if pattern.eq_ignore_ascii_case("localhost") {
        return client_ip == "127.0.0.1" || client_ip == "::1";
    }
    like_match(pattern, client_ip)
}

/// Picks the account for a login as MySQL does: among accounts whose user
/// name equals `user` and whose host pattern matches, the most specific host
/// (no wildcards first, then longer patterns).
pub fn find_account<'a>(
    users: &'a [UserRecord],
    user: &str,
    client_ip: &str,
) -> Option<&'a UserRecord> {
    users
        .iter()
        .filter(|u| u.user == user && host_matches(&u.host, client_ip))
        .max_by_key(|u| {
            let wild = u.host.contains('%') || u.host.contains('_');
            (!wild, u.host.len())
        })
}

/// Where accounts live. Implementations must make [`UserStore::update`]
/// atomic and durable before returning `Ok`.
pub trait UserStore: Send + Sync + std::fmt::Debug {
    /// All accounts.
    fn load(&self) -> Result<Vec<UserRecord>>;
    /// Applies `change` to the accounts and persists the result; nothing is
    /// written if `change` fails.
    fn update(&self, change: &mut dyn FnMut(&mut Vec<UserRecord>) -> Result<()>) -> Result<()>;
}

/// INTERIM user store: a JSON file in the data directory (see module docs).
#[derive(Debug)]
pub struct FileUserStore {
    path: PathBuf,
    cache: Mutex<Option<Vec<UserRecord>>>,
}

/// The file name inside `--data-dir`.
pub const USERS_FILE: &str = "users.json";

#[derive(Serialize, Deserialize)]
struct UsersFile {
    /// Format version of this file.
    version: u32,
    /// A reminder for anyone reading the file.
    note: String,
    users: Vec<UserRecord>,
}

impl FileUserStore {
    /// Opens `DIR/users.json` (which need not exist yet).
    pub fn open(dir: &Path) -> Result<FileUserStore> {
        // A new data directory is private to the server's user.
        if !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            let _ = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir);
        }
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::Store(format!(
                "cannot create --data-dir {}: {e}; create it or choose another directory",
                dir.display()
            ))
        })?;
        let store = FileUserStore {
            path: dir.join(USERS_FILE),
            cache: Mutex::new(None),
        };
        store.load()?;
        Ok(store)
    }

    /// Whether the file exists (the data directory was initialized).
    pub fn initialized(&self) -> bool {
        self.path.exists()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<Vec<UserRecord>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                let f: UsersFile = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::Store(format!(
                        "{} is not a valid users file ({e}); restore it from a backup",
                        self.path.display()
                    ))
                })?;
                Ok(f.users)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::Store(format!(
                "cannot read {}: {e}",
                self.path.display()
            ))),
        }
    }

    fn write(&self, users: &[UserRecord]) -> Result<()> {
        let io = |what: &str, e: std::io::Error| {
            Error::Store(format!("cannot {what} {}: {e}", self.path.display()))
        };
        let body = serde_json::to_vec_pretty(&UsersFile {
            version: 1,
            note: "tiox standalone user store (a cluster keeps its accounts in TiKV)".into(),
            users: users.to_vec(),
        })
        .map_err(|e| Error::Store(format!("cannot encode users: {e}")))?;
        let tmp = self.path.with_extension("json.tmp");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| io("create", e))?;
            f.write_all(&body).map_err(|e| io("write", e))?;
            f.sync_all().map_err(|e| io("fsync", e))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| io("replace", e))?;
        if let Some(dir) = self.path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                d.sync_all().map_err(|e| io("fsync the directory of", e))?;
            }
        }
        Ok(())
    }
}

impl UserStore for FileUserStore {
    fn load(&self) -> Result<Vec<UserRecord>> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(users) = cache.as_ref() {
            return Ok(users.clone());
        }
        let users = self.read()?;
        *cache = Some(users.clone());
        Ok(users)
    }

    fn update(&self, change: &mut dyn FnMut(&mut Vec<UserRecord>) -> Result<()>) -> Result<()> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let mut users = match cache.as_ref() {
            Some(u) => u.clone(),
            None => self.read()?,
        };
        change(&mut users)?;
        self.write(&users)?;
        *cache = Some(users);
        Ok(())
    }
}

/// Accounts in memory only, for tests and the fuzz target. Nothing is
/// persisted; never used by tidb-server.
#[derive(Debug, Default)]
pub struct MemoryUserStore {
    users: Mutex<Vec<UserRecord>>,
}

impl MemoryUserStore {
    /// A store holding `users`.
    pub fn new(users: Vec<UserRecord>) -> Self {
        MemoryUserStore {
            users: Mutex::new(users),
        }
    }
}

impl UserStore for MemoryUserStore {
    fn load(&self) -> Result<Vec<UserRecord>> {
        Ok(self.users.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn update(&self, change: &mut dyn FnMut(&mut Vec<UserRecord>) -> Result<()>) -> Result<()> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let mut copy = users.clone();
        change(&mut copy)?;
        *users = copy;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_match_handles_wildcards() {
        assert!(like_match("%", ""));
        assert!(like_match("ssl%", "Ssl_cipher"));
        assert!(like_match("10.0.%", "10.0.3.4"));
        assert!(!like_match("10.0.%", "10.1.3.4"));
        assert!(like_match("a_c", "abc"));
        assert!(like_match("%cipher%", "Ssl_cipher_list"));
        assert!(!like_match("ssl", "ssl_ca"));
    }

    #[test]
    fn most_specific_host_wins() {
        let users = vec![
            UserRecord::new("u", "%", "mysql_native_password", String::new()),
            UserRecord::new("u", "127.0.0.1", "mysql_native_password", "x".into()),
        ];
        assert_eq!(
            find_account(&users, "u", "127.0.0.1").unwrap().host,
            "127.0.0.1"
        );
        assert_eq!(find_account(&users, "u", "10.0.0.1").unwrap().host, "%");
        assert!(find_account(&users, "v", "127.0.0.1").is_none());
    }

    #[test]
    fn distinguished_names_compare_in_both_spellings() {
        assert!(dn_eq("/O=tiox/CN=mysql-client", "O=tiox, CN=mysql-client"));
        assert!(!dn_eq("/CN=a", "CN=b"));
    }

    #[test]
    fn file_store_persists_updates() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileUserStore::open(dir.path()).unwrap();
        assert!(!store.initialized());
        store
            .update(&mut |u| {
                u.push(UserRecord::new(
                    "root",
                    "%",
                    "mysql_native_password",
                    String::new(),
                ));
                Ok(())
            })
            .unwrap();
        let again = FileUserStore::open(dir.path()).unwrap();
        assert_eq!(again.load().unwrap().len(), 1);
        // A failing change writes nothing.
        let _ = again.update(&mut |u| {
            u.clear();
            Err(Error::Store("no".into()))
        });
        assert_eq!(
            FileUserStore::open(dir.path())
                .unwrap()
                .load()
                .unwrap()
                .len(),
            1
        );
    }
}
