//! [`TarnView`]: a view as a DataFusion `TableProvider`. Its query is planned at each
//! scan with the reading session's state, so it reads the tables at that session's
//! snapshots (its transaction's, inside one) and a view always shows the tables as they
//! are now. Filters and the projection of the reading query go on top of the view's
//! plan before it is optimized, so they reach the view's tables.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{cast, col, Expr, LogicalPlanBuilder, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use tarn_storage::ViewDef;

#[derive(Debug)]
pub struct TarnView {
    def: Arc<ViewDef>,
}

impl TarnView {
    pub fn new(def: Arc<ViewDef>) -> Self {
        Self { def }
    }

    pub fn name(&self) -> &tarn_storage::TableName {
        &self.def.name
    }
}

#[async_trait]
impl TableProvider for TarnView {
    fn schema(&self) -> SchemaRef {
        self.def.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn get_table_definition(&self) -> Option<&str> {
        Some(&self.def.query)
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let state = state
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| DataFusionError::Internal("a view is read by a SessionState".into()))?;
        let plan = crate::statements::views::plan_view_query(state, &self.def.query)
            .await
            .map_err(|e| e.into_datafusion())?;
        // The view's columns as it was created, its names and types: found in the query
        // by name (a `*` over a table that gained a column since still gives the old
        // columns, as in PostgreSQL, where `*` is expanded at creation), or by position.
        let planned = plan.schema().clone();
        let by_name: Option<Vec<usize>> = self
            .def
            .schema
            .fields()
            .iter()
            .map(|field| {
                let mut matches =
                    planned.fields().iter().enumerate().filter(|(_, f)| f.name() == field.name());
                match (matches.next(), matches.next()) {
                    (Some((i, _)), None) => Some(i),
                    _ => None,
                }
            })
            .collect();
        let positions = match by_name {
            Some(positions) => positions,
            None if planned.fields().len() == self.def.schema.fields().len() => {
                (0..planned.fields().len()).collect()
            }
            None => {
                return Err(DataFusionError::Plan(format!(
                    "view \"{}\" no longer matches its query's columns; create it again",
                    self.def.name
                )))
            }
        };
        let columns = positions.into_iter().zip(self.def.schema.fields()).map(|(i, field)| {
            let (qualifier, planned) = planned.qualified_field(i);
            let expr = Expr::Column(datafusion::common::Column::from((qualifier, planned)));
            let typed = if planned.data_type() == field.data_type() {
                expr
            } else {
                cast(expr, field.data_type().clone())
            };
            typed.alias(field.name())
        });
        let mut builder = LogicalPlanBuilder::from(plan).project(columns)?;
        // The reading query's filters name the view's columns under its own qualifier.
        if let Some(filter) = conjunction(filters.iter().cloned().map(unnormalize_col)) {
            builder = builder.filter(filter)?;
        }
        if let Some(projection) = projection {
            let fields = self.def.schema.fields();
            builder = builder.project(
                projection.iter().map(|&i| col(datafusion::common::Column::from_name(fields[i].name()))),
            )?;
        }
        if let Some(limit) = limit {
            builder = builder.limit(0, Some(limit))?;
        }
        state.create_physical_plan(&builder.build()?).await
    }
}
