//! Full-text (BM25) indexes: their definitions in the manifest, the tantivy segments
//! that hold them, building a segment over base fragments, and opening one to search.
//!
//! An index covers one or more text columns, each with its own tokenizer. It is a list
//! of immutable segments, each a one-segment tantivy index in its own folder,
//! `<table>/text/<index>/<segment id>/` (tantivy's files and its `meta.json`, written
//! through the fsync-ing store before the manifest that names them). A segment covers
//! a run of whole Lance fragments, one document per row in row-address order (a row
//! Lance deleted before the build is an empty document), so a document's id gives its
//! row address: `fragment << 32 | (doc - doc_base)`. Nothing is ever deleted inside
//! tantivy: the reader masks rows the base's deletion vectors or the change store
//! replaced, and the BM25 statistics count every document of every segment (as
//! tantivy's own do until a merge; ours keep every document, so scores do not move).
//!
//! Rows reach the index when they reach the base: a compaction builds a segment over the
//! fragments it appends before its commit (never a rebuild) and merges small segments
//! ten at a time (tantivy's merger, no re-tokenizing), `VACUUM` does the same
//! for a table without a primary key, and until then the reader indexes such rows in
//! memory. A folder no manifest names (a crash between the files and the commit) is
//! never read.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, UInt64Type};
use arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use lance::dataset::Dataset;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tantivy::directory::RamDirectory;
use tantivy::schema::{IndexRecordOption, Schema, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, NgramTokenizer, RawTokenizer, RemoveLongFilter,
    SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer, Token, TokenStream, WhitespaceTokenizer,
};
use tantivy::{Directory, Index, TantivyDocument};
use tantivy_jieba::{JiebaTokenStream, JiebaTokenizer};
use tracing::info;

use crate::error::{Result, StorageError};
use crate::manifest::Manifest;
use crate::table::{BaseSnapshot, Table};
use crate::vector_index::{BuildReport, Builds};

/// Tokens longer than this (in bytes) are dropped, as tantivy's `default` does.
const MAX_TOKEN_BYTES: usize = 40;

/// Memory a segment build may use before tantivy flushes (it never does: one segment).
const BUILD_MEMORY: usize = 256 << 20;

/// One BM25 index as declared, and the segments that hold its rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextIndexDef {
    pub name: String,
    pub columns: Vec<TextColumn>,
    /// Oldest first; together they cover the fragments of the base at the manifest's
    /// version that the index has reached (later fragments are indexed by readers).
    #[serde(default)]
    pub segments: Vec<TextSegment>,
}

/// An indexed column and how its text becomes terms.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TextColumn {
    pub name: String,
    pub tokenizer: Tokenizer,
    /// The tantivy field holding the column's terms when it is not the column's name:
    /// the name the column had when the index was made (a rename leaves the segments
    /// as they are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl TextColumn {
    pub fn new(name: String, tokenizer: Tokenizer) -> Self {
        TextColumn { name, tokenizer, field: None }
    }

    /// The tantivy field of the column.
    pub fn field(&self) -> &str {
        self.field.as_deref().unwrap_or(&self.name)
    }

    /// `ALTER TABLE ... RENAME COLUMN`: the column's new name, over the same field.
    pub fn rename(&mut self, to: &str) {
        if self.field.is_none() {
            self.field = Some(std::mem::take(&mut self.name));
        }
        self.name = to.to_string();
        if self.field.as_deref() == Some(to) {
            self.field = None;
        }
    }
}

/// How text becomes terms: a tokenizer and the filters after it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tokenizer {
    pub kind: TokenizerKind,
    pub lowercase: bool,
    /// A language whose stop words are dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopwords: Option<String>,
    /// A language whose stemmer reduces words to their stems.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stemmer: Option<String>,
    /// Folds accented letters to ASCII (`café` → `cafe`).
    #[serde(default)]
    pub ascii_folding: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum TokenizerKind {
    /// Splits on anything not a letter or digit; drops tokens over 40 bytes.
    Default,
    /// Splits on white space.
    Whitespace,
    /// The whole value is one term.
    Raw,
    /// Every substring of `min..=max` characters (only the prefixes of each word when
    /// `prefix_only`).
    Ngram { min: usize, max: usize, prefix_only: bool },
    /// Chinese words by jieba's dictionary and HMM, in its search mode (a long word also
    /// yields the words inside it); other scripts split as jieba splits them. Spaces and
    /// punctuation are not terms.
    Chinese,
}

impl Default for Tokenizer {
    fn default() -> Self {
        Tokenizer {
            kind: TokenizerKind::Default,
            lowercase: true,
            stopwords: None,
            stemmer: None,
            ascii_folding: false,
        }
    }
}

