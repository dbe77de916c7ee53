//! Schema changes: databases, tables, indexes and columns.
//!
//! Each step is one catalog transaction (see `catalog`). Adding an index is
//! online, in TiDB's steps: the index appears `DeleteOnly`, then
//! `WriteOnly` (every server maintains it on writes), each once every
//! server has loaded the previous step (`Catalog::wait_for_servers`: their
//! acknowledgements, or two schema leases at most); then existing
//! rows are backfilled in batches (each batch locks the rows it indexes,
//! so a concurrent change of a row makes the batch retry) and the index
//! becomes `Public`. Dropped tables' and indexes' data is deleted in the
//! background after two leases.

use std::sync::Arc;
use std::time::Duration;

use sqlparser::ast::{AlterTableOperation, ObjectName, ObjectType, Statement, TableConstraint};

use super::catalog::{kv_err, Catalog, SCHEMA_LEASE};
use super::codec;
use super::exec::Sx;
use super::schema::{self, CreateSpec, DbInfo, SchemaState, TableInfo};
use super::table;
use super::types::Collation;
use crate::backend::Output;
use crate::error::{er, ErrorKind, SqlError};

pub fn unquote(n: &ObjectName) -> Vec<String> {
    n.0.iter()
        .map(|p| p.to_string().trim_matches('`').to_string())
        .collect()
}

pub fn db_and_table(sx: &Sx<'_>, n: &ObjectName) -> Result<(String, String), SqlError> {
    let parts = unquote(n);
    match parts.as_slice() {
        [t] => Ok((sx.current_db()?.to_string(), t.clone())),
        [d, t] => Ok((d.clone(), t.clone())),
        _ => Err(er::parse(&n.to_string(), "bad table name")),
    }
}

fn check_name(name: &str) -> Result<(), SqlError> {
    if name.is_empty() || name.len() > 64 || name.ends_with(' ') {
        return Err(SqlError::of(
            ErrorKind::WrongTableName,
            format!("Incorrect table name '{name}'"),
        ));
    }
    Ok(())
}

/// The table a `CREATE [TEMPORARY] TABLE` describes (no id yet).
pub fn table_from_create(
    name: &str,
    ct: &sqlparser::ast::CreateTable,
) -> Result<TableInfo, SqlError> {
    check_name(name)?;
    let opts = ct.table_options.to_string().to_ascii_lowercase();
    let collation = opts
        .split(|c: char| c.is_whitespace() || c == '=')
        .filter(|w| !w.is_empty())
        .skip_while(|w| *w != "collate")
        .nth(1)
        .and_then(Collation::from_name)
        .or_else(|| opts.contains("charset=binary").then_some(Collation::Bin));
    let comment = table_comment(ct);
    let info = schema::build_table(
        name,
        CreateSpec {
            columns: &ct.columns,
            constraints: &ct.constraints,
            collation,
            comment,
        },
    )?;
    if ct.columns.is_empty() {
        return Err(SqlError::of(
            ErrorKind::TableMustHaveColumns,
            "A table must have at least 1 column".into(),
        ));
    }
    Ok(info)
}

