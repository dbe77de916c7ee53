//! `SHOW` statements about the schema, `DESCRIBE`, and the
//! `information_schema` tables (SCHEMATA, TABLES, COLUMNS, STATISTICS),
//! built from the catalog.

use sqlparser::ast::{ShowStatementFilter, ShowStatementFilterPosition, ShowStatementOptions};

use super::exec::{column_def, is_true, Pre, Scope, ScopeCol, Sx};
use super::schema::{show_create, SchemaState, TableInfo};
use super::table::Row;
use crate::backend::{Column, Output, ResultSet};
use crate::error::{er, SqlError};
use crate::parser::ShowFilter;
use crate::users::like_match;
use crate::value::Value;

fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

fn rows(names: &[&str], data: Vec<Row>) -> Output {
    let columns = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let sample = data.iter().map(|r| &r[i]).find(|v| !v.is_null());
            column_def(n, None, false, sample)
        })
        .collect::<Vec<Column>>();
    Output::Rows(ResultSet {
        columns,
        rows: data,
    })
}

/// Keeps the rows whose `name_col` matches a LIKE / WHERE filter.
fn filtered(
    sx: &Sx<'_>,
    names: &[&str],
    data: Vec<Row>,
    like_col: usize,
    filter: Option<&ShowFilter>,
) -> Result<Vec<Row>, SqlError> {
    let Some(f) = filter else { return Ok(data) };
    let scope = Scope {
        cols: names
            .iter()
            .map(|n| ScopeCol {
                table: String::new(),
                name: n.to_string(),
                ty: None,
                not_null: false,
                ..Default::default()
            })
            .collect(),
    };
    let mut out = Vec::new();
    for r in data {
        let keep = match f {
            ShowFilter::None => true,
            ShowFilter::Like(p) => like_match(p, &r[like_col].to_string()),
            ShowFilter::Where(e) => is_true(&sx.eval_row(e, &scope, &r, &Pre::default(), None)?),
        };
        if keep {
            out.push(r);
        }
    }
    Ok(out)
}

/// sqlparser's SHOW options as our filter and `FROM db`.
pub fn options(o: &ShowStatementOptions) -> (Option<String>, ShowFilter) {
    let db = o
        .show_in
        .as_ref()
        .and_then(|i| i.parent_name.as_ref())
        .map(|n| n.to_string().trim_matches('`').to_string());
    let f = match &o.filter_position {
        Some(ShowStatementFilterPosition::Infix(f))
        | Some(ShowStatementFilterPosition::Suffix(f)) => match f {
            ShowStatementFilter::Like(p)
            | ShowStatementFilter::ILike(p)
            | ShowStatementFilter::NoKeyword(p) => ShowFilter::Like(p.clone()),
            ShowStatementFilter::Where(e) => ShowFilter::Where(Box::new(e.clone())),
        },
        None => ShowFilter::None,
    };
    (db, f)
}

fn db_id(sx: &Sx<'_>, db: &str) -> Result<i64, SqlError> {
    sx.schema.db(db).map(|d| d.id).ok_or_else(|| er::bad_db(db))
}

/// `SHOW [FULL] TABLES [FROM db] [LIKE|WHERE]`.
pub fn tables(
    sx: &Sx<'_>,
    db: Option<String>,
    full: bool,
    filter: &ShowFilter,
) -> Result<Output, SqlError> {
    let db = match db {
        Some(d) => d,
        None => sx.current_db()?.to_string(),
    };
    let col = format!("Tables_in_{db}");
    let names: Vec<&str> = if full {
        vec![&col, "Table_type"]
    } else {
        vec![&col]
    };
    let data: Vec<Row> = if super::ddl::is_system_db(&db) {
        if db.eq_ignore_ascii_case("information_schema") {
            ["COLUMNS", "SCHEMATA", "STATISTICS", "TABLES", "VIEWS"]
                .iter()
                .map(|t| {
                    let mut r = vec![text(*t)];
                    if full {
                        r.push(text("SYSTEM VIEW"));
                    }
                    r
                })
                .collect()
        } else {
            Vec::new()
        }
    } else {
        sx.schema
            .tables_of(db_id(sx, &db)?)
            .iter()
            .map(|t| {
                let mut r = vec![text(t.name.clone())];
                if full {
                    r.push(text(if t.view.is_some() {
                        "VIEW"
                    } else {
                        "BASE TABLE"
                    }));
                }
                r
            })
            .collect()
    };
    let data = filtered(sx, &names, data, 0, Some(filter))?;
    Ok(rows(&names, data))
}

