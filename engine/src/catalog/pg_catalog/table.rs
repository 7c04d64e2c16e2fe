//! How a catalog table is declared and filled: a [`Def`] names its columns and their
//! [`Kind`]s (generated in `columns.rs`), [`Rows`] collects rows that name only the
//! columns they set. Every other column takes its kind's empty value (`0`, `false`,
//! `''` for `"char"`, NULL for text and arrays), which is what PostgreSQL shows for
//! a feature Tarn does not have (no ACL, no TOAST table, no triggers).

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, Int8Builder, ListBuilder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
    UInt32Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::borrow::Cow;

use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{EmptyRelation, Expr, LogicalPlan};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;

/// The Postgres types of catalog columns, as Arrow holds them. `"char"` is `Int8`
/// (sent as Postgres' `"char"`, which drivers decode as a byte), OIDs are `UInt32`
/// (sent as `oid`), `regproc` columns hold the function's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Oid,
    RegProc,
    Char,
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Text,
    Timestamptz,
    /// `int2vector` (`indkey`) and `int2[]` (`conkey`).
    Int2Vector,
    Int2Array,
    OidVector,
    OidArray,
    TextArray,
}

impl Kind {
    pub fn data_type(self) -> DataType {
        let list = |item: DataType| DataType::List(Arc::new(Field::new("item", item, true)));
        match self {
            Kind::Oid => DataType::UInt32,
            Kind::RegProc | Kind::Text => DataType::Utf8,
            Kind::Char => DataType::Int8,
            Kind::Bool => DataType::Boolean,
            Kind::Int2 => DataType::Int16,
            Kind::Int4 => DataType::Int32,
            Kind::Int8 => DataType::Int64,
            Kind::Float4 => DataType::Float32,
            Kind::Float8 => DataType::Float64,
            Kind::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Kind::Int2Vector | Kind::Int2Array => list(DataType::Int16),
            Kind::OidVector | Kind::OidArray => list(DataType::UInt32),
            Kind::TextArray => list(DataType::Utf8),
        }
    }

    /// A column of this kind; `int2vector` and `oidvector` say so in the field's
    /// metadata (they are lists to Arrow, but their own types on the wire), and so does
    /// `regproc` (a function's name, or `-` for none: the OID 0).
    pub fn field(self, name: &str) -> Field {
        let field = Field::new(name, self.data_type(), true);
        let pg_type = match self {
            Kind::Int2Vector => "int2vector",
            Kind::OidVector => "oidvector",
            // Text to Arrow and on the wire; the catalog rules know it by this.
            Kind::RegProc => "regproc",
            _ => return field,
        };
        field.with_metadata([(crate::types::PG_TYPE_KEY.to_string(), pg_type.to_string())].into())
    }

    /// The column's Postgres type OID, for `pg_attribute.atttypid`.
    pub fn type_oid(self) -> u32 {
        match self {
            Kind::Oid => 26,
            Kind::RegProc => 24,
            Kind::Char => 18,
            Kind::Bool => 16,
            Kind::Int2 => 21,
            Kind::Int4 => 23,
            Kind::Int8 => 20,
            Kind::Float4 => 700,
            Kind::Float8 => 701,
            Kind::Text => 25,
            Kind::Timestamptz => 1184,
            Kind::Int2Vector => 22,
            Kind::Int2Array => 1005,
            Kind::OidVector => 30,
            Kind::OidArray => 1028,
            Kind::TextArray => 1009,
        }
    }
}

/// A system catalog or view: its name, its OID (PostgreSQL's own, which tools
/// hard-code: `pg_class` is 1259) and its columns.
#[derive(Debug)]
pub struct Def {
    pub name: &'static str,
    pub oid: u32,
    pub view: bool,
    pub columns: &'static [(&'static str, Kind)],
}

