//! The primary-key lookup fast path: `SELECT columns FROM t WHERE pk = $1` (or a
//! literal) is answered from the change store and the base's key index without
//! DataFusion planning, which costs more than the lookup itself. Any other shape of
//! query, and any value that is not plainly a key, goes the general way (where the
//! same lookup runs as `TarnPointLookupExec`).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::sqlparser::ast::{self, Expr, SelectItem, SetExpr, TableFactor};
use tarn_storage::Table;

use crate::error::Result;
use crate::statements::ddl;
use crate::statements::session::{Output, RowsCommand, Session};

/// A planned key lookup.
#[derive(Debug, Clone)]
pub(crate) struct KeyLookup {
    pub table: Arc<Table>,
    /// Table columns returned, in order.
    pub columns: Vec<usize>,
    /// The result columns, named as Postgres names them.
    pub schema: SchemaRef,
    pub key: KeyValue,
}

#[derive(Debug, Clone)]
pub(crate) enum KeyValue {
    Literal(i64),
    /// `$n`, 1-based.
    Param(usize),
}

impl KeyLookup {
    /// The type of the key column (the parameter's type when the key is `$n`).
    pub fn key_type(&self) -> DataType {
        let snapshot = self.table.snapshot();
        let index = self.table.key_codec().expect("lookups are of primary-key tables").indices()[0];
        snapshot.schema().field(index).data_type().clone()
    }
}

