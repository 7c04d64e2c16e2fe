//! pgvector's functions and operators on `vector`: the four distances (`<->`, `<=>`,
//! `<#>`, `<+>`), `vector_dims`, `vector_norm`, `l2_normalize`, `subvector` and
//! element-wise `+ - *`; and the [`VectorOperators`] planner that turns the operators
//! into these functions.
//!
//! Distances run on Lance's SIMD kernels (chosen at run time for the CPU: AVX-512,
//! AVX2 or scalar); a column against a constant query vector is the hot path of an
//! exact scan.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, FixedSizeListArray, Float64Array, Int32Array};
use arrow::datatypes::{DataType, Field, Float32Type};
use datafusion::common::{exec_err, plan_err, DFSchema, ScalarValue};
use datafusion::logical_expr::expr::{Placeholder, ScalarFunction};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;
use lance_linalg::distance::{dot_f32, l2_f32};

use crate::error::EngineError;
use crate::search::vector::{vector_array, vector_dims};
use crate::types::vector_arrow_type;

/// The distances pgvector defines, each a function and an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Distance {
    /// `<->`, `l2_distance`: Euclidean.
    L2,
    /// `<=>`, `cosine_distance`: 1 - cosine similarity.
    Cosine,
    /// `<#>`, `vector_negative_inner_product`: minus the dot product.
    NegativeInnerProduct,
    /// `inner_product`: the dot product.
    InnerProduct,
    /// `<+>`, `l1_distance`: taxicab.
    L1,
}

impl Distance {
    pub const ALL: [Distance; 5] = [
        Distance::L2,
        Distance::Cosine,
        Distance::NegativeInnerProduct,
        Distance::InnerProduct,
        Distance::L1,
    ];

    pub fn function_name(self) -> &'static str {
        match self {
            Distance::L2 => "l2_distance",
            Distance::Cosine => "cosine_distance",
            Distance::NegativeInnerProduct => "vector_negative_inner_product",
            Distance::InnerProduct => "inner_product",
            Distance::L1 => "l1_distance",
        }
    }

    pub fn from_function_name(name: &str) -> Option<Distance> {
        Distance::ALL.into_iter().find(|d| d.function_name() == name)
    }

    fn operator(op: &BinaryOperator) -> Option<Distance> {
        let symbol = match op {
            BinaryOperator::LtDashGt => "<->",
            BinaryOperator::Spaceship => "<=>",
            BinaryOperator::Custom(s) => s.as_str(),
            BinaryOperator::PGCustomBinaryOperator(path) => path.last()?.as_str(),
            _ => return None,
        };
        match symbol {
            "<->" => Some(Distance::L2),
            "<=>" => Some(Distance::Cosine),
            "<#>" => Some(Distance::NegativeInnerProduct),
            "<+>" => Some(Distance::L1),
            _ => None,
        }
    }

    /// The distance between two vectors of equal length, as pgvector computes it.
    #[inline]
    pub fn eval(self, a: &[f32], b: &[f32]) -> f64 {
        match self {
            Distance::L2 => (l2_f32(a, b) as f64).sqrt(),
            Distance::Cosine => {
                let (dot, na, nb) = (dot_f32(a, b) as f64, dot_f32(a, a) as f64, dot_f32(b, b) as f64);
                let similarity = dot / (na * nb).sqrt();
                // pgvector: NaN for a zero vector, otherwise clamped to [-1, 1].
                if similarity.is_nan() {
                    f64::NAN
                } else {
                    1.0 - similarity.clamp(-1.0, 1.0)
                }
            }
            Distance::NegativeInnerProduct => -(dot_f32(a, b) as f64),
            Distance::InnerProduct => dot_f32(a, b) as f64,
            Distance::L1 => a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() as f64,
        }
    }
}

/// The values of row `i` of a vector array.
#[inline]
pub fn row(values: &[f32], dims: usize, i: usize) -> &[f32] {
    &values[i * dims..(i + 1) * dims]
}

