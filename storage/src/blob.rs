//! `bytea` in a Lance base: Lance's blob encoding.
//!
//! A `bytea` column of a Lance base is stored as a Lance blob (blob v2, file format
//! 2.2): values up to 64 KiB inline in the data file, larger ones packed into blob
//! files beside it, and those over 4 MiB each in a file of their own. The data file
//! itself then holds a small descriptor per row, so scans that skip the column, or
//! read it for a few rows, never read the other rows' images and documents.
//!
//! Everywhere else (the change store, the write-ahead log, the engine) a `bytea`
//! column stays Arrow `Binary`. This module converts at the base's boundary:
//!
//! - [`lance_schema`]: the schema a new base is created with;
//! - [`to_lance`]: every batch written to a base, in the form its schema asks for;
//! - [`read_binary`]: every scan of a base reads blobs as their bytes (Lance returns
//!   them as `LargeBinary`; readers cast them to the table's `Binary`, as
//!   [`from_lance`] does);
//! - [`take_blobs`]: rows taken by address read their blobs by address.
//!
//! Which columns are blobs is read from the base's own schema, never assumed: bases
//! written before this encoding keep their plain binary columns and are read and
//! appended to as before.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use lance::dataset::scanner::Scanner;
use lance::datatypes::BlobHandling;
use lance::Dataset;

use crate::error::Result;

/// The field metadata that asks Lance for its blob encoding (Lance promotes such a
/// `LargeBinary` input to its current blob layout when it writes).
const BLOB_KEY: &str = "lance-encoding:blob";

