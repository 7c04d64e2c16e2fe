//! Plans kept between executions of one statement.
//!
//! A prepared statement, and a simple-protocol statement whose text comes again, keeps
//! the plan DataFusion made of it ([`PlanSlot`] in [`crate::Prepared`]), so an execute
//! skips turning SQL into a plan; a statement whose functions are all immutable keeps
//! its optimized plan too and skips the optimizer, and if it has no parameters and
//! reads no table (`SELECT 1`, a pool's ping) its physical plan, run again as it is.
//!
//! An optimized plan with parameters is a generic plan, as PostgreSQL's: made with
//! placeholders typed as the statement's parameters, each execute binds the values
//! into it and plans it physically. The kNN and BM25 rules take a query that is a
//! parameter as one that is a constant (`search/query_value.rs`), and the physical
//! planners of their nodes make every choice that depends on values (index or exact
//! search by the filters' selectivity). A plan whose `LIMIT`/`OFFSET` is a parameter
//! is not optimized ahead (the searches need k as a value), nor is an execute whose
//! value is `NULL` or does not cast to the parameter's type (planned with the values,
//! as before). What keeps a kept plan right:
//!
//! - It names tables, not snapshots: every execute swaps each Tarn table in it (scans,
//!   subqueries, the kNN node's scan) for that table at the snapshot the statement reads
//!   now: the newest, or inside a transaction the one it pinned, with its own writes on
//!   top ([`repin`]). A kept plan never reads a stale snapshot.
//! - It is dropped by any DDL in the server (the engine's catalog epoch, which also
//!   covers a table made in a schema earlier on the search path), by any change of the
//!   session's settings (`hnsw.ef_search`, `search_path`, ...), and when re-pinning
//!   finds a table dropped (or dropped and made again), a changed schema, or a
//!   transaction's own writes come or go (the kNN rule plans differently over them).
//! - Only plans that read Tarn tables alone are kept: catalog tables, table functions
//!   and `AS OF` reads are planned each time.
//!
//! Parameter types are fixed per prepared statement, so they need no key of their own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::catalog::default_table_source::{provider_as_source, source_as_provider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::Placeholder;
use datafusion::logical_expr::logical_plan::{FetchType, SkipType};
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, TableScan, Volatility};
use datafusion::physical_plan::ExecutionPlan;

use crate::catalog::provider::TarnTable;
use crate::error::Result;
use crate::search::bm25::Bm25Node;
use crate::search::knn::KnnNode;
use crate::statements::lookup::KeyLookup;
use crate::statements::plan_template::Template;

/// What a kept plan was made under; a plan is reused only under the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlanStamp {
    /// [`crate::Engine::catalog_epoch`] when planned.
    pub catalog: u64,
    /// The session's settings generation when planned.
    pub settings: u64,
}

/// A statement's plan as kept.
#[derive(Debug, Clone)]
pub(crate) enum KeptPlan {
    /// A query: the plan from SQL (parameters as placeholders); when it could be made
    /// ahead of the values, the optimized plan; when it reads no table either, the
    /// physical plan (run again as it is) with its result columns.
    Query {
        plan: LogicalPlan,
        optimized: Option<Optimized>,
        physical: Option<(SchemaRef, Arc<dyn ExecutionPlan>)>,
        /// A search's physical plan with slots for its values (see `plan_template.rs`).
        template: Option<Template>,
    },
    /// A primary-key lookup (see `lookup.rs`).
    Lookup(KeyLookup),
}

/// A query optimized before its parameters have values (a generic plan when it has
/// any).
#[derive(Debug, Clone)]
pub(crate) struct Optimized {
    pub plan: LogicalPlan,
    /// The type of each parameter `$1..` in the plan.
    pub param_types: Vec<DataType>,
}

impl Optimized {
    /// The values as the plan's parameters take them; `None` for a `NULL` or a value
    /// that does not cast (planned with the values instead).
    pub fn bind(&self, params: &[ScalarValue]) -> Option<Vec<ScalarValue>> {
        params
            .iter()
            .zip(&self.param_types)
            .map(|(value, ty)| match value {
                v if v.is_null() => None,
                v if &v.data_type() == ty => Some(v.clone()),
                v => crate::statements::params::cast_param(v, ty).ok(),
            })
            .collect()
    }
}

