//! Sequences (`CREATE SEQUENCE`): their definitions and the values they hand out.
//!
//! A sequence is one JSON file, `_tarn/sequences/<schema>/<name>.json`: its definition
//! and the last value it may have handed out (`reserved`). Values are handed out of
//! memory; before one passes `reserved`, the file is written again (durably) with
//! `reserved` [`PREFETCH`] values further on, as PostgreSQL logs a sequence 32 values
//! ahead. After a crash a sequence goes on after `reserved`: it may skip values, never
//! repeat one (a clean close writes the exact state). Like PostgreSQL's, a sequence is outside transactions: a value taken
//! is gone whether or not the statement or transaction that took it commits.
//!
//! `nextval` is an ordinary (synchronous) SQL function, so it works wherever an
//! expression does (`VALUES`, defaults, projections); the one write in [`PREFETCH`]
//! values blocks its thread for that write.

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::lease::Fence;
use crate::table_def::TableName;

/// Values reserved per write of the sequence's file.
pub const PREFETCH: i64 = 32;

/// The integer type of a sequence's values (`AS smallint | integer | bigint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SequenceType {
    Smallint,
    Integer,
    #[default]
    Bigint,
}

impl SequenceType {
    pub fn name(self) -> &'static str {
        match self {
            SequenceType::Smallint => "smallint",
            SequenceType::Integer => "integer",
            SequenceType::Bigint => "bigint",
        }
    }

    /// The type's range.
    pub fn bounds(self) -> (i64, i64) {
        match self {
            SequenceType::Smallint => (i16::MIN.into(), i16::MAX.into()),
            SequenceType::Integer => (i32::MIN.into(), i32::MAX.into()),
            SequenceType::Bigint => (i64::MIN, i64::MAX),
        }
    }
}

/// What `CREATE SEQUENCE` declared, with PostgreSQL's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceDef {
    pub name: TableName,
    pub data_type: SequenceType,
    pub start: i64,
    pub increment: i64,
    pub min_value: i64,
    pub max_value: i64,
    pub cycle: bool,
    pub cache: i64,
}

/// What `CREATE SEQUENCE` gave; `None` takes PostgreSQL's default.
#[derive(Debug, Clone, Default)]
pub struct SequenceOptions {
    pub increment: Option<i64>,
    pub min_value: Option<i64>,
    pub max_value: Option<i64>,
    pub start: Option<i64>,
    pub cycle: bool,
    pub cache: Option<i64>,
}

impl SequenceDef {
    /// A definition with PostgreSQL's defaults for what was not given, checked as
    /// PostgreSQL checks it (22023).
    pub fn new(name: TableName, data_type: SequenceType, options: SequenceOptions) -> Result<Self> {
        let SequenceOptions { increment, min_value, max_value, start, cycle, cache } = options;
        let invalid = |message: String| Err(StorageError::InvalidOption { message });
        let increment = increment.unwrap_or(1);
        if increment == 0 {
            return invalid("INCREMENT must not be zero".into());
        }
        let (low, high) = data_type.bounds();
        let min_value = min_value.unwrap_or(if increment > 0 { 1 } else { low });
        let max_value = max_value.unwrap_or(if increment > 0 { high } else { -1 });
        for (what, value) in [("MINVALUE", min_value), ("MAXVALUE", max_value)] {
            if value < low || value > high {
                return invalid(format!(
                    "{what} ({value}) is out of range for sequence data type {}",
                    data_type.name()
                ));
            }
        }
        if min_value >= max_value {
            return invalid(format!("MINVALUE ({min_value}) must be less than MAXVALUE ({max_value})"));
        }
        let start = start.unwrap_or(if increment > 0 { min_value } else { max_value });
        if start < min_value {
            return invalid(format!("START value ({start}) cannot be less than MINVALUE ({min_value})"));
        }
        if start > max_value {
            return invalid(format!("START value ({start}) cannot be greater than MAXVALUE ({max_value})"));
        }
        let cache = cache.unwrap_or(1);
        if cache < 1 {
            return invalid(format!("CACHE ({cache}) must be greater than zero"));
        }
        Ok(SequenceDef { name, data_type, start, increment, min_value, max_value, cycle, cache })
    }
}

/// The sequence's file: its definition and where it resumes, as PostgreSQL keeps a
/// sequence (`last_value`, `is_called`: whether that value was handed out).
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    def: SequenceDef,
    last_value: i64,
    is_called: bool,
}

/// Where a sequence's file is kept.
pub(crate) fn sequence_path(name: &TableName) -> Path {
    Path::from("_tarn").join("sequences").join(name.schema.as_str()).join(format!("{}.json", name.table))
}

