//! The protocol layer against raw packets: a corpus of malformed input
//! (truncated packets, lying lengths, bad sequence ids, oversized packets,
//! garbage before the handshake, a TLS ClientHello where a MySQL packet is
//! expected) closes only that connection with a logged reason while another
//! session carries on; plus the binary protocol with every parameter type,
//! long data, multi-statements off by default, and COM_* edge cases.

use std::sync::Arc;
use std::time::Duration;

use tiox_sql::backend::Backend;
use tiox_sql::executor::Interim;
use tiox_sql::protocol::codec::{put_lenenc_bytes, Reader};
use tiox_sql::protocol::conn::Closed;
use tiox_sql::protocol::consts::{cap, com, ty};
use tiox_sql::protocol::packet::PacketIo;
use tiox_sql::users::{MemoryUserStore, UserRecord};
use tiox_sql::{Settings, Shared};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const LIMIT: usize = 1 << 20;

fn shared() -> Arc<Shared> {
    let root = UserRecord::root(String::new());
    let users = Arc::new(MemoryUserStore::new(vec![root]));
    Shared::new(
        users,
        None,
        Settings {
            max_allowed_packet: LIMIT,
            net_read_timeout: Duration::from_secs(1),
            ..Settings::default()
        },
    )
}

/// Starts one connection on an in-memory pipe; returns the client end and
/// the task that yields why the server closed it.
fn connect(shared: &Arc<Shared>) -> (DuplexStream, tokio::task::JoinHandle<Closed>) {
    let (client, server) = tokio::io::duplex(4 << 20);
    let shared = shared.clone();
    let backend: Arc<dyn Backend> = Arc::new(Interim::default());
    let task = tokio::spawn(async move {
        shared
            .serve_connection(server, "test-peer:1".into(), "127.0.0.1".into(), backend)
            .await
    });
    (client, task)
}

fn response(caps: u32, user: &str) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&caps.to_le_bytes());
    p.extend_from_slice(&(16u32 << 20).to_le_bytes());
    p.push(45);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(user.as_bytes());
    p.push(0);
    p.push(0); // empty auth response
    p.extend_from_slice(b"mysql_native_password\0");
    p
}

const CAPS: u32 = cap::PROTOCOL_41
    | cap::SECURE_CONNECTION
    | cap::PLUGIN_AUTH
    | cap::LONG_PASSWORD
    | cap::DEPRECATE_EOF;

/// Logs in as root (no password); returns the packet layer.
async fn login(client: DuplexStream, caps: u32) -> PacketIo<DuplexStream> {
    let mut io = PacketIo::new(client);
    let hs = io.read_packet(LIMIT).await.expect("handshake");
    assert_eq!(hs[0], 10);
    io.send(&response(caps, "root")).await.unwrap();
    let ok = io.read_packet(LIMIT).await.expect("login answer");
    assert_eq!(
        ok[0],
        0x00,
        "login failed: {:?}",
        String::from_utf8_lossy(&ok)
    );
    io
}

async fn command(io: &mut PacketIo<DuplexStream>, payload: &[u8]) -> Vec<u8> {
    io.reset_seq();
    io.send(payload).await.unwrap();
    io.read_packet(LIMIT).await.expect("answer")
}

fn err_code(p: &[u8]) -> Option<u16> {
    (p.first() == Some(&0xff)).then(|| u16::from_le_bytes([p[1], p[2]]))
}

/// Reads a whole text or binary result set (DEPRECATE_EOF): the rows.
async fn result_rows(io: &mut PacketIo<DuplexStream>, first: Vec<u8>) -> (Vec<u8>, Vec<Vec<u8>>) {
    assert_ne!(first[0], 0xff, "error: {}", String::from_utf8_lossy(&first));
    let n = Reader::new(&first).lenenc_int().unwrap() as usize;
    let mut types = Vec::new();
    for _ in 0..n {
        let def = io.read_packet(LIMIT).await.unwrap();
        let mut r = Reader::new(&def);
        for _ in 0..6 {
            r.lenenc_bytes().unwrap();
        }
        r.u8().unwrap();
        r.u16().unwrap();
        r.u32().unwrap();
        types.push(r.u8().unwrap());
    }
    let mut rows = Vec::new();
    loop {
        let p = io.read_packet(LIMIT).await.unwrap();
        if p[0] == 0xfe && p.len() < 0xffffff {
            return (types, rows);
        }
        rows.push(p);
    }
}

