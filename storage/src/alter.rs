//! `ALTER TABLE`'s changes of columns: `ADD`, `RENAME` and `DROP COLUMN`.
//!
//! Each is one manifest commit that carries the new table definition. A table with a
//! primary key is compacted first, so every row it holds is in its base and no change
//! file or log record has the old columns. A Lance base changes its schema in place, a
//! metadata-only commit: an added column reads NULL (or, with a `DEFAULT`, Lance writes
//! the value into a new data file per fragment), a renamed one keeps its Lance
//! field (and so its vector index), a dropped one stays in the data files unread. A
//! Parquet base matches its files to the table by column name, so a rename or a drop
//! rewrites it (a later column of the same name must not read the old values).
//!
//! What names a column goes along: the primary key, identity sequences, comments,
//! vector indexes, and text indexes (whose tantivy segments keep the field name they
//! were built with, [`TextColumn::field`]). A dropped column takes the indexes over it
//! with it, as in PostgreSQL.

use std::future::Future;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::datatypes::{Field, Schema};
use lance::dataset::{BatchUDF, ColumnAlteration, NewColumnTransform};
use tracing::info;

use crate::error::{Result, StorageError};
use crate::manifest::{BaseRef, Manifest};
use crate::scalar_index::ScalarIndexDef;
use crate::table::{read_columns, BaseSnapshot, Snapshot, Table, Writer};
use crate::table_def::ColumnMeta;
#[cfg(doc)]
use crate::text_index::TextColumn;
use crate::vector_index::{drop_built, IndexDef};

impl Table {
    /// `ALTER TABLE ... ADD COLUMN`: existing rows read `fill` in the new column (a
    /// one-row array of its type: its `DEFAULT`, evaluated once), or NULL without one.
    /// A `NOT NULL` column needs a fill on a table that has rows (23502).
    pub async fn add_column(
        self: &Arc<Self>,
        field: Field,
        meta: ColumnMeta,
        fill: Option<ArrayRef>,
    ) -> Result<()> {
        let fill = fill.filter(|value| value.len() == 1 && !value.is_null(0));
        self.alter_detached(|table| async move { table.add_column_now(field, meta, fill).await }).await
    }

    /// `ALTER TABLE ... RENAME COLUMN from TO to`.
    pub async fn rename_column(self: &Arc<Self>, from: &str, to: &str) -> Result<()> {
        let (from, to) = (from.to_string(), to.to_string());
        self.alter_detached(|table| async move { table.rename_column_now(&from, &to).await }).await
    }

    /// `ALTER TABLE ... DROP COLUMN`: the column, and every index over it, are gone.
    /// A key column cannot go (0A000), nor the last column.
    pub async fn drop_column(self: &Arc<Self>, name: &str) -> Result<()> {
        let name = name.to_string();
        self.alter_detached(|table| async move { table.drop_column_now(&name).await }).await
    }

