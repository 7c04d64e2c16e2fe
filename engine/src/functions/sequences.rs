//! `nextval`, `currval`, `setval` and `lastval` over the warehouse's sequences
//! (`tarn_storage::sequence`), as PostgreSQL has them: a sequence is named by text
//! (`'s'`, `'app.s'`, `'"S"'`) or by its OID (`'s'::regclass`); `nextval` over many
//! rows takes a value per row; `currval` and `lastval` are what this session's
//! `nextval` (or `setval`) last returned (55000 before it did).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use arrow::array::{Array, Int64Array};
use arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use tarn_storage::sequence::Sequence;
use tarn_storage::{StorageError, TableName, Warehouse};

use crate::catalog::pg_catalog::functions::relation_parts;
use crate::catalog::pg_catalog::relations::sequence_oid;
use crate::error::EngineError;
use crate::statements::ddl::DEFAULT_SCHEMA;

/// What this session's calls returned last: per sequence, and of any sequence.
#[derive(Debug, Default)]
struct Used {
    by_sequence: HashMap<TableName, i64>,
    last: Option<i64>,
}

/// The functions' names.
pub const NAMES: [&str; 4] = ["nextval", "currval", "setval", "lastval"];

/// Registers the four functions on a session's context (and on the context column
/// defaults are parsed with, whose calls each session swaps for its own).
pub fn register(ctx: &SessionContext, warehouse: Weak<Warehouse>) {
    let used = Arc::new(Mutex::new(Used::default()));
    for kind in [Kind::Next, Kind::Curr, Kind::Set, Kind::Last] {
        let signature = match kind {
            Kind::Next | Kind::Curr => Signature::one_of(vec![named(&[]), oid(&[])], Volatility::Volatile),
            Kind::Set => Signature::one_of(
                vec![
                    named(&[DataType::Int64]),
                    oid(&[DataType::Int64]),
                    named(&[DataType::Int64, DataType::Boolean]),
                    oid(&[DataType::Int64, DataType::Boolean]),
                ],
                Volatility::Volatile,
            ),
            Kind::Last => Signature::exact(vec![], Volatility::Volatile),
        };
        ctx.register_udf(ScalarUDF::from(SequenceFunction {
            kind,
            signature,
            warehouse: warehouse.clone(),
            used: used.clone(),
        }));
    }
}

fn named(rest: &[DataType]) -> TypeSignature {
    TypeSignature::Exact([&[DataType::Utf8], rest].concat())
}

fn oid(rest: &[DataType]) -> TypeSignature {
    TypeSignature::Exact([&[DataType::UInt32], rest].concat())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Next,
    Curr,
    Set,
    Last,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Next => "nextval",
            Kind::Curr => "currval",
            Kind::Set => "setval",
            Kind::Last => "lastval",
        }
    }
}

#[derive(Debug)]
struct SequenceFunction {
    kind: Kind,
    signature: Signature,
    warehouse: Weak<Warehouse>,
    used: Arc<Mutex<Used>>,
}

impl PartialEq for SequenceFunction {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && Arc::ptr_eq(&self.used, &other.used)
    }
}

impl Eq for SequenceFunction {}

impl std::hash::Hash for SequenceFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
    }
}

impl ScalarUDFImpl for SequenceFunction {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        if self.kind == Kind::Last {
            let last = self.used().last.ok_or_else(|| {
                not_yet("lastval is not yet defined in this session".to_string()).into_datafusion()
            })?;
            return Ok(ColumnarValue::Scalar(ScalarValue::Int64(Some(last))));
        }
        // `nextval('s')` over many rows: one call for them all.
        if let (Kind::Next, [ColumnarValue::Scalar(name)]) = (self.kind, args.args.as_slice()) {
            if name.is_null() {
                return Ok(ColumnarValue::Scalar(ScalarValue::Int64(None)));
            }
            let sequence = self.sequence(name)?;
            let values = sequence.next_values(rows).map_err(storage)?;
            self.note(&sequence, values.last().copied());
            return Ok(ColumnarValue::Array(Arc::new(Int64Array::from(values))));
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            let values =
                arrays.iter().map(|a| ScalarValue::try_from_array(a, row)).collect::<DfResult<Vec<_>>>()?;
            out.push(self.one(&values)?);
        }
        let out = Int64Array::from(out);
        if args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) && out.len() == 1 {
            return Ok(ColumnarValue::Scalar(ScalarValue::Int64(out.is_valid(0).then(|| out.value(0)))));
        }
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

