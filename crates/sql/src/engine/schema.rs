//! The schema objects the catalog stores: databases, tables, columns and
//! indexes, and how `CREATE TABLE` / `CREATE INDEX` become them.
//!
//! Ids are unique across the cluster (allocated by the catalog). A table
//! whose primary key is one integer column uses that column as the row
//! handle (`t{id}_r{pk}`); other tables get a hidden handle from the
//! table's id allocator, as TiDB's `_tidb_rowid`.
//!
//! Indexes carry an online-schema-change state (TiDB's F1-style states):
//! writes maintain an index from `WriteOnly`, deletes from `DeleteOnly`,
//! reads use it only when `Public`.

use serde::{Deserialize, Serialize};
use sqlparser::ast::{ColumnOption, DataType, Expr, IndexColumn, TableConstraint};

use super::types::{Collation, ColumnType, Kind};
use crate::error::{ErrorKind, SqlError};

/// A database.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DbInfo {
    /// Id.
    pub id: i64,
    /// Name as created.
    pub name: String,
}

/// An index's online-schema-change state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchemaState {
    /// Deletes remove entries; nothing else sees the index.
    DeleteOnly,
    /// Inserts, updates and deletes maintain it; reads do not use it.
    WriteOnly,
    /// Fully built.
    Public,
}

/// One column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnInfo {
    /// Id within the table (stable across ADD/DROP COLUMN; row format key).
    pub id: i64,
    /// Name as created.
    pub name: String,
    /// Type.
    pub ty: ColumnType,
    /// `NOT NULL`.
    pub not_null: bool,
    /// `DEFAULT` as SQL text (`'0'`, `NULL`, `CURRENT_TIMESTAMP`).
    pub default: Option<String>,
    /// `AUTO_INCREMENT`.
    pub auto_increment: bool,
    /// `ON UPDATE CURRENT_TIMESTAMP`.
    #[serde(default)]
    pub on_update_now: bool,
    /// `COMMENT`.
    #[serde(default)]
    pub comment: String,
}

/// One index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexInfo {
    /// Id within the table.
    pub id: i64,
    /// Name (`PRIMARY` for a primary key that is not the handle).
    pub name: String,
    /// Offsets of the indexed columns in [`TableInfo::columns`].
    pub columns: Vec<usize>,
    /// `UNIQUE` (or primary).
    pub unique: bool,
    /// The primary key.
    pub primary: bool,
    /// Online-schema-change state.
    pub state: SchemaState,
}

/// A table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableInfo {
    /// Id (the `t{id}` key prefix).
    pub id: i64,
    /// Database id.
    pub db_id: i64,
    /// Name as created.
    pub name: String,
    /// Columns in order.
    pub columns: Vec<ColumnInfo>,
    /// Indexes (not the handle).
    pub indexes: Vec<IndexInfo>,
    /// Offset of the integer primary-key column used as the handle.
    pub handle_col: Option<usize>,
    /// Next column id.
    pub next_col_id: i64,
    /// Next index id.
    pub next_index_id: i64,
    /// `COMMENT`.
    #[serde(default)]
    pub comment: String,
    /// For a view, the query it stands for (its columns are the query's
    /// output names; no rows are stored under its id).
    #[serde(default)]
    pub view: Option<ViewDef>,
    /// `FOREIGN KEY` constraints, in the order created.
    #[serde(default)]
    pub foreign_keys: Vec<ForeignKey>,
}

/// A `FOREIGN KEY` constraint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForeignKey {
    /// Constraint name (`{table}_ibfk_{n}` when not given, as MySQL).
    pub name: String,
    /// The referencing columns, by name.
    pub columns: Vec<String>,
    /// The referenced table's database (`None`: the table's own).
    pub ref_db: Option<String>,
    /// The referenced table.
    pub ref_table: String,
    /// The referenced columns.
    pub ref_columns: Vec<String>,
    /// `ON DELETE` action as SQL (`CASCADE`, `SET NULL`, ...), if written.
    pub on_delete: Option<String>,
    /// `ON UPDATE` action, if written.
    pub on_update: Option<String>,
}

