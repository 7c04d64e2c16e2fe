//! The rows of each catalog, one function per catalog that has any: built from the
//! warehouse at each lookup (so DDL shows at once), from Tarn's fixed lists (types,
//! access methods) and from the catalogs' own definitions (`pg_class` and
//! `pg_attribute` describe `pg_class` too, as in Postgres). Catalogs of features Tarn
//! does not have (triggers, rules, policies, publications, inheritance...) are present
//! and empty, so tools that join them get no rows instead of an error.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use tarn_storage::Warehouse;

use super::columns::{self as c, ALL};
use super::relations::{self, namespace_oid, TableRel, ACCESS_METHODS};
use super::security;
use super::table::{Def, Kind, Rows, Value};
use super::types::TYPES;
use super::{OWNER_OID, PG_CATALOG_OID, SCHEMA};

/// What the catalogs are built from: the warehouse and the names a session sees.
pub struct Source<'a> {
    pub warehouse: &'a Warehouse,
    pub database: &'a str,
    pub owner: &'a str,
    pub activity: &'a crate::activity::Activity,
    /// The reading session (`None`: a superuser's view of everything).
    pub reader: Option<&'a crate::access::Access>,
}

impl Source<'_> {
    /// Whether the reader may see what sessions of `user` run.
    pub fn sees_queries_of(&self, user: &str) -> bool {
        self.reader.is_none_or(|reader| {
            reader.subject().is_none() || reader.role() == user || reader.session_user() == user
        })
    }
}

/// The catalog `name` (`pg_class`, `pg_tables`...), if Tarn has it.
pub fn table(name: &str, source: &Source) -> Option<Arc<dyn TableProvider>> {
    let def: &'static Def = ALL.iter().copied().find(|d| d.name == name)?;
    Some(match name {
        "pg_am" => pg_am(),
        "pg_attrdef" => pg_attrdef(source),
        "pg_attribute" => pg_attribute(source),
        "pg_class" => pg_class(source),
        "pg_constraint" => pg_constraint(source),
        "pg_database" => pg_database(source),
        "pg_extension" => pg_extension(),
        "pg_index" => pg_index(source),
        "pg_indexes" => pg_indexes(source),
        "pg_namespace" => pg_namespace(source),
        "pg_roles" | "pg_authid" | "pg_user" => security::pg_roles(def, source),
        "pg_auth_members" => security::pg_auth_members(def, source),
        "pg_policy" => security::pg_policy(def, source),
        "pg_tables" => pg_tables(source),
        "pg_views" => pg_views(source),
        "pg_description" => pg_description(source),
        "pg_stat_activity" => pg_stat_activity(source),
        "pg_type" => pg_type(),
        "pg_stat_user_tables" | "pg_stat_all_tables" => pg_stat_tables(def, source),
        "pg_tablespace" => pg_tablespace(),
        "pg_settings" => pg_settings(source),
        "pg_proc" => pg_proc(),
        "pg_sequence" => pg_sequence(source),
        "pg_sequences" => pg_sequences(source),
        _ => def.empty(),
    })
}

fn oid(o: u32) -> Value {
    Value::Oid(o)
}

/// `relpersistence`: `t` in a session's temporary schema, else `p`.
fn persistence(schema: &str) -> Value {
    ch(if crate::statements::temp::is_temp_schema(schema) { b't' } else { b'p' })
}

fn ch(c: u8) -> Value {
    Value::Char(c)
}

fn int(i: impl Into<i64>) -> Value {
    Value::Int(i.into())
}

pub(super) fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

/// Schemas: Postgres' own three and the warehouse's.
fn pg_namespace(source: &Source) -> Arc<dyn TableProvider> {
    let mut rows = Rows::new(&c::PG_NAMESPACE);
    let mut names = vec![SCHEMA.to_string(), "information_schema".to_string()];
    names.extend(source.warehouse.schemas());
    for name in names {
        rows.push(&[
            ("oid", oid(namespace_oid(&name))),
            ("nspname", text(&name)),
            ("nspowner", oid(OWNER_OID)),
        ]);
    }
    rows.table()
}

