//! The catalog functions tools call: `format_type`, `pg_get_indexdef`,
//! `pg_get_constraintdef`, `pg_get_userbyid`, `pg_table_is_visible` and the other
//! `pg_*_is_visible`, `obj_description`, `pg_table_size`, `current_schemas`,
//! `has_*_privilege`... Each is declared once in [`register`] with the types its
//! arguments are cast to (an OID may come as `oid`, a number or `'16385'`) and a
//! function of one row's values; catalogs are small, so rows are done one by one.

use std::sync::{Arc, Weak};

use arrow::array::Array;
use arrow::datatypes::{DataType, Field};
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use tarn_storage::Warehouse;

use super::relations::{self, quote_ident, TableRel};
use super::types::{format_type, type_name, type_oid};
use super::{OWNER, OWNER_OID};

/// What an argument is cast to before the function sees it.
#[derive(Debug, Clone, Copy)]
enum Arg {
    Oid,
    Int,
    /// An `integer` (a backend pid).
    Int4,
    Bool,
    Text,
    /// Taken as it comes (`has_table_privilege`'s many forms).
    Any,
}

impl Arg {
    fn data_type(self, given: &DataType) -> DataType {
        match self {
            Arg::Oid => DataType::UInt32,
            Arg::Int => DataType::Int64,
            Arg::Int4 => DataType::Int32,
            Arg::Bool => DataType::Boolean,
            Arg::Text => DataType::Utf8,
            Arg::Any => given.clone(),
        }
    }
}

type RowFn = dyn Fn(&[ScalarValue]) -> DfResult<ScalarValue> + Send + Sync;

/// A catalog function: `name(args[..n])` for `n` from `required` to `args.len()`.
struct CatalogFunction {
    name: &'static str,
    args: Vec<Arg>,
    required: usize,
    returns: DataType,
    signature: Signature,
    row: Box<RowFn>,
}

impl std::fmt::Debug for CatalogFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogFunction").field("name", &self.name).finish()
    }
}

impl PartialEq for CatalogFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for CatalogFunction {}

impl std::hash::Hash for CatalogFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for CatalogFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(self.returns.clone())
    }

    fn coerce_types(&self, given: &[DataType]) -> DfResult<Vec<DataType>> {
        if given.len() < self.required || given.len() > self.args.len() {
            return datafusion::common::plan_err!(
                "function {}() takes {} arguments, not {}",
                self.name,
                if self.required == self.args.len() {
                    self.required.to_string()
                } else {
                    format!("{} to {}", self.required, self.args.len())
                },
                given.len()
            );
        }
        Ok(given.iter().zip(&self.args).map(|(t, arg)| arg.data_type(t)).collect())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
            let values: Vec<ScalarValue> = args
                .args
                .iter()
                .map(|a| match a {
                    ColumnarValue::Scalar(s) => s.clone(),
                    ColumnarValue::Array(_) => unreachable!("all scalars"),
                })
                .collect();
            return Ok(ColumnarValue::Scalar(cast_to(&(self.row)(&values)?, &self.returns)?));
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut out = Vec::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            let values =
                arrays.iter().map(|a| ScalarValue::try_from_array(a, row)).collect::<DfResult<Vec<_>>>()?;
            out.push(cast_to(&(self.row)(&values)?, &self.returns)?);
        }
        if out.is_empty() {
            return Ok(ColumnarValue::Array(arrow::array::new_empty_array(&self.returns)));
        }
        Ok(ColumnarValue::Array(ScalarValue::iter_to_array(out)?))
    }
}

fn cast_to(value: &ScalarValue, to: &DataType) -> DfResult<ScalarValue> {
    if value.is_null() {
        return ScalarValue::try_from(to);
    }
    if &value.data_type() == to {
        return Ok(value.clone());
    }
    value.cast_to(to)
}

fn function(
    name: &'static str,
    args: &[Arg],
    required: usize,
    returns: DataType,
    row: impl Fn(&[ScalarValue]) -> ScalarValue + Send + Sync + 'static,
) -> ScalarUDF {
    fallible(name, args, required, returns, move |v| Ok(row(v)))
}

