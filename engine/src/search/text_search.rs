//! Runs a [`Bm25Node`]: one search of a bm25 index over everything a snapshot holds.
//!
//! The rows a snapshot reads are in three kinds of tantivy segment, searched as one
//! index with one set of BM25 statistics (summed over them all, so a row's score does
//! not depend on where its row is, nor on whether `VACUUM` has run):
//!
//! - the index's own segments, memory-mapped, opened once each (they never change);
//! - base fragments no segment covers yet (rows a table without a primary key appended
//!   since its last `VACUUM`), indexed in memory once per fragment;
//! - the change store's rows (a primary-key table's writes not yet compacted), indexed
//!   in memory once per bucket and bucket version: a commit is searchable by the next
//!   statement, and a query never tokenizes rows.
//!
//! Base rows that changes replaced or deleted (the deletion vectors) never match, nor do
//! rows the other filters reject: both are checked inside tantivy's top-k loop before a
//! document can raise the threshold, so a top-k search returns k rows whenever k rows
//! qualify, with no over-fetching and no retry. The filters become an allow set of base
//! row addresses (cached per base version and filter) and a mask per change bucket.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, Float32Array, RecordBatch, RecordBatchOptions};
use arrow::compute::interleave_record_batch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::TableProvider;
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{LogicalPlan, UserDefinedLogicalNode};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{ExtensionPlanner, PhysicalPlanner};
use futures::TryStreamExt;
use lance::Dataset;
use roaring::RoaringTreemap;
use tantivy::query::{BooleanQuery, BoostQuery, EnableScoring, Occur, Query, QueryParser, Weight};
use tantivy::query_grammar::{Delimiter, UserInputAst, UserInputLeaf};
use tantivy::schema::Field;
use tantivy::snippet::SnippetGenerator;
use tantivy::{DocId, DocSet, Index, Score, Searcher, Term as TantivyTerm, TERMINATED};
use tarn_storage::key::{Key, KeyCodec};
use tarn_storage::table::BaseSnapshot;
use tarn_storage::text_index::{self, TextIndexDef, TextSegment};

use crate::catalog::provider::{unqualify, AsOfTable, TarnTable};
use crate::error::EngineError;
use crate::search::base_cache::{self, PerBase};
use crate::search::bm25::{internal, Bm25Node, Snippet, Term};
use crate::search::one_batch::{OneBatchExec, Search};

/// Plans [`Bm25Node`]s.
#[derive(Debug, Default)]
pub struct Bm25Planner;

#[async_trait]
impl ExtensionPlanner for Bm25Planner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        _physical_inputs: &[Arc<dyn ExecutionPlan>],
        state: &SessionState,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let Some(node) = node.as_any().downcast_ref::<Bm25Node>() else { return Ok(None) };
        let node = &node.bound(state)?;
        let mut provider = node.table()?;
        // `AS OF VERSION`: the table pinned at the version.
        if let Some(as_of) = provider.downcast_ref::<AsOfTable>() {
            let pinned: Arc<dyn TableProvider> = Arc::new(as_of.pinned().await?);
            provider = pinned;
        }
        let table =
            provider.downcast_ref::<TarnTable>().ok_or_else(|| internal("a search of a table not Tarn's"))?;
        let snapshot = table.snapshot();
        if !matches!(snapshot.base, BaseSnapshot::Lance(_)) {
            return Err(
                EngineError::unsupported("bm25 indexes need a table stored as lance").into_datafusion()
            );
        }
        let mut terms = node.scores.clone();
        terms.extend(node.snippets.iter().map(|s| s.term.clone()));
        let index = index_for(&snapshot.manifest.text_indexes, &node.matches, &terms)?;
        let parsed = ParsedIndex::of(&index)?;
        // Malformed queries fail here, before anything is read.
        for term in node.matches.iter().chain(&node.scores).chain(node.snippets.iter().map(|s| &s.term)) {
            parsed.parse(term)?;
        }
        let schema = table.schema();
        let filter_expr = conjunction(node.filters.iter().cloned().map(unqualify));
        let filter = match &filter_expr {
            Some(f) => {
                let table_df = DFSchema::try_from(schema.as_ref().clone())?;
                Some(state.create_physical_expr(f.clone(), &table_df)?)
            }
            None => None,
        };
        let mut filter_columns: Vec<usize> = Vec::new();
        for f in &node.filters {
            for c in f.column_refs() {
                let i = schema.index_of(&c.name)?;
                if !filter_columns.contains(&i) {
                    filter_columns.push(i);
                }
            }
        }
        filter_columns.sort_unstable();
        let masks = table.masks().to_vec();
        let search = Arc::new(OneBatchExec::new(TextSearch {
            table: provider.clone(),
            index: Arc::new(index),
            parsed,
            matches: node.matches.clone(),
            scores: node.scores.clone(),
            snippets: node.snippets.clone(),
            top_k: node.top_k,
            filter_text: filter_expr.as_ref().map(|f| f.to_string()),
            filter_expr,
            filter,
            filter_columns,
            output: node.projection(schema.fields().len()),
            output_schema: node.output_schema(),
        }));
        // Masked columns read masked here too (a search over one is refused when planned).
        Ok(Some(crate::access::masking::mask_output(search, &masks)?))
    }
}

