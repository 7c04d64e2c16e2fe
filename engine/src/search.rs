//! Vector search the pgvector way: the type, its distances and operators, indexes, and
//! the kNN planning that runs `ORDER BY <distance> LIMIT k` on them.
//!
//! - [`vector`]: pgvector's `vector(n)`: text form, `to_vector`, casts.
//! - [`distance`]: distances, vector functions and the `<->`/`<=>`/`<#>`/`<+>` operators.
//! - [`vector_aggregates`]: `avg` and `sum` of vectors.
//! - [`index_ddl`]: `CREATE INDEX ... USING hnsw|ivfflat|ivf_pq`, `DROP INDEX`.
//! - [`knn`]: `ORDER BY <distance> LIMIT k` as an index search or an exact one.
//! - [`base_cache`]: base versions held in memory for kNN searches.
//! - [`bm25`]: `@@@`, `bm25_score` and the rule that plans them as one search of a
//!   bm25 index; [`text_search`] runs it over the index, unindexed fragments and
//!   change rows.
//! - [`hybrid`]: `hybrid_search(...)`, fused from a BM25 and a kNN search.
//! - [`find_tables`]: `tarn_find_tables(question)`, the relations a question is about,
//!   by hybrid search over catalog documents.
//! - [`one_batch`]: the physical plan node both searches run as.
//! - [`query_value`]: a search's query given as a statement parameter.

pub mod base_cache;
pub mod bm25;
pub mod distance;
pub mod find_tables;
pub mod hybrid;
pub mod index_ddl;
pub mod knn;
pub mod one_batch;
pub mod query_value;
pub mod text_search;
pub mod vector;
pub mod vector_aggregates;