fn fallible(
    name: &'static str,
    args: &[Arg],
    required: usize,
    returns: DataType,
    row: impl Fn(&[ScalarValue]) -> DfResult<ScalarValue> + Send + Sync + 'static,
) -> ScalarUDF {
    ScalarUDF::from(CatalogFunction {
        name,
        args: args.to_vec(),
        required,
        returns,
        signature: Signature::user_defined(Volatility::Stable),
        row: Box::new(row),
    })
}

fn oid_arg(v: &ScalarValue) -> Option<u32> {
    match v {
        ScalarValue::UInt32(o) => *o,
        _ => None,
    }
}

fn int_arg(v: Option<&ScalarValue>) -> Option<i64> {
    match v {
        Some(ScalarValue::Int64(i)) => *i,
        _ => None,
    }
}

fn text(s: impl Into<String>) -> ScalarValue {
    ScalarValue::Utf8(Some(s.into()))
}

const NULL_TEXT: ScalarValue = ScalarValue::Utf8(None);

/// The table and index an OID names, if it is a user index.
fn find_index(warehouse: &Warehouse, oid: u32) -> Option<(TableRel, usize)> {
    relations::tables(warehouse)
        .into_iter()
        .find_map(|t| t.indexes.iter().position(|i| i.oid == oid).map(|i| (t, i)))
}

/// Schemas by name: Postgres' two and the warehouse's.
fn schema_names(warehouse: &Warehouse) -> Vec<String> {
    let mut names = vec![super::SCHEMA.to_string(), "information_schema".to_string()];
    names.extend(warehouse.schemas());
    names
}

/// A relation's OID by name as `::regclass` reads it: `name` (a catalog, then a table
/// or index of the default schema) or `schema.name`, either part maybe quoted.
fn relation_by_name(warehouse: &Warehouse, name: &str) -> Option<u32> {
    let (schema, relation) = relation_parts(name)?;
    if schema.as_deref().is_none_or(|s| s == super::SCHEMA) {
        if let Some(def) = super::columns::ALL.iter().find(|d| d.name == relation) {
            return Some(def.oid);
        }
    }
    let schema = schema.unwrap_or_else(|| crate::statements::ddl::DEFAULT_SCHEMA.to_string());
    if let Some(view) =
        relations::views(warehouse).into_iter().find(|v| v.schema == schema && v.name == relation)
    {
        return Some(view.oid);
    }
    let name = tarn_storage::TableName::new(schema.clone(), relation.clone());
    if warehouse.sequence(&name).is_some() {
        return Some(relations::sequence_oid(&name));
    }
    relations::tables(warehouse).into_iter().filter(|t| t.schema == schema).find_map(|t| {
        if t.name == relation {
            return Some(t.oid);
        }
        t.indexes.iter().find(|i| i.name == relation).map(|i| i.oid)
    })
}

/// A relation's name as `::regclass` and `nextval` read it: its schema, if given, and
/// its own name (see [`name_parts`]). `None` when malformed.
pub(crate) fn relation_parts(name: &str) -> Option<(Option<String>, String)> {
    match name_parts(name)?.as_mut_slice() {
        [relation] => Some((None, std::mem::take(relation))),
        [.., schema, relation] => Some((Some(std::mem::take(schema)), std::mem::take(relation))),
        [] => None,
    }
}

/// The parts of a qualified name as PostgreSQL's `SplitIdentifierString` reads them:
/// `a.b`, `"A"."b.c"`, `"public" . "t"` (ADBC's spelling: blanks around the dot);
/// unquoted parts lower-cased, quoted ones as written (`""` one quote). `None` when
/// malformed.
fn name_parts(name: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = name.chars().peekable();
    let skip_blanks = |chars: &mut std::iter::Peekable<std::str::Chars>| {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
    };
    loop {
        skip_blanks(&mut chars);
        let mut part = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next()? {
                    '"' if chars.next_if_eq(&'"').is_some() => part.push('"'),
                    '"' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != '.' && !c.is_whitespace()) {
                part.push(c.to_ascii_lowercase());
            }
            if part.is_empty() {
                return None;
            }
        }
        parts.push(part);
        skip_blanks(&mut chars);
        match chars.next() {
            None => return Some(parts),
            Some('.') => continue,
            Some(_) => return None,
        }
    }
}