fn pg_am() -> Arc<dyn TableProvider> {
    let mut rows = Rows::new(&c::PG_AM);
    for (am, name, kind) in ACCESS_METHODS {
        let handler = if *kind == b't' { "heap_tableam_handler" } else { "bthandler" };
        rows.push(&[
            ("oid", oid(*am)),
            ("amname", text(*name)),
            ("amhandler", text(handler)),
            ("amtype", ch(*kind)),
        ]);
    }
    rows.table()
}

/// Tables (`r`), their indexes (`i`), and the catalogs themselves (in `pg_catalog`,
/// under Postgres' OIDs: psqlODBC looks `pg_class` up as 1259).
fn pg_class(source: &Source) -> Arc<dyn TableProvider> {
    let mut rows = Rows::new(&c::PG_CLASS);
    let access = source.warehouse.security();
    for table in relations::tables(source.warehouse) {
        let name = tarn_storage::TableName::new(&table.schema, &table.name);
        let options: Vec<String> = std::iter::once(format!("bucket_count={}", table.def.bucket_count))
            .chain(table.def.options.iter().map(|(k, v)| format!("{k}={v}")))
            .collect();
        rows.push(&[
            ("oid", oid(table.oid)),
            ("relname", text(&table.name)),
            ("relnamespace", oid(table.namespace)),
            ("relowner", oid(OWNER_OID)),
            ("relam", oid(table.am)),
            ("relfilenode", oid(table.oid)),
            ("relpages", int(table.bytes.div_ceil(8192) as i64)),
            ("reltuples", Value::Float(table.rows as f64)),
            ("relhasindex", Value::Bool(!table.indexes.is_empty())),
            ("relpersistence", persistence(&table.schema)),
            ("relkind", ch(b'r')),
            ("relnatts", int(table.def.schema.fields().len() as i64)),
            ("relreplident", ch(b'd')),
            ("relispopulated", Value::Bool(true)),
            ("relfrozenxid", text("0")),
            ("relminmxid", text("1")),
            ("reloptions", Value::Texts(options)),
            ("relrowsecurity", Value::Bool(access.row_security.contains(&name))),
            ("relacl", security::relacl(&access, &name)),
        ]);
        for index in &table.indexes {
            rows.push(&[
                ("oid", oid(index.oid)),
                ("relname", text(&index.name)),
                ("relnamespace", oid(table.namespace)),
                ("relowner", oid(OWNER_OID)),
                ("relam", oid(index.am)),
                ("relfilenode", oid(index.oid)),
                ("reltuples", Value::Float(table.rows as f64)),
                ("relpersistence", persistence(&table.schema)),
                ("relkind", ch(b'i')),
                ("relnatts", int(index.keys.len() as i64)),
                ("relreplident", ch(b'n')),
                ("relispopulated", Value::Bool(true)),
                ("relfrozenxid", text("0")),
                ("relminmxid", text("0")),
            ]);
        }
    }
    for view in relations::views(source.warehouse) {
        rows.push(&[
            ("oid", oid(view.oid)),
            ("relname", text(&view.name)),
            ("relnamespace", oid(view.namespace)),
            ("relowner", oid(OWNER_OID)),
            ("relam", oid(0)),
            ("relpersistence", persistence(&view.schema)),
            ("relkind", ch(b'v')),
            ("relnatts", int(view.def.schema.fields().len() as i64)),
            ("relreplident", ch(b'n')),
            ("relispopulated", Value::Bool(true)),
            ("relfrozenxid", text("0")),
            ("relminmxid", text("0")),
        ]);
    }
    for sequence in relations::sequences(source.warehouse) {
        rows.push(&[
            ("oid", oid(sequence.oid)),
            ("relname", text(&sequence.name)),
            ("relnamespace", oid(sequence.namespace)),
            ("relowner", oid(OWNER_OID)),
            ("relam", oid(0)),
            ("relfilenode", oid(sequence.oid)),
            ("reltuples", Value::Float(1.0)),
            ("relpersistence", ch(b'p')),
            ("relkind", ch(b'S')),
            ("relnatts", int(3)),
            ("relreplident", ch(b'n')),
            ("relispopulated", Value::Bool(true)),
            ("relfrozenxid", text("0")),
            ("relminmxid", text("0")),
        ]);
    }
    for def in ALL {
        rows.push(&[
            ("oid", oid(def.oid)),
            ("relname", text(def.name)),
            ("relnamespace", oid(PG_CATALOG_OID)),
            ("relowner", oid(OWNER_OID)),
            ("relam", oid(if def.view { 0 } else { relations::AM_HEAP })),
            ("relpersistence", ch(b'p')),
            ("relkind", ch(if def.view { b'v' } else { b'r' })),
            ("relnatts", int(def.columns.len() as i64)),
            ("relreplident", ch(if def.view { b'n' } else { b'd' })),
            ("relispopulated", Value::Bool(true)),
        ]);
    }
    rows.table()
}

