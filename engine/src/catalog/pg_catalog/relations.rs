//! The warehouse as Postgres' catalogs describe it: each table with its columns, and
//! each index (the primary key's, vector and bm25 indexes), with the OIDs, type
//! modifiers and definitions `pg_class`, `pg_attribute`, `pg_index` and
//! `pg_get_indexdef` show. OIDs are derived from the table's id and the index's name,
//! so they stay the same for an object's life and across restarts.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field};
use tarn_storage::scalar_index::ScalarKind;
use tarn_storage::table_def::TableDef;
use tarn_storage::vector_index::IndexMethod;
use tarn_storage::Warehouse;

use super::{INFORMATION_SCHEMA_OID, PG_CATALOG_OID, PUBLIC_OID};
use crate::types::pg_type_of;

/// Access methods: Postgres' own, Tarn's two table formats, pgvector's and ParadeDB's.
pub const AM_HEAP: u32 = 2;
pub const AM_BTREE: u32 = 403;
pub const AM_LANCE: u32 = 16_391;
pub const AM_PARQUET: u32 = 16_392;
pub const AM_HNSW: u32 = 16_393;
pub const AM_IVFFLAT: u32 = 16_394;
pub const AM_BM25: u32 = 16_395;
pub const AM_IVF_PQ: u32 = 16_396;
pub const AM_BRIN: u32 = 3580;
pub const AM_BITMAP: u32 = 16_397;
pub const AM_BLOOM: u32 = 16_398;

/// (oid, name, type: 't' table or 'i' index)
pub const ACCESS_METHODS: &[(u32, &str, u8)] = &[
    (AM_HEAP, "heap", b't'),
    (AM_BTREE, "btree", b'i'),
    (405, "hash", b'i'),
    (783, "gist", b'i'),
    (2742, "gin", b'i'),
    (4000, "spgist", b'i'),
    (AM_BRIN, "brin", b'i'),
    (AM_BITMAP, "bitmap", b'i'),
    (AM_BLOOM, "bloom", b'i'),
    (AM_LANCE, "lance", b't'),
    (AM_PARQUET, "parquet", b't'),
    (AM_HNSW, "hnsw", b'i'),
    (AM_IVFFLAT, "ivfflat", b'i'),
    (AM_IVF_PQ, "ivf_pq", b'i'),
    (AM_BM25, "bm25", b'i'),
];

/// Tarn's own SQL functions as `pg_proc` and `\df` list them: pgvector's and
/// ParadeDB's, which users call by name (DataFusion's built-ins are not listed, as
/// PostgreSQL's own live in `pg_catalog`, which `\df` leaves out).
/// (name, arguments, result)
pub const FUNCTIONS: &[(&str, &str, &str)] = &[
    ("l2_distance", "vector, vector", "double precision"),
    ("cosine_distance", "vector, vector", "double precision"),
    ("inner_product", "vector, vector", "double precision"),
    ("vector_negative_inner_product", "vector, vector", "double precision"),
    ("l1_distance", "vector, vector", "double precision"),
    ("vector_dims", "vector", "integer"),
    ("vector_norm", "vector", "double precision"),
    ("l2_normalize", "vector", "vector"),
    ("subvector", "vector, integer, integer", "vector"),
    ("vector_add", "vector, vector", "vector"),
    ("vector_sub", "vector, vector", "vector"),
    ("vector_mul", "vector, vector", "vector"),
    ("bm25_match", "text, text", "boolean"),
    ("bm25_score", "text, text", "real"),
    ("snippet", "text, text, start_tag text, end_tag text, max_chars integer", "text"),
    (
        "hybrid_search",
        "table_name text, query text, vector vector, k integer, rrf_k integer, window integer, fusion text, \
         text_weight double precision, text_column text, vector_column text",
        "SETOF record",
    ),
];

pub fn function_oid(name: &str) -> u32 {
    oid_of(&[b"function", name.as_bytes()])
}

/// A stable OID in the range Postgres gives user objects (16384 up, below 2^31).
pub fn oid_of(parts: &[&[u8]]) -> u32 {
    // FNV-1a: fixed across builds and platforms, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(&[0xff]) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    16_384 + (hash % 2_000_000_000) as u32
}

pub fn namespace_oid(schema: &str) -> u32 {
    match schema {
        "pg_catalog" => PG_CATALOG_OID,
        "public" => PUBLIC_OID,
        "information_schema" => INFORMATION_SCHEMA_OID,
        other => oid_of(&[b"schema", other.as_bytes()]),
    }
}

pub fn table_oid(table_id: u64) -> u32 {
    oid_of(&[b"table", &table_id.to_le_bytes()])
}