/// `oid::regclass` shown: the name, schema-qualified outside the search path.
fn relation_name(warehouse: &Warehouse, oid: u32) -> Option<String> {
    if let Some(def) = super::columns::ALL.iter().find(|d| d.oid == oid) {
        return Some(def.name.to_string());
    }
    let qualified = |schema: &str, name: &str| {
        if schema == crate::statements::ddl::DEFAULT_SCHEMA {
            quote_ident(name)
        } else {
            format!("{}.{}", quote_ident(schema), quote_ident(name))
        }
    };
    if let Some(view) = relations::views(warehouse).into_iter().find(|v| v.oid == oid) {
        return Some(qualified(&view.schema, &view.name));
    }
    if let Some(sequence) = relations::sequences(warehouse).into_iter().find(|s| s.oid == oid) {
        return Some(qualified(&sequence.schema, &sequence.name));
    }
    relations::tables(warehouse).into_iter().find_map(|t| {
        let name =
            if t.oid == oid { t.name.clone() } else { t.indexes.iter().find(|i| i.oid == oid)?.name.clone() };
        Some(qualified(&t.schema, &name))
    })
}

/// `current_setting(name [, missing_ok])` over one session's settings, registered on
/// its context again after every `SET`.
pub fn current_setting(settings: Vec<(String, String)>) -> ScalarUDF {
    fallible("current_setting", &[Arg::Text, Arg::Bool], 1, DataType::Utf8, move |v| {
        let ScalarValue::Utf8(Some(name)) = &v[0] else { return Ok(NULL_TEXT) };
        let missing_ok = matches!(v.get(1), Some(ScalarValue::Boolean(Some(true))));
        match settings.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some((_, value)) => Ok(text(value.clone())),
            None if missing_ok => Ok(NULL_TEXT),
            None => {
                Err(crate::error::EngineError::UndefinedParameter { name: name.clone() }.into_datafusion())
            }
        }
    })
}

/// `pg_backend_pid()`: the process id the session's client was given (BackendKeyData),
/// which its cancel requests name.
pub fn pg_backend_pid(pid: i32) -> ScalarUDF {
    function("pg_backend_pid", &[], 0, DataType::Int32, move |_| ScalarValue::Int32(Some(pid)))
}