fn column_key(t: &TableInfo, off: usize) -> &'static str {
    if t.primary_key().first() == Some(&off) {
        "PRI"
    } else if t.indexes.iter().any(|i| {
        i.state == SchemaState::Public && i.unique && i.columns.len() == 1 && i.columns[0] == off
    }) {
        "UNI"
    } else if t
        .indexes
        .iter()
        .any(|i| i.state == SchemaState::Public && i.columns.first() == Some(&off))
    {
        "MUL"
    } else {
        ""
    }
}

fn default_text(d: &Option<String>) -> Value {
    match d {
        None => Value::Null,
        Some(s) if s.eq_ignore_ascii_case("null") => Value::Null,
        Some(s) => text(s.trim_matches('\'').to_string()),
    }
}

/// `SHOW [FULL] COLUMNS FROM t` / `DESCRIBE t`.
pub fn columns(
    sx: &Sx<'_>,
    t: &TableInfo,
    full: bool,
    filter: &ShowFilter,
) -> Result<Output, SqlError> {
    let mut names = vec!["Field", "Type"];
    if full {
        names.push("Collation");
    }
    names.extend(["Null", "Key", "Default", "Extra"]);
    if full {
        names.extend(["Privileges", "Comment"]);
    }
    let data = t
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut r = vec![text(c.name.clone()), text(c.ty.sql())];
            if full {
                r.push(if c.ty.is_text() {
                    text(c.ty.collation.name())
                } else {
                    Value::Null
                });
            }
            r.push(text(if c.not_null { "NO" } else { "YES" }));
            r.push(text(column_key(t, i)));
            r.push(default_text(&c.default));
            r.push(text(if c.auto_increment {
                "auto_increment"
            } else if c.on_update_now {
                "DEFAULT_GENERATED on update CURRENT_TIMESTAMP"
            } else {
                ""
            }));
            if full {
                r.push(text("select,insert,update,references"));
                r.push(text(c.comment.clone()));
            }
            r
        })
        .collect();
    let data = filtered(sx, &names, data, 0, Some(filter))?;
    Ok(rows(&names, data))
}

/// `SHOW INDEX FROM t`.
pub fn index(t: &TableInfo) -> Output {
    let names = [
        "Table",
        "Non_unique",
        "Key_name",
        "Seq_in_index",
        "Column_name",
        "Collation",
        "Cardinality",
        "Sub_part",
        "Packed",
        "Null",
        "Index_type",
        "Comment",
        "Index_comment",
        "Visible",
        "Expression",
        "Clustered",
    ];
    let mut data = Vec::new();
    let mut push = |name: &str, unique: bool, cols: &[usize], clustered: bool| {
        for (seq, &c) in cols.iter().enumerate() {
            data.push(vec![
                text(t.name.clone()),
                Value::Int(i64::from(!unique)),
                text(name),
                Value::Int(seq as i64 + 1),
                text(t.columns[c].name.clone()),
                text("A"),
                Value::Int(0),
                Value::Null,
                Value::Null,
                text(if t.columns[c].not_null { "" } else { "YES" }),
                text("BTREE"),
                text(""),
                text(""),
                text("YES"),
                Value::Null,
                text(if clustered { "YES" } else { "NO" }),
            ]);
        }
    };
    if let Some(h) = t.handle_col {
        push("PRIMARY", true, &[h], true);
    }
    for ix in t.indexes.iter().filter(|i| i.state == SchemaState::Public) {
        push(&ix.name, ix.unique, &ix.columns, false);
    }
    rows(&names, data)
}