async fn closed_within(name: &str, task: tokio::task::JoinHandle<Closed>) -> Closed {
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .unwrap_or_else(|_| panic!("{name}: the server did not close the connection"))
        .expect("the connection task panicked")
}

#[tokio::test]
async fn malformed_input_closes_only_that_connection_with_a_reason() {
    let shared = shared();
    // A healthy session that must survive everything below.
    let (c, _healthy_task) = connect(&shared);
    let mut healthy = login(c, CAPS).await;
    let p = command(&mut healthy, b"\x03SELECT 1").await;
    assert_ne!(p[0], 0xff);
    let _ = result_rows(&mut healthy, p).await;

    let client_hello: Vec<u8> = {
        let mut v = vec![
            0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03,
        ];
        v.extend_from_slice(&[0x42; 64]);
        v
    };
    // (name, bytes sent right after reading the handshake, whether the
    //  client then closes its side, expected text in the close reason)
    let pre_login: Vec<(&str, Vec<u8>, bool, &str)> = vec![
        (
            "TLS ClientHello instead of a MySQL packet",
            client_hello.clone(),
            false,
            "TLS ClientHello",
        ),
        ("truncated header", vec![0x05, 0x00], true, "mid-packet"),
        (
            "length that lies (1000 announced, 10 sent)",
            {
                let mut v = vec![0xe8, 0x03, 0x00, 0x01];
                v.extend_from_slice(&[0x41; 10]);
                v
            },
            true,
            "mid-packet",
        ),
        (
            "bad sequence id",
            {
                let mut v = vec![0x20, 0x00, 0x00, 0x07];
                v.extend_from_slice(&[0; 32]);
                v
            },
            false,
            "sequence id 7, expected 1",
        ),
        (
            "oversized pre-login packet",
            vec![0xff, 0xff, 0xff, 0x01],
            false,
            "larger than the limit",
        ),
        (
            "garbage handshake response",
            {
                let mut v = vec![0x10, 0x00, 0x00, 0x01];
                v.extend_from_slice(&[0xde; 16]);
                v
            },
            false,
            "bad handshake response",
        ),
        (
            "response without protocol 4.1",
            {
                let body = response(cap::SECURE_CONNECTION, "root");
                let mut v = (body.len() as u32).to_le_bytes()[..3].to_vec();
                v.push(1);
                v.extend_from_slice(&body);
                v
            },
            false,
            "protocol 4.1",
        ),
        (
            "user name without terminator",
            {
                let mut body = response(CAPS, "root");
                body.truncate(36);
                let mut v = (body.len() as u32).to_le_bytes()[..3].to_vec();
                v.push(1);
                v.extend_from_slice(&body);
                v
            },
            false,
            "bad handshake response",
        ),
        (
            "SSLRequest without TLS configured",
            {
                let mut body = (CAPS | cap::SSL).to_le_bytes().to_vec();
                body.extend_from_slice(&[0; 28]);
                let mut v = vec![32, 0, 0, 1];
                v.extend_from_slice(&body);
                v
            },
            false,
            "TLS is not configured",
        ),
        ("immediate hang-up", vec![], true, "client quit"),
    ];
    for (name, bytes, hang_up, expect) in pre_login {
        let (mut c, task) = connect(&shared);
        let mut hs = [0u8; 4];
        c.read_exact(&mut hs).await.unwrap();
        let len = u32::from_le_bytes([hs[0], hs[1], hs[2], 0]) as usize;
        let mut body = vec![0; len];
        c.read_exact(&mut body).await.unwrap();
        c.write_all(&bytes).await.unwrap();
        if hang_up {
            drop(c);
        }
        let closed = closed_within(name, task).await;
        let text = closed.to_string();
        assert!(text.contains(expect), "{name}: closed with \"{text}\"");
    }

    // Garbage before the handshake is even read.
    let (mut c, task) = connect(&shared);
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let text = closed_within("garbage first", task).await.to_string();
    assert!(
        text.contains("dropped") || text.contains("refused"),
        "{text}"
    );

    // After login: oversized packets, bad sequence ids, truncation.
    let post_login: Vec<(&str, Vec<u8>, bool, &str)> = vec![
        (
            "oversized command",
            {
                let mut v = vec![0xff, 0xff, 0x1f, 0x00]; // 2 MiB announced, limit 1 MiB
                v.extend_from_slice(&[0x03; 16]);
                v
            },
            false,
            "larger than the limit of 1048576",
        ),
        (
            "command with sequence id 3",
            vec![0x01, 0x00, 0x00, 0x03, 0x0e],
            false,
            "sequence id 3, expected 0",
        ),
        (
            "truncated command",
            vec![0x10, 0x00, 0x00, 0x00, 0x03, b'S'],
            true,
            "mid-packet",
        ),
        (
            "empty command packet",
            vec![0x00, 0x00, 0x00, 0x00],
            false,
            "empty command",
        ),
        (
            "TLS ClientHello after login (seq 0, 64 KiB announced)",
            client_hello.clone(),
            false,
            "net_read_timeout",
        ),
    ];
    for (name, bytes, hang_up, expect) in post_login {
        let (c, task) = connect(&shared);
        let io = login(c, CAPS).await;
        let (mut raw, _) = io.into_parts();
        raw.write_all(&bytes).await.unwrap();
        if hang_up {
            drop(raw);
        } else {
            // The server may answer with an ERR before closing; drain it.
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(15), raw.read_to_end(&mut sink)).await;
            if expect.contains("limit") {
                assert!(
                    sink.windows(2).any(|w| w == 1153u16.to_le_bytes()),
                    "{name}: no ERR 1153 before closing"
                );
            }
        }
        let text = closed_within(name, task).await.to_string();
        assert!(text.contains(expect), "{name}: closed with \"{text}\"");
    }

    // Malformed commands that are statement-level errors keep the session.
    for (payload, code) in [
        (vec![com::STMT_EXECUTE, 1, 2], 1835u16),
        (vec![com::STMT_EXECUTE, 9, 0, 0, 0, 0, 1, 0, 0, 0], 1243),
        (vec![com::STMT_RESET, 9, 0, 0, 0], 1243),
        (vec![0x42], 1047),
        (b"\x03SELECT ?".to_vec(), 1064),
        (b"\x03".to_vec(), 1065),
        (vec![com::QUERY, 0xff, 0xfe], 1105),
        (b"\x04t\0".to_vec(), 1046),
    ] {
        let p = command(&mut healthy, &payload).await;
        assert_eq!(
            err_code(&p),
            Some(code),
            "{payload:?}: {}",
            String::from_utf8_lossy(&p)
        );
    }
    let p = command(&mut healthy, b"\x03SELECT 40 + 2").await;
    let (_, rows) = result_rows(&mut healthy, p).await;
    assert_eq!(rows, vec![b"\x0242".to_vec()]);
    assert!(shared.aborted_connections() >= 10);
    assert_eq!(shared.connections(), 1, "only the healthy session is left");
}