/// `plan` with every placeholder typed: as DataFusion inferred it, else as the
/// statement's parameter (`param_types`, what values are cast to), and those types;
/// `None` when a placeholder is not `$n`.
pub(crate) fn typed_placeholders(
    plan: &LogicalPlan,
    param_types: &[DataType],
) -> Option<(LogicalPlan, Vec<DataType>)> {
    let inferred = plan.get_parameter_types().ok()?;
    let mut types: Vec<DataType> = param_types.to_vec();
    for (id, ty) in inferred {
        let n: usize = id.strip_prefix('$')?.parse().ok().filter(|&n| n > 0)?;
        if types.len() < n {
            types.resize(n, DataType::Utf8);
        }
        if let Some(ty) = ty {
            types[n - 1] = ty;
        }
    }
    let typed = plan
        .clone()
        .transform_up_with_subqueries(|node| {
            node.map_expressions(|expr| {
                expr.transform(|e| match e {
                    Expr::Placeholder(Placeholder { id, field: None }) => {
                        let n: usize = id[1..].parse().expect("checked above");
                        let field = Arc::new(Field::new(&id, types[n - 1].clone(), true));
                        Ok(Transformed::yes(Expr::Placeholder(Placeholder { id, field: Some(field) })))
                    }
                    other => Ok(Transformed::no(other)),
                })
            })?
            .map_data(|node| node.recompute_schema())
        })
        .ok()?
        .data;
    Some((typed, types))
}

/// The one kept plan of a statement (shared by every copy of the prepared statement).
#[derive(Debug, Default)]
pub(crate) struct PlanSlot(Mutex<Option<(PlanStamp, Arc<KeptPlan>)>>);

impl PlanSlot {
    /// The kept plan and what it was made under.
    pub fn get(&self) -> Option<(PlanStamp, Arc<KeptPlan>)> {
        self.0.lock().expect("plan slot lock").clone()
    }

    pub fn put(&self, stamp: PlanStamp, plan: KeptPlan) {
        *self.0.lock().expect("plan slot lock") = Some((stamp, Arc::new(plan)));
    }

    pub fn clear(&self) {
        *self.0.lock().expect("plan slot lock") = None;
    }
}

/// Whether a query plan may be kept: every table it reads is a Tarn table (any other
/// provider may hold rows read when it was planned).
pub(crate) fn keepable(plan: &LogicalPlan) -> bool {
    every_node(plan, |node| match node {
        LogicalPlan::TableScan(scan) => is_tarn(scan),
        LogicalPlan::Extension(Extension { node }) => {
            node.as_any().is::<KnnNode>() || node.as_any().is::<Bm25Node>()
        }
        _ => true,
    })
}

/// Whether a query plan may be optimized before its parameter values are known and
/// its optimized form reused: its parameters are typed, none is a `LIMIT` or `OFFSET`
/// (the searches want k as a value), and no function's value may change between
/// executions (the optimizer folds `now()` into a constant).
pub(crate) fn optimizable_ahead(plan: &LogicalPlan) -> bool {
    every_node(plan, |node| {
        if let LogicalPlan::Limit(limit) = node {
            let fetch = matches!(limit.get_fetch_type(), Ok(FetchType::Literal(_)));
            let skip = matches!(limit.get_skip_type(), Ok(SkipType::Literal(_)));
            if !(fetch && skip) {
                return false;
            }
        }
        let mut fixed = true;
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                fixed &= match e {
                    Expr::Placeholder(p) => p.field.is_some(),
                    Expr::ScalarFunction(f) => f.func.signature().volatility == Volatility::Immutable,
                    _ => true,
                };
                Ok(if fixed { TreeNodeRecursion::Continue } else { TreeNodeRecursion::Stop })
            })
        })
        .expect("infallible");
        fixed
    })
}

/// Whether an (optimized) plan reads no table: its physical plan depends on no
/// snapshot.
pub(crate) fn reads_no_table(plan: &LogicalPlan) -> bool {
    every_node(plan, |node| !matches!(node, LogicalPlan::TableScan(_) | LogicalPlan::Extension(_)))
}

/// Whether `test` holds for every node of `plan`, subqueries' included.
fn every_node(plan: &LogicalPlan, mut test: impl FnMut(&LogicalPlan) -> bool) -> bool {
    let mut all = true;
    plan.apply_with_subqueries(|node| {
        all = test(node);
        Ok(if all { TreeNodeRecursion::Continue } else { TreeNodeRecursion::Stop })
    })
    .expect("infallible");
    all
}