impl Tokenizer {
    /// The name the analyzer is registered under: unique per spec.
    pub fn registered_name(&self) -> String {
        format!("tarn:{}", serde_json::to_string(self).expect("a tokenizer serializes"))
    }

    /// A short name for `tarn_indexes` and EXPLAIN: `default`, `en_stem`, `ngram(2,3)`...
    pub fn describe(&self) -> String {
        let mut name = match self.kind {
            TokenizerKind::Default => "default".to_string(),
            TokenizerKind::Whitespace => "whitespace".to_string(),
            TokenizerKind::Raw => "raw".to_string(),
            TokenizerKind::Chinese => "chinese".to_string(),
            TokenizerKind::Ngram { min, max, prefix_only } => {
                format!("ngram({min},{max}{})", if prefix_only { ",prefix" } else { "" })
            }
        };
        if let Some(stemmer) = &self.stemmer {
            name.push_str(&format!("+stem({stemmer})"));
        }
        if let Some(stopwords) = &self.stopwords {
            name.push_str(&format!("+stopwords({stopwords})"));
        }
        if !self.lowercase {
            name.push_str("+case");
        }
        if self.ascii_folding {
            name.push_str("+ascii");
        }
        name
    }

    /// Checks the spec (languages, n-gram bounds) and builds its analyzer.
    pub fn analyzer(&self) -> Result<TextAnalyzer> {
        let invalid = |message: String| StorageError::Unsupported { message };
        let mut builder = match self.kind {
            TokenizerKind::Default => TextAnalyzer::builder(SimpleTokenizer::default())
                .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
                .dynamic(),
            TokenizerKind::Whitespace => TextAnalyzer::builder(WhitespaceTokenizer::default()).dynamic(),
            TokenizerKind::Raw => TextAnalyzer::builder(RawTokenizer::default()).dynamic(),
            TokenizerKind::Chinese => TextAnalyzer::builder(ChineseWords::default())
                .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
                .dynamic(),
            TokenizerKind::Ngram { min, max, prefix_only } => {
                if min == 0 || min > max || max > 20 {
                    return Err(invalid(format!(
                        "invalid n-gram sizes {min}..{max} (1 <= min_gram <= max_gram <= 20)"
                    )));
                }
                let ngram = NgramTokenizer::new(min, max, prefix_only).map_err(|e| invalid(e.to_string()))?;
                TextAnalyzer::builder(ngram).dynamic()
            }
        };
        if self.lowercase {
            builder = builder.filter_dynamic(LowerCaser);
        }
        if self.ascii_folding {
            builder = builder.filter_dynamic(AsciiFoldingFilter);
        }
        if let Some(language) = &self.stopwords {
            let filter = StopWordFilter::new(language_named(language)?)
                .ok_or_else(|| invalid(format!("no stop word list for language \"{language}\"")))?;
            builder = builder.filter_dynamic(filter);
        }
        if let Some(language) = &self.stemmer {
            builder = builder.filter_dynamic(Stemmer::new(language_named(language)?));
        }
        Ok(builder.build())
    }
}

/// jieba's segmentation without the spaces and punctuation it also returns as segments.
#[derive(Clone, Default)]
struct ChineseWords(JiebaTokenizer);

impl tantivy::tokenizer::Tokenizer for ChineseWords {
    type TokenStream<'a> = WordsOnly<JiebaTokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        WordsOnly(self.0.token_stream(text))
    }
}

/// A token stream without the tokens that hold no letter or digit.
struct WordsOnly<S>(S);

impl<S: TokenStream> TokenStream for WordsOnly<S> {
    fn advance(&mut self) -> bool {
        while self.0.advance() {
            if self.0.token().text.chars().any(char::is_alphanumeric) {
                return true;
            }
        }
        false
    }

    fn token(&self) -> &Token {
        self.0.token()
    }

    fn token_mut(&mut self) -> &mut Token {
        self.0.token_mut()
    }
}

/// The languages tantivy has stemmers for, by their English names in lower case.
pub const LANGUAGES: [(&str, Language); 18] = [
    ("arabic", Language::Arabic),
    ("danish", Language::Danish),
    ("dutch", Language::Dutch),
    ("english", Language::English),
    ("finnish", Language::Finnish),
    ("french", Language::French),
    ("german", Language::German),
    ("greek", Language::Greek),
    ("hungarian", Language::Hungarian),
    ("italian", Language::Italian),
    ("norwegian", Language::Norwegian),
    ("portuguese", Language::Portuguese),
    ("romanian", Language::Romanian),
    ("russian", Language::Russian),
    ("spanish", Language::Spanish),
    ("swedish", Language::Swedish),
    ("tamil", Language::Tamil),
    ("turkish", Language::Turkish),
];

