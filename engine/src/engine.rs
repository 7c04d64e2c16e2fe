//! [`Engine`]: the warehouse plus the one DataFusion session template every connection
//! starts from. [`Engine::open`] is the one place that registers Tarn's extensions:
//! catalog, types, functions, configuration.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::{SessionConfig, SessionContext};
use tarn_storage::{TableName, Warehouse};

use crate::activity::Activity;
use crate::catalog::provider::DefaultParser;
use crate::catalog::warehouse::{TarnCatalog, CATALOG_NAME};
use crate::error::Result;
use crate::search::vector::ToVector;
use crate::statements::ddl::DEFAULT_SCHEMA;
use crate::statements::session::Session;
use crate::statements::transaction::TxState;
use crate::types::TarnTypePlanner;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// A folder path or `file://` URL.
    pub warehouse: String,
    /// The database name clients connect to.
    pub database: String,
    /// Memory for query execution (sorts, joins, aggregates spill or fail past it).
    pub memory_limit_bytes: usize,
    /// Threads per query (DataFusion's target partitions).
    pub query_parallelism: usize,
    /// The folder of embedding models `embed()` loads by name; without one, `embed()`
    /// fails with an error that names this setting.
    pub models_dir: Option<std::path::PathBuf>,
    /// History retention of tables that set none (`'7 days'`, `'12h'`, `0`).
    pub history_retention: String,
    /// An `s3://` warehouse's settings, and where the write-ahead log lives.
    pub storage: tarn_storage::OpenOptions,
    /// Folders external tables may read and `COPY ... TO` may write (absolute paths).
    pub external_locations: Vec<std::path::PathBuf>,
    /// Keep the audit trail of every statement (`tarn_storage::audit`).
    pub audit: bool,
    /// The trail's statements with their literals replaced by `?`.
    pub audit_redact_literals: bool,
    /// Emit lineage events (`crate::lineage`), and where to; `None`: none.
    pub lineage: Option<crate::lineage::LineageConfig>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            warehouse: "./tarn-data".into(),
            database: "tarn".into(),
            memory_limit_bytes: 4 << 30,
            query_parallelism: std::thread::available_parallelism().map_or(2, |n| n.get()),
            models_dir: None,
            history_retention: "7 days".into(),
            storage: Default::default(),
            external_locations: Vec::new(),
            audit: true,
            audit_redact_literals: false,
            lineage: None,
        }
    }
}

pub struct Engine {
    warehouse: Arc<Warehouse>,
    config: EngineConfig,
    parse_default: DefaultParser,
    maintenance: tokio::task::JoinHandle<()>,
    /// Cloned into every session; holds no per-session state.
    template: SessionContext,
    /// Bumped by every statement that changes the catalog (tables, columns, indexes,
    /// schemas): plans kept from before are made again (see `statements::plan_cache`).
    catalog_epoch: AtomicU64,
    /// Sessions made so far (each one's number names its temporary schema).
    sessions: AtomicU64,
    /// The server's sessions, as the server registers them.
    activity: Arc<Activity>,
    /// Values of text columns the sensitive-data detector has yet to classify.
    samples: crate::access::detector::Samples,
    /// Where statements' lineage events go, when they are emitted.
    lineage: Option<Arc<crate::lineage::Lineage>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("warehouse", &self.warehouse).finish_non_exhaustive()
    }
}

