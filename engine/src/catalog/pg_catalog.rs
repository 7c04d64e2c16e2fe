//! The corner of `pg_catalog` that drivers read before they can decode a result:
//! `pg_type` (every type Tarn sends, `vector` among them), `pg_namespace` and an empty
//! `pg_range`, and `pg_class` (tables and indexes). tokio-postgres, for one, looks up
//! any OID it does not know in these.
//! Unqualified names (`FROM pg_type`) resolve here first, as in Postgres.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int16Array, Int8Array, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;

use tarn_storage::Warehouse;

use crate::types::{VECTOR_ARRAY_OID, VECTOR_OID};

pub const SCHEMA: &str = "pg_catalog";
pub const PG_CATALOG_OID: u32 = 11;
pub const PUBLIC_OID: u32 = 2200;

/// (oid, name, len, type category, element oid, array oid)
const TYPES: &[(u32, &str, i16, u8, u32, u32)] = &[
    (16, "bool", 1, b'B', 0, 1000),
    (17, "bytea", -1, b'U', 0, 1001),
    (18, "char", 1, b'Z', 0, 1002),
    (20, "int8", 8, b'N', 0, 1016),
    (21, "int2", 2, b'N', 0, 1005),
    (23, "int4", 4, b'N', 0, 1007),
    (25, "text", -1, b'S', 0, 1009),
    (26, "oid", 4, b'N', 0, 1028),
    (114, "json", -1, b'U', 0, 199),
    (700, "float4", 4, b'N', 0, 1021),
    (701, "float8", 8, b'N', 0, 1022),
    (705, "unknown", -2, b'X', 0, 0),
    (1015, "_varchar", -1, b'A', 1043, 0),
    (1000, "_bool", -1, b'A', 16, 0),
    (1005, "_int2", -1, b'A', 21, 0),
    (1007, "_int4", -1, b'A', 23, 0),
    (1009, "_text", -1, b'A', 25, 0),
    (1016, "_int8", -1, b'A', 20, 0),
    (1021, "_float4", -1, b'A', 700, 0),
    (1028, "_oid", -1, b'A', 26, 0),
    (1022, "_float8", -1, b'A', 701, 0),
    (1043, "varchar", -1, b'S', 0, 1015),
    (1082, "date", 4, b'D', 0, 1182),
    (1083, "time", 8, b'D', 0, 1183),
    (1114, "timestamp", 8, b'D', 0, 1115),
    (1184, "timestamptz", 8, b'D', 0, 1185),
    (1186, "interval", 16, b'T', 0, 1187),
    (1560, "bit", -1, b'V', 0, 1561),
    (1561, "_bit", -1, b'A', 1560, 0),
    (1562, "varbit", -1, b'V', 0, 1563),
    (1563, "_varbit", -1, b'A', 1562, 0),
    (1700, "numeric", -1, b'N', 0, 1231),
    (2950, "uuid", 16, b'U', 0, 2951),
    (3802, "jsonb", -1, b'U', 0, 3807),
    (VECTOR_OID, "vector", -1, b'U', 0, VECTOR_ARRAY_OID),
    (VECTOR_ARRAY_OID, "_vector", -1, b'A', VECTOR_OID, 0),
];

/// The `pg_catalog` schema with its tables: fixed ones, and `pg_class` read from the
/// warehouse at each lookup.
pub fn schema(warehouse: Arc<Warehouse>) -> Arc<dyn SchemaProvider> {
    let fixed = MemorySchemaProvider::new();
    for (name, table) in tables() {
        fixed.register_table(name.to_string(), table).expect("fresh schema");
    }
    Arc::new(PgCatalog { fixed, warehouse })
}

#[derive(Debug)]
struct PgCatalog {
    fixed: MemorySchemaProvider,
    warehouse: Arc<Warehouse>,
}

#[async_trait::async_trait]
impl SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.fixed.table_names();
        names.push("pg_class".into());
        names
    }

    async fn table(&self, name: &str) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        if name == "pg_class" {
            return Ok(Some(pg_class(&self.warehouse)));
        }
        self.fixed.table(name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        name == "pg_class" || self.fixed.table_exist(name)
    }
}