/// `SHOW CREATE TABLE t`.
/// `SHOW CREATE VIEW` (and `SHOW CREATE TABLE` of a view), as MySQL.
pub fn create_view(t: &TableInfo) -> Output {
    let (select, listed) = t
        .view
        .as_ref()
        .map_or(("", &[][..]), |v| (v.select.as_str(), v.columns.as_slice()));
    let cols = if listed.is_empty() {
        String::new()
    } else {
        let c: Vec<String> = listed.iter().map(|c| format!("`{c}`")).collect();
        format!(" ({})", c.join(","))
    };
    rows(
        &["View", "Create View", "character_set_client", "collation_connection"],
        vec![vec![
            text(t.name.clone()),
            text(format!(
                "CREATE ALGORITHM=UNDEFINED DEFINER=`root`@`%` SQL SECURITY DEFINER VIEW `{}`{cols} AS {select}",
                t.name,
            )),
            text("utf8mb4"),
            text("utf8mb4_general_ci"),
        ]],
    )
}

/// `SHOW CREATE TABLE` of `t` in database `db`.
pub fn create_table(t: &TableInfo, db: &str) -> Output {
    if t.view.is_some() {
        return create_view(t);
    }
    rows(
        &["Table", "Create Table"],
        vec![vec![
            text(t.name.clone()),
            text(if super::temporary::is_temporary(t) {
                show_create(t, db).replacen("CREATE TABLE", "CREATE TEMPORARY TABLE", 1)
            } else {
                show_create(t, db)
            }),
        ]],
    )
}

/// `SHOW CREATE DATABASE db`.
pub fn create_database(sx: &Sx<'_>, db: &str) -> Result<Output, SqlError> {
    let name = match sx.schema.db(db) {
        Some(d) => d.name.clone(),
        None if super::ddl::is_system_db(db) => db.to_string(),
        None => return Err(er::bad_db(db)),
    };
    Ok(rows(
        &["Database", "Create Database"],
        vec![vec![
            text(name.clone()),
            text(format!(
                "CREATE DATABASE `{name}` /*!40100 DEFAULT CHARACTER SET utf8mb4 */"
            )),
        ]],
    ))
}

/// `SHOW TABLE STATUS`.
pub fn table_status(
    sx: &Sx<'_>,
    db: Option<String>,
    filter: &ShowFilter,
) -> Result<Output, SqlError> {
    let db = match db {
        Some(d) => d,
        None => sx.current_db()?.to_string(),
    };
    let names = [
        "Name",
        "Engine",
        "Version",
        "Row_format",
        "Rows",
        "Avg_row_length",
        "Data_length",
        "Max_data_length",
        "Index_length",
        "Data_free",
        "Auto_increment",
        "Create_time",
        "Update_time",
        "Check_time",
        "Collation",
        "Checksum",
        "Create_options",
        "Comment",
    ];
    let data = sx
        .schema
        .tables_of(db_id(sx, &db)?)
        .iter()
        .map(|t| {
            let mut r = vec![
                text(t.name.clone()),
                text("InnoDB"),
                Value::Int(10),
                text("Compact"),
            ];
            r.extend(std::iter::repeat_n(Value::Int(0), 6));
            r.extend([
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                text("utf8mb4_general_ci"),
                Value::Null,
                text(""),
                text(t.comment.clone()),
            ]);
            r
        })
        .collect();
    let data = filtered(sx, &names, data, 0, Some(filter))?;
    Ok(rows(&names, data))
}

