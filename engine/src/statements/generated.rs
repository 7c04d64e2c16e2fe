//! Stored generated columns, `GENERATED ALWAYS AS (expression) STORED`, as PostgreSQL
//! has them: the expression reads the row's other columns; `INSERT` may not give the
//! column a value, `UPDATE` may not set it (428C9); every row a statement writes gets
//! it computed. The computing is over each batch of written rows at once, so a column
//! `embed(title || ' ' || body)` embeds a whole `INSERT ... SELECT` or `COPY` batch in
//! batched forward passes, and an `UPDATE` that leaves the columns an expression reads
//! alone keeps the stored value without computing it again.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::{can_cast_types, cast};
use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::DFSchema;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{Expr, ExprSchemable, Volatility};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::sql::sqlparser::ast;
use tarn_storage::{StorageError, TableDef};

use crate::catalog::provider::nullable_schema;
use crate::error::{EngineError, Result};

/// The generation expression of column `index` planned over the table's row.
fn expression(state: &SessionState, def: &TableDef, schema: &DFSchema, index: usize) -> Result<Option<Expr>> {
    let Some(sql) = &def.columns[index].generated else { return Ok(None) };
    Ok(Some(state.create_logical_expr(sql, schema)?))
}

fn invalid_definition(message: String) -> EngineError {
    EngineError::InvalidObjectDefinition { message }
}