/// Columns of tables, views and catalogs; indexes' columns too, as Postgres lists them.
fn pg_attribute(source: &Source) -> Arc<dyn TableProvider> {
    let mut rows = Rows::new(&c::PG_ATTRIBUTE);
    let tables = relations::tables(source.warehouse);
    let views = relations::views(source.warehouse);
    let access = source.warehouse.security();
    let relations = tables
        .iter()
        .map(|t| {
            (t.oid, Some(tarn_storage::TableName::new(&t.schema, &t.name)), t.columns().collect::<Vec<_>>())
        })
        .chain(views.iter().map(|v| (v.oid, None, v.columns().collect::<Vec<_>>())));
    for (relation, name, columns) in relations {
        for column in columns {
            let acl =
                name.as_ref().map_or(Value::Null, |n| security::attacl(&access, n, column.field.name()));
            let type_oid = column.type_oid();
            let row = super::types::by_oid(type_oid);
            rows.push(&[
                ("attrelid", oid(relation)),
                ("attname", text(column.field.name())),
                ("atttypid", oid(type_oid)),
                ("attlen", int(row.map_or(-1, |t| t.len))),
                ("attnum", int(column.attnum)),
                ("attcacheoff", int(-1)),
                ("atttypmod", int(column.typmod())),
                ("attndims", int(column.dims())),
                ("attbyval", Value::Bool(row.is_some_and(|t| t.by_value()))),
                ("attalign", ch(row.map_or(b'i', |t| t.align()))),
                ("attstorage", ch(row.map_or(b'x', |t| t.storage()))),
                ("attnotnull", Value::Bool(!column.field.is_nullable())),
                ("atthasdef", Value::Bool(column.default.is_some())),
                ("attidentity", if column.identity { ch(b'd') } else { ch(0) }),
                ("attgenerated", if column.generated { ch(b's') } else { ch(0) }),
                ("attislocal", Value::Bool(true)),
                ("attcollation", oid(row.map_or(0, |t| t.collation()))),
                ("attstattarget", int(-1)),
                ("attacl", acl),
            ]);
        }
    }
    for table in &tables {
        for index in &table.indexes {
            for (i, key) in index.keys.iter().enumerate() {
                let Some(field) =
                    usize::try_from(key - 1).ok().and_then(|i| table.def.schema.fields().get(i))
                else {
                    continue;
                };
                let type_oid = crate::types::pg_type_of(field).oid;
                rows.push(&[
                    ("attrelid", oid(index.oid)),
                    ("attname", text(field.name())),
                    ("atttypid", oid(type_oid)),
                    ("attnum", int(i as i64 + 1)),
                    ("atttypmod", int(-1)),
                    ("attislocal", Value::Bool(true)),
                    ("attstattarget", int(-1)),
                ]);
            }
        }
    }
    for def in ALL {
        for (i, (name, kind)) in def.columns.iter().enumerate() {
            let row = super::types::by_oid(kind.type_oid());
            rows.push(&[
                ("attrelid", oid(def.oid)),
                ("attname", text(*name)),
                ("atttypid", oid(kind.type_oid())),
                ("attlen", int(row.map_or(-1, |t| t.len))),
                ("attnum", int(i as i64 + 1)),
                ("attcacheoff", int(-1)),
                ("atttypmod", int(-1)),
                ("attbyval", Value::Bool(row.is_some_and(|t| t.by_value()))),
                ("attalign", ch(row.map_or(b'i', |t| t.align()))),
                ("attstorage", ch(row.map_or(b'x', |t| t.storage()))),
                ("attnotnull", Value::Bool(matches!(kind, Kind::Oid) && i == 0)),
                ("attislocal", Value::Bool(true)),
                ("attstattarget", int(-1)),
            ]);
        }
    }
    rows.table()
}

