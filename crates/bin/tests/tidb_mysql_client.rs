//! tidb-server with the real `mariadb`/`mysql` command-line client: TLS
//! verified with --ssl-ca, mutual TLS, plaintext, require-secure-transport,
//! every REQUIRE form, both auth plugins, bootstrap, and certificate reload.

mod tidb_common;

use std::path::PathBuf;

use tidb_common::*;
use tiox_security::certgen::{CertAuthority, Profile, Spec, Validity};

/// A server with MySQL TLS, bootstrapped insecurely, and the client.
fn tls_server(pki: &Pki, extra: &[&str]) -> TidbServer {
    let mut args = pki.server_tls_args();
    args.push("--initialize-insecure".into());
    args.extend(extra.iter().map(|s| s.to_string()));
    TidbServer::start(pki.dir.path(), &args)
}

fn root(client: &std::path::Path, s: &TidbServer, sql: &str) -> String {
    let r = mysql(client, s, "root", None, &plain_args(), sql);
    assert!(r.ok, "root: {sql}: {}\n{}", r.err, s.log());
    r.out
}

fn client(test: &str) -> Option<PathBuf> {
    mysql_client(test)
}

#[test]
fn client_verifies_server_with_ssl_ca_and_status_shows_the_cipher() {
    let Some(c) = client("client_verifies_server_with_ssl_ca_and_status_shows_the_cipher") else {
        return;
    };
    let pki = Pki::new();
    let s = tls_server(&pki, &[]);
    let r = mysql(&c, &s, "root", None, &verify_args(&pki), "SHOW STATUS LIKE 'Ssl_cipher'; SELECT @@have_ssl, @@have_openssl, @@tls_version, @@require_secure_transport");
    assert!(r.ok, "{}", r.err);
    let lines: Vec<&str> = r.out.lines().collect();
    assert!(
        lines[0].starts_with("Ssl_cipher\tTLS_") || lines[0].starts_with("Ssl_cipher\tECDHE"),
        "{}",
        r.out
    );
    assert_eq!(lines[1], "YES\tYES\tTLSv1.2,TLSv1.3\tOFF");
    let st = mysql_stdin(&c, &s, "root", &verify_args(&pki), "status\n");
    assert!(st.ok, "{}", st.err);
    assert!(st.out.contains("Cipher in use is TLS_"), "{}", st.out);
    // Every Ssl% status variable is present and filled in over TLS.
    let r = mysql(
        &c,
        &s,
        "root",
        None,
        &verify_args(&pki),
        "SHOW STATUS LIKE 'Ssl%'",
    );
    for name in [
        "Ssl_cipher",
        "Ssl_cipher_list",
        "Ssl_server_not_after",
        "Ssl_server_not_before",
        "Ssl_verify_mode",
        "Ssl_version",
    ] {
        let line = r
            .out
            .lines()
            .find(|l| l.starts_with(&format!("{name}\t")))
            .unwrap_or_else(|| panic!("{name} missing: {}", r.out));
        assert!(line.len() > name.len() + 1, "{name} empty over TLS: {line}");
    }
    assert!(r.out.contains("Ssl_version\tTLSv1.3"), "{}", r.out);
    assert!(r.out.contains(" GMT"), "OpenSSL-style dates: {}", r.out);
    let v = mysql(
        &c,
        &s,
        "root",
        None,
        &verify_args(&pki),
        "SHOW VARIABLES LIKE 'ssl_%'",
    );
    assert!(
        v.out
            .contains(&format!("ssl_cert\t{}", pki.path("mysql/server.pem"))),
        "{}",
        v.out
    );
}

