//! pgvector's `vector(n)` type: text form, the `to_vector` function, and the rewrites
//! that let SQL written for pgvector reach it.
//!
//! A vector is stored as Arrow `FixedSizeList<Float32, n>`. Arrow cannot cast text to
//! it; `crate::statements::literals` rewrites casts and inserted literals into `to_vector` calls.

use std::sync::Arc;

use arrow::array::{Array, AsArray, FixedSizeListArray, Float32Array, StringArray};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{exec_err, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::error::{EngineError, Result};
use crate::types::vector_arrow_type;

/// pgvector's binary format counts dimensions in an unsigned 16-bit integer.
pub const MAX_DIMENSIONS: i32 = 65_535;

/// Parses pgvector's text form: `[1, 2.5, -3e-2]`.
pub fn parse_vector(text: &str) -> Result<Vec<f32>> {
    let invalid =
        || EngineError::InvalidText { message: format!("invalid input syntax for type vector: \"{text}\"") };
    // `{1,2}` too: an array's text form, which clients send for a list (pgvector
    // casts arrays to vectors).
    let text_trimmed = text.trim();
    let inner = (text_trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')))
        .or_else(|| text_trimmed.strip_prefix('{').and_then(|t| t.strip_suffix('}')))
        .ok_or_else(invalid)?;
    if inner.trim().is_empty() {
        return Err(EngineError::DataException { message: "vector must have at least 1 dimension".into() });
    }
    let values = inner
        .split(',')
        .map(|item| item.trim().parse::<f32>().map_err(|_| invalid()))
        .collect::<Result<Vec<f32>>>()?;
    if values.iter().any(|v| v.is_nan()) {
        return Err(EngineError::DataException { message: "NaN not allowed in vector".into() });
    }
    if values.iter().any(|v| v.is_infinite()) {
        return Err(EngineError::DataException { message: "infinite value not allowed in vector".into() });
    }
    if values.len() > MAX_DIMENSIONS as usize {
        return Err(EngineError::DataException {
            message: format!("vector cannot have more than {MAX_DIMENSIONS} dimensions"),
        });
    }
    Ok(values)
}

/// `text` as a vector of exactly `dims` dimensions: pgvector's 22000 for another.
pub fn parse_vector_of(text: &str, dims: usize) -> Result<Vec<f32>> {
    let values = parse_vector(text)?;
    if values.len() != dims {
        return Err(EngineError::DataException {
            message: format!("expected {dims} dimensions, not {}", values.len()),
        });
    }
    Ok(values)
}

/// Vectors of `dims` dimensions as Arrow: `values` row after row, `nulls` the NULL rows.
pub fn vector_array(
    dims: usize,
    values: Vec<f32>,
    nulls: Option<arrow::buffer::NullBuffer>,
) -> FixedSizeListArray {
    FixedSizeListArray::new(
        Arc::new(Field::new_list_field(DataType::Float32, true)),
        dims as i32,
        Arc::new(Float32Array::from(values)),
        nulls,
    )
}

/// pgvector's text form of a vector; each element in its shortest exact form.
pub fn format_vector(values: impl IntoIterator<Item = f32>, out: &mut String) {
    use std::fmt::Write;
    out.push('[');
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{v}");
    }
    out.push(']');
}

/// `to_vector(text [, dims])`: text to `vector`; checks the dimension when given.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToVector {
    signature: Signature,
}

