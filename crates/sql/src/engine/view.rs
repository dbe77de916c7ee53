//! Views: `CREATE [OR REPLACE] VIEW`, `ALTER VIEW`, `DROP VIEW`, and
//! reading one. A view is kept in the schema as a table entry with a
//! [`ViewDef`] (so `SHOW [FULL] TABLES` and `information_schema` list it
//! with type VIEW); its query is stored as text with every table name
//! qualified by its database, and a read of the view runs that query as
//! a derived table would. Views are read-only here: INSERT, UPDATE and
//! DELETE through a view are refused (ERROR 1288), as for a MySQL view
//! that is not updatable.

use std::sync::Arc;

use sqlparser::ast::{Ident, ObjectName, Query, SetExpr, TableFactor};

use super::catalog::Catalog;
use super::exec::{Runner, Sx};
use super::schema::{ColumnInfo, TableInfo, ViewDef};
use super::types::{ColumnType, Kind};
use crate::backend::Output;
use crate::error::{er, ErrorKind, SqlError};

/// Qualifies the unqualified table names of `q`'s FROM clauses (at any
/// depth of joins, derived tables, set operations and CTEs) with `db`;
/// names of CTEs in scope stay as they are.
pub fn qualify(q: &mut Query, db: &str, ctes: &[String]) {
    let mut scope: Vec<String> = ctes.to_vec();
    if let Some(w) = &mut q.with {
        for c in &mut w.cte_tables {
            scope.push(c.alias.name.value.to_ascii_lowercase());
            let s = scope.clone();
            qualify(&mut c.query, db, &s);
        }
    }
    body(&mut q.body, db, &scope);
}

fn body(b: &mut SetExpr, db: &str, ctes: &[String]) {
    match b {
        SetExpr::Select(s) => {
            for t in &mut s.from {
                factor(&mut t.relation, db, ctes);
                for j in &mut t.joins {
                    factor(&mut j.relation, db, ctes);
                }
            }
        }
        SetExpr::Query(q) => qualify(q, db, ctes),
        SetExpr::SetOperation { left, right, .. } => {
            body(left, db, ctes);
            body(right, db, ctes);
        }
        _ => {}
    }
}

fn factor(f: &mut TableFactor, db: &str, ctes: &[String]) {
    match f {
        TableFactor::Table { name, .. } if name.0.len() == 1 => {
            let n = name.to_string();
            let n = n.trim_matches('`');
            if n.eq_ignore_ascii_case("dual") || ctes.iter().any(|c| c.eq_ignore_ascii_case(n)) {
                return;
            }
            let table = Ident::with_quote('`', n);
            *name = ObjectName::from(vec![Ident::with_quote('`', db), table]);
        }
        TableFactor::Derived { subquery, .. } => qualify(subquery, db, ctes),
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => {
            factor(&mut table_with_joins.relation, db, ctes);
            for j in &mut table_with_joins.joins {
                factor(&mut j.relation, db, ctes);
            }
        }
        _ => {}
    }
}

/// The type a view lists for one of its query's output columns (the
/// column's own type for a plain column; LONGTEXT where the query's
/// output says no more than "a string").
fn type_of_output(c: &crate::backend::Column) -> ColumnType {
    use crate::protocol::consts::{flag, ty, CHARSET_BINARY};
    let kind = match c.ty {
        ty::TINY => Kind::TinyInt,
        ty::SHORT => Kind::SmallInt,
        ty::INT24 => Kind::MediumInt,
        ty::LONG => Kind::Int,
        ty::LONGLONG => Kind::BigInt,
        ty::YEAR => Kind::Year,
        ty::FLOAT => Kind::Float,
        ty::DOUBLE => Kind::Double,
        ty::NEWDECIMAL => Kind::Decimal {
            precision: (c.length.saturating_sub(2)).clamp(1, 65) as u8,
            scale: c.decimals.min(30),
        },
        ty::DATE => Kind::Date,
        ty::DATETIME => Kind::DateTime(c.decimals.min(6)),
        ty::TIMESTAMP => Kind::Timestamp(c.decimals.min(6)),
        ty::TIME => Kind::Time(c.decimals.min(6)),
        ty::JSON => Kind::Json,
        ty::STRING if c.charset == CHARSET_BINARY => Kind::Binary(c.length),
        ty::STRING => Kind::Char(c.length / 4),
        ty::VAR_STRING if c.charset == CHARSET_BINARY && c.length < 65536 => {
            Kind::VarBinary(c.length)
        }
        // (decimals 31: typed after a value, not a column: no length known)
        ty::VAR_STRING if c.length < 65536 && c.decimals != 31 => Kind::VarChar(c.length / 4),
        _ => Kind::Text(u32::MAX),
    };
    let mut t = ColumnType::new(kind);
    t.unsigned = c.flags & flag::UNSIGNED != 0 && t.is_integer();
    t
}

