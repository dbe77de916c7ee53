//! The SQL logic test runner shared by the in-process suite
//! (`crates/sql/tests/sql_logic.rs`, on the embedded store) and the
//! end-to-end one (`crates/bin/tests/sql_logic.rs`, on a real cluster):
//! both run every `tests/sql/*.slt` file at the repository root through a
//! real MySQL client (`mysql_async`, text protocol) against a MySQL port
//! on 127.0.0.1; only who serves the port differs. Each file gets a fresh
//! database (`slt_<file stem>`) as its current database.
//!
//! # Format (a small sqllogictest dialect)
//!
//! Records are separated by blank lines; `#` starts a comment line.
//!
//! ```text
//! statement ok
//! CREATE TABLE t (a INT PRIMARY KEY, b VARCHAR(10))
//!
//! statement count 2
//! INSERT INTO t VALUES (1, 'x'), (2, 'y')
//!
//! statement error 1062 Duplicate entry '1'
//! INSERT INTO t VALUES (1, 'z')
//!
//! query IT rowsort
//! SELECT a, b FROM t
//! ----
//! 1 x
//! 2 y
//!
//! connection other
//! ```
//!
//! - `statement ok`: the SQL (all lines up to the blank line) succeeds.
//! - `statement count N`: it succeeds with N affected rows (MySQL's count:
//!   an ON DUPLICATE KEY UPDATE that changes a row counts 2).
//! - `statement error CODE [TEXT]`: it fails with MySQL error CODE and, if
//!   given, a message containing TEXT. A dropped connection is always a
//!   failure (the connection is re-opened so the file carries on).
//! - `query TYPES [rowsort]`: one letter per column (`I` integer, `R`
//!   real/decimal, `T` text — only the count is checked); the SQL ends at
//!   `----`, the expected rows follow up to the blank line. Columns are
//!   separated by one space or a tab, `NULL` is SQL NULL and `(empty)` the
//!   empty string; a value with line breaks spans several lines (SHOW
//!   CREATE TABLE). `rowsort` sorts both sides before comparing.
//! - `connection NAME [found_rows]`: later records run on connection NAME
//!   (opened on first use, same database; `found_rows` opens it with the
//!   CLIENT_FOUND_ROWS capability, as SQLAlchemy's MySQL drivers do); the
//!   first connection is `default`.
//!
//! Expected results are what MySQL returns. `UPDATE_SLT=1` rewrites the
//! expected rows of `query` records with what tiox returned: review the
//! diff by hand against MySQL before committing it. `SLT_FILTER=substr`
//! runs only the files whose name contains `substr`.
//!
//! A failure prints the file, the line, the SQL and expected vs actual; all
//! files run before the test fails.
//!
//! A file that needs what only a cluster has says so in a first-line
//! comment `# cluster-only: REASON`; the in-process suite lists it as
//! skipped with its reason, the end-to-end suite runs it.
//!
//! A failure prints the file, the line, the SQL and expected vs actual; all
//! files run before the test fails.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder, Value};

/// What a record expects.
#[derive(Debug)]
enum Expect {
    Ok,
    Count(u64),
    Error {
        code: u16,
        text: Option<String>,
    },
    Rows {
        ncols: usize,
        rowsort: bool,
        rows: Vec<String>,
    },
    Connection(String, bool),
}

/// One record of a file.
#[derive(Debug)]
struct Record {
    /// 1-based line of the record's header.
    line: usize,
    sql: String,
    expect: Expect,
    /// For `query`: the 0-based line range of the expected rows (for
    /// UPDATE_SLT), with `----` at `rows_at.0 - 1`.
    rows_at: (usize, usize),
}

fn parse(path: &Path, text: &str) -> Vec<Record> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let bad = |i: usize, why: &str| -> ! { panic!("{}:{}: {why}", path.display(), i + 1) };
    while i < lines.len() {
        let header = lines[i].trim();
        if header.is_empty() || header.starts_with('#') {
            i += 1;
            continue;
        }
        let line = i + 1;
        let words: Vec<&str> = header.split_whitespace().collect();
        if words[0] == "connection" {
            let Some(name) = words.get(1) else {
                bad(i, "connection needs a name")
            };
            out.push(Record {
                line,
                sql: String::new(),
                expect: Expect::Connection(name.to_string(), words.get(2) == Some(&"found_rows")),
                rows_at: (0, 0),
            });
            i += 1;
            continue;
        }
        let is_query = words[0] == "query";
        let expect = match (words[0], words.get(1).copied()) {
            ("statement", Some("ok")) => Expect::Ok,
            ("statement", Some("count")) => Expect::Count(
                words
                    .get(2)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| bad(i, "statement count needs a number")),
            ),
            ("statement", Some("error")) => {
                let code = words
                    .get(2)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| bad(i, "statement error needs a MySQL error code"));
                let text = header
                    .splitn(4, char::is_whitespace)
                    .nth(3)
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty());
                Expect::Error { code, text }
            }
            ("query", Some(types)) => Expect::Rows {
                ncols: types.len(),
                rowsort: words.get(2) == Some(&"rowsort"),
                rows: Vec::new(),
            },
            _ => bad(i, &format!("unknown record header {header:?}")),
        };
        i += 1;
        let mut sql = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() && !(is_query && lines[i] == "----") {
            sql.push(lines[i]);
            i += 1;
        }
        if sql.is_empty() {
            bad(line - 1, "record without SQL");
        }
        let mut rows_at = (0, 0);
        let expect = match expect {
            Expect::Rows { ncols, rowsort, .. } => {
                if i >= lines.len() || lines[i] != "----" {
                    bad(i, "query without ---- line");
                }
                i += 1;
                let start = i;
                let mut rows = Vec::new();
                while i < lines.len() && !lines[i].trim().is_empty() {
                    rows.push(normalize(lines[i]));
                    i += 1;
                }
                rows_at = (start, i);
                Expect::Rows {
                    ncols,
                    rowsort,
                    rows,
                }
            }
            other => other,
        };
        out.push(Record {
            line,
            sql: sql.join("\n"),
            expect,
            rows_at,
        });
    }
    out
}