/// Runs one DDL statement.
pub async fn run(sx: &Sx<'_>, catalog: &Arc<Catalog>, st: &Statement) -> Result<Output, SqlError> {
    match st {
        Statement::CreateDatabase {
            db_name,
            if_not_exists,
            ..
        } => {
            let name = unquote(db_name).join(".");
            check_name(&name)?;
            if is_system_db(&name) {
                return Err(SqlError::of(
                    ErrorKind::DbCreateExists,
                    format!("Can't create database '{name}'; database exists"),
                ));
            }
            catalog
                .ddl(|s| {
                    if s.db(&name).is_some() {
                        return if *if_not_exists {
                            Ok(())
                        } else {
                            Err(SqlError::of(
                                ErrorKind::DbCreateExists,
                                format!("Can't create database '{name}'; database exists"),
                            ))
                        };
                    }
                    let id = s.alloc_id();
                    s.dbs.insert(
                        id,
                        DbInfo {
                            id,
                            name: name.clone(),
                        },
                    );
                    Ok(())
                })
                .await?;
            Ok(Output::Ok {
                affected: 1,
                last_insert_id: 0,
                info: String::new(),
            })
        }
        Statement::Drop {
            object_type,
            if_exists,
            names,
            table,
            ..
        } => match object_type {
            ObjectType::Schema | ObjectType::Database => {
                let name = unquote(&names[0]).join(".");
                let mut dropped: Vec<i64> = Vec::new();
                catalog
                    .ddl(|s| {
                        dropped.clear();
                        let Some(d) = s.db(&name).cloned() else {
                            return if *if_exists {
                                Ok(())
                            } else {
                                Err(SqlError::of(
                                    ErrorKind::DbDropExists,
                                    format!("Can't drop database '{name}'; database doesn't exist"),
                                ))
                            };
                        };
                        s.dbs.remove(&d.id);
                        let ids: Vec<i64> = s
                            .tables
                            .values()
                            .filter(|t| t.db_id == d.id)
                            .map(|t| t.id)
                            .collect();
                        for id in ids {
                            s.tables.remove(&id);
                            dropped.push(id);
                        }
                        Ok(())
                    })
                    .await?;
                let n = dropped.len() as u64;
                for id in dropped {
                    purge_later(catalog, codec::table_prefix(id));
                }
                Ok(Output::Ok {
                    affected: n,
                    last_insert_id: 0,
                    info: String::new(),
                })
            }
            ObjectType::Table => {
                let mut missing = Vec::new();
                let mut dropped = Vec::new();
                for n in names {
                    let (db, t) = db_and_table(sx, n)?;
                    let id = catalog
                        .ddl(|s| {
                            let Some(info) = s.table(&db, &t) else {
                                return Ok(None);
                            };
                            if info.view.is_some() {
                                return Ok(None);
                            }
                            s.tables.remove(&info.id);
                            Ok(Some(info.id))
                        })
                        .await?;
                    match id {
                        Some(id) => dropped.push(id),
                        None => missing.push(format!("{db}.{t}")),
                    }
                }
                for id in dropped {
                    catalog.forget_auto(id);
                    purge_later(catalog, codec::table_prefix(id));
                }
                if !missing.is_empty() && !*if_exists {
                    return Err(SqlError::of(
                        ErrorKind::BadTable,
                        format!("Unknown table '{}'", missing.join(",")),
                    ));
                }
                Ok(Output::ok())
            }
            ObjectType::Index => {
                let Some(tn) = table else {
                    return Err(er::parse("", "DROP INDEX needs ON table"));
                };
                let ix = unquote(&names[0]).join(".");
                drop_index(catalog, db_and_table(sx, tn)?, &ix, *if_exists).await
            }
            other => Err(er::not_supported_yet(&format!("DROP {other}"))),
        },
        Statement::CreateTable(ct) => {
            if ct.query.is_some() || ct.like.is_some() || ct.clone.is_some() {
                return Err(er::not_supported_yet("CREATE TABLE ... AS SELECT / LIKE"));
            }
            let (db, name) = db_and_table(sx, &ct.name)?;
            let mut info = table_from_create(&name, ct)?;
            catalog
                .ddl(|s| {
                    let Some(d) = s.db(&db).cloned() else {
                        return Err(er::bad_db(&db));
                    };
                    if s.table(&db, &name).is_some() {
                        return if ct.if_not_exists {
                            Ok(())
                        } else {
                            Err(SqlError::of(
                                ErrorKind::TableExists,
                                format!("Table '{name}' already exists"),
                            ))
                        };
                    }
                    info.id = s.alloc_id();
                    info.db_id = d.id;
                    s.tables.insert(info.id, Arc::new(info.clone()));
                    Ok(())
                })
                .await?;
            Ok(Output::ok())
        }
        Statement::CreateIndex(ci) => {
            let cols = index_columns(ci);
            let name = ci.name.as_ref().map(|n| unquote(n).join("."));
            add_index(
                catalog,
                db_and_table(sx, &ci.table_name)?,
                name,
                cols,
                ci.unique,
                ci.if_not_exists,
            )
            .await
        }
        Statement::AlterTable(at) => {
            for op in &at.operations {
                alter(sx, catalog, &at.name, op).await?;
            }
            Ok(Output::ok())
        }
        Statement::Truncate(tr) => {
            for target in &tr.table_names {
                let (db, t) = db_and_table(sx, &target.name)?;
                let old = catalog
                    .ddl(|s| {
                        let Some(info) = s.table(&db, &t) else {
                            return Err(er::no_such_table(&db, &t));
                        };
                        info.ensure_base(&db)?;
                        let mut fresh = (*info).clone();
                        fresh.id = s.alloc_id();
                        s.tables.remove(&info.id);
                        s.tables.insert(fresh.id, Arc::new(fresh));
                        Ok(info.id)
                    })
                    .await?;
                catalog.forget_auto(old);
                purge_later(catalog, codec::table_prefix(old));
            }
            Ok(Output::ok())
        }
        Statement::RenameTable(list) => {
            for r in list {
                let (db, t) = db_and_table(sx, &r.old_name)?;
                let (ndb, nt) = db_and_table(sx, &r.new_name)?;
                check_name(&nt)?;
                catalog
                    .ddl(|s| {
                        let Some(info) = s.table(&db, &t) else {
                            return Err(er::no_such_table(&db, &t));
                        };
                        let Some(nd) = s.db(&ndb).cloned() else {
                            return Err(er::bad_db(&ndb));
                        };
                        if s.table(&ndb, &nt).is_some() {
                            return Err(SqlError::of(
                                ErrorKind::TableExists,
                                format!("Table '{nt}' already exists"),
                            ));
                        }
                        let mut m = (*info).clone();
                        m.name = nt.clone();
                        m.db_id = nd.id;
                        s.tables.insert(m.id, Arc::new(m));
                        Ok(())
                    })
                    .await?;
            }
            Ok(Output::ok())
        }
        other => Err(er::not_supported_yet(&crate::parser::kind(other))),
    }
}