/// `CREATE TABLE`: each generation expression plans over the other columns, calls
/// nothing volatile, reads no generated column, and gives the column's type.
pub(crate) fn check_definition(state: &SessionState, def: &TableDef) -> Result<()> {
    if !def.columns.iter().any(|c| c.generated.is_some()) {
        return Ok(());
    }
    let schema = DFSchema::try_from(def.schema.as_ref().clone())?;
    for (index, column) in def.columns.iter().enumerate() {
        let Some(expr) = expression(state, def, &schema, index)? else { continue };
        if def.primary_key.contains(&column.name) {
            return Err(invalid_definition(format!(
                "a generated column cannot be part of the primary key (column \"{}\")",
                column.name
            )));
        }
        for read in expr.column_refs() {
            if def.column_index(&read.name).is_some_and(|i| def.columns[i].generated.is_some()) {
                return Err(invalid_definition(format!(
                    "cannot use generated column \"{}\" in column generation expression",
                    read.name
                )));
            }
        }
        let mut volatile = false;
        expr.apply(|e| {
            if let Expr::ScalarFunction(f) = e {
                volatile |= f.func.signature().volatility == Volatility::Volatile;
            }
            Ok(if volatile { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
        })?;
        if volatile {
            return Err(invalid_definition("generation expression is not immutable".into()));
        }
        let given = expr.get_type(&schema)?;
        let wanted = def.schema.field(index).data_type();
        if &given != wanted && !can_cast_types(&given, wanted) {
            return Err(EngineError::DatatypeMismatch {
                message: format!(
                    "column \"{}\" is of type {} but generation expression is of type {}",
                    column.name,
                    type_name(wanted),
                    type_name(&given)
                ),
            });
        }
    }
    Ok(())
}

fn not_insertable(column: &str) -> EngineError {
    EngineError::GeneratedAlways {
        message: format!("cannot insert a non-DEFAULT value into column \"{column}\""),
        detail: format!("Column \"{column}\" is a generated column."),
    }
}

/// `INSERT`: a generated column among the target columns is given only `DEFAULT`.
/// `positions[i]` is the table column of the i-th value of a row.
pub(crate) fn check_insert(
    def: &TableDef,
    positions: &[Option<usize>],
    source: Option<&ast::Query>,
) -> Result<()> {
    for (i, position) in positions.iter().enumerate() {
        let Some(p) = position else { continue };
        if def.columns[*p].generated.is_none() {
            continue;
        }
        let only_defaults = match source.map(|q| q.body.as_ref()) {
            Some(ast::SetExpr::Values(values)) => {
                values.rows.iter().all(|row| row.get(i).is_some_and(is_default))
            }
            _ => false,
        };
        if !only_defaults {
            return Err(not_insertable(&def.columns[*p].name));
        }
    }
    Ok(())
}

fn is_default(expr: &ast::Expr) -> bool {
    matches!(expr, ast::Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
}

/// `UPDATE ... SET column = value`: a generated column only to `DEFAULT`.
pub(crate) fn check_update(def: &TableDef, index: usize, value: &ast::Expr) -> Result<()> {
    match &def.columns[index].generated {
        Some(_) if !is_default(value) => Err(EngineError::GeneratedAlways {
            message: format!("column \"{}\" can only be updated to DEFAULT", def.columns[index].name),
            detail: format!("Column \"{}\" is a generated column.", def.columns[index].name),
        }),
        _ => Ok(()),
    }
}

/// A table's generation expressions, planned once for all the batches a statement
/// writes.
pub(crate) struct Generated<'a> {
    def: &'a TableDef,
    /// The table's columns, all nullable: the rows before their columns are computed.
    schema: SchemaRef,
    columns: Vec<GeneratedColumn>,
}

struct GeneratedColumn {
    index: usize,
    expr: Arc<dyn PhysicalExpr>,
    /// The columns the expression reads.
    inputs: Vec<usize>,
}

impl<'a> Generated<'a> {
    /// The generation expressions of `def` over rows of its columns; `None` when the
    /// table has no generated column.
    pub(crate) fn plan(state: &SessionState, def: &'a TableDef) -> Result<Option<Self>> {
        if !def.columns.iter().any(|c| c.generated.is_some()) {
            return Ok(None);
        }
        let schema = nullable_schema(&def.schema);
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let mut columns = Vec::new();
        for index in 0..def.columns.len() {
            let Some(expr) = expression(state, def, &df_schema, index)? else { continue };
            let inputs = expr.column_refs().iter().filter_map(|c| schema.index_of(&c.name).ok()).collect();
            // The session's planning: types coerced (`name || '#' || id`), functions rewritten.
            let expr = state.create_physical_expr(expr, &df_schema)?;
            columns.push(GeneratedColumn { index, expr, inputs });
        }
        Ok(Some(Generated { def, schema, columns }))
    }

    /// `rows` (the table's columns, identities filled) with every generated column
    /// computed, in the table's schema; a NULL in a `NOT NULL` generated column is
    /// 23502. `old`, for an update, is the rows before it: a column none of whose
    /// inputs changed keeps its value.
    pub(crate) fn fill(&self, rows: &RecordBatch, old: Option<&RecordBatch>) -> Result<RecordBatch> {
        let rows = RecordBatch::try_new(self.schema.clone(), rows.columns().to_vec())?;
        let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
        if rows.num_rows() > 0 {
            for column in &self.columns {
                let unchanged = old.is_some_and(|old| {
                    column.inputs.iter().all(|&i| rows.column(i).to_data() == old.column(i).to_data())
                });
                if unchanged {
                    continue;
                }
                let value = column.expr.evaluate(&rows)?.into_array(rows.num_rows())?;
                let field = self.def.schema.field(column.index);
                if !field.is_nullable() && value.null_count() > 0 {
                    return Err(StorageError::NotNullViolation {
                        table: self.def.name.table.clone(),
                        column: field.name().clone(),
                    }
                    .into());
                }
                columns[column.index] = cast(&value, field.data_type())?;
            }
        }
        Ok(RecordBatch::try_new(self.def.schema.clone(), columns)?)
    }
}

/// The generated columns that read `column`, by name.
pub(crate) fn readers_of(state: &SessionState, def: &TableDef, column: &str) -> Result<Vec<String>> {
    let schema = DFSchema::try_from(def.schema.as_ref().clone())?;
    let mut readers = Vec::new();
    for index in 0..def.columns.len() {
        if let Some(expr) = expression(state, def, &schema, index)? {
            if expr.column_refs().iter().any(|c| c.name == column) {
                readers.push(def.columns[index].name.clone());
            }
        }
    }
    Ok(readers)
}

/// A type as PostgreSQL names it in messages: `vector(384)`, `text`.
fn type_name(data_type: &arrow::datatypes::DataType) -> String {
    match crate::search::vector::vector_dims(data_type) {
        Some(dims) => format!("vector({dims})"),
        None => crate::types::pg_type_of_arrow(data_type).name.to_string(),
    }
}