/// A table's or index's OID: stable for its life, unique in practice (from the
/// table's id), above Postgres' reserved range.
fn relation_oid(table_id: u64, index: Option<usize>) -> u32 {
    let base = 16_384 + (table_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as u32 % 1_000_000_000;
    base.wrapping_add(index.map_or(0, |i| i as u32 + 1))
}

/// `pg_class`: every table (`relkind` 'r') and vector index ('i'), for drivers and
/// ORMs that ask whether a relation exists (SQLAlchemy's `has_table`).
fn pg_class(warehouse: &Warehouse) -> Arc<dyn TableProvider> {
    let schema = Schema::new(vec![
        oid("oid"),
        Field::new("relname", DataType::Utf8, false),
        oid("relnamespace"),
        Field::new("relkind", DataType::Utf8, false),
        Field::new("reltuples", DataType::Float32, false),
    ]);
    let (mut oids, mut names, mut namespaces, mut kinds, mut tuples) =
        (vec![], vec![], vec![], vec![], vec![]);
    for table in warehouse.all_tables() {
        let snapshot = table.snapshot();
        let namespace = if table.name().schema == "public" { PUBLIC_OID } else { 0 };
        oids.push(relation_oid(snapshot.manifest.table_id, None));
        names.push(table.name().table.clone());
        namespaces.push(namespace);
        kinds.push("r");
        tuples.push(snapshot.manifest.row_count as f32);
        for (i, index) in snapshot.manifest.indexes.iter().enumerate() {
            oids.push(relation_oid(snapshot.manifest.table_id, Some(i)));
            names.push(index.name.clone());
            namespaces.push(namespace);
            kinds.push("i");
            tuples.push(snapshot.manifest.row_count as f32);
        }
    }
    mem(
        schema,
        vec![
            Arc::new(UInt32Array::from(oids)),
            Arc::new(StringArray::from(names)),
            Arc::new(UInt32Array::from(namespaces)),
            Arc::new(StringArray::from(kinds)),
            Arc::new(arrow::array::Float32Array::from(tuples)),
        ],
    )
}

pub fn tables() -> Vec<(&'static str, Arc<dyn TableProvider>)> {
    vec![("pg_type", pg_type()), ("pg_namespace", pg_namespace()), ("pg_range", pg_range())]
}

fn mem(schema: Schema, columns: Vec<ArrayRef>) -> Arc<dyn TableProvider> {
    let schema = Arc::new(schema);
    let batch = RecordBatch::try_new(schema.clone(), columns).expect("catalog batch");
    Arc::new(MemTable::try_new(schema, vec![vec![batch]]).expect("catalog table"))
}

fn oid(name: &str) -> Field {
    Field::new(name, DataType::UInt32, false)
}

fn pg_type() -> Arc<dyn TableProvider> {
    let schema = Schema::new(vec![
        oid("oid"),
        Field::new("typname", DataType::Utf8, false),
        oid("typnamespace"),
        Field::new("typlen", DataType::Int16, false),
        Field::new("typtype", DataType::Int8, false),
        Field::new("typcategory", DataType::Int8, false),
        Field::new("typisdefined", DataType::Boolean, false),
        oid("typelem"),
        oid("typarray"),
        oid("typbasetype"),
        oid("typrelid"),
        Field::new("typnotnull", DataType::Boolean, false),
        Field::new("typdelim", DataType::Int8, false),
    ]);
    let n = TYPES.len();
    let namespace =
        |o: u32| if o == VECTOR_OID || o == VECTOR_ARRAY_OID { PUBLIC_OID } else { PG_CATALOG_OID };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(TYPES.iter().map(|t| t.0))),
        Arc::new(StringArray::from_iter_values(TYPES.iter().map(|t| t.1))),
        Arc::new(UInt32Array::from_iter_values(TYPES.iter().map(|t| namespace(t.0)))),
        Arc::new(Int16Array::from_iter_values(TYPES.iter().map(|t| t.2))),
        Arc::new(Int8Array::from_iter_values(
            TYPES.iter().map(|t| if t.0 == 705 { b'p' } else { b'b' } as i8),
        )),
        Arc::new(Int8Array::from_iter_values(TYPES.iter().map(|t| t.3 as i8))),
        Arc::new(BooleanArray::from(vec![true; n])),
        Arc::new(UInt32Array::from_iter_values(TYPES.iter().map(|t| t.4))),
        Arc::new(UInt32Array::from_iter_values(TYPES.iter().map(|t| t.5))),
        Arc::new(UInt32Array::from(vec![0; n])),
        Arc::new(UInt32Array::from(vec![0; n])),
        Arc::new(BooleanArray::from(vec![false; n])),
        Arc::new(Int8Array::from(vec![b',' as i8; n])),
    ];
    mem(schema, columns)
}