impl Engine {
    pub async fn open(config: EngineConfig) -> Result<Arc<Engine>> {
        let retention =
            tarn_storage::compaction::parse_retention(&config.history_retention).ok_or_else(|| {
                crate::error::EngineError::InvalidParameter {
                    message: format!(
                        "invalid history_retention \"{}\" (expected a duration like '7 days')",
                        config.history_retention
                    ),
                }
            })?;
        let warehouse = Arc::new(Warehouse::open_with(&config.warehouse, &config.storage).await?);
        warehouse.set_history_retention(retention);
        crate::statements::temp::drop_leftovers(&warehouse).await?;
        let models = Arc::new(tarn_models::Models::new(config.models_dir.clone()));
        let template = build_context(&config, &models);
        let activity = Arc::new(Activity::default());
        // Defaults are parsed with a context that knows the functions but no tables.
        let parser_ctx = build_context(&config, &models);
        crate::functions::sequences::register(&parser_ctx, Arc::downgrade(&warehouse));
        let parse_default = DefaultParser::new(move |sql: &str| {
            let schema = datafusion::common::DFSchema::empty();
            match parser_ctx.state().create_logical_expr(sql, &schema) {
                Ok(expr) => Some(expr),
                Err(e) => {
                    tracing::warn!(default = sql, error = %e, "column default does not parse; ignored");
                    None
                }
            }
        });
        template.register_catalog(
            CATALOG_NAME,
            Arc::new(TarnCatalog::new(
                warehouse.clone(),
                config.database.as_str().into(),
                parse_default.clone(),
                Arc::default(),
                // The template's catalog is replaced in every session; it checks nothing.
                crate::access::Access::new(warehouse.clone(), "", String::new()),
                activity.clone(),
                config.external_locations.clone().into(),
            )),
        );
        crate::functions::register(&template, &config.database);
        crate::catalog::pg_catalog::functions::register(
            &template,
            Arc::downgrade(&warehouse),
            Arc::downgrade(&activity),
        );
        let resolve: crate::catalog::provider::TableResolver = {
            let warehouse = Arc::downgrade(&warehouse);
            Arc::new(move |name: &str| {
                let warehouse = warehouse.upgrade()?;
                let name = match name.split_once('.') {
                    Some((schema, table)) => TableName::new(schema, table),
                    None => TableName::new(DEFAULT_SCHEMA, name),
                };
                warehouse.table(&name)
            })
        };
        let external_at: crate::catalog::provider::ExternalResolver = {
            let warehouse = Arc::downgrade(&warehouse);
            let locations: Arc<[std::path::PathBuf]> = config.external_locations.clone().into();
            Arc::new(move |name: &str, version: i64| {
                let warehouse = warehouse.upgrade()?;
                let name = match name.split_once('.') {
                    Some((schema, table)) => TableName::new(schema, table),
                    None => TableName::new(DEFAULT_SCHEMA, name),
                };
                let external = warehouse.external(&name)?;
                Some(crate::catalog::external::provider(&external, &locations, Some(version)))
            })
        };
        template.register_udtf(
            "tarn_as_of",
            Arc::new(crate::catalog::provider::AsOfFunction {
                resolve: resolve.clone(),
                defaults: parse_default.clone(),
                external_at,
            }),
        );
        template.register_udtf(
            "table_changes",
            Arc::new(crate::catalog::provider::TableChangesFunction { resolve }),
        );
        template.register_udtf(
            "tarn_find_tables",
            Arc::new(crate::search::find_tables::FindTablesFunction(Arc::new(
                crate::search::find_tables::FindTables::new(Arc::downgrade(&warehouse), models.clone()),
            ))),
        );
        template.register_udtf(
            "lineage",
            Arc::new(crate::lineage::graph::LineageFunction(Arc::downgrade(&warehouse))),
        );
        template.register_udtf(
            "tarn_audit_verify",
            Arc::new(crate::catalog::system::AuditVerifyFunction(Arc::downgrade(&warehouse))),
        );
        let maintenance = warehouse.start_maintenance();
        if config.audit {
            warehouse.keep_audit().await?;
        }
        let lineage = match &config.lineage {
            Some(lineage) => crate::lineage::Lineage::open(&warehouse, lineage).await?,
            None => None,
        };
        Ok(Arc::new(Engine {
            warehouse,
            config,
            parse_default,
            maintenance,
            template,
            catalog_epoch: AtomicU64::new(0),
            sessions: AtomicU64::new(0),
            activity,
            samples: Default::default(),
            lineage,
        }))
    }

