//! One hashing worker: takes a raw event, inspects the file on a blocking
//! thread, and publishes the observation before acknowledging the event.
//!
//! Workers share one `Inspector`, so a digest cached by one saves a read for
//! all. Each worker has one file in hand at a time and a fixed read buffer,
//! so the pool's memory does not grow with file sizes.

use std::sync::Arc;
use std::time::Instant;

use bus::stage::{self, Failure, Handler};
use bus::{Consumer, Delivery, Outgoing, StageContext};
use schemas::{Observation, RawEvent, SCHEMA_VERSION, Source, subject};
use tracing::trace;

use crate::{Config, Inspection, Inspector, Metrics};

pub(crate) struct Worker {
    config: Config,
    inspector: Arc<Inspector>,
    metrics: Metrics,
    ctx: StageContext,
}

impl Worker {
    pub(crate) fn new(
        config: Config,
        inspector: Arc<Inspector>,
        metrics: Metrics,
        ctx: StageContext,
    ) -> Self {
        Self { config, inspector, metrics, ctx }
    }

    pub(crate) async fn run(self, index: usize, consumer: Consumer) {
        trace!(worker = index, "hasher worker started");
        let ctx = self.ctx.clone();
        stage::consume(&ctx, "hasher", consumer, self).await;
    }

    async fn verify(&self, event: RawEvent) -> Result<(), Failure> {
        let started = Instant::now();
        let inspector = self.inspector.clone();
        let (event, inspected) = tokio::task::spawn_blocking(move || {
            let inspected = inspector.observe(&event);
            (event, inspected)
        })
        .await
        .map_err(|e| Failure::Transient(e.into()))?;
        self.metrics.seconds.observe(started.elapsed().as_secs_f64());
        let inspection = match inspected {
            Ok(inspection) => inspection,
            Err(error) => {
                self.metrics.file("failed");
                return Err(Failure::Permanent { reason: "unreadable", error: error.into() });
            }
        };
        self.count(&inspection);

        let observation = Observation {
            schema_version: SCHEMA_VERSION,
            id: format!("obs:{}", event.id),
            event,
            state: inspection.state,
            image: inspection.image,
            content: inspection.content,
        };
        self.publish(&observation).await
    }

    fn count(&self, inspection: &Inspection) {
        self.metrics.bytes.inc_by(inspection.bytes_read);
        match &inspection.state {
            Some(state) if state.unstable => self.metrics.file("unstable"),
            Some(state) if state.partial => self.metrics.file("partial"),
            Some(state) if state.blake3.is_some() && inspection.bytes_read == 0 => {
                self.metrics.file("cached")
            }
            Some(state) if state.blake3.is_some() => self.metrics.file("hashed"),
            Some(_) => self.metrics.file("metadata"),
            None => self.metrics.file("gone"),
        }
    }

    async fn publish(&self, observation: &Observation) -> Result<(), Failure> {
        let payload = schemas::encode(observation)
            .map_err(|e| Failure::Permanent { reason: "encode", error: e.into() })?;
        let key = partition_key(&observation.event);
        let partition = subject::partition(&key, self.config.partitions);
        let message = Outgoing::new(subject::observations(partition), &observation.id, payload);
        self.ctx.bus.publish(message).await.map_err(|e| Failure::Transient(e.into()))
    }
}

impl Handler<RawEvent> for Worker {
    async fn handle(&mut self, event: RawEvent, _: &Delivery) -> Result<(), Failure> {
        self.verify(event).await
    }
}

/// What decides an observation's evaluator partition: the container, or the
/// node for host paths, so one replica sees every change of one source.
pub(crate) fn partition_key(event: &RawEvent) -> Vec<u8> {
    match &event.source {
        Source::Container(container) => container.id.as_bytes().to_vec(),
        Source::Host { .. } => format!("host:{}", event.node).into_bytes(),
    }
}