/// `CREATE [OR REPLACE] VIEW` and `ALTER VIEW`; `how` is (OR REPLACE,
/// ALTER: the view must exist, IF NOT EXISTS).
pub async fn create(
    runner: &Runner<'_>,
    catalog: &Arc<Catalog>,
    name: &ObjectName,
    columns: &[String],
    query: &Query,
    how: (bool, bool, bool),
) -> Result<Output, SqlError> {
    let (replace, alter, if_not_exists) = how;
    let sx = runner.sx;
    let (db, view) = super::ddl::db_and_table(sx, name)?;
    let Some(d) = sx.schema.db(&db) else {
        return Err(er::bad_db(&db));
    };
    let db_id = d.id;
    let mut q = query.clone();
    qualify(&mut q, &db, &[]);
    // The query must run (its tables exist, its names resolve); a dry run
    // gives its output names without reading rows.
    let out = runner.query(&q, None).await?;
    let names = if columns.is_empty() {
        out.names
    } else if columns.len() != out.names.len() {
        return Err(SqlError::of(
            ErrorKind::ViewWrongList,
            "In definition of view, derived table or common table expression, SELECT list and column names list have different column counts".into(),
        ));
    } else {
        columns.to_vec()
    };
    for (i, n) in names.iter().enumerate() {
        if names[..i].iter().any(|m| m.eq_ignore_ascii_case(n)) {
            return Err(SqlError::of(
                ErrorKind::DupFieldname,
                format!("Duplicate column name '{n}'"),
            ));
        }
    }
    let info = TableInfo {
        id: 0,
        db_id,
        name: view.clone(),
        columns: names
            .iter()
            .enumerate()
            .map(|(i, n)| ColumnInfo {
                id: i as i64 + 1,
                name: n.clone(),
                ty: out
                    .columns
                    .get(i)
                    .map_or_else(|| ColumnType::new(Kind::Text(u32::MAX)), type_of_output),
                not_null: false,
                default: None,
                auto_increment: false,
                on_update_now: false,
                comment: String::new(),
            })
            .collect(),
        indexes: Vec::new(),
        handle_col: None,
        next_col_id: names.len() as i64 + 1,
        next_index_id: 1,
        comment: String::new(),
        view: Some(ViewDef {
            select: q.to_string(),
            columns: columns.to_vec(),
        }),
        foreign_keys: Vec::new(),
    };
    catalog
        .ddl(|s| {
            let mut info = info.clone();
            match s.table(&db, &view) {
                Some(old) if old.view.is_none() => {
                    return Err(SqlError::of(
                        ErrorKind::TableExists,
                        format!("Table '{view}' already exists"),
                    ))
                }
                Some(_) if if_not_exists => return Ok(()),
                Some(old) if replace || alter => {
                    info.id = old.id;
                }
                Some(_) => {
                    return Err(SqlError::of(
                        ErrorKind::TableExists,
                        format!("Table '{view}' already exists"),
                    ))
                }
                None if alter => return Err(er::no_such_table(&db, &view)),
                None => info.id = s.alloc_id(),
            }
            s.tables.insert(info.id, Arc::new(info));
            Ok(())
        })
        .await?;
    Ok(Output::ok())
}

/// `DROP VIEW [IF EXISTS] v, ...`.
pub async fn drop(
    sx: &Sx<'_>,
    catalog: &Arc<Catalog>,
    names: &[ObjectName],
    if_exists: bool,
) -> Result<Output, SqlError> {
    let mut missing = Vec::new();
    for n in names {
        let (db, v) = super::ddl::db_and_table(sx, n)?;
        let gone = catalog
            .ddl(|s| match s.table(&db, &v) {
                Some(t) if t.view.is_some() => {
                    s.tables.remove(&t.id);
                    Ok(true)
                }
                Some(_) => Err(SqlError::of(
                    ErrorKind::WrongObject,
                    format!("'{db}.{v}' is not VIEW"),
                )),
                None => Ok(false),
            })
            .await?;
        if !gone {
            missing.push(format!("{db}.{v}"));
        }
    }
    if !missing.is_empty() && !if_exists {
        return Err(SqlError::of(
            ErrorKind::BadTable,
            format!("Unknown table '{}'", missing.join(",")),
        ));
    }
    Ok(Output::ok())
}

/// ERROR 1288 for a write through view `t`.
pub fn not_updatable(t: &TableInfo, what: &str) -> SqlError {
    SqlError::of(
        ErrorKind::NonUpdatableTable,
        format!("The target table {} of the {what} is not updatable", t.name),
    )
}