impl Def {
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(self.columns.iter().map(|(name, kind)| kind.field(name)).collect::<Vec<_>>()))
    }

    /// The catalog of a feature Tarn does not have: no rows, and known to have none
    /// when a query is planned, so a query over it plans to nothing (DataFusion drops
    /// what reads an empty relation, even subqueries it could not run).
    pub fn empty(&'static self) -> Arc<dyn TableProvider> {
        let schema = self.schema();
        let dfschema =
            datafusion::common::DFSchema::try_from(schema.as_ref().clone()).expect("catalog schema");
        Arc::new(EmptyCatalog {
            schema,
            plan: LogicalPlan::EmptyRelation(EmptyRelation {
                produce_one_row: false,
                schema: Arc::new(dfschema),
            }),
        })
    }
}

#[derive(Debug)]
struct EmptyCatalog {
    schema: SchemaRef,
    plan: LogicalPlan,
}

#[async_trait::async_trait]
impl TableProvider for EmptyCatalog {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn get_logical_plan(&self) -> Option<Cow<'_, LogicalPlan>> {
        Some(Cow::Borrowed(&self.plan))
    }

    async fn scan(
        &self,
        _: &dyn Session,
        projection: Option<&Vec<usize>>,
        _: &[Expr],
        _: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(columns) => Arc::new(self.schema.project(columns)?),
            None => self.schema.clone(),
        };
        Ok(Arc::new(EmptyExec::new(schema)))
    }
}

/// A value of one column of one row.
#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Oid(u32),
    Text(String),
    Char(u8),
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Microseconds since the epoch.
    Time(i64),
    Ints(Vec<i64>),
    Texts(Vec<String>),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<Option<String>> for Value {
    fn from(s: Option<String>) -> Self {
        s.map_or(Value::Null, Value::Text)
    }
}

/// The rows of one catalog table, built column by column.
pub struct Rows {
    def: &'static Def,
    builders: Vec<Box<dyn ArrayBuilder>>,
}

impl Rows {
    pub fn new(def: &'static Def) -> Self {
        let builders = def.columns.iter().map(|(_, kind)| builder(*kind)).collect();
        Rows { def, builders }
    }

    /// Adds a row. `values` names the columns it sets; a name the table does not have is
    /// a mistake in Tarn's code, caught by the catalog tests.
    pub fn push(&mut self, values: &[(&str, Value)]) {
        for (name, _) in values {
            assert!(
                self.def.columns.iter().any(|(c, _)| c == name),
                "{} has no column {name}",
                self.def.name
            );
        }
        for (i, (column, kind)) in self.def.columns.iter().enumerate() {
            let value = values.iter().find(|(name, _)| name == column).map(|(_, v)| v);
            append(self.builders[i].as_mut(), *kind, value);
        }
    }

    pub fn table(mut self) -> Arc<dyn TableProvider> {
        let schema = self.def.schema();
        let columns: Vec<ArrayRef> = self.builders.iter_mut().map(|b| b.finish()).collect();
        let columns = columns
            .into_iter()
            .zip(schema.fields())
            .map(|(array, field)| match field.data_type() {
                // The list builders' item fields are named as Arrow likes; the schema's win.
                DataType::List(_) => arrow::compute::cast(&array, field.data_type()).expect("same list type"),
                DataType::Timestamp(..) => {
                    arrow::compute::cast(&array, field.data_type()).expect("timestamp")
                }
                _ => array,
            })
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), columns).expect("catalog rows match their columns");
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).expect("catalog table"))
    }
}

fn builder(kind: Kind) -> Box<dyn ArrayBuilder> {
    match kind {
        Kind::Oid => Box::new(UInt32Builder::new()),
        Kind::RegProc | Kind::Text => Box::new(StringBuilder::new()),
        Kind::Char => Box::new(Int8Builder::new()),
        Kind::Bool => Box::new(BooleanBuilder::new()),
        Kind::Int2 => Box::new(Int16Builder::new()),
        Kind::Int4 => Box::new(Int32Builder::new()),
        Kind::Int8 => Box::new(Int64Builder::new()),
        Kind::Float4 => Box::new(Float32Builder::new()),
        Kind::Float8 => Box::new(Float64Builder::new()),
        Kind::Timestamptz => Box::new(TimestampMicrosecondBuilder::new()),
        Kind::Int2Vector | Kind::Int2Array => Box::new(ListBuilder::new(Int16Builder::new())),
        Kind::OidVector | Kind::OidArray => Box::new(ListBuilder::new(UInt32Builder::new())),
        Kind::TextArray => Box::new(ListBuilder::new(StringBuilder::new())),
    }
}

