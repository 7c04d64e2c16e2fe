//! Clustering: the order in which base rows are written, from the table's
//! `cluster_by` option, so that zone maps, Bloom filters and Parquet row-group
//! statistics skip most blocks for a predicate on a clustering column.
//!
//! - `cluster_by = 'zorder(a, b, ...)'` (up to [`MAX_COLUMNS`] columns): Morton (Z)
//!   order. Each column's values are ranked (equal values share a rank, NULLs first),
//!   the ranks scaled to 32 bits, and the bits of the columns interleaved into one key:
//!   rows close in the key are close in every column, so a block covers a narrow range
//!   of each. Ranks, not raw values, keep a skewed column from taking all the key.
//! - `cluster_by = 'a'` (or `zorder(a)`): the order of that one column.
//!
//! A compaction writes the rows it appends in this order, a table without a primary
//! key each `INSERT`'s rows; `CLUSTER t` (or `VACUUM t (CLUSTER)`) rewrites the whole
//! base in it ([`Table::cluster`]). Only the order of rows changes, never which rows.

use std::sync::Arc;

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::kernels::rank::rank;
use arrow::compute::{concat_batches, take_record_batch, SortOptions};
use arrow::datatypes::DataType;
use tracing::info;

use crate::error::{Result, StorageError};
use crate::table::{read_columns, Table};
use crate::table_def::TableDef;

/// The table option that names the clustering.
pub const OPTION: &str = "cluster_by";

/// Columns a Z-order interleaves at most (32 bits each in a 128-bit key).
pub const MAX_COLUMNS: usize = 4;

/// A table's clustering: the columns, in interleaving order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterBy {
    pub columns: Vec<String>,
}

impl ClusterBy {
    /// The clustering `def`'s options declare, checked against its columns.
    pub fn of(def: &TableDef) -> Result<Option<Self>> {
        let Some(text) = def.options.get(OPTION) else { return Ok(None) };
        let cluster = Self::parse(text)?;
        for column in &cluster.columns {
            let Some(index) = def.column_index(column) else {
                return Err(StorageError::InvalidOption {
                    message: format!(
                        "cluster_by names column \"{column}\", which table {} does not have",
                        def.name
                    ),
                });
            };
            let data_type = def.schema.field(index).data_type();
            if !orderable(data_type) {
                return Err(StorageError::InvalidOption {
                    message: format!("cluster_by cannot order column \"{column}\" of type {data_type}"),
                });
            }
        }
        Ok(Some(cluster))
    }

    /// `zorder(a, b)`, `a`, or `zorder(a)`.
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = || {
            StorageError::InvalidOption {
            message: format!(
                "invalid value for option \"cluster_by\": \"{text}\" (expected a column or zorder(a, b, ...) of up to {MAX_COLUMNS} columns)"
            ),
        }
        };
        let text = text.trim().trim_matches('\'').trim();
        let lower = text.to_ascii_lowercase();
        let list = match lower.strip_prefix("zorder") {
            Some(rest) => {
                let rest = rest.trim_start();
                let inner = rest.strip_prefix('(').and_then(|r| r.strip_suffix(')')).ok_or_else(invalid)?;
                // The names as written (the prefix and parentheses are ASCII).
                let start = text.len() - rest.len() + 1;
                &text[start..start + inner.len()]
            }
            None => text,
        };
        let columns: Vec<String> = list
            .split(',')
            .map(|c| {
                let c = c.trim();
                match c.strip_prefix('"').and_then(|c| c.strip_suffix('"')) {
                    Some(quoted) => quoted.to_string(),
                    None => c.to_ascii_lowercase(),
                }
            })
            .collect();
        if columns.is_empty() || columns.len() > MAX_COLUMNS || columns.iter().any(|c| c.is_empty()) {
            return Err(invalid());
        }
        if columns.iter().enumerate().any(|(i, c)| columns[..i].contains(c)) {
            return Err(invalid());
        }
        Ok(ClusterBy { columns })
    }

    /// `batches` (one schema, holding the clustering columns) as one batch in this order.
    pub fn sort(&self, batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let Some(first) = batches.first() else { return Ok(Vec::new()) };
        let all = concat_batches(&first.schema(), batches)?;
        let rows = all.num_rows();
        if rows < 2 {
            return Ok(vec![all]);
        }
        let options = SortOptions { descending: false, nulls_first: true };
        // Each column's rank (1..=rows, ties equal) scaled to 32 bits.
        let mut scaled = Vec::with_capacity(self.columns.len());
        for column in &self.columns {
            let array = all.column(all.schema().index_of(column)?).clone();
            let ranks = rank(&array, Some(options))?;
            scaled.push(
                ranks
                    .into_iter()
                    .map(|r| ((u64::from(r - 1) << 32) / rows as u64) as u32)
                    .collect::<Vec<_>>(),
            );
        }
        let mut keyed: Vec<(u128, u32)> = (0..rows).map(|row| (morton(&scaled, row), row as u32)).collect();
        keyed.sort_unstable();
        let order = UInt32Array::from_iter_values(keyed.into_iter().map(|(_, row)| row));
        Ok(vec![take_record_batch(&all, &order)?])
    }
}