/// A sequence: its definition and its state, shared by every session.
#[derive(Debug)]
pub struct Sequence {
    def: SequenceDef,
    store: Arc<dyn ObjectStore>,
    /// Passed by every write of the file: a replica hands out no values.
    fence: Arc<Fence>,
    state: std::sync::Mutex<State>,
}

#[derive(Debug)]
struct State {
    last_value: i64,
    /// Whether `last_value` was handed out (else the next value is `last_value`).
    is_called: bool,
    /// The last value the file lets `nextval` hand out without writing it again
    /// (`None`: none).
    reserved: Option<i64>,
}

impl Sequence {
    /// A new sequence, its file written.
    pub(crate) async fn create(
        store: Arc<dyn ObjectStore>,
        fence: Arc<Fence>,
        def: SequenceDef,
    ) -> Result<Sequence> {
        let stored = Stored { last_value: def.start, is_called: false, def };
        let sequence = Sequence::from_stored(store, fence, stored);
        sequence.write_async(sequence.def.start, false).await?;
        Ok(sequence)
    }

    /// A sequence read back from its file: it goes on after the values it reserved.
    pub(crate) fn load(
        store: Arc<dyn ObjectStore>,
        fence: Arc<Fence>,
        bytes: &[u8],
        path: &Path,
    ) -> Result<Sequence> {
        let stored: Stored = serde_json::from_slice(bytes)
            .map_err(|e| StorageError::internal(format!("sequence definition {path}: {e}")))?;
        Ok(Sequence::from_stored(store, fence, stored))
    }

    fn from_stored(store: Arc<dyn ObjectStore>, fence: Arc<Fence>, stored: Stored) -> Sequence {
        let Stored { def, last_value, is_called } = stored;
        let reserved = is_called.then_some(last_value);
        Sequence {
            def,
            store,
            fence,
            state: std::sync::Mutex::new(State { last_value, is_called, reserved }),
        }
    }

    pub fn def(&self) -> &SequenceDef {
        &self.def
    }