impl Session {
    /// Recognizes `SELECT * | col [AS a], ... FROM t [alias] WHERE pk = value` on a table
    /// with a single integer primary key.
    pub(crate) fn plan_key_lookup(&self, query: &ast::Query) -> Option<KeyLookup> {
        if query.with.is_some()
            || query.order_by.is_some()
            || query.limit_clause.is_some()
            || query.fetch.is_some()
            || !query.locks.is_empty()
        {
            return None;
        }
        let SetExpr::Select(select) = query.body.as_ref() else { return None };
        let no_grouping =
            matches!(&select.group_by, ast::GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
        if select.distinct.is_some()
            || select.top.is_some()
            || select.into.is_some()
            || !no_grouping
            || select.having.is_some()
            || select.qualify.is_some()
            || !select.named_window.is_empty()
            || select.from.len() != 1
            || !select.from[0].joins.is_empty()
        {
            return None;
        }
        let TableFactor::Table { name, alias, args: None, with_hints, version: None, partitions, .. } =
            &select.from[0].relation
        else {
            return None;
        };
        if !with_hints.is_empty()
            || !partitions.is_empty()
            || alias.as_ref().is_some_and(|a| !a.columns.is_empty())
        {
            return None;
        }
        let name = ddl::table_name(name).ok()?;
        let table = self.engine.warehouse().table(&name)?;
        let codec = table.key_codec()?;
        let [key_index] = codec.indices() else { return None };
        let snapshot = table.snapshot();
        let stored = snapshot.schema();
        if !matches!(
            stored.field(*key_index).data_type(),
            DataType::Int16 | DataType::Int32 | DataType::Int64
        ) {
            return None;
        }
        let qualifier = alias.as_ref().map(|a| ddl::ident(&a.name)).unwrap_or_else(|| name.table.clone());
        let column_of = |expr: &Expr| -> Option<usize> {
            let column = match expr {
                Expr::Identifier(i) => ddl::ident(i),
                Expr::CompoundIdentifier(parts) if parts.len() == 2 && ddl::ident(&parts[0]) == qualifier => {
                    ddl::ident(&parts[1])
                }
                _ => return None,
            };
            stored.fields().iter().position(|f| *f.name() == column)
        };

        let mut columns = Vec::new();
        let mut fields = Vec::new();
        for item in &select.projection {
            match item {
                SelectItem::Wildcard(options)
                    if options.opt_exclude.is_none()
                        && options.opt_except.is_none()
                        && options.opt_replace.is_none()
                        && options.opt_rename.is_none()
                        && options.opt_ilike.is_none() =>
                {
                    for (i, f) in stored.fields().iter().enumerate() {
                        columns.push(i);
                        fields.push(f.as_ref().clone().with_nullable(true));
                    }
                }
                SelectItem::UnnamedExpr(expr) => {
                    let i = column_of(expr)?;
                    columns.push(i);
                    fields.push(stored.field(i).clone().with_nullable(true));
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    let i = column_of(expr)?;
                    columns.push(i);
                    fields.push(stored.field(i).clone().with_nullable(true).with_name(ddl::ident(alias)));
                }
                _ => return None,
            }
        }
        let Some(Expr::BinaryOp { left, op: ast::BinaryOperator::Eq, right }) = &select.selection else {
            return None;
        };
        let (column, value) = match (column_of(left), column_of(right)) {
            (Some(c), None) => (c, right.as_ref()),
            (None, Some(c)) => (c, left.as_ref()),
            _ => return None,
        };
        if column != *key_index {
            return None;
        }
        let key = match value {
            Expr::Value(v) => match &v.value {
                ast::Value::Number(n, _) => KeyValue::Literal(n.parse().ok()?),
                ast::Value::Placeholder(p) => {
                    KeyValue::Param(p.strip_prefix('$')?.parse().ok().filter(|&n| n >= 1)?)
                }
                _ => return None,
            },
            _ => return None,
        };
        let names: Vec<&String> = fields.iter().map(|f: &Field| f.name()).collect();
        if names.iter().enumerate().any(|(i, n)| names[..i].contains(n)) {
            return None;
        }
        // A role privileges apply to needs SELECT on the columns it names (the key's
        // too), and no row policy nor mask on the table; else the checked path through DataFusion
        // (which filters, or says 42501).
        if let Some(subject) = self.access.subject() {
            if (subject.row_security && subject.security.row_security.contains(&name))
                || subject.security.has_masks(&subject.roles, &name)
            {
                return None;
            }
            let named = columns.iter().chain([key_index]).map(|&i| stored.field(i).name().clone()).collect();
            crate::access::privileges::check_select(&subject, &name, &named).ok()?;
        }
        let schema = Arc::new(Schema::new_with_metadata(fields, stored.metadata().clone()));
        Some(KeyLookup { table, columns, schema, key })
    }

    /// Runs a key lookup at the transaction's snapshot (or the newest one).
    pub(crate) async fn run_key_lookup(
        &mut self,
        lookup: &KeyLookup,
        params: &[ScalarValue],
    ) -> Result<Output> {
        let key = match lookup.key {
            KeyValue::Literal(v) => Some(v),
            KeyValue::Param(n) => match params.get(n - 1).map(|v| v.cast_to(&DataType::Int64)) {
                Some(Ok(ScalarValue::Int64(v))) => v,
                Some(Ok(_)) | None => None,
                Some(Err(e)) => return Err(e.into()),
            },
        };
        let (snapshot, overlay) = match self.txn.pinned(&lookup.table)? {
            Some(pinned) => pinned,
            None => (lookup.table.snapshot(), None),
        };
        self.txn.note_touched(&lookup.table, snapshot.version(), false);
        let batch = match key {
            None => RecordBatch::new_empty(lookup.schema.clone()),
            Some(key) => {
                let keys = vec![tarn_storage::key::Key::Int(key)];
                let nullable = crate::catalog::provider::nullable_schema(&snapshot.schema());
                let rows = crate::catalog::provider::lookup_projected(
                    lookup.table.clone(),
                    snapshot,
                    overlay,
                    keys,
                    nullable,
                    lookup.columns.clone(),
                    lookup.schema.clone(),
                )
                .await?;
                rows
            }
        };
        let stream = futures::stream::iter(vec![Ok(batch)]);
        Ok(Output::Rows {
            schema: lookup.schema.clone(),
            stream: Box::pin(RecordBatchStreamAdapter::new(lookup.schema.clone(), stream)),
            command: RowsCommand::Select,
        })
    }
}