/// The one index that covers every term's column.
fn index_for(indexes: &[TextIndexDef], matches: &[Term], scores: &[Term]) -> DfResult<TextIndexDef> {
    let terms: Vec<&Term> = matches.iter().chain(scores).collect();
    let covers = |def: &TextIndexDef, column: &str| def.columns.iter().any(|c| c.name == column);
    if let Some(def) = indexes.iter().find(|d| terms.iter().all(|t| covers(d, &t.column))) {
        return Ok(def.clone());
    }
    let missing = terms.iter().find(|t| !indexes.iter().any(|d| covers(d, &t.column)));
    Err(match missing {
        Some(term) => EngineError::UndefinedObject {
            message: format!(
                "column \"{}\" has no bm25 index (CREATE INDEX ... USING bm25 ({}))",
                term.column, term.column
            ),
        },
        None => EngineError::unsupported("the columns of one search must be in one bm25 index"),
    }
    .into_datafusion())
}

/// An index's schema and analyzers, for parsing queries; cached per definition.
#[derive(Clone)]
struct ParsedIndex {
    index: Index,
    columns: Vec<tarn_storage::text_index::TextColumn>,
}

impl fmt::Debug for ParsedIndex {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("ParsedIndex")
    }
}

static PARSERS: PerBase<ParsedIndex, Vec<tarn_storage::text_index::TextColumn>> = PerBase::new(32);

impl ParsedIndex {
    fn of(def: &TextIndexDef) -> DfResult<Self> {
        if let Some(parsed) = PARSERS.get(&def.columns) {
            return Ok(parsed);
        }
        let parsed =
            ParsedIndex { index: def.in_memory().map_err(storage_error)?, columns: def.columns.clone() };
        PARSERS.put(def.columns.clone(), parsed.clone());
        Ok(parsed)
    }

    /// The tantivy field of an indexed column (its name when the index was made).
    fn field(&self, column: &str) -> DfResult<Field> {
        self.field_of(column).map_err(|e| internal(&e))
    }

    fn field_of(&self, column: &str) -> Result<Field, String> {
        self.index.schema().get_field(self.field_name(column)).map_err(|e| e.to_string())
    }

    fn field_name<'a>(&'a self, column: &'a str) -> &'a str {
        self.columns.iter().find(|c| c.name == column).map_or(column, |c| c.field())
    }

    /// `term`'s query in tantivy's language, over its column by default (other columns
    /// of the index by `column:word`).
    fn parse(&self, term: &Term) -> DfResult<Box<dyn Query>> {
        let field = self.field(&term.column)?;
        let parser = QueryParser::for_index(&self.index, vec![field]);
        let text = term.query.text()?;
        let ast = tantivy::query_grammar::parse_query(text).map_err(|_| {
            query_error(
                text,
                "the query is not in the query language (terms, \"phrases\", AND, OR, NOT, +, -, \
                 field:term, term*, term~1, term^2)",
            )
        })?;
        self.build(&parser, field, ast).map_err(|e| query_error(text, &e))
    }