/// The databases that exist without being created.
pub fn is_system_db(name: &str) -> bool {
    ["information_schema", "mysql", "performance_schema"]
        .iter()
        .any(|d| d.eq_ignore_ascii_case(name))
}

async fn edit_table(
    catalog: &Catalog,
    db: &str,
    t: &str,
    mut f: impl FnMut(&mut TableInfo) -> Result<(), SqlError>,
) -> Result<(), SqlError> {
    catalog
        .ddl(|s| {
            let Some(info) = s.table(db, t) else {
                return Err(er::no_such_table(db, t));
            };
            info.ensure_base(db)?;
            let mut m = (*info).clone();
            f(&mut m)?;
            s.tables.insert(m.id, Arc::new(m));
            Ok(())
        })
        .await
}

async fn alter(
    sx: &Sx<'_>,
    catalog: &Arc<Catalog>,
    name: &ObjectName,
    op: &AlterTableOperation,
) -> Result<(), SqlError> {
    let (db, t) = db_and_table(sx, name)?;
    match op {
        AlterTableOperation::AddColumn {
            column_def,
            if_not_exists,
            ..
        } => {
            let built = schema::build_table(
                "x",
                CreateSpec {
                    columns: std::slice::from_ref(column_def),
                    constraints: &[],
                    collation: None,
                    comment: String::new(),
                },
            )?;
            let mut col = built.columns[0].clone();
            if col.auto_increment || built.handle_col.is_some() || !built.indexes.is_empty() {
                return Err(er::not_supported_yet(
                    "ADD COLUMN with a key or AUTO_INCREMENT",
                ));
            }
            if col.not_null && col.default.is_none() {
                // MySQL fills the type's zero value; TiDB too.
                col.default = Some(
                    if col.ty.is_integer()
                        || matches!(
                            col.ty.kind,
                            super::types::Kind::Decimal { .. }
                                | super::types::Kind::Float
                                | super::types::Kind::Double
                        )
                    {
                        "0".into()
                    } else {
                        "''".into()
                    },
                );
            }
            table::default_value(&col)?;
            edit_table(catalog, &db, &t, |m: &mut TableInfo| {
                if m.column(&col.name).is_some() {
                    return if *if_not_exists {
                        Ok(())
                    } else {
                        Err(SqlError::of(
                            ErrorKind::DupFieldname,
                            format!("Duplicate column name '{}'", col.name),
                        ))
                    };
                }
                let mut c = col.clone();
                c.id = m.next_col_id;
                m.next_col_id += 1;
                m.columns.push(c);
                Ok(())
            })
            .await
        }
        AlterTableOperation::DropColumn {
            column_names,
            if_exists,
            ..
        } => {
            for cn in column_names {
                let cname = cn.value.clone();
                edit_table(catalog, &db, &t, |m: &mut TableInfo| {
                    let Some(off) = m.column(&cname) else {
                        return if *if_exists { Ok(()) } else { Err(SqlError::of(ErrorKind::CantDropFieldOrKey, format!("Can't DROP '{cname}'; check that column/key exists"))) };
                    };
                    if m.columns.len() == 1 {
                        return Err(SqlError::of(ErrorKind::CantRemoveAllFields, "You can't delete all columns with ALTER TABLE; use DROP TABLE instead".into()));
                    }
                    if m.handle_col == Some(off) || m.indexes.iter().any(|i| i.columns.contains(&off)) {
                        return Err(er::not_supported_yet(&format!("dropping column '{cname}', which is in an index (drop the index first)")));
                    }
                    m.columns.remove(off);
                    if let Some(h) = m.handle_col.as_mut() {
                        if *h > off {
                            *h -= 1;
                        }
                    }
                    for ix in &mut m.indexes {
                        for c in &mut ix.columns {
                            if *c > off {
                                *c -= 1;
                            }
                        }
                    }
                    Ok(())
                })
                .await?;
            }
            Ok(())
        }
        AlterTableOperation::AddConstraint { constraint, .. } => match constraint {
            TableConstraint::Unique(u) => {
                let cols = u
                    .columns
                    .iter()
                    .map(|c| c.column.expr.to_string().trim_matches('`').to_string())
                    .collect();
                let name = u
                    .index_name
                    .as_ref()
                    .or(u.name.as_ref())
                    .map(|n| n.value.clone());
                add_index(catalog, (db.clone(), t.clone()), name, cols, true, false)
                    .await
                    .map(|_| ())
            }
            TableConstraint::Index(ix) => {
                let cols = ix
                    .columns
                    .iter()
                    .map(|c| c.column.expr.to_string().trim_matches('`').to_string())
                    .collect();
                add_index(
                    catalog,
                    (db.clone(), t.clone()),
                    ix.name.as_ref().map(|n| n.value.clone()),
                    cols,
                    false,
                    false,
                )
                .await
                .map(|_| ())
            }
            TableConstraint::PrimaryKey(_) => Err(er::not_supported_yet(
                "adding a primary key to an existing table",
            )),
            TableConstraint::ForeignKey(fk) => {
                let n = sx.schema.table(&db, &t).map_or(0, |info| {
                    info.foreign_keys
                        .iter()
                        .filter_map(|f| f.name.strip_prefix(&format!("{t}_ibfk_")))
                        .filter_map(|n| n.parse::<usize>().ok())
                        .max()
                        .unwrap_or(0)
                });
                let index_name = schema::fk_index_name(fk);
                let fk = schema::ForeignKey::from_constraint(&t, n + 1, fk);
                let indexed = match sx.schema.table(&db, &t) {
                    Some(info) => schema::fk_columns_indexed(&info, &fk.columns)?,
                    None => return Err(er::no_such_table(&db, &t)),
                };
                if !indexed {
                    // MySQL gives the referencing columns an index first.
                    add_index(
                        catalog,
                        (db.clone(), t.clone()),
                        index_name,
                        fk.columns.clone(),
                        false,
                        false,
                    )
                    .await?;
                }
                edit_table(catalog, &db, &t, |m: &mut TableInfo| {
                    if m.foreign_keys
                        .iter()
                        .any(|f| f.name.eq_ignore_ascii_case(&fk.name))
                    {
                        return Err(SqlError::of(
                            ErrorKind::DupKeyname,
                            format!("Duplicate foreign key constraint name '{}'", fk.name),
                        ));
                    }
                    m.foreign_keys.push(fk.clone());
                    Ok(())
                })
                .await
            }
            _ => Ok(()), // CHECK: accepted, not enforced (as TiDB).
        },
        AlterTableOperation::SetTblProperties { table_properties } => {
            // `ALTER TABLE t COMMENT 'text'` (the parser's rewrite).
            let comment = table_properties.iter().find_map(|o| match o {
                sqlparser::ast::SqlOption::KeyValue { key, value }
                    if key
                        .to_string()
                        .trim_matches(['\'', '`'])
                        .eq_ignore_ascii_case("comment") =>
                {
                    Some(match value {
                        sqlparser::ast::Expr::Value(v) => match &v.value {
                            sqlparser::ast::Value::SingleQuotedString(s) => s.clone(),
                            other => other.to_string(),
                        },
                        other => other.to_string(),
                    })
                }
                _ => None,
            });
            match comment {
                Some(c) => {
                    edit_table(catalog, &db, &t, |m: &mut TableInfo| {
                        m.comment = c.clone();
                        Ok(())
                    })
                    .await
                }
                None => Err(er::not_supported_yet("ALTER TABLE ... SET TBLPROPERTIES")),
            }
        }
        AlterTableOperation::ModifyColumn {
            col_name: old_name,
            data_type,
            options,
            column_position: None,
        }
        | AlterTableOperation::ChangeColumn {
            old_name,
            data_type,
            options,
            column_position: None,
            ..
        } => {
            // MODIFY keeps the name; CHANGE gives a new one.
            let new_name = match op {
                AlterTableOperation::ChangeColumn { new_name, .. } => &new_name.value,
                _ => &old_name.value,
            };
            modify_column(
                catalog,
                (&db, &t),
                &old_name.value,
                new_name,
                data_type,
                options,
            )
            .await
        }
        AlterTableOperation::DropForeignKey { name, .. } => {
            edit_table(catalog, &db, &t, |m: &mut TableInfo| {
                let before = m.foreign_keys.len();
                m.foreign_keys
                    .retain(|f| !f.name.eq_ignore_ascii_case(&name.value));
                if m.foreign_keys.len() == before {
                    return Err(SqlError::of(
                        ErrorKind::CantDropFieldOrKey,
                        format!("Can't DROP '{}'; check that column/key exists", name.value),
                    ));
                }
                Ok(())
            })
            .await
        }
        AlterTableOperation::DropIndex { name } => {
            drop_index(catalog, (db.clone(), t.clone()), &name.value, false)
                .await
                .map(|_| ())
        }
        AlterTableOperation::RenameColumn {
            old_column_name,
            new_column_name,
        } => {
            edit_table(catalog, &db, &t, |m: &mut TableInfo| {
                let off = m
                    .column(&old_column_name.value)
                    .ok_or_else(|| schema::unknown_column(&old_column_name.value, t.as_str()))?;
                if m.column(&new_column_name.value).is_some() {
                    return Err(SqlError::of(
                        ErrorKind::DupFieldname,
                        format!("Duplicate column name '{}'", new_column_name.value),
                    ));
                }
                m.columns[off].name = new_column_name.value.clone();
                Ok(())
            })
            .await
        }
        other => Err(er::not_supported_yet(&format!("ALTER TABLE {other}"))),
    }
}