fn language_named(name: &str) -> Result<Language> {
    LANGUAGES.iter().find(|(n, _)| *n == name).map(|(_, l)| *l).ok_or_else(|| StorageError::Unsupported {
        message: format!(
            "unknown language \"{name}\" (one of {})",
            LANGUAGES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ),
    })
}

/// One immutable segment: a tantivy index over a run of whole fragments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextSegment {
    /// Its folder's name (tantivy's segment id).
    pub id: String,
    /// The fragments it covers, in document order.
    pub runs: Vec<FragmentRun>,
    pub docs: u32,
}

/// Documents `doc_base..doc_base + rows` of a segment are the rows of one fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FragmentRun {
    pub fragment: u64,
    pub doc_base: u32,
    pub rows: u32,
}

impl TextSegment {
    /// The row address of document `doc`, if the segment has it.
    pub fn address_of(&self, doc: u32) -> Option<u64> {
        let i = self.runs.partition_point(|r| r.doc_base <= doc).checked_sub(1)?;
        let run = self.runs[i];
        (doc - run.doc_base < run.rows).then(|| run.fragment << 32 | u64::from(doc - run.doc_base))
    }
}

impl TextIndexDef {
    /// Fragments some segment covers.
    pub fn covered(&self) -> HashSet<u64> {
        self.segments.iter().flat_map(|s| s.runs.iter().map(|r| r.fragment)).collect()
    }

    /// The tantivy schema: one text field per column (named as the column was when
    /// the index was made), with frequencies and positions (phrases), nothing stored.
    pub fn schema(&self) -> Schema {
        let mut schema = Schema::builder();
        for column in &self.columns {
            let indexing = TextFieldIndexing::default()
                .set_tokenizer(&column.tokenizer.registered_name())
                .set_index_option(IndexRecordOption::WithFreqsAndPositions);
            schema.add_text_field(column.field(), TextOptions::default().set_indexing_options(indexing));
        }
        schema.build()
    }

    /// The columns' analyzers by their registered names (tantivy keeps only names).
    pub fn tokenizer_manager(&self) -> Result<tantivy::tokenizer::TokenizerManager> {
        let manager = tantivy::tokenizer::TokenizerManager::default();
        for column in &self.columns {
            manager.register(&column.tokenizer.registered_name(), column.tokenizer.analyzer()?);
        }
        Ok(manager)
    }

    /// An empty index with the schema and analyzers, for parsing queries.
    pub fn in_memory(&self) -> Result<Index> {
        Ok(Index::builder().schema(self.schema()).tokenizers(self.tokenizer_manager()?).create_in_ram()?)
    }

    /// Indexes `batches` (which have the indexed columns) in memory: document `i` is
    /// row `i` of them all.
    pub fn index_rows(&self, batches: &[RecordBatch]) -> Result<Index> {
        let mut builder = SegmentBuilder::new(self, RamDirectory::create())?;
        for batch in batches {
            builder.add_rows(batch, 0..batch.num_rows())?;
        }
        builder.finish()
    }
}

/// Adds rows to a one-segment tantivy index.
struct SegmentBuilder<'a> {
    def: &'a TextIndexDef,
    fields: Vec<tantivy::schema::Field>,
    writer: tantivy::indexer::SingleSegmentIndexWriter<TantivyDocument>,
    docs: u32,
}

impl<'a> SegmentBuilder<'a> {
    fn new(def: &'a TextIndexDef, dir: RamDirectory) -> Result<Self> {
        let schema = def.schema();
        let fields =
            def.columns.iter().map(|c| schema.get_field(c.field())).collect::<tantivy::Result<Vec<_>>>()?;
        let writer = Index::builder()
            .schema(schema)
            .tokenizers(def.tokenizer_manager()?)
            .single_segment_index_writer(dir, BUILD_MEMORY)?;
        Ok(SegmentBuilder { def, fields, writer, docs: 0 })
    }

    /// Adds rows `range` of `batch` (the indexed columns by name) as documents.
    fn add_rows(&mut self, batch: &RecordBatch, range: std::ops::Range<usize>) -> Result<()> {
        let columns: Vec<_> = self
            .def
            .columns
            .iter()
            .map(|c| {
                let column = batch.column_by_name(&c.name).ok_or_else(|| {
                    StorageError::internal(format!("text index column {} is missing from a scan", c.name))
                })?;
                Ok(arrow::compute::cast(column, &DataType::Utf8)?)
            })
            .collect::<Result<Vec<_>>>()?;
        for row in range {
            let mut doc = TantivyDocument::new();
            for (field, column) in self.fields.iter().zip(&columns) {
                let text = column.as_string::<i32>();
                if text.is_valid(row) {
                    doc.add_text(*field, text.value(row));
                }
            }
            self.writer.add_document(doc)?;
            self.docs += 1;
        }
        Ok(())
    }

