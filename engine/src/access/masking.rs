//! Column tags and the masks bound to them.
//!
//! A column's tag says what it holds: the sensitive-data detector ([`super::detector`])
//! sets it when rows first come in (COPY, INSERT), or a user does with `ALTER TABLE t
//! ALTER COLUMN c SET (tag = 'email')` (`RESET (tag)`, or `tag = NULL`, takes it off and
//! keeps the detector away). `CREATE MASKING POLICY name ON TAG email WITH (mask =
//! 'partial')` binds a mask to a tag: every column with that tag then reads masked for
//! every role that is not a superuser nor a member of `tarn_unmask`, wherever rows come
//! from (a scan, a kNN or BM25 search, `COPY ... TO`, a view, `INSERT ... SELECT`).
//! `CREATE TABLE AS` gives the new table's columns the tags of the columns they were
//! copied from ([`copied_columns`]).
//!
//! Masks are applied where the table is read, above the row policies, so a filter, a
//! join or a sort over a masked column sees the mask, never the value (a filter on one
//! stays out of the scan, and a search over one is refused: its index holds the
//! values).
//!
//! | mask | text | other types |
//! | --- | --- | --- |
//! | `hash` | SHA-256 of the value, hex (equal values stay equal: joins and GROUP BY still work) | NULL |
//! | `partial` | an e-mail's first letter and domain (`j***@example.com`); with four digits or more, all digits but the last four starred (`****-****-****-1111`); else each word's first letter (`M**** G*****`) | NULL |
//! | `null` | NULL | NULL |

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, LargeStringArray, StringArray, StringViewArray};
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::sqlparser::ast;
use tarn_storage::security::{
    ColumnTag, Mask, MaskingPolicy, RoleDef, SecurityCatalog, TagSource, UNMASK_ROLE,
};
use tarn_storage::TableName;

use crate::error::{EngineError, Result};

/// The masked columns of `table` for `roles`, by name.
pub fn masks_of(
    security: &SecurityCatalog,
    roles: &BTreeSet<String>,
    table: &TableName,
) -> Vec<(String, Mask)> {
    security
        .column_tags
        .iter()
        .filter(|t| &t.table == table)
        .filter_map(|t| Some((t.column.clone(), security.mask_of(roles, table, &t.column)?)))
        .collect()
}

/// `plan` with the columns named in `masks` masked (the others passed through).
pub fn mask_output(
    plan: Arc<dyn ExecutionPlan>,
    masks: &[(String, Mask)],
) -> DfResult<Arc<dyn ExecutionPlan>> {
    use datafusion::physical_expr::expressions::{Column, Literal};
    use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
    if masks.is_empty() {
        return Ok(plan);
    }
    let schema = plan.schema();
    let config = Arc::new(datafusion::config::ConfigOptions::default());
    let mut exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let column: Arc<dyn PhysicalExpr> = Arc::new(Column::new(field.name(), i));
        let expr = match masks.iter().find(|(name, _)| name == field.name()) {
            None => column,
            Some((_, mask)) => {
                let kind: Arc<dyn PhysicalExpr> =
                    Arc::new(Literal::new(ScalarValue::Utf8(Some(mask.name().into()))));
                Arc::new(ScalarFunctionExpr::new(
                    MASK.name(),
                    Arc::new(MASK.clone()),
                    vec![column, kind],
                    Arc::new(field.as_ref().clone().with_nullable(true)),
                    config.clone(),
                ))
            }
        };
        exprs.push((expr, field.name().clone()));
    }
    Ok(Arc::new(ProjectionExec::try_new(exprs, plan)?))
}

/// `tarn_mask(value, 'hash' | 'partial' | 'null')`, the type of `value`.
pub static MASK: LazyLock<ScalarUDF> = LazyLock::new(|| ScalarUDF::new_from_impl(MaskFunction::new()));

#[derive(Debug, PartialEq, Eq, Hash)]
struct MaskFunction {
    signature: Signature,
}

