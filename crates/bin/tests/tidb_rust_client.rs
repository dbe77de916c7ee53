//! tidb-server with a real Rust MySQL client (`mysql_async`, rustls) and
//! with PyMySQL: TLS verification, mutual TLS, both auth plugins, and
//! prepared statements with every parameter type over the binary protocol.
//! Also the status port over HTTPS with client verification.

mod tidb_common;

use std::path::PathBuf;
use std::process::Command;

use mysql_async::prelude::*;
use mysql_async::{ClientIdentity, Conn, OptsBuilder, SslOpts, Value};
use tidb_common::*;

fn server(pki: &Pki, extra: &[String]) -> TidbServer {
    let mut args = pki.server_tls_args();
    args.push("--initialize-insecure".into());
    args.extend(extra.iter().cloned());
    TidbServer::start(pki.dir.path(), &args)
}

fn opts(
    pki: &Pki,
    s: &TidbServer,
    user: &str,
    pass: Option<&str>,
    tls: bool,
    mutual: bool,
) -> OptsBuilder {
    let mut o = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(s.port)
        .prefer_socket(false)
        .user(Some(user))
        .pass(pass.map(str::to_string));
    if tls {
        let mut ssl = SslOpts::default()
            .with_root_certs(vec![PathBuf::from(pki.path("mysql/ca.pem")).into()]);
        if mutual {
            ssl = ssl.with_client_identity(Some(ClientIdentity::new(
                PathBuf::from(pki.path("mysql/client.pem")).into(),
                PathBuf::from(pki.path("mysql/client-key.pem")).into(),
            )));
        }
        o = o.ssl_opts(Some(ssl));
    }
    o
}

async fn cipher(conn: &mut Conn) -> String {
    let row: Option<(String, String)> = conn
        .query_first("SHOW STATUS LIKE 'Ssl_cipher'")
        .await
        .unwrap();
    row.unwrap().1
}

#[tokio::test]
async fn prepared_statements_bind_every_parameter_type_over_tls() {
    let pki = Pki::new();
    let s = server(&pki, &[]);
    let mut conn = Conn::new(opts(&pki, &s, "root", None, true, false))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.log()));
    assert!(cipher(&mut conn).await.starts_with("TLS_"));
    // A rustls client (aws-lc-rs) and the MySQL port agree on the
    // post-quantum hybrid key exchange.
    let kx: Option<(String, String)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'Tiox_tls_kx_group'")
        .await
        .unwrap();
    assert_eq!(kx.unwrap().1, "X25519MLKEM768");
    let values = vec![
        Value::NULL,
        Value::Int(-42),
        Value::Int(i64::MIN),
        Value::UInt(u64::MAX),
        Value::Float(1.5),
        Value::Double(-2.25e10),
        Value::Bytes(b"hello 'world' \\ \"q\"".to_vec()),
        Value::Bytes(vec![0, 0xff, 0xfe, 1]),
        Value::Bytes("ünïcödé ✓".as_bytes().to_vec()),
        Value::Date(2024, 2, 29, 0, 0, 0, 0),
        Value::Date(2024, 2, 29, 23, 59, 58, 0),
        Value::Date(1999, 12, 31, 1, 2, 3, 456_789),
        Value::Time(false, 0, 1, 2, 3, 0),
        Value::Time(true, 2, 3, 4, 5, 6),
    ];
    let placeholders = vec!["?"; values.len()].join(", ");
    let stmt = conn.prep(format!("SELECT {placeholders}")).await.unwrap();
    assert_eq!(stmt.num_params() as usize, values.len());
    let row: mysql_async::Row = conn
        .exec_first(&stmt, values.clone())
        .await
        .unwrap()
        .unwrap();
    let got: Vec<Value> = (0..values.len())
        .map(|i| row.as_ref(i).cloned().unwrap())
        .collect();
    for (i, (want, got)) in values.iter().zip(&got).enumerate() {
        assert_eq!(want, got, "parameter {i}");
    }
    // Executed again with the types remembered, and expressions over them.
    let sum: Option<(i64, String, Option<i64>)> = conn
        .exec_first(
            "SELECT ? + ?, CONCAT(?, '-', ?), ? IS NULL",
            (40, 2, "a", 7, Value::NULL),
        )
        .await
        .unwrap();
    assert_eq!(sum, Some((42, "a-7".to_string(), Some(1))));
    let again: Option<(i64, String, Option<i64>)> = conn
        .exec_first(
            "SELECT ? + ?, CONCAT(?, '-', ?), ? IS NULL",
            (1, 2, "b", 8, 0),
        )
        .await
        .unwrap();
    assert_eq!(again, Some((3, "b-8".to_string(), Some(0))));
    // Statements without parameters, SET and SHOW through the binary protocol.
    conn.exec_drop("SET @x = ?", (123,)).await.unwrap();
    let x: Option<i64> = conn.exec_first("SELECT @x", ()).await.unwrap();
    assert_eq!(x, Some(123));
    let v: Option<(String, String)> = conn
        .exec_first("SHOW VARIABLES LIKE 'have_ssl'", ())
        .await
        .unwrap();
    assert_eq!(v.unwrap().1, "YES");
    // Errors are MySQL errors, and the connection carries on.
    let err = conn
        .exec_drop("SELECT nosuchfunc(?)", (1,))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1305"), "{err}");
    let err = conn.prep("SELEC ?").await.unwrap_err();
    assert!(err.to_string().contains("1064"), "{err}");
    conn.close(stmt).await.unwrap();
    conn.ping().await.unwrap();
    conn.reset().await.unwrap();
    conn.disconnect().await.unwrap();
}