    /// Drops the ended sessions' temporary schemas, stops background work (flushes,
    /// compactions), waiting for any under way, and closes the warehouse.
    pub async fn close(&self) {
        // The sessions have ended: their temporary schemas go while the warehouse can
        // still be written (closing lets go of the writer's lease).
        if let Err(e) = crate::statements::temp::drop_leftovers(&self.warehouse).await {
            tracing::warn!(error = %e, "could not drop the sessions' temporary schemas");
        }
        if let Some(audit) = self.warehouse.audit() {
            if let Err(e) = audit.seal().await {
                tracing::warn!(error = %e, "could not seal the last audit records");
            }
        }
        if let Some(lineage) = self.warehouse.lineage() {
            if let Err(e) = lineage.seal().await {
                tracing::warn!(error = %e, "could not seal the last lineage events");
            }
        }
        self.warehouse.close().await;
        self.maintenance.abort();
    }

    /// The audit trail, when kept (none when turned off, or on a read-only replica).
    pub fn audit(&self) -> Option<&Arc<tarn_storage::audit::AuditLog>> {
        self.warehouse.audit()
    }

    /// Where lineage events go, when the server emits them.
    pub fn lineage(&self) -> Option<&Arc<crate::lineage::Lineage>> {
        self.lineage.as_ref()
    }

    /// The audit trail keeps statements without their literals.
    pub fn audit_redacts_literals(&self) -> bool {
        self.config.audit_redact_literals
    }

    /// Parses column defaults into expressions (as INSERT uses them).
    pub(crate) fn default_parser(&self) -> &DefaultParser {
        &self.parse_default
    }

    /// Folders external tables may read and `COPY ... TO` may write.
    pub fn external_locations(&self) -> &[std::path::PathBuf] {
        &self.config.external_locations
    }

    pub fn warehouse(&self) -> &Arc<Warehouse> {
        &self.warehouse
    }

    /// The sessions, for the server to register each (see [`crate::activity`]).
    pub fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    /// Changes with every change to the catalog (see the field).
    pub fn catalog_epoch(&self) -> u64 {
        // A replica's catalog also changes when the writer's DDL reaches it.
        self.catalog_epoch.load(Ordering::Acquire) + self.warehouse.catalog_generation()
    }

    /// Notes a change to the catalog (after the statement made it, failed or not).
    pub(crate) fn samples(&self) -> &crate::access::detector::Samples {
        &self.samples
    }

    pub(crate) fn catalog_changed(&self) {
        self.catalog_epoch.fetch_add(1, Ordering::AcqRel);
    }

    pub fn database(&self) -> &str {
        &self.config.database
    }

    /// A new session (one per connection) for `user`.
    pub fn session(self: &Arc<Self>, user: &str) -> Session {
        // A catalog list of its own: the session's catalog reads its transaction's snapshots.
        let state = SessionStateBuilder::new_from_existing(self.template.state())
            .with_catalog_list(Arc::new(datafusion::catalog::MemoryCatalogProviderList::new()))
            .build();
        let ctx = SessionContext::new_with_state(state);
        let tx = Arc::new(TxState::new(self.warehouse.audit().is_some() || self.lineage.is_some()));
        let number = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        let temp_schema =
            crate::statements::temp::TempSchema::new(self.warehouse.clone(), number).name().to_string();
        let access = crate::access::Access::new(self.warehouse.clone(), user, temp_schema);
        ctx.register_catalog(
            CATALOG_NAME,
            Arc::new(TarnCatalog::new(
                self.warehouse.clone(),
                self.config.database.as_str().into(),
                self.parse_default.clone(),
                tx.clone(),
                access.clone(),
                self.activity.clone(),
                self.config.external_locations.clone().into(),
            )),
        );
        Session::new(self.clone(), ctx, user, tx, access, number)
    }
}