impl std::fmt::Display for ClusterBy {
    /// The option's text: `zorder(a, "B")` (names quoted where they must be).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let plain = c.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_');
                if plain {
                    c.clone()
                } else {
                    format!("\"{c}\"")
                }
            })
            .collect();
        write!(f, "zorder({})", names.join(", "))
    }
}

/// `ALTER TABLE ... RENAME COLUMN`: the clustering names the column anew.
pub(crate) fn rename_column(options: &mut std::collections::BTreeMap<String, String>, from: &str, to: &str) {
    let Some(Ok(mut cluster)) = options.get(OPTION).map(|t| ClusterBy::parse(t)) else { return };
    if cluster.columns.iter().any(|c| c == from) {
        cluster.columns.iter_mut().filter(|c| *c == from).for_each(|c| *c = to.to_string());
        options.insert(OPTION.to_string(), cluster.to_string());
    }
}

/// `ALTER TABLE ... DROP COLUMN`: the clustering goes on without the column (and goes
/// when it was the only one).
pub(crate) fn drop_column(options: &mut std::collections::BTreeMap<String, String>, name: &str) {
    let Some(Ok(mut cluster)) = options.get(OPTION).map(|t| ClusterBy::parse(t)) else { return };
    if cluster.columns.iter().any(|c| c == name) {
        cluster.columns.retain(|c| c != name);
        if cluster.columns.is_empty() {
            options.remove(OPTION);
        } else {
            options.insert(OPTION.to_string(), cluster.to_string());
        }
    }
}

/// Whether a column's values can be ranked for clustering.
fn orderable(data_type: &DataType) -> bool {
    data_type.is_primitive()
        || matches!(
            data_type,
            DataType::Boolean
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Binary
                | DataType::LargeBinary
        )
}

/// The Z-order key of `row`: the columns' 32-bit values with their bits interleaved,
/// most significant first, the first column's bit leading.
fn morton(columns: &[Vec<u32>], row: usize) -> u128 {
    let mut key = 0u128;
    for bit in (0..32).rev() {
        for column in columns {
            key = (key << 1) | u128::from((column[row] >> bit) & 1);
        }
    }
    key
}

impl Table {
    /// `ALTER TABLE t SET (cluster_by = '...')`: rows written from now on are in this
    /// order; `CLUSTER t` puts the rows already there in it.
    pub async fn set_cluster_by(&self, value: &str) -> Result<()> {
        let mut def = self.snapshot().manifest.table.clone();
        def.options.insert(OPTION.to_string(), value.to_string());
        ClusterBy::of(&def)?;
        self.alter_def(|d| d.options = def.options).await
    }