async fn drop_index(
    catalog: &Arc<Catalog>,
    (db, t): (String, String),
    ix: &str,
    if_exists: bool,
) -> Result<Output, SqlError> {
    let ix = ix.to_string();
    let removed = catalog
        .ddl(|s| {
            let Some(info) = s.table(&db, &t) else {
                return Err(er::no_such_table(&db, &t));
            };
            info.ensure_base(&db)?;
            let mut m = (*info).clone();
            let Some(pos) = m
                .indexes
                .iter()
                .position(|i| i.name.eq_ignore_ascii_case(&ix))
            else {
                return if if_exists {
                    Ok(None)
                } else {
                    Err(SqlError::of(
                        ErrorKind::CantDropFieldOrKey,
                        format!("Can't DROP '{ix}'; check that column/key exists"),
                    ))
                };
            };
            if m.indexes[pos].primary {
                return Err(er::not_supported_yet("dropping the primary key"));
            }
            let gone = m.indexes.remove(pos);
            s.tables.insert(m.id, Arc::new(m.clone()));
            Ok(Some((m.id, gone.id)))
        })
        .await?;
    if let Some((tid, iid)) = removed {
        purge_later(catalog, codec::index_prefix(tid, iid));
    }
    Ok(Output::ok())
}

async fn set_state(
    catalog: &Catalog,
    tid: i64,
    iid: i64,
    state: Option<SchemaState>,
) -> Result<(), SqlError> {
    catalog
        .ddl(|s| {
            let Some(info) = s.tables.get(&tid).cloned() else {
                return Err(er::unknown(
                    "the table was dropped while its index was being added".into(),
                ));
            };
            let mut m = (*info).clone();
            match state {
                Some(st) => {
                    if let Some(ix) = m.indexes.iter_mut().find(|i| i.id == iid) {
                        ix.state = st;
                    }
                }
                None => m.indexes.retain(|i| i.id != iid),
            }
            s.tables.insert(tid, Arc::new(m));
            Ok(())
        })
        .await
}