    fn add_empty(&mut self, count: u32) -> Result<()> {
        for _ in 0..count {
            self.writer.add_document(TantivyDocument::new())?;
        }
        self.docs += count;
        Ok(())
    }

    fn finish(self) -> Result<Index> {
        Ok(self.writer.finalize()?)
    }
}

/// Rows indexed in memory.
pub struct Indexed {
    pub index: Index,
    /// The index's files (as tantivy wrote them).
    dir: RamDirectory,
    /// The fragments' runs.
    pub runs: Vec<FragmentRun>,
    pub docs: u32,
}

/// Indexes the rows of `fragments` of `ds` (in that order) in memory: one document per
/// row address, an empty one where Lance deleted the row.
pub async fn index_fragments(ds: &Dataset, def: &TextIndexDef, fragments: &[u64]) -> Result<Indexed> {
    index_fragments_reporting(ds, def, fragments, None).await
}

/// [`index_fragments`], reporting its progress to `report`.
async fn index_fragments_reporting(
    ds: &Dataset,
    def: &TextIndexDef,
    fragments: &[u64],
    report: Option<&BuildReport>,
) -> Result<Indexed> {
    let mut metas = Vec::with_capacity(fragments.len());
    for &id in fragments {
        let fragment = ds
            .get_fragment(id as usize)
            .ok_or_else(|| StorageError::internal(format!("fragment {id} is not in the base")))?;
        let rows = fragment.physical_rows().await? as u32;
        metas.push((fragment.metadata().clone(), rows));
    }
    let mut scanner = ds.scan();
    let columns: Vec<&str> = def.columns.iter().map(|c| c.name.as_str()).collect();
    scanner.project(&columns)?;
    scanner.with_row_address();
    scanner.scan_in_order(true);
    scanner.with_fragments(metas.iter().map(|(f, _)| f.clone()).collect());
    if let Some(report) = report {
        report.stage("read_rows", None, "rows");
    }
    let batches: Vec<RecordBatch> = scanner.try_into_stream().await?.try_collect().await?;

    // Tokenizing is CPU work: off the runtime's threads.
    let def = def.clone();
    let fragments: Vec<(u64, u32)> = metas.iter().map(|(f, rows)| (f.id, *rows)).collect();
    let report = report.cloned();
    if let Some(report) = &report {
        let total = fragments.iter().map(|(_, rows)| u64::from(*rows)).sum();
        report.stage("index_rows", Some(total), "documents");
    }
    tokio::task::spawn_blocking(move || index_batches(&def, &batches, &fragments, report.as_ref()))
        .await
        .map_err(|e| StorageError::internal(format!("text indexing failed: {e}")))?
}

/// [`index_fragments`] once the rows are read: `batches` (with `_rowaddr`) hold the
/// live rows of `fragments` (id, physical rows), in order.
fn index_batches(
    def: &TextIndexDef,
    batches: &[RecordBatch],
    fragments: &[(u64, u32)],
    report: Option<&BuildReport>,
) -> Result<Indexed> {
    let dir = RamDirectory::create();
    let mut builder = SegmentBuilder::new(def, dir.clone())?;
    let mut runs: Vec<FragmentRun> = Vec::with_capacity(fragments.len());
    for &(fragment, rows) in fragments {
        runs.push(FragmentRun { fragment, doc_base: 0, rows });
    }
    let mut run = 0;
    let mut doc_base = 0;
    for batch in batches {
        let addresses = batch
            .column_by_name("_rowaddr")
            .ok_or_else(|| StorageError::internal("a text index scan has no row addresses"))?
            .as_primitive::<UInt64Type>();
        for row in 0..batch.num_rows() {
            let (fragment, offset) =
                (addresses.value(row) >> 32, (addresses.value(row) & 0xFFFF_FFFF) as u32);
            while runs.get(run).is_some_and(|r| r.fragment != fragment) {
                builder.add_empty(doc_base + runs[run].rows - builder.docs)?;
                doc_base += runs[run].rows;
                run += 1;
                if let Some(next) = runs.get_mut(run) {
                    next.doc_base = doc_base;
                }
            }
            if run == runs.len() || offset >= runs[run].rows {
                return Err(StorageError::internal("a text index scan left its fragments"));
            }
            builder.add_empty(doc_base + offset - builder.docs)?;
            builder.add_rows(batch, row..row + 1)?;
        }
        if let Some(report) = report {
            report.progress(u64::from(builder.docs));
        }
    }
    while run < runs.len() {
        runs[run].doc_base = doc_base;
        builder.add_empty(doc_base + runs[run].rows - builder.docs)?;
        doc_base += runs[run].rows;
        run += 1;
    }
    let docs = builder.docs;
    Ok(Indexed { index: builder.finish()?, dir, runs, docs })
}