/// Whether a physical plan can be run again as it is: made only of operators that keep
/// no state between runs (a repartition, for one, sets up its channels once).
pub(crate) fn reusable_physical(plan: &Arc<dyn ExecutionPlan>) -> bool {
    const STATELESS: &[&str] = &[
        "ProjectionExec",
        "PlaceholderRowExec",
        "EmptyExec",
        "FilterExec",
        "CoalesceBatchesExec",
        "GlobalLimitExec",
        "LocalLimitExec",
        "CooperativeExec",
    ];
    STATELESS.contains(&plan.name()) && plan.children().iter().all(|child| reusable_physical(child))
}

fn is_tarn(scan: &TableScan) -> bool {
    source_as_provider(&scan.source).is_ok_and(|p| p.downcast_ref::<TarnTable>().is_some())
}

/// `plan` with every Tarn table read as `current` gives it now; `None` when `current`
/// finds a table no longer the same (the plan must be made again).
pub(crate) fn repin(
    plan: &LogicalPlan,
    current: &dyn Fn(&TarnTable) -> Result<Option<TarnTable>>,
) -> Result<Option<LogicalPlan>> {
    let mut stale = false;
    let mut repin_scan = |scan: TableScan| -> Result<TableScan> {
        let provider = source_as_provider(&scan.source)?;
        let Some(old) = provider.downcast_ref::<TarnTable>() else {
            stale = true;
            return Ok(scan);
        };
        match current(old)? {
            Some(now) => Ok(TableScan { source: provider_as_source(Arc::new(now)), ..scan }),
            None => {
                stale = true;
                Ok(scan)
            }
        }
    };
    let plan = plan
        .clone()
        .transform_up_with_subqueries(|node| match node {
            LogicalPlan::TableScan(scan) => Ok(Transformed::yes(LogicalPlan::TableScan(
                repin_scan(scan).map_err(|e| e.into_datafusion())?,
            ))),
            LogicalPlan::Extension(Extension { node }) => {
                let any = node.as_any();
                let repinned: Option<Arc<dyn datafusion::logical_expr::UserDefinedLogicalNode>> =
                    if let Some(knn) = any.downcast_ref::<KnnNode>() {
                        let scan = repin_scan(knn.scan().clone()).map_err(|e| e.into_datafusion())?;
                        Some(Arc::new(knn.with_scan(scan)))
                    } else if let Some(bm25) = any.downcast_ref::<Bm25Node>() {
                        let scan = repin_scan(bm25.scan().clone()).map_err(|e| e.into_datafusion())?;
                        Some(Arc::new(bm25.with_scan(scan)))
                    } else {
                        None
                    };
                match repinned {
                    Some(node) => Ok(Transformed::yes(LogicalPlan::Extension(Extension { node }))),
                    None => Ok(Transformed::no(LogicalPlan::Extension(Extension { node }))),
                }
            }
            other => Ok(Transformed::no(other)),
        })?
        .data;
    Ok((!stale).then_some(plan))
}

/// Values kept by SQL text, for the texts a session sends again: at most
/// [`TextCache::CAPACITY`] texts of up to [`TextCache::MAX_TEXT`] bytes (when full, one
/// kept text makes room).
#[derive(Debug)]
pub(crate) struct TextCache<V> {
    entries: HashMap<Box<str>, V>,
}

impl<V> Default for TextCache<V> {
    fn default() -> Self {
        TextCache { entries: HashMap::new() }
    }
}

impl<V> TextCache<V> {
    const CAPACITY: usize = 256;
    const MAX_TEXT: usize = 64 << 10;

    pub fn get(&self, sql: &str) -> Option<&V> {
        self.entries.get(sql)
    }

    pub fn put(&mut self, sql: &str, value: V) {
        if sql.len() > Self::MAX_TEXT {
            return;
        }
        if self.entries.len() >= Self::CAPACITY && !self.entries.contains_key(sql) {
            let evicted = self.entries.keys().next().cloned();
            if let Some(evicted) = evicted {
                self.entries.remove(&evicted);
            }
        }
        self.entries.insert(sql.into(), value);
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}