    /// The query of `ast`, by tantivy's parser but for two forms its grammar keeps as
    /// part of a bare word: `word*` matches the words it starts, and `word~n` the words
    /// within `n` edits (at most 2).
    fn build(&self, parser: &QueryParser, field: Field, ast: UserInputAst) -> Result<Box<dyn Query>, String> {
        match ast {
            UserInputAst::Leaf(leaf) => match *leaf {
                UserInputLeaf::Literal(mut literal) => {
                    // `column:word`: the column's field.
                    if let Some(name) = &mut literal.field_name {
                        *name = self.field_name(name).to_string();
                    }
                    let field = match &literal.field_name {
                        Some(name) => self.index.schema().get_field(name).map_err(|e| e.to_string())?,
                        None => field,
                    };
                    if literal.delimiter != Delimiter::None {
                        let leaf = UserInputAst::Leaf(Box::new(UserInputLeaf::Literal(literal)));
                        return parser.build_query_from_user_input_ast(leaf).map_err(|e| e.to_string());
                    }
                    if let Some(word) = literal.phrase.strip_suffix('*').filter(|w| !w.is_empty()) {
                        return self.prefix(field, word);
                    }
                    let fuzzy = literal.phrase.rsplit_once('~').and_then(|(word, n)| {
                        (!word.is_empty()).then_some(())?;
                        Some((word, n.parse::<u8>().ok()?))
                    });
                    if let Some((word, distance)) = fuzzy {
                        return self.fuzzy(field, word, distance.min(2));
                    }
                    let leaf = UserInputAst::Leaf(Box::new(UserInputLeaf::Literal(literal)));
                    parser.build_query_from_user_input_ast(leaf).map_err(|e| e.to_string())
                }
                other => parser
                    .build_query_from_user_input_ast(UserInputAst::Leaf(Box::new(other)))
                    .map_err(|e| e.to_string()),
            },
            UserInputAst::Clause(clauses) => {
                let mut built: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(clauses.len());
                for (occur, ast) in clauses {
                    built.push((occur.unwrap_or(Occur::Should), self.build(parser, field, ast)?));
                }
                if built.iter().all(|(occur, _)| *occur == Occur::MustNot) {
                    // `NOT x` alone: everything but x.
                    built.push((Occur::Must, Box::new(tantivy::query::AllQuery)));
                }
                Ok(Box::new(BooleanQuery::new(built)))
            }
            UserInputAst::Boost(ast, boost) => {
                Ok(Box::new(BoostQuery::new(self.build(parser, field, *ast)?, boost.into_inner() as Score)))
            }
        }
    }

    /// The terms of `text` by `field`'s analyzer.
    fn terms(&self, field: Field, text: &str) -> Result<Vec<TantivyTerm>, String> {
        let mut analyzer = self.index.tokenizer_for_field(field).map_err(|e| e.to_string())?;
        let mut stream = analyzer.token_stream(text);
        let mut terms = Vec::new();
        while let Some(token) = stream.next() {
            terms.push(TantivyTerm::from_field_text(field, &token.text));
        }
        Ok(terms)
    }

    /// `word*`: documents with a word that starts with the word's last term (after the
    /// terms before it, as a phrase, when it has several).
    fn prefix(&self, field: Field, word: &str) -> Result<Box<dyn Query>, String> {
        let terms = self.terms(field, word)?;
        if terms.is_empty() {
            return Ok(Box::new(BooleanQuery::new(Vec::new())));
        }
        let mut query = tantivy::query::PhrasePrefixQuery::new(terms);
        // tantivy expands the first 50 words in lexical order by default.
        query.set_max_expansions(MAX_PREFIX_EXPANSIONS);
        Ok(Box::new(query))
    }

    /// `word~n`: the terms within `distance` edits of the word's first term.
    fn fuzzy(&self, field: Field, word: &str, distance: u8) -> Result<Box<dyn Query>, String> {
        let Some(term) = self.terms(field, word)?.into_iter().next() else {
            return Ok(Box::new(BooleanQuery::new(Vec::new())));
        };
        Ok(Box::new(tantivy::query::FuzzyTermQuery::new(term, distance, true)))
    }
}

/// Words a `word*` query matches at most.
const MAX_PREFIX_EXPANSIONS: u32 = 10_000;

fn query_error(query: &str, message: &str) -> DataFusionError {
    EngineError::Syntax { message: format!("invalid full-text query {query:?}: {message}") }.into_datafusion()
}

