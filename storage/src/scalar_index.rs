//! Scalar indexes for data skipping: PostgreSQL's index methods on Lance's scalar
//! indexes, declared in the table's manifest and kept current like vector indexes.
//!
//! | DDL | Lance index | what it skips |
//! |---|---|---|
//! | `USING btree` (and no `USING`) | `BTREE` | answers `=`, ranges and `IN` from a sorted index: only matching rows are read |
//! | `USING bitmap` | `BITMAP` | one row bitmap per value (columns of few distinct values) |
//! | `USING brin` | `ZONEMAP`: min, max and nulls per zone of `rows_per_zone` rows | zones whose range misses the predicate |
//! | `USING bloom` | `BLOOMFILTER` per zone, `false_positive_rate` | zones that cannot hold an `=`/`IN` value |
//!
//! Lance's scanner consults them for the filters the scan is given (Tarn's table
//! provider pushes every filter down): the index answers which rows or zones can match,
//! and only those ranges are read. Zone maps and Bloom filters skip little on a table
//! whose values are spread over every zone: clustering ([`crate::cluster`]) is what
//! makes them skip most.
//!
//! A Lance scalar index covers one column: an index declared on several columns is
//! one Lance index per column (named `<index>.<column>`). Rows appended to the base
//! after the index was built are read and filtered as without it until a compaction
//! (or `VACUUM` for a table without a primary key) indexes them (Lance's incremental
//! `optimize_indices`); the answer never depends on it.

use std::sync::Arc;
use std::time::Instant;

use lance::dataset::Dataset;
use lance::index::DatasetIndexExt;
use lance_index::optimize::OptimizeOptions;
use lance_index::scalar::ScalarIndexParams;
use lance_index::IndexType;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::error::{Result, StorageError};
use crate::manifest::Manifest;
use crate::table::Table;
use crate::vector_index::{BaseIndex, BuildReport, Builds};

/// Rows per zone of a `brin` or `bloom` index when none is given (Lance's default).
pub const DEFAULT_ROWS_PER_ZONE: u64 = 8192;

/// A `bloom` index's false positive rate per zone when none is given: 1 in 1000.
pub const DEFAULT_FALSE_POSITIVE_RATE: f64 = 0.001;

/// Which scalar index; the PostgreSQL access method it is declared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScalarKind {
    BTree,
    Bitmap,
    /// `brin`: a zone map.
    ZoneMap,
    /// `bloom`: a Bloom filter per zone.
    Bloom,
}

impl ScalarKind {
    /// From an access method's name (`btree`, `hash` and `brin` as PostgreSQL names them).
    pub fn from_method(method: &str) -> Option<Self> {
        match method.to_ascii_lowercase().as_str() {
            "btree" | "hash" => Some(ScalarKind::BTree),
            "bitmap" => Some(ScalarKind::Bitmap),
            "brin" | "zonemap" => Some(ScalarKind::ZoneMap),
            "bloom" | "bloomfilter" => Some(ScalarKind::Bloom),
            _ => None,
        }
    }

    /// The access method, as `pg_am` and `tarn_indexes` show it.
    pub fn method(self) -> &'static str {
        match self {
            ScalarKind::BTree => "btree",
            ScalarKind::Bitmap => "bitmap",
            ScalarKind::ZoneMap => "brin",
            ScalarKind::Bloom => "bloom",
        }
    }

    /// The Lance index type that serves it.
    pub fn lance_type(self) -> &'static str {
        match self {
            ScalarKind::BTree => "BTREE",
            ScalarKind::Bitmap => "BITMAP",
            ScalarKind::ZoneMap => "ZONEMAP",
            ScalarKind::Bloom => "BLOOMFILTER",
        }
    }

    fn index_type(self) -> IndexType {
        match self {
            ScalarKind::BTree => IndexType::BTree,
            ScalarKind::Bitmap => IndexType::Bitmap,
            ScalarKind::ZoneMap => IndexType::ZoneMap,
            ScalarKind::Bloom => IndexType::BloomFilter,
        }
    }
}

/// One scalar index as declared, and whether the base has it yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalarIndexDef {
    pub name: String,
    pub columns: Vec<String>,
    pub kind: ScalarKind,
    /// `brin` and `bloom`: rows per zone (`rows_per_zone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_per_zone: Option<u64>,
    /// `bloom`: the false positive rate of each zone's filter (`false_positive_rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub false_positive_rate: Option<f64>,
    /// The base at the manifest's version has this index.
    #[serde(default)]
    pub built: bool,
}

impl ScalarIndexDef {
    pub fn new(name: String, columns: Vec<String>, kind: ScalarKind) -> Self {
        ScalarIndexDef { name, columns, kind, rows_per_zone: None, false_positive_rate: None, built: false }
    }

    /// The Lance index of each column: `(column, Lance index name)`.
    pub fn lance_indexes(&self) -> Vec<(&str, String)> {
        match self.columns.as_slice() {
            [column] => vec![(column.as_str(), self.name.clone())],
            columns => columns.iter().map(|c| (c.as_str(), format!("{}.{c}", self.name))).collect(),
        }
    }

    /// Renames column `from` to `to` (the Lance index keeps its name and field id).
    pub(crate) fn rename_column(&mut self, from: &str, to: &str) {
        for column in self.columns.iter_mut().filter(|c| *c == from) {
            *column = to.to_string();
        }
    }