#[tokio::test]
async fn multi_statements_are_off_unless_the_client_asks() {
    let shared = shared();
    let (c, _t) = connect(&shared);
    let mut io = login(c, CAPS).await;
    let p = command(&mut io, b"\x03SELECT 1; SELECT 2").await;
    assert_eq!(err_code(&p), Some(1064), "{}", String::from_utf8_lossy(&p));
    // COM_SET_OPTION turns them on.
    let p = command(&mut io, &[com::SET_OPTION, 0, 0]).await;
    assert_eq!(p[0], 0xfe);
    let p = command(&mut io, b"\x03SET @a = 1; SELECT @a + 1").await;
    assert_eq!(p[0], 0x00, "first result is an OK");
    let status = u16::from_le_bytes([p[3], p[4]]);
    assert!(status & 8 != 0, "SERVER_MORE_RESULTS_EXISTS");
    let next = io.read_packet(LIMIT).await.unwrap();
    let (_, rows) = result_rows(&mut io, next).await;
    assert_eq!(rows, vec![b"\x012".to_vec()]);
    let (c, _t) = connect(&shared);
    let mut io = login(c, CAPS | cap::MULTI_STATEMENTS).await;
    let p = command(&mut io, b"\x03SELECT 1; SELECT 2").await;
    let _ = result_rows(&mut io, p).await;
}