fn storage_error(e: tarn_storage::StorageError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Everything a search needs at run time.
#[derive(Debug, Clone)]
struct TextSearch {
    table: Arc<dyn TableProvider>,
    index: Arc<TextIndexDef>,
    parsed: ParsedIndex,
    matches: Vec<Term>,
    scores: Vec<Term>,
    snippets: Vec<Snippet>,
    top_k: Option<(usize, usize)>,
    /// The other filters (unqualified), for caching their allow sets, and as a physical
    /// expression over the table's schema.
    filter_text: Option<String>,
    /// The same, for Lance's scanner (which answers what it can from scalar indexes).
    filter_expr: Option<datafusion::logical_expr::Expr>,
    filter: Option<Arc<dyn PhysicalExpr>>,
    /// The table columns the filters read.
    filter_columns: Vec<usize>,
    /// Table columns output (the score columns follow).
    output: Vec<usize>,
    output_schema: SchemaRef,
}

/// Where a segment's documents are.
#[derive(Clone)]
enum Rows {
    /// Base rows: a document's row address follows from the runs.
    Base(Arc<TextSegment>),
    /// Rows in memory (a change bucket's view, or the transaction's own writes), in
    /// the table's schema: document `i` is row `i`.
    Memory(RecordBatch),
}

/// A segment searched, with where its rows are and which of them may match.
struct Part {
    searcher: Searcher,
    rows: Rows,
    /// Rows in memory only: which pass the filters and are not replaced by the
    /// transaction's own writes.
    passing: Option<BooleanArray>,
}

/// A document found: its part, its id there, its score by the search.
#[derive(Debug, Clone, Copy)]
struct Hit {
    part: usize,
    doc: DocId,
    score: Score,
}

/// Opened segments of the indexes, by table and segment id (segments never change).
static SEGMENTS: PerBase<Searcher, (u64, String)> = PerBase::new(64);
/// Base fragments indexed in memory, by table, index and fragment.
static FRAGMENTS: PerBase<(Searcher, Arc<TextSegment>), (u64, String, u64)> = PerBase::new(256);
/// Change buckets indexed in memory, with their rows in the table's schema, by table,
/// epoch (its `folded_seq`), bucket, the bucket's version and index.
static CHANGES: PerBase<(Searcher, RecordBatch), (u64, u64, usize, u64, String)> = PerBase::new(256);
/// Base rows passing a search's filters, by base version and filter (a parameter in
/// the filter makes one per value: room for a hundred or so).
static ALLOWED: PerBase<Arc<RoaringTreemap>, (u64, u64, String)> = PerBase::new(128);
/// Rows Lance's deletion files delete, per base version (tables without a key).
static LANCE_DELETED: PerBase<Arc<RoaringTreemap>> = PerBase::new(8);

fn searcher_of(index: &Index) -> DfResult<Searcher> {
    let reader = index
        .reader_builder()
        .reload_policy(tantivy::ReloadPolicy::Manual)
        .try_into()
        .map_err(|e: tantivy::TantivyError| internal(&e.to_string()))?;
    Ok(reader.searcher())
}

fn tantivy_error(e: tantivy::TantivyError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// BM25 statistics over every part: one view of the whole table.
struct Statistics<'a>(&'a [Part]);

impl tantivy::query::Bm25StatisticsProvider for Statistics<'_> {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        let mut total = 0;
        for part in self.0 {
            for reader in part.searcher.segment_readers() {
                total += reader.inverted_index(field)?.total_num_tokens();
            }
        }
        Ok(total)
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.0.iter().map(|p| p.searcher.num_docs()).sum())
    }

    fn doc_freq(&self, term: &TantivyTerm) -> tantivy::Result<u64> {
        let mut total = 0;
        for part in self.0 {
            total += part.searcher.doc_freq(term)?;
        }
        Ok(total)
    }
}

impl TextSearch {
    fn tarn(&self) -> &TarnTable {
        self.table.downcast_ref::<TarnTable>().expect("checked when planned")
    }

