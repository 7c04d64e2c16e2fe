//! The primary-key index: every key of a table, to reject duplicates.
//!
//! Built from the base when a table is first written after opening, then kept up to
//! date by the writer. Integer keys (the common case: `id BIGINT PRIMARY KEY`, serials)
//! are held as `i64`; any other key is held in Arrow's row format, which orders and
//! compares any combination of column types as bytes.

use std::collections::HashSet;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, Int16Type, Int32Type, Int64Type};
use arrow::row::{RowConverter, SortField};
use arrow::util::display::array_value_to_string;

use crate::error::Result;

pub struct KeyIndex {
    keys: Keys,
}

enum Keys {
    Int(HashSet<i64>),
    Rows { converter: RowConverter, set: HashSet<Box<[u8]>> },
}

/// Keys checked by [`KeyIndex::check_new`], to be added once their write commits.
#[derive(Debug)]
pub struct NewKeys(Pending);

#[derive(Debug)]
enum Pending {
    Int(Vec<i64>),
    Rows(Vec<Box<[u8]>>),
}

/// A key that already exists, rendered the way Postgres words it in DETAIL.
#[derive(Debug)]
pub struct DuplicateKey {
    pub detail: String,
}

impl KeyIndex {
    pub fn new(key_fields: &[Field]) -> Result<Self> {
        let keys = match key_fields {
            [field] if is_int(field.data_type()) => Keys::Int(HashSet::new()),
            _ => Keys::Rows {
                converter: RowConverter::new(
                    key_fields.iter().map(|f| SortField::new(f.data_type().clone())).collect(),
                )?,
                set: HashSet::new(),
            },
        };
        Ok(Self { keys })
    }

    pub fn len(&self) -> usize {
        match &self.keys {
            Keys::Int(set) => set.len(),
            Keys::Rows { set, .. } => set.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds keys known to be unique (read back from committed data).
    pub fn extend_committed(&mut self, key_columns: &[ArrayRef]) -> Result<()> {
        let pending = self.encode(key_columns)?;
        self.add(NewKeys(pending));
        Ok(())
    }

    /// Checks that none of the keys in `batches` (each a list of key columns) exists or
    /// repeats. Nothing is added: call [`KeyIndex::add`] after the write committed.
    pub fn check_new(
        &self,
        key_names: &[String],
        batches: &[Vec<ArrayRef>],
    ) -> Result<std::result::Result<NewKeys, DuplicateKey>> {
        let mut all = match &self.keys {
            Keys::Int(_) => Pending::Int(Vec::new()),
            Keys::Rows { .. } => Pending::Rows(Vec::new()),
        };
        for columns in batches {
            match (self.encode(columns)?, &mut all) {
                (Pending::Int(keys), Pending::Int(acc)) => acc.extend(keys),
                (Pending::Rows(keys), Pending::Rows(acc)) => acc.extend(keys),
                _ => unreachable!("one index encodes keys one way"),
            }
        }
        let duplicate_at = match (&all, &self.keys) {
            (Pending::Int(new), Keys::Int(set)) => first_duplicate(new, |k| set.contains(k)),
            (Pending::Rows(new), Keys::Rows { set, .. }) => first_duplicate(new, |k| set.contains(k)),
            _ => unreachable!("one index encodes keys one way"),
        };
        let Some(position) = duplicate_at else {
            return Ok(Ok(NewKeys(all)));
        };
        // Find the row again to print its values as the user wrote them.
        let mut offset = position;
        for columns in batches {
            let rows = columns.first().map_or(0, |c| c.len());
            if offset < rows {
                let values: Vec<String> =
                    columns.iter().map(|c| array_value_to_string(c, offset).unwrap_or_default()).collect();
                return Ok(Err(DuplicateKey {
                    detail: format!("Key ({})=({}) already exists.", key_names.join(", "), values.join(", ")),
                }));
            }
            offset -= rows;
        }
        unreachable!("a duplicate position lies inside the batches")
    }

    pub fn add(&mut self, keys: NewKeys) {
        match (keys.0, &mut self.keys) {
            (Pending::Int(new), Keys::Int(set)) => set.extend(new),
            (Pending::Rows(new), Keys::Rows { set, .. }) => set.extend(new),
            _ => unreachable!("one index encodes keys one way"),
        }
    }

    fn encode(&self, columns: &[ArrayRef]) -> Result<Pending> {
        Ok(match &self.keys {
            Keys::Int(_) => {
                let column = &columns[0];
                let values: Vec<i64> = match column.data_type() {
                    DataType::Int64 => column.as_primitive::<Int64Type>().values().to_vec(),
                    DataType::Int32 => {
                        column.as_primitive::<Int32Type>().values().iter().map(|&v| v as i64).collect()
                    }
                    DataType::Int16 => {
                        column.as_primitive::<Int16Type>().values().iter().map(|&v| v as i64).collect()
                    }
                    other => {
                        return Err(crate::StorageError::internal(format!(
                            "integer key index got a {other} column"
                        )))
                    }
                };
                Pending::Int(values)
            }
            Keys::Rows { converter, .. } => {
                let rows = converter.convert_columns(columns)?;
                Pending::Rows(rows.iter().map(|row| row.as_ref().into()).collect())
            }
        })
    }
}

fn is_int(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Int16 | DataType::Int32 | DataType::Int64)
}

/// Position of the first key that is already present or repeats an earlier new key.
fn first_duplicate<K: std::hash::Hash + Eq>(new: &[K], exists: impl Fn(&K) -> bool) -> Option<usize> {
    let mut seen = HashSet::with_capacity(new.len());
    new.iter().position(|key| exists(key) || !seen.insert(key))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};

