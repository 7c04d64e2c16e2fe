//! What stops a running statement: a cancel request (from another socket, keyed by the
//! BackendKeyData the session was given) or the session's `statement_timeout`. Either
//! ends the statement with 57014 through the statement's ordinary error path, so a
//! transaction block it ran in is failed as after any other error.
//!
//! A statement listens from its start until its last row is sent: a cancel that comes
//! while a session is idle does nothing, as in PostgreSQL.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use pgwire::api::cancel::CancelHandler;
use pgwire::messages::cancel::CancelRequest;
use tarn_engine::EngineError;
use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;
use tokio::time::{sleep_until, Instant};

/// A session's secret key, and what wakes its running statement.
type CancelKey = (Vec<u8>, Arc<Notify>);

/// The sessions that can be cancelled, by backend pid.
#[derive(Default)]
pub struct Interrupts {
    sessions: Mutex<HashMap<i32, CancelKey>>,
}

impl Interrupts {
    /// Registers a session under its BackendKeyData; it leaves when the returned
    /// registration is dropped (with the connection).
    pub fn register(self: &Arc<Self>, pid: i32, secret: Vec<u8>) -> Registration {
        let notify = Arc::new(Notify::new());
        self.sessions.lock().expect("interrupts").insert(pid, (secret, notify.clone()));
        Registration { interrupts: self.clone(), pid, notify, terminated: Arc::default() }
    }

    /// Stops the statement that session `pid` runs, if the secret is its own; `false`
    /// when no session has that key.
    pub fn cancel(&self, pid: i32, secret: &[u8]) -> bool {
        let sessions = self.sessions.lock().expect("interrupts");
        match sessions.get(&pid) {
            Some((key, notify)) if constant_time_eq(key, secret) => {
                notify.notify_waiters();
                true
            }
            _ => false,
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One session's place in [`Interrupts`].
pub struct Registration {
    interrupts: Arc<Interrupts>,
    pid: i32,
    notify: Arc<Notify>,
    terminated: Arc<Terminated>,
}

/// `pg_terminate_backend` of a session: its connection is to end.
#[derive(Default)]
pub struct Terminated {
    set: std::sync::atomic::AtomicBool,
    notify: Notify,
}

impl Terminated {
    pub fn is_set(&self) -> bool {
        self.set.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Returns once the session is to end (at once if it already is).
    pub async fn wait(&self) {
        let notified = self.notify.notified();
        if !self.is_set() {
            notified.await;
        }
    }
}

/// What `pg_cancel_backend` and `pg_terminate_backend` do to a session.
struct SessionSignals {
    notify: Arc<Notify>,
    terminated: Arc<Terminated>,
}

impl tarn_engine::activity::Signals for SessionSignals {
    fn cancel(&self) {
        self.notify.notify_waiters();
    }

    fn terminate(&self) {
        self.terminated.set.store(true, std::sync::atomic::Ordering::Release);
        self.terminated.notify.notify_waiters();
        self.notify.notify_waiters();
    }
}

impl Registration {
    /// The signals other sessions send this one (see `tarn_engine::activity`).
    pub fn signals(&self) -> Box<dyn tarn_engine::activity::Signals> {
        Box::new(SessionSignals { notify: self.notify.clone(), terminated: self.terminated.clone() })
    }

    /// Set when the session is to end.
    pub fn terminated(&self) -> Arc<Terminated> {
        self.terminated.clone()
    }

    /// What stops the statement starting now: the next cancel, or `timeout` from now.
    pub fn statement(&self, timeout: Option<Duration>) -> Interrupt {
        Interrupt {
            cancelled: Box::pin(self.notify.clone().notified_owned()),
            deadline: timeout.map(|t| Instant::now() + t),
            terminated: self.terminated.clone(),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut sessions = self.interrupts.sessions.lock().expect("interrupts");
        // Unless a later session drew the same random pid and took the entry over.
        if sessions.get(&self.pid).is_some_and(|(_, notify)| Arc::ptr_eq(notify, &self.notify)) {
            sessions.remove(&self.pid);
        }
    }
}

/// One statement's listener for a cancel or its deadline.
pub struct Interrupt {
    cancelled: Pin<Box<OwnedNotified>>,
    deadline: Option<Instant>,
    terminated: Arc<Terminated>,
}

impl Interrupt {
    /// Waits for the cancel or the deadline and says which came.
    async fn fired(&mut self) -> EngineError {
        let deadline = self.deadline;
        let timed_out = async {
            match deadline {
                Some(at) => sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.cancelled.as_mut() => match self.terminated.is_set() {
                true => EngineError::AdminShutdown,
                false => EngineError::QueryCanceled { message: "canceling statement due to user request".into() },
            },
            _ = timed_out => EngineError::QueryCanceled {
                message: "canceling statement due to statement timeout".into(),
            },
        }
    }

    /// Runs `work` unless the statement is stopped first; then `work` is dropped where
    /// it waits, as after a panic there.
    pub async fn run<T>(
        &mut self,
        work: impl Future<Output = Result<T, EngineError>>,
    ) -> Result<T, EngineError> {
        // The interrupt is polled first: work that spends the task's whole cooperative
        // budget before it yields would otherwise leave none for the timer every time.
        tokio::select! {
            biased;
            error = self.fired() => Err(error),
            outcome = work => outcome,
        }
    }

    /// The rows of a result, ended by an error if the statement is stopped while
    /// they are computed and sent.
    pub fn rows(self, stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
        let schema = stream.schema();
        let rows = futures::stream::unfold(Some((stream, self)), |state| async move {
            let (mut stream, mut interrupt) = state?;
            let next = tokio::select! {
                biased;
                error = interrupt.fired() => Err(error),
                batch = stream.next() => Ok(batch),
            };
            match next {
                Ok(batch) => batch.map(|batch| (batch, Some((stream, interrupt)))),
                Err(error) => Some((Err(DataFusionError::External(Box::new(error))), None)),
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, rows))
    }
}

/// Cancel requests, answered from [`Interrupts`].
pub struct Canceller(pub Arc<Interrupts>);

#[async_trait]
impl CancelHandler for Canceller {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let cancelled = self.0.cancel(request.pid, &request.secret_key.to_bytes());
        tracing::debug!(pid = request.pid, cancelled, "cancel request");
    }
}
