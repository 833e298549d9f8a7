//! Outgoing messages, deliveries and their headers.

use std::collections::BTreeMap;

use bytes::Bytes;
use schemas::{header, subject};

use crate::BusError;
use crate::memory::MemoryAcker;

/// Message headers, by name. Names are case-sensitive as in NATS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(BTreeMap<String, String>);

impl Headers {
    /// The value of one header.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Sets one header, replacing any earlier value.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.insert(name.into(), value.into());
    }

    /// All headers, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// A message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Subject to publish on.
    pub subject: String,
    /// Headers, including the message id when set.
    pub headers: Headers,
    /// Encoded body.
    pub payload: Bytes,
}

impl Outgoing {
    /// A message with a deduplication id: publishing the same id twice
    /// within the stream's duplicate window stores it once.
    pub fn new(subject: impl Into<String>, id: &str, payload: impl Into<Bytes>) -> Self {
        let mut headers = Headers::default();
        headers.insert(header::MSG_ID, id);
        Self { subject: subject.into(), headers, payload: payload.into() }
    }
}

/// One delivery from a durable consumer. It must be acknowledged with
/// [`Delivery::ack`] once its work is done, or it will come back.
pub struct Delivery {
    /// Subject the message was published on.
    pub subject: String,
    /// Its headers.
    pub headers: Headers,
    /// Its body.
    pub payload: Bytes,
    /// Position in the stream; increases with every stored message.
    pub stream_sequence: u64,
    /// How many times this message has been delivered, this time included.
    pub delivered: u64,
    pub(crate) acker: Acker,
}

pub(crate) enum Acker {
    Nats(async_nats::jetstream::message::Acker),
    Memory(MemoryAcker),
}

impl Delivery {
    /// Marks the message done; it is not delivered again.
    pub async fn ack(&self) -> Result<(), BusError> {
        match &self.acker {
            Acker::Nats(acker) => acker.ack().await.map_err(|source| BusError::Ack { source }),
            Acker::Memory(acker) => {
                acker.ack();
                Ok(())
            }
        }
    }

    /// The message that parks this delivery on `fim.dlq.<stage>`: the same
    /// payload and headers, plus where it came from and why it was refused.
    /// Its id is derived from the stream position, so parking twice stores
    /// it once.
    pub fn dead_letter(&self, stage: &str, reason: &str, error: String) -> Outgoing {
        let mut headers = self.headers.clone();
        let id = format!("{stage}:{}:{}", self.subject, self.stream_sequence);
        headers.insert(header::MSG_ID, id);
        headers.insert(header::DEAD_LETTER_SUBJECT, self.subject.clone());
        headers.insert(header::DEAD_LETTER_REASON, reason);
        headers.insert(header::DEAD_LETTER_ERROR, error);
        Outgoing { subject: subject::dead_letters(stage), headers, payload: self.payload.clone() }
    }

    /// Tells the bus the work goes on, restarting the ack wait, so a long
    /// retry sequence is not redelivered to another worker meanwhile.
    pub async fn in_progress(&self) -> Result<(), BusError> {
        use async_nats::jetstream::AckKind;
        match &self.acker {
            Acker::Nats(acker) => {
                acker.ack_with(AckKind::Progress).await.map_err(|source| BusError::Ack { source })
            }
            Acker::Memory(acker) => {
                acker.extend();
                Ok(())
            }
        }
    }

    /// Asks for redelivery after `delay`.
    pub async fn nak(&self, delay: std::time::Duration) -> Result<(), BusError> {
        use async_nats::jetstream::AckKind;
        match &self.acker {
            Acker::Nats(acker) => acker
                .ack_with(AckKind::Nak(Some(delay)))
                .await
                .map_err(|source| BusError::Ack { source }),
            Acker::Memory(acker) => {
                acker.nak(delay);
                Ok(())
            }
        }
    }
}