/// Builds one segment over `fragments` of `ds` (in that order), writes its files under
/// `<table>/text/<index>/<segment>`, and returns it; `None` when there are no fragments.
pub(crate) async fn build_segment(
    table: &Table,
    ds: &Dataset,
    def: &TextIndexDef,
    fragments: &[u64],
) -> Result<Option<TextSegment>> {
    if fragments.is_empty() {
        return Ok(None);
    }
    let started = Instant::now();
    let report = BuildReport::new(&table.name(), &def.name, &table.builds);
    let Indexed { index, dir, runs, docs } =
        index_fragments_reporting(ds, def, fragments, Some(&report)).await?;
    let id = index
        .searchable_segment_ids()?
        .first()
        .map(|s| s.uuid_string())
        .ok_or_else(|| StorageError::internal("a text index build made no segment"))?;
    report.stage("write_files", None, "files");
    let bytes = write_segment_files(table, &def.name, &id, &index, &dir).await?;
    info!(
        table = %table.name(), index = %def.name, segment = %id, docs, fragments = runs.len(), bytes,
        ms = started.elapsed().as_millis() as u64, "text index segment built"
    );
    Ok(Some(TextSegment { id, runs, docs }))
}

/// Ends a build's entry in [`Builds`] when dropped, however the build ends.
struct EndsBuild<'a> {
    builds: &'a Builds,
    index: &'a str,
}

impl Drop for EndsBuild<'_> {
    fn drop(&mut self) {
        self.builds.finish(self.index);
    }
}

/// Copies an in-memory index's files (its one segment and `meta.json`, as tantivy
/// wrote them into `dir`) to the segment's folder, each durable when this returns.
/// Returns the bytes written.
async fn write_segment_files(
    table: &Table,
    index_name: &str,
    id: &str,
    index: &Index,
    dir: &RamDirectory,
) -> Result<u64> {
    let mut files: Vec<PathBuf> = index.load_metas()?.list_segment_files().into_iter().collect();
    files.sort();
    let folder = segment_path(table.dir(), index_name, id);
    let mut bytes = 0;
    let mut put = |name: String, data: Vec<u8>| {
        bytes += data.len() as u64;
        let path = folder.clone().join(name.as_str());
        let store = table.location.store().clone();
        async move { store.put(&path, PutPayload::from(bytes::Bytes::from(data))).await }
    };
    for file in files {
        let io = |e: std::io::Error| StorageError::Io { path: file.display().to_string(), source: e };
        if !dir.exists(&file).map_err(|e| StorageError::internal(e.to_string()))? {
            continue;
        }
        let data = dir
            .open_read(&file)
            .map_err(|e| StorageError::internal(e.to_string()))?
            .read_bytes()
            .map_err(io)?;
        put(file.to_string_lossy().to_string(), data.as_slice().to_vec()).await?;
    }
    // Last: a folder with its `meta.json` is whole (not that a reader would look
    // before the manifest names it).
    let meta = dir
        .atomic_read(std::path::Path::new("meta.json"))
        .map_err(|e| StorageError::internal(e.to_string()))?;
    put("meta.json".to_string(), meta).await?;
    Ok(bytes)
}

/// `<table>/text/<index>/<segment>`.
fn segment_path(table_dir: &Path, index: &str, segment: &str) -> Path {
    table_dir.clone().join("text").join(index).join(segment)
}

/// Opens one segment of an index for searching, read-only: memory-mapped in a local
/// warehouse; read into memory once from an object store (segments are immutable, and
/// callers cache what they open).
pub async fn open_segment(table: &Table, def: &TextIndexDef, segment: &TextSegment) -> Result<Index> {
    let path = segment_path(table.dir(), &def.name, &segment.id);
    let mut index = match table.location.local_root() {
        Some(root) => {
            let folder: PathBuf = path.parts().fold(root, |folder, part| folder.join(part.as_ref()));
            let dir = tantivy::directory::MmapDirectory::open(&folder).map_err(|e| {
                StorageError::internal(format!("opening text index segment {}: {e}", folder.display()))
            })?;
            Index::open(dir)?
        }
        None => {
            let store = table.location.store();
            let dir = RamDirectory::create();
            let files: Vec<object_store::ObjectMeta> = store.list(Some(&path)).try_collect().await?;
            for file in files {
                let Some(name) = file.location.filename() else { continue };
                let bytes = store.get(&file.location).await?.bytes().await?;
                dir.atomic_write(std::path::Path::new(name), &bytes)
                    .map_err(|e| StorageError::internal(format!("text index segment {path}: {e}")))?;
            }
            Index::open(dir)?
        }
    };
    index.set_tokenizers(def.tokenizer_manager()?);
    Ok(index)
}