#[test]
fn mariadb_client_without_ml_kem_still_connects_and_status_names_its_group() {
    let Some(c) = client("mariadb_client_without_ml_kem_still_connects_and_status_names_its_group")
    else {
        return;
    };
    let pki = Pki::new();
    let s = tls_server(&pki, &[]);
    let r = mysql(
        &c,
        &s,
        "root",
        None,
        &verify_args(&pki),
        "SHOW SESSION STATUS LIKE 'Tiox_tls_kx_group'",
    );
    assert!(r.ok, "{}", r.err);
    // Debian 12's OpenSSL 3.0 offers no ML-KEM: the classical X25519 (or
    // P-256) is negotiated; a newer client may get the hybrid.
    let group = r
        .out
        .strip_prefix("Tiox_tls_kx_group\t")
        .unwrap_or_else(|| panic!("{}", r.out))
        .trim();
    assert!(
        ["X25519", "secp256r1", "X25519MLKEM768"].contains(&group),
        "{}",
        r.out
    );
}

#[test]
fn client_refuses_a_server_certificate_from_another_ca() {
    let Some(c) = client("client_refuses_a_server_certificate_from_another_ca") else {
        return;
    };
    let pki = Pki::new();
    let s = tls_server(&pki, &[]);
    // The cluster CA did not sign the MySQL-facing certificate.
    let args = vec![
        format!("--ssl-ca={}", pki.path("ca.pem")),
        "--ssl-verify-server-cert".to_string(),
    ];
    let r = mysql(&c, &s, "root", None, &args, "SELECT 1");
    assert!(!r.ok, "connected with the wrong CA: {}", r.out);
}

/// Creates 'app'@'%' with `REQUIRE X509` and logs it in with the MySQL
/// client certificate.
fn app_requires_x509_and_logs_in(c: &std::path::Path, s: &TidbServer, pki: &Pki) {
    root(
        c,
        s,
        "CREATE USER 'app'@'%' IDENTIFIED BY 'apppw' REQUIRE X509",
    );
    let ok = mysql(
        c,
        s,
        "app",
        Some("apppw"),
        &mutual_args(pki),
        "SELECT CURRENT_USER()",
    );
    assert!(ok.ok, "{}\n{}", ok.err, s.log());
    assert_eq!(ok.out.trim(), "app@%");
}

#[test]
fn mutual_tls_client_certificate_is_verified_and_visible() {
    let Some(c) = client("mutual_tls_client_certificate_is_verified_and_visible") else {
        return;
    };
    let pki = Pki::new();
    let s = tls_server(&pki, &[]);
    app_requires_x509_and_logs_in(&c, &s, &pki);
    // REQUIRE X509 refuses TLS without a client certificate, and plaintext.
    let no_cert = mysql(&c, &s, "app", Some("apppw"), &verify_args(&pki), "SELECT 1");
    assert!(!no_cert.ok);
    assert!(no_cert.err.contains("1045"), "{}", no_cert.err);
    let plain = mysql(&c, &s, "app", Some("apppw"), &plain_args(), "SELECT 1");
    assert!(plain.err.contains("1045"), "{}", plain.err);
    assert!(
        s.wait_for_log(
            "REQUIRE X509: the account requires a client certificate and none was presented"
        ),
        "{}",
        s.log()
    );
    // A certificate from another CA is refused during the TLS handshake.
    let mut foreign = verify_args(&pki);
    foreign.push(format!("--ssl-cert={}", pki.path("client.pem")));
    foreign.push(format!("--ssl-key={}", pki.path("client-key.pem")));
    let r = mysql(&c, &s, "app", Some("apppw"), &foreign, "SELECT 1");
    assert!(
        !r.ok,
        "a client certificate from the cluster CA was accepted on the MySQL port"
    );
}

