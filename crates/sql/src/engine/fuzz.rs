//! Entry point shared by the cargo-fuzz target `fuzz/fuzz_targets/sql.rs`
//! and the random-SQL test: arbitrary text through the parser, the table
//! builder (`CREATE TABLE`), the planner (every WHERE against a fixed
//! table) and the evaluator (constant expressions). It must return — never
//! panic, never hang — whatever the text is.

use sqlparser::ast::{SetExpr, Statement, TableFactor};

use super::plan;
use super::schema::{self, CreateSpec, TableInfo};
use super::types::Collation;
use crate::parser::{self, Stmt};

/// The table every fuzzed WHERE is planned against.
fn fixed_table() -> TableInfo {
    let sql = "CREATE TABLE t (id BIGINT PRIMARY KEY, k INT NOT NULL, c CHAR(20), d DECIMAL(10,2), ts DATETIME, u VARCHAR(10) UNIQUE, KEY k_c (k, c))";
    let tokens = parser::split(sql).expect("fixed DDL tokenizes").remove(0);
    let Ok(Stmt::Other(st)) = parser::parse(sql, &tokens) else {
        unreachable!("fixed DDL parses")
    };
    let Statement::CreateTable(ct) = *st else {
        unreachable!("fixed DDL is CREATE TABLE")
    };
    schema::build_table(
        "t",
        CreateSpec {
            columns: &ct.columns,
            constraints: &ct.constraints,
            collation: None,
            comment: String::new(),
        },
    )
    .expect("fixed DDL builds")
}

/// Runs `data` (as UTF-8, lossily) through parser, table builder, planner
/// and evaluator. Returns how many statements parsed.
pub fn sql(data: &[u8]) -> usize {
    let text = String::from_utf8_lossy(data);
    let Ok(statements) = parser::split(&text) else {
        return 0;
    };
    let t = fixed_table();
    let mut parsed = 0;
    for tokens in statements.iter().take(16) {
        let Ok(stmt) = parser::parse(&text, tokens) else {
            continue;
        };
        parsed += 1;
        match stmt {
            Stmt::Query(q) => {
                if let SetExpr::Select(s) = q.body.as_ref() {
                    let access = plan::choose(&t, "t", s.selection.as_ref());
                    let _ = plan::describe(&t, &access);
                }
            }
            Stmt::Other(st) => match *st {
                Statement::CreateTable(ct) => {
                    let _ = schema::build_table(
                        "x",
                        CreateSpec {
                            columns: &ct.columns,
                            constraints: &ct.constraints,
                            collation: Some(Collation::GeneralCi),
                            comment: String::new(),
                        },
                    )
                    .map(|t| schema::show_create(&t, "db"));
                }
                Statement::Update(u) => {
                    if let TableFactor::Table { .. } = &u.table.relation {
                        let _ = plan::choose(&t, "t", u.selection.as_ref());
                    }
                }
                Statement::Delete(d) => {
                    let _ = plan::choose(&t, "t", d.selection.as_ref());
                }
                _ => {}
            },
            _ => {}
        }
    }
    parsed
}