/// The fragments of `ds` no segment of `def` covers, in id order.
pub fn uncovered_fragments(ds: &Dataset, def: &TextIndexDef) -> Vec<u64> {
    let covered = def.covered();
    let mut ids: Vec<u64> =
        ds.get_fragments().iter().map(|f| f.id() as u64).filter(|id| !covered.contains(id)).collect();
    ids.sort_unstable();
    ids
}

/// The row addresses Lance's own deletion files mark deleted (tables without a primary
/// key delete and update in place).
pub async fn lance_deleted(ds: &Dataset) -> Result<roaring::RoaringTreemap> {
    let mut deleted = roaring::RoaringTreemap::new();
    for fragment in ds.get_fragments() {
        if fragment.metadata().deletion_file.is_none() {
            continue;
        }
        if let Some(vector) = fragment.get_deletion_vector().await? {
            let base = (fragment.id() as u64) << 32;
            deleted.extend(vector.iter().map(|offset| base | u64::from(offset)));
        }
    }
    Ok(deleted)
}

/// Checks that `columns` exist in `schema` as text, for `CREATE INDEX`.
fn check_columns(def: &TextIndexDef, schema: &arrow::datatypes::Schema) -> Result<()> {
    if def.columns.is_empty() {
        return Err(StorageError::Unsupported { message: "a bm25 index covers at least one column".into() });
    }
    for column in &def.columns {
        let field = schema.field_with_name(&column.name).map_err(|_| StorageError::Unsupported {
            message: format!("column \"{}\" does not exist", column.name),
        })?;
        if !matches!(field.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
            return Err(StorageError::Unsupported {
                message: format!(
                    "column \"{}\" has type {}; bm25 indexes cover text and varchar columns",
                    column.name,
                    field.data_type()
                ),
            });
        }
        column.tokenizer.analyzer()?;
    }
    Ok(())
}

/// After rows were appended to `ds` (compaction, `VACUUM`, an overwrite): gives every
/// index a segment over the fragments none of its segments covers, forgets segments
/// whose fragments are all gone, and merges segments (see [`merge_candidates`]).
/// Returns the definitions brought up to date.
pub(crate) async fn refresh(table: &Table, ds: &Dataset, defs: &[TextIndexDef]) -> Result<Vec<TextIndexDef>> {
    let present: HashSet<u64> = ds.get_fragments().iter().map(|f| f.id() as u64).collect();
    let mut out = Vec::with_capacity(defs.len());
    for def in defs {
        let _ends = EndsBuild { builds: &table.builds, index: &def.name };
        let mut def = def.clone();
        def.segments.retain(|s| s.runs.iter().any(|r| present.contains(&r.fragment)));
        let fresh = uncovered_fragments(ds, &def);
        if let Some(segment) = build_segment(table, ds, &def, &fresh).await? {
            def.segments.push(segment);
        }
        while let Some(group) = merge_candidates(&def.segments) {
            // The merged segment takes the place of the group's first.
            let mut merged = Some(merge_segments(table, &def, &group).await?);
            def.segments = std::mem::take(&mut def.segments)
                .into_iter()
                .enumerate()
                .filter_map(|(i, segment)| if group.contains(&i) { merged.take() } else { Some(segment) })
                .collect();
        }
        out.push(def);
    }
    Ok(out)
}

/// Segments merge [`MERGE_FACTOR`] at a time within a size tier (a power of ten of
/// documents), so a row is rewritten about `log10(rows / batch)` times in its life
/// and an index has at most `MERGE_FACTOR - 1` segments per tier.
const MERGE_FACTOR: usize = 10;

/// The positions of `MERGE_FACTOR` segments of the smallest tier that has as many.
fn merge_candidates(segments: &[TextSegment]) -> Option<Vec<usize>> {
    let mut tiers: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
    for (i, segment) in segments.iter().enumerate() {
        tiers.entry(segment.docs.max(1).ilog10()).or_default().push(i);
    }
    tiers.into_values().find(|group| group.len() >= MERGE_FACTOR).map(|mut group| {
        group.truncate(MERGE_FACTOR);
        group
    })
}