impl Default for ToVector {
    fn default() -> Self {
        Self { signature: Signature::variadic_any(Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for ToVector {
    fn name(&self) -> &str {
        "to_vector"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        unreachable!("return_field_from_args is implemented")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> datafusion::error::Result<FieldRef> {
        let dims = match args.scalar_arguments.get(1) {
            Some(Some(value)) => dims_of(value)?,
            Some(None) => return exec_err!("to_vector: the dimension must be a constant"),
            // Without a declared dimension, a constant argument tells it.
            None => match args.scalar_arguments.first() {
                Some(Some(
                    ScalarValue::Utf8(Some(text))
                    | ScalarValue::LargeUtf8(Some(text))
                    | ScalarValue::Utf8View(Some(text)),
                )) => parse_vector(text).map_err(EngineError::into_datafusion)?.len() as i32,
                _ => {
                    return exec_err!(
                        "to_vector without a dimension needs a constant argument; cast to vector(n)"
                    )
                }
            },
        };
        Ok(Arc::new(Field::new(self.name(), vector_arrow_type(dims), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::error::Result<ColumnarValue> {
        let DataType::FixedSizeList(_, dims) = args.return_field.data_type() else {
            return exec_err!("to_vector: unexpected return type");
        };
        let dims = *dims;
        let input = args.args[0].to_array(args.number_rows)?;
        let text = arrow::compute::cast(&input, &DataType::Utf8)?;
        let text: &StringArray = text.as_string::<i32>();
        let mut values = Vec::with_capacity(text.len() * dims as usize);
        let mut nulls = Vec::with_capacity(text.len());
        for item in text.iter() {
            match item {
                Some(t) => {
                    values.extend(parse_vector_of(t, dims as usize).map_err(EngineError::into_datafusion)?);
                    nulls.push(true);
                }
                None => {
                    values.extend(std::iter::repeat_n(0.0, dims as usize));
                    nulls.push(false);
                }
            }
        }
        let array = vector_array(dims as usize, values, Some(nulls.into()));
        crate::functions::like_input(&args.args[0], Arc::new(array))
    }
}

fn dims_of(value: &ScalarValue) -> datafusion::error::Result<i32> {
    let dims = match value {
        ScalarValue::Int64(Some(n)) => *n,
        ScalarValue::Int32(Some(n)) => *n as i64,
        other => return exec_err!("to_vector: invalid dimension {other}"),
    };
    if !(1..=MAX_DIMENSIONS as i64).contains(&dims) {
        return exec_err!("to_vector: invalid dimension {dims}");
    }
    Ok(dims as i32)
}

/// The dimension of a vector column's type.
pub fn vector_dims(data_type: &DataType) -> Option<i32> {
    match data_type {
        DataType::FixedSizeList(item, dims) if item.data_type() == &DataType::Float32 => Some(*dims),
        _ => None,
    }
}

/// `vector::text` (and `varchar`): Arrow has no cast from lists to text, so the
/// analyzer turns such casts into `vector_to_text` before type coercion sees them.
#[derive(Debug, Default)]
pub struct VectorCasts;

impl datafusion::optimizer::AnalyzerRule for VectorCasts {
    fn analyze(
        &self,
        plan: datafusion::logical_expr::LogicalPlan,
        _: &datafusion::config::ConfigOptions,
    ) -> datafusion::error::Result<datafusion::logical_expr::LogicalPlan> {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        use datafusion::logical_expr::{Expr, ExprSchemable};
        plan.transform_up_with_subqueries(|node| {
            let mut schema = datafusion::common::DFSchema::empty();
            for input in node.inputs() {
                schema.merge(input.schema());
            }
            node.map_expressions(|e| {
                e.transform_up(|e| match e {
                    Expr::Cast(cast)
                        if matches!(
                            cast.field.data_type(),
                            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
                        ) && cast.expr.get_type(&schema).ok().as_ref().and_then(vector_dims).is_some() =>
                    {
                        let call = datafusion::logical_expr::expr::ScalarFunction::new_udf(
                            Arc::new(datafusion::logical_expr::ScalarUDF::from(VectorToText::default())),
                            vec![*cast.expr],
                        );
                        Ok(Transformed::yes(Expr::ScalarFunction(call)))
                    }
                    other => Ok(Transformed::no(other)),
                })
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "tarn_vector_casts"
    }
}

/// A vector's text form, `[1,2,3]`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VectorToText {
    signature: Signature,
}

impl Default for VectorToText {
    fn default() -> Self {
        Self { signature: Signature::any(1, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for VectorToText {
    fn name(&self) -> &str {
        "vector_to_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::error::Result<ColumnarValue> {
        let input = args.args[0].to_array(args.number_rows)?;
        let vectors = input.as_fixed_size_list();
        let all = crate::search::distance::values(vectors);
        let dims = vectors.value_length() as usize;
        let mut text = String::new();
        let out: StringArray = (0..vectors.len())
            .map(|i| {
                vectors.is_valid(i).then(|| {
                    text.clear();
                    format_vector(crate::search::distance::row(all, dims, i).iter().copied(), &mut text);
                    text.clone()
                })
            })
            .collect();
        crate::functions::like_input(&args.args[0], Arc::new(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let v = parse_vector(" [1, 2.5,-3e-2 ] ").unwrap();
        assert_eq!(v, vec![1.0, 2.5, -0.03]);
        let mut s = String::new();
        format_vector(v, &mut s);
        assert_eq!(s, "[1,2.5,-0.03]");
    }

    #[test]
    fn malformed_text_is_rejected() {
        assert_eq!(parse_vector("{1,2}").unwrap(), vec![1.0, 2.0]);
        for bad in ["1,2", "[1,,2]", "[a]", "(1,2)", "[1,2}"] {
            assert!(matches!(parse_vector(bad), Err(EngineError::InvalidText { .. })), "{bad}");
        }
        assert!(matches!(parse_vector("[]"), Err(EngineError::DataException { .. })));
        assert!(matches!(parse_vector("[NaN]"), Err(EngineError::DataException { .. })));
    }
}