/// Prepares `sql`, returns (statement id, number of params).
async fn prepare(io: &mut PacketIo<DuplexStream>, sql: &str) -> (u32, u16) {
    let mut p = vec![com::STMT_PREPARE];
    p.extend_from_slice(sql.as_bytes());
    let ok = command(io, &p).await;
    assert_eq!(ok[0], 0, "{}", String::from_utf8_lossy(&ok));
    let id = u32::from_le_bytes([ok[1], ok[2], ok[3], ok[4]]);
    let cols = u16::from_le_bytes([ok[5], ok[6]]);
    let params = u16::from_le_bytes([ok[7], ok[8]]);
    for _ in 0..params + cols {
        io.read_packet(LIMIT).await.unwrap();
    }
    (id, params)
}

#[tokio::test]
async fn binary_protocol_binds_every_mysql_parameter_type() {
    let shared = shared();
    let (c, _t) = connect(&shared);
    let mut io = login(c, CAPS).await;
    // (type, unsigned, encoded value, expected text of SELECT CONCAT(?))
    let lenenc = |b: &[u8]| {
        let mut v = Vec::new();
        put_lenenc_bytes(&mut v, b);
        v
    };
    let cases: Vec<(u8, bool, Vec<u8>, &str)> = vec![
        (ty::TINY, false, vec![0x80], "-128"),
        (ty::TINY, true, vec![0xff], "255"),
        (ty::SHORT, false, (-300i16).to_le_bytes().to_vec(), "-300"),
        (ty::YEAR, false, 2024u16.to_le_bytes().to_vec(), "2024"),
        (
            ty::INT24,
            false,
            (-70000i32).to_le_bytes().to_vec(),
            "-70000",
        ),
        (
            ty::LONG,
            true,
            u32::MAX.to_le_bytes().to_vec(),
            "4294967295",
        ),
        (
            ty::LONGLONG,
            false,
            i64::MIN.to_le_bytes().to_vec(),
            "-9223372036854775808",
        ),
        (
            ty::LONGLONG,
            true,
            u64::MAX.to_le_bytes().to_vec(),
            "18446744073709551615",
        ),
        (ty::FLOAT, false, 0.5f32.to_le_bytes().to_vec(), "0.5"),
        (
            ty::DOUBLE,
            false,
            (-1.25f64).to_le_bytes().to_vec(),
            "-1.25",
        ),
        (ty::DECIMAL, false, lenenc(b"12.500"), "12.500"),
        (ty::NEWDECIMAL, false, lenenc(b"-0.001"), "-0.001"),
        (ty::VARCHAR, false, lenenc(b"v"), "v"),
        (ty::VAR_STRING, false, lenenc("ü'\\".as_bytes()), "ü'\\"),
        (ty::STRING, false, lenenc(b"s"), "s"),
        (ty::ENUM, false, lenenc(b"e1"), "e1"),
        (ty::SET, false, lenenc(b"a,b"), "a,b"),
        (ty::JSON, false, lenenc(b"{\"k\":1}"), "{\"k\":1}"),
        (ty::TINY_BLOB, false, lenenc(b"tb"), "tb"),
        (ty::MEDIUM_BLOB, false, lenenc(b"mb"), "mb"),
        (ty::LONG_BLOB, false, lenenc(b"lb"), "lb"),
        (ty::BLOB, false, lenenc(&[0xff, 0x00]), "\u{fffd}\u{0}"),
        (ty::BIT, false, lenenc(&[0x01]), "\u{1}"),
        (ty::GEOMETRY, false, lenenc(b"g"), "g"),
        (ty::DATE, false, vec![4, 0xe8, 0x07, 2, 29], "2024-02-29"),
        (
            ty::DATETIME,
            false,
            vec![7, 0xe8, 0x07, 2, 29, 13, 14, 15],
            "2024-02-29 13:14:15",
        ),
        (
            ty::TIMESTAMP,
            false,
            vec![11, 0xe8, 0x07, 2, 29, 13, 14, 15, 0x40, 0xe2, 0x01, 0],
            "2024-02-29 13:14:15.123456",
        ),
        (ty::DATETIME, false, vec![0], "0000-00-00 00:00:00"),
        (
            ty::TIME,
            false,
            vec![8, 1, 1, 0, 0, 0, 2, 3, 4],
            "-26:03:04",
        ),
        (
            ty::TIME,
            false,
            vec![12, 0, 0, 0, 0, 0, 1, 2, 3, 1, 0, 0, 0],
            "01:02:03.000001",
        ),
    ];
    let (id, n) = prepare(&mut io, "SELECT CONCAT(?), ?").await;
    assert_eq!(n, 2);
    for (t, unsigned, value, want) in cases {
        let mut p = vec![com::STMT_EXECUTE];
        p.extend_from_slice(&id.to_le_bytes());
        p.push(0);
        p.extend_from_slice(&1u32.to_le_bytes());
        p.push(0b10); // second parameter NULL
        p.push(1);
        p.extend_from_slice(&[t, if unsigned { 0x80 } else { 0 }, ty::NULL, 0]);
        p.extend_from_slice(&value);
        let first = command(&mut io, &p).await;
        let (_, rows) = result_rows(&mut io, first).await;
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row[0], 0);
        assert_eq!(row[1] & 0b1000, 0b1000, "column 2 is NULL (bit 1+2)");
        let mut r = Reader::new(&row[2..]);
        let text = r.lenenc_bytes().unwrap();
        assert_eq!(String::from_utf8_lossy(text), want, "type 0x{t:02x}");
    }
    // Long data replaces a parameter's value; types are remembered.
    let (id, _) = prepare(&mut io, "SELECT LENGTH(?)").await;
    for chunk in [&b"abc"[..], &b"defg"[..]] {
        let mut p = vec![com::STMT_SEND_LONG_DATA];
        p.extend_from_slice(&id.to_le_bytes());
        p.extend_from_slice(&0u16.to_le_bytes());
        p.extend_from_slice(chunk);
        io.reset_seq();
        io.send(&p).await.unwrap(); // no answer, by protocol
    }
    let mut p = vec![com::STMT_EXECUTE];
    p.extend_from_slice(&id.to_le_bytes());
    p.push(0);
    p.extend_from_slice(&1u32.to_le_bytes());
    p.extend_from_slice(&[0, 1, ty::BLOB, 0]);
    let first = command(&mut io, &p).await;
    let (types, rows) = result_rows(&mut io, first).await;
    assert_eq!(types, vec![ty::LONGLONG]);
    assert_eq!(&rows[0][2..], &7i64.to_le_bytes());
    // Without new types the previous ones are used.
    let mut p = vec![com::STMT_EXECUTE];
    p.extend_from_slice(&id.to_le_bytes());
    p.push(0);
    p.extend_from_slice(&1u32.to_le_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&lenenc(b"xy"));
    let first = command(&mut io, &p).await;
    let (_, rows) = result_rows(&mut io, first).await;
    assert_eq!(&rows[0][2..], &2i64.to_le_bytes());
    // Lying parameter data is an error for this statement only.
    let mut p = vec![com::STMT_EXECUTE];
    p.extend_from_slice(&id.to_le_bytes());
    p.push(0);
    p.extend_from_slice(&1u32.to_le_bytes());
    p.extend_from_slice(&[0, 1, ty::VAR_STRING, 0, 0xfc, 0xff, 0xff, b'x']);
    assert_eq!(err_code(&command(&mut io, &p).await), Some(1210));
    // COM_STMT_CLOSE, then the id is unknown.
    let mut p = vec![com::STMT_CLOSE];
    p.extend_from_slice(&id.to_le_bytes());
    io.reset_seq();
    io.send(&p).await.unwrap();
    let mut p = vec![com::STMT_RESET];
    p.extend_from_slice(&id.to_le_bytes());
    assert_eq!(err_code(&command(&mut io, &p).await), Some(1243));
    assert_eq!(command(&mut io, &[com::PING]).await[0], 0);
}

