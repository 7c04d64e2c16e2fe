//! One connection: pgwire's startup, simple-query and extended-query handlers around one
//! engine [`Session`].
//!
//! pgwire asks the server for a fresh set of handlers per connection
//! ([`ConnectionHandlers`]); they share one [`Connection`], whose session is created at
//! startup once the user and database are known.

use std::fmt::Debug;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use arrow::datatypes::DataType;
use async_trait::async_trait;
use futures::{FutureExt, Sink, SinkExt, StreamExt};
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::{
    protocol_negotiation, save_startup_parameters_to_metadata, AuthOutcome, StartupHandler,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{send_describe_response, ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DescribePortalResponse, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireConnectionState, PgWireServerHandlers, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator, Type, DEFAULT_NAME,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::ParameterDescription;
use pgwire::messages::extendedquery::{Describe, TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT};
use pgwire::messages::response::{ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{Authentication, BackendKeyData, ParameterStatus};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tarn_engine::activity::{Idle, Registered};
use tarn_engine::statements::copy::CopyIn;
use tarn_engine::types::{arrow_type_of_oid, pg_type_of_arrow};
use tarn_engine::{CommandTag, Engine, EngineError, Output, Prepared, RowsCommand, Session, TxStatus};
use tokio::sync::Mutex;
use tracing::{debug, info_span, Instrument};

use crate::audit::{Identity, StatementAudit};
use crate::copy::start_copy;
use crate::encode::{decode_param, encode_batch, field_infos, wire_type};
use crate::errors::{client_error, error_context, ClientError};
use crate::frontend::Frontend;
use crate::interrupt::{Canceller, Interrupt, Registration, Terminated};
use crate::socket::IdleTimeout;

/// What every connection shares.
pub struct Shared {
    pub engine: Arc<Engine>,
    pub frontend: Arc<Frontend>,
    pub pids: RandomPidSecretKeyGenerator,
}

/// What a started session holds until its connection ends.
struct Started {
    _slot: tokio::sync::OwnedSemaphorePermit,
    registration: Registration,
    activity: Registered,
    identity: Identity,
}

/// The state of one connection.
pub struct Connection {
    shared: Arc<Shared>,
    /// Created by the startup handler; `None` before.
    session: Mutex<Option<Session>>,
    /// Once started: the session's slot among `max_connections`, its place among the
    /// sessions a cancel request can reach, and its entry in `pg_stat_activity`. All
    /// go with the connection.
    started: std::sync::Mutex<Option<Started>>,
    /// The reported settings as the client last heard them (ParameterStatus), and the
    /// settings' generation then.
    reported: std::sync::Mutex<(u64, Vec<(String, String)>)>,
    /// The `COPY ... FROM STDIN` taking the client's data, from its statement to CopyDone
    /// or CopyFail (see `crate::copy`).
    pub(crate) copy_in: std::sync::Mutex<Option<CopyIn>>,
    /// Its audit record, finished when the data is in (with the rows written) or the
    /// copy fails.
    pub(crate) copy_in_audit: std::sync::Mutex<Option<StatementAudit>>,
}

impl Connection {
    pub(crate) async fn with_session<T>(&self, f: impl AsyncFnOnce(&mut Session) -> T) -> PgWireResult<T> {
        let mut guard = self.session.lock().await;
        let session = guard.as_mut().ok_or(PgWireError::NotReadyForQuery)?;
        Ok(f(session).await)
    }

    /// The reported settings (`application_name`, `DateStyle`, ...) whose values
    /// changed since the client last heard them.
    fn changed_parameters(&self, session: &Session) -> Vec<(String, String)> {
        let settings = session.settings();
        let mut reported = self.reported.lock().expect("connection");
        if reported.0 == settings.generation() {
            return vec![];
        }
        let now = settings.reported();
        let changed = now.iter().filter(|pair| !reported.1.contains(pair)).cloned().collect();
        *reported = (settings.generation(), now);
        changed
    }

    /// A statement (`sql`) starts: `pg_stat_activity` shows it, and what stops it is
    /// returned: a cancel request, or its `statement_timeout`.
    fn statement_starts(&self, session: &Session, sql: &str) -> Option<Interrupt> {
        let timeout = session.settings().duration("statement_timeout");
        let started = self.started.lock().expect("connection");
        started.as_ref().map(|started| {
            started.activity.started(sql);
            started.registration.statement(timeout)
        })
    }

    /// A statement's audit record begins (none before startup ends, or without a
    /// trail). Its text is the client's, or when the query string held several
    /// statements (`many`), the statement's own (as parsed).
    fn audit_starts(&self, session: &Session, prepared: &Prepared, many: bool) -> Option<StatementAudit> {
        let engine = &self.shared.engine;
        let log = engine.audit()?.clone();
        let started = self.started.lock().expect("connection");
        let identity = &started.as_ref()?.identity;
        let application = session.settings().get("application_name").unwrap_or_default();
        let own;
        let sql = match many {
            true => {
                own = prepared.statement.statement.to_string();
                own.as_str()
            }
            false => &prepared.sql,
        };
        Some(StatementAudit::start(log, identity, application, sql, engine.audit_redacts_literals()))
    }

    /// The session waits for its client again (`pg_stat_activity`'s state).
    fn now_idle(&self, session: &Session) {
        let idle = match session.tx_status() {
            TxStatus::Idle => Idle::Idle,
            TxStatus::InBlock => Idle::InTransaction,
            TxStatus::Failed => Idle::Aborted,
        };
        let application_name = session.settings().get("application_name").unwrap_or_default();
        if let Some(started) = self.started.lock().expect("connection").as_ref() {
            started.activity.idle(idle, application_name);
        }
    }

    /// Set once `pg_terminate_backend` named this session.
    pub(crate) fn terminated(&self) -> Option<Arc<Terminated>> {
        self.started.lock().expect("connection").as_ref().map(|s| s.registration.terminated())
    }
}

/// Runs one statement's work under its [`Interrupt`] (none before startup ends).
async fn interruptible<T>(
    interrupt: &mut Option<Interrupt>,
    work: impl Future<Output = Result<T, EngineError>>,
) -> Result<T, EngineError> {
    match interrupt {
        Some(interrupt) => interrupt.run(work).await,
        None => work.await,
    }
}

/// `start_copy` under the statement's [`Interrupt`]: a `COPY ... TO STDOUT` sends its
/// rows inside it.
async fn copy_interruptible(
    interrupt: &mut Option<Interrupt>,
    copy: impl Future<Output = PgWireResult<Response>>,
) -> PgWireResult<Response> {
    let copy = async { Ok::<_, EngineError>(copy.await) };
    interruptible(interrupt, copy).await.map_err(engine_error)?
}

/// A statement's outcome, recorded in the audit trail.
fn audited(
    audit: Option<StatementAudit>,
    outcome: Result<Output, EngineError>,
) -> Result<Output, EngineError> {
    let Some(audit) = audit else { return outcome };
    match outcome {
        Ok(output) => Ok(audit.succeeded(output)),
        Err(e) => {
            audit.failed(&e);
            Err(e)
        }
    }
}

/// A COPY's outcome, recorded in the audit trail (its row count is in its tag); a
/// `COPY ... FROM STDIN` waiting for its data keeps its record in `pending` until
/// CopyDone or CopyFail ([`crate::copy`]).
fn audit_copy(
    audit: Option<StatementAudit>,
    outcome: &PgWireResult<Response>,
    pending: &std::sync::Mutex<Option<StatementAudit>>,
) {
    let Some(audit) = audit else { return };
    match outcome {
        Ok(Response::CopyIn(_)) => *pending.lock().expect("copy audit lock") = Some(audit),
        Ok(Response::Execution(tag)) => audit.done(copied_rows(tag)),
        Ok(_) => audit.done(None),
        Err(PgWireError::UserError(info)) => audit.failed_with(&info.code),
        Err(_) => audit.failed_with("XX000"),
    }
}

/// The count of a `COPY n` tag.
fn copied_rows(tag: &pgwire::api::results::Tag) -> Option<u64> {
    let complete: pgwire::messages::response::CommandComplete = tag.clone().into();
    complete.tag.rsplit(' ').next()?.parse().ok()
}

/// A result's rows under the statement's [`Interrupt`].
fn interruptible_rows(output: Output, interrupt: Option<Interrupt>) -> Output {
    match (output, interrupt) {
        (Output::Rows { schema, stream, command }, Some(interrupt)) => {
            Output::Rows { schema, stream: interrupt.rows(stream), command }
        }
        (output, _) => output,
    }
}

/// The handlers pgwire asks for, all backed by one [`Connection`].
pub struct ConnectionHandlers {
    connection: Arc<Connection>,
}

impl ConnectionHandlers {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            connection: Arc::new(Connection {
                shared,
                session: Mutex::new(None),
                started: Default::default(),
                reported: Default::default(),
                copy_in: Default::default(),
                copy_in_audit: Default::default(),
            }),
        }
    }

    /// Set once `pg_terminate_backend` named this session (`None` before startup).
    pub fn terminated(&self) -> Option<Arc<Terminated>> {
        self.connection.terminated()
    }

    /// How long the session may sit idle before it is closed: its
    /// `idle_in_transaction_session_timeout` inside a transaction block, its
    /// `idle_session_timeout` outside one.
    pub async fn idle_timeout(&self) -> Option<IdleTimeout> {
        let guard = self.connection.session.lock().await;
        let session = guard.as_ref()?;
        if session.tx_status() == TxStatus::Idle {
            Some(IdleTimeout {
                after: session.settings().duration("idle_session_timeout")?,
                code: "57P05",
                message: "terminating connection due to idle-session timeout",
            })
        } else {
            Some(IdleTimeout {
                after: session.settings().duration("idle_in_transaction_session_timeout")?,
                code: "25P03",
                message: "terminating connection due to idle-in-transaction timeout",
            })
        }
    }
}

pub struct Handler(pub(crate) Arc<Connection>);

impl PgWireServerHandlers for ConnectionHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::new(Handler(self.connection.clone()))
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::new(crate::flush::FlushAtSync(Arc::new(Handler(self.connection.clone()))))
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(Handler(self.connection.clone()))
    }

    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        Arc::new(Handler(self.connection.clone()))
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::new(Canceller(self.connection.shared.frontend.interrupts.clone()))
    }
}

