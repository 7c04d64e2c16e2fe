//! `tarn_find_tables(question [, k])`: the tables and views a natural-language question
//! is about, best first, each with a compact `CREATE TABLE` an LLM can write SQL from.
//!
//! Each relation is one catalog document: its name (split into words), its comment,
//! its columns' names, types and comments, and a few of its values (sampled once per
//! definition). The documents are ranked twice, by BM25 (an in-memory tantivy index,
//! English stemming and stop words) and by the cosine of their embedding with the
//! question's (`embed()`'s default model), and the two rankings are fused by reciprocal
//! rank, as `hybrid_search` fuses its branches, together with a ranking by each
//! relation's best-matching column (its own embedding). Last, the ranking is completed
//! along keys, as text-to-SQL schema linking does: a relation that joins two of the
//! best ones which do not join each other (`order_lines` between `refunds` and
//! `products`) is moved up beside them, and so are up to two fairly relevant relations
//! that share a key with the best two (`players` for trophies unlocked by players).
//! Documents and their embeddings are cached by relation and kept while its definition
//! (columns, types, comments) is unchanged, so a call after DDL sees the new catalog
//! and embeds only what changed.
//!
//! Output: `schema_name`, `table_name`, `score`, `ddl` (the columns that matter for
//! the question when a relation has many, with sample values as comments).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

use arrow::array::{AsArray, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionImpl};
use datafusion::common::{plan_err, Result as DfResult, ScalarValue};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tarn_models::{Models, DEFAULT_MODEL};
use tarn_storage::text_index::{TextColumn, TextIndexDef, Tokenizer};
use tarn_storage::{TableName, Warehouse};

use crate::error::EngineError;

/// Reciprocal-rank fusion's constant, as `hybrid_search` uses by default.
const RRF_K: f64 = 60.0;
/// Rows sampled per relation for its values.
const SAMPLE_ROWS: usize = 5;
/// Values shown per text column.
const SAMPLE_VALUES: usize = 3;
/// A relation with more columns shows its keys and the ones the question is about.
const DDL_COLUMNS: usize = 16;

/// One relation's catalog document.
#[derive(Debug, Clone)]
struct Document {
    name: TableName,
    /// What decides whether the cached document still holds: columns, types, comments.
    fingerprint: String,
    /// The text BM25 and the embedding read.
    text: String,
    columns: Vec<ColumnDoc>,
    comment: Option<String>,
    primary_key: Vec<String>,
    is_view: bool,
    vector: Vec<f32>,
    /// One embedding per column (`table column: comment, values`): a question about
    /// one column (`which departments...`) finds its table through it.
    column_vectors: Vec<Vec<f32>>,
}

#[derive(Debug, Clone)]
struct ColumnDoc {
    name: String,
    type_name: String,
    comment: Option<String>,
    samples: Vec<String>,
}

/// The function, registered once per engine; its cache outlives calls.
#[derive(Debug)]
pub struct FindTables {
    warehouse: Weak<Warehouse>,
    models: Arc<Models>,
    cache: Mutex<HashMap<TableName, Arc<Document>>>,
}

impl FindTables {
    pub fn new(warehouse: Weak<Warehouse>, models: Arc<Models>) -> Self {
        Self { warehouse, models, cache: Mutex::default() }
    }
}

/// The `FindTables` call as a table function.
#[derive(Debug)]
pub struct FindTablesFunction(pub Arc<FindTables>);

impl TableFunctionImpl for FindTablesFunction {
    fn call(&self, args: &[Expr]) -> DfResult<Arc<dyn TableProvider>> {
        let text = |e: &Expr| match e {
            Expr::Literal(ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v), _) => {
                Ok(v.clone())
            }
            Expr::Literal(ScalarValue::Null, _) => Ok(None),
            other => {
                plan_err!("tarn_find_tables: the question must be a constant or a parameter, not {other}")
            }
        };
        let (question, k) = match args {
            [question] => (text(question)?, 5),
            [question, Expr::Literal(k, _)] => {
                let k = match k {
                    ScalarValue::Int64(Some(k)) => *k,
                    ScalarValue::Int32(Some(k)) => i64::from(*k),
                    // A parameter while the statement is described, before its values.
                    k if k.is_null() => 5,
                    other => return plan_err!("tarn_find_tables: k must be an integer, not {other}"),
                };
                if !(1..=1000).contains(&k) {
                    return plan_err!("tarn_find_tables: k must be from 1 to 1000, not {k}");
                }
                (text(question)?, k as usize)
            }
            _ => return plan_err!("tarn_find_tables takes (question text [, k integer])"),
        };
        Ok(Arc::new(Ranking { owner: self.0.clone(), question: question.unwrap_or_default(), k }))
    }
}

