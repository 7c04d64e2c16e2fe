//! pgvector's `avg(vector)` and `sum(vector)`: element-wise, a vector of the same
//! dimension. They are DataFusion's `avg` and `sum` for every other type: each is
//! registered under the built-in's name as a wrapper that hands anything but a vector
//! to the built-in.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, GroupsAccumulator, ReversedUDAF, SetMonotonicity, Signature,
};

use crate::search::vector::{vector_array, vector_dims};

/// `avg` or `sum`, taking vectors too.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VectorAware {
    builtin: AggregateUDF,
    average: bool,
    /// User-defined: [`AggregateUDFImpl::coerce_types`] takes vectors as they are and
    /// gives every other type the built-in's coercion.
    signature: Signature,
}

impl VectorAware {
    pub fn avg() -> AggregateUDF {
        Self::wrap(datafusion::functions_aggregate::average::avg_udaf().as_ref().clone(), true)
    }

    pub fn sum() -> AggregateUDF {
        Self::wrap(datafusion::functions_aggregate::sum::sum_udaf().as_ref().clone(), false)
    }

    fn wrap(builtin: AggregateUDF, average: bool) -> AggregateUDF {
        let signature = Signature::user_defined(builtin.signature().volatility);
        AggregateUDF::from(VectorAware { builtin, average, signature })
    }

    fn inner(&self) -> &dyn AggregateUDFImpl {
        self.builtin.inner().as_ref()
    }
}

fn is_vector(data_type: &DataType) -> bool {
    vector_dims(data_type).is_some()
}

impl AggregateUDFImpl for VectorAware {
    fn name(&self) -> &str {
        self.inner().name()
    }

    fn aliases(&self) -> &[String] {
        self.inner().aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if let [t] = arg_types {
            if is_vector(t) {
                return Ok(arg_types.to_vec());
            }
        }
        let fields: Vec<FieldRef> =
            arg_types.iter().map(|t| Arc::new(Field::new("", t.clone(), true))).collect();
        let coerced =
            datafusion::logical_expr::type_coercion::functions::fields_with_udf(&fields, &self.builtin)?;
        Ok(coerced.iter().map(|f| f.data_type().clone()).collect())
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [t] if is_vector(t) => Ok(t.clone()),
            _ => self.inner().return_type(arg_types),
        }
    }

    fn return_field(&self, arg_fields: &[FieldRef]) -> Result<FieldRef> {
        match arg_fields {
            [f] if is_vector(f.data_type()) => {
                Ok(Arc::new(Field::new(self.name(), f.data_type().clone(), true)))
            }
            _ => self.inner().return_field(arg_fields),
        }
    }

    fn is_nullable(&self) -> bool {
        self.inner().is_nullable()
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        match vector_dims(args.return_field.data_type()) {
            Some(dims) => Ok(Box::new(VectorSum::new(dims as usize, self.average))),
            None => self.inner().accumulator(args),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        match vector_dims(args.return_field.data_type()) {
            Some(dims) => Ok(vec![
                Arc::new(Field::new(
                    "sum",
                    DataType::FixedSizeList(Arc::new(Field::new_list_field(DataType::Float64, true)), dims),
                    true,
                )),
                Arc::new(Field::new("count", DataType::Int64, true)),
            ]),
            None => self.inner().state_fields(args),
        }
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        !is_vector(args.return_field.data_type()) && self.inner().groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        self.inner().create_groups_accumulator(args)
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        match vector_dims(args.return_field.data_type()) {
            Some(_) => self.accumulator(args),
            None => self.inner().create_sliding_accumulator(args),
        }
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.inner().order_sensitivity()
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        // Neither depends on the order of its input.
        ReversedUDAF::Identical
    }

    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        self.inner().default_value(data_type)
    }

    fn set_monotonicity(&self, data_type: &DataType) -> SetMonotonicity {
        self.inner().set_monotonicity(data_type)
    }
}

/// The element-wise sum (in double precision, as pgvector) and count of vectors.
#[derive(Debug)]
struct VectorSum {
    sum: Vec<f64>,
    count: i64,
    average: bool,
}

impl VectorSum {
    fn new(dims: usize, average: bool) -> Self {
        VectorSum { sum: vec![0.0; dims], count: 0, average }
    }

    fn add(&mut self, values: &[f32]) {
        for (s, v) in self.sum.iter_mut().zip(values) {
            *s += *v as f64;
        }
    }
}

impl Accumulator for VectorSum {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let vectors = values[0].as_fixed_size_list();
        let dims = self.sum.len();
        let all = crate::search::distance::values(vectors);
        for i in 0..vectors.len() {
            if vectors.is_valid(i) {
                self.add(&all[i * dims..(i + 1) * dims]);
                self.count += 1;
            }
        }
        Ok(())
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let vectors = values[0].as_fixed_size_list();
        let dims = self.sum.len();
        let all = crate::search::distance::values(vectors);
        for i in 0..vectors.len() {
            if vectors.is_valid(i) {
                for (s, v) in self.sum.iter_mut().zip(&all[i * dims..(i + 1) * dims]) {
                    *s -= *v as f64;
                }
                self.count -= 1;
            }
        }
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let dims = self.sum.len();
        if self.count == 0 {
            let nulls = Some(arrow::buffer::NullBuffer::new_null(1));
            return Ok(ScalarValue::FixedSizeList(Arc::new(vector_array(dims, vec![0.0; dims], nulls))));
        }
        let divisor = if self.average { self.count as f64 } else { 1.0 };
        let values: Vec<f32> = self.sum.iter().map(|s| (s / divisor) as f32).collect();
        Ok(ScalarValue::FixedSizeList(Arc::new(vector_array(dims, values, None))))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.sum.len() * 8
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let dims = self.sum.len() as i32;
        let sum = arrow::array::FixedSizeListArray::new(
            Arc::new(Field::new_list_field(DataType::Float64, true)),
            dims,
            Arc::new(Float64Array::from(self.sum.clone())),
            None,
        );
        Ok(vec![ScalarValue::FixedSizeList(Arc::new(sum)), ScalarValue::Int64(Some(self.count))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let sums = states[0].as_fixed_size_list();
        let counts = states[1].as_any().downcast_ref::<Int64Array>().expect("count state");
        let dims = self.sum.len();
        for i in 0..sums.len() {
            if sums.is_valid(i) {
                let sum = sums.value(i);
                let sum = sum.as_primitive::<arrow::datatypes::Float64Type>();
                for (s, v) in self.sum.iter_mut().zip(sum.values().iter().take(dims)) {
                    *s += v;
                }
                self.count += counts.value(i);
            }
        }
        Ok(())
    }
}