impl ForeignKey {
    /// From a parsed constraint of table `table`, numbered `n` among its
    /// foreign keys.
    pub fn from_constraint(
        table: &str,
        n: usize,
        fk: &sqlparser::ast::ForeignKeyConstraint,
    ) -> ForeignKey {
        let parts: Vec<String> = fk
            .foreign_table
            .0
            .iter()
            .map(|p| p.to_string().trim_matches('`').to_string())
            .collect();
        let (ref_db, ref_table) = match parts.as_slice() {
            [db, t] => (Some(db.clone()), t.clone()),
            _ => (None, parts.last().cloned().unwrap_or_default()),
        };
        ForeignKey {
            name: fk
                .name
                .as_ref()
                .map_or_else(|| format!("{table}_ibfk_{n}"), |i| i.value.clone()),
            columns: fk.columns.iter().map(|c| c.value.clone()).collect(),
            ref_db,
            ref_table,
            ref_columns: fk
                .referred_columns
                .iter()
                .map(|c| c.value.clone())
                .collect(),
            on_delete: fk.on_delete.map(|a| a.to_string()),
            on_update: fk.on_update.map(|a| a.to_string()),
        }
    }

    /// Whether the name is one MySQL makes for table `table`.
    pub fn auto_named(&self, table: &str) -> bool {
        self.name
            .strip_prefix(&format!("{table}_ibfk_"))
            .is_some_and(|n| n.parse::<u32>().is_ok())
    }

    /// The constraint as `SHOW CREATE TABLE` prints it (`own_db`: the
    /// table's database, left out of the reference when it is the same).
    pub fn sql(&self, own_db: &str) -> String {
        let names = |cols: &[String]| {
            cols.iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let target = match &self.ref_db {
            Some(db) if !db.eq_ignore_ascii_case(own_db) => format!("`{db}`.`{}`", self.ref_table),
            _ => format!("`{}`", self.ref_table),
        };
        let mut s = format!(
            "CONSTRAINT `{}` FOREIGN KEY ({}) REFERENCES {target} ({})",
            self.name,
            names(&self.columns),
            names(&self.ref_columns)
        );
        if let Some(a) = &self.on_delete {
            s.push_str(&format!(" ON DELETE {a}"));
        }
        if let Some(a) = &self.on_update {
            s.push_str(&format!(" ON UPDATE {a}"));
        }
        s
    }
}

/// A string as a SQL literal the way `SHOW CREATE TABLE` prints comments
/// (MySQL's escapes: `''`, `\\`, `\n`, `\r`, `\0`, `\Z`).
pub fn sql_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            '\u{1a}' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// What a view is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewDef {
    /// The SELECT as SQL text, its tables qualified with their database
    /// at CREATE time (MySQL resolves a view's names in its own database).
    pub select: String,
    /// The column list written in CREATE VIEW, if any.
    #[serde(default)]
    pub columns: Vec<String>,
}

impl TableInfo {
    /// ERROR 1347 unless a base table (`what` names the statement).
    pub fn ensure_base(&self, db: &str) -> Result<(), SqlError> {
        match self.view {
            None => Ok(()),
            Some(_) => Err(SqlError::of(
                ErrorKind::WrongObject,
                format!("'{db}.{}' is not BASE TABLE", self.name),
            )),
        }
    }

    /// The offset of column `name` (case-insensitive).
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The offset of column `name`, or ERROR 1054.
    pub fn column_or_err(&self, name: &str) -> Result<usize, SqlError> {
        self.column(name)
            .ok_or_else(|| unknown_column(name, "field list"))
    }

    /// The index called `name`.
    pub fn index(&self, name: &str) -> Option<&IndexInfo> {
        self.indexes
            .iter()
            .find(|i| i.name.eq_ignore_ascii_case(name))
    }

    /// The auto-increment column's offset.
    pub fn auto_inc_col(&self) -> Option<usize> {
        self.columns.iter().position(|c| c.auto_increment)
    }

    /// The names of the primary key's columns (handle or index).
    pub fn primary_key(&self) -> Vec<usize> {
        if let Some(h) = self.handle_col {
            return vec![h];
        }
        self.indexes
            .iter()
            .find(|i| i.primary)
            .map(|i| i.columns.clone())
            .unwrap_or_default()
    }
}