    fn params(&self) -> ScalarIndexParams {
        let params = ScalarIndexParams::new(self.kind.lance_type().to_ascii_lowercase());
        let zone = self.rows_per_zone.unwrap_or(DEFAULT_ROWS_PER_ZONE);
        match self.kind {
            ScalarKind::BTree | ScalarKind::Bitmap => params,
            ScalarKind::ZoneMap => params.with_params(&serde_json::json!({ "rows_per_zone": zone })),
            ScalarKind::Bloom => params.with_params(&serde_json::json!({
                "number_of_items": zone,
                "probability": self.false_positive_rate.unwrap_or(DEFAULT_FALSE_POSITIVE_RATE),
            })),
        }
    }
}

/// Builds `def` on every row of `ds` (a new Lance version per column).
pub(crate) async fn build(
    ds: &mut Dataset,
    def: &ScalarIndexDef,
    table: &str,
    builds: &Arc<Builds>,
) -> Result<()> {
    let started = Instant::now();
    let params = def.params();
    for (column, lance_name) in def.lance_indexes() {
        if ds.schema().field(column).is_none() {
            return Err(StorageError::Unsupported { message: format!("column \"{column}\" does not exist") });
        }
        let progress = Arc::new(BuildReport::new(table, &def.name, builds));
        let result = ds
            .create_index_builder(&[column], def.kind.index_type(), &params)
            .name(lance_name)
            .replace(true)
            .progress(progress)
            .await;
        builds.finish(&def.name);
        result.map_err(|e| StorageError::Unsupported {
            message: format!("cannot build a {} index on column \"{column}\": {e}", def.kind.method()),
        })?;
    }
    info!(
        table, index = %def.name, method = def.kind.method(), lance = def.kind.lance_type(),
        ms = started.elapsed().as_millis() as u64, "scalar index built"
    );
    Ok(())
}

/// After rows were appended to `ds`: indexes them in every built index (Lance merges
/// the new fragments into it) and builds the declared ones not built yet (a base
/// that had no rows). Returns the definitions with `built` brought up to date.
pub(crate) async fn refresh(
    ds: &mut Dataset,
    defs: &[ScalarIndexDef],
    table: &str,
    builds: &Arc<Builds>,
) -> Result<Vec<ScalarIndexDef>> {
    let mut out = defs.to_vec();
    let built: Vec<String> =
        defs.iter().filter(|d| d.built).flat_map(|d| d.lance_indexes().into_iter().map(|(_, n)| n)).collect();
    if !built.is_empty() {
        let started = Instant::now();
        ds.optimize_indices(&OptimizeOptions::new().index_names(built.clone())).await?;
        info!(table, indexes = ?built, ms = started.elapsed().as_millis() as u64, "scalar indexes extended");
    }
    if ds.count_rows(None).await? > 0 {
        for def in out.iter_mut().filter(|d| !d.built) {
            build(ds, def, table, builds).await?;
            def.built = true;
        }
    }
    Ok(out)
}

/// Removes `def`'s Lance indexes from `ds` (a new version each), if it was built.
pub(crate) async fn drop_built(ds: &mut Dataset, def: &ScalarIndexDef) -> Result<()> {
    if def.built {
        for (_, lance_name) in def.lance_indexes() {
            ds.drop_index(&lance_name).await?;
        }
    }
    Ok(())
}

/// Lance's scanner asks one scalar index per column: a second on a column would go
/// unused, so it is refused.
pub(crate) fn check_columns_free(def: &ScalarIndexDef, manifest: &Manifest) -> Result<()> {
    let taken = manifest
        .scalar_indexes
        .iter()
        .find_map(|other| def.columns.iter().find(|c| other.columns.contains(c)).map(|c| (c, &other.name)));
    match taken {
        Some((column, other)) => Err(StorageError::Unsupported {
            message: format!(
                "column \"{column}\" has index \"{other}\" already, and a scan uses one scalar index per column: drop it first"
            ),
        }),
        None => Ok(()),
    }
}

impl Table {
    /// `CREATE INDEX ... USING btree | bitmap | brin | bloom`: declares `def` and builds
    /// it on the base now (a primary-key table is compacted first, so it covers every
    /// row committed before the statement). Returns false when an index of that name
    /// exists and `if_not_exists` was given.
    pub async fn create_scalar_index(
        self: &Arc<Self>,
        def: ScalarIndexDef,
        if_not_exists: bool,
    ) -> Result<bool> {
        self.create_base_index(BaseIndex::Scalar(def), if_not_exists).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_method_names_map_to_lance_indexes() {
        assert_eq!(ScalarKind::from_method("BRIN"), Some(ScalarKind::ZoneMap));
        assert_eq!(ScalarKind::from_method("hash"), Some(ScalarKind::BTree));
        assert_eq!(ScalarKind::from_method("gin"), None);
        let one = ScalarIndexDef::new("i".into(), vec!["a".into()], ScalarKind::Bloom);
        assert_eq!(one.lance_indexes(), vec![("a", "i".to_string())]);
        let two = ScalarIndexDef::new("i".into(), vec!["a".into(), "b".into()], ScalarKind::ZoneMap);
        assert_eq!(two.lance_indexes(), vec![("a", "i.a".to_string()), ("b", "i.b".to_string())]);
        let params = one.params();
        assert_eq!(params.index_type, "bloomfilter");
        assert!(params.params.unwrap().contains("\"number_of_items\":8192"));
    }
}