#[test]
fn plaintext_is_allowed_without_require_secure_transport() {
    let Some(c) = client("plaintext_is_allowed_without_require_secure_transport") else {
        return;
    };
    let pki = Pki::new();
    let s = tls_server(&pki, &[]);
    let r = mysql(
        &c,
        &s,
        "root",
        None,
        &plain_args(),
        "SHOW STATUS LIKE 'Ssl_cipher'; SELECT 1 + 1",
    );
    assert!(r.ok, "{}", r.err);
    assert_eq!(r.out, "Ssl_cipher\t\n2\n");
    // Without TLS configured at all, require_secure_transport cannot be set.
    let dir = tempfile::tempdir().unwrap();
    let plain = TidbServer::start(dir.path(), &["--initialize-insecure".to_string()]);
    let r = mysql(
        &c,
        &plain,
        "root",
        None,
        &plain_args(),
        "SELECT @@have_ssl; SET GLOBAL require_secure_transport = ON",
    );
    assert_eq!(r.out, "DISABLED\n");
    assert!(r.err.contains("ERROR 3161"), "{}", r.err);
    let r = mysql(&c, &plain, "root", None, &verify_args(&pki), "SELECT 1");
    assert!(!r.ok, "TLS requested from a server without TLS");
}

#[test]
fn require_secure_transport_refuses_plaintext_with_3159() {
    let Some(c) = client("require_secure_transport_refuses_plaintext_with_3159") else {
        return;
    };
    let pki = Pki::new();
    let s = tls_server(&pki, &["--require-secure-transport"]);
    let r = mysql(&c, &s, "root", None, &plain_args(), "SELECT 1");
    assert!(!r.ok);
    assert!(
        r.err.contains("ERROR 3159") && r.err.contains("Connections using insecure transport are prohibited while --require_secure_transport=ON."),
        "{}",
        r.err
    );
    let ok = mysql(
        &c,
        &s,
        "root",
        None,
        &verify_args(&pki),
        "SELECT @@require_secure_transport",
    );
    assert!(ok.ok, "{}", ok.err);
    assert_eq!(ok.out.trim(), "ON");
    // SET GLOBAL turns it off and on for new connections.
    let r = mysql(
        &c,
        &s,
        "root",
        None,
        &verify_args(&pki),
        "SET GLOBAL require_secure_transport = OFF",
    );
    assert!(r.ok, "{}", r.err);
    assert!(mysql(&c, &s, "root", None, &plain_args(), "SELECT 1").ok);
    let r = mysql(
        &c,
        &s,
        "root",
        None,
        &plain_args(),
        "SET GLOBAL require_secure_transport = ON",
    );
    assert!(r.ok, "{}", r.err);
    assert!(mysql(&c, &s, "root", None, &plain_args(), "SELECT 1")
        .err
        .contains("3159"));
}

#[test]
fn require_secure_transport_without_tls_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_tidb(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--initialize-insecure",
        "--require-secure-transport",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("require-secure-transport") && err.contains("ssl-cert"),
        "{err}"
    );
}

#[test]
fn bad_certificate_or_key_is_a_startup_error_naming_the_file() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let data = dir.join("data");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                format!("--ssl-cert={}", garbage.display()),
                format!("--ssl-key={}", pki.path("mysql/server-key.pem")),
            ],
            "ssl-cert",
        ),
        (
            vec![
                format!("--ssl-cert={}", pki.path("mysql/server.pem")),
                format!("--ssl-key={}", pki.path("mysql/client-key.pem")),
            ],
            "does not belong",
        ),
        (
            vec![format!("--ssl-cert={}", pki.path("mysql/server.pem"))],
            "ssl-key",
        ),
        (
            vec![format!("--ssl-ca={}", pki.path("mysql/ca.pem"))],
            "ssl-ca",
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec![
            "--data-dir".to_string(),
            data.display().to_string(),
            "--initialize-insecure".to_string(),
        ];
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = run_tidb(&refs);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started with {all:?}");
        assert!(err.contains(needle), "{all:?}: {err}");
        assert!(!err.contains("MySQL protocol listening"), "{err}");
    }
}