/// One call's answer, computed when it is scanned.
#[derive(Debug)]
struct Ranking {
    owner: Arc<FindTables>,
    question: String,
    k: usize,
}

fn output_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("schema_name", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
        Field::new("ddl", DataType::Utf8, false),
    ]))
}

#[async_trait]
impl TableProvider for Ranking {
    fn schema(&self) -> SchemaRef {
        output_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let state = state
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| DataFusionError::Internal("tarn_find_tables needs a session state".into()))?;
        let documents = self.owner.documents(state).await?;
        let ranked = self.owner.rank(&documents, &self.question, self.k)?;
        let words = analyzed(&self.question);
        let batch = RecordBatch::try_new(
            output_schema(),
            vec![
                Arc::new(StringArray::from_iter_values(ranked.iter().map(|(d, _)| d.name.schema.as_str()))),
                Arc::new(StringArray::from_iter_values(ranked.iter().map(|(d, _)| d.name.table.as_str()))),
                Arc::new(Float64Array::from_iter_values(ranked.iter().map(|(_, s)| *s))),
                Arc::new(StringArray::from_iter_values(ranked.iter().map(|(d, _)| ddl(d, &words)))),
            ],
        )?;
        Ok(MemorySourceConfig::try_new_exec(&[vec![batch]], output_schema(), projection.cloned())?)
    }
}