pub(crate) fn engine_error(error: EngineError) -> PgWireError {
    debug!(%error, "statement failed");
    let mut wire = client_error(&error).into_pgwire();
    if let (PgWireError::UserError(info), Some(context)) = (&mut wire, error_context(&error)) {
        info.where_context = Some(context.to_string());
    }
    wire
}

/// Runs one statement's work. A panic anywhere in it (our code, DataFusion, Lance)
/// becomes an internal error (XX000) for this statement alone, logged with the
/// statement; the caller notes the error on the session as for any other
/// (`Session::note_error` also drops what the statement left half done), and the
/// session and every other connection go on.
pub(crate) async fn guarded<T>(
    sql: &(dyn std::fmt::Display + Sync),
    work: impl Future<Output = Result<T, EngineError>>,
) -> Result<T, EngineError> {
    match AssertUnwindSafe(work).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => Err(panicked(panic, sql)),
    }
}

fn panicked(panic: Box<dyn std::any::Any + Send>, sql: &(dyn std::fmt::Display + Sync)) -> EngineError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string());
    let statement = sql.to_string();
    tracing::error!(statement = %truncate(&statement, 2000), panic = %message, "statement panicked");
    EngineError::Internal { message: format!("statement panicked: {message}") }
}

#[async_trait]
impl StartupHandler for Handler {
    /// Startup: the `[[hba]]` rule for the client decides between trust, SCRAM and a
    /// refusal; then the session starts ([`Handler::start_session`]).
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let frontend = &self.0.shared.frontend;
        let outcome = match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                let user = startup.parameters.get("user").cloned().unwrap_or_default();
                if user.is_empty() {
                    return Err(ClientError::fatal(
                        "28000",
                        "no PostgreSQL user name specified in startup packet",
                    ));
                }
                // pg8000 sends no database: Postgres then uses the user name.
                let database = startup.parameters.get("database").unwrap_or(&user);
                let peer = client.socket_addr().ip();
                match frontend.hba.method(peer, &user, database, client.is_secure()) {
                    Err(refused) => return Err(ClientError::fatal("28000", refused)),
                    Ok(crate::auth::Method::Trust) => {
                        AuthOutcome::Authenticated { identity: None, final_message: None }
                    }
                    Ok(_) => {
                        let scram = frontend.scram.for_connection(client.is_secure()).create();
                        frontend.auth.begin_authentication(client, scram).await?
                    }
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                match frontend.auth.advance_authentication(client, message).await {
                    Err(PgWireError::InvalidPassword(_)) => {
                        let user = client.metadata().get("user").cloned().unwrap_or_default();
                        tracing::info!(user, peer = %client.socket_addr(), "password authentication failed");
                        return Err(ClientError::fatal(
                            "28P01",
                            format!("password authentication failed for user \"{user}\""),
                        ));
                    }
                    outcome => outcome?,
                }
            }
            _ => return Ok(()),
        };
        match outcome {
            AuthOutcome::InProgress => Ok(()),
            AuthOutcome::Authenticated { final_message, .. } => {
                if let Some(message) = final_message {
                    client.feed(PgWireBackendMessage::Authentication(message)).await?;
                }
                self.start_session(client).await
            }
        }
    }
}