    async fn search(self) -> DfResult<RecordBatch> {
        let started = std::time::Instant::now();
        let table = self.tarn();
        let snapshot = table.snapshot().clone();
        let BaseSnapshot::Lance(ds) = &snapshot.base else {
            return Err(internal("a base that is not lance"));
        };
        let table_id = snapshot.manifest.table_id;
        let schema = table.schema();

        // The parts, and what of the base is dead.
        let mut parts: Vec<Part> = Vec::new();
        for segment in &self.index.segments {
            let key = (table_id, segment.id.clone());
            let searcher = match SEGMENTS.get(&key) {
                Some(searcher) => searcher,
                None => {
                    let index = text_index::open_segment(table.table(), &self.index, segment)
                        .await
                        .map_err(storage_error)?;
                    let searcher = searcher_of(&index)?;
                    SEGMENTS.put(key, searcher.clone());
                    searcher
                }
            };
            parts.push(Part { searcher, rows: Rows::Base(Arc::new(segment.clone())), passing: None });
        }
        for fragment in text_index::uncovered_fragments(ds, &self.index) {
            let key = (table_id, self.index.name.clone(), fragment);
            let (searcher, segment) = match FRAGMENTS.get(&key) {
                Some(found) => found,
                None => {
                    let indexed = text_index::index_fragments(ds, &self.index, &[fragment])
                        .await
                        .map_err(storage_error)?;
                    let segment = Arc::new(TextSegment {
                        id: format!("fragment-{fragment}"),
                        runs: indexed.runs,
                        docs: indexed.docs,
                    });
                    let found = (searcher_of(&indexed.index)?, segment);
                    FRAGMENTS.put(key, found.clone());
                    found
                }
            };
            parts.push(Part { searcher, rows: Rows::Base(segment), passing: None });
        }
        let mut dead = RoaringTreemap::new();
        // The transaction's own writes hide the committed rows of the keys they wrote.
        let overlay = table.overlay();
        let hidden = match (overlay, table.table().key_codec(), &snapshot.changes) {
            (Some(overlay), Some(codec), Some(epoch)) if !overlay.keys.is_empty() => {
                dead.extend(overlay.keys.keys().filter_map(|key| epoch.base_keys.map.get(key).copied()));
                Some((&overlay.keys, codec))
            }
            _ => None,
        };
        match &snapshot.changes {
            Some(epoch) => {
                dead |= epoch.base_keys.deleted.as_ref();
                for bucket in 0..epoch.bucket_count() {
                    let view = epoch.view(bucket, snapshot.seq).map_err(storage_error)?;
                    dead |= &view.deleted;
                    let Some(rows) = &view.rows else { continue };
                    let version = epoch.bucket_seq(bucket, snapshot.seq);
                    let key = (table_id, epoch.folded_seq, bucket, version, self.index.name.clone());
                    let (searcher, rows) = match CHANGES.get(&key) {
                        Some(found) => found,
                        None => {
                            let index =
                                self.index.index_rows(std::slice::from_ref(rows)).map_err(storage_error)?;
                            let found = (searcher_of(&index)?, in_table_schema(rows, &schema)?);
                            CHANGES.put(key, found.clone());
                            found
                        }
                    };
                    let passing = self.passing(&rows, hidden)?;
                    parts.push(Part { searcher, rows: Rows::Memory(rows), passing });
                }
            }
            None => {
                let key = (table_id, ds.version().version);
                let deleted = match LANCE_DELETED.get(&key) {
                    Some(deleted) => deleted,
                    None => {
                        let deleted = Arc::new(text_index::lance_deleted(ds).await.map_err(storage_error)?);
                        LANCE_DELETED.put(key, deleted.clone());
                        deleted
                    }
                };
                dead |= deleted.as_ref();
            }
        }
        if let Some(rows) = overlay.and_then(|o| o.rows.as_ref()) {
            // Indexed per statement: a transaction's writes are few and short-lived.
            let rows = in_table_schema(rows, &schema)?;
            let index = self.index.index_rows(std::slice::from_ref(&rows)).map_err(storage_error)?;
            let passing = self.passing(&rows, None)?;
            parts.push(Part { searcher: searcher_of(&index)?, rows: Rows::Memory(rows), passing });
        }
        let allowed = match &self.filter {
            Some(_) => Some(self.allowed(ds, &schema).await?),
            None => None,
        };
        let prepared = started.elapsed();

        // The search.
        let statistics = Statistics(&parts);
        let Some(first) = parts.first() else {
            let empty = vec![Vec::new(); self.scores.len()];
            return self.output(&[], &parts, ds, empty, &[]).await;
        };
        let scoring = EnableScoring::enabled_from_statistics_provider(&statistics, &first.searcher);
        let driver = self.driver()?;
        let weight = driver.weight(scoring).map_err(tantivy_error)?;
        let alive = |part: &Part, doc: DocId| -> bool {
            match &part.rows {
                Rows::Base(segment) => segment
                    .address_of(doc)
                    .is_some_and(|a| !dead.contains(a) && allowed.as_ref().is_none_or(|set| set.contains(a))),
                Rows::Memory(_) => {
                    part.passing.as_ref().is_none_or(|p| p.is_valid(doc as usize) && p.value(doc as usize))
                }
            }
        };
        let mut hits: Vec<Hit> = Vec::new();
        match self.top_k {
            Some((_, k)) => {
                // A min-heap of the best k: tantivy's own top-k loop (Block-WAND), with
                // rows that may not match rejected before they raise the threshold.
                let mut best: std::collections::BinaryHeap<std::cmp::Reverse<Ranked>> =
                    std::collections::BinaryHeap::with_capacity(k + 1);
                for (i, part) in parts.iter().enumerate() {
                    for reader in part.searcher.segment_readers() {
                        let threshold = if best.len() == k {
                            best.peek().map_or(Score::MIN, |r| r.0 .0.score)
                        } else {
                            Score::MIN
                        };
                        weight
                            .for_each_pruning(threshold, reader, &mut |doc, score| {
                                if alive(part, doc) {
                                    best.push(std::cmp::Reverse(Ranked(Hit { part: i, doc, score })));
                                    if best.len() > k {
                                        best.pop();
                                    }
                                }
                                if best.len() == k {
                                    best.peek().map_or(Score::MIN, |r| r.0 .0.score)
                                } else {
                                    Score::MIN
                                }
                            })
                            .map_err(tantivy_error)?;
                    }
                }
                hits = best.into_sorted_vec().into_iter().map(|r| r.0 .0).collect();
            }
            None => {
                for (i, part) in parts.iter().enumerate() {
                    for reader in part.searcher.segment_readers() {
                        weight
                            .for_each(reader, &mut |doc, score| {
                                if alive(part, doc) {
                                    hits.push(Hit { part: i, doc, score });
                                }
                            })
                            .map_err(tantivy_error)?;
                    }
                }
            }
        }

        // Each score column: the search's own score where it is that score, else the
        // term's scorer advanced to each hit.
        let mut scores: Vec<Vec<Score>> = Vec::with_capacity(self.scores.len());
        for (j, term) in self.scores.iter().enumerate() {
            if self.driver_scores(j) {
                scores.push(hits.iter().map(|h| h.score).collect());
                continue;
            }
            let query = self.parsed.parse(term)?;
            let scoring = EnableScoring::enabled_from_statistics_provider(&statistics, &first.searcher);
            let weight = query.weight(scoring).map_err(tantivy_error)?;
            scores.push(score_hits(weight.as_ref(), &parts, &hits)?);
        }
        tracing::debug!(
            hits = hits.len(),
            parts = parts.len(),
            prepare_us = prepared.as_micros() as u64,
            total_us = started.elapsed().as_micros() as u64,
            "bm25 search"
        );
        let mut generators = Vec::with_capacity(self.snippets.len());
        for snippet in &self.snippets {
            let query = self.parsed.parse(&snippet.term)?;
            let field = self.parsed.field(&snippet.term.column)?;
            let mut generator =
                SnippetGenerator::create(&first.searcher, query.as_ref(), field).map_err(tantivy_error)?;
            generator.set_max_num_chars(snippet.max_chars);
            generators.push(generator);
        }
        self.output(&hits, &parts, ds, scores, &generators).await
    }

