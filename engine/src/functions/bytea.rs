//! `bytea` in the functions DataFusion has for text only, under the same names: a
//! `bytea` argument is handled here, text goes to DataFusion's function.
//!
//! - `substring(bytea FROM start [FOR count])` (also `substr`): PostgreSQL's byte
//!   substring.
//! - `length(bytea)` (`tarn_length`: DataFusion's planner turns `length` into its own
//!   `character_length`, see `statements::pg_syntax`), `octet_length(bytea)`: the
//!   number of bytes.

use std::sync::Arc;

use arrow::array::{Array, AsArray, BinaryArray};
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::types::{logical_binary, logical_int32, logical_int64, logical_string, NativeType};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    Coercion, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    TypeSignatureClass, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::error::EngineError;

pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::from(Substring::default()));
    for (name, inner) in [
        ("tarn_length", datafusion::functions::unicode::character_length()),
        ("octet_length", datafusion::functions::string::octet_length()),
    ] {
        ctx.register_udf(ScalarUDF::from(ByteCount::new(name, inner)));
    }
}

/// `length` or `octet_length`: bytes of a `bytea`, else the text function `inner`.
#[derive(Debug)]
struct ByteCount {
    name: &'static str,
    inner: Arc<ScalarUDF>,
    signature: Signature,
}

impl ByteCount {
    fn new(name: &'static str, inner: Arc<ScalarUDF>) -> Self {
        let binary =
            TypeSignature::Coercible(vec![Coercion::new_exact(TypeSignatureClass::Native(logical_binary()))]);
        let text =
            TypeSignature::Coercible(vec![Coercion::new_exact(TypeSignatureClass::Native(logical_string()))]);
        Self { name, inner, signature: Signature::one_of(vec![binary, text], Volatility::Immutable) }
    }
}

impl PartialEq for ByteCount {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for ByteCount {}

impl std::hash::Hash for ByteCount {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for ByteCount {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        if is_binary(&arg_types[0]) {
            Ok(DataType::Int32)
        } else {
            self.inner.return_type(arg_types)
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if !is_binary(&args.args[0].data_type()) {
            return self.inner.invoke_with_args(args);
        }
        let bytes = arrow::compute::cast(&args.args[0].to_array(args.number_rows)?, &DataType::Binary)?;
        let lengths: arrow::array::Int32Array =
            bytes.as_binary::<i32>().iter().map(|b| b.map(|b| b.len() as i32)).collect();
        crate::functions::like_input(&args.args[0], Arc::new(lengths))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Substring {
    signature: Signature,
    aliases: Vec<String>,
}

impl Default for Substring {
    fn default() -> Self {
        let int64 = Coercion::new_implicit(
            TypeSignatureClass::Native(logical_int64()),
            vec![TypeSignatureClass::Native(logical_int32())],
            NativeType::Int64,
        );
        let mut variants = Vec::new();
        for first in [logical_binary(), logical_string()] {
            let first = Coercion::new_exact(TypeSignatureClass::Native(first));
            variants.push(TypeSignature::Coercible(vec![first.clone(), int64.clone()]));
            variants.push(TypeSignature::Coercible(vec![first, int64.clone(), int64.clone()]));
        }
        Self {
            signature: Signature::one_of(variants, Volatility::Immutable),
            aliases: vec!["substring".into()],
        }
    }
}

fn is_binary(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_)
    )
}

impl ScalarUDFImpl for Substring {
    fn name(&self) -> &str {
        "substr"
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(if is_binary(&arg_types[0]) { DataType::Binary } else { DataType::Utf8View })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if !is_binary(&args.args[0].data_type()) {
            return datafusion::functions::unicode::substr().invoke_with_args(args);
        }
        let rows = args.number_rows;
        let all_scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let bytes = arrow::compute::cast(&args.args[0].to_array(rows)?, &DataType::Binary)?;
        let bytes = bytes.as_binary::<i32>();
        let start = args.args[1].to_array(rows)?;
        let start = start.as_primitive::<Int64Type>();
        let count = args.args.get(2).map(|c| c.to_array(rows)).transpose()?;
        let count = count.as_ref().map(|c| c.as_primitive::<Int64Type>());
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            if bytes.is_null(row) || start.is_null(row) || count.is_some_and(|c| c.is_null(row)) {
                out.push(None);
                continue;
            }
            let value = bytes.value(row);
            // 1-based; a start before the first byte shortens the count, as in PostgreSQL.
            let from = start.value(row) - 1;
            let to = match count {
                Some(c) if c.value(row) < 0 => {
                    return Err(EngineError::DataException {
                        message: "negative substring length not allowed".into(),
                    }
                    .into_datafusion())
                }
                Some(c) => from.saturating_add(c.value(row)),
                None => value.len() as i64,
            };
            let clamp = |i: i64| i.clamp(0, value.len() as i64) as usize;
            out.push(Some(&value[clamp(from)..clamp(to).max(clamp(from))]));
        }
        let array = Arc::new(BinaryArray::from(out));
        Ok(if all_scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(array.as_ref(), 0)?)
        } else {
            ColumnarValue::Array(array)
        })
    }
}