impl Handler {
    /// After authentication: the database check, a slot among `max_connections`, the
    /// session with the client's startup settings, then AuthenticationOk,
    /// ParameterStatus, BackendKeyData and ReadyForQuery.
    async fn start_session<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let params = client.metadata().clone();
        let user = params.get("user").cloned().unwrap_or_default();
        // A user name that is not our database still lands on it, as clients expect
        // when they send no database.
        let shared = &self.0.shared;
        if let Some(database) = params.get("database") {
            if database != shared.engine.database() {
                return Err(ClientError::fatal("3D000", format!("database \"{database}\" does not exist")));
            }
        }
        // A role of the warehouse without LOGIN does not log in, however it came.
        if shared.engine.warehouse().security().roles.get(&user).is_some_and(|r| !r.login) {
            return Err(ClientError::fatal("28000", format!("role \"{user}\" is not permitted to log in")));
        }
        let Ok(slot) = shared.frontend.sessions.clone().try_acquire_owned() else {
            tracing::warn!(
                max_connections = shared.frontend.max_connections,
                "a connection was refused: too many clients"
            );
            return Err(ClientError::fatal("53300", "sorry, too many clients already"));
        };

        let mut session = shared.engine.session(&user);
        for (name, value) in &params {
            let name = match name.as_str() {
                "application_name" | "client_encoding" | "DateStyle" | "TimeZone" | "extra_float_digits"
                | "search_path" => name.as_str(),
                _ => continue,
            };
            if let Err(error) = session.settings_mut().set(name, value) {
                let e = client_error(&error);
                return Err(ClientError::fatal(e.code, e.message));
            }
        }

