//! Functions clients call to learn who they talk to: `version()`, `current_database()`,
//! `current_schema()`; and `pg_typeof(x)`. The catalog functions are
//! `catalog::pg_catalog::functions`.
//!
//! - [`datetime_template`]: `to_char`, `to_timestamp`, `to_date` with PostgreSQL's
//!   date/time templates (`'YYYY-MM-DD HH24:MI:SS'`).
//! - [`sequences`]: `nextval`, `currval`, `setval`, `lastval`.
//! - [`embed`]: `embed(text [, model])`, sentence embeddings by a local model.
//! - [`text_prep`]: `normalize_text`, `chunk_text` (RAG chunking).
//! - [`images`]: `image_info`, `image_thumbnail` over `bytea`.
//! - [`bytea`]: `substring` of `bytea`.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{
    create_udf, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::statements::settings::SERVER_VERSION;

pub mod bytea;
pub mod datetime_template;
pub mod embed;
pub mod images;
pub mod sequences;
pub mod text_prep;

pub fn version_string() -> String {
    format!(
        "PostgreSQL {SERVER_VERSION} (Tarn {}) on {}-linux, compiled by rustc, 64-bit",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    )
}

/// A function of no arguments that returns `value`.
fn constant(name: &str, value: String) -> ScalarUDF {
    let value = ScalarValue::Utf8(Some(value));
    create_udf(
        name,
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(value.clone()))),
    )
}

/// `current_user`, `current_role` and `user` (bare, as SQL writes them, or called):
/// the session's role (`SET ROLE`'s); `session_user`: who logged in.
pub fn register_user(ctx: &SessionContext, session_user: &str, role: &str) {
    for name in ["current_user", "current_role", "user"] {
        ctx.register_udf(constant(name, role.to_string()));
    }
    ctx.register_udf(constant("session_user", session_user.to_string()));
}

pub fn register(ctx: &SessionContext, database: &str) {
    ctx.register_udf(constant("version", version_string()));
    ctx.register_udf(constant("current_database", database.to_string()));
    ctx.register_udf(constant("current_schema", crate::statements::ddl::DEFAULT_SCHEMA.to_string()));
    ctx.register_udf(ScalarUDF::from(PgTypeof::default()));
    datetime_template::register(ctx);
    text_prep::register(ctx);
    images::register(ctx);
    bytea::register(ctx);
}

/// `pg_typeof(x)`: the name of `x`'s PostgreSQL type (`integer`, `jsonb`, `vector`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgTypeof {
    signature: Signature,
}

impl Default for PgTypeof {
    fn default() -> Self {
        Self { signature: Signature::any(1, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for PgTypeof {
    fn name(&self) -> &str {
        "pg_typeof"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::error::Result<ColumnarValue> {
        let pg_type = crate::types::pg_type_of(&args.arg_fields[0]);
        let name =
            crate::catalog::pg_catalog::type_name(pg_type.oid).unwrap_or_else(|| pg_type.name.to_string());
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))))
    }
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