#[test]
fn each_require_form_is_enforced_at_login() {
    let Some(c) = client("each_require_form_is_enforced_at_login") else {
        return;
    };
    let pki = Pki::new();
    // A client certificate with SANs, from the MySQL CA.
    let ca = CertAuthority::from_pem(
        &std::fs::read_to_string(pki.path("mysql/ca.pem")).unwrap(),
        &std::fs::read_to_string(pki.path("mysql/ca-key.pem")).unwrap(),
    )
    .unwrap();
    let issued = ca
        .issue(&Spec {
            validity: Validity::Days(5),
            ..Spec::new(
                "app-client",
                &["app.example.com", "10.1.2.3"],
                Profile::Client,
            )
        })
        .unwrap();
    let dir = pki.dir.path();
    std::fs::write(dir.join("san.pem"), &issued.cert_pem).unwrap();
    std::fs::write(dir.join("san-key.pem"), issued.key_pem.expose()).unwrap();
    let mut san_args = verify_args(&pki);
    san_args.push(format!("--ssl-cert={}", dir.join("san.pem").display()));
    san_args.push(format!("--ssl-key={}", dir.join("san-key.pem").display()));

    let s = tls_server(&pki, &[]);
    let cipher = mysql(
        &c,
        &s,
        "root",
        None,
        &verify_args(&pki),
        "SHOW STATUS LIKE 'Ssl_cipher'",
    )
    .out;
    let cipher = cipher.trim().split('\t').nth(1).unwrap().to_string();
    let rules = [
        ("u_none", "REQUIRE NONE".to_string()),
        ("u_ssl", "REQUIRE SSL".to_string()),
        ("u_x509", "REQUIRE X509".to_string()),
        (
            "u_issuer",
            "REQUIRE ISSUER '/O=tiox/CN=tiox MySQL CA'".to_string(),
        ),
        (
            "u_issuer_bad",
            "REQUIRE ISSUER '/O=tiox/CN=someone else'".to_string(),
        ),
        (
            "u_subject",
            "REQUIRE SUBJECT '/O=tiox/CN=mysql-client'".to_string(),
        ),
        (
            "u_subject_bad",
            "REQUIRE SUBJECT '/O=tiox/CN=app-client'".to_string(),
        ),
        ("u_cipher", format!("REQUIRE CIPHER '{cipher}'")),
        (
            "u_cipher_bad",
            "REQUIRE CIPHER 'ECDHE-RSA-AES128-GCM-SHA256'".to_string(),
        ),
        (
            "u_san",
            "REQUIRE SAN 'DNS:app.example.com, IP:10.1.2.3'".to_string(),
        ),
        (
            "u_san_bad",
            "REQUIRE SAN 'DNS:other.example.com'".to_string(),
        ),
        (
            "u_combo",
            "REQUIRE SUBJECT '/O=tiox/CN=mysql-client' AND ISSUER '/O=tiox/CN=tiox MySQL CA'"
                .to_string(),
        ),
    ];
    for (user, rule) in &rules {
        root(
            &c,
            &s,
            &format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'pw' {rule}"),
        );
    }
    let plain = plain_args();
    let tls = verify_args(&pki);
    let mutual = mutual_args(&pki);
    let expect: &[(&str, &Vec<String>, bool)] = &[
        ("u_none", &plain, true),
        ("u_ssl", &plain, false),
        ("u_ssl", &tls, true),
        ("u_x509", &tls, false),
        ("u_x509", &mutual, true),
        ("u_issuer", &mutual, true),
        ("u_issuer", &tls, false),
        ("u_issuer_bad", &mutual, false),
        ("u_subject", &mutual, true),
        ("u_subject", &san_args, false),
        ("u_subject_bad", &mutual, false),
        ("u_cipher", &tls, true),
        ("u_cipher", &plain, false),
        ("u_cipher_bad", &tls, false),
        ("u_san", &san_args, true),
        ("u_san", &mutual, false),
        ("u_san_bad", &san_args, false),
        ("u_combo", &mutual, true),
        ("u_combo", &san_args, false),
    ];
    for (user, args, ok) in expect {
        let r = mysql(&c, &s, user, Some("pw"), args, "SELECT CURRENT_USER()");
        assert_eq!(
            r.ok,
            *ok,
            "{user} with {args:?}: {}{}\n{}",
            r.out,
            r.err,
            s.log()
        );
        if !ok {
            assert!(r.err.contains("ERROR 1045"), "{user}: {}", r.err);
        }
    }
    let show = root(&c, &s, "SHOW CREATE USER 'u_san'@'%'");
    assert!(
        show.contains("REQUIRE SAN 'DNS:app.example.com, IP:10.1.2.3'"),
        "{show}"
    );
}

