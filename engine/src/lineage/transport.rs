//! Lineage events to an OpenLineage HTTP endpoint (Marquez's API: `POST
//! <url>/api/v1/lineage`, one event as JSON per request), from a bounded queue that one
//! background task drains in order.
//!
//! A statement only puts its events in the queue, never waits: when the queue is full
//! (the endpoint is down or slower than the statements) the event is not sent, counted
//! and warned about; the lineage log has it anyway. A failed send (no connection, a
//! timeout, a status other than 2xx) is tried again after 0.1, 0.2, 0.4, 0.8 and 1.6
//! seconds, then given up; events behind it wait their turn, so they arrive in order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tarn_storage::lineage::RunEvent;
use tokio::sync::mpsc;
use tracing::warn;

/// Events waiting at most.
const QUEUE: usize = 10_000;
/// Tries per event.
const TRIES: u32 = 6;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// One request's time at most (connecting included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) struct Transport {
    queue: mpsc::Sender<RunEvent>,
    undelivered: Arc<AtomicU64>,
}

impl Transport {
    /// Starts the task that sends to `url`.
    pub(super) fn start(url: &str) -> crate::error::Result<Transport> {
        let endpoint = format!("{}/api/v1/lineage", url.trim_end_matches('/'));
        reqwest::Url::parse(&endpoint).map_err(|e| crate::error::EngineError::InvalidParameter {
            message: format!("invalid lineage_url \"{url}\": {e}"),
        })?;
        // reqwest's TLS takes the process's provider (ring; a second install is a no-op).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().map_err(|e| {
            crate::error::EngineError::Internal { message: format!("lineage HTTP client: {e}") }
        })?;
        let (queue, mut waiting) = mpsc::channel::<RunEvent>(QUEUE);
        let undelivered = Arc::new(AtomicU64::new(0));
        let lost = undelivered.clone();
        tokio::spawn(async move {
            while let Some(event) = waiting.recv().await {
                let body = match serde_json::to_vec(&event) {
                    Ok(body) => body,
                    Err(e) => {
                        warn!(error = %e, "a lineage event did not serialize");
                        continue;
                    }
                };
                if let Err(e) = send(&client, &endpoint, body).await {
                    lost.fetch_add(1, Ordering::Relaxed);
                    warn!(error = %e, endpoint = %endpoint, run = %event.run.run_id,
                        "a lineage event was not delivered (it is in tarn_lineage_events)");
                }
            }
        });
        Ok(Transport { queue, undelivered })
    }

    /// Queues `event`, or counts it undelivered when the queue is full.
    pub(super) fn send(&self, event: &RunEvent) {
        if self.queue.try_send(event.clone()).is_err() {
            let before = self.undelivered.fetch_add(1, Ordering::Relaxed);
            if before.is_power_of_two() || before == 0 {
                warn!(undelivered = before + 1, "the lineage endpoint's queue is full; events are not sent");
            }
        }
    }
}

async fn send(client: &reqwest::Client, endpoint: &str, body: Vec<u8>) -> Result<(), String> {
    let mut backoff = FIRST_BACKOFF;
    let mut last = String::new();
    for attempt in 1..=TRIES {
        let request = client
            .post(endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        match request.send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => last = format!("status {}", response.status()),
            Err(e) => last = e.to_string(),
        }
        if attempt < TRIES {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    Err(format!("{last} after {TRIES} tries"))
}