async fn add_index(
    catalog: &Arc<Catalog>,
    (db, t): (String, String),
    name: Option<String>,
    cols: Vec<String>,
    unique: bool,
    if_not_exists: bool,
) -> Result<Output, SqlError> {
    let ids = catalog
        .ddl(|s| {
            let Some(info) = s.table(&db, &t) else {
                return Err(er::no_such_table(&db, &t));
            };
            info.ensure_base(&db)?;
            let mut m = (*info).clone();
            if let Some(n) = &name {
                if m.index(n).is_some() && if_not_exists {
                    return Ok(None);
                }
            }
            let iid = schema::add_index(
                &mut m,
                name.clone(),
                &cols,
                unique,
                false,
                SchemaState::DeleteOnly,
            )?;
            s.tables.insert(m.id, Arc::new(m.clone()));
            Ok(Some((m.id, iid)))
        })
        .await?;
    let Some((tid, iid)) = ids else {
        return Ok(Output::ok());
    };
    catalog
        .wait_for_servers(catalog.schema().await?.version)
        .await?;
    set_state(catalog, tid, iid, Some(SchemaState::WriteOnly)).await?;
    catalog
        .wait_for_servers(catalog.schema().await?.version)
        .await?;
    if let Err(e) = backfill(catalog, tid, iid).await {
        // Undo: the index never became visible to readers.
        set_state(catalog, tid, iid, None).await?;
        purge_later(catalog, codec::index_prefix(tid, iid));
        return Err(e);
    }
    set_state(catalog, tid, iid, Some(SchemaState::Public)).await?;
    Ok(Output::ok())
}