    /// Which rows in memory may match: those the filters pass, without the keys in
    /// `hidden` (the transaction's own writes replaced them). `None`: all of them.
    fn passing(
        &self,
        rows: &RecordBatch,
        hidden: Option<(&HashMap<Key, Option<usize>>, &KeyCodec)>,
    ) -> DfResult<Option<BooleanArray>> {
        let mut passing = match &self.filter {
            Some(filter) => Some(filter.evaluate(rows)?.into_array(rows.num_rows())?.as_boolean().clone()),
            None => None,
        };
        if let Some((hidden, codec)) = hidden {
            let keys = codec.keys(rows).map_err(storage_error)?;
            let visible: BooleanArray = keys.iter().map(|k| Some(!hidden.contains_key(k))).collect();
            passing = Some(match passing {
                Some(passed) => arrow::compute::and(&passed, &visible)?,
                None => visible,
            });
        }
        Ok(passing)
    }

    /// The query run: every `@@@` term must match; under a top-k, the ranked score is
    /// the only one that counts (the other terms weigh zero).
    fn driver(&self) -> DfResult<Box<dyn Query>> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        match self.top_k {
            Some((i, _)) => {
                let ranked = &self.scores[i];
                let occur = if self.matches.contains(ranked) { Occur::Must } else { Occur::Should };
                clauses.push((occur, self.parsed.parse(ranked)?));
                for term in self.matches.iter().filter(|t| *t != ranked) {
                    clauses.push((Occur::Must, Box::new(BoostQuery::new(self.parsed.parse(term)?, 0.0))));
                }
            }
            None => {
                if let [only] = self.matches.as_slice() {
                    return self.parsed.parse(only);
                }
                for term in &self.matches {
                    clauses.push((Occur::Must, self.parsed.parse(term)?));
                }
            }
        }
        Ok(Box::new(BooleanQuery::new(clauses)))
    }

    /// Whether the search's own score is score column `j`.
    fn driver_scores(&self, j: usize) -> bool {
        match self.top_k {
            Some((i, _)) => i == j,
            None => matches!(self.matches.as_slice(), [only] if *only == self.scores[j]),
        }
    }

    /// Base row addresses passing the filters (cached per base version and filter):
    /// from the base held in memory, or a scan of the filters' columns, which Lance
    /// filters first when it can (skipping by the scalar indexes; the filter is
    /// evaluated on what it returns all the same).
    async fn allowed(&self, ds: &Arc<Dataset>, schema: &SchemaRef) -> DfResult<Arc<RoaringTreemap>> {
        let table_id = self.tarn().snapshot().manifest.table_id;
        let key = (table_id, ds.version().version, self.filter_text.clone().unwrap_or_default());
        if let Some(allowed) = ALLOWED.get(&key) {
            return Ok(allowed);
        }
        let filter = self.filter.as_ref().expect("a filter");
        let mut allowed = RoaringTreemap::new();
        if let Some(held) = base_cache::held(table_id, ds) {
            let passed = filter.evaluate(&held.rows)?.into_array(held.rows.num_rows())?;
            let passed = passed.as_boolean();
            allowed.extend(
                (0..passed.len())
                    .filter(|&i| passed.is_valid(i) && passed.value(i))
                    .map(|i| held.addresses[i]),
            );
        } else {
            let names: Vec<&str> =
                self.filter_columns.iter().map(|&c| schema.field(c).name().as_str()).collect();
            let scanner = |lance_filter: Option<&datafusion::logical_expr::Expr>| -> DfResult<lance::dataset::scanner::Scanner> {
                let mut scanner = ds.scan();
                tarn_storage::blob::read_binary(&mut scanner).project(&names).map_err(lance_error)?;
                scanner.with_row_address();
                if let Some(f) = lance_filter {
                    scanner.filter_expr(f.clone());
                }
                Ok(scanner)
            };
            // A filter Lance's planner refuses (a function of Tarn's) is left to the
            // evaluation below.
            let mut stream = match scanner(self.filter_expr.as_ref())?.try_into_stream().await {
                Ok(stream) => stream,
                Err(_) => scanner(None)?.try_into_stream().await.map_err(lance_error)?,
            };
            while let Some(batch) = stream.try_next().await.map_err(lance_error)? {
                // Lay the batch out in the table's schema (columns the filter does not
                // read are NULL).
                let columns = schema
                    .fields()
                    .iter()
                    .map(|f| match batch.column_by_name(f.name()) {
                        Some(c) => arrow::compute::cast(c, f.data_type()).map_err(DataFusionError::from),
                        None => Ok(arrow::array::new_null_array(f.data_type(), batch.num_rows())),
                    })
                    .collect::<DfResult<Vec<_>>>()?;
                let rows = RecordBatch::try_new_with_options(
                    crate::catalog::provider::nullable_schema(schema),
                    columns,
                    &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
                )?;
                let passed = filter.evaluate(&rows)?.into_array(rows.num_rows())?;
                let passed = passed.as_boolean();
                let addresses = batch
                    .column_by_name("_rowaddr")
                    .ok_or_else(|| internal("a scan without row addresses"))?
                    .as_primitive::<arrow::datatypes::UInt64Type>();
                allowed.extend(
                    (0..passed.len())
                        .filter(|&i| passed.is_valid(i) && passed.value(i))
                        .map(|i| addresses.value(i)),
                );
            }
        }
        let allowed = Arc::new(allowed);
        ALLOWED.put(key, allowed.clone());
        Ok(allowed)
    }

    /// The hits' rows (the output columns) with the score columns.
    async fn output(
        &self,
        hits: &[Hit],
        parts: &[Part],
        ds: &Arc<Dataset>,
        scores: Vec<Vec<Score>>,
        snippets: &[SnippetGenerator],
    ) -> DfResult<RecordBatch> {
        let table = self.tarn();
        let snapshot = table.snapshot();
        let schema = table.schema();
        // Base rows: one take of every address.
        let mut addresses: Vec<u64> = hits
            .iter()
            .filter_map(|h| match &parts[h.part].rows {
                Rows::Base(segment) => segment.address_of(h.doc),
                Rows::Memory(_) => None,
            })
            .collect();
        addresses.sort_unstable();
        addresses.dedup();
        let table_id = snapshot.manifest.table_id;
        let base = if addresses.is_empty() {
            RecordBatch::new_empty(schema.clone())
        } else {
            let rows = match base_cache::held(table_id, ds) {
                Some(held) => held.take(addresses.iter().copied())?,
                None => {
                    // Counted as key lookups are: a base searched often is held in memory.
                    base_cache::note_lookup(table_id, ds, &schema);
                    table.table().take_base_rows(snapshot, &addresses).await.map_err(storage_error)?
                }
            };
            in_table_schema(&rows, &schema)?
        };
        let position: HashMap<u64, usize> = addresses.iter().enumerate().map(|(i, a)| (*a, i)).collect();
        // Change rows: from their views.
        let mut sources: Vec<RecordBatch> = vec![base];
        let mut source_of_part: HashMap<usize, usize> = HashMap::new();
        let mut indices: Vec<(usize, usize)> = Vec::with_capacity(hits.len());
        for hit in hits {
            match &parts[hit.part].rows {
                Rows::Base(segment) => {
                    let address =
                        segment.address_of(hit.doc).ok_or_else(|| internal("a hit outside its segment"))?;
                    indices.push((0, position[&address]));
                }
                Rows::Memory(rows) => {
                    let source = match source_of_part.get(&hit.part) {
                        Some(&s) => s,
                        None => {
                            sources.push(rows.clone());
                            source_of_part.insert(hit.part, sources.len() - 1);
                            sources.len() - 1
                        }
                    };
                    indices.push((source, hit.doc as usize));
                }
            }
        }
        let sources_ref: Vec<&RecordBatch> = sources.iter().collect();
        let rows = interleave_record_batch(&sources_ref, &indices)?;
        let mut columns = rows.project(&self.output)?.columns().to_vec();
        for column in scores {
            columns.push(Arc::new(Float32Array::from(column)));
        }
        for (snippet, generator) in self.snippets.iter().zip(snippets) {
            let text = rows.column(schema.index_of(&snippet.term.column)?);
            let text = arrow::compute::cast(text, &arrow::datatypes::DataType::Utf8)?;
            let text = text.as_string::<i32>();
            let highlighted: arrow::array::StringArray = (0..text.len())
                .map(|i| text.is_valid(i).then(|| highlight(&generator.snippet(text.value(i)), snippet)))
                .collect();
            columns.push(Arc::new(highlighted));
        }
        Ok(RecordBatch::try_new_with_options(
            self.output_schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(hits.len())),
        )?)
    }
}