/// A vector argument: a column of vectors, or one vector for every row.
enum VectorArg {
    Column(FixedSizeListArray),
    Scalar(Option<Vec<f32>>),
}

impl VectorArg {
    fn of(value: &ColumnarValue, function: &str) -> datafusion::error::Result<VectorArg> {
        match value {
            ColumnarValue::Array(array) => Ok(VectorArg::Column(as_vectors(array, function)?.clone())),
            ColumnarValue::Scalar(scalar) => {
                if scalar.is_null() {
                    return Ok(VectorArg::Scalar(None));
                }
                let array = scalar.to_array()?;
                let vectors = as_vectors(&array, function)?;
                Ok(VectorArg::Scalar(Some(vectors.value(0).as_primitive::<Float32Type>().values().to_vec())))
            }
        }
    }

    fn dims(&self) -> Option<usize> {
        match self {
            VectorArg::Column(c) => Some(c.value_length() as usize),
            VectorArg::Scalar(v) => v.as_ref().map(Vec::len),
        }
    }
}

fn as_vectors<'a>(array: &'a ArrayRef, function: &str) -> datafusion::error::Result<&'a FixedSizeListArray> {
    match array.data_type() {
        DataType::FixedSizeList(item, _) if item.data_type() == &DataType::Float32 => {
            Ok(array.as_fixed_size_list())
        }
        other => exec_err!("function {function}({other}) does not exist"),
    }
}

fn dimension_mismatch(a: usize, b: usize) -> datafusion::error::DataFusionError {
    EngineError::DataException { message: format!("different vector dimensions {a} and {b}") }
        .into_datafusion()
}

/// `l2_distance(a, b)` and the other distances: `double precision`, NULL if either is.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DistanceFunction {
    distance: Distance,
    signature: Signature,
}

