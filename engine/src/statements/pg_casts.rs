//! Casts whose text Arrow writes differently from PostgreSQL. [`TextCasts`], an
//! analyzer rule that runs after type coercion, replaces each cast to text (`x::text`,
//! and the casts type coercion adds for `'a' || x`) of a float, a timestamp or an
//! array with [`PgText`]:
//!
//! - a float: `1`, not `1.0`; `1e+20`, not `100000000000000000000`;
//! - a timestamp: `2024-01-01 10:00:00+00`, not `2024-01-01T10:00:00Z`;
//! - an array: `{1,2}`, `{"a b",NULL}`, not `[1, 2]`; an `int2vector` or `oidvector`
//!   (`indkey::text`, which SQLAlchemy 1.4 reads): `1 2`.

use std::sync::Arc;

use arrow::array::{Array, Float32Array, Float64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, TimeUnit};
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

use crate::types::{write_array, write_element, write_float, write_timestamp};

#[derive(Debug)]
pub struct TextCasts;

/// Whether [`PgText`] prints values of this type.
fn printed_by_us(t: &DataType) -> bool {
    matches!(t, DataType::Float32 | DataType::Float64 | DataType::Timestamp(..) | DataType::List(_))
}

impl AnalyzerRule for TextCasts {
    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> DfResult<LogicalPlan> {
        let to_text = Arc::new(ScalarUDF::from(PgText::default()));
        let to_spaced_text = Arc::new(ScalarUDF::from(PgText::spaced()));
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
                        ) && cast.expr.get_type(&schema).is_ok_and(|t| printed_by_us(&t)) =>
                    {
                        let target = cast.field.data_type().clone();
                        // `indkey::text` is `1 2`, an `int2vector`'s text.
                        let spaced = cast.expr.to_field(&schema).is_ok_and(|(_, field)| {
                            let pg = crate::types::pg_type_of(&field);
                            pg == crate::types::PgType::INT2VECTOR || pg == crate::types::PgType::OIDVECTOR
                        });
                        let function = if spaced { to_spaced_text.clone() } else { to_text.clone() };
                        let text = Expr::ScalarFunction(ScalarFunction::new_udf(function, vec![*cast.expr]));
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

/// Floats (`real`, `double precision`), timestamps (`timestamp`, `timestamptz`) and
/// arrays to text as PostgreSQL prints them; `spaced`, arrays as an `int2vector` or
/// `oidvector` prints them (`1 2`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgText {
    signature: Signature,
    spaced: bool,
}

impl Default for PgText {
    fn default() -> Self {
        Self { signature: Signature::any(1, Volatility::Immutable), spaced: false }
    }
}

impl PgText {
    fn spaced() -> Self {
        Self { spaced: true, ..Self::default() }
    }
}

impl ScalarUDFImpl for PgText {
    fn name(&self) -> &str {
        if self.spaced {
            "tarn_pg_vector_text"
        } else {
            "tarn_pg_text"
        }
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
        let mut print = |write: &mut dyn FnMut(&mut String)| {
            text.clear();
            write(&mut text);
            text.clone()
        };
        let out: StringArray = match input.data_type() {
            DataType::Float32 => {
                let single = input.as_any().downcast_ref::<Float32Array>().expect("Float32");
                single.iter().map(|v| v.map(|v| print(&mut |t| write_float(t, f64::from(v), true)))).collect()
            }
            DataType::Float64 => {
                let double = input.as_any().downcast_ref::<Float64Array>().expect("Float64");
                double.iter().map(|v| v.map(|v| print(&mut |t| write_float(t, v, false)))).collect()
            }
            DataType::Timestamp(_, zone) => {
                let with_zone = zone.is_some();
                let micros = arrow::compute::cast(&input, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
                let micros = micros.as_any().downcast_ref::<TimestampMicrosecondArray>().expect("cast");
                let timestamp = |t: &mut String, v: i64| {
                    if !write_timestamp(t, v, with_zone) {
                        t.push_str(&v.to_string());
                    }
                };
                micros.iter().map(|v| v.map(|v| print(&mut |t| timestamp(t, v)))).collect()
            }
            DataType::List(_) => {
                let lists = input.as_any().downcast_ref::<arrow::array::ListArray>().expect("List");
                let spaced = self.spaced;
                lists
                    .iter()
                    .map(|v| v.map(|v| print(&mut |t| write_array(t, &v, spaced, &write_element))))
                    .collect()
            }
            other => {
                return datafusion::common::exec_err!(
                    "tarn_pg_text takes a float, a timestamp or an array, not {other}"
                )
            }
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
