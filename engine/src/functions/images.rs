//! Images stored as `bytea`, decoded next to the data (the `image` crate: PNG, JPEG,
//! GIF, WebP, BMP, TIFF):
//!
//! - `image_info(bytea)`: JSON text `{"format":"png","height":480,"width":640}` (read
//!   from the header, the pixels are not decoded; `::jsonb ->> 'width'` reads a field);
//!   NULL for NULL.
//! - `image_thumbnail(bytea, max_side)`: the image scaled down (aspect kept, Lanczos)
//!   so that its longer side is at most `max_side` pixels, encoded as PNG (JPEG input
//!   stays JPEG); an image already small enough is returned as it is.
//! - `image_embed(bytea [, model])`: the hook for image embeddings. No image model
//!   ships (all-MiniLM-L6-v2 reads text); the function names what it needs and fails
//!   with 0A000 until a CLIP-style model runtime is added to `tarn_models`.
//!
//! Bytes that are no image of these formats are 22023 with the decoder's reason.

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BinaryArray, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, SimpleScalarUDF, Volatility};
use datafusion::prelude::SessionContext;
use image::{ImageFormat, ImageReader};

use crate::error::EngineError;

/// The longest side `image_thumbnail` makes.
const MAX_THUMBNAIL_SIDE: i64 = 4096;

pub fn register(ctx: &SessionContext) {
    ctx.register_udf(create_udf(
        "image_info",
        vec![DataType::Binary],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let input = args[0].to_array(1)?;
            let bytes = arrow::compute::cast(&input, &DataType::Binary)?;
            let info: StringArray =
                bytes.as_binary::<i32>().iter().map(|b| b.map(info).transpose()).collect::<DfResult<_>>()?;
            crate::functions::like_input(&args[0], Arc::new(info))
        }),
    ));
    ctx.register_udf(create_udf(
        "image_thumbnail",
        vec![DataType::Binary, DataType::Int64],
        DataType::Binary,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = args.iter().find_map(|a| match a {
                ColumnarValue::Array(a) => Some(a.len()),
                _ => None,
            });
            let input = arrow::compute::cast(&args[0].to_array(rows.unwrap_or(1))?, &DataType::Binary)?;
            let sides = args[1].to_array(rows.unwrap_or(1))?;
            let sides = sides.as_primitive::<arrow::datatypes::Int64Type>();
            let out: BinaryArray = input
                .as_binary::<i32>()
                .iter()
                .enumerate()
                .map(|(i, b)| match (b, sides.is_null(i)) {
                    (Some(b), false) => thumbnail(b, sides.value(i)).map(Some),
                    _ => Ok(None),
                })
                .collect::<DfResult<_>>()?;
            match rows {
                Some(_) => Ok(ColumnarValue::Array(Arc::new(out))),
                None => Ok(ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&out, 0)?)),
            }
        }),
    ));
    {
        let signature = datafusion::logical_expr::Signature::one_of(
            vec![
                datafusion::logical_expr::TypeSignature::Exact(vec![DataType::Binary]),
                datafusion::logical_expr::TypeSignature::Exact(vec![DataType::Binary, DataType::Utf8]),
            ],
            Volatility::Immutable,
        );
        ctx.register_udf(ScalarUDF::from(SimpleScalarUDF::new_with_signature(
            "image_embed",
            signature,
            crate::types::vector_arrow_type(512),
            Arc::new(|_: &[ColumnarValue]| {
                Err(EngineError::unsupported(
                    "image_embed: no image embedding model is available (Tarn ships a text model, all-MiniLM-L6-v2; \
                     image embeddings need a CLIP-style model, not supported yet)",
                )
                .into_datafusion())
            }),
        )));
    }
}

fn invalid(reason: impl std::fmt::Display) -> datafusion::error::DataFusionError {
    EngineError::InvalidParameter { message: format!("not a readable image: {reason}") }.into_datafusion()
}

fn reader(bytes: &[u8]) -> DfResult<ImageReader<Cursor<&[u8]>>> {
    ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(invalid)
}

fn format_name(format: ImageFormat) -> String {
    format.extensions_str().first().copied().unwrap_or("unknown").to_string()
}

/// `{"format": ..., "width": ..., "height": ...}` from the header.
fn info(bytes: &[u8]) -> DfResult<String> {
    let reader = reader(bytes)?;
    let format = reader.format().ok_or_else(|| invalid("unknown format"))?;
    let (width, height) = reader.into_dimensions().map_err(invalid)?;
    Ok(serde_json::json!({ "format": format_name(format), "width": width, "height": height }).to_string())
}

/// The image with its longer side at most `max_side`.
fn thumbnail(bytes: &[u8], max_side: i64) -> DfResult<Vec<u8>> {
    if !(1..=MAX_THUMBNAIL_SIDE).contains(&max_side) {
        return Err(EngineError::InvalidParameter {
            message: format!(
                "image_thumbnail: max_side must be from 1 to {MAX_THUMBNAIL_SIDE}, not {max_side}"
            ),
        }
        .into_datafusion());
    }
    let reader = reader(bytes)?;
    let format = reader.format().ok_or_else(|| invalid("unknown format"))?;
    let image = reader.decode().map_err(invalid)?;
    let side = max_side as u32;
    if image.width() <= side && image.height() <= side {
        return Ok(bytes.to_vec());
    }
    let small = image.resize(side, side, image::imageops::FilterType::Lanczos3);
    let out_format = if format == ImageFormat::Jpeg { ImageFormat::Jpeg } else { ImageFormat::Png };
    let small =
        if out_format == ImageFormat::Jpeg { image::DynamicImage::ImageRgb8(small.to_rgb8()) } else { small };
    let mut out = Cursor::new(Vec::new());
    small.write_to(&mut out, out_format).map_err(invalid)?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 128]));
        let mut out = Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(image).write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn reads_headers_and_scales_down() {
        let big = png(300, 120);
        assert_eq!(info(&big).unwrap(), r#"{"format":"png","height":120,"width":300}"#);
        let small = thumbnail(&big, 100).unwrap();
        assert_eq!(info(&small).unwrap(), r#"{"format":"png","height":40,"width":100}"#);
        assert_eq!(thumbnail(&small, 200).unwrap(), small);
        assert!(info(b"not an image").is_err());
        assert!(thumbnail(&big, 0).is_err());
    }
}