impl FindTables {
    /// Every relation's document: cached ones whose definition is unchanged, the
    /// others made now (values sampled, all new texts embedded in one batch).
    async fn documents(&self, state: &SessionState) -> DfResult<Vec<Arc<Document>>> {
        let warehouse = self
            .warehouse
            .upgrade()
            .ok_or_else(|| DataFusionError::Internal("the warehouse is closed".into()))?;
        let mut current = Vec::new();
        for table in warehouse.all_tables() {
            let name = table.name();
            if crate::statements::temp::is_temp_schema(&name.schema) {
                continue;
            }
            let snapshot = table.snapshot();
            let def = snapshot.def();
            let comments = &def.comments;
            let columns = def
                .schema
                .fields()
                .iter()
                .map(|f| (f.clone(), comments.columns.get(f.name()).cloned()))
                .collect::<Vec<_>>();
            current.push((name, columns, comments.relation.clone(), def.primary_key.clone(), false));
        }
        for view in warehouse.all_views() {
            if crate::statements::temp::is_temp_schema(&view.name.schema) {
                continue;
            }
            let columns = view
                .schema
                .fields()
                .iter()
                .map(|f| (f.clone(), view.comments.columns.get(f.name()).cloned()))
                .collect::<Vec<_>>();
            current.push((view.name.clone(), columns, view.comments.relation.clone(), vec![], true));
        }
        let cached = self.cache.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut documents = Vec::new();
        let mut fresh = Vec::new();
        for (name, fields, comment, primary_key, is_view) in current {
            let columns: Vec<ColumnDoc> = fields
                .iter()
                .map(|(field, comment)| ColumnDoc {
                    name: field.name().clone(),
                    type_name: type_name(field),
                    comment: comment.clone(),
                    samples: vec![],
                })
                .collect();
            let fingerprint = format!(
                "{is_view}|{comment:?}|{primary_key:?}|{}",
                columns
                    .iter()
                    .map(|c| format!("{}:{}:{:?}", c.name, c.type_name, c.comment))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            match cached.get(&name) {
                Some(doc) if doc.fingerprint == fingerprint => documents.push(doc.clone()),
                _ => {
                    let mut columns = columns;
                    sample_values(state, &name, &mut columns).await;
                    let mut doc = Document {
                        name,
                        fingerprint,
                        text: String::new(),
                        columns,
                        comment,
                        primary_key,
                        is_view,
                        vector: vec![],
                        column_vectors: vec![],
                    };
                    doc.text = document_text(&doc);
                    fresh.push(doc);
                }
            }
        }
        if !fresh.is_empty() {
            let model =
                self.models.embedder(DEFAULT_MODEL).map_err(|e| EngineError::from(e).into_datafusion())?;
            let column_texts: Vec<Vec<String>> = fresh.iter().map(column_texts).collect();
            let mut texts: Vec<&str> = fresh.iter().map(|d| d.text.as_str()).collect();
            texts.extend(column_texts.iter().flatten().map(String::as_str));
            let vectors = model.embed(&texts).map_err(|e| EngineError::from(e).into_datafusion())?;
            let dims = model.dimensions();
            let mut next = fresh.len();
            for (i, doc) in fresh.iter_mut().enumerate() {
                doc.vector = vectors[i * dims..(i + 1) * dims].to_vec();
                for _ in &column_texts[i] {
                    doc.column_vectors.push(vectors[next * dims..(next + 1) * dims].to_vec());
                    next += 1;
                }
            }
        }
        let mut all: Vec<Arc<Document>> = documents;
        all.extend(fresh.into_iter().map(Arc::new));
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        *cache = all.iter().map(|d| (d.name.clone(), d.clone())).collect();
        all.sort_by(|a, b| (&a.name.schema, &a.name.table).cmp(&(&b.name.schema, &b.name.table)));
        Ok(all)
    }

    /// The best `k` documents for `question`, with their fused scores.
    fn rank(
        &self,
        documents: &[Arc<Document>],
        question: &str,
        k: usize,
    ) -> DfResult<Vec<(Arc<Document>, f64)>> {
        if documents.is_empty() || question.trim().is_empty() {
            return Ok(vec![]);
        }
        let mut scores = vec![0.0f64; documents.len()];
        for (rank, i) in bm25_order(documents, question)?.into_iter().enumerate() {
            scores[i] += 1.0 / (RRF_K + rank as f64 + 1.0);
        }
        let model =
            self.models.embedder(DEFAULT_MODEL).map_err(|e| EngineError::from(e).into_datafusion())?;
        let asked = model.embed(&[question]).map_err(|e| EngineError::from(e).into_datafusion())?;
        let cosine = |v: &[f32]| v.iter().zip(&asked).map(|(a, b)| a * b).sum::<f32>();
        // Two semantic rankings: by the relation's document, and by its best column.
        let relation: Vec<f32> = documents.iter().map(|d| cosine(&d.vector)).collect();
        let column: Vec<f32> = documents
            .iter()
            .map(|d| d.column_vectors.iter().map(|v| cosine(v)).fold(f32::MIN, f32::max))
            .collect();
        for similarity in [relation, column] {
            let mut order: Vec<usize> = (0..documents.len()).collect();
            order.sort_by(|&a, &b| similarity[b].total_cmp(&similarity[a]));
            for (rank, i) in order.into_iter().enumerate() {
                scores[i] += 1.0 / (RRF_K + rank as f64 + 1.0);
            }
        }
        complete_join_paths(documents, &mut scores);
        add_key_neighbours(documents, &mut scores);
        let order = best_first(&scores);
        Ok(order.into_iter().take(k).map(|i| (documents[i].clone(), scores[i])).collect())
    }
}

/// Indexes of `scores`, highest score first.
fn best_first(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}

/// How many of the best relations a join path is completed between.
const JOIN_PATH_TOP: usize = 3;

/// Join-path completion, as text-to-SQL schema linking does it: a question about two
/// relations that do not join directly needs the one between them (refunds and
/// products meet in order lines). A relation that shares a key column with at least
/// two of the best [`JOIN_PATH_TOP`] (a column that is one side's primary key, or an
/// `_id` column both have) is raised to just under the weaker of them.
fn complete_join_paths(documents: &[Arc<Document>], scores: &mut [f64]) {
    let order = best_first(scores);
    let best: Vec<usize> = order.iter().copied().take(JOIN_PATH_TOP).collect();
    let joins = |a: &Document, b: &Document| {
        a.columns.iter().any(|c| {
            b.columns.iter().any(|d| d.name == c.name)
                && (a.primary_key == [c.name.clone()]
                    || b.primary_key == [c.name.clone()]
                    || c.name.ends_with("_id"))
        })
    };
    let mut raised = Vec::new();
    for &candidate in order.iter().skip(JOIN_PATH_TOP) {
        let linked: Vec<usize> =
            best.iter().copied().filter(|&b| joins(&documents[candidate], &documents[b])).collect();
        if linked.len() < 2 {
            continue;
        }
        // The pair it links that do not join each other directly.
        let bridges = linked
            .iter()
            .enumerate()
            .any(|(i, &a)| linked[i + 1..].iter().any(|&b| !joins(&documents[a], &documents[b])));
        if bridges {
            let weaker = linked.iter().map(|&b| scores[b]).fold(f64::MAX, f64::min);
            raised.push((candidate, weaker * 0.999));
        }
    }
    for (candidate, score) in raised {
        scores[candidate] = scores[candidate].max(score);
    }
}

/// How many of the best relations lend their key neighbours a place beside them.
const NEIGHBOUR_TOP: usize = 2;
/// How far down the ranking a key neighbour may come from.
const NEIGHBOUR_DEPTH: usize = 15;
/// The most neighbours raised.
const NEIGHBOURS: usize = 2;

/// Key-neighbour completion, the other half of schema linking: a question names the
/// facts and leaves a dimension implied ("which players" of the trophies unlocked, the
/// products of the items returned), or the reverse (a header's lines). A relation
/// relevant on its own (among the best [`NEIGHBOUR_DEPTH`]) that shares a key with one
/// of the best [`NEIGHBOUR_TOP`] (one of them has a column naming the other's
/// single-column primary key, or ending in it: `reward_item_id` for `item_id`) is
/// raised to just under them, at most [`NEIGHBOURS`] of them, in their own order.
fn add_key_neighbours(documents: &[Arc<Document>], scores: &mut [f64]) {
    let order = best_first(scores);
    let best = &order[..NEIGHBOUR_TOP.min(order.len())];
    let Some(floor) = best.iter().map(|&b| scores[b]).reduce(f64::min) else { return };
    let linked = |a: &Document, b: &Document| references(a, b) || references(b, a);
    let neighbours: Vec<usize> = order
        .iter()
        .copied()
        .take(NEIGHBOUR_DEPTH)
        .skip(NEIGHBOUR_TOP)
        .filter(|&c| best.iter().any(|&b| linked(&documents[b], &documents[c])))
        .take(NEIGHBOURS)
        .collect();
    for (i, c) in neighbours.into_iter().enumerate() {
        scores[c] = scores[c].max(floor * (0.998 - 0.0001 * i as f64));
    }
}

/// Whether `a` has a column naming `b`'s single-column primary key (`player_id`) or
/// ending in it (`reward_item_id` for `item_id`).
fn references(a: &Document, b: &Document) -> bool {
    let [key] = b.primary_key.as_slice() else { return false };
    let suffix = format!("_{key}");
    a.name != b.name && a.columns.iter().any(|c| c.name == *key || c.name.ends_with(&suffix))
}

/// A text per column for its embedding: the relation's and the column's name in
/// words, its comment and sample values.
fn column_texts(doc: &Document) -> Vec<String> {
    let table = words_of(&doc.name.table);
    doc.columns
        .iter()
        .map(|c| {
            let mut text = format!("{table} {}", words_of(&c.name));
            // A bare column (`v`, no comment, no values) says what it holds only
            // through its relation's comment.
            if let (None, true, Some(comment)) = (&c.comment, c.samples.is_empty(), &doc.comment) {
                let short: String = comment.chars().take(120).collect();
                text.push_str(&format!(" of {short}"));
            }
            if let Some(comment) = &c.comment {
                text.push_str(&format!(": {comment}"));
            }
            if !c.samples.is_empty() {
                text.push_str(&format!(" (e.g. {})", c.samples.join(", ")));
            }
            text
        })
        .collect()
}

/// The analyzer catalog documents and questions share: words, lower case, English
/// stop words out, English stems.
fn analyzer_spec() -> Tokenizer {
    Tokenizer { stemmer: Some("english".into()), stopwords: Some("english".into()), ..Tokenizer::default() }
}

/// Indexes of `documents` in BM25 order for `question`; those without a matching
/// word are left out.
fn bm25_order(documents: &[Arc<Document>], question: &str) -> DfResult<Vec<usize>> {
    let external = |e: tarn_storage::StorageError| DataFusionError::External(Box::new(e));
    let def = TextIndexDef {
        name: "tarn_find_tables".into(),
        columns: vec![TextColumn::new("doc".into(), analyzer_spec())],
        segments: vec![],
    };
    let schema = Arc::new(Schema::new(vec![Field::new("doc", DataType::Utf8, false)]));
    let texts = StringArray::from_iter_values(documents.iter().map(|d| d.text.as_str()));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(texts)])?;
    let index = def.index_rows(&[batch]).map_err(external)?;
    let field = index
        .schema()
        .get_field(def.columns[0].field())
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let (query, _) = QueryParser::for_index(&index, vec![field]).parse_query_lenient(&query_words(question));
    let searcher = index.reader().map_err(|e| DataFusionError::External(Box::new(e)))?.searcher();
    let hits = searcher
        .search(&query, &TopDocs::with_limit(documents.len()).order_by_score())
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    Ok(hits.into_iter().map(|(_, address)| address.doc_id as usize).collect())
}