/// An expected row as compared: tabs become single spaces, trailing blanks go.
fn normalize(line: &str) -> String {
    line.replace('\t', " ").trim_end().to_string()
}

fn cell(v: &Value) -> String {
    match v {
        Value::NULL => "NULL".into(),
        Value::Bytes(b) if b.is_empty() => "(empty)".into(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        other => other.as_sql(true),
    }
}

/// Result rows as compared: cells joined by one space, a multi-line value
/// continuing on the next lines.
fn render(rows: &[mysql_async::Row]) -> Vec<String> {
    rows.iter()
        .map(|row| {
            (0..row.len())
                .map(|i| cell(row.as_ref(i).unwrap_or(&Value::NULL)))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .flat_map(|r| r.lines().map(normalize).collect::<Vec<_>>())
        .collect()
}

fn server_error(e: &mysql_async::Error) -> Option<(u16, String)> {
    match e {
        mysql_async::Error::Server(s) => Some((s.code, s.message.clone())),
        _ => None,
    }
}

/// Runs one record; `Err` describes a mismatch, `Ok(Some(rows))` carries
/// the actual rows of a query (for UPDATE_SLT).
async fn run_record(conn: &mut Conn, rec: &Record) -> Result<Option<Vec<String>>, String> {
    match &rec.expect {
        Expect::Connection(..) => Ok(None),
        Expect::Ok | Expect::Count(_) => match conn.query_iter(rec.sql.as_str()).await {
            Ok(r) => {
                let affected = r.affected_rows();
                if let Err(e) = r.drop_result().await {
                    return Err(format!("expected success, got {e}"));
                }
                match rec.expect {
                    Expect::Count(n) if n != affected => {
                        Err(format!("expected {n} affected rows, got {affected}"))
                    }
                    _ => Ok(None),
                }
            }
            Err(e) => Err(format!("expected success, got {e}")),
        },
        Expect::Error { code, text } => match conn.query_drop(rec.sql.as_str()).await {
            Ok(()) => Err(format!("expected error {code}, but it succeeded")),
            Err(e) => match server_error(&e) {
                Some((c, msg))
                    if c == *code && text.as_ref().is_none_or(|t| msg.contains(t.as_str())) =>
                {
                    Ok(None)
                }
                Some((c, msg)) => Err(format!(
                    "expected error {code}{}, got {c}: {msg}",
                    text.as_ref()
                        .map(|t| format!(" containing {t:?}"))
                        .unwrap_or_default()
                )),
                None => Err(format!("expected error {code}, got a client error: {e}")),
            },
        },
        Expect::Rows {
            ncols,
            rowsort,
            rows,
        } => {
            let result: Result<Vec<mysql_async::Row>, _> = conn.query(rec.sql.as_str()).await;
            let got_rows = match result {
                Ok(r) => r,
                Err(e) => return Err(format!("expected rows, got {e}")),
            };
            let mut got = render(&got_rows);
            if let Some(row) = got_rows.first() {
                if row.len() != *ncols {
                    return Err(format!(
                        "expected {ncols} columns, got {}\n{}",
                        row.len(),
                        got.join("\n")
                    ));
                }
            }
            let mut want = rows.clone();
            if *rowsort {
                got.sort();
                want.sort();
            }
            if got != want {
                return Err(format!(
                    "rows differ\n--- expected\n{}\n--- actual\n{}",
                    want.join("\n"),
                    got.join("\n")
                ));
            }
            Ok(Some(got))
        }
    }
}

/// Runs one file; returns its failures and, with `update`, the rewritten text.
async fn run_file(port: u16, path: &Path, update: bool) -> (Vec<String>, Option<String>) {
    let text = std::fs::read_to_string(path).expect("read .slt file");
    let records = parse(path, &text);
    let stem = path
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .replace('-', "_");
    let db = format!("slt_{stem}");
    let mut admin = connect(port, None).await;
    admin
        .query_drop(format!("DROP DATABASE IF EXISTS {db}"))
        .await
        .expect("drop the file's database");
    admin
        .query_drop(format!("CREATE DATABASE {db}"))
        .await
        .expect("create the file's database");
    let mut conns: HashMap<String, Conn> = HashMap::new();
    conns.insert("default".into(), connect(port, Some(&db)).await);
    let mut current = "default".to_string();
    let mut failures = Vec::new();
    let mut replacements: Vec<((usize, usize), Vec<String>)> = Vec::new();
    for rec in &records {
        if let Expect::Connection(name, found_rows) = &rec.expect {
            if !conns.contains_key(name) {
                let conn = connect_with(port, Some(&db), *found_rows).await;
                conns.insert(name.clone(), conn);
            }
            current = name.clone();
            continue;
        }
        let conn = conns.get_mut(&current).unwrap();
        let result = run_record(conn, rec).await;
        let result = match result {
            Err(e) if update && matches!(rec.expect, Expect::Rows { .. }) => {
                // Re-run to capture the actual rows for rewriting.
                let rows: Result<Vec<mysql_async::Row>, _> = conn.query(rec.sql.as_str()).await;
                match rows {
                    Ok(rows) => {
                        replacements.push((rec.rows_at, render(&rows)));
                        Ok(None)
                    }
                    Err(_) => Err(e),
                }
            }
            other => other,
        };
        let failed = result.is_err();
        if let Err(e) = result {
            failures.push(format!(
                "{}:{}: {}\n{}\n{e}",
                path.display(),
                rec.line,
                rec.sql,
                "-".repeat(40)
            ));
        }
        // A dropped connection fails the record above; reconnect and carry on.
        if failed
            && conns
                .get_mut(&current)
                .unwrap()
                .query_drop("SELECT 1")
                .await
                .is_err()
        {
            failures.push(format!(
                "{}:{}: the connection broke after this statement",
                path.display(),
                rec.line
            ));
            conns.insert(current.clone(), connect(port, Some(&db)).await);
        }
    }
    for (_, c) in conns {
        let _ = c.disconnect().await;
    }
    let _ = admin
        .query_drop(format!("DROP DATABASE IF EXISTS {db}"))
        .await;
    let _ = admin.disconnect().await;
    let rewritten = (update && !replacements.is_empty()).then(|| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        replacements.sort_by_key(|(at, _)| std::cmp::Reverse(at.0));
        for ((start, end), rows) in replacements {
            lines.splice(start..end, rows);
        }
        let mut s = lines.join("\n");
        s.push('\n');
        s
    });
    (failures, rewritten)
}

/// The `tests/sql/*.slt` files (those matching `SLT_FILTER`, if set).
pub fn slt_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/sql");
    let filter = std::env::var("SLT_FILTER").ok();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .filter(|p| {
            filter.as_ref().is_none_or(|f| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .contains(f.as_str())
            })
        })
        .collect();
    files.sort();
    files
}

