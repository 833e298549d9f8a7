//! Message transports for fim, with one set of semantics.
//!
//! [`Bus`] publishes to JetStream streams and hands out durable consumers
//! whose deliveries must be acknowledged explicitly; an unacknowledged
//! delivery comes back after its ack wait, or at once when its consumer is
//! dropped, and a repeated message id within the stream's duplicate window is
//! stored once. Two transports honour this: NATS JetStream for
//! microservices, and an in-process bus for `fim all` without NATS, which
//! keeps messages in memory only (a crash loses what was in flight there;
//! the collector's start-up inventory recovers the state).

pub mod error;
pub mod health;
mod memory;
mod message;
mod metrics;
mod nats;
pub mod stage;
pub mod trace;

pub use error::BusError;
pub use health::{Health, ReadyFlag};
pub use memory::MemoryBus;
pub use message::{Delivery, Headers, Outgoing};
pub use nats::NatsBus;
pub use stage::{Failure, StageContext};

use std::time::Duration;

use schemas::stream::StreamSpec;

/// A durable consumer to create or attach to.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Stream to read.
    pub stream: StreamSpec,
    /// Durable name; processes using the same name share the work.
    pub durable: String,
    /// Subject filter inside the stream.
    pub filter: String,
    /// How long a delivery may stay unacknowledged before it is redelivered.
    pub ack_wait: Duration,
    /// Deliveries per message before the bus gives up on it (0: unlimited).
    pub max_deliver: i64,
}

impl ConsumerSpec {
    /// A consumer with the defaults every stage uses: 30 s ack wait (longer
    /// than any single hash or delivery should take) and unlimited
    /// redelivery, since losing a change is worse than retrying it.
    pub fn new(stream: StreamSpec, durable: impl Into<String>, filter: impl Into<String>) -> Self {
        Self {
            stream,
            durable: durable.into(),
            filter: filter.into(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 0,
        }
    }
}

/// A connection to one transport. Cloning shares the connection.
#[derive(Clone)]
pub enum Bus {
    /// NATS JetStream.
    Nats(NatsBus),
    /// In-process streams.
    Memory(MemoryBus),
}

impl Bus {
    /// Connects to NATS and makes sure every stream of [`schemas::stream::ALL`] exists.
    pub async fn connect(url: &str, client_name: &str) -> Result<Self, BusError> {
        Ok(Self::Nats(NatsBus::connect(url, client_name).await?))
    }

    /// A fresh in-process bus holding every stream of [`schemas::stream::ALL`].
    pub fn memory() -> Self {
        Self::Memory(MemoryBus::new())
    }

    /// Whether the transport can carry messages right now (for NATS: the
    /// connection is up; the in-process bus always can).
    pub fn is_connected(&self) -> bool {
        match self {
            Self::Nats(bus) => bus.is_connected(),
            Self::Memory(_) => true,
        }
    }

    /// Publishes one message and waits until the stream has stored it. The
    /// current trace context is added to its headers.
    pub async fn publish(&self, mut message: Outgoing) -> Result<(), BusError> {
        trace::inject_current(&mut message.headers);
        match self {
            Self::Nats(bus) => bus.publish(message).await,
            Self::Memory(bus) => bus.publish(message),
        }
    }

    /// Creates the durable consumer if needed and attaches to it.
    pub async fn consumer(&self, spec: ConsumerSpec) -> Result<Consumer, BusError> {
        match self {
            Self::Nats(bus) => Ok(Consumer::Nats(Box::new(bus.consumer(spec).await?))),
            Self::Memory(bus) => Ok(Consumer::Memory(bus.consumer(spec)?)),
        }
    }
}

/// An attachment to a durable consumer. Dropping it hands its
/// unacknowledged deliveries back for redelivery.
pub enum Consumer {
    /// NATS pull consumer (boxed: its message stream is large).
    Nats(Box<nats::NatsConsumer>),
    /// In-process consumer.
    Memory(memory::MemoryConsumer),
}

impl Consumer {
    /// Messages matching the consumer that it has not delivered yet (its
    /// lag), plus those waiting for redelivery.
    pub async fn pending(&mut self) -> Result<u64, BusError> {
        match self {
            Self::Nats(consumer) => consumer.pending().await,
            Self::Memory(consumer) => Ok(consumer.pending()),
        }
    }

    /// The next delivery; `None` when the transport closed for good.
    pub async fn next(&mut self) -> Option<Result<Delivery, BusError>> {
        match self {
            Self::Nats(consumer) => consumer.next().await,
            Self::Memory(consumer) => Some(Ok(consumer.next().await)),
        }
    }
}