#[tokio::test]
async fn payloads_over_16_mib_are_split_and_reassembled_both_ways() {
    let pki = Pki::new();
    let s = server(&pki, &[]);
    let mut conn = Conn::new(opts(&pki, &s, "root", None, true, false))
        .await
        .unwrap();
    let big = "x".repeat(17 << 20);
    let len: Option<i64> = conn
        .exec_first("SELECT LENGTH(?)", (big.as_str(),))
        .await
        .unwrap();
    assert_eq!(len, Some(17 << 20));
    let echoed: Option<String> = conn.query_first(format!("SELECT '{big}'")).await.unwrap();
    assert_eq!(echoed.map(|e| e.len()), Some(17 << 20));
    conn.disconnect().await.unwrap();
}

#[tokio::test]
async fn max_allowed_packet_is_enforced() {
    let pki = Pki::new();
    let s = server(&pki, &["--max-allowed-packet=65536".into()]);
    let mut conn = Conn::new(opts(&pki, &s, "root", None, true, false))
        .await
        .unwrap();
    let limit: Option<u64> = conn
        .query_first("SELECT @@max_allowed_packet")
        .await
        .unwrap();
    assert_eq!(limit, Some(65536));
    // mysql_async refuses to send beyond the advertised limit; the server's
    // own enforcement on raw packets is tested in crates/sql (malformed
    // input corpus).
    let big = "y".repeat(100_000);
    let r: Result<Option<String>, _> = conn.query_first(format!("SELECT '{big}'")).await;
    assert!(r.is_err(), "a 100 kB packet passed a 64 kB limit");
    // Other sessions are unaffected.
    let mut other = Conn::new(opts(&pki, &s, "root", None, true, false))
        .await
        .unwrap();
    other.ping().await.unwrap();
}