        let (pid, secret) = shared.pids.generate(client);
        client.set_pid_and_secret_key(pid, secret.clone());
        session.set_backend_pid(pid);
        let registration = shared.frontend.interrupts.register(pid, secret.to_bytes().to_vec());
        let application_name = session.settings().get("application_name").unwrap_or_default();
        let activity = shared.engine.activity().register(
            pid,
            &user,
            Some(client.socket_addr()),
            application_name,
            registration.signals(),
        );
        let identity = Identity { pid, user: user.clone(), client: client.socket_addr().to_string() };
        *self.0.started.lock().expect("connection") =
            Some(Started { _slot: slot, registration, activity, identity });

        client.feed(PgWireBackendMessage::Authentication(Authentication::Ok)).await?;
        // Nothing reported yet (generation 0 is no session's): every reported setting.
        for (name, value) in self.0.changed_parameters(&session) {
            client.feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(name, value))).await?;
        }
        client.feed(PgWireBackendMessage::BackendKeyData(BackendKeyData::new(pid, secret))).await?;
        client.send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(TransactionStatus::Idle))).await?;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        *self.0.session.lock().await = Some(session);
        tracing::info!(user, pid, peer = %client.socket_addr(), tls = client.is_secure(), "connection started");
        Ok(())
    }
}

