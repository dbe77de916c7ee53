//! Scenario files for the session executor (goldenscript style): each
//! `tests/scripts/*.test` is a sequence of statements (`> SQL`), session
//! switches (`== session USER`) and comments (`#`), followed by the output
//! the executor produced. Run with `UPDATE_GOLDEN=1` to rewrite the outputs,
//! then review the diff.

use std::sync::Arc;

use tiox_sql::backend::{Backend, Output, Session};
use tiox_sql::executor::Interim;
use tiox_sql::users::{find_account, MemoryUserStore, UserRecord};
use tiox_sql::value::Value;
use tiox_sql::{Error, Settings, Shared};

fn session(shared: &Arc<Shared>, user: &str, conn_id: u32) -> Session {
    let users = shared.users.load().unwrap();
    let host = find_account(&users, user, "127.0.0.1")
        .map(|a| a.host.clone())
        .unwrap_or_else(|| panic!("no account for {user}"));
    Session {
        server: shared.clone(),
        conn_id,
        user: user.to_string(),
        client_ip: "127.0.0.1".into(),
        account_host: host,
        db: None,
        vars: Default::default(),
        user_vars: Default::default(),
        tls: None,
        multi_statements: false,
        capabilities: 0,
        questions: 0,
        state: Default::default(),
    }
}

fn render(out: &Output) -> String {
    match out {
        Output::Ok { affected, .. } if *affected == 0 => "ok\n".into(),
        Output::Ok { affected, .. } => format!("ok, {affected} rows affected\n"),
        Output::Rows(rs) => {
            let mut s = rs
                .columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(" | ");
            s.push('\n');
            for row in &rs.rows {
                let cells: Vec<String> = row
                    .iter()
                    .map(|v| match v {
                        Value::Null => "NULL".to_string(),
                        other => other.to_string(),
                    })
                    .collect();
                s.push_str(&cells.join(" | "));
                s.push('\n');
            }
            s
        }
    }
}

async fn run_script(input: &str) -> String {
    let root = UserRecord::root(String::new());
    let shared = Shared::new(
        Arc::new(MemoryUserStore::new(vec![root])),
        None,
        Settings::default(),
    );
    let backend = Interim::default();
    let mut s = session(&shared, "root", 1);
    let mut out = String::new();
    for line in input.lines() {
        if let Some(sql) = line.strip_prefix("> ") {
            out.push_str(line);
            out.push('\n');
            let result = backend.query(&mut s, sql).await;
            for o in &result.outputs {
                out.push_str(&render(o));
            }
            if let Some(e) = result.error {
                match e {
                    Error::Sql(e) => out.push_str(&format!("error {}: {}\n", e.code, e.message)),
                    other => out.push_str(&format!("fatal: {other}\n")),
                }
            }
        } else if let Some(user) = line.strip_prefix("== session ") {
            out.push_str(line);
            out.push('\n');
            s = session(&shared, user.trim(), s.conn_id + 1);
        } else if line.starts_with('#') || (line.is_empty() && !out.ends_with("\n\n")) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Blank lines separate steps; outputs are regenerated, so input lines are
/// those starting with `>`, `==` or `#` (and blank separators).
fn inputs(text: &str) -> String {
    let mut s = String::new();
    for line in text.lines() {
        if line.starts_with("> ")
            || line.starts_with("== ")
            || line.starts_with('#')
            || line.is_empty()
        {
            s.push_str(line);
            s.push('\n');
        }
    }
    s
}

#[tokio::test]
async fn interim_executor_scenarios() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failed = Vec::new();
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
    {
        let text = std::fs::read_to_string(path).unwrap();
        let got = run_script(&inputs(&text)).await;
        if got != text {
            if update {
                std::fs::write(path, &got).unwrap();
            } else {
                failed.push(format!("--- {}\n{got}", path.display()));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "scenario output changed (UPDATE_GOLDEN=1 to accept):\n{}",
        failed.join("\n")
    );
}