/// A valid client transcript: login, then a few commands (seq ids right).
fn valid_transcript() -> Vec<u8> {
    let mut out = Vec::new();
    let mut packet = |seq: u8, body: &[u8]| {
        out.extend_from_slice(&(body.len() as u32).to_le_bytes()[..3]);
        out.push(seq);
        out.extend_from_slice(body);
    };
    packet(1, &response(CAPS | cap::MULTI_STATEMENTS, "root"));
    packet(0, b"\x03SELECT 1 + 1, @@version, 'x'");
    packet(0, b"\x03SET @a = 5; SHOW VARIABLES LIKE 'ssl%'");
    packet(0, b"\x16SELECT ?, CONCAT(?, 'y')");
    let mut exec = vec![
        com::STMT_EXECUTE,
        1,
        0,
        0,
        0,
        0,
        1,
        0,
        0,
        0,
        0,
        1,
        ty::LONGLONG,
        0,
        ty::VAR_STRING,
        0,
    ];
    exec.extend_from_slice(&7i64.to_le_bytes());
    exec.extend_from_slice(b"\x02ab");
    packet(0, &exec);
    packet(0, &[com::PING]);
    packet(0, b"\x02test");
    packet(0, &[com::QUIT]);
    out
}

#[tokio::test]
async fn fuzz_entry_points_survive_a_corpus_and_random_mutations() {
    use tiox_sql::protocol::fuzz;
    let shared = fuzz::test_server();
    let base = valid_transcript();
    let closed = fuzz::session_async(shared.clone(), &base).await;
    assert!(
        matches!(closed, Closed::ClientQuit),
        "the valid transcript: {closed}"
    );
    // Deterministic pseudo-random mutations: flips, truncations, splices
    // and length-field lies.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..400 {
        let mut input = base.clone();
        match i % 4 {
            0 => {
                for _ in 0..1 + next() % 8 {
                    let at = (next() as usize) % input.len();
                    input[at] ^= 1 << (next() % 8);
                }
            }
            1 => input.truncate((next() as usize) % input.len()),
            2 => {
                let at = (next() as usize) % input.len();
                let junk: Vec<u8> = (0..next() % 64).map(|_| next() as u8).collect();
                input.splice(at..at, junk);
            }
            _ => {
                let at = (next() as usize) % input.len().saturating_sub(3).max(1);
                input[at] = 0xff;
                input[at + 1] = 0xff;
                input[at + 2] = (next() % 0x20) as u8;
            }
        }
        let _ = fuzz::session_async(shared.clone(), &input).await;
        let _ = fuzz::packets_async(&input).await;
    }
    assert_eq!(
        shared.connections(),
        0,
        "every fuzzed connection was closed"
    );
}

