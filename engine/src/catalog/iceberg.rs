//! Iceberg external tables (`CREATE EXTERNAL TABLE t STORED AS ICEBERG LOCATION '...'`),
//! read with the `iceberg` crate's Arrow scan inside Tarn's own provider (the crate's
//! DataFusion integration is built on another DataFusion release).
//!
//! - The location is a table's folder (its newest metadata file is found in
//!   `metadata/`: the one `version-hint.text` names, else the highest version number;
//!   so each query reads the newest snapshot) or one `.metadata.json` file (that
//!   metadata's current snapshot, fixed).
//! - A scan reads the current snapshot, or with `AS OF VERSION n` the snapshot whose id
//!   (or sequence number) is `n`. The projection is Iceberg's column selection, the
//!   filters that translate (comparisons, `IN`, `IS [NOT] NULL`, `AND`/`OR`/`NOT` of
//!   columns and literals) its predicate, which prunes manifests, files and row groups;
//!   DataFusion applies every filter again above.
//! - Columns are read by name and cast to the table's (those a snapshot lacks are NULL).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};
use iceberg::expr::{Predicate, Reference};
use iceberg::io::{FileIOBuilder, LocalFsStorageFactory};
use iceberg::spec::Datum;
use iceberg::table::StaticTable;
use iceberg::TableIdent;

use crate::catalog::external::tarn_schema;
use crate::error::{EngineError, Result};

fn iceberg_error(e: iceberg::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// The metadata file of `location`: the file itself, or the newest of the folder's
/// `metadata/`.
pub fn metadata_file(location: &Path) -> Result<PathBuf> {
    let unreadable = |e: &dyn std::fmt::Display| EngineError::InvalidParameter {
        message: format!("{} is not an Iceberg table: {e}", location.display()),
    };
    if location.is_file() {
        return Ok(location.to_path_buf());
    }
    let folder = location.join("metadata");
    if let Ok(hint) = std::fs::read_to_string(folder.join("version-hint.text")) {
        let named = folder.join(format!("v{}.metadata.json", hint.trim()));
        if named.is_file() {
            return Ok(named);
        }
    }
    // `v12.metadata.json` (Hadoop tables) or `00012-<uuid>.metadata.json` (catalogs).
    let version = |name: &str| -> Option<u64> {
        let stem = name.strip_suffix(".metadata.json")?;
        let digits: String = stem.trim_start_matches('v').chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let mut newest: Option<(u64, PathBuf)> = None;
    for entry in std::fs::read_dir(&folder).map_err(|e| unreadable(&e))? {
        let entry = entry.map_err(|e| unreadable(&e))?;
        let name = entry.file_name();
        if let Some(v) = version(&name.to_string_lossy()) {
            if newest.as_ref().is_none_or(|(n, _)| v > *n) {
                newest = Some((v, entry.path()));
            }
        }
    }
    newest.map(|(_, path)| path).ok_or_else(|| unreadable(&"no metadata file in its metadata/ folder"))
}

/// The table at `location`, as its newest (or named) metadata file has it.
pub async fn load(location: &Path) -> Result<StaticTable> {
    let file = metadata_file(location)?;
    let io = FileIOBuilder::new(Arc::new(LocalFsStorageFactory)).build();
    let ident = TableIdent::from_strs(["tarn", "external"])
        .map_err(|e| EngineError::Internal { message: e.to_string() })?;
    StaticTable::from_metadata_file(&file.display().to_string(), ident, io).await.map_err(|e| {
        EngineError::InvalidParameter { message: format!("reading Iceberg metadata {}: {e}", file.display()) }
    })
}

/// The columns of the table's current schema, as Tarn's columns hold them.
pub fn schema_of(table: &StaticTable) -> Result<SchemaRef> {
    let metadata = table.metadata();
    let arrow = iceberg::arrow::schema_to_arrow_schema(metadata.current_schema())
        .map_err(|e| EngineError::unsupported(format!("an Iceberg column type Tarn cannot read: {e}")))?;
    Ok(tarn_schema(&arrow))
}

/// An Iceberg external table, at its newest snapshot or at `snapshot`.
#[derive(Debug)]
pub struct IcebergTable {
    pub schema: SchemaRef,
    pub location: PathBuf,
    /// `AS OF VERSION n`: a snapshot id or sequence number.
    pub snapshot: Option<i64>,
}

#[async_trait]
impl TableProvider for IcebergTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let table = load(&self.location).await.map_err(|e| e.into_datafusion())?;
        let metadata = table.metadata();
        let snapshot = match self.snapshot {
            None => metadata.current_snapshot_id(),
            Some(n) => Some(
                metadata
                    .snapshots()
                    .find(|s| s.snapshot_id() == n)
                    .or_else(|| metadata.snapshots().find(|s| s.sequence_number() == n))
                    .map(|s| s.snapshot_id())
                    .ok_or_else(|| {
                        DataFusionError::Plan(format!(
                            "the Iceberg table at {} has no snapshot {n} (its snapshots: {})",
                            self.location.display(),
                            metadata
                                .snapshots()
                                .map(|s| s.snapshot_id().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })?,
            ),
        };
        let output = Arc::new(match projection {
            Some(p) => self.schema.project(p)?,
            None => self.schema.as_ref().clone(),
        });
        // Only the columns this snapshot's schema has are asked of Iceberg.
        let schema_id = snapshot.and_then(|id| metadata.snapshot_by_id(id)).and_then(|s| s.schema_id());
        let iceberg_schema =
            schema_id.and_then(|id| metadata.schema_by_id(id)).unwrap_or(metadata.current_schema());
        let selected: Vec<String> = output
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|name| iceberg_schema.field_by_name(name).is_some())
            .collect();
        let predicate = filters.iter().filter_map(predicate).reduce(Predicate::and);
        let build = |with_filter: bool| {
            let mut builder = table.scan().select(selected.clone());
            if let Some(id) = snapshot {
                builder = builder.snapshot_id(id);
            }
            if let (true, Some(p)) = (with_filter, &predicate) {
                builder = builder.with_filter(p.clone());
            }
            builder.build()
        };
        // A predicate Iceberg cannot bind (a literal of another type) is left to DataFusion.
        let scan = match build(true) {
            Ok(scan) => scan,
            Err(_) if predicate.is_some() => build(false).map_err(iceberg_error)?,
            Err(e) => return Err(iceberg_error(e)),
        };
        let description = format!(
            "IcebergScan: location={}, snapshot={}, columns=[{}]{}",
            self.location.display(),
            snapshot.map_or("none".to_string(), |s| s.to_string()),
            selected.join(", "),
            predicate.as_ref().map(|p| format!(", predicate={p}")).unwrap_or_default()
        );
        Ok(Arc::new(IcebergScanExec::new(Arc::new(scan), output, description)))
    }
}

/// A DataFusion filter as an Iceberg predicate, when it is one of columns and literals.
fn predicate(expr: &Expr) -> Option<Predicate> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::And, right }) => {
            match (predicate(left), predicate(right)) {
                (Some(l), Some(r)) => Some(l.and(r)),
                // Either side alone is a weaker filter, still true of every row kept.
                (one, other) => one.or(other),
            }
        }
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Or, right }) => {
            Some(predicate(left)?.or(predicate(right)?))
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (column, value, op) = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v, _)) => (c, v, *op),
                (Expr::Literal(v, _), Expr::Column(c)) => (c, v, op.swap()?),
                _ => return None,
            };
            let column = Reference::new(column.name.clone());
            let value = datum(value)?;
            Some(match op {
                Operator::Eq => column.equal_to(value),
                Operator::NotEq => column.not_equal_to(value),
                Operator::Lt => column.less_than(value),
                Operator::LtEq => column.less_than_or_equal_to(value),
                Operator::Gt => column.greater_than(value),
                Operator::GtEq => column.greater_than_or_equal_to(value),
                _ => return None,
            })
        }
        Expr::IsNull(inner) => match inner.as_ref() {
            Expr::Column(c) => Some(Reference::new(c.name.clone()).is_null()),
            _ => None,
        },
        Expr::IsNotNull(inner) => match inner.as_ref() {
            Expr::Column(c) => Some(Reference::new(c.name.clone()).is_not_null()),
            _ => None,
        },
        Expr::InList(list) if !list.negated => {
            let Expr::Column(c) = list.expr.as_ref() else { return None };
            let values = list
                .list
                .iter()
                .map(|v| match v {
                    Expr::Literal(v, _) => datum(v),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            Some(Reference::new(c.name.clone()).is_in(values))
        }
        Expr::Not(inner) => Some(predicate(inner)?.negate()),
        _ => None,
    }
}