/// A result stream as pgwire rows.
fn query_response(
    stream: datafusion::execution::SendableRecordBatchStream,
    fields: Vec<FieldInfo>,
    command: RowsCommand,
) -> QueryResponse {
    let fields = Arc::new(fields);
    let encoder_fields = fields.clone();
    // Rows are computed as the client reads them: a panic there ends this result with
    // an error (the caught stream ends after it), as one in the statement itself does.
    let rows = AssertUnwindSafe(stream).catch_unwind().flat_map(move |batch| {
        let encoded = batch.map(|batch| {
            std::panic::catch_unwind(AssertUnwindSafe(|| match batch {
                Ok(batch) => encode_batch(&batch, &encoder_fields)
                    .map_err(|message| ClientError { code: "XX000", message, detail: None }.into_pgwire()),
                Err(e) => Err(engine_error(EngineError::DataFusion(e))),
            }))
        });
        let rows: Vec<PgWireResult<pgwire::messages::data::DataRow>> = match encoded {
            Ok(Ok(Ok(rows))) => rows.into_iter().map(Ok).collect(),
            Ok(Ok(Err(e))) => vec![Err(e)],
            Err(panic) | Ok(Err(panic)) => vec![Err(engine_error(panicked(panic, &"(rows of a result)")))],
        };
        futures::stream::iter(rows)
    });
    let mut response = QueryResponse::new(fields, rows);
    match command {
        RowsCommand::Select => {}
        RowsCommand::Insert => response.set_command_tag("INSERT 0"),
        RowsCommand::Update => response.set_command_tag("UPDATE"),
        RowsCommand::Delete => response.set_command_tag("DELETE"),
        RowsCommand::Show => response.set_command_tag("SHOW"),
        RowsCommand::Fetch { .. } => response.set_command_tag("FETCH"),
    }
    response
}

fn command_response(tag: CommandTag) -> Response {
    let mut wire = Tag::new(&tag.command);
    if tag.command == "INSERT" {
        wire = wire.with_oid(0);
    }
    if let Some(rows) = tag.rows {
        wire = wire.with_rows(rows as usize);
    }
    match tag.command.as_str() {
        "BEGIN" => Response::TransactionStart(wire),
        "COMMIT" | "ROLLBACK" => Response::TransactionEnd(wire),
        _ => Response::Execution(wire),
    }
}

/// The response to a finished statement, given the session's transaction state after it
/// (a `ROLLBACK TO SAVEPOINT` leaves a failed block usable again).
fn response(output: Output, fields: Option<Vec<FieldInfo>>, tx: TxStatus) -> Response {
    match output {
        Output::Rows { schema, stream, command } => {
            let binary = matches!(command, RowsCommand::Fetch { binary: true });
            let fields = fields.unwrap_or_else(|| field_infos(&schema, |_| binary));
            Response::Query(query_response(stream, fields, command))
        }
        Output::Command(tag) => {
            let is_savepoint_rollback = tag.command == "ROLLBACK" && tx == TxStatus::InBlock;
            if is_savepoint_rollback {
                Response::TransactionStart(Tag::new("ROLLBACK"))
            } else {
                command_response(tag)
            }
        }
    }
}

fn error_response(e: PgWireError) -> Response {
    match e {
        PgWireError::UserError(info) => Response::Error(info),
        other => Response::Error(Box::new(ErrorInfo::new("ERROR".into(), "XX000".into(), other.to_string()))),
    }
}