/// A connection as root (no password) to the MySQL port `port`.
pub async fn connect(port: u16, db: Option<&str>) -> Conn {
    connect_with(port, db, false).await
}

/// [`connect`], with CLIENT_FOUND_ROWS if `found_rows`.
pub async fn connect_with(port: u16, db: Option<&str>, found_rows: bool) -> Conn {
    let opts = OptsBuilder::default()
        .client_found_rows(found_rows)
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .prefer_socket(false)
        .user(Some("root"))
        .db_name(db);
    Conn::new(opts)
        .await
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"))
}

/// Why `path` runs on a cluster only (its `# cluster-only: REASON` line).
pub fn cluster_only(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let first = text.lines().next()?;
    first
        .strip_prefix("# cluster-only:")
        .map(|r| r.trim().to_string())
}

/// Runs `files` against the MySQL port `port` and fails with every
/// mismatch once all have run. `UPDATE_SLT=1` rewrites expected rows.
pub async fn run_files(port: u16, files: &[PathBuf]) {
    assert!(!files.is_empty(), "no tests/sql/*.slt files");
    let update = std::env::var_os("UPDATE_SLT").is_some();
    let mut failures = Vec::new();
    for f in files {
        let t = Instant::now();
        let (mut fails, rewritten) = run_file(port, f, update).await;
        eprintln!(
            "{}: {} failure(s) in {:.1}s",
            f.file_name().unwrap().to_string_lossy(),
            fails.len(),
            t.elapsed().as_secs_f64()
        );
        if let Some(text) = rewritten {
            std::fs::write(f, text).expect("rewrite .slt file");
            eprintln!("rewrote {} (review the diff against MySQL)", f.display());
        }
        failures.append(&mut fails);
    }
    assert!(
        failures.is_empty(),
        "{} failing record(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