/// ERROR 1054.
pub fn unknown_column(name: &str, clause: &str) -> SqlError {
    SqlError::of(
        ErrorKind::BadField,
        format!("Unknown column '{name}' in '{clause}'"),
    )
}

/// A MySQL type from its SQL spelling (`INT(11) UNSIGNED`, `CHAR(120)`,
/// `DECIMAL(10,2)`, `ENUM('a','b')`, ...).
pub fn column_type(dt: &DataType) -> Result<ColumnType, SqlError> {
    let text = dt.to_string();
    let upper = text.to_ascii_uppercase();
    let (head, args) = match upper.find('(') {
        Some(p) => {
            let close = text.rfind(')').unwrap_or(text.len());
            (
                upper[..p].trim().to_string(),
                text[p + 1..close].to_string(),
            )
        }
        None => (
            upper
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string(),
            String::new(),
        ),
    };
    let unsigned = upper.contains("UNSIGNED");
    let nums: Vec<u32> = args
        .split(',')
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    let n = |d: u32| nums.first().copied().unwrap_or(d);
    let kind = match head.as_str() {
        "TINYINT" | "BOOL" | "BOOLEAN" | "INT1" => Kind::TinyInt,
        "SMALLINT" | "INT2" => Kind::SmallInt,
        "MEDIUMINT" | "INT3" => Kind::MediumInt,
        "INT" | "INTEGER" | "INT4" => Kind::Int,
        "BIGINT" | "INT8" => Kind::BigInt,
        "YEAR" => Kind::Year,
        "DECIMAL" | "DEC" | "NUMERIC" | "FIXED" => {
            let precision = n(10).clamp(1, 65) as u8;
            let scale = nums.get(1).copied().unwrap_or(0).min(30) as u8;
            if scale > precision {
                return Err(SqlError::of(
                    ErrorKind::MBiggerThanD,
                    "For float(M,D), double(M,D) or decimal(M,D), M must be >= D".into(),
                ));
            }
            Kind::Decimal { precision, scale }
        }
        "FLOAT" | "FLOAT4" => {
            if n(0) > 24 {
                Kind::Double
            } else {
                Kind::Float
            }
        }
        "DOUBLE" | "REAL" | "FLOAT8" | "DOUBLE PRECISION" => Kind::Double,
        "CHAR" | "CHARACTER" | "NCHAR" => Kind::Char(n(1)),
        "VARCHAR" | "CHARACTER VARYING" | "NVARCHAR" => Kind::VarChar(n(255)),
        "TINYTEXT" => Kind::Text(255),
        "TEXT" => Kind::Text(65535),
        "MEDIUMTEXT" => Kind::Text(16_777_215),
        "LONGTEXT" => Kind::Text(u32::MAX),
        "JSON" => Kind::Json,
        "BINARY" => Kind::Binary(n(1)),
        "VARBINARY" => Kind::VarBinary(n(255)),
        "TINYBLOB" => Kind::Blob(255),
        "BLOB" | "BYTEA" => Kind::Blob(65535),
        "MEDIUMBLOB" => Kind::Blob(16_777_215),
        "LONGBLOB" => Kind::Blob(u32::MAX),
        "DATE" => Kind::Date,
        "DATETIME" => Kind::DateTime(n(0).min(6) as u8),
        "TIMESTAMP" => Kind::Timestamp(n(0).min(6) as u8),
        "TIME" => Kind::Time(n(0).min(6) as u8),
        "ENUM" => Kind::Enum(parse_enum_items(&args)),
        _ => {
            return Err(SqlError::of(
                ErrorKind::Parse,
                format!("You have an error in your SQL syntax; the type '{text}' is not supported"),
            ))
        }
    };
    let mut ty = ColumnType {
        kind,
        unsigned,
        collation: Collation::default(),
    };
    if matches!(head.as_str(), "BOOL" | "BOOLEAN") {
        ty.unsigned = false;
    }
    if let Some(p) = upper.find("COLLATE") {
        let name = text[p + 7..].split_whitespace().next().unwrap_or_default();
        ty.collation = Collation::from_name(name).unwrap_or_default();
    }
    Ok(ty)
}

