//! Literals compared with catalog columns, typed as Postgres types them from the
//! column: [`CatalogLiterals`], an analyzer rule that runs before type coercion.
//!
//! - Columns of Postgres' one-byte `"char"` type (`relkind`, `typtype`, `contype`) are
//!   Arrow `Int8`, so drivers that decode them as `"char"` get a byte. Tools write them
//!   as one-letter text: `relkind = 'r'`, `relkind IN ('r','p','')`, `CASE c.relkind
//!   WHEN 'r' THEN ...`, `relkind = ANY (ARRAY['r', 'p'])`, `nullif(attidentity, '')`,
//!   `polcmd::text`. Such a literal
//!   becomes the byte it names (`''` is the zero byte, as in Postgres; type coercion
//!   would try to read `'r'` as a number), and a cast of a `"char"` to text becomes
//!   [`CharText`].
//! - An array column compared with array text (`polroles = '{0}'`): the text becomes
//!   an array of the column's element type.
//! - A `regproc` column (a function's name) compared with the OID 0 (`typreceive != 0`,
//!   ADBC's type query): 0 is no function, which a `regproc` shows as `-`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int8Array, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::optimizer::AnalyzerRule;

#[derive(Debug)]
pub struct CatalogLiterals;

impl AnalyzerRule for CatalogLiterals {
    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> DfResult<LogicalPlan> {
        let char_text = Arc::new(ScalarUDF::from(CharText::default()));
        let text_char = Arc::new(ScalarUDF::from(TextChar::default()));
        plan.transform_up_with_subqueries(|node| {
            let mut schema = DFSchema::empty();
            for input in node.inputs() {
                schema.merge(input.schema());
            }
            let is_char = |e: &Expr| e.get_type(&schema).is_ok_and(|t| t == DataType::Int8);
            // A literal becomes its byte; other text (`$1::varchar`) is made one when run.
            let to_byte = |e: &mut Expr| {
                if to_byte(e) {
                    return true;
                }
                let text = e
                    .get_type(&schema)
                    .is_ok_and(|t| matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8));
                if text {
                    let inner = std::mem::replace(e, Expr::Literal(ScalarValue::Null, None));
                    *e = Expr::ScalarFunction(ScalarFunction::new_udf(text_char.clone(), vec![inner]));
                }
                text
            };
            // A column, looked up (not typed: typing every node of a deep expression
            // again at each node above it costs the square of its depth).
            let is_regproc = |e: &Expr| match e {
                Expr::Column(column) => schema.qualified_field_from_column(column).is_ok_and(|(_, f)| {
                    f.metadata().get(crate::types::PG_TYPE_KEY).is_some_and(|t| t == "regproc")
                }),
                _ => false,
            };
            let element = |e: &Expr| match e.get_type(&schema) {
                Ok(DataType::List(item)) => Some(item.data_type().clone()),
                _ => None,
            };
            // A changed expression keeps its name: the plan above refers to it by name.
            let names = NamePreserver::new(&node);
            node.map_expressions(|e| {
                let name = names.save(&e);
                e.transform_up(|mut e| {
                    let changed = match &mut e {
                        Expr::BinaryExpr(b) if element(&b.left).is_some() => {
                            to_array(&mut b.right, &element(&b.left).expect("checked"))
                        }
                        Expr::BinaryExpr(b) if element(&b.right).is_some() => {
                            to_array(&mut b.left, &element(&b.right).expect("checked"))
                        }
                        Expr::BinaryExpr(b) if is_regproc(&b.left) => no_function(&mut b.right),
                        Expr::BinaryExpr(b) if is_regproc(&b.right) => no_function(&mut b.left),
                        Expr::BinaryExpr(b) if is_char(&b.left) => to_byte(&mut b.right),
                        Expr::BinaryExpr(b) if is_char(&b.right) => to_byte(&mut b.left),
                        Expr::InList(list) if is_char(&list.expr) => {
                            list.list.iter_mut().fold(false, |any, item| to_byte(item) | any)
                        }
                        Expr::Case(case) if case.expr.as_deref().is_some_and(is_char) => {
                            case.when_then_expr.iter_mut().fold(false, |any, (when, _)| to_byte(when) | any)
                        }
                        // `relkind = ANY (ARRAY['r', 'p'])` (SQLAlchemy) is `array_has`.
                        Expr::ScalarFunction(f)
                            if f.name() == "array_has" && f.args.len() == 2 && is_char(&f.args[1]) =>
                        {
                            match &mut f.args[0] {
                                Expr::ScalarFunction(array) if array.name() == "make_array" => {
                                    array.args.iter_mut().fold(false, |any, item| to_byte(item) | any)
                                }
                                _ => false,
                            }
                        }
                        Expr::ScalarFunction(f)
                            if matches!(f.name(), "nullif" | "coalesce") && f.args.iter().any(is_char) =>
                        {
                            f.args.iter_mut().fold(false, |any, arg| to_byte(arg) | any)
                        }
                        Expr::Cast(cast)
                            if is_char(&cast.expr)
                                && matches!(
                                    cast.field.data_type(),
                                    DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
                                ) =>
                        {
                            let inner =
                                std::mem::replace(cast.expr.as_mut(), Expr::Literal(ScalarValue::Null, None));
                            e = Expr::ScalarFunction(ScalarFunction::new_udf(char_text.clone(), vec![inner]));
                            true
                        }
                        _ => false,
                    };
                    Ok(if changed { Transformed::yes(e) } else { Transformed::no(e) })
                })
                .map(|t| t.update_data(|e| name.restore(e)))
            })
            .and_then(crate::statements::scalar_subqueries::recompute_if_changed)
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "tarn_catalog_literals"
    }
}

/// Turns the OID 0 compared with a `regproc` into `-`, its name; says whether it did.
fn no_function(e: &mut Expr) -> bool {
    let zero = match e {
        Expr::Literal(v, _) => {
            matches!(
                v,
                ScalarValue::Int64(Some(0)) | ScalarValue::Int32(Some(0)) | ScalarValue::UInt32(Some(0))
            ) || matches!(v, ScalarValue::Utf8(Some(s)) if s == "0")
        }
        _ => false,
    };
    if zero {
        *e = Expr::Literal(ScalarValue::Utf8(Some("-".into())), None);
    }
    zero
}

/// Turns a text literal of at most one byte into that byte; says whether it did.
fn to_byte(e: &mut Expr) -> bool {
    let byte = match e {
        Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)), _) if s.len() <= 1 => {
            s.as_bytes().first().copied().unwrap_or(0)
        }
        _ => return false,
    };
    *e = Expr::Literal(ScalarValue::Int8(Some(byte as i8)), None);
    true
}