/// A literal as an Iceberg value, for the types both have the same way.
fn datum(value: &ScalarValue) -> Option<Datum> {
    Some(match value {
        ScalarValue::Boolean(Some(v)) => Datum::bool(*v),
        ScalarValue::Int8(Some(v)) => Datum::int(i32::from(*v)),
        ScalarValue::Int16(Some(v)) => Datum::int(i32::from(*v)),
        ScalarValue::Int32(Some(v)) => Datum::int(*v),
        ScalarValue::Int64(Some(v)) => Datum::long(*v),
        ScalarValue::Float32(Some(v)) => Datum::float(*v),
        ScalarValue::Float64(Some(v)) => Datum::double(*v),
        ScalarValue::Utf8(Some(v)) | ScalarValue::LargeUtf8(Some(v)) | ScalarValue::Utf8View(Some(v)) => {
            Datum::string(v)
        }
        ScalarValue::Date32(Some(v)) => Datum::date(*v),
        ScalarValue::TimestampMicrosecond(Some(v), None) => Datum::timestamp_micros(*v),
        ScalarValue::TimestampMicrosecond(Some(v), Some(_)) => Datum::timestamptz_micros(*v),
        _ => return None,
    })
}

/// Iceberg's Arrow scan as one partition, its batches cast to the table's columns.
#[derive(Debug)]
struct IcebergScanExec {
    scan: Arc<iceberg::scan::TableScan>,
    schema: SchemaRef,
    description: String,
    properties: Arc<PlanProperties>,
}

impl IcebergScanExec {
    fn new(scan: Arc<iceberg::scan::TableScan>, schema: SchemaRef, description: String) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        IcebergScanExec { scan, schema, description, properties }
    }
}

impl DisplayAs for IcebergScanExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

impl ExecutionPlan for IcebergScanExec {
    fn name(&self) -> &'static str {
        "IcebergScan"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn with_new_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, _partition: usize, _context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let scan = self.scan.clone();
        let schema = self.schema.clone();
        let batches = futures::stream::once(async move {
            scan.to_arrow().await.map(|batches| batches.map_err(iceberg_error)).map_err(iceberg_error)
        })
        .try_flatten()
        .map(move |batch| batch.and_then(|batch| conform(&batch, &schema)));
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches)))
    }
}

/// `batch`'s columns by name, cast to `schema`'s; a column it lacks is NULL.
fn conform(batch: &RecordBatch, schema: &Schema) -> DfResult<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) => Ok(arrow::compute::cast(column, field.data_type())?),
            None => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<DfResult<Vec<ArrayRef>>>()?;
    Ok(RecordBatch::try_new_with_options(
        Arc::new(schema.clone()),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}