/// The question as plain words for tantivy's query parser (its syntax characters
/// would otherwise be read as operators).
fn query_words(question: &str) -> String {
    question.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

/// `text`'s terms as the catalog's text index analyzes them (a question's terms pick
/// the columns a long DDL keeps).
fn analyzed(text: &str) -> HashSet<String> {
    let mut words = HashSet::new();
    if let Ok(mut analyzer) = analyzer_spec().analyzer() {
        let mut stream = analyzer.token_stream(text);
        while stream.advance() {
            words.insert(stream.token().text.clone());
        }
    }
    words
}

/// `snake_case` and `camelCase` names as words.
fn words_of(identifier: &str) -> String {
    let mut out = String::new();
    let mut previous_lower = false;
    for c in identifier.chars() {
        if c == '_' || c == '-' || c == '.' {
            out.push(' ');
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower {
            out.push(' ');
        }
        previous_lower = c.is_lowercase();
        out.extend(c.to_lowercase());
    }
    out
}

/// The document's text: what a person would read to tell what the relation holds.
fn document_text(doc: &Document) -> String {
    let mut text = format!("{}.", words_of(&doc.name.table));
    if let Some(comment) = &doc.comment {
        text.push(' ');
        text.push_str(comment.trim_end_matches('.'));
        text.push('.');
    }
    let columns: Vec<String> = doc
        .columns
        .iter()
        .map(|c| match &c.comment {
            Some(comment) => format!("{} ({comment})", words_of(&c.name)),
            None => words_of(&c.name),
        })
        .collect();
    text.push_str(&format!(" Columns: {}.", columns.join(", ")));
    let samples: Vec<&str> = doc.columns.iter().flat_map(|c| c.samples.iter().map(String::as_str)).collect();
    if !samples.is_empty() {
        text.push_str(&format!(" Values: {}.", samples.join(", ")));
    }
    text
}

/// A few distinct values of each text column, from the relation's first rows, in
/// sorted order; none when it cannot be read (the document stands without them). One
/// partition reads the rows and the values are sorted, so a document (and the ranking
/// its embedding gives) does not depend on which partition's rows came first.
async fn sample_values(state: &SessionState, name: &TableName, columns: &mut [ColumnDoc]) {
    let quoted = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let sql = format!("SELECT * FROM {}.{} LIMIT {SAMPLE_ROWS}", quoted(&name.schema), quoted(&name.table));
    let mut state = state.clone();
    state.config_mut().options_mut().execution.target_partitions = 1;
    let ctx = SessionContext::new_with_state(state);
    let batches = match ctx.sql(&sql).await {
        Ok(frame) => frame.collect().await,
        Err(e) => Err(e),
    };
    let Ok(batches) = batches else { return };
    for batch in batches {
        for column in columns.iter_mut() {
            let Ok(index) = batch.schema().index_of(&column.name) else { continue };
            let array = batch.column(index);
            let Some(values) = array.as_string_opt::<i32>() else { continue };
            for value in values.iter().flatten() {
                let value = value.trim();
                if column.samples.len() < SAMPLE_VALUES
                    && !value.is_empty()
                    && value.len() <= 40
                    && !column.samples.iter().any(|s| s == value)
                {
                    column.samples.push(value.to_string());
                }
            }
        }
    }
    for column in columns.iter_mut() {
        column.samples.sort();
    }
}

fn type_name(field: &Field) -> String {
    let pg = crate::types::pg_type_of(field);
    crate::catalog::pg_catalog::types::format_type(pg.oid, Some(crate::types::type_modifier(field)))
        .unwrap_or_else(|| pg.name.to_string())
}

/// A compact `CREATE TABLE` (or `VIEW`) for a prompt: the relation's comment, its
/// columns (at most [`DDL_COLUMNS`]: keys first, then those the question names),
/// their comments and sample values.
fn ddl(doc: &Document, question: &HashSet<String>) -> String {
    let keep: Vec<&ColumnDoc> = if doc.columns.len() <= DDL_COLUMNS {
        doc.columns.iter().collect()
    } else {
        let relevant = |c: &ColumnDoc| {
            let text = format!("{} {}", words_of(&c.name), c.comment.as_deref().unwrap_or(""));
            analyzed(&text).intersection(question).count()
        };
        let mut chosen: Vec<usize> =
            (0..doc.columns.len()).filter(|&i| doc.primary_key.contains(&doc.columns[i].name)).collect();
        let mut rest: Vec<usize> = (0..doc.columns.len()).filter(|i| !chosen.contains(i)).collect();
        rest.sort_by_key(|&i| std::cmp::Reverse(relevant(&doc.columns[i])));
        chosen.extend(rest.into_iter().take(DDL_COLUMNS.saturating_sub(chosen.len())));
        chosen.sort();
        chosen.into_iter().map(|i| &doc.columns[i]).collect()
    };
    let mut out = String::new();
    if let Some(comment) = &doc.comment {
        out.push_str(&format!("-- {comment}\n"));
    }
    let kind = if doc.is_view { "VIEW" } else { "TABLE" };
    out.push_str(&format!("CREATE {kind} {} (\n", doc.name));
    for (i, column) in keep.iter().enumerate() {
        let key = if doc.primary_key == [column.name.clone()] { " PRIMARY KEY" } else { "" };
        let comma = if i + 1 < keep.len() || doc.primary_key.len() > 1 { "," } else { "" };
        out.push_str(&format!("  {} {}{key}{comma}", column.name, column.type_name));
        let mut notes = Vec::new();
        if let Some(comment) = &column.comment {
            notes.push(comment.clone());
        }
        if !column.samples.is_empty() {
            let samples: Vec<String> =
                column.samples.iter().map(|s| format!("'{}'", s.replace('\'', "''"))).collect();
            notes.push(format!("e.g. {}", samples.join(", ")));
        }
        if !notes.is_empty() {
            out.push_str(&format!(" -- {}", notes.join("; ")));
        }
        out.push('\n');
    }
    if doc.primary_key.len() > 1 {
        out.push_str(&format!("  PRIMARY KEY ({})\n", doc.primary_key.join(", ")));
    }
    if keep.len() < doc.columns.len() {
        out.push_str(&format!("  -- and {} more columns\n", doc.columns.len() - keep.len()));
    }
    out.push_str(");");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_become_words() {
        assert_eq!(words_of("plyr_sess"), "plyr sess");
        assert_eq!(words_of("orderLines"), "order lines");
        assert_eq!(query_words("who's top? (by gems)"), "who s top by gems");
    }
}