/// Turns array text (`'{1,2}'`, `'{"a b",NULL}'`) into an array of `element`; says
/// whether it did.
fn to_array(e: &mut Expr, element: &DataType) -> bool {
    let text = match e {
        Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)), _) => s,
        _ => return false,
    };
    let Some(inner) = text.trim().strip_prefix('{').and_then(|t| t.strip_suffix('}')) else { return false };
    let items: Vec<Option<String>> = if inner.trim().is_empty() {
        vec![]
    } else {
        inner
            .split(',')
            .map(|item| {
                let item = item.trim();
                (!item.eq_ignore_ascii_case("null")).then(|| item.trim_matches('"').to_string())
            })
            .collect()
    };
    let strings: ArrayRef = Arc::new(StringArray::from(items));
    let Ok(values) = arrow::compute::cast(&strings, element) else { return false };
    *e = Expr::Literal(
        ScalarValue::List(Arc::new(arrow::array::ListArray::new(
            Arc::new(arrow::datatypes::Field::new_list_field(element.clone(), true)),
            arrow::buffer::OffsetBuffer::from_lengths([values.len()]),
            values,
            None,
        ))),
        None,
    );
    true
}

/// Text to `"char"`: its first byte, the zero byte for `''`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TextChar {
    signature: Signature,
}

impl Default for TextChar {
    fn default() -> Self {
        Self { signature: Signature::user_defined(Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for TextChar {
    fn name(&self) -> &str {
        "tarn_text_char"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, _: &[DataType]) -> DfResult<Vec<DataType>> {
        Ok(vec![DataType::Utf8])
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let input = args.args[0].to_array(args.number_rows)?;
        let input = arrow::compute::cast(&input, &DataType::Utf8)?;
        let text = input.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
        let bytes: Int8Array =
            text.iter().map(|t| t.map(|t| t.as_bytes().first().copied().unwrap_or(0) as i8)).collect();
        crate::functions::like_input(&args.args[0], Arc::new(bytes) as Arc<dyn Array>)
    }
}

/// `"char"` to text: the letter, or `''` for the zero byte.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CharText {
    signature: Signature,
}

impl Default for CharText {
    fn default() -> Self {
        Self { signature: Signature::exact(vec![DataType::Int8], Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for CharText {
    fn name(&self) -> &str {
        "tarn_char_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let input = args.args[0].to_array(args.number_rows)?;
        let bytes = input.as_any().downcast_ref::<Int8Array>().expect("signature says Int8");
        let text: StringArray = bytes
            .iter()
            .map(|b| b.map(|b| if b == 0 { String::new() } else { (b as u8 as char).to_string() }))
            .collect();
        crate::functions::like_input(&args.args[0], Arc::new(text) as Arc<dyn Array>)
    }
}