fn tls_server(dir: &std::path::Path) -> Arc<Shared> {
    use tiox_security::certgen::{init_dir, InitOptions, KeyType};
    init_dir(
        dir,
        &InitOptions {
            hosts: vec!["127.0.0.1".into()],
            days: 5,
            key_type: KeyType::EcdsaP256,
            force: false,
        },
    )
    .unwrap();
    let tls = tiox_sql::tls::MysqlTls::load(tiox_sql::tls::MysqlTlsFiles {
        ca: Some(dir.join("mysql/ca.pem")),
        cert: dir.join("mysql/server.pem"),
        key: dir.join("mysql/server-key.pem"),
        crl: None,
        policy: tiox_security::TlsPolicy::default(),
    })
    .unwrap();
    let mut root = UserRecord::new("root", "%", "mysql_native_password", String::new());
    root.global.insert("ALL PRIVILEGES".into());
    Shared::new(
        Arc::new(MemoryUserStore::new(vec![root])),
        Some(Arc::new(tls)),
        Settings::default(),
    )
}

fn ssl_request() -> Vec<u8> {
    let mut body = (CAPS | cap::SSL).to_le_bytes().to_vec();
    body.extend_from_slice(&(16u32 << 20).to_le_bytes());
    body.push(45);
    body.extend_from_slice(&[0; 23]);
    let mut v = vec![32, 0, 0, 1];
    v.extend_from_slice(&body);
    v
}

#[tokio::test]
async fn plaintext_where_tls_is_expected_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let shared = tls_server(dir.path());
    let (mut c, task) = connect(&shared);
    let mut io = PacketIo::new(&mut c);
    let hs = io.read_packet(LIMIT).await.unwrap();
    let caps = u16::from_le_bytes([
        hs[hs.iter().position(|&b| b == 0).unwrap() + 14],
        hs[hs.iter().position(|&b| b == 0).unwrap() + 15],
    ]);
    assert!(u32::from(caps) & cap::SSL != 0, "CLIENT_SSL offered");
    // SSLRequest, then a plaintext handshake response instead of TLS.
    let mut bytes = ssl_request();
    let body = response(CAPS, "root");
    bytes.extend_from_slice(&(body.len() as u32).to_le_bytes()[..3]);
    bytes.push(2);
    bytes.extend_from_slice(&body);
    c.write_all(&bytes).await.unwrap();
    let text = closed_within("plaintext after SSLRequest", task)
        .await
        .to_string();
    assert!(
        text.contains("TLS handshake with test-peer:1 failed"),
        "{text}"
    );
    assert_eq!(shared.connections(), 0);
}

