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
//! - A boolean column compared with text (`indisprimary = 't'`, psqlODBC): the text is
//!   read as PostgreSQL reads a boolean (`t`, `true`, `yes`, `on`, `1`, ...). A
//!   timestamp column compared with a timestamp written without seconds
//!   (`made > '2024-01-01 10:00'`): the text gets `:00`, which Arrow's parser needs.
//! - Subscripts of `int2vector` and `oidvector` columns count from 0, as in
//!   PostgreSQL (`i.indkey[ia.attnum - 1]`, psqlODBC's primary keys): [`VectorElement`].

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
        let vector_element = Arc::new(ScalarUDF::from(VectorElement::default()));
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
            // The field of a column, looked up (not typed: typing every node of a deep
            // expression again at each node above it costs the square of its depth).
            let column_is = |e: &Expr, test: &dyn Fn(&arrow::datatypes::Field) -> bool| match e {
                Expr::Column(column) => {
                    schema.qualified_field_from_column(column).is_ok_and(|(_, f)| test(f))
                }
                _ => false,
            };
            let pg_type_is = |f: &arrow::datatypes::Field, names: &[&str]| {
                f.metadata().get(crate::types::PG_TYPE_KEY).is_some_and(|t| names.contains(&t.as_str()))
            };
            let is_regproc = |e: &Expr| column_is(e, &|f| pg_type_is(f, &["regproc"]));
            let zero_based = |e: &Expr| column_is(e, &|f| pg_type_is(f, &["int2vector", "oidvector"]));
            let is_bool = |e: &Expr| column_is(e, &|f| f.data_type() == &DataType::Boolean);
            let is_timestamp = |e: &Expr| column_is(e, &|f| matches!(f.data_type(), DataType::Timestamp(..)));
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
                        Expr::BinaryExpr(b) if is_bool(&b.left) => to_bool(&mut b.right),
                        Expr::BinaryExpr(b) if is_bool(&b.right) => to_bool(&mut b.left),
                        Expr::BinaryExpr(b) if is_timestamp(&b.left) => add_seconds(&mut b.right),
                        Expr::BinaryExpr(b) if is_timestamp(&b.right) => add_seconds(&mut b.left),
                        Expr::ScalarFunction(f)
                            if f.name() == "array_element" && f.args.len() == 2 && zero_based(&f.args[0]) =>
                        {
                            let args = std::mem::take(&mut f.args);
                            e = Expr::ScalarFunction(ScalarFunction::new_udf(vector_element.clone(), args));
                            true
                        }
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

/// The text of a text literal.
fn text_literal(e: &mut Expr) -> Option<&mut String> {
    match e {
        Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)), _) => Some(s),
        _ => None,
    }
}

/// Turns text PostgreSQL reads as a boolean into that boolean; says whether it did.
fn to_bool(e: &mut Expr) -> bool {
    let Some(value) = text_literal(e).and_then(|s| parse_bool(s)) else { return false };
    *e = Expr::Literal(ScalarValue::Boolean(Some(value)), None);
    true
}

/// Gives seconds to a timestamp literal written without them; says whether it did.
fn add_seconds(e: &mut Expr) -> bool {
    let Some(text) = text_literal(e) else { return false };
    let Some(with) = crate::statements::literals::timestamp_with_seconds(text) else { return false };
    *text = with;
    true
}

/// PostgreSQL's `boolin`: any prefix of `true`, `false`, `yes`, `no`, at least two
/// letters of `on` and `off`, and `1`, `0`; case and surrounding spaces aside.
fn parse_bool(text: &str) -> Option<bool> {
    let text = text.trim().to_ascii_lowercase();
    let prefix_of = |word: &str| !text.is_empty() && word.starts_with(text.as_str());
    match text.as_str() {
        "1" | "on" => Some(true),
        "0" | "of" | "off" => Some(false),
        _ if prefix_of("true") || prefix_of("yes") => Some(true),
        _ if prefix_of("false") || prefix_of("no") => Some(false),
        _ => None,
    }
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

/// `v[i]` of an `int2vector` or `oidvector`: subscripts from 0, NULL outside.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VectorElement {
    signature: Signature,
}

impl Default for VectorElement {
    fn default() -> Self {
        Self { signature: Signature::user_defined(Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for VectorElement {
    fn name(&self) -> &str {
        "tarn_vector_element"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, types: &[DataType]) -> DfResult<Vec<DataType>> {
        Ok(vec![types[0].clone(), DataType::Int64])
    }

    fn return_type(&self, types: &[DataType]) -> DfResult<DataType> {
        match &types[0] {
            DataType::List(item) => Ok(item.data_type().clone()),
            other => datafusion::common::plan_err!("a subscript of {other}"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let lists = args.args[0].to_array(args.number_rows)?;
        let lists = lists.as_any().downcast_ref::<arrow::array::ListArray>().expect("return_type checked");
        let at = args.args[1].to_array(args.number_rows)?;
        let at = at.as_any().downcast_ref::<arrow::array::Int64Array>().expect("coerced to Int64");
        let offsets = lists.value_offsets();
        let positions: arrow::array::UInt64Array = (0..lists.len())
            .map(|row| {
                let (start, end) = (offsets[row] as i64, offsets[row + 1] as i64);
                let i = at.is_valid(row).then(|| at.value(row))?;
                (lists.is_valid(row) && i >= 0 && start + i < end).then(|| (start + i) as u64)
            })
            .collect();
        let values = arrow::compute::take(lists.values(), &positions, None)?;
        Ok(if args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&values, 0)?)
        } else {
            ColumnarValue::Array(values)
        })
    }
}