impl MaskFunction {
    fn new() -> Self {
        Self { signature: Signature::any(2, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for MaskFunction {
    fn name(&self) -> &str {
        "tarn_mask"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        Ok(args[0].clone())
    }

    /// The value's field (its Postgres type with it), nullable.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        Ok(Arc::new(args.arg_fields[0].as_ref().clone().with_nullable(true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let mask = match &args.args[1] {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(kind))) => Mask::parse(kind),
            _ => None,
        }
        .ok_or_else(|| {
            datafusion::error::DataFusionError::Internal("tarn_mask takes a mask's name".into())
        })?;
        let rows = args.number_rows;
        let values = args.args[0].clone().into_array(rows)?;
        Ok(ColumnarValue::Array(mask_array(&values, mask)?))
    }
}

fn mask_array(values: &ArrayRef, mask: Mask) -> DfResult<ArrayRef> {
    let masked = |v: Option<&str>| v.and_then(|v| mask_text(v, mask));
    Ok(match values.data_type() {
        DataType::Utf8 => Arc::new(values.as_string::<i32>().iter().map(masked).collect::<StringArray>()),
        DataType::LargeUtf8 => {
            Arc::new(values.as_string::<i64>().iter().map(masked).collect::<LargeStringArray>())
        }
        DataType::Utf8View => {
            Arc::new(values.as_string_view().iter().map(masked).collect::<StringViewArray>())
        }
        other => arrow::array::new_null_array(other, values.len()),
    })
}

/// One text value masked; `None` for NULL.
pub fn mask_text(value: &str, mask: Mask) -> Option<String> {
    match mask {
        Mask::Null => None,
        Mask::Hash => {
            let digest = ring::digest::digest(&ring::digest::SHA256, value.as_bytes());
            Some(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
        }
        Mask::Partial => Some(partial(value)),
    }
}

fn partial(value: &str) -> String {
    if let Some((local, domain)) = value.rsplit_once('@') {
        if let Some(first) = local.chars().next() {
            return format!("{first}***@{domain}");
        }
    }
    let digits = value.chars().filter(char::is_ascii_digit).count();
    if digits >= 4 {
        let mut seen = 0;
        return value
            .chars()
            .map(|c| {
                if c.is_ascii_digit() {
                    seen += 1;
                    if seen <= digits - 4 {
                        return '*';
                    }
                }
                c
            })
            .collect();
    }
    let mut out = String::with_capacity(value.len());
    let mut word_start = true;
    for c in value.chars() {
        if c.is_whitespace() {
            out.push(c);
            word_start = true;
        } else if word_start {
            out.push(c);
            word_start = false;
        } else {
            out.push('*');
        }
    }
    out
}

/// `ALTER TABLE table ALTER COLUMN column SET (tag = '...')` (or `RESET (tag)`, `tag =
/// NULL`): a user's tag, which the detector does not change afterwards.
pub fn set_column_options(
    security: &mut SecurityCatalog,
    table: &TableName,
    column: &str,
    options: &[ast::SqlOption],
) -> Result<()> {
    for option in options {
        let ast::SqlOption::KeyValue { key, value } = option else {
            return Err(EngineError::syntax(format!(
                "column option {option} is not of the form key = value"
            )));
        };
        if !key.value.eq_ignore_ascii_case("tag") {
            return Err(EngineError::InvalidParameter {
                message: format!("unrecognized column option \"{}\" (Tarn's columns take tag)", key.value),
            });
        }
        let tag = match value {
            ast::Expr::Value(v) => match &v.value {
                ast::Value::Null => None,
                ast::Value::SingleQuotedString(t) | ast::Value::DoubleQuotedString(t) => Some(t.clone()),
                _ => return Err(tag_value(value)),
            },
            ast::Expr::Identifier(ident) => Some(ident.value.clone()),
            _ => return Err(tag_value(value)),
        };
        let tag = tag.map(|t| t.trim().to_lowercase()).filter(|t| !t.is_empty() && t != "none");
        if let Some(t) = &tag {
            if !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-') {
                return Err(tag_value(value));
            }
        }
        let tag = tag.map(|tag| ColumnTag {
            table: table.clone(),
            column: column.to_string(),
            tag,
            confidence: 1.0,
            source: TagSource::User,
        });
        security.set_tag(table, column, tag);
    }
    Ok(())
}

fn tag_value(value: &ast::Expr) -> EngineError {
    EngineError::InvalidParameter {
        message: format!("invalid tag {value}: a tag is a word of letters, digits, '_', '.' or '-'"),
    }
}

/// `CREATE MASKING POLICY name ON TAG tag WITH (mask = '...')` (parsed as `CREATE
/// POLICY name ON tag USING (mask = '...')`). Makes the role `tarn_unmask` if it is not
/// there yet.
pub fn create_policy(security: &mut SecurityCatalog, create: &ast::CreatePolicy) -> Result<()> {
    let name = create.name.value.clone();
    // Tags are kept in lower case; one with a `-` is written quoted.
    let parts: Vec<String> = create
        .table_name
        .0
        .iter()
        .map(|part| match part {
            ast::ObjectNamePart::Identifier(ident) => ident.value.to_lowercase(),
            other => other.to_string().to_lowercase(),
        })
        .collect();
    let tag = parts.join(".");
    let mask = match &create.using {
        Some(ast::Expr::BinaryOp { left, op: ast::BinaryOperator::Eq, right }) => {
            match (left.as_ref(), right.as_ref()) {
                (ast::Expr::Identifier(key), ast::Expr::Value(v))
                    if key.value.eq_ignore_ascii_case("mask") =>
                {
                    match &v.value {
                        ast::Value::SingleQuotedString(m) => Mask::parse(m),
                        _ => None,
                    }
                }
                _ => None,
            }
        }
        _ => None,
    }
    .ok_or_else(|| {
        EngineError::syntax("CREATE MASKING POLICY name ON TAG tag WITH (mask = 'hash' | 'partial' | 'null')")
    })?;
    if security.masking_policies.iter().any(|p| p.name == name) {
        return Err(EngineError::DuplicateObject {
            message: format!("masking policy \"{name}\" already exists"),
        });
    }
    if let Some(other) = security.masking_policies.iter().find(|p| p.tag == tag) {
        return Err(EngineError::DuplicateObject {
            message: format!("tag \"{tag}\" has a masking policy already: \"{}\"", other.name),
        });
    }
    security.masking_policies.push(MaskingPolicy { name, tag, mask });
    security.roles.entry(UNMASK_ROLE.to_string()).or_insert_with(|| RoleDef::new(UNMASK_ROLE));
    Ok(())
}

/// `DROP MASKING POLICY [IF EXISTS] name`.
pub fn drop_policy(security: &mut SecurityCatalog, drop: &ast::DropPolicy) -> Result<()> {
    let name = drop.name.value.clone();
    let before = security.masking_policies.len();
    security.masking_policies.retain(|p| p.name != name);
    if before == security.masking_policies.len() && !drop.if_exists {
        return Err(EngineError::UndefinedObject {
            message: format!("masking policy \"{name}\" does not exist"),
        });
    }
    Ok(())
}

/// For each output column of `plan`, the table column it is a copy of (through
/// projections, aliases, filters, sorts, limits, joins, windows and group keys), if it
/// is one: `CREATE TABLE AS` gives the new table's columns their tags. A text computed
/// from one column alone (`upper(email)`, `substr(ssn, 1, 3)`) counts as a copy of it.
pub fn copied_columns(plan: &LogicalPlan) -> Vec<Option<(TableName, String)>> {
    (0..plan.schema().fields().len()).map(|i| copied_column(plan, i)).collect()
}

fn copied_column(plan: &LogicalPlan, i: usize) -> Option<(TableName, String)> {
    if i >= plan.schema().fields().len() {
        return None;
    }
    let text = matches!(
        plan.schema().field(i).data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    );
    let through = |expr: &Expr, input: &LogicalPlan| -> Option<(TableName, String)> {
        let expr = expr.clone().unalias_nested().data;
        let columns = expr.column_refs();
        let [column] = columns.into_iter().collect::<Vec<_>>()[..] else { return None };
        let copied = matches!(expr, Expr::Column(_)) || (text && !expr.is_volatile());
        copied.then(|| copied_column(input, input.schema().index_of_column(column).ok()?))?
    };
    match plan {
        LogicalPlan::Projection(p) => through(p.expr.get(i)?, &p.input),
        LogicalPlan::Aggregate(a) => through(a.group_expr.get(i)?, &a.input),
        // Their input's columns first, in order.
        LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Distinct(datafusion::logical_expr::Distinct::All(_))
        | LogicalPlan::Window(_) => {
            let input = plan.inputs()[0];
            (i < input.schema().fields().len()).then(|| copied_column(input, i))?
        }
        LogicalPlan::Join(join) => {
            use datafusion::common::JoinType;
            let left = join.left.schema().fields().len();
            match join.join_type {
                JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => {
                    copied_column(&join.right, i)
                }
                JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => copied_column(&join.left, i),
                _ if i < left => copied_column(&join.left, i),
                _ => copied_column(&join.right, i - left),
            }
        }
        LogicalPlan::TableScan(scan) => {
            let provider =
                datafusion::catalog::default_table_source::source_as_provider(&scan.source).ok()?;
            let table = provider.downcast_ref::<crate::catalog::provider::TarnTable>()?;
            let field = scan.projected_schema.field(i);
            Some((table.table().name(), field.name().clone()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_masks_keep_what_identifies_the_kind_not_the_person() {
        assert_eq!(partial("jane.doe@example.com"), "j***@example.com");
        assert_eq!(partial("4111 1111 1111 1111"), "**** **** **** 1111");
        assert_eq!(partial("123-45-6789"), "***-**-6789");
        assert_eq!(partial("Maria Garcia"), "M**** G*****");
        assert_eq!(mask_text("x", Mask::Null), None);
        let hashed = mask_text("jane@example.com", Mask::Hash).unwrap();
        assert_eq!(hashed.len(), 64);
        assert_eq!(Some(hashed), mask_text("jane@example.com", Mask::Hash));
    }
}