/// Rows indexed per backfill transaction.
const BACKFILL_BATCH: u32 = 1000;

async fn backfill(catalog: &Catalog, tid: i64, iid: i64) -> Result<(), SqlError> {
    let schema = catalog.schema().await?;
    let t = schema
        .tables
        .get(&tid)
        .cloned()
        .ok_or_else(|| er::unknown("table dropped during backfill".into()))?;
    let ix = t
        .indexes
        .iter()
        .find(|i| i.id == iid)
        .cloned()
        .ok_or_else(|| er::unknown("index dropped during backfill".into()))?;
    let end = codec::prefix_end(&codec::record_prefix(tid));
    let mut cursor = codec::record_prefix(tid);
    let mut done = 0u64;
    loop {
        let mut attempts = 0;
        let (next, n) = loop {
            attempts += 1;
            let mut tx = catalog.txn().begin().await.map_err(kv_err)?;
            let batch = tx
                .scan(&cursor, &end, BACKFILL_BATCH)
                .await
                .map_err(kv_err)?;
            let keys: Vec<Vec<u8>> = batch.iter().map(|(k, _)| k.clone()).collect();
            // A concurrent change of any of these rows fails the commit.
            tx.lock_keys(&keys).await.map_err(kv_err)?;
            index_rows(&mut tx, &t, &ix, &batch).await?;
            let next = batch.last().map(|(k, _)| {
                let mut k = k.clone();
                k.push(0);
                k
            });
            match tx.commit().await {
                Ok(_) => break (next, batch.len()),
                Err(tiox_client::Error::Conflict { .. }) if attempts < 50 => continue,
                Err(tiox_client::Error::AlreadyExist { .. }) => {
                    return Err(SqlError::of(
                        ErrorKind::DupEntry,
                        format!("Duplicate entry for key '{}.{}'", t.name, ix.name),
                    ))
                }
                Err(e) => return Err(kv_err(e)),
            }
        };
        done += n as u64;
        match next {
            Some(k) if n as u32 == BACKFILL_BATCH => cursor = k,
            _ => break,
        }
    }
    tracing::info!(table = %t.name, index = %ix.name, rows = done, "index backfilled");
    Ok(())
}