#[tokio::test]
async fn tls_upgrade_after_sslrequest_then_login_over_tls() {
    use tokio_rustls::rustls;
    let dir = tempfile::tempdir().unwrap();
    let shared = tls_server(dir.path());
    let (mut c, task) = connect(&shared);
    let mut io = PacketIo::new(&mut c);
    io.read_packet(LIMIT).await.unwrap();
    // SSLRequest and ClientHello back to back (clients pipeline them).
    c.write_all(&ssl_request()).await.unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in tiox_security::inspect::read_pem_certs(&dir.path().join("mysql/ca.pem")).unwrap() {
        roots.add(cert).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(tiox_security::material::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, c)
        .await
        .unwrap();
    let mut io = PacketIo::with_seq(tls, 2);
    io.send(&response(CAPS, "root")).await.unwrap();
    let ok = io.read_packet(LIMIT).await.unwrap();
    assert_eq!(ok[0], 0, "{}", String::from_utf8_lossy(&ok));
    io.reset_seq();
    io.send(b"\x03SHOW STATUS LIKE 'Ssl_version'")
        .await
        .unwrap();
    let first = io.read_packet(LIMIT).await.unwrap();
    assert_eq!(first, vec![2]);
    io.read_packet(LIMIT).await.unwrap();
    io.read_packet(LIMIT).await.unwrap();
    let row = io.read_packet(LIMIT).await.unwrap();
    assert!(String::from_utf8_lossy(&row).contains("TLSv1.3"), "{row:?}");
    while io.read_packet(LIMIT).await.unwrap()[0] != 0xfe {}
    // The post-quantum hybrid group, as a status variable and a counter.
    io.reset_seq();
    io.send(b"\x03SHOW SESSION STATUS LIKE 'Tiox_tls_kx_group'")
        .await
        .unwrap();
    assert_eq!(io.read_packet(LIMIT).await.unwrap(), vec![2]);
    io.read_packet(LIMIT).await.unwrap();
    io.read_packet(LIMIT).await.unwrap();
    let row = io.read_packet(LIMIT).await.unwrap();
    assert!(
        String::from_utf8_lossy(&row).contains("X25519MLKEM768"),
        "{row:?}"
    );
    while io.read_packet(LIMIT).await.unwrap()[0] != 0xfe {}
    let stats = shared.tls().unwrap().stats().handshakes();
    assert_eq!(stats.get("X25519MLKEM768"), Some(&1), "{stats:?}");
    io.reset_seq();
    io.send(&[com::QUIT]).await.unwrap();
    assert!(matches!(
        closed_within("quit", task).await,
        Closed::ClientQuit
    ));
}

#[tokio::test]
async fn connections_beyond_the_limit_get_error_1040() {
    let mut root = UserRecord::new("root", "%", "mysql_native_password", String::new());
    root.global.insert("ALL PRIVILEGES".into());
    let shared = Shared::new(
        Arc::new(MemoryUserStore::new(vec![root])),
        None,
        Settings {
            max_connections: 1,
            ..Settings::default()
        },
    );
    let (c, _first) = connect(&shared);
    let mut io = login(c, CAPS).await;
    let (c2, second) = connect(&shared);
    let mut io2 = PacketIo::new(c2);
    let p = io2.read_packet(LIMIT).await.unwrap();
    assert_eq!(err_code(&p), Some(1040));
    let text = closed_within("over the limit", second).await.to_string();
    assert!(text.contains("max-server-connections"), "{text}");
    // The first session is unaffected; after it quits there is room again.
    assert_eq!(command(&mut io, &[com::PING]).await[0], 0);
    io.reset_seq();
    io.send(&[com::QUIT]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (c3, _third) = connect(&shared);
    let _ = login(c3, CAPS).await;
}