/// Registers the catalog functions on the session template.
pub fn register(ctx: &SessionContext, warehouse: Weak<Warehouse>, activity: Weak<crate::activity::Activity>) {
    // Signals to other sessions (any session may signal any: roles come with governance).
    for (name, terminate) in [("pg_cancel_backend", false), ("pg_terminate_backend", true)] {
        let activity = activity.clone();
        let signal = move |v: &[ScalarValue]| {
            let (Some(ScalarValue::Int32(Some(pid))), Some(activity)) = (v.first(), activity.upgrade())
            else {
                return Ok(ScalarValue::Boolean(None));
            };
            let pid = *pid;
            let found = if terminate { activity.terminate(pid) } else { activity.cancel(pid) };
            if !found {
                tracing::warn!(pid, "PID {pid} is not a PostgreSQL backend process");
            }
            Ok(ScalarValue::Boolean(Some(found)))
        };
        // Volatile: a signal is sent each time the statement runs, never while planning.
        ctx.register_udf(ScalarUDF::from(CatalogFunction {
            name,
            args: vec![Arg::Int4, Arg::Int],
            required: 1,
            returns: DataType::Boolean,
            signature: Signature::user_defined(Volatility::Volatile),
            row: Box::new(signal),
        }));
    }
    // Tarn takes no advisory locks, so a session holds none to release (connection
    // pools such as asyncpg's call this when a connection goes back to the pool).
    ctx.register_udf(function("pg_advisory_unlock_all", &[], 0, DataType::Utf8, |_| NULL_TEXT));
    use Arg::*;
    let utf8 = DataType::Utf8;
    let with = move |f: &dyn Fn(&Warehouse) -> ScalarValue, null: ScalarValue| match warehouse.upgrade() {
        Some(w) => f(&w),
        None => null,
    };
    let with = Arc::new(with);

    ctx.register_udf(function("format_type", &[Oid, Int], 2, utf8.clone(), |v| {
        let typmod = int_arg(v.get(1)).map(|m| m as i32);
        oid_arg(&v[0]).and_then(|o| format_type(o, typmod)).map_or(NULL_TEXT, text)
    }));
    ctx.register_udf(function("to_regtype", &[Text], 1, DataType::UInt32, |v| match &v[0] {
        ScalarValue::Utf8(Some(name)) => ScalarValue::UInt32(type_oid(name)),
        _ => ScalarValue::UInt32(None),
    }));
    ctx.register_udf(function("tarn_regtype_name", &[Oid], 1, utf8.clone(), |v| {
        oid_arg(&v[0]).map_or(NULL_TEXT, |o| text(type_name(o).unwrap_or_else(|| o.to_string())))
    }));
    ctx.register_udf(function("pg_get_userbyid", &[Oid], 1, utf8.clone(), |v| match oid_arg(&v[0]) {
        Some(OWNER_OID) => text(OWNER),
        Some(o) => text(format!("unknown (OID={o})")),
        None => NULL_TEXT,
    }));
    // Every object is visible: the search path is pg_catalog then the default schema,
    // and names do not repeat across them.
    for name in [
        "pg_table_is_visible",
        "pg_type_is_visible",
        "pg_function_is_visible",
        "pg_collation_is_visible",
        "pg_opclass_is_visible",
        "pg_operator_is_visible",
        "pg_conversion_is_visible",
        "pg_ts_config_is_visible",
        "pg_statistics_obj_is_visible",
    ] {
        ctx.register_udf(function(name, &[Oid], 1, DataType::Boolean, |v| {
            ScalarValue::Boolean(oid_arg(&v[0]).map(|_| true))
        }));
    }
    ctx.register_udf(function("pg_is_other_temp_schema", &[Oid], 1, DataType::Boolean, |v| {
        ScalarValue::Boolean(oid_arg(&v[0]).map(|_| false))
    }));
    ctx.register_udf(function("pg_my_temp_schema", &[], 0, DataType::UInt32, |_| {
        ScalarValue::UInt32(Some(0))
    }));
    ctx.register_udf(function("pg_is_in_recovery", &[], 0, DataType::Boolean, |_| {
        ScalarValue::Boolean(Some(false))
    }));
    // No replica, so no replay to pause.
    ctx.register_udf(function("pg_is_wal_replay_paused", &[], 0, DataType::Boolean, |_| {
        ScalarValue::Boolean(Some(false))
    }));
    // A statement never waits on another session's lock (writers meet at commit).
    let pids = DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true)));
    let no_pid = ScalarValue::try_from(&pids).expect("a list type has a typed NULL");
    ctx.register_udf(function("pg_blocking_pids", &[Int4], 1, pids, move |v| match v[0].is_null() {
        true => no_pid.clone(),
        false => ScalarValue::List(ScalarValue::new_list(&[], &DataType::Int32, true)),
    }));
    // `aclexplode(acl)`'s rows as a list (`pg_syntax` unnests it where it is called):
    // Tarn grants nothing yet (roles and grants come with governance), so every ACL
    // column is NULL and explodes to no rows.
    let acl_item = DataType::Struct(
        vec![
            Field::new("grantor", DataType::UInt32, true),
            Field::new("grantee", DataType::UInt32, true),
            Field::new("privilege_type", DataType::Utf8, true),
            Field::new("is_grantable", DataType::Boolean, true),
        ]
        .into(),
    );
    let acl_items = DataType::List(Arc::new(Field::new_list_field(acl_item.clone(), true)));
    ctx.register_udf(fallible("tarn_aclexplode", &[Any], 1, acl_items, move |v| {
        let empty = matches!(&v[0], ScalarValue::List(list) if list.is_empty() || list.value_length(0) == 0);
        if !v[0].is_null() && !empty {
            return Err(crate::error::EngineError::FeatureNotSupported {
                message: "aclexplode of a non-empty ACL is not supported (Tarn has no grants yet)".into(),
            }
            .into_datafusion());
        }
        Ok(ScalarValue::List(ScalarValue::new_list(&[], &acl_item, true)))
    }));
    ctx.register_udf(function("pg_relation_is_publishable", &[Oid], 1, DataType::Boolean, |v| {
        ScalarValue::Boolean(oid_arg(&v[0]).map(|_| false))
    }));
    // Privileges: the one role may do everything (grants come with governance).
    for name in [
        "has_table_privilege",
        "has_schema_privilege",
        "has_database_privilege",
        "has_column_privilege",
        "has_any_column_privilege",
        "has_function_privilege",
        "has_sequence_privilege",
        "has_type_privilege",
        "has_tablespace_privilege",
    ] {
        ctx.register_udf(function(name, &[Any, Any, Any, Any], 2, DataType::Boolean, |v| {
            ScalarValue::Boolean((!v.iter().any(ScalarValue::is_null)).then_some(true))
        }));
    }
    // Comments (`COMMENT ON`) of relations (`obj_description(oid, 'pg_class')`) and
    // their columns; Tarn keeps none of shared objects (databases, roles).
    for (name, args, of_column) in
        [("obj_description", &[Oid, Text][..], false), ("col_description", &[Oid, Int], true)]
    {
        let w = with.clone();
        ctx.register_udf(function(name, args, 1, utf8.clone(), move |v| {
            let Some(objoid) = oid_arg(&v[0]) else { return NULL_TEXT };
            let objsubid = if of_column { int_arg(v.get(1)) } else { Some(0) };
            let catalog = if of_column { None } else { v.get(1) };
            if catalog.is_some_and(|c| !matches!(c, ScalarValue::Utf8(Some(c)) if c == "pg_class")) {
                return NULL_TEXT;
            }
            w(
                &|warehouse| {
                    let found = relations::descriptions(warehouse)
                        .into_iter()
                        .find(|d| d.objoid == objoid && Some(i64::from(d.objsubid)) == objsubid);
                    found.map_or(NULL_TEXT, |d| text(d.text))
                },
                NULL_TEXT,
            )
        }));
    }
    ctx.register_udf(function("shobj_description", &[Oid, Text], 1, utf8.clone(), |_| NULL_TEXT));
    // Defaults and other expressions are kept as SQL text: `pg_get_expr` shows it.
    ctx.register_udf(function("pg_get_expr", &[Text, Oid, Bool], 2, utf8.clone(), |v| v[0].clone()));
    // Tarn's functions (`pg_proc`): their arguments and results as `\df` shows them.
    let tarn_function =
        |oid: u32| relations::FUNCTIONS.iter().find(|(name, ..)| relations::function_oid(name) == oid);
    for (name, of_arguments) in [
        ("pg_get_function_result", false),
        ("pg_get_function_arguments", true),
        ("pg_get_function_identity_arguments", true),
    ] {
        ctx.register_udf(function(name, &[Oid], 1, utf8.clone(), move |v| {
            match oid_arg(&v[0]).and_then(tarn_function) {
                Some((_, arguments, returns)) => text(if of_arguments { *arguments } else { *returns }),
                None => NULL_TEXT,
            }
        }));
    }
    // No partitions, views or extended statistics to describe yet.
    for (name, args) in [
        ("pg_get_partkeydef", &[Oid][..]),
        ("pg_get_viewdef", &[Oid, Bool][..]),
        ("pg_get_statisticsobjdef_columns", &[Oid][..]),
        ("pg_get_triggerdef", &[Oid, Bool][..]),
        ("pg_get_ruledef", &[Oid, Bool][..]),
    ] {
        ctx.register_udf(function(name, args, 1, utf8.clone(), |_| NULL_TEXT));
    }
    ctx.register_udf(function("pg_get_serial_sequence", &[Text, Text], 2, utf8.clone(), |_| NULL_TEXT));
    ctx.register_udf(function("pg_encoding_to_char", &[Int], 1, utf8.clone(), |v| {
        match int_arg(v.first()) {
            Some(6) => text("UTF8"),
            Some(0) => text("SQL_ASCII"),
            Some(_) => text(""),
            None => NULL_TEXT,
        }
    }));
    ctx.register_udf(function("pg_tablespace_location", &[Oid], 1, utf8.clone(), |_| text("")));
    ctx.register_udf(function("current_schemas", &[Bool], 1, list_of_text(), |v| {
        let names: &[&str] = match v[0] {
            ScalarValue::Boolean(Some(true)) => &["pg_catalog", crate::statements::ddl::DEFAULT_SCHEMA],
            ScalarValue::Boolean(Some(false)) => &[crate::statements::ddl::DEFAULT_SCHEMA],
            _ => return ScalarValue::try_from(&list_of_text()).expect("null list"),
        };
        let items: Vec<ScalarValue> = names.iter().map(|n| text(*n)).collect();
        ScalarValue::List(ScalarValue::new_list_nullable(&items, &DataType::Utf8))
    }));
    // Arrays are one-dimensional and start at 1.
    ctx.register_udf(function("array_upper", &[Any, Int], 2, DataType::Int32, |v| {
        ScalarValue::Int32(
            array_length(&v[0]).filter(|&n| n > 0 && int_arg(v.get(1)) == Some(1)).map(|n| n as i32),
        )
    }));
    ctx.register_udf(function("array_lower", &[Any, Int], 2, DataType::Int32, |v| {
        ScalarValue::Int32(array_length(&v[0]).filter(|&n| n > 0 && int_arg(v.get(1)) == Some(1)).map(|_| 1))
    }));
    // `information_schema._pg_expandarray(a)` is `unnest(tarn_expandarray(a))`
    // (`statements::pg_syntax`): each element `x` with its position `n`.
    ctx.register_udf(function("tarn_expandarray", &[Any], 1, expanded_array_type(), |v| {
        expand_array(&v[0])
            .unwrap_or_else(|| ScalarValue::try_from(&expanded_array_type()).expect("null list"))
    }));
    // `LIKE $1 ESCAPE '/'`: the pattern with backslash escapes (`statements::pg_syntax`).
    ctx.register_udf(function("tarn_like_escape", &[Text, Text], 2, utf8.clone(), |v| {
        match (&v[0], &v[1]) {
            (ScalarValue::Utf8(Some(pattern)), ScalarValue::Utf8(Some(escape))) => {
                match escape.chars().next() {
                    Some(e) => text(crate::statements::pg_syntax::with_backslash_escapes(pattern, e)),
                    None => text(pattern.clone()),
                }
            }
            _ => NULL_TEXT,
        }
    }));
    // SQLAlchemy reads identity options through it.
    ctx.register_udf(function("json_build_object", &[Any; 32], 0, utf8.clone(), |v| {
        let mut object = serde_json::Map::new();
        for pair in v.chunks(2) {
            let key = match &pair[0] {
                ScalarValue::Utf8(Some(k))
                | ScalarValue::Utf8View(Some(k))
                | ScalarValue::LargeUtf8(Some(k)) => k.clone(),
                other => other.to_string(),
            };
            object.insert(key, pair.get(1).map_or(serde_json::Value::Null, json_value));
        }
        text(serde_json::Value::Object(object).to_string())
    }));
    ctx.register_udf(function("pg_size_pretty", &[Int], 1, utf8.clone(), |v| {
        int_arg(v.first()).map_or(NULL_TEXT, |bytes| text(size_pretty(bytes)))
    }));
    ctx.register_udf(function("quote_ident", &[Text], 1, utf8.clone(), |v| match &v[0] {
        ScalarValue::Utf8(Some(s)) => text(quote_ident(s)),
        _ => NULL_TEXT,
    }));

    let w = with.clone();
    ctx.register_udf(function("pg_get_viewdef", &[Oid, Bool], 1, utf8.clone(), move |v| {
        let Some(oid) = oid_arg(&v[0]) else { return NULL_TEXT };
        w(
            &|warehouse| match relations::views(warehouse).into_iter().find(|view| view.oid == oid) {
                Some(view) => text(view.definition()),
                None => NULL_TEXT,
            },
            NULL_TEXT,
        )
    }));
    let w = with.clone();
    ctx.register_udf(function("pg_get_indexdef", &[Oid, Int, Bool], 1, utf8.clone(), move |v| {
        let Some(oid) = oid_arg(&v[0]) else { return NULL_TEXT };
        let column = int_arg(v.get(1)).unwrap_or(0);
        w(
            &|warehouse| {
                let Some((table, i)) = find_index(warehouse, oid) else { return NULL_TEXT };
                let index = &table.indexes[i];
                if column == 0 {
                    return text(index.definition(&table));
                }
                // The column-th key's name; '' past the last, as in Postgres.
                usize::try_from(column - 1)
                    .ok()
                    .and_then(|i| index.keys.get(i))
                    .and_then(|&key| usize::try_from(key - 1).ok())
                    .and_then(|i| table.def.schema.fields().get(i))
                    .map_or(text(""), |f| text(quote_ident(f.name())))
            },
            NULL_TEXT,
        )
    }));
    let w = with.clone();
    ctx.register_udf(function("pg_get_constraintdef", &[Oid, Bool], 1, utf8.clone(), move |v| {
        let Some(oid) = oid_arg(&v[0]) else { return NULL_TEXT };
        w(
            &|warehouse| {
                relations::tables(warehouse)
                    .iter()
                    .flat_map(|t| t.indexes.iter())
                    .find(|i| i.primary && i.constraint_oid() == oid)
                    .map_or(NULL_TEXT, |i| text(format!("PRIMARY KEY ({})", i.columns_sql)))
            },
            NULL_TEXT,
        )
    }));
    // `'items'::regclass` and back; `'public'::regnamespace` and back.
    let w = with.clone();
    ctx.register_udf(fallible("tarn_regclass", &[Text], 1, DataType::UInt32, move |v| {
        let ScalarValue::Utf8(Some(name)) = &v[0] else { return Ok(ScalarValue::UInt32(None)) };
        let found =
            w(&|warehouse| ScalarValue::UInt32(relation_by_name(warehouse, name)), ScalarValue::UInt32(None));
        match found {
            ScalarValue::UInt32(None) => {
                Err(crate::error::EngineError::Storage(tarn_storage::StorageError::TableNotFound {
                    name: tarn_storage::TableName::new(crate::statements::ddl::DEFAULT_SCHEMA, name.clone()),
                })
                .into_datafusion())
            }
            found => Ok(found),
        }
    }));
    let w = with.clone();
    ctx.register_udf(function("tarn_regclass_name", &[Oid], 1, utf8.clone(), move |v| {
        let Some(oid) = oid_arg(&v[0]) else { return NULL_TEXT };
        w(&|warehouse| text(relation_name(warehouse, oid).unwrap_or_else(|| oid.to_string())), NULL_TEXT)
    }));
    let w = with.clone();
    ctx.register_udf(fallible("tarn_regnamespace", &[Text], 1, DataType::UInt32, move |v| {
        let ScalarValue::Utf8(Some(name)) = &v[0] else { return Ok(ScalarValue::UInt32(None)) };
        let name = name.trim_matches('"');
        let exists = w(
            &|warehouse| ScalarValue::Boolean(Some(schema_names(warehouse).iter().any(|s| s == name))),
            ScalarValue::Boolean(Some(false)),
        );
        match exists {
            ScalarValue::Boolean(Some(true)) => Ok(ScalarValue::UInt32(Some(relations::namespace_oid(name)))),
            _ => Err(crate::error::EngineError::Storage(tarn_storage::StorageError::SchemaNotFound {
                name: name.to_string(),
            })
            .into_datafusion()),
        }
    }));
    let w = with.clone();
    ctx.register_udf(function("tarn_regnamespace_name", &[Oid], 1, utf8.clone(), move |v| {
        let Some(oid) = oid_arg(&v[0]) else { return NULL_TEXT };
        w(
            &|warehouse| {
                text(
                    schema_names(warehouse)
                        .into_iter()
                        .find(|s| relations::namespace_oid(s) == oid)
                        .unwrap_or_else(|| oid.to_string()),
                )
            },
            NULL_TEXT,
        )
    }));
    for name in ["pg_table_size", "pg_relation_size", "pg_total_relation_size", "pg_indexes_size"] {
        let w = with.clone();
        ctx.register_udf(function(name, &[Oid, Text], 1, DataType::Int64, move |v| {
            let Some(oid) = oid_arg(&v[0]) else { return ScalarValue::Int64(None) };
            w(
                &|warehouse| {
                    let tables = relations::tables(warehouse);
                    let table = tables.iter().find(|t| t.oid == oid);
                    let known =
                        table.is_some() || tables.iter().any(|t| t.indexes.iter().any(|i| i.oid == oid));
                    ScalarValue::Int64(known.then(|| table.map_or(0, |t| t.bytes as i64)))
                },
                ScalarValue::Int64(None),
            )
        }));
    }
}