/// Whether values stored as `old` read and index the same as `new`: the
/// row value and the index key bytes do not change (integers of one
/// signedness, strings of one collation, byte strings without padding,
/// identical types otherwise).
fn same_encoding(old: &super::types::ColumnType, new: &super::types::ColumnType) -> bool {
    use super::types::Kind;
    if old.is_integer() && new.is_integer() {
        return old.unsigned == new.unsigned;
    }
    let text = |k: &Kind| matches!(k, Kind::Char(_) | Kind::VarChar(_) | Kind::Text(_));
    if text(&old.kind) && text(&new.kind) {
        return old.collation == new.collation;
    }
    let bytes = |k: &Kind| matches!(k, Kind::VarBinary(_) | Kind::Blob(_));
    if bytes(&old.kind) && bytes(&new.kind) {
        return true;
    }
    old == new
}

/// `ALTER TABLE ... MODIFY [COLUMN]` / `CHANGE [COLUMN]`: a new
/// definition (type, NULL, DEFAULT, COMMENT, AUTO_INCREMENT) and name for
/// a column, when the stored encoding stays the same ([`same_encoding`]):
/// the existing rows are checked against the new type first (a value that
/// no longer fits is MySQL's 1265/1264, a NULL under NOT NULL 1138), and
/// the change is one schema version. A change that would rewrite the rows
/// (INT to VARCHAR, another collation, another DECIMAL scale) is 1235.
async fn modify_column(
    catalog: &Arc<Catalog>,
    (db, t): (&str, &str),
    old_name: &str,
    new_name: &str,
    data_type: &sqlparser::ast::DataType,
    options: &[sqlparser::ast::ColumnOption],
) -> Result<(), SqlError> {
    let def = sqlparser::ast::ColumnDef {
        name: sqlparser::ast::Ident::new(new_name),
        data_type: data_type.clone(),
        options: options
            .iter()
            .map(|o| sqlparser::ast::ColumnOptionDef {
                name: None,
                option: o.clone(),
            })
            .collect(),
    };
    let schema_now = catalog.schema().await?;
    let Some(info) = schema_now.table(db, t) else {
        return Err(er::no_such_table(db, t));
    };
    info.ensure_base(db)?;
    let Some(off) = info.column(old_name) else {
        return Err(SqlError::of(
            ErrorKind::BadField,
            format!("Unknown column '{old_name}' in '{t}'"),
        ));
    };
    let built = schema::build_table(
        t,
        CreateSpec {
            columns: std::slice::from_ref(&def),
            constraints: &[],
            collation: info.columns[off]
                .ty
                .is_text()
                .then_some(info.columns[off].ty.collation),
            comment: String::new(),
        },
    )?;
    if built.handle_col.is_some() || !built.indexes.is_empty() {
        return Err(er::not_supported_yet("MODIFY/CHANGE COLUMN with a key"));
    }
    let mut col = built.columns[0].clone();
    let old = info.columns[off].clone();
    if !same_encoding(&old.ty, &col.ty) {
        return Err(er::not_supported_yet(&format!(
            "changing column '{}' from {} to {} (the rows would be rewritten)",
            old.name,
            old.ty.sql(),
            col.ty.sql()
        )));
    }
    if new_name != old_name && info.column(new_name).is_some_and(|o| o != off) {
        return Err(SqlError::of(
            ErrorKind::DupFieldname,
            format!("Duplicate column name '{new_name}'"),
        ));
    }
    table::default_value(&col)?;
    // The rows must fit the new definition.
    let narrower = col.not_null && !old.not_null || col.ty != old.ty;
    if narrower {
        let end = codec::prefix_end(&codec::record_prefix(info.id));
        let mut cursor = codec::record_prefix(info.id);
        let tx = catalog.txn().begin().await.map_err(kv_err)?;
        let mut rowno = 0u64;
        loop {
            let batch = tx
                .scan(&cursor, &end, BACKFILL_BATCH)
                .await
                .map_err(kv_err)?;
            for (k, v) in &batch {
                rowno += 1;
                let (_, h) = codec::decode_record_key(k)?;
                let row = table::decode_row(&info, h, v)?;
                let val = row[off].clone();
                if val.is_null() {
                    if col.not_null {
                        return Err(SqlError::of(
                            ErrorKind::InvalidUseOfNull,
                            "Invalid use of NULL value".into(),
                        ));
                    }
                    continue;
                }
                // MySQL's ALTER copies rows: a string that no longer fits
                // is "truncated" (1265) rather than "too long" (1406).
                col.ty.coerce(val, &col.name).map_err(|e| match e.kind() {
                    Some(ErrorKind::DataTooLong) => SqlError::of(
                        ErrorKind::WarnDataTruncated,
                        format!("Data truncated for column '{}' at row {rowno}", col.name),
                    ),
                    _ => e,
                })?;
            }
            match batch.last() {
                Some((k, _)) if batch.len() == BACKFILL_BATCH as usize => {
                    cursor = k.clone();
                    cursor.push(0);
                }
                _ => break,
            }
        }
    }
    let (old_name, new_name) = (old.name.clone(), col.name.clone());
    edit_table(catalog, db, t, |m: &mut TableInfo| {
        col.id = m.columns[off].id;
        m.columns[off] = col.clone();
        if old_name != new_name {
            for fk in &mut m.foreign_keys {
                for c in &mut fk.columns {
                    if c.eq_ignore_ascii_case(&old_name) {
                        *c = new_name.clone();
                    }
                }
            }
        }
        Ok(())
    })
    .await
}