impl DistanceFunction {
    pub fn new(distance: Distance) -> Self {
        Self { distance, signature: Signature::any(2, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for DistanceFunction {
    fn name(&self) -> &str {
        self.distance.function_name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> datafusion::error::Result<DataType> {
        for arg in args {
            if vector_dims(arg).is_none() && arg != &DataType::Null {
                return plan_err!("function {}({arg}) does not exist: it takes two vectors", self.name());
            }
        }
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::error::Result<ColumnarValue> {
        let a = VectorArg::of(&args.args[0], self.name())?;
        let b = VectorArg::of(&args.args[1], self.name())?;
        if let (Some(x), Some(y)) = (a.dims(), b.dims()) {
            if x != y {
                return Err(dimension_mismatch(x, y));
            }
        }
        let d = self.distance;
        let result: Float64Array = match (&a, &b) {
            (VectorArg::Scalar(None), _) | (_, VectorArg::Scalar(None)) => {
                return Ok(ColumnarValue::Scalar(ScalarValue::Float64(None)))
            }
            (VectorArg::Scalar(Some(x)), VectorArg::Scalar(Some(y))) => {
                return Ok(ColumnarValue::Scalar(ScalarValue::Float64(Some(d.eval(x, y)))))
            }
            (VectorArg::Column(c), VectorArg::Scalar(Some(q)))
            | (VectorArg::Scalar(Some(q)), VectorArg::Column(c)) => distances_to(c, q, d),
            (VectorArg::Column(x), VectorArg::Column(y)) => {
                let dims = x.value_length() as usize;
                let (xv, yv) = (values(x), values(y));
                (0..x.len())
                    .map(|i| {
                        (x.is_valid(i) && y.is_valid(i)).then(|| d.eval(row(xv, dims, i), row(yv, dims, i)))
                    })
                    .collect()
            }
        };
        Ok(ColumnarValue::Array(Arc::new(result)))
    }
}

/// The distance of every vector of `column` to `query`.
pub fn distances_to(column: &FixedSizeListArray, query: &[f32], distance: Distance) -> Float64Array {
    let dims = column.value_length() as usize;
    let all = values(column);
    let mut out = Vec::with_capacity(column.len());
    for i in 0..column.len() {
        out.push(distance.eval(row(all, dims, i), query));
    }
    Float64Array::new(out.into(), column.nulls().cloned())
}

/// The flat values of a vector array (every row, NULL rows included, `dims` each).
pub fn values(array: &FixedSizeListArray) -> &[f32] {
    let dims = array.value_length() as usize;
    let all = array.values().as_primitive::<Float32Type>().values();
    let start = array.offset() * dims;
    &all[start..start + array.len() * dims]
}

/// A function of one vector, row by row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Unary {
    Dims,
    Norm,
    Normalize,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct UnaryFunction {
    kind: Unary,
    signature: Signature,
}

impl ScalarUDFImpl for UnaryFunction {
    fn name(&self) -> &str {
        match self.kind {
            Unary::Dims => "vector_dims",
            Unary::Norm => "vector_norm",
            Unary::Normalize => "l2_normalize",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> datafusion::error::Result<DataType> {
        let Some(dims) = vector_dims(&args[0]) else {
            return plan_err!("function {}({}) does not exist", self.name(), args[0]);
        };
        Ok(match self.kind {
            Unary::Dims => DataType::Int32,
            Unary::Norm => DataType::Float64,
            Unary::Normalize => vector_arrow_type(dims),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::error::Result<ColumnarValue> {
        let input = args.args[0].to_array(args.number_rows)?;
        let vectors = as_vectors(&input, self.name())?;
        let dims = vectors.value_length() as usize;
        let all = values(vectors);
        let nulls = vectors.nulls().cloned();
        let result: ArrayRef = match self.kind {
            Unary::Dims => Arc::new(Int32Array::new(vec![dims as i32; vectors.len()].into(), nulls)),
            Unary::Norm => Arc::new(Float64Array::new(
                (0..vectors.len()).map(|i| norm(row(all, dims, i))).collect(),
                nulls,
            )),
            Unary::Normalize => {
                let mut out = Vec::with_capacity(all.len());
                for i in 0..vectors.len() {
                    let v = row(all, dims, i);
                    let n = norm(v);
                    out.extend(v.iter().map(|x| if n > 0.0 { (*x as f64 / n) as f32 } else { 0.0 }));
                }
                Arc::new(vector_array(dims, out, nulls))
            }
        };
        crate::functions::like_input(&args.args[0], result)
    }
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>().sqrt()
}

/// `subvector(v, start, count)`: `count` elements from the 1-based `start`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Subvector {
    signature: Signature,
}

impl ScalarUDFImpl for Subvector {
    fn name(&self) -> &str {
        "subvector"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        unreachable!("return_field_from_args is implemented")
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> datafusion::error::Result<arrow::datatypes::FieldRef> {
        let Some(dims) = vector_dims(args.arg_fields[0].data_type()) else {
            return plan_err!("function subvector({}) does not exist", args.arg_fields[0].data_type());
        };
        let constant = |i: usize| match args.scalar_arguments.get(i) {
            Some(Some(value)) => value.cast_to(&DataType::Int64).ok().and_then(|v| match v {
                ScalarValue::Int64(Some(n)) => Some(n),
                _ => None,
            }),
            _ => None,
        };
        let (Some(start), Some(count)) = (constant(1), constant(2)) else {
            return plan_err!("subvector: start and count must be constants");
        };
        let (from, to) = subvector_range(dims as i64, start, count).map_err(EngineError::into_datafusion)?;
        Ok(Arc::new(Field::new("subvector", vector_arrow_type((to - from) as i32), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::error::Result<ColumnarValue> {
        let DataType::FixedSizeList(_, out_dims) = args.return_field.data_type() else {
            return exec_err!("subvector: unexpected return type");
        };
        let input = args.args[0].to_array(args.number_rows)?;
        let vectors = as_vectors(&input, "subvector")?;
        let dims = vectors.value_length() as usize;
        let start = match &args.args[1] {
            ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Int64)? {
                ScalarValue::Int64(Some(n)) => n,
                _ => return exec_err!("subvector: start must not be NULL"),
            },
            ColumnarValue::Array(_) => return exec_err!("subvector: start must be a constant"),
        };
        let from = (start.max(1) - 1) as usize;
        let all = values(vectors);
        let mut out = Vec::with_capacity(vectors.len() * *out_dims as usize);
        for i in 0..vectors.len() {
            out.extend_from_slice(&row(all, dims, i)[from..from + *out_dims as usize]);
        }
        let result = vector_array(*out_dims as usize, out, vectors.nulls().cloned());
        crate::functions::like_input(&args.args[0], Arc::new(result))
    }
}

/// pgvector's bounds for `subvector`: the part of `[start, start + count)` inside the
/// vector, which must not be empty.
fn subvector_range(dims: i64, start: i64, count: i64) -> crate::error::Result<(i64, i64)> {
    let end = start.saturating_add(count);
    let (from, to) = (start.max(1), end.min(dims + 1));
    if count < 1 || to <= from {
        return Err(EngineError::DataException { message: "vector must have at least 1 dimension".into() });
    }
    Ok((from - 1, to - 1))
}

/// Element-wise `+`, `-`, `*` of two vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Arith {
    Add,
    Sub,
    Mul,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ArithFunction {
    op: Arith,
    signature: Signature,
}

impl ScalarUDFImpl for ArithFunction {
    fn name(&self) -> &str {
        match self.op {
            Arith::Add => "vector_add",
            Arith::Sub => "vector_sub",
            Arith::Mul => "vector_mul",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> datafusion::error::Result<DataType> {
        match (vector_dims(&args[0]), vector_dims(&args[1])) {
            (Some(a), Some(_)) => Ok(vector_arrow_type(a)),
            _ => plan_err!("operator does not exist: {} {} {}", args[0], self.name(), args[1]),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::error::Result<ColumnarValue> {
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let a = args.args[0].to_array(args.number_rows)?;
        let b = args.args[1].to_array(args.number_rows)?;
        let (a, b) = (as_vectors(&a, self.name())?, as_vectors(&b, self.name())?);
        let dims = a.value_length() as usize;
        if b.value_length() as usize != dims {
            return Err(dimension_mismatch(dims, b.value_length() as usize));
        }
        let f = match self.op {
            Arith::Add => |x: f32, y: f32| x + y,
            Arith::Sub => |x: f32, y: f32| x - y,
            Arith::Mul => |x: f32, y: f32| x * y,
        };
        let out: Vec<f32> = values(a).iter().zip(values(b)).map(|(x, y)| f(*x, *y)).collect();
        if out.iter().any(|v| v.is_infinite()) {
            return Err(EngineError::DataException { message: "value out of range: overflow".into() }
                .into_datafusion());
        }
        let nulls = arrow::buffer::NullBuffer::union(a.nulls(), b.nulls());
        let result: ArrayRef = Arc::new(vector_array(dims, out, nulls));
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?)
        } else {
            ColumnarValue::Array(result)
        })
    }
}

/// Every function of this module.
pub fn functions() -> Vec<ScalarUDF> {
    let mut out: Vec<ScalarUDF> =
        Distance::ALL.into_iter().map(|d| ScalarUDF::from(DistanceFunction::new(d))).collect();
    for kind in [Unary::Dims, Unary::Norm, Unary::Normalize] {
        out.push(ScalarUDF::from(UnaryFunction {
            kind,
            signature: Signature::any(1, Volatility::Immutable),
        }));
    }
    out.push(ScalarUDF::from(Subvector { signature: Signature::any(3, Volatility::Immutable) }));
    for op in [Arith::Add, Arith::Sub, Arith::Mul] {
        out.push(ScalarUDF::from(ArithFunction { op, signature: Signature::any(2, Volatility::Immutable) }));
    }
    out
}

/// Plans pgvector's operators: `<->`, `<=>`, `<#>`, `<+>` (also as
/// `OPERATOR(pg_catalog.<->)`) become distance functions, and `+ - *` of two vectors
/// the element-wise functions. A string or untyped parameter facing a vector becomes
/// a vector of the same dimension.
#[derive(Debug, Default)]
pub struct VectorOperators;

impl ExprPlanner for VectorOperators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> datafusion::error::Result<PlannerResult<RawBinaryExpr>> {
        let left_type = expr.left.get_type(schema).ok();
        let right_type = expr.right.get_type(schema).ok();
        let dims =
            left_type.as_ref().and_then(vector_dims).or_else(|| right_type.as_ref().and_then(vector_dims));
        let name = match (&expr.op, Distance::operator(&expr.op)) {
            (_, Some(distance)) => {
                // `<=>` is also MySQL's null-safe equality, which DataFusion plans
                // otherwise: it means cosine distance only between vectors.
                if expr.op == BinaryOperator::Spaceship && dims.is_none() {
                    return Ok(PlannerResult::Original(expr));
                }
                distance.function_name()
            }
            (BinaryOperator::Plus, None) if dims.is_some() => "vector_add",
            (BinaryOperator::Minus, None) if dims.is_some() => "vector_sub",
            (BinaryOperator::Multiply, None) if dims.is_some() => "vector_mul",
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let Some(dims) = dims else {
            return plan_err!(
                "operator does not exist: {} {} {}",
                left_type.map(|t| t.to_string()).unwrap_or_default(),
                expr.op,
                right_type.map(|t| t.to_string()).unwrap_or_default()
            );
        };
        let udf =
            functions().into_iter().find(|f| f.name() == name).expect("every operator has its function");
        let args = vec![as_vector(expr.left, dims), as_vector(expr.right, dims)];
        Ok(PlannerResult::Planned(Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(udf), args))))
    }
}

/// `expr` as a vector of `dims` dimensions when it is text or an untyped parameter.
fn as_vector(expr: Expr, dims: i32) -> Expr {
    match expr {
        Expr::Literal(ScalarValue::Utf8(_) | ScalarValue::Utf8View(_) | ScalarValue::LargeUtf8(_), _) => {
            let to_vector = ScalarUDF::from(crate::search::vector::ToVector::default());
            Expr::ScalarFunction(ScalarFunction::new_udf(
                Arc::new(to_vector),
                vec![expr, Expr::Literal(ScalarValue::Int32(Some(dims)), None)],
            ))
        }
        Expr::Placeholder(Placeholder { id, field: None }) => Expr::Placeholder(Placeholder {
            id,
            field: Some(Arc::new(Field::new("", vector_arrow_type(dims), true))),
        }),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_match_pgvector() {
        let (a, b) = ([1.0f32, 2.0, 3.0], [4.0f32, 5.0, 6.0]);
        assert!((Distance::L2.eval(&a, &b) - 27f64.sqrt()).abs() < 1e-6);
        assert_eq!(Distance::InnerProduct.eval(&a, &b), 32.0);
        assert_eq!(Distance::NegativeInnerProduct.eval(&a, &b), -32.0);
        assert_eq!(Distance::L1.eval(&a, &b), 9.0);
        let cos = 32.0 / (14f64.sqrt() * 77f64.sqrt());
        assert!((Distance::Cosine.eval(&a, &b) - (1.0 - cos)).abs() < 1e-6);
        assert!(Distance::Cosine.eval(&[0.0, 0.0], &[1.0, 1.0]).is_nan());
        assert_eq!(Distance::Cosine.eval(&[1.0, 1.0], &[2.0, 2.0]), 0.0);
    }

    #[test]
    fn subvector_bounds() {
        assert_eq!(subvector_range(5, 2, 3).unwrap(), (1, 4));
        assert_eq!(subvector_range(5, 4, 10).unwrap(), (3, 5));
        assert_eq!(subvector_range(5, -1, 3).unwrap(), (0, 1));
        assert!(subvector_range(5, 6, 1).is_err());
        assert!(subvector_range(5, 1, 0).is_err());
    }
}