    use super::*;

    fn int_index() -> KeyIndex {
        KeyIndex::new(&[Field::new("id", DataType::Int64, false)]).unwrap()
    }

    #[test]
    fn rejects_existing_and_repeated_integer_keys() {
        let mut index = int_index();
        let committed: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
        index.extend_committed(&[committed]).unwrap();
        let names = vec!["id".to_string()];

        let fresh: ArrayRef = Arc::new(Int64Array::from(vec![4, 5]));
        assert!(index.check_new(&names, &[vec![fresh]]).unwrap().is_ok());

        let clash: ArrayRef = Arc::new(Int64Array::from(vec![9, 2]));
        let dup = index.check_new(&names, &[vec![clash]]).unwrap().unwrap_err();
        assert_eq!(dup.detail, "Key (id)=(2) already exists.");

        // The same new key twice, across two batches of one statement.
        let a: ArrayRef = Arc::new(Int64Array::from(vec![7]));
        let b: ArrayRef = Arc::new(Int64Array::from(vec![8, 7]));
        let dup = index.check_new(&names, &[vec![a], vec![b]]).unwrap().unwrap_err();
        assert_eq!(dup.detail, "Key (id)=(7) already exists.");
        assert_eq!(index.len(), 3, "checks add nothing");
    }

    #[test]
    fn composite_keys_compare_all_columns() {
        let fields = [Field::new("a", DataType::Utf8, false), Field::new("b", DataType::Int64, false)];
        let mut index = KeyIndex::new(&fields).unwrap();
        let names = vec!["a".to_string(), "b".to_string()];
        let cols = |a: Vec<&str>, b: Vec<i64>| -> Vec<ArrayRef> {
            vec![Arc::new(StringArray::from(a)), Arc::new(Int64Array::from(b))]
        };
        index.extend_committed(&cols(vec!["x", "x"], vec![1, 2])).unwrap();
        let ok = index.check_new(&names, &[cols(vec!["y", "x"], vec![1, 3])]).unwrap();
        index.add(ok.unwrap());
        let dup = index.check_new(&names, &[cols(vec!["x"], vec![3])]).unwrap().unwrap_err();
        assert_eq!(dup.detail, "Key (a, b)=(x, 3) already exists.");
    }
}