fn build_context(config: &EngineConfig, models: &Arc<tarn_models::Models>) -> SessionContext {
    let mut session_config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG_NAME, DEFAULT_SCHEMA)
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(true)
        .with_target_partitions(config.query_parallelism.max(1))
        .with_extension(Arc::new(crate::search::knn::SearchSettings::default()));
    let options = session_config.options_mut();
    options.sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
    options.sql_parser.enable_ident_normalization = true;
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(config.memory_limit_bytes)))
        .build_arc()
        .expect("runtime environment");
    let row_subqueries = crate::statements::row_subqueries::RowSubqueries::default();
    let subquery_state = row_subqueries.state.clone();
    let state = SessionStateBuilder::new()
        .with_config(session_config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_type_planner(Arc::new(TarnTypePlanner))
        .with_query_planner(Arc::new(crate::search::knn::TarnQueryPlanner))
        .with_optimizer_rule(Arc::new(crate::search::knn::KnnRule))
        .with_optimizer_rule(Arc::new(crate::search::bm25::Bm25Rule))
        // After DataFusion's own rules, which join the subqueries they can.
        .with_optimizer_rule(Arc::new(row_subqueries))
        // Vector casts are rewritten before type coercion looks for an Arrow cast.
        .with_analyzer_rules(
            [
                Arc::new(crate::search::vector::VectorCasts) as _,
                Arc::new(crate::catalog::pg_catalog::CatalogLiterals) as _,
                Arc::new(crate::statements::lateral_unnest::LateralUnnest) as _,
                Arc::new(crate::statements::distinct_on::DistinctOnSubqueries) as _,
                Arc::new(crate::statements::scalar_subqueries::ScalarSubqueryRows {
                    state: subquery_state.clone(),
                }) as _,
            ]
            .into_iter()
            .chain(datafusion::optimizer::Analyzer::new().rules)
            // After type coercion, which adds casts of its own (`'a' || 1.5`).
            .chain([Arc::new(crate::statements::pg_casts::TextCasts) as _])
            .collect(),
        )
        .build();
    let state = state;
    // DataFusion 54's physical filter pushdown moves a filter above an outer join into
    // the join's preserved side when both sides have a column of the same name, mixing
    // the two columns up (`r1 RIGHT JOIN r2 ... WHERE CASE ... r1.b ... r2.b ...`: wrong
    // rows; found by tests/differential.rs). Filters are pushed into Tarn's scans by the
    // logical optimizer already; this rule's later pass (dynamic filters) stays, and
    // Tarn's base scans take them (`catalog/skipping.rs`), with NULL keys kept under a
    // join whose NULL keys match.
    let rules: Vec<_> = state
        .physical_optimizers()
        .iter()
        .filter(|rule| rule.name() != "FilterPushdown")
        .cloned()
        .chain([Arc::new(crate::catalog::skipping::NullMatchingJoins) as _])
        .collect();
    let mut state =
        SessionStateBuilder::new_from_existing(state).with_physical_optimizer_rules(rules).build();
    // Appended: DataFusion's own planners keep their operators, ours see the rest.
    state
        .register_expr_planner(Arc::new(crate::search::distance::VectorOperators))
        .expect("expression planner");
    state.register_expr_planner(Arc::new(crate::search::bm25::TextOperators)).expect("expression planner");
    let _ = subquery_state.set(state.clone());
    let ctx = SessionContext::new_with_state(state);
    for function in crate::search::distance::functions().into_iter().chain(crate::search::bm25::functions()) {
        ctx.register_udf(function);
    }
    // Under the built-ins' names: they take vectors too.
    ctx.register_udaf(crate::search::vector_aggregates::VectorAware::avg());
    ctx.register_udaf(crate::search::vector_aggregates::VectorAware::sum());
    ctx.register_udf(ScalarUDF::from(ToVector::default()));
    ctx.register_udf(ScalarUDF::from(crate::statements::literals::ByteaIn::default()));
    crate::functions::embed::register(&ctx, models);
    ctx
}