/// The schema a new Lance base is created with: `bytea` (`Binary`) columns as blobs.
pub(crate) fn lance_schema(schema: &SchemaRef) -> SchemaRef {
    if !schema.fields().iter().any(|f| f.data_type() == &DataType::Binary) {
        return schema.clone();
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| if f.data_type() == &DataType::Binary { blob_field(f) } else { f.as_ref().clone() })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn blob_field(field: &Field) -> Field {
    let mut metadata: HashMap<String, String> = field.metadata().clone();
    metadata.insert(BLOB_KEY.to_string(), "true".to_string());
    Field::new(field.name(), DataType::LargeBinary, field.is_nullable()).with_metadata(metadata)
}

/// Whether column `name` is a blob in the base whose schema is `base`.
pub fn is_blob(base: &lance::datatypes::Schema, name: &str) -> bool {
    base.field(name).is_some_and(|f| f.is_blob())
}

/// `batch` as the base `base` stores it: its columns that are blobs there as blob
/// input. Batches of bases without blob columns pass unchanged.
pub(crate) fn to_lance(base: &lance::datatypes::Schema, batch: RecordBatch) -> Result<RecordBatch> {
    recast_blobs(base, batch, blob_field)
}

/// Makes `scanner` return blob columns as their bytes (`LargeBinary`), not as Lance's
/// descriptors of where the bytes are.
pub fn read_binary(scanner: &mut Scanner) -> &mut Scanner {
    scanner.blob_handling(BlobHandling::AllBinary)
}

/// `batch`, read from the base `base` with [`read_binary`], in the table's types: its
/// blob columns (`LargeBinary`) as `Binary`.
pub fn from_lance(base: &lance::datatypes::Schema, batch: RecordBatch) -> Result<RecordBatch> {
    recast_blobs(base, batch, |field| Field::new(field.name(), DataType::Binary, true))
}

/// `batch` with each column that is a blob in `base` cast to the type of `field(its
/// field)`, under that field.
fn recast_blobs(
    base: &lance::datatypes::Schema,
    batch: RecordBatch,
    field: impl Fn(&Field) -> Field,
) -> Result<RecordBatch> {
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| is_blob(base, f.name())) {
        return Ok(batch);
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (f, column) in schema.fields().iter().zip(batch.columns()) {
        if is_blob(base, f.name()) {
            let recast = field(f);
            columns.push(cast(column, recast.data_type())?);
            fields.push(recast);
        } else {
            fields.push(f.as_ref().clone());
            columns.push(column.clone());
        }
    }
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The base's columns without its blobs: what a fragment reader reads (it would
/// return the blobs' descriptors; [`take_blobs`] reads the bytes).
pub(crate) fn without_blobs(base: &lance::datatypes::Schema) -> Cow<'_, lance::datatypes::Schema> {
    if !base.fields.iter().any(|f| f.is_blob()) {
        return Cow::Borrowed(base);
    }
    let mut read = base.clone();
    read.fields.retain(|f| !f.is_blob());
    Cow::Owned(read)
}

/// `rows`, the base's other columns of the rows at `addresses` (as [`without_blobs`]
/// read them), with the blob columns read by address and put in their places.
pub(crate) async fn take_blobs(
    ds: &Arc<Dataset>,
    rows: RecordBatch,
    addresses: &[u64],
) -> Result<RecordBatch> {
    let base = ds.schema();
    if !base.fields.iter().any(|f| f.is_blob()) {
        return Ok(rows);
    }
    let mut fields = Vec::with_capacity(base.fields.len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(base.fields.len());
    for field in &base.fields {
        if field.is_blob() {
            let files = ds.take_blobs_by_addresses(addresses, &field.name).await?;
            let values = futures::future::try_join_all(files.iter().map(|file| async move {
                match file {
                    Some(file) => file.read().await.map(Some),
                    None => Ok(None),
                }
            }))
            .await?;
            fields.push(Field::new(&field.name, DataType::Binary, true));
            columns.push(Arc::new(BinaryArray::from_iter(values.iter().map(|v| v.as_deref()))));
        } else {
            let at = rows.schema().index_of(&field.name)?;
            fields.push(rows.schema().field(at).clone());
            columns.push(rows.column(at).clone());
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array, RecordBatchIterator};
    use futures::TryStreamExt;
    use lance::dataset::{InsertBuilder, WriteDestination, WriteMode, WriteParams};

    /// A table's schema: a key and a `bytea`.
    fn id_and_img() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("img", DataType::Binary, true),
        ]))
    }

    fn rows(schema: &SchemaRef, ids: std::ops::Range<i64>, size: impl Fn(i64) -> usize) -> RecordBatch {
        let values: Vec<Option<Vec<u8>>> = ids
            .clone()
            .map(|i| if i % 7 == 3 { None } else { Some(vec![(i % 251) as u8; size(i)]) })
            .collect();
        let values = BinaryArray::from_iter(values.iter().map(|v| v.as_deref()));
        RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(ids)), Arc::new(values)],
        )
        .unwrap()
    }

    async fn read_all(ds: &Dataset) -> Vec<RecordBatch> {
        let mut scanner = ds.scan();
        read_binary(&mut scanner);
        let batches: Vec<RecordBatch> = scanner.try_into_stream().await.unwrap().try_collect().await.unwrap();
        batches.into_iter().map(|b| from_lance(ds.schema(), b).unwrap()).collect()
    }

    /// Small, packed and dedicated values, and NULLs, written at create and by an
    /// append, read back byte for byte; a scan of the other column reads no blob.
    #[tokio::test]
    async fn bytea_is_stored_as_lance_blobs_and_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("file://{}", dir.path().join("base").display());
        let schema = id_and_img();
        let stored = lance_schema(&schema);
        let empty = RecordBatchIterator::new(Vec::<std::result::Result<RecordBatch, _>>::new(), stored);
        let params = WriteParams { mode: WriteMode::Create, ..Default::default() };
        let ds = Dataset::write(empty, uri.as_str(), Some(params)).await.unwrap();
        assert!(ds.schema().field("img").unwrap().is_blob(), "{:?}", ds.schema());

        // Inline (10 bytes), packed (100 KiB) and dedicated (5 MiB) values.
        let size = |i: i64| match i % 3 {
            0 => 10,
            1 => 100 << 10,
            _ => 5 << 20,
        };
        let first = rows(&schema, 0..12, size);
        let second = rows(&schema, 12..20, size);
        let mut ds = ds;
        for batch in [&first, &second] {
            let batch = to_lance(ds.schema(), batch.clone()).unwrap();
            let append = WriteParams { mode: WriteMode::Append, ..Default::default() };
            ds = InsertBuilder::new(WriteDestination::Dataset(Arc::new(ds)))
                .with_params(&append)
                .execute(vec![batch])
                .await
                .unwrap();
        }
        let read = read_all(&ds).await;
        let read = arrow::compute::concat_batches(&read[0].schema(), &read).unwrap();
        let written = arrow::compute::concat_batches(&schema, &[first, second]).unwrap();
        assert_eq!(read.columns(), written.columns());
        let img = read.column(1).as_any().downcast_ref::<BinaryArray>().unwrap();
        assert_eq!(img.null_count(), 3);

        // Taken by address (one NULL among them), as point lookups take them.
        let ds = Arc::new(ds);
        let addresses = [1, 2, (1u64 << 32) + 1, (1 << 32) + 5];
        let mut others = Vec::new();
        for (fragment, offsets) in [(0, [1, 2]), (1, [1, 5])] {
            let fragment = ds.get_fragment(fragment).unwrap();
            let reader = fragment.open(&without_blobs(ds.schema()), Default::default()).await.unwrap();
            others.push(reader.take_as_batch(&offsets, None).await.unwrap());
        }
        let others = arrow::compute::concat_batches(&others[0].schema(), &others).unwrap();
        assert_eq!(others.num_columns(), 1, "a fragment reader reads no blob");
        let taken = take_blobs(&ds, others, &addresses).await.unwrap();
        let ids = arrow::array::UInt32Array::from(vec![1, 2, 13, 17]);
        let expected = arrow::compute::take(written.column(1), &ids, None).unwrap();
        assert_eq!(taken.column(1), &expected);
        assert_eq!(taken.column(1).null_count(), 1);

        // The data files hold descriptors: far smaller than the 35 MiB of values.
        let data_bytes: u64 = std::fs::read_dir(dir.path().join("base").join("data"))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.path().extension().is_some_and(|x| x == "lance"))
            .map(|e| e.metadata().unwrap().len())
            .sum();
        assert!(data_bytes < 4 << 20, "data files hold {data_bytes} bytes");
    }

    /// A base written without blobs (as before this encoding) is written and read as it
    /// was: nothing is converted.
    #[tokio::test]
    async fn plain_binary_bases_pass_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("file://{}", dir.path().join("base").display());
        let schema = id_and_img();
        let batch = rows(&schema, 0..4, |_| 10);
        let source = RecordBatchIterator::new(vec![Ok(batch.clone())], schema.clone());
        let ds = Arc::new(Dataset::write(source, uri.as_str(), None).await.unwrap());
        assert!(!ds.schema().field("img").unwrap().is_blob());
        assert_eq!(to_lance(ds.schema(), batch.clone()).unwrap(), batch);
        assert!(matches!(without_blobs(ds.schema()), Cow::Borrowed(_)), "nothing to leave out");
        let read = read_all(&ds).await;
        assert_eq!(read[0].columns(), batch.columns());
        let fragment = ds.get_fragment(0).unwrap();
        let reader = fragment.open(&without_blobs(ds.schema()), Default::default()).await.unwrap();
        let taken = reader.take_as_batch(&[1, 3], None).await.unwrap();
        assert_eq!(take_blobs(&ds, taken.clone(), &[1, 3]).await.unwrap(), taken);
    }
}
