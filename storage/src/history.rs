//! Time travel and the change feed.
//!
//! Nothing is rewritten in place: old Lance versions, manifests and change files stay
//! until history retention lets them go ([`crate::retention`]). A version older than
//! the current base is read from the newest manifest whose base is at or below it
//! (the flush before each compaction guarantees its change files reach that version),
//! found by a binary search over the manifests. The change feed reads the manifest's
//! live change files and the history records of folded ones.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::changes::Chunk;
use crate::compaction::{load_change_files, read_change_file};
use crate::error::{Result, StorageError};
use crate::manifest::{Manifest, Version};
use crate::table::{build_epoch, load_base, Snapshot, Table};

/// Column of [`Table::changes_between`] naming the operation: insert, update, delete.
pub const CHANGE_TYPE_COLUMN: &str = "_change_type";
/// Column of [`Table::changes_between`] with the version that made the change.
pub const COMMIT_VERSION_COLUMN: &str = "_commit_version";

impl Table {
    /// The table as it was at version `seq`.
    pub async fn snapshot_at(&self, seq: u64) -> Result<Arc<Snapshot>> {
        let current = self.snapshot();
        let not_found = || StorageError::VersionNotFound { table: self.name(), version: seq };
        if seq == 0 || seq > current.seq {
            return Err(not_found());
        }
        match &current.changes {
            Some(epoch) if seq >= epoch.folded_seq => {
                return Ok(Arc::new(Snapshot { seq, ..current.as_ref().clone() }));
            }
            None if seq >= current.manifest.seq => return Ok(current),
            _ => {}
        }
        // Held while the snapshot is made, so a vacuum cannot delete its files meanwhile.
        let floor = self.history_floor.read().await;
        let versions: Vec<_> =
            self.manifests.versions().await?.into_iter().filter(|v| *v >= *floor).collect();
        let manifest = match self.codec {
            Some(_) => self.manifests.newest_where(&versions, |m| m.folded_seq <= seq).await?,
            None => self.manifests.newest_where(&versions, |m| m.seq <= seq).await?,
        };
        // A primary-key table's manifest shows every version from its base to its own
        // through its change files. A keyless table's shows its own, and the versions
        // up to the next manifest's, which must still be there to say where they end (a
        // vacuum that kept a version a reader held deleted the ones after it).
        let reaches = |m: &Manifest| match self.codec {
            Some(_) => m.seq >= seq,
            None => m.seq == seq || versions.contains(&m.version.next()),
        };
        let Some(manifest) = manifest.filter(reaches) else {
            return Err(not_found());
        };
        let base = load_base(&self.location, &self.session, &self.dir, &manifest).await?;
        let changes = match &self.codec {
            Some(codec) => {
                let epoch = build_epoch(&self.location, &self.dir, &manifest, &base, codec).await?;
                load_change_files(&self.location, &self.dir, &manifest, &epoch, codec, seq).await?;
                Some(Arc::new(epoch))
            }
            None => None,
        };
        let manifest = Arc::new(manifest);
        self.pins.add(&manifest);
        Ok(Arc::new(Snapshot { manifest, base, seq, changes }))
    }

    /// The schema of [`Table::changes_between`]: the table's columns, the operation and
    /// the version.
    pub fn change_feed_schema(&self) -> SchemaRef {
        let schema = self.snapshot().schema();
        let mut fields: Vec<Field> =
            schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
        fields.push(Field::new(CHANGE_TYPE_COLUMN, DataType::Utf8, false));
        fields.push(Field::new(COMMIT_VERSION_COLUMN, DataType::Int64, false));
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
    }

    /// Every change committed in versions `from..=to`, oldest first: the newest row of
    /// each changed key per version, with the operation.
    pub async fn changes_between(&self, from: u64, to: u64) -> Result<Vec<RecordBatch>> {
        let Some(codec) = &self.codec else {
            return Err(StorageError::Unsupported {
                message: format!("table {} has no primary key, so it keeps no change feed", self.name()),
            });
        };
        let snapshot = self.snapshot();
        let to = to.min(snapshot.seq);
        let schema = snapshot.schema();
        let mut files = snapshot.manifest.changes.clone();
        if from <= snapshot.manifest.folded_seq {
            // Folded changes: the history records, back to the oldest version kept
            // (whose own folded changes went with the older versions).
            let kept = self.oldest_manifest().await?;
            if kept.is_some_and(|m| m.version > Version(1) && from <= m.folded_seq) {
                return Err(StorageError::VersionNotFound { table: self.name(), version: from });
            }
            files.extend(self.history_files(from).await?);
        }
        // A record a crashed compaction left names files the next one names again.
        let mut seen = std::collections::HashSet::new();
        files.retain(|f| seen.insert((f.bucket, f.name.clone())));
        let mut chunks: Vec<Arc<Chunk>> = Vec::new();
        for file in files.iter().filter(|f| f.max_seq >= from && f.min_seq <= to) {
            let read = read_change_file(&self.location, &self.dir, file, &schema, codec).await?;
            chunks.extend(read.into_iter().map(Arc::new));
        }
        if let Some(epoch) = &snapshot.changes {
            for bucket in 0..epoch.bucket_count() {
                chunks.extend(epoch.chunks(bucket).into_iter().filter(|c| c.seq > snapshot.manifest.seq));
            }
        }
        chunks.retain(|c| c.seq >= from && c.seq <= to);
        chunks.sort_by_key(|c| c.seq);
        let feed = self.change_feed_schema();
        chunks
            .iter()
            .map(|chunk| {
                let rows = crate::commit::align_to_schema(&chunk.rows, &schema)?;
                let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
                columns.push(Arc::new(StringArray::from_iter_values(chunk.ops.iter().map(|op| op.name()))));
                columns.push(Arc::new(Int64Array::from(vec![chunk.seq as i64; rows.num_rows()])));
                Ok(RecordBatch::try_new(feed.clone(), columns)?)
            })
            .collect()
    }
}