/// Column defaults, as SQL text (`pg_get_expr` of it is itself).
fn pg_attrdef(source: &Source) -> Arc<dyn TableProvider> {
    let mut rows = Rows::new(&c::PG_ATTRDEF);
    for table in relations::tables(source.warehouse) {
        for column in table.columns() {
            if let Some(default) = &column.default {
                rows.push(&[
                    (
                        "oid",
                        oid(relations::oid_of(&[
                            b"default",
                            &table.oid.to_le_bytes(),
                            &[column.attnum as u8],
                        ])),
                    ),
                    ("adrelid", oid(table.oid)),
                    ("adnum", int(column.attnum)),
                    ("adbin", text(default)),
                ]);
            }
        }
    }
    rows.table()
}

fn pg_index(source: &Source) -> Arc<dyn TableProvider> {
    let mut rows = Rows::new(&c::PG_INDEX);
    for table in relations::tables(source.warehouse) {
        for index in &table.indexes {
            let n = index.keys.len() as i64;
            rows.push(&[
                ("indexrelid", oid(index.oid)),
                ("indrelid", oid(table.oid)),
                ("indnatts", int(n)),
                ("indnkeyatts", int(n)),
                ("indisunique", Value::Bool(index.unique)),
                ("indisprimary", Value::Bool(index.primary)),
                ("indimmediate", Value::Bool(true)),
                ("indisvalid", Value::Bool(true)),
                ("indisready", Value::Bool(true)),
                ("indislive", Value::Bool(true)),
                ("indkey", Value::Ints(index.keys.clone())),
                ("indcollation", Value::Ints(vec![0; n as usize])),
                ("indclass", Value::Ints(vec![0; n as usize])),
                ("indoption", Value::Ints(vec![0; n as usize])),
            ]);
        }
    }
    rows.table()
}

/// Primary keys (`p`); Tarn has no other constraints beyond NOT NULL, which Postgres
/// keeps in `pg_attribute`.
fn pg_constraint(source: &Source) -> Arc<dyn TableProvider> {
    let mut rows = Rows::new(&c::PG_CONSTRAINT);
    for table in relations::tables(source.warehouse) {
        for index in table.indexes.iter().filter(|i| i.primary) {
            rows.push(&[
                ("oid", oid(index.constraint_oid())),
                ("conname", text(&index.name)),
                ("connamespace", oid(table.namespace)),
                ("contype", ch(b'p')),
                ("convalidated", Value::Bool(true)),
                ("conrelid", oid(table.oid)),
                ("conindid", oid(index.oid)),
                ("confupdtype", ch(b' ')),
                ("confdeltype", ch(b' ')),
                ("confmatchtype", ch(b' ')),
                ("conislocal", Value::Bool(true)),
                ("connoinherit", Value::Bool(true)),
                ("conkey", Value::Ints(index.keys.clone())),
            ]);
        }
    }
    rows.table()
}

