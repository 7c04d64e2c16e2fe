//! Statements that reach files outside the warehouse, under the folders the server's
//! configuration allows ([`crate::catalog::external::allowed`]; anything else is 42501):
//!
//! - `CREATE EXTERNAL TABLE name [(columns)] STORED AS PARQUET | ICEBERG LOCATION
//!   'path'`: a table over the Parquet files of a file or folder, or over an Iceberg
//!   table (its folder or a metadata file), columns inferred (Iceberg: its current
//!   schema) when none are given; read-only (writes get 42809), dropped with `DROP
//!   TABLE` (the files stay).
//! - `REFRESH TABLE name` (and `ANALYZE name`): an external table whose columns were
//!   inferred reads them again (an Iceberg table's newest snapshot is read by every
//!   query anyway); other tables have nothing to refresh.
//! - `COPY (query) | table TO 'path' (FORMAT parquet)`: the rows written as one Parquet
//!   file (to a temporary name, fsynced, then renamed: a reader never sees half a
//!   file). Tag `COPY n`.

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{self, CopyOption, CreateTable, FileFormat, Statement};
use futures::TryStreamExt;
use tarn_storage::external::{ExternalDef, ExternalFormat};
use tarn_storage::StorageError;

use crate::access::detector;
use crate::catalog::external::{allowed, infer_schema, tarn_schema};
use crate::error::{EngineError, Result};
use crate::statements::ddl;
use crate::statements::session::{CommandTag, Output, Session};

impl Session {
    /// `CREATE EXTERNAL TABLE`; `iceberg` when it said `STORED AS ICEBERG` (which the
    /// parser hands over as `PARQUET`, the format sqlparser knows).
    pub(crate) async fn create_external(
        &mut self,
        create: &CreateTable,
        iceberg: bool,
    ) -> Result<CommandTag> {
        let format = match create.file_format {
            Some(FileFormat::PARQUET) if iceberg => ExternalFormat::Iceberg,
            Some(FileFormat::PARQUET) => ExternalFormat::Parquet,
            Some(other) => {
                return Err(EngineError::unsupported(format!(
                    "external tables STORED AS {other} are not supported (STORED AS PARQUET or ICEBERG)"
                )))
            }
            None => {
                return Err(EngineError::syntax("CREATE EXTERNAL TABLE needs STORED AS PARQUET or ICEBERG"))
            }
        };
        let Some(location) = &create.location else {
            return Err(EngineError::syntax("CREATE EXTERNAL TABLE needs LOCATION 'path'"));
        };
        if create.or_replace || create.temporary || !create.constraints.is_empty() {
            return Err(EngineError::unsupported(
                "OR REPLACE, TEMPORARY and constraints of external tables are not supported",
            ));
        }
        let path = allowed(self.engine.external_locations(), location, true)?;
        let name = ddl::table_name(&create.name)?;
        let (schema, declared) = if create.columns.is_empty() {
            (self.external_columns(format, &path).await?, false)
        } else {
            let mut fields = Vec::with_capacity(create.columns.len());
            for column in &create.columns {
                let (field, meta, is_key) = ddl::column_def(column)?;
                if is_key || meta.default.is_some() || meta.generated.is_some() || meta.identity.is_some() {
                    return Err(EngineError::unsupported(
                        "keys, defaults and generated columns of external tables are not supported",
                    ));
                }
                fields.push(field.with_nullable(true));
            }
            (Arc::new(Schema::new(fields)), true)
        };
        if format == ExternalFormat::Iceberg {
            // Its metadata must be readable now, not at the first query.
            crate::catalog::iceberg::load(&path).await?;
        }
        let def = ExternalDef {
            name,
            format,
            location: path.display().to_string(),
            schema,
            declared,
            comments: Default::default(),
        };
        self.engine.warehouse().create_external(def, create.if_not_exists).await?;
        Ok(CommandTag::new("CREATE EXTERNAL TABLE"))
    }

    /// `REFRESH TABLE name` / `ANALYZE [name]`.
    pub(crate) async fn refresh(&mut self, analyze: &ast::Analyze) -> Result<CommandTag> {
        let warehouse = self.engine.warehouse().clone();
        let externals = match &analyze.table_name {
            Some(name) => {
                let name = ddl::table_name(name)?;
                match warehouse.external(&name) {
                    Some(external) => vec![external],
                    None if warehouse.table(&name).is_some() => Vec::new(),
                    None => return Err(StorageError::TableNotFound { name }.into()),
                }
            }
            None => warehouse.all_externals(),
        };
        for external in externals.iter().filter(|e| !e.declared) {
            let path = allowed(self.engine.external_locations(), &external.location, true)?;
            let schema = self.external_columns(external.format, &path).await?;
            if schema != external.schema {
                tracing::info!(table = %external.name, "external table's columns changed");
                warehouse.replace_external(ExternalDef { schema, ..external.as_ref().clone() }).await?;
            }
        }
        // Tarn tables: the sensitive-data detector reads a sample of the text columns it
        // has not classified (rows written before it ran, or too few so far).
        let tables = match &analyze.table_name {
            Some(name) => warehouse.table(&ddl::table_name(name)?).into_iter().collect(),
            None => warehouse.all_tables(),
        };
        for table in tables.iter().filter(|t| !t.name().schema.starts_with("pg_temp")) {
            let name = table.name();
            let reference =
                datafusion::sql::TableReference::partial(name.schema.as_str(), name.table.as_str());
            let sample = self.ctx.table(reference).await?.limit(0, Some(detector::SAMPLE))?.collect().await?;
            self.classify_columns(vec![(name, sample)], true).await;
        }
        Ok(CommandTag::new(if analyze.has_table_keyword { "REFRESH TABLE" } else { "ANALYZE" }))
    }