/// One segment holding the documents of `group` (positions in `def.segments`), in that
/// order, written beside them. Nothing is dropped: the statistics, and so the scores,
/// are those of the segments merged.
async fn merge_segments(table: &Table, def: &TextIndexDef, group: &[usize]) -> Result<TextSegment> {
    let started = Instant::now();
    BuildReport::new(&table.name(), &def.name, &table.builds).stage(
        "merge_segments",
        Some(group.len() as u64),
        "segments",
    );
    let mut indexes = Vec::with_capacity(group.len());
    let mut runs = Vec::new();
    let mut docs = 0;
    for &i in group {
        let segment = &def.segments[i];
        indexes.push(open_segment(table, def, segment).await?);
        runs.extend(segment.runs.iter().map(|r| FragmentRun { doc_base: docs + r.doc_base, ..*r }));
        docs += segment.docs;
    }
    let dir = RamDirectory::create();
    let output = dir.clone();
    let index = tokio::task::spawn_blocking(move || tantivy::indexer::merge_indices(&indexes, output))
        .await
        .map_err(|e| StorageError::internal(format!("text index merge failed: {e}")))??;
    let id = index
        .searchable_segment_ids()?
        .first()
        .map(|s| s.uuid_string())
        .ok_or_else(|| StorageError::internal("a text index merge made no segment"))?;
    let bytes = write_segment_files(table, &def.name, &id, &index, &dir).await?;
    info!(
        table = %table.name(), index = %def.name, segment = %id, docs, merged = group.len(), bytes,
        ms = started.elapsed().as_millis() as u64, "text index segments merged"
    );
    Ok(TextSegment { id, runs, docs })
}

impl Table {
    /// `CREATE INDEX ... USING bm25`: declares `def` and indexes every base row. A
    /// primary-key table is compacted first, so the index covers every row committed
    /// before the statement; writes go on meanwhile (their rows are indexed in memory
    /// by readers until the next compaction). Returns false when an index of that name
    /// exists and `if_not_exists` was given.
    pub async fn create_text_index(self: &Arc<Self>, def: TextIndexDef, if_not_exists: bool) -> Result<bool> {
        if self.has_primary_key() {
            self.compact().await?;
        }
        let table = self.clone();
        tokio::spawn(async move { table.create_text_index_now(def, if_not_exists).await })
            .await
            .map_err(|e| StorageError::internal(format!("text index build task failed: {e}")))?
    }

    async fn create_text_index_now(&self, mut def: TextIndexDef, if_not_exists: bool) -> Result<bool> {
        let _compacting = self.compacting.lock().await;
        let snapshot = self.snapshot();
        if snapshot.manifest.has_index(&def.name) {
            return if if_not_exists { Ok(false) } else { Err(StorageError::IndexExists { name: def.name }) };
        }
        let BaseSnapshot::Lance(base) = &snapshot.base else {
            return Err(StorageError::Unsupported {
                message: "bm25 indexes need a table stored as lance (USING lance)".into(),
            });
        };
        check_columns(&def, &snapshot.manifest.table.schema)?;
        let name = def.name.clone();
        let _ends = EndsBuild { builds: &self.builds, index: &name };
        self.builds.update(&def.name, |s| {
            s.stage = "starting".into();
            s.creating = Some(def.clone());
        });
        // A primary-key table's base changes only under `compacting` (held); other
        // tables write their base directly, so they wait for the build.
        let held = if self.has_primary_key() { None } else { Some(self.writer.lock().await) };
        let ds = match (&held, &self.snapshot().base) {
            (Some(_), BaseSnapshot::Lance(latest)) => latest.clone(),
            _ => base.clone(),
        };
        def.segments.clear();
        if let Some(segment) = build_segment(self, &ds, &def, &uncovered_fragments(&ds, &def)).await? {
            def.segments.push(segment);
        }
        let writer = match held {
            Some(writer) => writer,
            None => self.writer.lock().await,
        };
        let latest = self.snapshot();
        let mut manifest = latest.manifest.successor();
        manifest.text_indexes.push(def);
        self.manifests.commit(&manifest).await?;
        self.publish(manifest, &writer, latest.changes.clone()).await?;
        Ok(true)
    }

    /// `DROP INDEX` of a text index. Its files stay until the table's old versions go.
    pub(crate) async fn drop_text_index(&self, name: &str) -> Result<()> {
        let _compacting = self.compacting.lock().await;
        let writer = self.writer.lock().await;
        let snapshot = self.snapshot();
        let mut manifest = snapshot.manifest.successor();
        manifest.text_indexes.retain(|d| d.name != name);
        self.manifests.commit(&manifest).await?;
        self.publish(manifest, &writer, snapshot.changes.clone()).await?;
        info!(table = %self.name(), index = name, "text index dropped");
        Ok(())
    }

