//! Text preprocessing next to the data, for RAG pipelines written in SQL:
//!
//! - `normalize_text(text)`: Unicode NFKC (compatibility forms folded: `ﬁ` to `fi`,
//!   full-width letters to ASCII), control characters dropped, runs of whitespace made
//!   one space, trimmed. Case is kept (the embedding model lower-cases itself).
//! - `chunk_text(text, max_tokens, overlap)`: a set-returning function, a row per
//!   chunk of at most `max_tokens` tokens, consecutive chunks sharing `overlap` tokens.
//!   A token is a whitespace-separated word (a WordPiece model sees about 1.3 pieces per
//!   English word, so 190 words fit all-MiniLM-L6-v2's 256). A chunk ends at a
//!   sentence's end when one falls in its second half. In a select list it is
//!   `unnest(tarn_chunk_text(...))` (`statements::pg_syntax`), as DataFusion has no
//!   set-returning scalar functions.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListBuilder, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    create_udf, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use unicode_normalization::UnicodeNormalization;

use crate::error::EngineError;

pub fn register(ctx: &SessionContext) {
    ctx.register_udf(create_udf(
        "normalize_text",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let input = args[0].to_array(1)?;
            let text = arrow::compute::cast(&input, &DataType::Utf8)?;
            let out: StringArray = text.as_string::<i32>().iter().map(|t| t.map(normalize)).collect();
            crate::functions::like_input(&args[0], Arc::new(out))
        }),
    ));
    ctx.register_udf(ScalarUDF::from(ChunkText::default()));
}

/// NFKC, no control characters, single spaces, trimmed.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.nfkc() {
        if c.is_whitespace() {
            space = !out.is_empty();
        } else if !c.is_control() {
            if space {
                out.push(' ');
                space = false;
            }
            out.push(c);
        }
    }
    out
}

/// The chunks of `text`: windows of at most `max_tokens` words that overlap by
/// `overlap`, each ending at a sentence end in its second half when there is one.
pub fn chunks(text: &str, max_tokens: usize, overlap: usize) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut out = Vec::new();
    let mut start = 0;
    while start < words.len() {
        let mut end = (start + max_tokens).min(words.len());
        if end < words.len() {
            let earliest = start + (max_tokens / 2).max(1);
            if let Some(cut) = (earliest..end).rev().find(|&i| words[i - 1].ends_with(['.', '!', '?'])) {
                end = cut.max(start + 1);
            }
        }
        out.push(words[start..end].join(" "));
        if end == words.len() {
            break;
        }
        // Always forward, however large the overlap.
        start = end.saturating_sub(overlap).max(start + 1);
    }
    out
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ChunkText {
    signature: Signature,
}

impl Default for ChunkText {
    fn default() -> Self {
        Self {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Int64, DataType::Int64]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Int64]),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for ChunkText {
    fn name(&self) -> &str {
        "tarn_chunk_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let text = args.args[0].to_array(rows)?;
        let text = text.as_string::<i32>();
        let number = |i: usize| -> DfResult<Option<ArrayRef>> {
            args.args.get(i).map(|a| a.to_array(rows)).transpose()
        };
        let max_tokens = number(1)?.expect("two arguments at least");
        let max_tokens = max_tokens.as_primitive::<arrow::datatypes::Int64Type>();
        let overlap = number(2)?;
        let overlap = overlap.as_ref().map(|o| o.as_primitive::<arrow::datatypes::Int64Type>());
        let mut out = ListBuilder::new(StringBuilder::new());
        for row in 0..rows {
            if text.is_null(row) || max_tokens.is_null(row) {
                out.append_null();
                continue;
            }
            let max = max_tokens.value(row);
            let lap = overlap.map_or(0, |o| if o.is_null(row) { 0 } else { o.value(row) });
            if max < 1 || lap < 0 || lap >= max {
                return Err(EngineError::InvalidParameter {
                    message: format!(
                        "chunk_text: max_tokens must be at least 1 and overlap from 0 to max_tokens - 1 (given {max} and {lap})"
                    ),
                }
                .into_datafusion());
            }
            for chunk in chunks(text.value(row), max as usize, lap as usize) {
                out.values().append_value(chunk);
            }
            out.append(true);
        }
        let array: ArrayRef = Arc::new(out.finish());
        match &args.args[0] {
            ColumnarValue::Scalar(_) if args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) => {
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?))
            }
            _ => Ok(ColumnarValue::Array(array)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_unicode_and_space() {
        assert_eq!(normalize("  \u{FB01}ne\tＡＢＣ\n\u{0007}end  "), "fine ABC end");
    }

    #[test]
    fn chunks_overlap_and_end_at_sentences() {
        let text = "one two three. four five six seven eight nine ten";
        assert_eq!(
            chunks(text, 4, 1),
            ["one two three.", "three. four five six", "six seven eight nine", "nine ten"]
        );
        assert_eq!(chunks("a b c", 10, 2), ["a b c"]);
        assert!(chunks("", 5, 0).is_empty());
        // However large the overlap, each chunk starts later than the one before.
        assert_eq!(chunks("a b c d", 2, 1), ["a b", "b c", "c d"]);
    }
}