fn parse_enum_items(args: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut chars = args.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, in_quote) {
            ('\'', false) => in_quote = true,
            ('\'', true) if chars.peek() == Some(&'\'') => {
                cur.push('\'');
                chars.next();
            }
            ('\'', true) => {
                in_quote = false;
                items.push(std::mem::take(&mut cur));
            }
            (c, true) => cur.push(c),
            _ => {}
        }
    }
    items
}

fn index_columns(cols: &[IndexColumn]) -> Vec<String> {
    cols.iter()
        .map(|c| match &c.column.expr {
            Expr::Identifier(i) => i.value.clone(),
            Expr::Function(f) => f.name.to_string(), // `col(10)` prefix lengths
            other => other.to_string(),
        })
        .collect()
}

/// A `CREATE TABLE` in parts sqlparser gives.
pub struct CreateSpec<'a> {
    /// Column definitions.
    pub columns: &'a [sqlparser::ast::ColumnDef],
    /// Table constraints.
    pub constraints: &'a [TableConstraint],
    /// The table's default collation (`COLLATE=` / `CHARSET=` options).
    pub collation: Option<Collation>,
    /// `COMMENT`.
    pub comment: String,
}

/// Builds a table from `CREATE TABLE` (ids filled by the caller).
pub fn build_table(name: &str, spec: CreateSpec<'_>) -> Result<TableInfo, SqlError> {
    let mut columns: Vec<ColumnInfo> = Vec::new();
    let mut pk: Option<Vec<String>> = None;
    let mut uniques: Vec<(Option<String>, Vec<String>, bool)> = Vec::new();
    let mut foreign_keys: Vec<(ForeignKey, Option<String>)> = Vec::new();
    for (i, c) in spec.columns.iter().enumerate() {
        if columns
            .iter()
            .any(|x| x.name.eq_ignore_ascii_case(&c.name.value))
        {
            return Err(SqlError::of(
                ErrorKind::DupFieldname,
                format!("Duplicate column name '{}'", c.name.value),
            ));
        }
        let mut ty = column_type(&c.data_type)?;
        if let Some(coll) = spec.collation {
            if !c
                .data_type
                .to_string()
                .to_ascii_uppercase()
                .contains("COLLATE")
            {
                ty.collation = coll;
            }
        }
        let mut col = ColumnInfo {
            id: i as i64 + 1,
            name: c.name.value.clone(),
            ty,
            not_null: false,
            default: None,
            auto_increment: false,
            on_update_now: false,
            comment: String::new(),
        };
        for o in &c.options {
            match &o.option {
                ColumnOption::NotNull => col.not_null = true,
                ColumnOption::Null => col.not_null = false,
                ColumnOption::Default(e) => col.default = Some(e.to_string()),
                ColumnOption::PrimaryKey(_) => {
                    if pk.is_some() {
                        return Err(multiple_pk());
                    }
                    pk = Some(vec![c.name.value.clone()]);
                    col.not_null = true;
                }
                ColumnOption::Unique(_) => {
                    uniques.push((None, vec![c.name.value.clone()], true));
                }
                ColumnOption::Collation(n) => {
                    col.ty.collation = Collation::from_name(&n.to_string()).unwrap_or_default();
                }
                ColumnOption::Comment(s) => col.comment = s.clone(),
                ColumnOption::OnUpdate(_) => col.on_update_now = true,
                ColumnOption::DialectSpecific(toks) => {
                    let t: String = toks
                        .iter()
                        .map(|t| t.to_string())
                        .collect::<Vec<_>>()
                        .join(" ");
                    if t.to_ascii_uppercase().contains("AUTO_INCREMENT") {
                        col.auto_increment = true;
                    }
                }
                ColumnOption::CharacterSet(_) => {}
                other => {
                    let t = other.to_string();
                    if t.to_ascii_uppercase().contains("AUTO_INCREMENT") {
                        col.auto_increment = true;
                    }
                }
            }
        }
        if col.auto_increment
            && !(col.ty.is_integer() || matches!(col.ty.kind, Kind::Float | Kind::Double))
        {
            return Err(SqlError::of(
                ErrorKind::WrongFieldSpec,
                format!("Incorrect column specifier for column '{}'", col.name),
            ));
        }
        columns.push(col);
    }
    for c in spec.constraints {
        match c {
            TableConstraint::PrimaryKey(p) => {
                if pk.is_some() {
                    return Err(multiple_pk());
                }
                pk = Some(index_columns(&p.columns));
            }
            TableConstraint::Unique(u) => {
                uniques.push((
                    u.index_name
                        .as_ref()
                        .or(u.name.as_ref())
                        .map(|n| n.value.clone()),
                    index_columns(&u.columns),
                    true,
                ));
            }
            TableConstraint::Index(ix) => {
                uniques.push((
                    ix.name.as_ref().map(|n| n.value.clone()),
                    index_columns(&ix.columns),
                    false,
                ));
            }
            TableConstraint::ForeignKey(fk) => {
                foreign_keys.push((
                    ForeignKey::from_constraint(
                        name,
                        1 + foreign_keys
                            .iter()
                            .filter(|(f, _)| f.auto_named(name))
                            .count(),
                        fk,
                    ),
                    fk_index_name(fk),
                ));
            }
            _ => {} // CHECK is accepted and not enforced, as in TiDB.
        }
    }
    if columns.iter().filter(|c| c.auto_increment).count() > 1 {
        return Err(SqlError::of(
            ErrorKind::WrongAutoKey,
            "Incorrect table definition; there can be only one auto column and it must be defined as a key".into(),
        ));
    }
    let mut t = TableInfo {
        id: 0,
        db_id: 0,
        name: name.to_string(),
        next_col_id: columns.len() as i64 + 1,
        columns,
        indexes: Vec::new(),
        handle_col: None,
        next_index_id: 1,
        comment: spec.comment,
        view: None,
        foreign_keys: Vec::new(),
    };
    if let Some(pk) = pk {
        let offs = pk
            .iter()
            .map(|n| t.column(n).ok_or_else(|| key_column_missing(n)))
            .collect::<Result<Vec<_>, _>>()?;
        for &o in &offs {
            t.columns[o].not_null = true;
        }
        if offs.len() == 1 && t.columns[offs[0]].ty.is_integer() {
            t.handle_col = Some(offs[0]);
        } else {
            add_index(
                &mut t,
                Some("PRIMARY".into()),
                &pk,
                true,
                true,
                SchemaState::Public,
            )?;
        }
    }
    for (name, cols, unique) in uniques {
        add_index(&mut t, name, &cols, unique, false, SchemaState::Public)?;
    }
    for (fk, index_name) in foreign_keys {
        if !fk_columns_indexed(&t, &fk.columns)? {
            // MySQL gives the referencing columns an index of their own.
            add_index(
                &mut t,
                index_name,
                &fk.columns,
                false,
                false,
                SchemaState::Public,
            )?;
        }
        t.foreign_keys.push(fk);
    }
    if let Some(a) = t.auto_inc_col() {
        let keyed =
            t.handle_col == Some(a) || t.indexes.iter().any(|i| i.columns.first() == Some(&a));
        if !keyed {
            return Err(SqlError::of(
                ErrorKind::WrongAutoKey,
                "Incorrect table definition; there can be only one auto column and it must be defined as a key".into(),
            ));
        }
    }
    Ok(t)
}