/// The length of a list value; `None` for NULL or a value that is no list.
fn array_length(value: &ScalarValue) -> Option<usize> {
    match value {
        ScalarValue::List(list) if !list.is_null(0) => Some(list.value(0).len()),
        ScalarValue::LargeList(list) if !list.is_null(0) => Some(list.value(0).len()),
        ScalarValue::FixedSizeList(list) if !list.is_null(0) => Some(list.value(0).len()),
        _ => None,
    }
}

/// A value as JSON: numbers, booleans and NULL as themselves, the rest as text.
fn json_value(value: &ScalarValue) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        v if v.is_null() => J::Null,
        ScalarValue::Boolean(Some(b)) => J::Bool(*b),
        ScalarValue::Int8(Some(i)) => J::from(*i),
        ScalarValue::Int16(Some(i)) => J::from(*i),
        ScalarValue::Int32(Some(i)) => J::from(*i),
        ScalarValue::Int64(Some(i)) => J::from(*i),
        ScalarValue::UInt32(Some(i)) => J::from(*i),
        ScalarValue::UInt64(Some(i)) => J::from(*i),
        ScalarValue::Float32(Some(f)) => J::from(f64::from(*f)),
        ScalarValue::Float64(Some(f)) => J::from(*f),
        ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => {
            J::from(s.clone())
        }
        other => J::from(other.to_string()),
    }
}