    /// Compacts a primary-key table, then runs `alter` as its own task: a caller that
    /// goes away cannot stop it between the base's commit and the manifest's.
    async fn alter_detached<F, Fut>(self: &Arc<Self>, alter: F) -> Result<()>
    where
        F: FnOnce(Arc<Table>) -> Fut,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        if self.has_primary_key() {
            // Boxed: a compaction's future is large, and DDL is rare.
            Box::pin(self.compact()).await?;
        }
        tokio::spawn(alter(self.clone()))
            .await
            .map_err(|e| StorageError::internal(format!("ALTER TABLE task failed: {e}")))?
    }

    /// The snapshot to alter, once compaction left every row in the base; the caller
    /// holds the compaction and writer locks.
    fn settled(&self) -> Result<Arc<Snapshot>> {
        let snapshot = self.snapshot();
        if snapshot.seq > snapshot.manifest.folded_seq {
            return Err(StorageError::SerializationFailure {
                detail: "changes arrived while the table was being compacted for ALTER TABLE".into(),
            });
        }
        Ok(snapshot)
    }

    async fn add_column_now(&self, field: Field, meta: ColumnMeta, fill: Option<ArrayRef>) -> Result<()> {
        let _compacting = self.compacting.lock().await;
        let mut writer = self.writer.lock().await;
        let snapshot = self.snapshot();
        let def = snapshot.def();
        if def.column_index(field.name()).is_some() {
            return Err(StorageError::DuplicateColumn {
                table: def.name.to_string(),
                column: field.name().clone(),
            });
        }
        let has_rows = snapshot.manifest.row_count > 0 || snapshot.seq > snapshot.manifest.folded_seq;
        if has_rows && meta.identity.is_some() {
            return Err(StorageError::Unsupported {
                message: "adding an identity or serial column to a table that has rows is not supported yet"
                    .into(),
            });
        }
        if has_rows && !field.is_nullable() && fill.is_none() {
            return Err(StorageError::NotNullViolation {
                table: def.name.table.clone(),
                column: field.name().clone(),
            });
        }
        if let Some(value) = &fill {
            if value.data_type() != field.data_type() {
                return Err(StorageError::internal(format!(
                    "the value of added column {} is {}, not {}",
                    field.name(),
                    value.data_type(),
                    field.data_type()
                )));
            }
        }
        let snapshot = self.settled()?;
        let mut manifest = snapshot.manifest.successor();
        let def = &mut manifest.table;
        let mut fields: Vec<Field> = def.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(field.clone());
        def.schema = Arc::new(Schema::new_with_metadata(fields, def.schema.metadata().clone()));
        def.columns.push(meta);
        match (&snapshot.base, fill) {
            (BaseSnapshot::Lance(_), fill) => {
                let added = Arc::new(Schema::new(vec![field.with_nullable(true)]));
                let mut head = self.head(&mut writer, &snapshot).await?;
                let (transform, read) = match fill {
                    None => (NewColumnTransform::AllNulls(added), None),
                    // Every row gets the value; Lance reads one column (by its Lance
                    // name, which a rename does not change) only to count them.
                    Some(value) => {
                        let schema = added.clone();
                        let mapper = move |batch: &RecordBatch| {
                            let column = repeat(&value, batch.num_rows())?;
                            Ok(RecordBatch::try_new(schema.clone(), vec![column])?)
                        };
                        let udf = BatchUDF {
                            mapper: Box::new(mapper),
                            output_schema: added,
                            result_checkpoint: None,
                        };
                        let first = head.schema().fields.first().map(|f| f.name.clone());
                        (NewColumnTransform::BatchUDF(udf), first.map(|name| vec![name]))
                    }
                };
                let result = head.add_columns(transform, read, None).await;
                self.base_altered(&mut writer, &mut manifest, head, result.map_err(Into::into))?;
            }
            // The files are matched to the table by name: a column they lack reads NULL.
            (BaseSnapshot::Parquet(_), None) => {}
            (BaseSnapshot::Parquet(_), Some(value)) => {
                self.rewrite_parquet(&mut writer, &snapshot, &mut manifest, Some(&value)).await?
            }
        }
        self.commit_altered(&mut writer, manifest).await
    }

    async fn rename_column_now(&self, from: &str, to: &str) -> Result<()> {
        let _compacting = self.compacting.lock().await;
        let mut writer = self.writer.lock().await;
        let snapshot = self.settled()?;
        let table = snapshot.def().name.table.clone();
        let index = column_of(&snapshot, from)?;
        if snapshot.def().column_index(to).is_some() {
            return Err(StorageError::DuplicateColumn { table, column: to.to_string() });
        }
        let mut manifest = snapshot.manifest.successor();
        let def = &mut manifest.table;
        let mut fields: Vec<Field> = def.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields[index] = fields[index].clone().with_name(to);
        def.schema = Arc::new(Schema::new_with_metadata(fields, def.schema.metadata().clone()));
        def.columns[index].name = to.to_string();
        for key in def.primary_key.iter_mut().filter(|k| *k == from) {
            *key = to.to_string();
        }
        crate::cluster::rename_column(&mut def.options, from, to);
        if let Some(comment) = def.comments.columns.remove(from) {
            def.comments.columns.insert(to.to_string(), comment);
        }
        if let Some(last) = manifest.sequences.remove(from) {
            manifest.sequences.insert(to.to_string(), last);
        }
        for vector in manifest.indexes.iter_mut().filter(|d| d.column == from) {
            vector.column = to.to_string();
        }
        for column in manifest.text_indexes.iter_mut().flat_map(|d| &mut d.columns) {
            if column.name == from {
                column.rename(to);
            }
        }
        for scalar in manifest.scalar_indexes.iter_mut() {
            scalar.rename_column(from, to);
        }
        match &snapshot.base {
            BaseSnapshot::Lance(_) => {
                let mut head = self.head(&mut writer, &snapshot).await?;
                let rename = ColumnAlteration::new(from.to_string()).rename(to.to_string());
                let result = head.alter_columns(&[rename]).await;
                self.base_altered(&mut writer, &mut manifest, head, result.map_err(Into::into))?;
            }
            BaseSnapshot::Parquet(_) => {
                self.rewrite_parquet(&mut writer, &snapshot, &mut manifest, None).await?
            }
        }
        self.commit_altered(&mut writer, manifest).await?;
        // The writer's counter (ahead of the manifest's by values taken since) follows.
        if let Some(last) = writer.sequences.remove(from) {
            writer.sequences.insert(to.to_string(), last);
        }
        info!(table = %table, from, to, "column renamed");
        Ok(())
    }

    async fn drop_column_now(&self, name: &str) -> Result<()> {
        let _compacting = self.compacting.lock().await;
        let mut writer = self.writer.lock().await;
        let snapshot = self.settled()?;
        let def = snapshot.def();
        let index = column_of(&snapshot, name)?;
        if def.primary_key.iter().any(|k| k == name) {
            return Err(StorageError::Unsupported {
                message: format!(
                    "cannot drop column {name} of table {}: it is in the primary key {}",
                    def.name.table,
                    def.primary_key_constraint()
                ),
            });
        }
        // Key columns are found by position (`KeyCodec`): none may move.
        if def.primary_key_indices().iter().any(|&k| k > index) {
            return Err(StorageError::Unsupported {
                message: format!(
                    "dropping column {name} of table {}, which comes before a primary key column, \
                     is not supported yet",
                    def.name.table
                ),
            });
        }
        if def.schema.fields().len() == 1 {
            return Err(StorageError::Unsupported {
                message: format!("cannot drop column {name}: it is the last column of {}", def.name.table),
            });
        }
        let mut manifest = snapshot.manifest.successor();
        let def = &mut manifest.table;
        let mut fields: Vec<Field> = def.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.remove(index);
        def.schema = Arc::new(Schema::new_with_metadata(fields, def.schema.metadata().clone()));
        def.columns.remove(index);
        def.comments.columns.remove(name);
        crate::cluster::drop_column(&mut def.options, name);
        manifest.sequences.remove(name);
        let (dropped, kept) = manifest.indexes.drain(..).partition(|d| d.column == name);
        let dropped: Vec<IndexDef> = dropped;
        manifest.indexes = kept;
        manifest.text_indexes.retain(|d| d.columns.iter().all(|c| c.name != name));
        let (dropped_scalar, kept) =
            manifest.scalar_indexes.drain(..).partition(|d| d.columns.iter().any(|c| c == name));
        let dropped_scalar: Vec<ScalarIndexDef> = dropped_scalar;
        manifest.scalar_indexes = kept;
        match &snapshot.base {
            BaseSnapshot::Lance(_) => {
                let mut head = self.head(&mut writer, &snapshot).await?;
                let mut result = Ok(());
                for index in &dropped {
                    if result.is_ok() {
                        result = drop_built(&mut head, index).await;
                    }
                }
                for index in &dropped_scalar {
                    if result.is_ok() {
                        result = crate::scalar_index::drop_built(&mut head, index).await;
                    }
                }
                if result.is_ok() {
                    result = head.drop_columns(&[name]).await.map_err(Into::into);
                }
                self.base_altered(&mut writer, &mut manifest, head, result)?;
            }
            BaseSnapshot::Parquet(_) => {
                self.rewrite_parquet(&mut writer, &snapshot, &mut manifest, None).await?
            }
        }
        self.commit_altered(&mut writer, manifest).await?;
        writer.sequences.remove(name);
        info!(table = %snapshot.def().name, column = name, "column dropped");
        Ok(())
    }

    /// After a change of the Lance base's schema: on success the manifest names the new
    /// version and the writer keeps the head; on failure the head is re-read (and
    /// restored) by the next write.
    fn base_altered(
        &self,
        writer: &mut Writer,
        manifest: &mut Manifest,
        head: lance::Dataset,
        result: Result<()>,
    ) -> Result<()> {
        result?;
        manifest.base = BaseRef::Lance { version: head.version().version };
        writer.head = Some(head);
        Ok(())
    }

    /// Writes a Parquet base anew with `manifest`'s columns: the old rows, their columns
    /// found by name (a renamed one where it was), and an added last column `added` in
    /// every row.
    async fn rewrite_parquet(
        &self,
        writer: &mut Writer,
        snapshot: &Snapshot,
        manifest: &mut Manifest,
        added: Option<&ArrayRef>,
    ) -> Result<()> {
        let old = snapshot.def();
        let names: Vec<String> = old.schema.fields().iter().map(|f| f.name().clone()).collect();
        let new = manifest.table.schema.clone();
        let batches = read_columns(&self.location, &snapshot.base, &names, false)
            .await?
            .into_iter()
            .map(|batch| {
                let columns = new
                    .fields()
                    .iter()
                    .enumerate()
                    .map(|(at, field)| match (old.column_index(field.name()), added) {
                        (Some(i), _) => Ok(batch.column(i).clone()),
                        (None, Some(value)) if at == batch.num_columns() => repeat(value, batch.num_rows()),
                        (None, _) => Ok(batch.column(at).clone()),
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                Ok(RecordBatch::try_new(new.clone(), columns)?)
            })
            .collect::<Result<Vec<_>>>()?;
        self.write_base(writer, snapshot, manifest, batches, true).await
    }

    /// Commits an altered definition (the base, if it changed, already is) and makes it
    /// current: the base is new, and so is its key index (same keys, same addresses).
    async fn commit_altered(&self, writer: &mut Writer, manifest: Manifest) -> Result<()> {
        if let Err(e) = self.manifests.commit(&manifest).await {
            writer.head = None;
            return Err(e);
        }
        self.publish(manifest, writer, None).await
    }
}

/// `value` (one row) `rows` times.
fn repeat(value: &ArrayRef, rows: usize) -> std::result::Result<ArrayRef, arrow::error::ArrowError> {
    arrow::compute::take(value.as_ref(), &UInt32Array::from(vec![0u32; rows]), None)
}

/// The position of column `name`, or 42703.
fn column_of(snapshot: &Snapshot, name: &str) -> Result<usize> {
    let def = snapshot.def();
    def.column_index(name).ok_or_else(|| StorageError::UndefinedColumn {
        table: def.name.table.clone(),
        column: name.to_string(),
    })
}