fn pg_type() -> Arc<dyn TableProvider> {
    let mut rows = Rows::new(&c::PG_TYPE);
    for t in TYPES {
        let function = |suffix: &str| text(t.function(suffix));
        rows.push(&[
            ("oid", oid(t.oid)),
            ("typname", text(t.name)),
            ("typnamespace", oid(t.namespace())),
            ("typowner", oid(OWNER_OID)),
            ("typlen", int(t.len)),
            ("typbyval", Value::Bool(t.by_value())),
            ("typtype", ch(if t.oid == 705 { b'p' } else { b'b' })),
            ("typcategory", ch(t.category)),
            (
                "typispreferred",
                Value::Bool(matches!(t.name, "text" | "float8" | "bool" | "timestamptz" | "oid")),
            ),
            ("typisdefined", Value::Bool(true)),
            ("typdelim", ch(b',')),
            ("typsubscript", text(if t.is_array() { "array_subscript_handler" } else { "-" })),
            ("typelem", oid(t.elem)),
            ("typarray", oid(t.array)),
            ("typinput", function("in")),
            ("typoutput", function("out")),
            ("typreceive", function("recv")),
            ("typsend", function("send")),
            ("typmodin", text("-")),
            ("typmodout", text("-")),
            ("typanalyze", text("-")),
            ("typalign", ch(t.align())),
            ("typstorage", ch(t.storage())),
            ("typtypmod", int(-1)),
            ("typcollation", oid(t.collation())),
        ]);
    }
    rows.table()
}

/// Tarn's own functions, in the default schema (where pgvector puts its own).
fn pg_proc() -> Arc<dyn TableProvider> {
    let mut rows = Rows::new(&c::PG_PROC);
    for (name, arguments, _) in relations::FUNCTIONS {
        let set = *name == "hybrid_search";
        rows.push(&[
            ("oid", oid(relations::function_oid(name))),
            ("proname", text(*name)),
            ("pronamespace", oid(super::PUBLIC_OID)),
            ("proowner", oid(OWNER_OID)),
            ("prolang", oid(13)),
            ("procost", Value::Float(1.0)),
            ("prorows", Value::Float(if set { 1000.0 } else { 0.0 })),
            ("prokind", ch(b'f')),
            ("proretset", Value::Bool(set)),
            ("provolatile", ch(if set { b'v' } else { b'i' })),
            ("proparallel", ch(b's')),
            ("pronargs", int(arguments.split(',').count() as i64)),
            ("prosrc", text(*name)),
        ]);
    }
    rows.table()
}

fn pg_database(source: &Source) -> Arc<dyn TableProvider> {
    let mut rows = Rows::new(&c::PG_DATABASE);
    rows.push(&[
        ("oid", oid(super::DATABASE_OID)),
        ("datname", text(source.database)),
        ("datdba", oid(OWNER_OID)),
        ("encoding", int(6)),
        ("datlocprovider", ch(b'c')),
        ("datallowconn", Value::Bool(true)),
        ("datconnlimit", int(-1)),
        ("datfrozenxid", text("0")),
        ("datminmxid", text("1")),
        ("dattablespace", oid(1663)),
        ("datcollate", text("C.UTF-8")),
        ("datctype", text("C.UTF-8")),
    ]);
    rows.table()
}

/// The settings as a new session has them (a session's own `SET`s show in `SHOW` and
/// `current_setting`, not here yet).
fn pg_settings(source: &Source) -> Arc<dyn TableProvider> {
    let mut rows = Rows::new(&c::PG_SETTINGS);
    for (name, value) in crate::statements::settings::Settings::new(source.owner).all() {
        rows.push(&[
            ("name", text(name)),
            ("setting", text(value)),
            ("category", text("Tarn")),
            ("context", text("user")),
            ("vartype", text("string")),
            ("source", text("default")),
        ]);
    }
    rows.table()
}

