//! `lineage('schema.table.column' [, 'upstream' | 'downstream'])`: the column's data
//! flow across statements, walked over the `columnLineage` facets of the completed
//! runs in the lineage log.
//!
//! Each edge is an input column that made an output column in some run (a statement
//! that ran many times gives one edge, with its count and its latest run). Upstream
//! (the default) follows edges from the column to what it came from, then from those,
//! and so on; downstream the other way. Every kind of edge is followed, indirect ones
//! too (a filter's column decides what reaches the columns below it); `depth` says how
//! many edges from the column a row is, a column seen before is not walked again.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Weak};

use arrow::array::{ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session as CatalogSession, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use tarn_storage::lineage::{EventType, RunEvent, Subtype, TransformationType};
use tarn_storage::Warehouse;

/// A column: `schema.table` and the column.
type Node = (String, String);

/// An edge's identity: from, to, type, subtype, masking.
type EdgeKey = (Node, Node, TransformationType, Subtype, bool);

/// The runs that made an edge.
struct Seen {
    runs: i64,
    last_run: String,
    last_job: String,
    /// Microseconds since the epoch.
    last_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Direction {
    Upstream,
    Downstream,
}

/// The `lineage` table function.
#[derive(Debug)]
pub struct LineageFunction(pub Weak<Warehouse>);

impl TableFunctionImpl for LineageFunction {
    fn call(&self, args: &[Expr]) -> DfResult<Arc<dyn TableProvider>> {
        let text = |e: &Expr| match e {
            Expr::Literal(
                ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)),
                _,
            ) => Some(s.clone()),
            Expr::Column(c) => Some(c.flat_name()),
            _ => None,
        };
        let usage = "lineage() takes a column, 'schema.table.column' or 'table.column', and \
                     optionally 'upstream' or 'downstream'";
        let (column, direction) = match args {
            [column] => (text(column), Some(Direction::Upstream)),
            [column, direction] => (
                text(column),
                match text(direction).map(|d| d.to_lowercase()).as_deref() {
                    Some("upstream") => Some(Direction::Upstream),
                    Some("downstream") => Some(Direction::Downstream),
                    _ => None,
                },
            ),
            _ => (None, None),
        };
        let (Some(column), Some(direction)) = (column, direction) else {
            return Err(DataFusionError::Plan(usage.into()));
        };
        let parts: Vec<&str> = column.split('.').collect();
        let start = match parts[..] {
            [schema, table, column] => (format!("{schema}.{table}"), column.to_string()),
            [table, column] => {
                (format!("{}.{table}", crate::statements::ddl::DEFAULT_SCHEMA), column.to_string())
            }
            _ => return Err(DataFusionError::Plan(usage.into())),
        };
        Ok(Arc::new(LineageWalk { warehouse: self.0.clone(), start, direction }))
    }
}

#[derive(Debug)]
struct LineageWalk {
    warehouse: Weak<Warehouse>,
    start: Node,
    direction: Direction,
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("depth", DataType::Int32, false),
        Field::new("source_table", DataType::Utf8, false),
        Field::new("source_column", DataType::Utf8, false),
        Field::new("target_table", DataType::Utf8, false),
        Field::new("target_column", DataType::Utf8, false),
        Field::new("transformation_type", DataType::Utf8, false),
        Field::new("subtype", DataType::Utf8, false),
        Field::new("masking", DataType::Boolean, false),
        Field::new("runs", DataType::Int64, false),
        Field::new("last_run_id", DataType::Utf8, false),
        Field::new("last_job", DataType::Utf8, false),
        Field::new("last_event_time", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
    ]))
}

/// Every edge of the completed runs' column lineage.
fn edges(events: &[RunEvent]) -> BTreeMap<EdgeKey, Seen> {
    let mut edges: BTreeMap<EdgeKey, Seen> = BTreeMap::new();
    for event in events.iter().filter(|e| e.event_type == EventType::Complete) {
        let at = chrono::DateTime::parse_from_rfc3339(&event.event_time).map_or(0, |t| t.timestamp_micros());
        for output in &event.outputs {
            let Some(facet) = &output.facets.column_lineage else { continue };
            for (column, lineage) in &facet.body.fields {
                let to = (output.name.clone(), column.clone());
                for input in &lineage.input_fields {
                    let from = (input.name.clone(), input.field.clone());
                    for t in &input.transformations {
                        let key = (from.clone(), to.clone(), t.kind, t.subtype, t.masking);
                        let seen = edges.entry(key).or_insert(Seen {
                            runs: 0,
                            last_run: String::new(),
                            last_job: String::new(),
                            last_at: i64::MIN,
                        });
                        seen.runs += 1;
                        if at >= seen.last_at {
                            seen.last_at = at;
                            seen.last_run = event.run.run_id.clone();
                            seen.last_job = format!("{}.{}", event.job.namespace, event.job.name);
                        }
                    }
                }
            }
        }
    }
    edges
}

/// The edges reached from `start`, breadth first, with their depth.
fn walk<'a>(
    edges: &'a BTreeMap<EdgeKey, Seen>,
    start: &'a Node,
    direction: Direction,
) -> Vec<(i32, &'a EdgeKey, &'a Seen)> {
    let mut found = Vec::new();
    let mut visited: BTreeSet<&Node> = BTreeSet::from([start]);
    let mut frontier: VecDeque<(&Node, i32)> = VecDeque::from([(start, 1)]);
    while let Some((node, depth)) = frontier.pop_front() {
        for (key, seen) in edges {
            let (near, far) = match direction {
                Direction::Upstream => (&key.1, &key.0),
                Direction::Downstream => (&key.0, &key.1),
            };
            if near != node {
                continue;
            }
            found.push((depth, key, seen));
            if visited.insert(far) {
                frontier.push_back((far, depth + 1));
            }
        }
    }
    found
}

#[async_trait::async_trait]
impl TableProvider for LineageWalk {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let events = match self.warehouse.upgrade().as_ref().and_then(|w| w.lineage().cloned()) {
            Some(log) => log.records().await.map_err(|e| crate::EngineError::from(e).into_datafusion())?,
            None => Vec::new(),
        };
        let edges = edges(&events);
        let rows = walk(&edges, &self.start, self.direction);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1 .0 .0.as_str()))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1 .0 .1.as_str()))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1 .1 .0.as_str()))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1 .1 .1.as_str()))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| match r.1 .2 {
                TransformationType::Direct => "DIRECT",
                TransformationType::Indirect => "INDIRECT",
            }))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1 .3.as_str()))),
            Arc::new(BooleanArray::from(rows.iter().map(|r| r.1 .4).collect::<Vec<_>>())),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2.runs))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2.last_run.as_str()))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2.last_job.as_str()))),
            Arc::new(
                arrow::array::TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.2.last_at))
                    .with_timezone("UTC"),
            ),
        ];
        let schema = schema();
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        Ok(datafusion::datasource::memory::MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            schema,
            projection.cloned(),
        )?)
    }
}