/// The name MySQL gives the index it makes for a foreign key: the
/// constraint's index name, else its name, else (`None`) the first
/// column's.
pub fn fk_index_name(fk: &sqlparser::ast::ForeignKeyConstraint) -> Option<String> {
    fk.index_name
        .as_ref()
        .or(fk.name.as_ref())
        .map(|i| i.value.clone())
}

/// Whether an index (or the handle) of `t` starts with `cols`, as a
/// foreign key needs; ERROR 1072 for a column `t` does not have.
pub fn fk_columns_indexed(t: &TableInfo, cols: &[String]) -> Result<bool, SqlError> {
    let offs = cols
        .iter()
        .map(|n| t.column(n).ok_or_else(|| key_column_missing(n)))
        .collect::<Result<Vec<_>, _>>()?;
    if offs.len() == 1 && t.handle_col == Some(offs[0]) {
        return Ok(true);
    }
    Ok(t.indexes
        .iter()
        .any(|i| i.columns.len() >= offs.len() && i.columns[..offs.len()] == offs[..]))
}

fn multiple_pk() -> SqlError {
    SqlError::of(
        ErrorKind::MultiplePriKey,
        "Multiple primary key defined".into(),
    )
}

fn key_column_missing(name: &str) -> SqlError {
    SqlError::of(
        ErrorKind::KeyColumnDoesNotExist,
        format!("Key column '{name}' doesn't exist in table"),
    )
}