/// `list<struct<x: bigint, n: int>>`.
fn expanded_array_type() -> DataType {
    let fields = vec![Field::new("x", DataType::Int64, true), Field::new("n", DataType::Int32, false)];
    DataType::List(Arc::new(Field::new("item", DataType::Struct(fields.into()), true)))
}

fn expand_array(value: &ScalarValue) -> Option<ScalarValue> {
    let ScalarValue::List(list) = value else { return None };
    if list.is_null(0) {
        return None;
    }
    let items = arrow::compute::cast(&list.value(0), &DataType::Int64).ok()?;
    let positions = arrow::array::Int32Array::from_iter_values(1..=items.len() as i32);
    let DataType::List(item) = expanded_array_type() else { unreachable!("a list") };
    let DataType::Struct(fields) = item.data_type() else { unreachable!("of structs") };
    let structs = arrow::array::StructArray::new(fields.clone(), vec![items, Arc::new(positions)], None);
    let list = arrow::array::ListArray::new(
        item,
        arrow::buffer::OffsetBuffer::from_lengths([structs.len()]),
        Arc::new(structs),
        None,
    );
    Some(ScalarValue::List(Arc::new(list)))
}

fn list_of_text() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// `pg_size_pretty`: bytes, kB, MB, GB, TB, rounding as Postgres does (a unit is
/// used from 10240 of the one below).
fn size_pretty(bytes: i64) -> String {
    let mut size = bytes;
    for unit in ["bytes", "kB", "MB", "GB", "TB"] {
        if size.abs() < 10 * 1024 || unit == "TB" {
            return format!("{size} {unit}");
        }
        size = (size + if size >= 0 { 512 } else { -512 }) / 1024;
    }
    unreachable!("TB is the last unit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_as_postgres_prints_them() {
        assert_eq!(size_pretty(0), "0 bytes");
        assert_eq!(size_pretty(8192), "8192 bytes");
        assert_eq!(size_pretty(10240), "10 kB");
        assert_eq!(size_pretty(1_000_000), "977 kB");
        assert_eq!(size_pretty(123_456_789), "118 MB");
    }

    #[test]
    fn qualified_names_split_as_postgres_splits_them() {
        let parts = |s: &str| name_parts(s).map(|p| p.join("|"));
        assert_eq!(parts("Items").as_deref(), Some("items"));
        assert_eq!(parts("public.items").as_deref(), Some("public|items"));
        assert_eq!(parts("\"public\" . \"Acc.T\"").as_deref(), Some("public|Acc.T"));
        assert_eq!(parts(" \"a\"\"b\" ").as_deref(), Some("a\"b"));
        assert_eq!(parts("a..b"), None);
        assert_eq!(parts("a b"), None);
        assert_eq!(parts("\"open"), None);
    }
}
