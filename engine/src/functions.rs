//! Functions clients call to learn who they talk to: `version()`, `current_database()`,
//! `current_schema()`. The catalog functions are `catalog::pg_catalog::functions`.

use std::sync::Arc;

use arrow::array::ArrayRef;
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
