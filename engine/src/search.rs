//! Vector search the pgvector way: the type, its distances and operators, indexes, and
//! the kNN planning that runs `ORDER BY <distance> LIMIT k` on them.
//!
//! - [`vector`]: pgvector's `vector(n)`: text form, `to_vector`, casts.
//! - [`distance`]: distances, vector functions and the `<->`/`<=>`/`<#>`/`<+>` operators.
//! - [`vector_aggregates`]: `avg` and `sum` of vectors.
//! - [`index_ddl`]: `CREATE INDEX ... USING hnsw|ivfflat|ivf_pq`, `DROP INDEX`.
//! - [`knn`]: `ORDER BY <distance> LIMIT k` as an index search or an exact one.
//! - [`base_cache`]: base versions held in memory for kNN searches.

pub mod base_cache;
pub mod distance;
pub mod index_ddl;
pub mod knn;
pub mod vector;
pub mod vector_aggregates;