#[test]
fn both_auth_plugins_log_in_and_caching_sha2_needs_tls_until_cached() {
    let Some(c) = client("both_auth_plugins_log_in_and_caching_sha2_needs_tls_until_cached") else {
        return;
    };
    let pki = Pki::new();
    let s = tls_server(&pki, &[]);
    root(&c, &s, "CREATE USER 'nat'@'%' IDENTIFIED WITH mysql_native_password BY 'n-pw'; CREATE USER 'sha'@'%' IDENTIFIED WITH caching_sha2_password BY 's-pw'");
    // Native: plaintext and TLS; wrong password refused.
    for args in [plain_args(), verify_args(&pki)] {
        let r = mysql(&c, &s, "nat", Some("n-pw"), &args, "SELECT CURRENT_USER()");
        assert!(r.ok, "{}", r.err);
    }
    let r = mysql(&c, &s, "nat", Some("wrong"), &plain_args(), "SELECT 1");
    assert!(
        r.err.contains("ERROR 1045") && r.err.contains("using password: YES"),
        "{}",
        r.err
    );
    // caching_sha2: plaintext before any TLS login is refused with a hint.
    let r = mysql(&c, &s, "sha", Some("s-pw"), &plain_args(), "SELECT 1");
    assert!(!r.ok);
    assert!(
        r.err.contains("1045") && r.err.contains("secure connection"),
        "{}",
        r.err
    );
    // Full authentication over TLS, wrong then right.
    let r = mysql(&c, &s, "sha", Some("bad"), &verify_args(&pki), "SELECT 1");
    assert!(r.err.contains("ERROR 1045"), "{}", r.err);
    let r = mysql(
        &c,
        &s,
        "sha",
        Some("s-pw"),
        &verify_args(&pki),
        "SELECT CURRENT_USER()",
    );
    assert!(r.ok, "{}\n{}", r.err, s.log());
    assert_eq!(r.out.trim(), "sha@%");
    // Now cached: the fast path works in plaintext too (as in MySQL).
    let r = mysql(&c, &s, "sha", Some("s-pw"), &plain_args(), "SELECT 1");
    assert!(r.ok, "{}", r.err);
    // A password change clears the cache.
    root(&c, &s, "ALTER USER 'sha'@'%' IDENTIFIED BY 's-pw2'");
    let r = mysql(&c, &s, "sha", Some("s-pw2"), &plain_args(), "SELECT 1");
    assert!(!r.ok, "stale cache entry used");
    let r = mysql(&c, &s, "sha", Some("s-pw2"), &verify_args(&pki), "SELECT 1");
    assert!(r.ok, "{}", r.err);
    let stored = std::fs::read_to_string(s.data_dir.join("users.json")).unwrap();
    assert!(
        !stored.contains("s-pw"),
        "cleartext password in the user store"
    );
    assert!(stored.contains("$tiox$pbkdf2-sha256$"), "{stored}");
}