    /// The columns of the external data at `path`: every Parquet file's, merged, or an
    /// Iceberg table's current schema.
    async fn external_columns(&self, format: ExternalFormat, path: &std::path::Path) -> Result<SchemaRef> {
        match format {
            ExternalFormat::Parquet => Ok(tarn_schema(&*infer_schema(&self.ctx.state(), path).await?)),
            ExternalFormat::Iceberg => {
                crate::catalog::iceberg::schema_of(&crate::catalog::iceberg::load(path).await?)
            }
        }
    }

    /// `COPY ... TO 'path' (FORMAT parquet)`.
    pub(crate) async fn copy_to_file(&mut self, statement: &Statement) -> Result<CommandTag> {
        let Statement::Copy {
            source,
            to,
            target: ast::CopyTarget::File { filename },
            options,
            legacy_options,
            ..
        } = statement
        else {
            return Err(EngineError::Internal { message: "not a COPY to a file".into() });
        };
        if !to {
            return Err(EngineError::unsupported(
                "COPY FROM a file is not supported: CREATE EXTERNAL TABLE over it and INSERT ... SELECT, or COPY FROM STDIN",
            ));
        }
        let parquet = options
            .iter()
            .any(|o| matches!(o, CopyOption::Format(f) if f.value.eq_ignore_ascii_case("parquet")));
        let others = options.iter().any(|o| !matches!(o, CopyOption::Format(_)));
        if !parquet || others || !legacy_options.is_empty() {
            return Err(EngineError::unsupported(
                "COPY TO a file writes Parquet only, with no other option: COPY ... TO 'path' (FORMAT parquet)",
            ));
        }
        let path = allowed(self.engine.external_locations(), filename, false)?;
        let query = crate::statements::copy::source_query(source)?;
        let Output::Rows { schema, stream, .. } = Box::pin(self.execute_now(query)).await? else {
            return Err(EngineError::syntax("COPY TO needs a query that returns rows"));
        };
        let rows = write_parquet(&path, schema, stream).await?;
        Ok(CommandTag::with_rows("COPY", rows))
    }
}

/// Writes `stream` to `path` as one Parquet file: a temporary file beside it first,
/// fsynced, then renamed over it. Returns the rows written.
async fn write_parquet(
    path: &std::path::Path,
    schema: SchemaRef,
    mut stream: datafusion::physical_plan::SendableRecordBatchStream,
) -> Result<u64> {
    use datafusion::parquet::arrow::AsyncArrowWriter;
    use datafusion::parquet::basic::{Compression, ZstdLevel};
    use datafusion::parquet::file::properties::WriterProperties;

    let io = |e: std::io::Error| EngineError::DataException {
        message: format!("writing {}: {e}", path.display()),
    };
    let temporary = path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("copy"),
        std::process::id()
    ));
    let file = tokio::fs::File::create(&temporary).await.map_err(io)?;
    let properties =
        WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
    // Tarn's types (`text` as `Utf8`, timestamps in microseconds), whatever the plan made.
    let target = tarn_schema(&schema);
    let written = async {
        let mut writer = AsyncArrowWriter::try_new(file, target.clone(), Some(properties))
            .map_err(|e| EngineError::DataException { message: e.to_string() })?;
        let mut rows = 0u64;
        while let Some(batch) = stream.try_next().await? {
            rows += batch.num_rows() as u64;
            let columns = batch
                .columns()
                .iter()
                .zip(target.fields())
                .map(|(column, field)| arrow::compute::cast(column, field.data_type()))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let batch = arrow::array::RecordBatch::try_new(target.clone(), columns)?;
            writer.write(&batch).await.map_err(|e| EngineError::DataException { message: e.to_string() })?;
        }
        writer.close().await.map_err(|e| EngineError::DataException { message: e.to_string() })?;
        Ok::<_, EngineError>(rows)
    }
    .await;
    let rows = match written {
        Ok(rows) => rows,
        Err(e) => {
            let _ = tokio::fs::remove_file(&temporary).await;
            return Err(e);
        }
    };
    tokio::fs::File::open(&temporary).await.map_err(io)?.sync_all().await.map_err(io)?;
    tokio::fs::rename(&temporary, path).await.map_err(io)?;
    if let Some(folder) = path.parent() {
        tokio::fs::File::open(folder).await.map_err(io)?.sync_all().await.map_err(io)?;
    }
    Ok(rows)
}
