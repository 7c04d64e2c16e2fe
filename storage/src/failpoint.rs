//! Named places where a crash test can stop the process.
//!
//! `TARN_FAILPOINT=<name>` aborts the process the first time the named point is
//! reached; `<name>@<n>` the n-th time. Unset (always, outside tests) it costs one
//! check of a value read once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

pub fn failpoint(name: &str) {
    let armed = ARMED.get_or_init(|| {
        let spec = std::env::var("TARN_FAILPOINT").ok()?;
        Some(match spec.split_once('@') {
            Some((name, n)) => (name.to_string(), n.parse().unwrap_or(1)),
            None => (spec, 1),
        })
    });
    if let Some((armed, n)) = armed {
        if armed == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            eprintln!("tarn: fail point {name} reached; aborting");
            std::process::abort();
        }
    }
}