fn append(builder: &mut dyn ArrayBuilder, kind: Kind, value: Option<&Value>) {
    fn get<B: 'static>(builder: &mut dyn ArrayBuilder) -> &mut B {
        builder.as_any_mut().downcast_mut::<B>().expect("builder of the column's kind")
    }
    match kind {
        Kind::Oid => get::<UInt32Builder>(builder).append_option(match value {
            None => Some(0),
            Some(Value::Oid(o)) => Some(*o),
            Some(Value::Null) => None,
            _ => mismatch(kind, value),
        }),
        Kind::RegProc | Kind::Text => get::<StringBuilder>(builder).append_option(match value {
            None | Some(Value::Null) => None,
            Some(Value::Text(s)) => Some(s.as_str()),
            _ => mismatch(kind, value),
        }),
        Kind::Char => get::<Int8Builder>(builder).append_option(match value {
            None => Some(0),
            Some(Value::Char(c)) => Some(*c as i8),
            Some(Value::Null) => None,
            _ => mismatch(kind, value),
        }),
        Kind::Bool => get::<BooleanBuilder>(builder).append_option(match value {
            None => Some(false),
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::Null) => None,
            _ => mismatch(kind, value),
        }),
        Kind::Int2 => get::<Int16Builder>(builder).append_option(int(kind, value).map(|i| i as i16)),
        Kind::Int4 => get::<Int32Builder>(builder).append_option(int(kind, value).map(|i| i as i32)),
        Kind::Int8 => get::<Int64Builder>(builder).append_option(int(kind, value)),
        Kind::Float4 => get::<Float32Builder>(builder).append_option(float(kind, value).map(|f| f as f32)),
        Kind::Float8 => get::<Float64Builder>(builder).append_option(float(kind, value)),
        Kind::Timestamptz => get::<TimestampMicrosecondBuilder>(builder).append_option(match value {
            None | Some(Value::Null) => None,
            Some(Value::Time(t)) => Some(*t),
            _ => mismatch(kind, value),
        }),
        Kind::Int2Vector | Kind::Int2Array => {
            let list = get::<ListBuilder<Int16Builder>>(builder);
            match value {
                None | Some(Value::Null) => list.append_null(),
                Some(Value::Ints(items)) => list.append_value(items.iter().map(|&i| Some(i as i16))),
                _ => mismatch(kind, value),
            }
        }
        Kind::OidVector | Kind::OidArray => {
            let list = get::<ListBuilder<UInt32Builder>>(builder);
            match value {
                None | Some(Value::Null) => list.append_null(),
                Some(Value::Ints(items)) => list.append_value(items.iter().map(|&i| Some(i as u32))),
                _ => mismatch(kind, value),
            }
        }
        Kind::TextArray => {
            let list = get::<ListBuilder<StringBuilder>>(builder);
            match value {
                None | Some(Value::Null) => list.append_null(),
                Some(Value::Texts(items)) => list.append_value(items.iter().map(Some)),
                _ => mismatch(kind, value),
            }
        }
    }
}

fn mismatch(kind: Kind, value: Option<&Value>) -> ! {
    panic!("a {kind:?} column given {value:?}")
}

fn int(kind: Kind, value: Option<&Value>) -> Option<i64> {
    match value {
        None => Some(0),
        Some(Value::Int(i)) => Some(*i),
        Some(Value::Oid(o)) => Some(i64::from(*o)),
        Some(Value::Null) => None,
        _ => mismatch(kind, value),
    }
}

fn float(kind: Kind, value: Option<&Value>) -> Option<f64> {
    match value {
        None => Some(0.0),
        Some(Value::Float(f)) => Some(*f),
        Some(Value::Int(i)) => Some(*i as f64),
        Some(Value::Null) => None,
        _ => mismatch(kind, value),
    }
}
