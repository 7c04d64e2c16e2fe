//! What every session is doing, for `pg_stat_activity`, and the signals
//! `pg_cancel_backend(pid)` and `pg_terminate_backend(pid)` send.
//!
//! The server registers each session once it has its backend pid, with the ways to stop
//! it ([`Signals`]: the session's cancel, and closing its connection), and tells its
//! entry when a statement starts and when the session is idle again. The entry leaves
//! with the connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// PostgreSQL's `track_activity_query_size` default: how much of a statement's text
/// `pg_stat_activity` shows (and what each statement copies).
pub const TRACK_ACTIVITY_QUERY_SIZE: usize = 1024;

/// How a session is stopped from another (or from itself).
pub trait Signals: Send + Sync {
    /// Stops the statement it runs, as a cancel request does (57014).
    fn cancel(&self);
    /// Ends its connection (FATAL 57P01), stopping its statement first.
    fn terminate(&self);
}

/// The sessions of one server, by backend pid.
#[derive(Default)]
pub struct Activity {
    sessions: Mutex<BTreeMap<i32, Arc<Backend>>>,
}

impl std::fmt::Debug for Activity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activity").field("sessions", &self.lock().len()).finish()
    }
}

/// One session as `pg_stat_activity` shows it.
pub struct Backend {
    pub pid: i32,
    pub user: String,
    pub client: Option<SocketAddr>,
    pub backend_start: SystemTime,
    live: Mutex<Live>,
    signals: Box<dyn Signals>,
}

/// What changes as the session works.
#[derive(Debug, Clone)]
pub struct Live {
    /// `active`, `idle`, `idle in transaction` or `idle in transaction (aborted)`.
    pub state: &'static str,
    /// The statement running, or the last one run: its first
    /// [`TRACK_ACTIVITY_QUERY_SIZE`] bytes, as PostgreSQL keeps them.
    pub query: String,
    pub query_start: Option<SystemTime>,
    pub xact_start: Option<SystemTime>,
    pub state_change: SystemTime,
    pub application_name: String,
}

/// Where a session's transaction stands between statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    Idle,
    InTransaction,
    Aborted,
}

impl Activity {
    /// Adds a session; it leaves when the returned handle is dropped.
    pub fn register(
        self: &Arc<Self>,
        pid: i32,
        user: &str,
        client: Option<SocketAddr>,
        application_name: &str,
        signals: Box<dyn Signals>,
    ) -> Registered {
        let now = SystemTime::now();
        let backend = Arc::new(Backend {
            pid,
            user: user.to_string(),
            client,
            backend_start: now,
            live: Mutex::new(Live {
                state: "idle",
                query: String::new(),
                query_start: None,
                xact_start: None,
                state_change: now,
                application_name: application_name.to_string(),
            }),
            signals,
        });
        self.lock().insert(pid, backend.clone());
        Registered { activity: self.clone(), backend }
    }

    /// Every session, by pid.
    pub fn sessions(&self) -> Vec<Arc<Backend>> {
        self.lock().values().cloned().collect()
    }

    /// `pg_cancel_backend`: whether a session of that pid was there to signal.
    pub fn cancel(&self, pid: i32) -> bool {
        let backend = self.lock().get(&pid).cloned();
        backend.map(|b| b.signals.cancel()).is_some()
    }

    /// `pg_terminate_backend`: whether a session of that pid was there to signal.
    pub fn terminate(&self, pid: i32) -> bool {
        let backend = self.lock().get(&pid).cloned();
        backend.map(|b| b.signals.terminate()).is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, Arc<Backend>>> {
        self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Backend {
    pub fn live(&self) -> Live {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A session's entry in [`Activity`], for as long as its connection lasts.
pub struct Registered {
    activity: Arc<Activity>,
    backend: Arc<Backend>,
}

impl Registered {
    /// A statement starts (`query`, its text).
    pub fn started(&self, query: &str) {
        let now = SystemTime::now();
        let mut live = self.backend.lock();
        live.state = "active";
        let mut end = query.len().min(TRACK_ACTIVITY_QUERY_SIZE);
        while !query.is_char_boundary(end) {
            end -= 1;
        }
        live.query.clear();
        live.query.push_str(&query[..end]);
        live.query_start = Some(now);
        live.state_change = now;
        live.xact_start.get_or_insert(now);
    }

    /// The session waits for its client again, its transaction as `idle` says.
    pub fn idle(&self, idle: Idle, application_name: &str) {
        let mut live = self.backend.lock();
        live.state = match idle {
            Idle::Idle => "idle",
            Idle::InTransaction => "idle in transaction",
            Idle::Aborted => "idle in transaction (aborted)",
        };
        if idle == Idle::Idle {
            live.xact_start = None;
        }
        live.state_change = SystemTime::now();
        if live.application_name != application_name {
            live.application_name = application_name.to_string();
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut sessions = self.activity.lock();
        if sessions.get(&self.backend.pid).is_some_and(|b| Arc::ptr_eq(b, &self.backend)) {
            sessions.remove(&self.backend.pid);
        }
    }
}