    /// `VACUUM` of a table without a primary key: segments over the fragments appended
    /// since. Returns false when there was nothing to do.
    pub(crate) async fn extend_text_indexes(&self) -> Result<bool> {
        if self.has_primary_key() {
            return Ok(false);
        }
        let _compacting = self.compacting.lock().await;
        let writer = self.writer.lock().await;
        let snapshot = self.snapshot();
        let BaseSnapshot::Lance(ds) = &snapshot.base else { return Ok(false) };
        let defs = &snapshot.manifest.text_indexes;
        if defs.iter().all(|d| uncovered_fragments(ds, d).is_empty()) {
            return Ok(false);
        }
        let mut manifest = snapshot.manifest.successor();
        manifest.text_indexes = refresh(self, ds, defs).await?;
        self.manifests.commit(&manifest).await?;
        self.publish(manifest, &writer, None).await?;
        Ok(true)
    }

    /// After an overwrite of the base (the caller holds the writer, whose head is the
    /// new base): every index covers the new fragments only.
    pub(crate) async fn rebuild_text_indexes(
        &self,
        writer: &mut crate::table::Writer,
        manifest: &mut Manifest,
    ) -> Result<()> {
        let head =
            writer.head.as_ref().ok_or_else(|| StorageError::internal("no head after a base write"))?;
        for def in manifest.text_indexes.iter_mut() {
            def.segments.clear();
        }
        manifest.text_indexes = refresh(self, head, &manifest.text_indexes).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_ids_map_to_row_addresses() {
        let segment = TextSegment {
            id: "s".into(),
            runs: vec![
                FragmentRun { fragment: 3, doc_base: 0, rows: 10 },
                FragmentRun { fragment: 7, doc_base: 10, rows: 5 },
            ],
            docs: 15,
        };
        assert_eq!(segment.address_of(0), Some(3 << 32));
        assert_eq!(segment.address_of(9), Some(3 << 32 | 9));
        assert_eq!(segment.address_of(10), Some(7 << 32));
        assert_eq!(segment.address_of(14), Some(7 << 32 | 4));
        assert_eq!(segment.address_of(15), None);
    }

    #[test]
    fn segments_merge_ten_at_a_time_within_a_tier() {
        let of = |docs: &[u32]| -> Vec<TextSegment> {
            docs.iter().map(|&docs| TextSegment { id: String::new(), runs: Vec::new(), docs }).collect()
        };
        assert_eq!(merge_candidates(&of(&[500; 9])), None);
        assert_eq!(merge_candidates(&of(&[500; 10])), Some((0..10).collect()));
        // The smallest full tier first; other tiers' segments stay where they are.
        let mut docs = vec![5000, 30, 40];
        docs.extend([50; 9]);
        docs.extend([600; 10]);
        assert_eq!(merge_candidates(&of(&docs)), Some((1..11).collect()));
        assert_eq!(merge_candidates(&of(&[0, 1, 0, 1, 0, 1, 0, 1, 0, 1])), Some((0..10).collect()));
    }

    #[test]
    fn tokenizers_check_their_options() {
        let stem = Tokenizer { stemmer: Some("english".into()), ..Tokenizer::default() };
        assert!(stem.analyzer().is_ok());
        assert_eq!(stem.describe(), "default+stem(english)");
        let bad = Tokenizer { stemmer: Some("klingon".into()), ..Tokenizer::default() };
        assert!(bad.analyzer().is_err());
        let ngram = Tokenizer {
            kind: TokenizerKind::Ngram { min: 3, max: 2, prefix_only: false },
            ..Tokenizer::default()
        };
        assert!(ngram.analyzer().is_err());
        assert_ne!(stem.registered_name(), Tokenizer::default().registered_name());
    }

    #[test]
    fn rows_indexed_in_memory_are_searchable() {
        use arrow::array::StringArray;
        use tantivy::collector::TopDocs;
        let def = TextIndexDef {
            name: "i".into(),
            columns: vec![TextColumn::new(
                "body".into(),
                Tokenizer { stemmer: Some("english".into()), ..Tokenizer::default() },
            )],
            segments: vec![],
        };
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
            "body",
            DataType::Utf8,
            true,
        )]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec![Some("Running dogs"), None, Some("a cat sat")]))],
        )
        .unwrap();
        let index = def.index_rows(&[batch]).unwrap();
        let searcher = index.reader().unwrap().searcher();
        let field = index.schema().get_field("body").unwrap();
        let query = tantivy::query::QueryParser::for_index(&index, vec![field]).parse_query("run").unwrap();
        let hits = searcher.search(&query, &TopDocs::with_limit(10).order_by_score()).unwrap();
        assert_eq!(hits.iter().map(|(_, a)| a.doc_id).collect::<Vec<_>>(), vec![0]);
        assert_eq!(searcher.segment_reader(0).max_doc(), 3);
    }
}