/// A snippet's fragment with its matches between the snippet's tags (the text as it is:
/// no HTML escaping).
fn highlight(found: &tantivy::snippet::Snippet, snippet: &Snippet) -> String {
    let fragment = found.fragment();
    let mut out = String::with_capacity(fragment.len() + 16);
    let mut at = 0;
    for range in found.highlighted() {
        if range.start < at || range.end > fragment.len() {
            continue;
        }
        out.push_str(&fragment[at..range.start]);
        out.push_str(&snippet.start);
        out.push_str(&fragment[range.clone()]);
        out.push_str(&snippet.end);
        at = range.end;
    }
    out.push_str(&fragment[at..]);
    out
}

/// A hit ordered by score, then (for equal scores) earlier parts and documents first.
struct Ranked(Hit);

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .score
            .total_cmp(&other.0.score)
            .then_with(|| (other.0.part, other.0.doc).cmp(&(self.0.part, self.0.doc)))
    }
}

/// The score of each hit by `weight` (0 where its query does not match the row).
fn score_hits(weight: &dyn Weight, parts: &[Part], hits: &[Hit]) -> DfResult<Vec<Score>> {
    let mut scores = vec![0.0; hits.len()];
    let mut by_part: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, hit) in hits.iter().enumerate() {
        by_part.entry(hit.part).or_default().push(i);
    }
    for (part, mut members) in by_part {
        members.sort_by_key(|&i| hits[i].doc);
        // One segment per part.
        let Some(reader) = parts[part].searcher.segment_readers().first() else { continue };
        let mut scorer = weight.scorer(reader, 1.0).map_err(tantivy_error)?;
        let mut current = scorer.doc();
        for i in members {
            let doc = hits[i].doc;
            if current < doc && current != TERMINATED {
                current = scorer.seek(doc);
            }
            if current == doc {
                scores[i] = scorer.score();
            }
        }
    }
    Ok(scores)
}

