//! A session's transaction: the snapshot each table is read at, and the writes not yet
//! committed.
//!
//! Every write statement runs inside one: `BEGIN` opens it explicitly, otherwise the
//! statement opens and commits its own. The first read of a table pins its snapshot
//! for the rest of the transaction (snapshot isolation); the catalog asks
//! [`TxState::pinned`] for it, with an [`Overlay`] of the transaction's own writes
//! (newest row per key, or the rows appended to a table without a key) so they read
//! back at once. `COMMIT` hands every table's writes to the warehouse as one
//! commit (one log record); a key another transaction committed after our snapshot
//! makes it fail with 40001.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::compute::interleave_record_batch;
use tarn_storage::key::Key;
use tarn_storage::{Snapshot, Table, TableName, Write, WriteKind};

use crate::catalog::provider::Overlay;
use crate::error::{EngineError, Result};

/// One table's part of a transaction.
#[derive(Debug, Clone)]
pub struct TxTable {
    pub table: Arc<Table>,
    pub snapshot: Arc<Snapshot>,
    /// Writes to a primary-key table, in statement order.
    pub writes: Vec<Write>,
    /// Rows for a table without a primary key, appended at commit.
    pub appends: Vec<RecordBatch>,
    /// The writes folded per key, built when a statement next reads the table.
    pub overlay: Option<Arc<Overlay>>,
    overlay_stale: bool,
}

impl Inner {
    /// The newest savepoint of that name.
    fn savepoint_at(&self, name: &str) -> Result<usize> {
        self.savepoints
            .iter()
            .rposition(|(n, _)| n == name)
            .ok_or_else(|| EngineError::UndefinedSavepoint { name: name.to_string() })
    }
}

