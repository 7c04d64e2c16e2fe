//! `embed(text [, model])`: a sentence embedding as a `vector(n)`, computed by the
//! models folder's model (`tarn_models`; all-MiniLM-L6-v2, 384 dimensions, by default).
//!
//! The function is vectorized: DataFusion hands it a column of texts per batch, and
//! the model embeds them together (ordered by length, a forward pass per 32 texts, the
//! matrix products on every core), so `INSERT ... SELECT embed(body) ...`, a generated
//! column and a query over many rows never run the model once per row. Equal texts in
//! a batch are embedded once. It is immutable: a constant `embed('question')` is
//! computed once while the statement is planned, which is what lets the kNN rule see
//! `ORDER BY v <=> embed('question') LIMIT k` as a search for a constant vector (and
//! `embed($1)` as one for a parameter).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, StringArray};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{exec_err, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use tarn_models::{Models, SentenceEmbedder, DEFAULT_MODEL};

use crate::error::EngineError;
use crate::search::vector::vector_array;
use crate::types::vector_arrow_type;

pub fn register(ctx: &SessionContext, models: &Arc<Models>) {
    ctx.register_udf(ScalarUDF::from(Embed {
        signature: Signature::one_of(
            vec![TypeSignature::String(1), TypeSignature::String(2)],
            Volatility::Immutable,
        ),
        models: models.clone(),
    }));
}

#[derive(Debug)]
struct Embed {
    signature: Signature,
    models: Arc<Models>,
}

impl PartialEq for Embed {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.models, &other.models)
    }
}

impl Eq for Embed {}

impl std::hash::Hash for Embed {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "embed".hash(state);
    }
}

impl Embed {
    /// The model named by the second argument (a constant), or the default one.
    fn model(&self, name: Option<&ScalarValue>) -> DfResult<Arc<SentenceEmbedder>> {
        let name = match name {
            None => DEFAULT_MODEL.to_string(),
            Some(
                ScalarValue::Utf8(Some(n)) | ScalarValue::LargeUtf8(Some(n)) | ScalarValue::Utf8View(Some(n)),
            ) => n.clone(),
            Some(other) => return exec_err!("embed: the model must be a name, not {other}"),
        };
        self.models.embedder(&name).map_err(|e| EngineError::from(e).into_datafusion())
    }
}

impl ScalarUDFImpl for Embed {
    fn name(&self) -> &str {
        "embed"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        unreachable!("return_field_from_args is implemented")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let model = match args.scalar_arguments.get(1) {
            None => self.model(None)?,
            Some(Some(name)) => self.model(Some(name))?,
            Some(None) => return exec_err!("embed: the model must be a constant"),
        };
        Ok(Arc::new(Field::new(self.name(), vector_arrow_type(model.dimensions() as i32), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let model = match args.args.get(1) {
            None => self.model(None)?,
            Some(ColumnarValue::Scalar(name)) => self.model(Some(name))?,
            Some(ColumnarValue::Array(_)) => return exec_err!("embed: the model must be a constant"),
        };
        let input = args.args[0].to_array(args.number_rows)?;
        let text = arrow::compute::cast(&input, &DataType::Utf8)?;
        let text: &StringArray = text.as_string::<i32>();
        // Each distinct text once.
        let mut distinct: Vec<&str> = Vec::new();
        let mut slot_of: HashMap<&str, usize> = HashMap::new();
        let slots: Vec<Option<usize>> = text
            .iter()
            .map(|item| {
                item.map(|t| {
                    *slot_of.entry(t).or_insert_with(|| {
                        distinct.push(t);
                        distinct.len() - 1
                    })
                })
            })
            .collect();
        let dims = model.dimensions();
        let vectors = model.embed(&distinct).map_err(|e| EngineError::from(e).into_datafusion())?;
        let mut values = Vec::with_capacity(slots.len() * dims);
        for slot in &slots {
            match slot {
                Some(s) => values.extend_from_slice(&vectors[s * dims..(s + 1) * dims]),
                None => values.extend(std::iter::repeat_n(0.0, dims)),
            }
        }
        let nulls = text.nulls().cloned();
        let array = vector_array(dims, values, nulls);
        crate::functions::like_input(&args.args[0], Arc::new(array))
    }
}