/// The rows of `information_schema.<name>`.
pub fn information_schema(
    sx: &Sx<'_>,
    name: &str,
    alias: &str,
) -> Result<(Scope, Vec<Row>), SqlError> {
    let upper = name.to_ascii_uppercase();
    let (cols, data): (Vec<&str>, Vec<Row>) = match upper.as_str() {
        "SCHEMATA" => {
            let mut names: Vec<String> = ["information_schema", "mysql", "performance_schema"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            names.extend(sx.schema.dbs.values().map(|d| d.name.clone()));
            (
                vec![
                    "CATALOG_NAME",
                    "SCHEMA_NAME",
                    "DEFAULT_CHARACTER_SET_NAME",
                    "DEFAULT_COLLATION_NAME",
                    "SQL_PATH",
                ],
                names
                    .into_iter()
                    .map(|n| {
                        vec![
                            text("def"),
                            text(n),
                            text("utf8mb4"),
                            text("utf8mb4_general_ci"),
                            Value::Null,
                        ]
                    })
                    .collect(),
            )
        }
        "VIEWS" => (
            vec![
                "TABLE_CATALOG",
                "TABLE_SCHEMA",
                "TABLE_NAME",
                "VIEW_DEFINITION",
                "CHECK_OPTION",
                "IS_UPDATABLE",
                "DEFINER",
                "SECURITY_TYPE",
                "CHARACTER_SET_CLIENT",
                "COLLATION_CONNECTION",
            ],
            sx.schema
                .tables
                .values()
                .filter_map(|t| {
                    let v = t.view.as_ref()?;
                    let db = db_name(sx, t);
                    Some(vec![
                        text("def"),
                        text(db),
                        text(t.name.clone()),
                        text(v.select.clone()),
                        text("NONE"),
                        text("NO"),
                        text("root@%"),
                        text("DEFINER"),
                        text("utf8mb4"),
                        text("utf8mb4_general_ci"),
                    ])
                })
                .collect(),
        ),
        "TABLES" => (
            vec![
                "TABLE_CATALOG",
                "TABLE_SCHEMA",
                "TABLE_NAME",
                "TABLE_TYPE",
                "ENGINE",
                "VERSION",
                "ROW_FORMAT",
                "TABLE_ROWS",
                "AUTO_INCREMENT",
                "TABLE_COLLATION",
                "TABLE_COMMENT",
            ],
            sx.schema
                .tables
                .values()
                .map(|t| {
                    let db = db_name(sx, t);
                    // A view has no engine, row format or collation (MySQL).
                    let view = t.view.is_some();
                    let base = |v: Value| if view { Value::Null } else { v };
                    vec![
                        text("def"),
                        text(db),
                        text(t.name.clone()),
                        text(if view { "VIEW" } else { "BASE TABLE" }),
                        base(text("InnoDB")),
                        base(Value::Int(10)),
                        base(text("Compact")),
                        base(Value::Int(0)),
                        Value::Null,
                        base(text("utf8mb4_general_ci")),
                        text(if view {
                            "VIEW".to_string()
                        } else {
                            t.comment.clone()
                        }),
                    ]
                })
                .collect(),
        ),
        "COLUMNS" => {
            let mut data = Vec::new();
            for t in sx.schema.tables.values() {
                let db = db_name(sx, t);
                for (i, c) in t.columns.iter().enumerate() {
                    let sql = c.ty.sql();
                    let data_type = sql.split(['(', ' ']).next().unwrap_or_default().to_string();
                    let max_len = match c.ty.kind {
                        super::types::Kind::Char(n)
                        | super::types::Kind::VarChar(n)
                        | super::types::Kind::Binary(n)
                        | super::types::Kind::VarBinary(n)
                        | super::types::Kind::Text(n)
                        | super::types::Kind::Blob(n) => Value::Int(n.into()),
                        _ => Value::Null,
                    };
                    data.push(vec![
                        text("def"),
                        text(db.clone()),
                        text(t.name.clone()),
                        text(c.name.clone()),
                        Value::Int(i as i64 + 1),
                        default_text(&c.default),
                        text(if c.not_null { "NO" } else { "YES" }),
                        text(data_type),
                        max_len,
                        text(sql),
                        text(column_key(t, i)),
                        text(if c.auto_increment {
                            "auto_increment"
                        } else {
                            ""
                        }),
                        if c.ty.is_text() {
                            text(c.ty.collation.name())
                        } else {
                            Value::Null
                        },
                        text(c.comment.clone()),
                    ]);
                }
            }
            (
                vec![
                    "TABLE_CATALOG",
                    "TABLE_SCHEMA",
                    "TABLE_NAME",
                    "COLUMN_NAME",
                    "ORDINAL_POSITION",
                    "COLUMN_DEFAULT",
                    "IS_NULLABLE",
                    "DATA_TYPE",
                    "CHARACTER_MAXIMUM_LENGTH",
                    "COLUMN_TYPE",
                    "COLUMN_KEY",
                    "EXTRA",
                    "COLLATION_NAME",
                    "COLUMN_COMMENT",
                ],
                data,
            )
        }
        "STATISTICS" => {
            let mut data = Vec::new();
            for t in sx.schema.tables.values() {
                let db = db_name(sx, t);
                let mut add = |name: &str, unique: bool, cols: &[usize]| {
                    for (seq, &c) in cols.iter().enumerate() {
                        data.push(vec![
                            text("def"),
                            text(db.clone()),
                            text(t.name.clone()),
                            Value::Int(i64::from(!unique)),
                            text(db.clone()),
                            text(name),
                            Value::Int(seq as i64 + 1),
                            text(t.columns[c].name.clone()),
                            text("BTREE"),
                        ]);
                    }
                };
                if let Some(h) = t.handle_col {
                    add("PRIMARY", true, &[h]);
                }
                for ix in t.indexes.iter().filter(|i| i.state == SchemaState::Public) {
                    add(&ix.name, ix.unique, &ix.columns);
                }
            }
            (
                vec![
                    "TABLE_CATALOG",
                    "TABLE_SCHEMA",
                    "TABLE_NAME",
                    "NON_UNIQUE",
                    "INDEX_SCHEMA",
                    "INDEX_NAME",
                    "SEQ_IN_INDEX",
                    "COLUMN_NAME",
                    "INDEX_TYPE",
                ],
                data,
            )
        }
        "TABLE_CONSTRAINTS" | "KEY_COLUMN_USAGE" | "REFERENTIAL_CONSTRAINTS" => {
            constraints(sx, upper.as_str())
        }
        // Not kept by tiox: no CHECK constraints enforced, no stored
        // routines or triggers. Empty, with MySQL's columns, so that tools
        // reflecting a schema find nothing rather than an error.
        "CHECK_CONSTRAINTS" => (
            vec![
                "CONSTRAINT_CATALOG",
                "CONSTRAINT_SCHEMA",
                "CONSTRAINT_NAME",
                "CHECK_CLAUSE",
            ],
            Vec::new(),
        ),
        "ROUTINES" => (
            vec![
                "SPECIFIC_NAME",
                "ROUTINE_CATALOG",
                "ROUTINE_SCHEMA",
                "ROUTINE_NAME",
                "ROUTINE_TYPE",
                "DATA_TYPE",
                "ROUTINE_DEFINITION",
                "DEFINER",
            ],
            Vec::new(),
        ),
        "TRIGGERS" => (
            vec![
                "TRIGGER_CATALOG",
                "TRIGGER_SCHEMA",
                "TRIGGER_NAME",
                "EVENT_MANIPULATION",
                "EVENT_OBJECT_SCHEMA",
                "EVENT_OBJECT_TABLE",
                "ACTION_STATEMENT",
                "ACTION_TIMING",
            ],
            Vec::new(),
        ),
        _ => return Err(er::no_such_table("information_schema", name)),
    };
    let scope = Scope {
        cols: cols
            .iter()
            .map(|c| ScopeCol {
                table: alias.to_ascii_lowercase(),
                name: c.to_string(),
                ty: None,
                not_null: false,
                ..Default::default()
            })
            .collect(),
    };
    Ok((scope, data))
}

/// `TABLE_CONSTRAINTS`, `KEY_COLUMN_USAGE` or `REFERENTIAL_CONSTRAINTS`:
/// primary keys, unique keys and foreign keys of the base tables.
fn constraints(sx: &Sx<'_>, which: &str) -> (Vec<&'static str>, Vec<Row>) {
    let mut data = Vec::new();
    for t in sx.schema.tables.values().filter(|t| t.view.is_none()) {
        let db = db_name(sx, t);
        let mut keys: Vec<(String, &str, Vec<usize>)> = Vec::new();
        if let Some(h) = t.handle_col {
            keys.push(("PRIMARY".into(), "PRIMARY KEY", vec![h]));
        }
        for ix in t
            .indexes
            .iter()
            .filter(|i| i.state == SchemaState::Public && i.unique)
        {
            let kind = if ix.primary { "PRIMARY KEY" } else { "UNIQUE" };
            keys.push((ix.name.clone(), kind, ix.columns.clone()));
        }
        match which {
            "TABLE_CONSTRAINTS" => {
                let names = keys.iter().map(|(n, k, _)| (n.clone(), *k)).chain(
                    t.foreign_keys
                        .iter()
                        .map(|f| (f.name.clone(), "FOREIGN KEY")),
                );
                for (n, kind) in names {
                    data.push(vec![
                        text("def"),
                        text(db.clone()),
                        text(n),
                        text(db.clone()),
                        text(t.name.clone()),
                        text(kind),
                        text("YES"),
                    ]);
                }
            }
            "KEY_COLUMN_USAGE" => {
                for (n, _, cols) in &keys {
                    for (i, &c) in cols.iter().enumerate() {
                        data.push(vec![
                            text("def"),
                            text(db.clone()),
                            text(n.clone()),
                            text("def"),
                            text(db.clone()),
                            text(t.name.clone()),
                            text(t.columns[c].name.clone()),
                            Value::Int(i as i64 + 1),
                            Value::Null,
                            Value::Null,
                            Value::Null,
                            Value::Null,
                        ]);
                    }
                }
                for f in &t.foreign_keys {
                    let ref_db = f.ref_db.clone().unwrap_or_else(|| db.clone());
                    for (i, (c, r)) in f.columns.iter().zip(&f.ref_columns).enumerate() {
                        data.push(vec![
                            text("def"),
                            text(db.clone()),
                            text(f.name.clone()),
                            text("def"),
                            text(db.clone()),
                            text(t.name.clone()),
                            text(c.clone()),
                            Value::Int(i as i64 + 1),
                            Value::Int(i as i64 + 1),
                            text(ref_db.clone()),
                            text(f.ref_table.clone()),
                            text(r.clone()),
                        ]);
                    }
                }
            }
            _ => {
                for f in &t.foreign_keys {
                    let ref_db = f.ref_db.clone().unwrap_or_else(|| db.clone());
                    let unique_name = sx.schema.table(&ref_db, &f.ref_table).and_then(|r| {
                        let offs: Vec<usize> =
                            f.ref_columns.iter().filter_map(|c| r.column(c)).collect();
                        if offs.len() == 1 && r.handle_col == Some(offs[0]) {
                            return Some("PRIMARY".to_string());
                        }
                        r.indexes
                            .iter()
                            .find(|i| i.unique && i.columns == offs)
                            .map(|i| i.name.clone())
                    });
                    data.push(vec![
                        text("def"),
                        text(db.clone()),
                        text(f.name.clone()),
                        text("def"),
                        text(ref_db),
                        unique_name.map_or(Value::Null, text),
                        text("NONE"),
                        text(f.on_update.clone().unwrap_or_else(|| "NO ACTION".into())),
                        text(f.on_delete.clone().unwrap_or_else(|| "NO ACTION".into())),
                        text(t.name.clone()),
                        text(f.ref_table.clone()),
                    ]);
                }
            }
        }
    }
    let cols = match which {
        "TABLE_CONSTRAINTS" => vec![
            "CONSTRAINT_CATALOG",
            "CONSTRAINT_SCHEMA",
            "CONSTRAINT_NAME",
            "TABLE_SCHEMA",
            "TABLE_NAME",
            "CONSTRAINT_TYPE",
            "ENFORCED",
        ],
        "KEY_COLUMN_USAGE" => vec![
            "CONSTRAINT_CATALOG",
            "CONSTRAINT_SCHEMA",
            "CONSTRAINT_NAME",
            "TABLE_CATALOG",
            "TABLE_SCHEMA",
            "TABLE_NAME",
            "COLUMN_NAME",
            "ORDINAL_POSITION",
            "POSITION_IN_UNIQUE_CONSTRAINT",
            "REFERENCED_TABLE_SCHEMA",
            "REFERENCED_TABLE_NAME",
            "REFERENCED_COLUMN_NAME",
        ],
        _ => vec![
            "CONSTRAINT_CATALOG",
            "CONSTRAINT_SCHEMA",
            "CONSTRAINT_NAME",
            "UNIQUE_CONSTRAINT_CATALOG",
            "UNIQUE_CONSTRAINT_SCHEMA",
            "UNIQUE_CONSTRAINT_NAME",
            "MATCH_OPTION",
            "UPDATE_RULE",
            "DELETE_RULE",
            "TABLE_NAME",
            "REFERENCED_TABLE_NAME",
        ],
    };
    (cols, data)
}

/// The name of `t`'s database.
fn db_name(sx: &Sx<'_>, t: &TableInfo) -> String {
    sx.schema
        .dbs
        .get(&t.db_id)
        .map(|d| d.name.clone())
        .unwrap_or_default()
}