impl TxTable {
    /// The table at its newest version, no writes yet.
    fn pin(table: &Arc<Table>) -> Self {
        TxTable {
            table: table.clone(),
            snapshot: table.snapshot(),
            writes: Vec::new(),
            appends: Vec::new(),
            overlay: None,
            overlay_stale: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct TxState {
    inner: Mutex<Inner>,
    /// The server keeps an audit trail or lineage: the tables statements touch are
    /// noted.
    noted: bool,
    /// The tables the running statement read and wrote (for the audit trail and
    /// lineage).
    touched: Mutex<Vec<Touched>>,
}

/// A table a statement read (at a version) or wrote (making a version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touched {
    pub table: TableName,
    pub version: u64,
    pub write: bool,
}

#[derive(Debug, Default)]
struct Inner {
    active: bool,
    /// By table id (a name may change, or be given to a new table, meanwhile).
    tables: BTreeMap<u64, TxTable>,
    /// Savepoints, oldest first: how many writes and appends each table had then.
    savepoints: Vec<(String, BTreeMap<u64, (usize, usize)>)>,
}

impl TxState {
    /// A session's transaction state; `noted`: the server keeps an audit trail or
    /// lineage, which name the tables a statement touched.
    pub fn new(noted: bool) -> Self {
        TxState { noted, ..Default::default() }
    }

    /// Notes that the running statement reads `table` at `version` (or, `write`, made
    /// it), once; nothing without an audit trail or lineage.
    pub(crate) fn note_touched(&self, table: &Table, version: u64, write: bool) {
        if !self.noted {
            return;
        }
        let touched = Touched { table: table.name(), version, write };
        let mut all = self.touched.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !all.contains(&touched) {
            all.push(touched);
        }
    }

    /// The tables noted since the last call.
    pub(crate) fn take_touched(&self) -> Vec<Touched> {
        std::mem::take(&mut *self.touched.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The tables noted so far, kept for [`TxState::take_touched`].
    pub(crate) fn touched_now(&self) -> Vec<Touched> {
        self.touched.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A statement that panicked holding the lock is aborted (`Session::note_error`
        // drops the transaction's state), so the state behind a poisoned lock is still
        // one a later statement may use.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn begin(&self) {
        let mut inner = self.lock();
        inner.active = true;
        inner.tables.clear();
        inner.savepoints.clear();
    }

    /// `SAVEPOINT name`: remembers how far each table's writes go.
    pub fn savepoint(&self, name: &str) {
        let mut inner = self.lock();
        let marks = inner.tables.iter().map(|(id, t)| (*id, (t.writes.len(), t.appends.len()))).collect();
        inner.savepoints.push((name.to_string(), marks));
    }

    /// `ROLLBACK TO SAVEPOINT name`: drops the writes made since; the savepoint stays.
    pub fn rollback_to(&self, name: &str) -> Result<()> {
        let mut inner = self.lock();
        let at = inner.savepoint_at(name)?;
        inner.savepoints.truncate(at + 1);
        let marks = inner.savepoints[at].1.clone();
        for (id, table) in inner.tables.iter_mut() {
            let (writes, appends) = marks.get(id).copied().unwrap_or((0, 0));
            if table.writes.len() > writes {
                table.writes.truncate(writes);
                table.overlay_stale = true;
            }
            if table.appends.len() > appends {
                table.appends.truncate(appends);
                table.overlay_stale = true;
            }
        }
        Ok(())
    }

    /// `RELEASE SAVEPOINT name`: forgets it and every later one; the writes stay.
    pub fn release(&self, name: &str) -> Result<()> {
        let mut inner = self.lock();
        let at = inner.savepoint_at(name)?;
        inner.savepoints.truncate(at);
        Ok(())
    }

    pub fn is_active(&self) -> bool {
        self.lock().active
    }

    /// Ends the transaction, returning its tables.
    pub fn take(&self) -> BTreeMap<u64, TxTable> {
        let mut inner = self.lock();
        inner.active = false;
        inner.savepoints.clear();
        std::mem::take(&mut inner.tables)
    }

    /// The snapshot `table` is read at in this transaction (pinned on first use) and
    /// the transaction's own writes; `None` outside a transaction.
    pub fn pinned(&self, table: &Arc<Table>) -> Result<Option<(Arc<Snapshot>, Option<Arc<Overlay>>)>> {
        let mut inner = self.lock();
        if !inner.active {
            return Ok(None);
        }
        let entry = inner.tables.entry(table.id()).or_insert_with(|| TxTable::pin(table));
        if entry.overlay_stale {
            let overlay = match table.key_codec() {
                Some(_) => overlay_of(table, &entry.writes)?,
                None => Overlay { rows: appended(&entry.appends)?, keys: HashMap::new() },
            };
            entry.overlay = Some(Arc::new(overlay));
            entry.overlay_stale = false;
        }
        Ok(Some((entry.snapshot.clone(), entry.overlay.clone())))
    }

    /// Adds writes to a primary-key table (its snapshot must be pinned).
    pub fn add_writes(&self, table: &Arc<Table>, writes: Vec<Write>) -> Result<()> {
        let mut inner = self.lock();
        let entry = inner.tables.get_mut(&table.id()).ok_or_else(|| EngineError::Internal {
            message: "write to a table the transaction did not pin".into(),
        })?;
        entry.writes.extend(writes);
        entry.overlay_stale = true;
        Ok(())
    }

    pub fn add_appends(&self, table: &Arc<Table>, rows: Vec<RecordBatch>) -> Result<()> {
        let mut inner = self.lock();
        let entry = inner.tables.get_mut(&table.id()).ok_or_else(|| EngineError::Internal {
            message: "write to a table the transaction did not pin".into(),
        })?;
        entry.appends.extend(rows);
        entry.overlay_stale = true;
        Ok(())
    }

    /// Before `ALTER TABLE` changes `table`'s columns (which takes effect at once, not
    /// at commit): the transaction reads it anew afterwards, at the new definition. A
    /// transaction that wrote to it cannot (its rows have the old columns): 0A000.
    pub fn unpin_for_alter(&self, table: &Arc<Table>) -> Result<()> {
        let mut inner = self.lock();
        if let Some(entry) = inner.tables.get(&table.id()) {
            if !entry.writes.is_empty() || !entry.appends.is_empty() {
                return Err(EngineError::unsupported(format!(
                    "ALTER TABLE of the columns of {}, which this transaction wrote to, is not supported",
                    table.name()
                )));
            }
        }
        inner.tables.remove(&table.id());
        Ok(())
    }

    pub fn has_writes(&self) -> bool {
        self.lock().tables.values().any(|t| !t.writes.is_empty() || !t.appends.is_empty())
    }
}

/// The rows appended to a table without a primary key, as one batch.
fn appended(appends: &[RecordBatch]) -> Result<Option<RecordBatch>> {
    match appends.first() {
        None => Ok(None),
        Some(first) => Ok(Some(arrow::compute::concat_batches(&first.schema(), appends)?)),
    }
}

/// The transaction's writes folded to the newest row (or deletion) per key.
fn overlay_of(table: &Table, writes: &[Write]) -> Result<Overlay> {
    let codec = table
        .key_codec()
        .ok_or_else(|| EngineError::Internal { message: "overlay of a keyless table".into() })?;
    let mut newest: HashMap<Key, Option<(usize, usize)>> = HashMap::new();
    for (w, write) in writes.iter().enumerate() {
        for (r, key) in codec.keys(&write.rows)?.into_iter().enumerate() {
            let row = match write.kind {
                WriteKind::Delete => None,
                _ => Some((w, r)),
            };
            newest.insert(key, row);
        }
    }
    let mut picks = Vec::new();
    let mut keys = HashMap::with_capacity(newest.len());
    for (key, row) in newest {
        match row {
            Some(pick) => {
                keys.insert(key, Some(picks.len()));
                picks.push(pick);
            }
            None => {
                keys.insert(key, None);
            }
        }
    }
    let rows = if picks.is_empty() {
        None
    } else {
        let batches: Vec<&RecordBatch> = writes.iter().map(|w| &w.rows).collect();
        Some(interleave_record_batch(&batches, &picks)?)
    };
    Ok(Overlay { rows, keys })
}

/// The command PostgreSQL names when a read-only transaction refuses `statement`
/// (`cannot execute INSERT in a read-only transaction`); `None` for what a read-only
/// transaction may run: queries, `SET`, transaction control, cursors, `EXPLAIN`
/// without `ANALYZE`, and temporary tables.
pub(crate) fn write_command(statement: &datafusion::sql::sqlparser::ast::Statement) -> Option<&'static str> {
    use datafusion::sql::sqlparser::ast::{ObjectType, Statement};
    Some(match statement {
        Statement::Insert(_) => "INSERT",
        Statement::Update(_) => "UPDATE",
        Statement::Delete(_) => "DELETE",
        Statement::Merge { .. } => "MERGE",
        Statement::Truncate(_) => "TRUNCATE TABLE",
        Statement::Copy { to: false, .. } => "COPY FROM",
        Statement::CreateTable(create) if !create.temporary => match create.query {
            Some(_) => "CREATE TABLE AS",
            None => "CREATE TABLE",
        },
        Statement::CreateView(create) if !create.temporary => "CREATE VIEW",
        Statement::CreateIndex(_) => "CREATE INDEX",
        Statement::CreateSchema { .. } => "CREATE SCHEMA",
        Statement::CreateSequence { temporary: false, .. } => "CREATE SEQUENCE",
        Statement::AlterTable(_) => "ALTER TABLE",
        Statement::AlterView { .. } => "ALTER VIEW",
        Statement::Comment { .. } => "COMMENT",
        Statement::CreateRole(_) => "CREATE ROLE",
        Statement::AlterRole { .. } => "ALTER ROLE",
        Statement::Grant(_) => "GRANT",
        Statement::Revoke(_) => "REVOKE",
        Statement::CreatePolicy(_) => "CREATE POLICY",
        Statement::DropPolicy(_) => "DROP POLICY",
        Statement::Drop { object_type, temporary: false, .. } => match object_type {
            ObjectType::Table => "DROP TABLE",
            ObjectType::View => "DROP VIEW",
            ObjectType::Index => "DROP INDEX",
            ObjectType::Schema => "DROP SCHEMA",
            ObjectType::Sequence => "DROP SEQUENCE",
            ObjectType::Role => "DROP ROLE",
            ObjectType::User => "DROP USER",
            _ => "DROP",
        },
        Statement::Explain { analyze: true, statement, .. } => return write_command(statement),
        _ => return None,
    })
}

/// What a read-only replica refuses: every write [`write_command`] names, and those it
/// lets through in a read-only transaction that still write to the warehouse.
pub(crate) fn replica_write_command(
    statement: &datafusion::sql::sqlparser::ast::Statement,
) -> Option<&'static str> {
    use datafusion::sql::sqlparser::ast::Statement;
    write_command(statement).or(match statement {
        Statement::CreateTable(_) => Some("CREATE TABLE"),
        Statement::CreateView(_) => Some("CREATE VIEW"),
        Statement::CreateSequence { .. } => Some("CREATE SEQUENCE"),
        Statement::Drop { .. } => Some("DROP"),
        Statement::Vacuum(_) => Some("VACUUM"),
        _ => None,
    })
}