/// `batch` (Lance's or a change view's) in the table's schema, by position.
fn in_table_schema(batch: &RecordBatch, schema: &SchemaRef) -> DfResult<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| arrow::compute::cast(c, f.data_type()).map_err(DataFusionError::from))
        .collect::<DfResult<Vec<_>>>()?;
    Ok(RecordBatch::try_new_with_options(
        crate::catalog::provider::nullable_schema(schema),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}

fn lance_error(e: lance::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl Search for TextSearch {
    const NAME: &'static str = "TarnBm25Exec";

    fn schema(&self) -> SchemaRef {
        self.output_schema.clone()
    }

    fn describe(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let list = |terms: &[Term]| terms.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ");
        let mode = if self.top_k.is_some() { "topk" } else { "all" };
        write!(f, "mode={mode}, index={}", self.index.name)?;
        if let Some((i, k)) = self.top_k {
            write!(f, ", k={k}, order={}", self.scores[i])?;
        }
        write!(f, ", match=[{}]", list(&self.matches))?;
        if let Some(filter) = &self.filter_text {
            write!(f, ", prefilter={filter}")?;
        }
        write!(f, ", segments={}", self.index.segments.len())
    }

    fn run(self) -> impl std::future::Future<Output = DfResult<RecordBatch>> + Send {
        self.search()
    }
}
