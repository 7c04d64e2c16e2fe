//! Named places where a crash test can stop the process.
//!
//! `TARN_FAILPOINT=<name>` aborts the process the first time the named point is
//! reached; `<name>@<n>` the n-th time; `<name>[@<n>]:panic` panics there instead (the
//! server must turn that into an error for one statement). Unset (always, outside
//! tests) it costs one check of a value read once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

struct Armed {
    name: String,
    hit: u64,
    panic: bool,
}

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

pub fn failpoint(name: &str) {
    let armed = ARMED.get_or_init(|| {
        let spec = std::env::var("TARN_FAILPOINT").ok()?;
        let (spec, panic) = match spec.strip_suffix(":panic") {
            Some(spec) => (spec.to_string(), true),
            None => (spec, false),
        };
        Some(match spec.split_once('@') {
            Some((name, n)) => Armed { name: name.to_string(), hit: n.parse().unwrap_or(1), panic },
            None => Armed { name: spec, hit: 1, panic },
        })
    });
    if let Some(armed) = armed {
        if armed.name == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == armed.hit {
            if armed.panic {
                panic!("fail point {name} reached");
            }
            eprintln!("tarn: fail point {name} reached; aborting");
            std::process::abort();
        }
    }
}
