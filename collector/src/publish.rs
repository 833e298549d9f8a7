//! Turning changes into `RawEvent` messages on `fim.events.<node>`.
//!
//! A publish that fails is retried with backoff until it succeeds or the
//! process shuts down, so an event is never dropped while the collector
//! runs; each retry is counted. Event ids are `<node>:<start>:<counter>`,
//! with the start time in nanoseconds, so they stay unique across restarts
//! and a retried publish keeps its id for deduplication.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bus::{Bus, Outgoing};
use schemas::{Describe, ProcessInfo, RawEvent, SCHEMA_VERSION, Source, subject};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, trace, warn};

use crate::Metrics;
use crate::containers::Origins;
use crate::watch::Change;

// First retry delay; doubled per attempt up to MAX_BACKOFF, which keeps a
// NATS restart (seconds) from turning into a busy loop.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
// A warning every this many failed attempts of one event, not each one.
const WARN_EVERY: u32 = 20;

/// Publishes the changes of one node. Clones share the id counter.
#[derive(Clone)]
pub(crate) struct Publisher {
    bus: Bus,
    node: Arc<str>,
    subject: Arc<str>,
    id_prefix: Arc<str>,
    counter: Arc<AtomicU64>,
    origins: Origins,
    metrics: Metrics,
    shutdown: CancellationToken,
}

impl Publisher {
    pub fn new(
        bus: Bus,
        node: &str,
        origins: Origins,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> Self {
        let start = OffsetDateTime::now_utc().unix_timestamp_nanos();
        Self {
            bus,
            node: node.into(),
            subject: subject::events(node).into(),
            id_prefix: format!("{node}:{start}").into(),
            counter: Arc::default(),
            origins,
            metrics,
            shutdown,
        }
    }

    /// Publishes one change, retrying until it is stored or shutdown.
    pub async fn publish(&self, change: Change, process: Option<ProcessInfo>) {
        let id = format!("{}:{}", self.id_prefix, self.counter.fetch_add(1, Ordering::Relaxed));
        let event = self.event(id.clone(), change, process);
        let kind = event.change;
        let payload = match schemas::encode(&event) {
            Ok(payload) => payload,
            Err(error) => {
                // Every field is plain data, so this is a bug, not input.
                error!(%id, %error, "cannot encode raw event; event lost");
                return;
            }
        };
        let message = Outgoing::new(self.subject.as_ref(), &id, payload);
        // Each change starts its own trace; the stages after this one
        // continue it from the message headers.
        let span = tracing::info_span!(
            parent: None,
            "file_change",
            path = %event.path,
            change = kind.as_str(),
            container = event.container().unwrap_or_default(),
        );
        let published = self.publish_with_retry(&id, &event, message).instrument(span).await;
        if published {
            trace!(%id, change = kind.as_str(), path = %event.path, "raw event published");
            self.metrics.published(kind);
        }
    }

    fn event(&self, id: String, change: Change, process: Option<ProcessInfo>) -> RawEvent {
        let mut event = RawEvent {
            schema_version: SCHEMA_VERSION,
            id,
            node: self.node.to_string(),
            time: OffsetDateTime::now_utc(),
            source: Source::Host { root: change.root.clone() },
            host_path: change.path.clone(),
            path: change.path,
            previous_path: change.previous,
            change: change.kind,
            is_dir: change.is_dir,
            process,
            container_root: None,
        };
        if let Some(origin) = self.origins.get(&change.root) {
            // Paths as the container sees them; `host_path` stays on the node.
            event.path = origin.inside(&event.host_path, &change.root);
            event.previous_path = event.previous_path.map(|old| origin.inside(&old, &change.root));
            event.change = origin.refine(event.change, &event.host_path, &event.path);
            event.source = Source::Container(origin.container.clone());
            event.container_root = origin.layers.clone();
        }
        event
    }

    // True once stored; false only when shutdown came first.
    async fn publish_with_retry(&self, id: &str, event: &RawEvent, message: Outgoing) -> bool {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt: u32 = 0;
        loop {
            let error = match self.bus.publish(message.clone()).await {
                Ok(()) => return true,
                Err(error) => error,
            };
            attempt += 1;
            if self.shutdown.is_cancelled() {
                error!(%id, path = %event.path, %error, "raw event not published before shutdown");
                return false;
            }
            if attempt == 1 || attempt.is_multiple_of(WARN_EVERY) {
                let error = bus::stage::error_chain(&error);
                warn!(%id, subject = %self.subject, attempt, error, "publish failed, will retry");
            }
            self.metrics.publish_retry();
            tokio::select! {
                _ = self.shutdown.cancelled() => {}
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}