/// `to_regtype(name)`: the OID of a type by any name Postgres accepts for it
/// (`integer`, `int4`, `public.vector`, `vector[]`...), NULL if there is none.
pub fn type_oid(name: &str) -> Option<u32> {
    let name = name.trim().to_ascii_lowercase();
    let name = name.trim_matches('"');
    let name = name.strip_prefix("pg_catalog.").or_else(|| name.strip_prefix("public.")).unwrap_or(name);
    // Modifiers (`vector(3)`, `varchar(10)`) do not change the type.
    let name = match name.find('(') {
        Some(at) if name.ends_with(')') || name.ends_with(")[]") => {
            let rest = &name[name.find(')').map(|i| i + 1).unwrap_or(name.len())..];
            format!("{}{rest}", name[..at].trim_end())
        }
        _ => name.to_string(),
    };
    if let Some(element) = name.strip_suffix("[]") {
        let oid = type_oid(element)?;
        return TYPES.iter().find(|t| t.0 == oid).map(|t| t.5).filter(|&array| array != 0);
    }
    let canonical = match name.as_str() {
        "integer" | "int" => "int4",
        "smallint" => "int2",
        "bigint" => "int8",
        "real" => "float4",
        "double precision" | "float" => "float8",
        "boolean" => "bool",
        "character varying" => "varchar",
        "decimal" => "numeric",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        "time without time zone" => "time",
        other => other,
    };
    TYPES.iter().find(|t| t.1 == canonical).map(|t| t.0)
}

/// The name `oid::regtype` shows.
pub fn type_name(oid: u32) -> Option<&'static str> {
    TYPES.iter().find(|t| t.0 == oid).map(|t| match t.1 {
        "int4" => "integer",
        "int2" => "smallint",
        "int8" => "bigint",
        "float4" => "real",
        "float8" => "double precision",
        "bool" => "boolean",
        "varchar" => "character varying",
        "timestamp" => "timestamp without time zone",
        "timestamptz" => "timestamp with time zone",
        "_vector" => "vector[]",
        other => other,
    })
}

fn pg_namespace() -> Arc<dyn TableProvider> {
    let schema = Schema::new(vec![oid("oid"), Field::new("nspname", DataType::Utf8, false), oid("nspowner")]);
    mem(
        schema,
        vec![
            Arc::new(UInt32Array::from(vec![PG_CATALOG_OID, PUBLIC_OID])),
            Arc::new(StringArray::from(vec![SCHEMA, "public"])),
            Arc::new(UInt32Array::from(vec![10, 10])),
        ],
    )
}

fn pg_range() -> Arc<dyn TableProvider> {
    let schema = Schema::new(vec![oid("rngtypid"), oid("rngsubtype")]);
    mem(
        schema,
        vec![Arc::new(UInt32Array::from(Vec::<u32>::new())), Arc::new(UInt32Array::from(Vec::<u32>::new()))],
    )
}

/// Catalog columns of Postgres' one-byte `"char"` type (`typtype`, `typcategory`,
/// `relkind`) are Arrow `Int8`; tools compare them with one-letter text (`typcategory =
/// 'A'`, postgres.js on connect). This analyzer rule (before type coercion, which would
/// try to read 'A' as a number) turns such a literal into the byte it names.
#[derive(Debug)]
pub struct CharLiterals;

impl datafusion::optimizer::AnalyzerRule for CharLiterals {
    fn analyze(
        &self,
        plan: datafusion::logical_expr::LogicalPlan,
        _: &datafusion::config::ConfigOptions,
    ) -> datafusion::error::Result<datafusion::logical_expr::LogicalPlan> {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        use datafusion::common::ScalarValue;
        use datafusion::logical_expr::{Expr, ExprSchemable};
        let byte = |e: &Expr| match e {
            Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)), _) if s.len() == 1 => {
                Some(Expr::Literal(ScalarValue::Int8(Some(s.as_bytes()[0] as i8)), None))
            }
            _ => None,
        };
        plan.transform_up_with_subqueries(|node| {
            let mut schema = datafusion::common::DFSchema::empty();
            for input in node.inputs() {
                schema.merge(input.schema());
            }
            let is_char = |e: &Expr| e.get_type(&schema).is_ok_and(|t| t == DataType::Int8);
            node.map_expressions(|e| {
                e.transform_up(|mut e| {
                    let changed = match &mut e {
                        Expr::BinaryExpr(b) if is_char(&b.left) => {
                            byte(&b.right).map(|l| *b.right = l).is_some()
                        }
                        Expr::BinaryExpr(b) if is_char(&b.right) => {
                            byte(&b.left).map(|l| *b.left = l).is_some()
                        }
                        Expr::InList(list) if is_char(&list.expr) => {
                            let mut any = false;
                            for item in &mut list.list {
                                if let Some(l) = byte(item) {
                                    *item = l;
                                    any = true;
                                }
                            }
                            any
                        }
                        _ => false,
                    };
                    Ok(if changed { Transformed::yes(e) } else { Transformed::no(e) })
                })
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "tarn_char_literals"
    }
}