fn pg_tablespace() -> Arc<dyn TableProvider> {
    let mut rows = Rows::new(&c::PG_TABLESPACE);
    rows.push(&[("oid", oid(1663)), ("spcname", text("pg_default")), ("spcowner", oid(OWNER_OID))]);
    rows.push(&[("oid", oid(1664)), ("spcname", text("pg_global")), ("spcowner", oid(OWNER_OID))]);
    rows.table()
}

/// `vector`, so tools that check for pgvector find it.
fn pg_extension() -> Arc<dyn TableProvider> {
    let mut rows = Rows::new(&c::PG_EXTENSION);
    rows.push(&[
        ("oid", oid(super::VECTOR_EXTENSION_OID)),
        ("extname", text("vector")),
        ("extowner", oid(OWNER_OID)),
        ("extnamespace", oid(super::PUBLIC_OID)),
        ("extrelocatable", Value::Bool(true)),
        ("extversion", text(super::PGVECTOR_VERSION)),
    ]);
    rows.table()
}

fn user_tables(source: &Source) -> impl Iterator<Item = TableRel> {
    relations::tables(source.warehouse).into_iter()
}

/// The server's sessions, as each last told its entry (see `crate::activity`).
fn pg_stat_activity(source: &Source) -> Arc<dyn TableProvider> {
    let micros = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH).map_or(Value::Null, |d| Value::Time(d.as_micros() as i64))
    };
    let mut rows = Rows::new(&c::PG_STAT_ACTIVITY);
    for backend in source.activity.sessions() {
        let live = backend.live();
        let (addr, port) = match backend.client {
            Some(client) => (text(client.ip().to_string()), int(client.port())),
            None => (Value::Null, Value::Null),
        };
        rows.push(&[
            ("datid", oid(super::DATABASE_OID)),
            ("datname", text(source.database)),
            ("pid", int(backend.pid)),
            ("usesysid", oid(super::OWNER_OID)),
            ("usename", text(&backend.user)),
            ("application_name", text(live.application_name)),
            ("client_addr", addr),
            ("client_port", port),
            ("backend_start", micros(backend.backend_start)),
            ("xact_start", live.xact_start.map_or(Value::Null, micros)),
            ("query_start", live.query_start.map_or(Value::Null, micros)),
            ("state_change", micros(live.state_change)),
            ("state", text(live.state)),
            // Another user's statement is not a role's to read (PostgreSQL's rule: a
            // superuser, or the same user).
            (
                "query",
                if source.sees_queries_of(&backend.user) {
                    text(live.query)
                } else {
                    text("<insufficient privilege>")
                },
            ),
            ("backend_type", text("client backend")),
        ]);
    }
    rows.table()
}

/// Comments of tables, views and their columns (`COMMENT ON`).
fn pg_description(source: &Source) -> Arc<dyn TableProvider> {
    let mut rows = Rows::new(&c::PG_DESCRIPTION);
    for description in relations::descriptions(source.warehouse) {
        rows.push(&[
            ("objoid", oid(description.objoid)),
            ("classoid", oid(c::PG_CLASS.oid)),
            ("objsubid", int(description.objsubid)),
            ("description", text(description.text)),
        ]);
    }
    rows.table()
}

/// Sequences' definitions, by OID.
fn pg_sequence(source: &Source) -> Arc<dyn TableProvider> {
    let mut rows = Rows::new(&c::PG_SEQUENCE);
    for sequence in relations::sequences(source.warehouse) {
        let def = sequence.sequence.def();
        rows.push(&[
            ("seqrelid", oid(sequence.oid)),
            ("seqtypid", oid(sequence.type_oid())),
            ("seqstart", int(def.start)),
            ("seqincrement", int(def.increment)),
            ("seqmax", int(def.max_value)),
            ("seqmin", int(def.min_value)),
            ("seqcache", int(def.cache)),
            ("seqcycle", Value::Bool(def.cycle)),
        ]);
    }
    rows.table()
}