impl SequenceFunction {
    /// One row's call (NULL arguments give NULL, as the functions are strict).
    fn one(&self, values: &[ScalarValue]) -> DfResult<Option<i64>> {
        if values.iter().any(ScalarValue::is_null) {
            return Ok(None);
        }
        let sequence = self.sequence(&values[0])?;
        let name = &sequence.def().name;
        let value = match self.kind {
            Kind::Next => sequence.next_values(1).map_err(storage)?.pop(),
            Kind::Curr => Some(self.used().by_sequence.get(name).copied().ok_or_else(|| {
                not_yet(format!("currval of sequence \"{}\" is not yet defined in this session", name.table))
                    .into_datafusion()
            })?),
            Kind::Set => {
                let Some(ScalarValue::Int64(Some(value))) = values.get(1) else {
                    return exec_err!("setval takes a bigint value");
                };
                let is_called = !matches!(values.get(2), Some(ScalarValue::Boolean(Some(false))));
                sequence.set_value(*value, is_called).map_err(storage)?;
                // PostgreSQL's setval leaves currval alone unless it was called.
                if is_called {
                    self.note(&sequence, Some(*value));
                }
                return Ok(Some(*value));
            }
            Kind::Last => unreachable!("lastval takes no sequence"),
        };
        if self.kind == Kind::Next {
            self.note(&sequence, value);
        }
        Ok(value)
    }

    fn used(&self) -> std::sync::MutexGuard<'_, Used> {
        self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn note(&self, sequence: &Sequence, value: Option<i64>) {
        let Some(value) = value else { return };
        let mut used = self.used();
        used.by_sequence.insert(sequence.def().name.clone(), value);
        used.last = Some(value);
    }

    /// The sequence a text or OID argument names (42P01 when none does; 42809 when
    /// the relation is no sequence).
    fn sequence(&self, name: &ScalarValue) -> DfResult<Arc<Sequence>> {
        let Some(warehouse) = self.warehouse.upgrade() else {
            return exec_err!("the server is shutting down");
        };
        let found = match name {
            ScalarValue::Utf8(Some(text)) => {
                let name = match relation_parts(text) {
                    Some((schema, relation)) => {
                        TableName::new(schema.as_deref().unwrap_or(DEFAULT_SCHEMA), relation)
                    }
                    None => TableName::new(DEFAULT_SCHEMA, text.clone()),
                };
                warehouse.sequence(&name).ok_or_else(|| {
                    not_a_sequence(&warehouse, &name)
                        .unwrap_or_else(|| StorageError::TableNotFound { name: name.clone() }.into())
                })
            }
            ScalarValue::UInt32(Some(oid)) => warehouse
                .all_sequences()
                .into_iter()
                .find(|s| sequence_oid(&s.def().name) == *oid)
                .ok_or_else(|| EngineError::WrongObjectType {
                    message: format!("OID {oid} is not a sequence"),
                }),
            other => return exec_err!("{} takes a sequence's name, not {other}", self.kind.name()),
        };
        found.map_err(EngineError::into_datafusion)
    }
}

/// 42809 when `name` is a table or view, not a sequence (`None` when it is a sequence
/// or nothing).
pub(crate) fn not_a_sequence(warehouse: &Warehouse, name: &TableName) -> Option<EngineError> {
    let other = warehouse.sequence(name).is_none()
        && (warehouse.table(name).is_some() || warehouse.view(name).is_some());
    other.then(|| EngineError::WrongObjectType { message: format!("\"{}\" is not a sequence", name.table) })
}

fn storage(error: StorageError) -> datafusion::error::DataFusionError {
    EngineError::Storage(error).into_datafusion()
}

/// 55000: object not in prerequisite state.
fn not_yet(message: String) -> EngineError {
    EngineError::ObjectNotInPrerequisiteState { message }
}