#[tokio::test]
async fn rust_client_mutual_tls_and_both_auth_plugins() {
    let pki = Pki::new();
    let s = server(&pki, &[]);
    let mut root = Conn::new(opts(&pki, &s, "root", None, true, false))
        .await
        .unwrap();
    root.query_drop("CREATE USER 'm'@'%' IDENTIFIED BY 'mp' REQUIRE X509")
        .await
        .unwrap();
    root.query_drop("CREATE USER 's2'@'%' IDENTIFIED WITH caching_sha2_password BY 'sp'")
        .await
        .unwrap();
    let mut m = Conn::new(opts(&pki, &s, "m", Some("mp"), true, true))
        .await
        .unwrap();
    let who: Option<String> = m.query_first("SELECT CURRENT_USER()").await.unwrap();
    assert_eq!(who.as_deref(), Some("m@%"));
    assert!(Conn::new(opts(&pki, &s, "m", Some("mp"), true, false))
        .await
        .is_err());
    let mut s2 = Conn::new(opts(&pki, &s, "s2", Some("sp"), true, false))
        .await
        .unwrap();
    let who: Option<String> = s2.query_first("SELECT CURRENT_USER()").await.unwrap();
    assert_eq!(who.as_deref(), Some("s2@%"));
    assert!(Conn::new(opts(&pki, &s, "s2", Some("wrong"), true, false))
        .await
        .is_err());
    // The database in the handshake is checked against the account's grants.
    let err = Conn::new(opts(&pki, &s, "s2", Some("sp"), true, false).db_name(Some("test")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1044"), "{err}");
    root.query_drop("GRANT SELECT ON test.* TO 's2'@'%'")
        .await
        .unwrap();
    let mut s2 = Conn::new(opts(&pki, &s, "s2", Some("sp"), true, false).db_name(Some("test")))
        .await
        .unwrap();
    let db: Option<String> = s2.query_first("SELECT DATABASE()").await.unwrap();
    assert_eq!(db.as_deref(), Some("test"));
}

#[tokio::test]
async fn change_user_reauthenticates_and_resets_the_session() {
    use mysql_async::ChangeUserOpts;
    let pki = Pki::new();
    let s = server(&pki, &[]);
    let mut conn = Conn::new(opts(&pki, &s, "root", None, true, false))
        .await
        .unwrap();
    conn.query_drop("CREATE USER 'cu'@'%' IDENTIFIED WITH caching_sha2_password BY 'cup'; GRANT SELECT ON test.* TO 'cu'@'%'").await.unwrap();
    conn.query_drop("SET @keep = 1").await.unwrap();
    conn.change_user(
        ChangeUserOpts::default()
            .with_user(Some("cu".into()))
            .with_pass(Some("cup".into()))
            .with_db_name(Some("test".into())),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", s.log()));
    let row: Option<(String, Option<i64>, String)> = conn
        .query_first("SELECT CURRENT_USER(), @keep, DATABASE()")
        .await
        .unwrap();
    assert_eq!(row, Some(("cu@%".to_string(), None, "test".to_string())));
    // The new user's privileges apply.
    assert!(conn.query_drop("CREATE USER 'x'@'%'").await.is_err());
    // A wrong password is refused and ends the connection.
    let bad = conn
        .change_user(
            ChangeUserOpts::default()
                .with_user(Some("root".into()))
                .with_pass(Some("nope".into())),
        )
        .await;
    assert!(bad.is_err());
    assert!(
        s.wait_for_log("COM_CHANGE_USER: wrong password"),
        "{}",
        s.log()
    );
}

fn python_with_pymysql(test: &str) -> Option<()> {
    let ok = Command::new("python3")
        .args(["-c", "import pymysql"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        missing("python3 with PyMySQL", test);
        return None;
    }
    Some(())
}

const PY: &str = r#"
import sys, pymysql
port, ca, cert, key, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
c = pymysql.connect(host="127.0.0.1", port=port, user=user, password=password, ssl_ca=ca,
                    ssl_cert=cert or None, ssl_key=key or None, ssl_verify_cert=True, ssl_verify_identity=True)
cur = c.cursor()
cur.execute("SHOW STATUS LIKE 'Ssl_cipher'")
print(cur.fetchone()[1])
cur.execute("SELECT CURRENT_USER(), %s + %s, %s", (40, 2, "it's"))
print("\t".join(str(x) for x in cur.fetchone()))
c.commit()
c.close()
"#;

fn pymysql(s: &TidbServer, pki: &Pki, mutual: bool, user: &str, password: &str) -> (bool, String) {
    let (cert, key) = if mutual {
        (
            pki.path("mysql/client.pem"),
            pki.path("mysql/client-key.pem"),
        )
    } else {
        (String::new(), String::new())
    };
    let out = Command::new("python3")
        .args([
            "-c",
            PY,
            &s.port.to_string(),
            &pki.path("mysql/ca.pem"),
            &cert,
            &key,
            user,
            password,
        ])
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn pymysql_connects_with_tls_mutual_tls_and_caching_sha2() {
    if python_with_pymysql("pymysql_connects_with_tls_mutual_tls_and_caching_sha2").is_none() {
        return;
    }
    let pki = Pki::new();
    let s = server(&pki, &[]);
    let (ok, out) = pymysql(&s, &pki, false, "root", "");
    assert!(ok, "{out}\n{}", s.log());
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("TLS_"), "{out}");
    assert_eq!(lines[1], "root@%\t42\tit's");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut root = Conn::new(opts(&pki, &s, "root", None, true, false))
            .await
            .unwrap();
        root.query_drop(
            "CREATE USER 'py'@'%' IDENTIFIED WITH caching_sha2_password BY 'pyp' REQUIRE X509",
        )
        .await
        .unwrap();
    });
    let (ok, out) = pymysql(&s, &pki, true, "py", "pyp");
    assert!(ok, "{out}\n{}", s.log());
    assert!(out.contains("py@%\t42"), "{out}");
    let (ok, _) = pymysql(&s, &pki, false, "py", "pyp");
    assert!(!ok, "REQUIRE X509 let PyMySQL in without a certificate");
}

#[tokio::test]
async fn status_port_is_https_with_client_verification_when_cluster_tls_is_on() {
    use tiox_security::{ClientTls, Component, SecurityConfig};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::new();
    let s = server(
        &pki,
        &[
            format!("--cluster-ssl-ca={}", pki.path("ca.pem")),
            format!("--cluster-ssl-cert={}", pki.path("tidb-server.pem")),
            format!("--cluster-ssl-key={}", pki.path("tidb-server-key.pem")),
        ],
    );
    let settings = SecurityConfig::from_paths(
        &pki.path("ca.pem"),
        &pki.path("client.pem"),
        &pki.path("client-key.pem"),
    )
    .validate(Component::PdCtl)
    .unwrap()
    .unwrap();
    let tls = ClientTls::with_alpn(settings, vec![b"http/1.1".to_vec()]).unwrap();
    let addr = format!("127.0.0.1:{}", s.status_port);
    for path in ["/status", "/metrics"] {
        let mut stream = tls
            .connect_tcp(&addr)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", s.log()));
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut body = Vec::new();
        stream.read_to_end(&mut body).await.ok();
        let body = String::from_utf8_lossy(&body);
        assert!(body.starts_with("HTTP/1.1 200"), "{path}: {body}");
        if path == "/status" {
            assert!(body.contains("\"version\":\"8.0.11-TiDB-tiox-"), "{body}");
        } else {
            assert!(body.contains("tidb_server_connections "), "{body}");
        }
    }
    // Plaintext gets no HTTP answer.
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tcp.read_to_end(&mut reply),
    )
    .await;
    assert!(!String::from_utf8_lossy(&reply).contains("HTTP/1.1 200"));
    // A MySQL-side client certificate (other CA) is refused.
    let foreign = SecurityConfig::from_paths(
        &pki.path("ca.pem"),
        &pki.path("mysql/client.pem"),
        &pki.path("mysql/client-key.pem"),
    )
    .validate(Component::PdCtl);
    if let Ok(Some(settings)) = foreign {
        let tls = ClientTls::new(settings).unwrap();
        let refused = match tls.connect_tcp(&addr).await {
            Err(_) => true,
            Ok(mut st) => {
                let _ = st
                    .write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
                    .await;
                let mut b = Vec::new();
                let _ = st.read_to_end(&mut b).await;
                !String::from_utf8_lossy(&b).contains("200")
            }
        };
        assert!(refused);
    }
}