/// Sequences by name, with the last value handed out.
fn pg_sequences(source: &Source) -> Arc<dyn TableProvider> {
    let mut rows = Rows::new(&c::PG_SEQUENCES);
    for sequence in relations::sequences(source.warehouse) {
        let def = sequence.sequence.def();
        rows.push(&[
            ("schemaname", text(&sequence.schema)),
            ("sequencename", text(&sequence.name)),
            ("sequenceowner", text(source.owner)),
            ("data_type", oid(sequence.type_oid())),
            ("start_value", int(def.start)),
            ("min_value", int(def.min_value)),
            ("max_value", int(def.max_value)),
            ("increment_by", int(def.increment)),
            ("cycle", Value::Bool(def.cycle)),
            ("cache_size", int(def.cache)),
            ("last_value", sequence.sequence.last_value().map_or(Value::Null, int)),
        ]);
    }
    rows.table()
}

/// Views and their queries.
fn pg_views(source: &Source) -> Arc<dyn TableProvider> {
    let mut rows = Rows::new(&c::PG_VIEWS);
    for view in relations::views(source.warehouse) {
        rows.push(&[
            ("schemaname", text(&view.schema)),
            ("viewname", text(&view.name)),
            ("viewowner", text(source.owner)),
            ("definition", text(view.definition())),
        ]);
    }
    rows.table()
}

fn pg_tables(source: &Source) -> Arc<dyn TableProvider> {
    let mut rows = Rows::new(&c::PG_TABLES);
    for table in user_tables(source) {
        rows.push(&[
            ("schemaname", text(&table.schema)),
            ("tablename", text(&table.name)),
            ("tableowner", text(source.owner)),
            ("hasindexes", Value::Bool(!table.indexes.is_empty())),
            ("hasrules", Value::Bool(false)),
            ("hastriggers", Value::Bool(false)),
            ("rowsecurity", Value::Bool(false)),
        ]);
    }
    for def in ALL.iter().filter(|d| !d.view) {
        rows.push(&[
            ("schemaname", text(SCHEMA)),
            ("tablename", text(def.name)),
            ("tableowner", text(source.owner)),
        ]);
    }
    rows.table()
}

fn pg_indexes(source: &Source) -> Arc<dyn TableProvider> {
    let mut rows = Rows::new(&c::PG_INDEXES);
    for table in user_tables(source) {
        for index in &table.indexes {
            rows.push(&[
                ("schemaname", text(&table.schema)),
                ("tablename", text(&table.name)),
                ("indexname", text(&index.name)),
                ("indexdef", text(index.definition(&table))),
            ]);
        }
    }
    rows.table()
}

/// Per table: rows live (base plus changes, as Tarn's statistics count them).
fn pg_stat_tables(def: &'static Def, source: &Source) -> Arc<dyn TableProvider> {
    let mut rows = Rows::new(def);
    for table in user_tables(source) {
        rows.push(&[
            ("relid", oid(table.oid)),
            ("schemaname", text(&table.schema)),
            ("relname", text(&table.name)),
            ("n_live_tup", int(table.rows as i64)),
        ]);
    }
    rows.table()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every column a builder sets exists (a misspelt one panics), for every catalog.
    #[tokio::test]
    async fn every_catalog_builds() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(dir.path().to_str().unwrap()).await.unwrap();
        let activity = crate::activity::Activity::default();
        let source = Source {
            warehouse: &warehouse,
            database: "tarn",
            owner: "tarn",
            activity: &activity,
            reader: None,
        };
        for def in ALL {
            let table = table(def.name, &source).expect("listed");
            assert_eq!(table.schema().fields().len(), def.columns.len(), "{}", def.name);
        }
        assert!(table("pg_nothing", &source).is_none());
        // `int2vector` columns say so, for the wire.
        let index = table("pg_index", &source).unwrap().schema();
        let indkey = index.field_with_name("indkey").unwrap();
        assert_eq!(crate::types::pg_type_of(indkey), crate::types::PgType::INT2VECTOR);
    }
}