#[async_trait]
impl SimpleQueryHandler for Handler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let span = info_span!("query", sql = %truncate(query, 200));
        let responses = self
            .0
            .with_session(async |session| {
                let statements = match guarded(&query, async { session.simple_statements(query) }).await {
                    Ok(s) => s,
                    Err(e) => {
                        session.note_error();
                        return vec![error_response(engine_error(e))];
                    }
                };
                let many = statements.len() > 1;
                let mut responses = Vec::with_capacity(statements.len());
                for prepared in statements.iter() {
                    if prepared.statement.is_copy() {
                        // COPY FROM STDIN ends the query string (the parser reads what
                        // follows as its data); COPY TO streams now if nothing waits.
                        let send_now = responses.is_empty();
                        let mut interrupt = self.0.statement_starts(session, &prepared.sql);
                        let audit = self.0.audit_starts(session, prepared, many);
                        let copy =
                            start_copy(session, &prepared.statement, client, &self.0.copy_in, send_now);
                        let outcome = copy_interruptible(&mut interrupt, copy).await;
                        let audit = audit.map(|a| a.touched(session.take_touched()));
                        audit_copy(audit, &outcome, &self.0.copy_in_audit);
                        match outcome {
                            Ok(response) => responses.push(response),
                            Err(e) => {
                                session.note_error();
                                responses.push(error_response(e));
                                break;
                            }
                        }
                        continue;
                    }
                    let mut interrupt = self.0.statement_starts(session, &prepared.sql);
                    let audit = self.0.audit_starts(session, prepared, many);
                    let work = async {
                        let output = prefetch(session.execute(prepared, vec![]).await?).await?;
                        // With several statements in one message, a result is read before
                        // the next statement runs, as Postgres does.
                        if many {
                            if let Output::Rows { schema, stream, command } = output {
                                let batches: Vec<_> =
                                    datafusion::physical_plan::common::collect(stream).await?;
                                let stream = datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                                    schema.clone(),
                                    futures::stream::iter(batches.into_iter().map(Ok)),
                                );
                                return Ok(Output::Rows { schema, stream: Box::pin(stream), command });
                            }
                        }
                        Ok::<_, EngineError>(output)
                    };
                    let outcome = guarded(&query, interruptible(&mut interrupt, work)).await;
                    let outcome = audited(audit.map(|a| a.touched(session.take_touched())), outcome);
                    match outcome {
                        Ok(output) => {
                            let output = interruptible_rows(output, interrupt);
                            responses.push(response(output, None, session.tx_status()))
                        }
                        Err(e) => {
                            session.note_error();
                            responses.push(error_response(engine_error(e)));
                            break;
                        }
                    }
                }
                responses
            })
            .instrument(span)
            .await?;
        self.after_statement(client).await?;
        Ok(responses)
    }
}

impl Handler {
    /// After a statement: the session is idle again, and ParameterStatus goes out for
    /// each reported setting the statement changed (`SET application_name`, `RESET
    /// ALL`, ...), as PostgreSQL sends it.
    async fn after_statement<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let changed = self
            .0
            .with_session(async |session| {
                self.0.now_idle(session);
                session.apply_set_config();
                self.0.changed_parameters(session)
            })
            .await?;
        for (name, value) in changed {
            client.feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(name, value))).await?;
        }
        Ok(())
    }
}

/// Computes a result's first batch before the response starts. Aggregates and sorts do
/// all their work here, where a cancel request can still stop them and an error can
/// still be reported before any row (and fail the transaction block).
async fn prefetch(output: Output) -> Result<Output, EngineError> {
    let Output::Rows { schema, mut stream, command } = output else { return Ok(output) };
    let first = match stream.next().await {
        Some(Ok(batch)) => Some(batch),
        Some(Err(e)) => return Err(EngineError::DataFusion(e)),
        None => None,
    };
    let rest = futures::stream::iter(first.map(Ok)).chain(stream);
    let stream = datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema.clone(), rest);
    Ok(Output::Rows { schema, stream: Box::pin(stream), command })
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Parses and plans statements for the extended protocol. `None` is an empty query.
pub struct Parser(Arc<Connection>);