/// Adds an index named `name` (or after its first column) on `cols`.
pub fn add_index(
    t: &mut TableInfo,
    name: Option<String>,
    cols: &[String],
    unique: bool,
    primary: bool,
    state: SchemaState,
) -> Result<i64, SqlError> {
    let offs = cols
        .iter()
        .map(|n| t.column(n).ok_or_else(|| key_column_missing(n)))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(&j) = offs.iter().find(|&&o| t.columns[o].ty.kind == Kind::Json) {
        return Err(SqlError::of(
            ErrorKind::JsonUsedAsKey,
            format!(
                "JSON column '{}' supports indexing only via generated columns on a specified JSON path.",
                t.columns[j].name
            ),
        ));
    }
    let name = match name {
        Some(n) => n,
        None => {
            let base = t.columns[offs[0]].name.clone();
            let mut n = base.clone();
            let mut i = 2;
            while t.index(&n).is_some() {
                n = format!("{base}_{i}");
                i += 1;
            }
            n
        }
    };
    if t.index(&name).is_some() {
        return Err(SqlError::of(
            ErrorKind::DupKeyname,
            format!("Duplicate key name '{name}'"),
        ));
    }
    let id = t.next_index_id;
    t.next_index_id += 1;
    t.indexes.push(IndexInfo {
        id,
        name,
        columns: offs,
        unique,
        primary,
        state,
    });
    Ok(id)
}

/// `SHOW CREATE TABLE` text.
pub fn show_create(t: &TableInfo, own_db: &str) -> String {
    let mut lines = Vec::new();
    for c in &t.columns {
        let mut l = format!("  `{}` {}", c.name, c.ty.sql());
        if c.ty.is_text() && c.ty.collation != Collation::default() {
            l.push_str(&format!(" COLLATE {}", c.ty.collation.name()));
        }
        if c.not_null {
            l.push_str(" NOT NULL");
        }
        if let Some(d) = &c.default {
            l.push_str(&format!(" DEFAULT {d}"));
        } else if !c.not_null && !c.auto_increment {
            l.push_str(" DEFAULT NULL");
        }
        if c.auto_increment {
            l.push_str(" AUTO_INCREMENT");
        }
        if !c.comment.is_empty() {
            l.push_str(&format!(" COMMENT {}", sql_literal(&c.comment)));
        }
        lines.push(l);
    }
    let cols = |offs: &[usize]| {
        offs.iter()
            .map(|&o| format!("`{}`", t.columns[o].name))
            .collect::<Vec<_>>()
            .join(",")
    };
    if let Some(h) = t.handle_col {
        lines.push(format!(
            "  PRIMARY KEY ({}) /*T![clustered_index] CLUSTERED */",
            cols(&[h])
        ));
    }
    for i in t.indexes.iter().filter(|i| i.state == SchemaState::Public) {
        lines.push(if i.primary {
            format!(
                "  PRIMARY KEY ({}) /*T![clustered_index] NONCLUSTERED */",
                cols(&i.columns)
            )
        } else if i.unique {
            format!("  UNIQUE KEY `{}` ({})", i.name, cols(&i.columns))
        } else {
            format!("  KEY `{}` ({})", i.name, cols(&i.columns))
        });
    }
    // MySQL 8.0 lists foreign keys by name.
    let mut fks: Vec<&ForeignKey> = t.foreign_keys.iter().collect();
    fks.sort_by(|a, b| a.name.cmp(&b.name));
    for fk in fks {
        lines.push(format!("  {}", fk.sql(own_db)));
    }
    let mut s = format!(
        "CREATE TABLE `{}` (\n{}\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
        t.name,
        lines.join(",\n")
    );
    if !t.comment.is_empty() {
        s.push_str(&format!(" COMMENT={}", sql_literal(&t.comment)));
    }
    s
}