fn index_oid(table_id: u64, name: &str) -> u32 {
    oid_of(&[b"index", &table_id.to_le_bytes(), name.as_bytes()])
}

/// A table as the catalogs show it.
pub struct TableRel {
    pub oid: u32,
    pub schema: String,
    pub namespace: u32,
    pub name: String,
    pub am: u32,
    pub rows: u64,
    /// `pg_table_size`: the bytes of its files the manifest lists.
    pub bytes: u64,
    pub def: TableDef,
    pub indexes: Vec<IndexRel>,
}

impl TableRel {
    pub fn columns(&self) -> impl Iterator<Item = Column<'_>> {
        self.def.schema.fields().iter().enumerate().map(|(i, field)| Column {
            attnum: i as i16 + 1,
            field,
            // A generated column's expression is its pg_attrdef entry, as in PostgreSQL.
            default: self.def.columns.get(i).and_then(|c| c.generated.clone().or_else(|| c.default.clone())),
            identity: self.def.columns.get(i).is_some_and(|c| c.identity.is_some()),
            generated: self.def.columns.get(i).is_some_and(|c| c.generated.is_some()),
        })
    }

    pub fn attnum(&self, column: &str) -> i64 {
        self.def.column_index(column).map_or(0, |i| i as i64 + 1)
    }

    /// `schema.table` as `pg_get_indexdef` writes it.
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

/// A column of a user table.
pub struct Column<'a> {
    pub attnum: i16,
    pub field: &'a Field,
    pub default: Option<String>,
    pub identity: bool,
    /// `GENERATED ALWAYS AS (...) STORED` (`default` is the expression).
    pub generated: bool,
}

impl Column<'_> {
    pub fn type_oid(&self) -> u32 {
        pg_type_of(self.field).oid
    }

    /// `atttypmod`: what the declared type said beyond its name (`vector(3)`: 3).
    pub fn typmod(&self) -> i32 {
        crate::types::type_modifier(self.field)
    }

    pub fn dims(&self) -> i16 {
        match self.field.data_type() {
            DataType::List(_) | DataType::LargeList(_) => 1,
            DataType::FixedSizeList(..) if self.type_oid() != crate::types::VECTOR_OID => 1,
            _ => 0,
        }
    }
}

/// An index as the catalogs show it.
pub struct IndexRel {
    pub oid: u32,
    pub name: String,
    pub am: u32,
    pub am_name: &'static str,
    /// Column numbers in the table, in index order.
    pub keys: Vec<i64>,
    pub unique: bool,
    pub primary: bool,
    /// `pg_get_indexdef`'s column list: `(embedding vector_l2_ops)`.
    pub columns_sql: String,
    /// `WITH (...)` of `pg_get_indexdef`, if any.
    pub options: Vec<String>,
}

impl IndexRel {
    pub fn definition(&self, table: &TableRel) -> String {
        let mut sql = format!(
            "CREATE {}INDEX {} ON {} USING {} ({})",
            if self.unique { "UNIQUE " } else { "" },
            quote_ident(&self.name),
            table.qualified(),
            self.am_name,
            self.columns_sql
        );
        if !self.options.is_empty() {
            sql.push_str(&format!(" WITH ({})", self.options.join(", ")));
        }
        sql
    }

    /// The primary key constraint's OID (`pg_constraint.oid`).
    pub fn constraint_oid(&self) -> u32 {
        oid_of(&[b"constraint", &self.oid.to_le_bytes()])
    }
}

/// A view as the catalogs show it.
pub struct ViewRel {
    pub oid: u32,
    pub schema: String,
    pub namespace: u32,
    pub name: String,
    pub def: Arc<tarn_storage::ViewDef>,
}

impl ViewRel {
    pub fn columns(&self) -> impl Iterator<Item = Column<'_>> {
        self.def.schema.fields().iter().enumerate().map(|(i, field)| Column {
            attnum: i as i16 + 1,
            field,
            default: None,
            identity: false,
            generated: false,
        })
    }

    /// `pg_get_viewdef`: the query, as PostgreSQL prints it (a leading space, a `;`).
    pub fn definition(&self) -> String {
        format!(" {};", self.def.query)
    }
}

/// A comment (`COMMENT ON`) as `pg_description` holds it.
pub struct Description {
    /// The relation's OID.
    pub objoid: u32,
    /// The column's number; 0 for the relation itself.
    pub objsubid: i32,
    pub text: String,
}