    /// `CLUSTER t`: rewrites the whole base in the table's `cluster_by` order (a new
    /// version; readers of older ones keep theirs). Indexes are built anew over it.
    pub async fn cluster(self: &Arc<Self>) -> Result<()> {
        let def = self.snapshot().manifest.table.clone();
        if ClusterBy::of(&def)?.is_none() {
            return Err(StorageError::InvalidOption {
                message: format!(
                    "there is no clustering for table \"{}\": set one first (ALTER TABLE {} SET (cluster_by = 'zorder(a, b)'))",
                    def.name.table, def.name
                ),
            });
        }
        if self.has_primary_key() {
            self.compact_rewriting(true).await?;
            return Ok(());
        }
        let table = self.clone();
        tokio::spawn(async move { table.cluster_base().await })
            .await
            .map_err(|e| StorageError::internal(format!("cluster task failed: {e}")))?
    }

    /// A table without a primary key: its rows read and written back in order, under
    /// the writer lock (no write slips between the read and the overwrite).
    async fn cluster_base(&self) -> Result<()> {
        self.location.fence().check()?;
        let _compacting = self.compacting.lock().await;
        let mut writer = self.writer.lock().await;
        let snapshot = self.snapshot();
        let def = snapshot.def();
        let columns: Vec<String> = def.schema.fields().iter().map(|f| f.name().clone()).collect();
        let rows = read_columns(&self.location, &snapshot.base, &columns, false).await?;
        let count: usize = rows.iter().map(|b| b.num_rows()).sum();
        info!(table = %def.name, rows = count, "clustering the base");
        self.write_base_locked(&mut writer, rows, true).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    #[test]
    fn the_option_parses() {
        assert_eq!(ClusterBy::parse("zorder(a, B)").unwrap().columns, vec!["a", "b"]);
        assert_eq!(ClusterBy::parse("'user_id'").unwrap().columns, vec!["user_id"]);
        assert_eq!(ClusterBy::parse("ZORDER (\"Ts\")").unwrap().columns, vec!["Ts"]);
        for bad in ["zorder(a", "zorder()", "zorder(a, a)", "zorder(a,b,c,d,e)", ""] {
            assert!(ClusterBy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn renamed_and_dropped_columns_follow() {
        let mut options =
            std::collections::BTreeMap::from([(OPTION.to_string(), "zorder(a, b)".to_string())]);
        rename_column(&mut options, "b", "Big");
        assert_eq!(options[OPTION], "zorder(a, \"Big\")");
        assert_eq!(ClusterBy::parse(&options[OPTION]).unwrap().columns, vec!["a", "Big"]);
        drop_column(&mut options, "a");
        assert_eq!(options[OPTION], "zorder(\"Big\")");
        drop_column(&mut options, "Big");
        assert!(options.is_empty());
    }

    #[test]
    fn z_order_interleaves_ranks() {
        // A 4x4 grid in row-major order comes out in Morton order, quadrant by quadrant.
        let a: Vec<i64> = (0..16).map(|i| i / 4).collect();
        let b: Vec<i64> = (0..16).map(|i| i % 4).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Int64, true),
        ]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(a)), Arc::new(Int64Array::from(b))])
                .unwrap();
        let cluster = ClusterBy::parse("zorder(a, b)").unwrap();
        let sorted = cluster.sort(&[batch.slice(0, 7), batch.slice(7, 9)]).unwrap();
        let pairs: Vec<(i64, i64)> = {
            let a = sorted[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            let b = sorted[0].column(1).as_any().downcast_ref::<Int64Array>().unwrap();
            (0..16).map(|i| (a.value(i), b.value(i))).collect()
        };
        assert_eq!(&pairs[..4], &[(0, 0), (0, 1), (1, 0), (1, 1)]);
        assert_eq!(&pairs[4..8], &[(0, 2), (0, 3), (1, 2), (1, 3)]);
        assert_eq!(&pairs[12..], &[(2, 2), (2, 3), (3, 2), (3, 3)]);
    }

    #[test]
    fn one_column_is_its_order_with_nulls_first() {
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec![Some("b"), None, Some("a"), Some("b")]))],
        )
        .unwrap();
        let sorted = ClusterBy::parse("s").unwrap().sort(&[batch]).unwrap();
        let s = sorted[0].column(0).as_any().downcast_ref::<StringArray>().unwrap();
        assert!(s.is_null(0));
        assert_eq!((s.value(1), s.value(2), s.value(3)), ("a", "b", "b"));
    }
}
