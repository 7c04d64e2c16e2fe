//! Casts whose text Arrow writes differently from PostgreSQL. [`TextCasts`], an
//! analyzer rule that runs after type coercion, replaces each cast to text (`x::text`,
//! and the casts type coercion adds for `'a' || x`) of:
//!
//! - a float with [`FloatToText`]: `1`, not `1.0`; `1e+20`, not `100000000000000000000`;
//! - a timestamp with [`TimestampToText`]: `2024-01-01 10:00:00+00`, not
//!   `2024-01-01T10:00:00Z`.

use std::sync::Arc;

use arrow::array::{Array, Float32Array, Float64Array, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::DFSchema;
use datafusion::config::ConfigOptions;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use crate::types::{write_float, write_timestamp};

#[derive(Debug)]
pub struct TextCasts;

impl AnalyzerRule for TextCasts {
    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> DfResult<LogicalPlan> {
        let float_text = Arc::new(ScalarUDF::from(FloatToText::default()));
        let timestamp_text = Arc::new(ScalarUDF::from(TimestampToText::default()));
        let text_of = |t: &DataType| match t {
            DataType::Float32 | DataType::Float64 => Some(float_text.clone()),
            DataType::Timestamp(..) => Some(timestamp_text.clone()),
            _ => None,
        };
        plan.transform_up_with_subqueries(|node| {
            let mut schema = DFSchema::empty();
            for input in node.inputs() {
                schema.merge(input.schema());
            }
            let names = NamePreserver::new(&node);
            node.map_expressions(|e| {
                let name = names.save(&e);
                e.transform_up(|e| match e {
                    Expr::Cast(cast)
                        if matches!(
                            cast.field.data_type(),
                            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
                        ) && cast.expr.get_type(&schema).is_ok_and(|t| text_of(&t).is_some()) =>
                    {
                        let target = cast.field.data_type().clone();
                        let to_text = text_of(&cast.expr.get_type(&schema)?).expect("checked");
                        let text = Expr::ScalarFunction(ScalarFunction::new_udf(to_text, vec![*cast.expr]));
                        // Utf8View or LargeUtf8 where coercion asked for them.
                        Ok(Transformed::yes(if target == DataType::Utf8 {
                            text
                        } else {
                            text.cast_to(&target, &schema)?
                        }))
                    }
                    e => Ok(Transformed::no(e)),
                })
                .map(|t| t.update_data(|e| name.restore(e)))
            })
            .and_then(crate::statements::scalar_subqueries::recompute_if_changed)
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "tarn_text_casts"
    }
}

/// `timestamp` and `timestamptz` to text as PostgreSQL prints them.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TimestampToText {
    signature: Signature,
}

impl Default for TimestampToText {
    fn default() -> Self {
        Self { signature: Signature::any(1, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for TimestampToText {
    fn name(&self) -> &str {
        "tarn_timestamp_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let input = args.args[0].to_array(args.number_rows)?;
        let DataType::Timestamp(_, zone) = input.data_type() else {
            return datafusion::common::exec_err!(
                "tarn_timestamp_text takes a timestamp, not {}",
                input.data_type()
            );
        };
        let with_zone = zone.is_some();
        let micros = arrow::compute::cast(
            &input,
            &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
        )?;
        let micros = micros.as_any().downcast_ref::<arrow::array::TimestampMicrosecondArray>().expect("cast");
        let mut text = String::new();
        let out: StringArray = micros
            .iter()
            .map(|v| {
                v.map(|v| {
                    text.clear();
                    if !write_timestamp(&mut text, v, with_zone) {
                        text.push_str(&v.to_string());
                    }
                    text.clone()
                })
            })
            .collect();
        crate::functions::like_input(&args.args[0], Arc::new(out) as Arc<dyn Array>)
    }
}

/// `real` and `double precision` to text as PostgreSQL prints them.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FloatToText {
    signature: Signature,
}

impl Default for FloatToText {
    fn default() -> Self {
        Self { signature: Signature::any(1, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for FloatToText {
    fn name(&self) -> &str {
        "tarn_float_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let input = args.args[0].to_array(args.number_rows)?;
        let mut text = String::new();
        let mut print = |value: f64, single: bool| {
            text.clear();
            write_float(&mut text, value, single);
            text.clone()
        };
        let out: StringArray = if let Some(single) = input.as_any().downcast_ref::<Float32Array>() {
            single.iter().map(|v| v.map(|v| print(f64::from(v), true))).collect()
        } else if let Some(double) = input.as_any().downcast_ref::<Float64Array>() {
            double.iter().map(|v| v.map(|v| print(v, false))).collect()
        } else {
            return datafusion::common::exec_err!("tarn_float_text takes a float, not {}", input.data_type());
        };
        crate::functions::like_input(&args.args[0], Arc::new(out) as Arc<dyn Array>)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn floats_print_like_postgres() {
        let mut s = String::new();
        for (v, want) in [(0.1, "0.1"), (1e20, "1e+20"), (1.5e-7, "1.5e-07"), (-2.0, "-2"), (f64::NAN, "NaN")]
        {
            s.clear();
            crate::types::write_float(&mut s, v, false);
            assert_eq!(s, want);
        }
    }
}