#[test]
fn accounts_grants_and_passwords_persist_across_restarts() {
    let Some(c) = client("accounts_grants_and_passwords_persist_across_restarts") else {
        return;
    };
    let pki = Pki::new();
    let s = tls_server(&pki, &[]);
    root(&c, &s, "CREATE USER 'dev'@'%' IDENTIFIED BY 'd1'; GRANT SELECT, INSERT ON test.* TO 'dev'@'%'; GRANT PROCESS ON *.* TO 'dev'@'%'");
    let g = root(&c, &s, "SHOW GRANTS FOR 'dev'@'%'");
    assert_eq!(
        g,
        "GRANT PROCESS ON *.* TO 'dev'@'%'\nGRANT SELECT,INSERT ON `test`.* TO 'dev'@'%'\n"
    );
    // The user can use `test` but not create users or see `mysql`.
    let r = mysql(
        &c,
        &s,
        "dev",
        Some("d1"),
        &plain_args(),
        "USE test; SELECT DATABASE()",
    );
    assert_eq!(r.out.trim(), "test", "{}", r.err);
    let r = mysql(&c, &s, "dev", Some("d1"), &plain_args(), "CREATE USER x");
    assert!(r.err.contains("ERROR 1227"), "{}", r.err);
    let r = mysql(&c, &s, "dev", Some("d1"), &plain_args(), "USE mysql");
    assert!(r.err.contains("ERROR 1044"), "{}", r.err);
    // SET PASSWORD for oneself; REVOKE.
    let r = mysql(
        &c,
        &s,
        "dev",
        Some("d1"),
        &plain_args(),
        "SET PASSWORD = 'd2'",
    );
    assert!(r.ok, "{}", r.err);
    root(&c, &s, "REVOKE INSERT ON test.* FROM 'dev'@'%'");
    let data = s.data_dir.clone();
    drop(s);
    let s2 = TidbServer::start(pki.dir.path(), &pki.server_tls_args());
    assert!(mysql(&c, &s2, "dev", Some("d1"), &plain_args(), "SELECT 1")
        .err
        .contains("1045"));
    let r = mysql(&c, &s2, "dev", Some("d2"), &plain_args(), "SHOW GRANTS");
    assert!(r.ok, "{}", r.err);
    assert!(
        r.out.contains("GRANT SELECT ON `test`.* TO 'dev'@'%'"),
        "{}",
        r.out
    );
    root(&c, &s2, "DROP USER 'dev'@'%'");
    assert!(mysql(&c, &s2, "dev", Some("d2"), &plain_args(), "SELECT 1")
        .err
        .contains("1045"));
    let r = mysql(&c, &s2, "root", None, &plain_args(), "DROP USER 'dev'@'%'");
    assert!(r.err.contains("ERROR 1396"), "{}", r.err);
    assert!(data.join("users.json").exists());
}