    /// The last value handed out (`pg_sequences.last_value`; after a restart, the
    /// last one reserved).
    pub fn last_value(&self) -> Option<i64> {
        let state = self.lock();
        state.is_called.then_some(state.last_value)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is replaced whole, never left half changed.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `nextval`, `count` times: the values in order. 2200H when the sequence reaches
    /// its bound without `CYCLE`; then no value is taken.
    pub fn next_values(&self, count: usize) -> Result<Vec<i64>> {
        let mut state = self.lock();
        let mut values = Vec::with_capacity(count);
        let (mut last, mut called) = (state.last_value, state.is_called);
        let mut wrapped = false;
        for _ in 0..count {
            let next = if called { self.after(last)? } else { last };
            wrapped |= called && !self.ahead(last, next);
            values.push(next);
            (last, called) = (next, true);
        }
        if values.is_empty() {
            return Ok(values);
        }
        let covered = !wrapped && state.reserved.is_some_and(|r| !self.ahead(r, last));
        if !covered {
            // Up to PREFETCH values past the last, short of the bound.
            let mut reserved = last;
            for _ in 1..PREFETCH {
                match reserved.checked_add(self.def.increment) {
                    Some(next) if (self.def.min_value..=self.def.max_value).contains(&next) => {
                        reserved = next
                    }
                    _ => break,
                }
            }
            self.write(reserved, true)?;
            state.reserved = Some(reserved);
        }
        (state.last_value, state.is_called) = (last, true);
        Ok(values)
    }

    /// At a clean close: the file holds the exact state, so the sequence goes on
    /// without a gap after a restart.
    pub(crate) async fn write_exact(&self) -> Result<()> {
        let (last_value, is_called) = {
            let state = self.lock();
            (state.last_value, state.is_called)
        };
        self.write_async(last_value, is_called).await
    }

    /// `setval(value, is_called)`: the next `nextval` returns the value after it, or
    /// with `is_called` false the value itself. 22003 out of the sequence's bounds.
    pub fn set_value(&self, value: i64, is_called: bool) -> Result<()> {
        let def = &self.def;
        if value < def.min_value || value > def.max_value {
            return Err(StorageError::SequenceOutOfRange {
                message: format!(
                    "setval: value {value} is out of bounds for sequence \"{}\" ({}..{})",
                    def.name.table, def.min_value, def.max_value
                ),
            });
        }
        let mut state = self.lock();
        self.write(value, is_called)?;
        *state = State { last_value: value, is_called, reserved: is_called.then_some(value) };
        Ok(())
    }

    /// The value after `last`: 2200H past the bound, the other bound with `CYCLE`.
    fn after(&self, last: i64) -> Result<i64> {
        let def = &self.def;
        match last.checked_add(def.increment).filter(|v| (def.min_value..=def.max_value).contains(v)) {
            Some(next) => Ok(next),
            None if def.cycle => Ok(if def.increment > 0 { def.min_value } else { def.max_value }),
            None => Err(StorageError::SequenceExhausted {
                message: format!(
                    "nextval: reached {} value of sequence \"{}\" ({})",
                    if def.increment > 0 { "maximum" } else { "minimum" },
                    def.name.table,
                    if def.increment > 0 { def.max_value } else { def.min_value }
                ),
            }),
        }
    }

    /// Whether `b` lies beyond `a` in the direction the sequence goes.
    fn ahead(&self, a: i64, b: i64) -> bool {
        if self.def.increment > 0 {
            b > a
        } else {
            b < a
        }
    }

    /// Writes the file from a function's (synchronous) call: the store's put runs to
    /// its end on this thread. On a worker of a multi-threaded runtime the worker is
    /// handed over first (`block_in_place`), so the runtime keeps driving the I/O an
    /// object store's HTTP client needs; a local store's blocking work goes to the
    /// runtime's blocking threads.
    fn write(&self, last_value: i64, is_called: bool) -> Result<()> {
        let write = self.write_async(last_value, is_called);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| handle.block_on(write))
            }
            _ => futures::executor::block_on(write),
        }
    }

    async fn write_async(&self, last_value: i64, is_called: bool) -> Result<()> {
        self.fence.check()?;
        let stored = Stored { def: self.def.clone(), last_value, is_called };
        let bytes = serde_json::to_vec_pretty(&stored)
            .map_err(|e| StorageError::internal(format!("sequence {}: {e}", self.def.name)))?;
        self.store.put(&sequence_path(&self.def.name), PutPayload::from(bytes)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> (tempfile::TempDir, Arc<dyn ObjectStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        (dir, Arc::new(store))
    }

    fn def(increment: i64, max: Option<i64>, cycle: bool) -> SequenceDef {
        let name = TableName::new("public", "s");
        let options =
            SequenceOptions { increment: Some(increment), max_value: max, cycle, ..Default::default() };
        SequenceDef::new(name, SequenceType::Bigint, options).unwrap()
    }

    async fn reopen(store: &Arc<dyn ObjectStore>) -> Sequence {
        let path = sequence_path(&TableName::new("public", "s"));
        let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
        Sequence::load(store.clone(), Arc::default(), &bytes, &path).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn values_go_on_after_a_reopen_and_never_repeat() {
        let (_dir, store) = folder();
        let s = Sequence::create(store.clone(), Arc::default(), def(1, None, false)).await.unwrap();
        assert_eq!(s.last_value(), None);
        assert_eq!(s.next_values(3).unwrap(), vec![1, 2, 3]);
        // A crash now: the file reserved 32 values from 3.
        let s = reopen(&store).await;
        assert_eq!(s.next_values(1).unwrap(), vec![35]);
        s.set_value(100, false).unwrap();
        assert_eq!(s.next_values(2).unwrap(), vec![100, 101]);
        s.set_value(7, true).unwrap();
        let s = reopen(&store).await;
        assert_eq!(s.next_values(1).unwrap(), vec![8]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bounds_stop_or_cycle() {
        let (_dir, store) = folder();
        let s = Sequence::create(store.clone(), Arc::default(), def(2, Some(5), false)).await.unwrap();
        assert_eq!(s.next_values(3).unwrap(), vec![1, 3, 5]);
        let err = s.next_values(1).unwrap_err();
        assert!(err.to_string().contains("reached maximum value of sequence \"s\" (5)"), "{err}");
        assert!(s.set_value(6, true).is_err());
        let (_dir, store) = folder();
        let s = Sequence::create(store.clone(), Arc::default(), def(2, Some(5), true)).await.unwrap();
        assert_eq!(s.next_values(5).unwrap(), vec![1, 3, 5, 1, 3]);
        // A cycling sequence reserves to its bound: a reopen starts the next cycle.
        let s = reopen(&store).await;
        assert_eq!(s.next_values(1).unwrap(), vec![1]);
        let (_dir, store) = folder();
        let options = SequenceOptions { increment: Some(-1), ..Default::default() };
        let down = SequenceDef::new(TableName::new("public", "s"), SequenceType::Integer, options).unwrap();
        assert_eq!((down.min_value, down.max_value, down.start), (i32::MIN as i64, -1, -1));
        let s = Sequence::create(store.clone(), Arc::default(), down).await.unwrap();
        assert_eq!(s.next_values(2).unwrap(), vec![-1, -2]);
    }
}