/// The comments of every table and view, with the OIDs and column numbers they
/// describe.
pub fn descriptions(warehouse: &Warehouse) -> Vec<Description> {
    let of = |objoid: u32, comments: &tarn_storage::Comments, schema: &arrow::datatypes::Schema| {
        let relation =
            comments.relation.iter().map(move |text| Description { objoid, objsubid: 0, text: text.clone() });
        let columns = comments.columns.iter().filter_map(move |(column, text)| {
            let at = schema.index_of(column).ok()?;
            Some(Description { objoid, objsubid: at as i32 + 1, text: text.clone() })
        });
        relation.chain(columns).collect::<Vec<_>>()
    };
    let mut found = Vec::new();
    // Read from the manifests: describing every table (keys, indexes) is not needed.
    for table in warehouse.all_tables() {
        let snapshot = table.snapshot();
        let def = &snapshot.manifest.table;
        found.extend(of(table_oid(table.id()), &def.comments, &def.schema));
    }
    for view in views(warehouse) {
        found.extend(of(view.oid, &view.def.comments, &view.def.schema));
    }
    found
}

/// Every view of the warehouse.
pub fn views(warehouse: &Warehouse) -> Vec<ViewRel> {
    warehouse
        .all_views()
        .into_iter()
        .map(|def| ViewRel {
            oid: oid_of(&[b"view", def.name.schema.as_bytes(), b".", def.name.table.as_bytes()]),
            schema: def.name.schema.clone(),
            namespace: namespace_oid(&def.name.schema),
            name: def.name.table.clone(),
            def,
        })
        .collect()
}

/// A sequence as the catalogs show it.
pub struct SequenceRel {
    pub oid: u32,
    pub schema: String,
    pub namespace: u32,
    pub name: String,
    pub sequence: Arc<tarn_storage::sequence::Sequence>,
}

impl SequenceRel {
    /// The OID of the sequence's value type (`pg_sequence.seqtypid`).
    pub fn type_oid(&self) -> u32 {
        match self.sequence.def().data_type {
            tarn_storage::sequence::SequenceType::Smallint => 21,
            tarn_storage::sequence::SequenceType::Integer => 23,
            tarn_storage::sequence::SequenceType::Bigint => 20,
        }
    }
}

pub fn sequence_oid(name: &tarn_storage::TableName) -> u32 {
    oid_of(&[b"sequence", name.schema.as_bytes(), b".", name.table.as_bytes()])
}

pub fn sequences(warehouse: &Warehouse) -> Vec<SequenceRel> {
    warehouse
        .all_sequences()
        .into_iter()
        .map(|sequence| {
            let name = &sequence.def().name;
            SequenceRel {
                oid: sequence_oid(name),
                schema: name.schema.clone(),
                namespace: namespace_oid(&name.schema),
                name: name.table.clone(),
                sequence: sequence.clone(),
            }
        })
        .collect()
}

/// Every table of the warehouse, with its indexes; external tables are tables (with
/// the `parquet` access method) to clients, as `\d` and drivers read them.
pub fn tables(warehouse: &Warehouse) -> Vec<TableRel> {
    let tables = warehouse.all_tables().into_iter().map(|table| describe(&table));
    tables.chain(warehouse.all_externals().into_iter().map(|e| describe_external(&e))).collect()
}

fn describe_external(external: &tarn_storage::external::ExternalDef) -> TableRel {
    let name = &external.name;
    let def = TableDef {
        name: name.clone(),
        schema: external.schema.clone(),
        columns: external
            .schema
            .fields()
            .iter()
            .map(|f| tarn_storage::ColumnMeta { name: f.name().clone(), ..Default::default() })
            .collect(),
        primary_key: Vec::new(),
        format: tarn_storage::table_def::BaseFormat::Parquet,
        bucket_count: 1,
        options: Default::default(),
        comments: external.comments.clone(),
    };
    TableRel {
        oid: oid_of(&[b"external", name.schema.as_bytes(), b".", name.table.as_bytes()]),
        schema: name.schema.clone(),
        namespace: namespace_oid(&name.schema),
        name: name.table.clone(),
        am: AM_PARQUET,
        rows: 0,
        bytes: 0,
        def,
        indexes: Vec::new(),
    }
}