#[test]
fn initialize_secure_prints_a_root_password_once() {
    let Some(c) = client("initialize_secure_prints_a_root_password_once") else {
        return;
    };
    let pki = Pki::new();
    let mut args = pki.server_tls_args();
    args.push("--initialize-secure".into());
    let s = TidbServer::start(pki.dir.path(), &args);
    let out = s.stdout();
    let password = out
        .lines()
        .find_map(|l| {
            l.split_once("root@'%': ")
                .map(|(_, p)| p.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no password printed: {out}"));
    assert!(password.len() >= 16);
    assert!(!s.log().contains(&password), "the password reached the log");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&s.data_dir), 0o700, "data directory");
        assert_eq!(mode(&s.data_dir.join("users.json")), 0o600, "user store");
        let stored = std::fs::read_to_string(s.data_dir.join("users.json")).unwrap();
        assert!(
            !stored.contains(&password),
            "cleartext password in the user store"
        );
    }
    assert!(mysql(&c, &s, "root", None, &plain_args(), "SELECT 1")
        .err
        .contains("1045"));
    let r = mysql(
        &c,
        &s,
        "root",
        Some(&password),
        &verify_args(&pki),
        "SELECT CURRENT_USER()",
    );
    assert!(r.ok, "{}", r.err);
    drop(s);
    // A second initialization of the same directory is refused.
    let again = TidbServer::try_start(pki.dir.path(), &args);
    assert!(again.is_err_and(|e| e.contains("already initialized") || e.contains("already exists")));
    // Without users and without --initialize-*, the server refuses to start.
    let empty = tempfile::tempdir().unwrap();
    let out = run_tidb(&["--data-dir", empty.path().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--initialize-secure"));
}

fn reissue_server_cert(pki: &Pki, days: u32) {
    let ca = CertAuthority::from_pem(
        &std::fs::read_to_string(pki.path("mysql/ca.pem")).unwrap(),
        &std::fs::read_to_string(pki.path("mysql/ca-key.pem")).unwrap(),
    )
    .unwrap();
    let issued = ca
        .issue(&Spec {
            validity: Validity::Days(days),
            ..Spec::new(
                "tidb-server",
                &["127.0.0.1", "localhost"],
                Profile::MysqlServer,
            )
        })
        .unwrap();
    // Key first then certificate, each replaced by rename.
    let dir = pki.dir.path().join("certs/mysql");
    std::fs::write(dir.join("new-key.pem"), issued.key_pem.expose()).unwrap();
    std::fs::write(dir.join("new.pem"), &issued.cert_pem).unwrap();
    std::fs::rename(dir.join("new-key.pem"), dir.join("server-key.pem")).unwrap();
    std::fs::rename(dir.join("new.pem"), dir.join("server.pem")).unwrap();
}

fn not_after(c: &std::path::Path, s: &TidbServer, pki: &Pki) -> String {
    let r = mysql(
        c,
        s,
        "root",
        None,
        &verify_args(pki),
        "SHOW STATUS LIKE 'Ssl_server_not_after'",
    );
    assert!(r.ok, "{}", r.err);
    r.out.trim().to_string()
}

#[test]
fn replaced_certificate_files_are_used_by_the_next_connection() {
    let Some(c) = client("replaced_certificate_files_are_used_by_the_next_connection") else {
        return;
    };
    let pki = Pki::new();
    let s = tls_server(&pki, &[]);
    let before = not_after(&c, &s, &pki);
    reissue_server_cert(&pki, 7);
    let after = not_after(&c, &s, &pki);
    assert_ne!(before, after, "the new certificate was not picked up");
    assert!(
        s.wait_for_log("new connections use the new certificate"),
        "{}",
        s.log()
    );
}

#[test]
fn alter_instance_reload_tls_reloads_and_keeps_the_old_certificate_when_the_new_is_bad() {
    let Some(c) = client(
        "alter_instance_reload_tls_reloads_and_keeps_the_old_certificate_when_the_new_is_bad",
    ) else {
        return;
    };
    let pki = Pki::new();
    let s = tls_server(&pki, &[]);
    let before = not_after(&c, &s, &pki);
    // A broken certificate file: the command reports the error, the old
    // certificate keeps serving.
    let cert = pki.path("mysql/server.pem");
    let good = std::fs::read(&cert).unwrap();
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let r = mysql(
        &c,
        &s,
        "root",
        None,
        &verify_args(&pki),
        "ALTER INSTANCE RELOAD TLS",
    );
    assert!(!r.ok);
    assert!(
        r.err.contains("ERROR 3889") && r.err.contains("ssl-cert"),
        "{}",
        r.err
    );
    assert_eq!(
        not_after(&c, &s, &pki),
        before,
        "the old certificate must stay in service"
    );
    std::fs::write(&cert, good).unwrap();
    // A valid new certificate: reloaded by the command.
    reissue_server_cert(&pki, 9);
    let r = mysql(
        &c,
        &s,
        "root",
        None,
        &verify_args(&pki),
        "ALTER INSTANCE RELOAD TLS",
    );
    assert!(r.ok, "{}", r.err);
    assert_ne!(not_after(&c, &s, &pki), before);
    assert!(
        s.wait_for_log("ALTER INSTANCE RELOAD TLS: certificate reloaded"),
        "{}",
        s.log()
    );
    // Not for users without CONNECTION_ADMIN/SUPER.
    root(&c, &s, "CREATE USER 'weak'@'%'");
    let r = mysql(
        &c,
        &s,
        "weak",
        None,
        &plain_args(),
        "ALTER INSTANCE RELOAD TLS",
    );
    assert!(r.err.contains("ERROR 1227"), "{}", r.err);
}

#[test]
fn store_tikv_without_a_reachable_pd_is_a_startup_error_naming_path() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = run_tidb(&["--data-dir", d, "--store", "tikv"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--path"));
    let out = run_tidb(&[
        "--data-dir",
        d,
        "--store",
        "tikv",
        "--path",
        "127.0.0.1:2379",
        "--insecure",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--path 127.0.0.1:2379") && err.contains("PD is unreachable"),
        "{err}"
    );
}

#[test]
fn config_file_security_section_and_tls_version_are_applied() {
    let Some(c) = client("config_file_security_section_and_tls_version_are_applied") else {
        return;
    };
    let pki = Pki::new();
    let file = pki.dir.path().join("tidb.toml");
    std::fs::write(
        &file,
        format!(
            "[security]\nssl-ca = \"{}\"\nssl-cert = \"{}\"\nssl-key = \"{}\"\n\
             require-secure-transport = true\ntls-version = \"TLSv1.3\"\n",
            pki.path("mysql/ca.pem"),
            pki.path("mysql/server.pem"),
            pki.path("mysql/server-key.pem")
        ),
    )
    .unwrap();
    let s = TidbServer::start(
        pki.dir.path(),
        &[
            format!("--config={}", file.display()),
            "--initialize-insecure".into(),
        ],
    );
    let r = mysql(&c, &s, "root", None, &plain_args(), "SELECT 1");
    assert!(r.err.contains("ERROR 3159"), "{}", r.err);
    let r = mysql(
        &c,
        &s,
        "root",
        None,
        &verify_args(&pki),
        "SELECT @@tls_version, @@ssl_ca",
    );
    assert!(r.ok, "{}", r.err);
    assert_eq!(r.out, format!("TLSv1.3\t{}\n", pki.path("mysql/ca.pem")));
    // A client limited to TLS 1.2 cannot connect.
    let mut old = verify_args(&pki);
    old.push("--tls-version=TLSv1.2".into());
    let r = mysql(&c, &s, "root", None, &old, "SELECT 1");
    assert!(!r.ok, "a TLS 1.2 client connected to a TLSv1.3-only server");
    // A typo in the file is a startup error naming the key.
    std::fs::write(&file, "[security]\nssl-cetr = \"x\"\n").unwrap();
    let out = run_tidb(&[
        "--config",
        file.to_str().unwrap(),
        "--data-dir",
        s.data_dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ssl-cetr"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `tiox cert revoke` for the MySQL-facing CA: writes (or extends)
/// `mysql/crl.pem` naming `certs`.
fn revoke_mysql(pki: &Pki, certs: &[&str]) -> String {
    let tiox = {
        let mut p = std::env::current_exe().unwrap();
        p.pop();
        if p.ends_with("deps") {
            p.pop();
        }
        p.join("tiox")
    };
    let out = std::process::Command::new(tiox)
        .args(["cert", "revoke", "--ca"])
        .arg(pki.path("mysql/ca.pem"))
        .arg("--ca-key")
        .arg(pki.path("mysql/ca-key.pem"))
        .arg("--out")
        .arg(pki.path("mysql/crl.pem"))
        .args(certs.iter().map(|c| pki.path(c)))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn revoked_client_certificate_is_refused_on_the_mysql_port_after_the_crl_changes() {
    let Some(c) =
        client("revoked_client_certificate_is_refused_on_the_mysql_port_after_the_crl_changes")
    else {
        return;
    };
    let pki = Pki::new();
    revoke_mysql(&pki, &[]);
    let s = tls_server(&pki, &[&format!("--ssl-crl={}", pki.path("mysql/crl.pem"))]);
    app_requires_x509_and_logs_in(&c, &s, &pki);
    let said = revoke_mysql(&pki, &["mysql/client.pem"]);
    let serial = said
        .split("serial ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap_or_else(|| panic!("{said}"))
        .to_string();
    let r = mysql(&c, &s, "app", Some("apppw"), &mutual_args(&pki), "SELECT 1");
    assert!(!r.ok, "a revoked client certificate logged in");
    assert!(s.wait_for_log(&format!("serial {serial}")), "{}", s.log());
    // Revocation is per certificate: a login without one still works.
    let plain = mysql(&c, &s, "root", None, &verify_args(&pki), "SELECT 1");
    assert!(plain.ok, "{}", plain.err);
}