#[async_trait]
impl QueryParser for Parser {
    type Statement = Option<Arc<Prepared>>;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let declared: Vec<Option<DataType>> =
            types.iter().map(|t| t.as_ref().and_then(|t| arrow_type_of_oid(t.oid()))).collect();
        self.0
            .with_session(async |session| {
                guarded(&sql, session.prepare_sql(sql, declared))
                    .await
                    .inspect_err(|_| session.note_error())
                    .map(Some)
                    .map_err(engine_error)
            })
            .await?
    }

    fn get_parameter_types(&self, statement: &Self::Statement) -> PgWireResult<Vec<Type>> {
        Ok(statement
            .as_ref()
            .map(|p| p.param_types.iter().map(|t| wire_type(pg_type_of_arrow(t))).collect())
            .unwrap_or_default())
    }

    fn get_result_schema(
        &self,
        statement: &Self::Statement,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(match statement.as_ref().and_then(|p| p.result.as_ref()) {
            Some(schema) => field_infos(schema, |i| {
                format.is_some_and(|f| f.format_for(i) == pgwire::api::results::FieldFormat::Binary)
            }),
            None => vec![],
        })
    }
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = Option<Arc<Prepared>>;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::new(Parser(self.0.clone()))
    }

    /// Describe, answered from the planned statement: a statement by its parameter types
    /// and then its columns, or NoData when it returns no rows (pgwire's own reply sends
    /// an empty RowDescription for a statement that has parameters but no rows).
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let parser = Parser(self.0.clone());
        let fields = match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => {
                let statement = client
                    .portal_store()
                    .get_statement(name)
                    .ok_or_else(|| PgWireError::StatementNotFound(name.to_owned()))?;
                let statement = statement.value().map(|s| s.statement.clone()).unwrap_or(None);
                let types = parser.get_parameter_types(&statement)?;
                let description = ParameterDescription::new(types.iter().map(Type::oid).collect());
                client.send(PgWireBackendMessage::ParameterDescription(description)).await?;
                parser.get_result_schema(&statement, None)?
            }
            TARGET_TYPE_BYTE_PORTAL => {
                let portal = client
                    .portal_store()
                    .get_portal(name)
                    .ok_or_else(|| PgWireError::PortalNotFound(name.to_owned()))?;
                match portal.value() {
                    Some(portal) => parser
                        .get_result_schema(&portal.statement.statement, Some(&portal.result_column_format))?,
                    None => vec![],
                }
            }
            other => return Err(PgWireError::InvalidTargetType(other)),
        };
        // A portal response carries no parameters: RowDescription, or NoData when empty.
        send_describe_response(client, &DescribePortalResponse::new(fields)).await
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(prepared) = portal.statement.statement.clone() else { return Ok(Response::EmptyQuery) };
        if prepared.statement.is_copy() {
            let copy_in = &self.0.copy_in;
            return self
                .0
                .with_session(async |session| {
                    let mut interrupt = self.0.statement_starts(session, &prepared.sql);
                    let audit = self.0.audit_starts(session, &prepared, false);
                    let copy = start_copy(session, &prepared.statement, client, copy_in, true);
                    let outcome = copy_interruptible(&mut interrupt, copy).await;
                    let audit = audit.map(|a| a.touched(session.take_touched()));
                    audit_copy(audit, &outcome, &self.0.copy_in_audit);
                    if outcome.is_err() {
                        session.note_error();
                    }
                    outcome
                })
                .await?;
        }
        let fields = prepared.result.as_ref().map(|schema| {
            field_infos(schema, |i| {
                portal.result_column_format.format_for(i) == pgwire::api::results::FieldFormat::Binary
            })
        });
        let mut params = Vec::with_capacity(portal.parameters.len());
        for (i, bytes) in portal.parameters.iter().enumerate() {
            let ty = prepared.param_types.get(i).cloned().unwrap_or(DataType::Utf8);
            let binary = portal.parameter_format.format_for(i) == pgwire::api::results::FieldFormat::Binary;
            // Decoding runs our code over the client's bytes: a panic there is an error too.
            let decoded = std::panic::catch_unwind(|| decode_param(bytes.as_deref(), binary, &ty))
                .unwrap_or_else(|panic| {
                    let e = panicked(panic, &"(decoding a bind parameter)");
                    let client = crate::errors::client_error(&e);
                    Err((client.code, client.message))
                });
            match decoded {
                Ok(v) => params.push(v),
                Err((code, message)) => {
                    self.0.with_session(async |s| s.note_error()).await?;
                    return Err(ClientError { code, message, detail: None }.into_pgwire());
                }
            }
        }
        let span = info_span!("execute", sql = %truncate(&prepared.sql, 200));
        let response = self
            .0
            .with_session(async |session| {
                let sql = &prepared.sql;
                let mut interrupt = self.0.statement_starts(session, &prepared.sql);
                let audit = self.0.audit_starts(session, &prepared, false);
                let work = async { prefetch(session.execute(&prepared, params).await?).await };
                let outcome = guarded(sql, interruptible(&mut interrupt, work)).await;
                let output = audited(audit.map(|a| a.touched(session.take_touched())), outcome);
                let output = output.inspect_err(|_| session.note_error()).map_err(engine_error)?;
                Ok::<_, PgWireError>(response(
                    interruptible_rows(output, interrupt),
                    fields,
                    session.tx_status(),
                ))
            })
            .instrument(span)
            .await??;
        self.after_statement(client).await?;
        Ok(response)
    }
}