fn describe(table: &Arc<tarn_storage::Table>) -> TableRel {
    let snapshot = table.snapshot();
    let manifest = &snapshot.manifest;
    let def = manifest.table.clone();
    let id = manifest.table_id;
    let mut rel = TableRel {
        oid: table_oid(id),
        schema: def.name.schema.clone(),
        namespace: namespace_oid(&def.name.schema),
        name: def.name.table.clone(),
        am: match def.format {
            tarn_storage::table_def::BaseFormat::Lance => AM_LANCE,
            tarn_storage::table_def::BaseFormat::Parquet => AM_PARQUET,
        },
        rows: manifest.row_count,
        // What the manifest knows: change files and a Parquet base's files (a Lance
        // base's size would take a read of its dataset).
        bytes: manifest.changes.iter().map(|c| c.bytes).sum::<u64>()
            + match &manifest.base {
                tarn_storage::manifest::BaseRef::Parquet { files } => files.iter().map(|f| f.bytes).sum(),
                tarn_storage::manifest::BaseRef::Lance { .. } => 0,
            },
        def: def.clone(),
        indexes: Vec::new(),
    };
    if !def.primary_key.is_empty() {
        let name = def.primary_key_constraint();
        rel.indexes.push(IndexRel {
            oid: index_oid(id, &name),
            keys: def.primary_key.iter().map(|c| rel.attnum(c)).collect(),
            columns_sql: def.primary_key.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", "),
            name,
            am: AM_BTREE,
            am_name: "btree",
            unique: true,
            primary: true,
            options: vec![],
        });
    }
    for index in &manifest.indexes {
        let (am, am_name) = match index.method {
            IndexMethod::Hnsw => (AM_HNSW, "hnsw"),
            IndexMethod::IvfFlat => (AM_IVFFLAT, "ivfflat"),
            IndexMethod::IvfPq => (AM_IVF_PQ, "ivf_pq"),
        };
        let options = match index.method {
            IndexMethod::Hnsw => {
                vec![format!("m='{}'", index.m), format!("ef_construction='{}'", index.ef_construction)]
            }
            _ => index.lists.map(|l| format!("lists='{l}'")).into_iter().collect(),
        };
        rel.indexes.push(IndexRel {
            oid: index_oid(id, &index.name),
            name: index.name.clone(),
            am,
            am_name,
            keys: vec![rel.attnum(&index.column)],
            unique: false,
            primary: false,
            columns_sql: format!("{} {}", quote_ident(&index.column), index.metric.opclass()),
            options,
        });
    }
    for index in &manifest.scalar_indexes {
        let (am, am_name) = match index.kind {
            ScalarKind::BTree => (AM_BTREE, "btree"),
            ScalarKind::Bitmap => (AM_BITMAP, "bitmap"),
            ScalarKind::ZoneMap => (AM_BRIN, "brin"),
            ScalarKind::Bloom => (AM_BLOOM, "bloom"),
        };
        let mut options: Vec<String> =
            index.rows_per_zone.map(|n| format!("rows_per_zone='{n}'")).into_iter().collect();
        options.extend(index.false_positive_rate.map(|p| format!("false_positive_rate='{p}'")));
        rel.indexes.push(IndexRel {
            oid: index_oid(id, &index.name),
            name: index.name.clone(),
            am,
            am_name,
            keys: index.columns.iter().map(|c| rel.attnum(c)).collect(),
            unique: false,
            primary: false,
            columns_sql: index.columns.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", "),
            options,
        });
    }
    for index in &manifest.text_indexes {
        let tokenizers: Vec<String> = index.columns.iter().map(|c| c.tokenizer.describe()).collect();
        rel.indexes.push(IndexRel {
            oid: index_oid(id, &index.name),
            name: index.name.clone(),
            am: AM_BM25,
            am_name: "bm25",
            keys: index.columns.iter().map(|c| rel.attnum(&c.name)).collect(),
            unique: false,
            primary: false,
            columns_sql: index.columns.iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", "),
            options: index
                .columns
                .iter()
                .zip(&tokenizers)
                .filter(|(_, t)| t.as_str() != "default")
                .map(|(c, t)| format!("{}.tokenizer='{t}'", c.name))
                .collect(),
        });
    }
    rel
}

/// An identifier as Postgres prints it: bare when it can be, quoted otherwise.
pub fn quote_ident(name: &str) -> String {
    let bare = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !is_reserved(name);
    if bare {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn is_reserved(word: &str) -> bool {
    use datafusion::sql::sqlparser::keywords::{
        Keyword, ALL_KEYWORDS, ALL_KEYWORDS_INDEX, RESERVED_FOR_COLUMN_ALIAS,
    };
    let upper = word.to_ascii_uppercase();
    ALL_KEYWORDS
        .binary_search(&upper.as_str())
        .ok()
        .map(|i| ALL_KEYWORDS_INDEX[i])
        .is_some_and(|k: Keyword| RESERVED_FOR_COLUMN_ALIAS.contains(&k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_when_postgres_would() {
        assert_eq!(quote_ident("items"), "items");
        assert_eq!(quote_ident("Items"), "\"Items\"");
        assert_eq!(quote_ident("a b"), "\"a b\"");
        assert_eq!(quote_ident("select"), "\"select\"");
    }

    #[test]
    fn oids_are_user_oids() {
        for i in 0..1000u64 {
            let oid = table_oid(i);
            assert!((16_384..2_100_000_000).contains(&oid));
        }
        assert_ne!(table_oid(1), table_oid(2));
        assert_eq!(table_oid(7), table_oid(7));
    }
}
