//! The NATS JetStream transport.
//!
//! Streams are created (or found) at connect time from the shared
//! definitions. Publishes wait for the stream's acknowledgement, so a
//! returned `Ok` means the message is stored. Consumers are durable pull
//! consumers with explicit acks.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use schemas::stream::StreamSpec;

use crate::message::{Acker, Delivery, Headers, Outgoing};
use crate::{BusError, ConsumerSpec};

/// A JetStream connection. Clones share it.
#[derive(Clone)]
pub struct NatsBus {
    jetstream: jetstream::Context,
}

impl NatsBus {
    pub(crate) async fn connect(url: &str, client_name: &str) -> Result<Self, BusError> {
        let client = async_nats::ConnectOptions::new()
            .name(client_name)
            // Keep reconnecting forever: a stage outlives NATS restarts.
            .max_reconnects(None)
            .connect(url)
            .await
            .map_err(|source| BusError::Connect { url: url.to_owned(), source: source.into() })?;
        let jetstream = jetstream::new(client);
        for spec in schemas::stream::ALL {
            ensure_stream(&jetstream, &spec).await?;
        }
        Ok(Self { jetstream })
    }

    pub(crate) fn is_connected(&self) -> bool {
        let state = self.jetstream.client().connection_state();
        state == async_nats::connection::State::Connected
    }

    pub(crate) async fn publish(&self, message: Outgoing) -> Result<(), BusError> {
        let subject = message.subject;
        let error =
            |source: async_nats::Error| BusError::Publish { subject: subject.clone(), source };
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in message.headers.iter() {
            headers.insert(name, value);
        }
        let ack = self
            .jetstream
            .publish_with_headers(subject.clone(), headers, message.payload)
            .await
            .map_err(|e| error(e.into()))?;
        ack.await.map_err(|e| error(e.into()))?;
        Ok(())
    }

    pub(crate) async fn consumer(&self, spec: ConsumerSpec) -> Result<NatsConsumer, BusError> {
        let error = |source: async_nats::Error| BusError::Consumer {
            stream: spec.stream.name.to_owned(),
            durable: spec.durable.clone(),
            source,
        };
        let stream =
            self.jetstream.get_stream(spec.stream.name).await.map_err(|e| error(e.into()))?;
        let config = consumer::pull::Config {
            durable_name: Some(spec.durable.clone()),
            filter_subject: spec.filter.clone(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: spec.ack_wait,
            max_deliver: spec.max_deliver,
            ..Default::default()
        };
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(&spec.durable, config)
            .await
            .map_err(|e| error(e.into()))?;
        let messages = consumer.messages().await.map_err(|e| error(e.into()))?;
        Ok(NatsConsumer { durable: spec.durable, consumer, messages })
    }
}

async fn ensure_stream(jetstream: &jetstream::Context, spec: &StreamSpec) -> Result<(), BusError> {
    let config = stream::Config {
        name: spec.name.to_owned(),
        subjects: vec![spec.subject.to_owned()],
        max_age: spec.max_age,
        duplicate_window: spec.duplicate_window,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    jetstream
        .get_or_create_stream(config)
        .await
        .map_err(|e| BusError::Stream { stream: spec.name.to_owned(), source: e.into() })?;
    Ok(())
}

/// An attachment to a durable pull consumer.
pub struct NatsConsumer {
    durable: String,
    consumer: consumer::PullConsumer,
    messages: consumer::pull::Stream,
}

impl NatsConsumer {
    pub(crate) async fn pending(&mut self) -> Result<u64, BusError> {
        let durable = &self.durable;
        let info = self.consumer.info().await.map_err(|e| receive_error(durable, e.into()))?;
        Ok(info.num_pending)
    }

    pub(crate) async fn next(&mut self) -> Option<Result<Delivery, BusError>> {
        let message = match self.messages.next().await? {
            Ok(message) => message,
            Err(e) => return Some(Err(self.receive_error(e.into()))),
        };
        let (stream_sequence, delivered) = match message.info() {
            Ok(info) => (info.stream_sequence, info.delivered.max(1) as u64),
            Err(e) => return Some(Err(self.receive_error(e))),
        };
        let (message, acker) = message.split();
        let mut headers = Headers::default();
        for (name, values) in message.headers.iter().flat_map(|h| h.iter()) {
            if let Some(value) = values.last() {
                headers.insert(name.to_string(), value.as_str());
            }
        }
        Some(Ok(Delivery {
            subject: message.subject.to_string(),
            headers,
            payload: message.payload,
            stream_sequence,
            delivered,
            acker: Acker::Nats(acker),
        }))
    }

    fn receive_error(&self, source: async_nats::Error) -> BusError {
        receive_error(&self.durable, source)
    }
}

fn receive_error(durable: &str, source: async_nats::Error) -> BusError {
    BusError::Receive { durable: durable.to_owned(), source }
}

/// How long a stage waits before pulling again after a receive error, so a
/// NATS outage does not become a busy loop.
pub const RECEIVE_RETRY: Duration = Duration::from_secs(1);
