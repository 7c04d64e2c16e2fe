//! Primary keys as hashable values, and the bucket each key belongs to.
//!
//! Integer keys (the common case: `id BIGINT PRIMARY KEY`, serials) are held as `i64`;
//! any other key is held in Arrow's row format, which compares any combination of
//! column types as bytes. The bucket of a key is a stable hash of that value, so it is
//! the same after a restart and in change files written by an earlier run.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Int16Type, Int32Type, Int64Type};
use arrow::row::{RowConverter, SortField};
use arrow::util::display::array_value_to_string;

use crate::error::{Result, StorageError};
use crate::table_def::TableDef;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Int(i64),
    Bytes(Box<[u8]>),
}

impl Key {
    /// The key's bucket among `buckets`: a fixed hash, never a per-process seed.
    pub fn bucket(&self, buckets: u32) -> usize {
        let hash = match self {
            Key::Int(v) => splitmix64(*v as u64),
            Key::Bytes(bytes) => splitmix64(u64::from(crc32fast::hash(bytes))),
        };
        (hash % u64::from(buckets.max(1))) as usize
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Turns the key columns of a table's rows into [`Key`]s.
pub struct KeyCodec {
    /// Positions of the key columns in the table's schema.
    indices: Vec<usize>,
    rows: Option<RowConverter>,
}

impl std::fmt::Debug for KeyCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCodec").field("indices", &self.indices).finish()
    }
}

impl KeyCodec {
    pub fn new(def: &TableDef) -> Result<Self> {
        let indices = def.primary_key_indices();
        let fields: Vec<&Field> = indices.iter().map(|&i| def.schema.field(i)).collect();
        Self::for_fields(indices, &fields)
    }

    /// A codec for key columns at `indices` of batches, with these fields.
    pub fn for_fields(indices: Vec<usize>, fields: &[&Field]) -> Result<Self> {
        let rows = match fields {
            [field] if is_int(field.data_type()) => None,
            _ => Some(RowConverter::new(
                fields.iter().map(|f| SortField::new(f.data_type().clone())).collect(),
            )?),
        };
        Ok(Self { indices, rows })
    }

    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// The key of every row of `batch` (a batch with the table's columns).
    pub fn keys(&self, batch: &RecordBatch) -> Result<Vec<Key>> {
        let columns: Vec<ArrayRef> = self.indices.iter().map(|&i| batch.column(i).clone()).collect();
        self.keys_of(&columns)
    }

    /// The keys of rows given as their key columns only.
    pub fn keys_of(&self, columns: &[ArrayRef]) -> Result<Vec<Key>> {
        match &self.rows {
            None => {
                let column = &columns[0];
                if column.null_count() > 0 {
                    return Err(StorageError::internal("a primary key column holds NULL"));
                }
                Ok(match column.data_type() {
                    DataType::Int64 => {
                        column.as_primitive::<Int64Type>().values().iter().map(|&v| Key::Int(v)).collect()
                    }
                    DataType::Int32 => column
                        .as_primitive::<Int32Type>()
                        .values()
                        .iter()
                        .map(|&v| Key::Int(v.into()))
                        .collect(),
                    DataType::Int16 => column
                        .as_primitive::<Int16Type>()
                        .values()
                        .iter()
                        .map(|&v| Key::Int(v.into()))
                        .collect(),
                    other => return Err(StorageError::internal(format!("integer key got a {other} column"))),
                })
            }
            Some(converter) => {
                let rows = converter.convert_columns(columns)?;
                Ok(rows.iter().map(|row| Key::Bytes(row.as_ref().into())).collect())
            }
        }
    }

    /// `Key (id)=(5)`, as Postgres words a key in an error's DETAIL.
    pub fn describe(&self, batch: &RecordBatch, row: usize) -> String {
        let values: Vec<String> = self
            .indices
            .iter()
            .map(|&i| array_value_to_string(batch.column(i), row).unwrap_or_default())
            .collect();
        let schema = batch.schema();
        let names: Vec<&str> = self.indices.iter().map(|&i| schema.field(i).name().as_str()).collect();
        format!("Key ({})=({})", names.join(", "), values.join(", "))
    }
}

fn is_int(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Int16 | DataType::Int32 | DataType::Int64)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::Schema;

    use super::*;

    #[test]
    fn integer_and_composite_keys() {
        let int = Field::new("id", DataType::Int64, false);
        let codec = KeyCodec::for_fields(vec![0], &[&int]).unwrap();
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![int.clone()])),
            vec![Arc::new(Int64Array::from(vec![5, -1]))],
        )
        .unwrap();
        assert_eq!(codec.keys(&batch).unwrap(), vec![Key::Int(5), Key::Int(-1)]);
        assert_eq!(codec.describe(&batch, 0), "Key (id)=(5)");

        let (a, b) = (Field::new("a", DataType::Utf8, false), Field::new("b", DataType::Int64, false));
        let codec = KeyCodec::for_fields(vec![0, 1], &[&a, &b]).unwrap();
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![a, b])),
            vec![Arc::new(StringArray::from(vec!["x", "x", "y"])), Arc::new(Int64Array::from(vec![1, 2, 1]))],
        )
        .unwrap();
        let keys = codec.keys(&batch).unwrap();
        assert_ne!(keys[0], keys[1]);
        assert_ne!(keys[0], keys[2]);
        assert_eq!(codec.keys(&batch.slice(1, 1)).unwrap()[0], keys[1]);
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        // Fixed values: change files written by an earlier run must land in the same bucket.
        assert_eq!(Key::Int(42).bucket(8), Key::Int(42).bucket(8));
        let mut counts = [0usize; 8];
        for k in 0..8000 {
            counts[Key::Int(k).bucket(8)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800 && c < 1200), "{counts:?}");
    }
}