/// Writes index `ix`'s entries for `rows` (record keys and values of
/// table `t`) in `tx`; ERROR 1062 when a unique index would hold a value
/// twice.
pub async fn index_rows(
    tx: &mut tiox_client::txn::Transaction,
    t: &TableInfo,
    ix: &schema::IndexInfo,
    rows: &[(Vec<u8>, Vec<u8>)],
) -> Result<(), SqlError> {
    for (k, v) in rows {
        let (_, h) = codec::decode_record_key(k)?;
        let row = table::decode_row(t, h, v)?;
        let (ik, iv) = table::index_entry(t, ix, &row, h);
        if ix.unique && ix.columns.iter().all(|&c| !row[c].is_null()) {
            if let Some(existing) = tx.get(&ik).await.map_err(kv_err)? {
                if codec::decode_index_handle(&ik, &existing)? != h {
                    return Err(table::duplicate_entry(t, &ix.name, &ix.columns, &row));
                }
            }
        }
        tx.put(ik, iv);
    }
    Ok(())
}

/// `CREATE TABLE ... COMMENT [=] 'text'` (the parser keeps it either
/// with the statement or among the table options).
fn table_comment(ct: &sqlparser::ast::CreateTable) -> String {
    use sqlparser::ast::{CommentDef, CreateTableOptions, SqlOption};
    let text = |c: &CommentDef| match c {
        CommentDef::WithEq(s) | CommentDef::WithoutEq(s) => s.clone(),
    };
    if let Some(c) = &ct.comment {
        return text(c);
    }
    let opts = match &ct.table_options {
        CreateTableOptions::With(o)
        | CreateTableOptions::Options(o)
        | CreateTableOptions::Plain(o)
        | CreateTableOptions::TableProperties(o) => o.as_slice(),
        CreateTableOptions::None => &[],
    };
    opts.iter()
        .find_map(|o| match o {
            SqlOption::Comment(c) => Some(text(c)),
            _ => None,
        })
        .unwrap_or_default()
}

/// The column names of `CREATE INDEX`'s key parts.
pub fn index_columns(ci: &sqlparser::ast::CreateIndex) -> Vec<String> {
    ci.columns
        .iter()
        .map(|c| match &c.column.expr {
            sqlparser::ast::Expr::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// Deletes every key under `prefix`, in the background, after two leases
/// (when no server writes there any more).
pub fn purge_later(catalog: &Arc<Catalog>, prefix: Vec<u8>) {
    let catalog = catalog.clone();
    tokio::spawn(async move {
        tokio::time::sleep(SCHEMA_LEASE * 2 + Duration::from_millis(100)).await;
        let end = codec::prefix_end(&prefix);
        loop {
            let r: Result<usize, tiox_client::Error> = async {
                let mut tx = catalog.txn().begin().await?;
                let batch = tx.scan(&prefix, &end, 1000).await?;
                let n = batch.len();
                for (k, _) in batch {
                    tx.delete(k);
                }
                tx.commit().await?;
                Ok(n)
            }
            .await;
            match r {
                Ok(n) if n < 1000 => break,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "deleting the data of a dropped table or index failed; will retry");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
    });
}
