//! Functions clients call to learn who they talk to: `version()`, `current_database()`,
//! `current_schema()`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray, UInt32Array};
use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
use datafusion::prelude::SessionContext;

use crate::statements::settings::SERVER_VERSION;

pub fn version_string() -> String {
    format!(
        "PostgreSQL {SERVER_VERSION} (Tarn {}) on {}-linux, compiled by rustc, 64-bit",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    )
}

pub fn register(ctx: &SessionContext, database: &str) {
    let constant = |name: &str, value: String| {
        let value = ScalarValue::Utf8(Some(value));
        create_udf(
            name,
            vec![],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(move |_| Ok(ColumnarValue::Scalar(value.clone()))),
        )
    };
    ctx.register_udf(constant("version", version_string()));
    ctx.register_udf(constant("current_database", database.to_string()));
    ctx.register_udf(constant("current_schema", crate::statements::ddl::DEFAULT_SCHEMA.to_string()));
    ctx.register_udf(create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::UInt32,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            map_rows(args, |name: &StringArray| -> ArrayRef {
                Arc::new(
                    name.iter()
                        .map(|n| n.and_then(crate::catalog::pg_catalog::type_oid))
                        .collect::<UInt32Array>(),
                )
            })
        }),
    ));
    // Every relation is visible: there is no search path beyond `public`.
    ctx.register_udf(create_udf(
        "pg_table_is_visible",
        vec![DataType::UInt32],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            map_rows(args, |oids: &UInt32Array| -> ArrayRef {
                Arc::new(oids.iter().map(|o| o.map(|_| true)).collect::<arrow::array::BooleanArray>())
            })
        }),
    ));
    ctx.register_udf(create_udf(
        "tarn_regtype_name",
        vec![DataType::UInt32],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            map_rows(args, |oids: &UInt32Array| -> ArrayRef {
                Arc::new(
                    oids.iter()
                        .map(|o| {
                            o.map(|o| {
                                crate::catalog::pg_catalog::type_name(o).map_or(o.to_string(), str::to_string)
                            })
                        })
                        .collect::<StringArray>(),
                )
            })
        }),
    ));
}

/// Applies `f` to the one argument of a UDF, keeping a scalar a scalar.
fn map_rows<A: Array + 'static>(
    args: &[ColumnarValue],
    f: impl Fn(&A) -> ArrayRef,
) -> datafusion::error::Result<ColumnarValue> {
    let input = args[0].to_array(1)?;
    let Some(typed) = input.as_any().downcast_ref::<A>() else {
        return datafusion::common::exec_err!("unexpected argument type {}", input.data_type());
    };
    like_input(&args[0], f(typed))
}

/// A UDF's result shaped like its input: a scalar for a scalar argument (so constants
/// stay foldable), an array otherwise.
pub(crate) fn like_input(
    input: &ColumnarValue,
    result: ArrayRef,
) -> datafusion::error::Result<ColumnarValue> {
    Ok(match input {
        ColumnarValue::Scalar(_) => ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?),
        ColumnarValue::Array(_) => ColumnarValue::Array(result),
    })
}
