//! Errors of the transports, each carrying the subject or stream involved.

/// A boxed error from the underlying client.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong on the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The NATS server could not be reached.
    #[error("cannot connect to NATS at {url}")]
    Connect {
        /// Server URL as given.
        url: String,
        /// Client error.
        source: BoxError,
    },
    /// A stream could not be created or looked up.
    #[error("cannot set up stream {stream}")]
    Stream {
        /// Stream name.
        stream: String,
        /// Client error.
        source: BoxError,
    },
    /// A durable consumer could not be created or attached.
    #[error("cannot set up consumer {durable} on stream {stream}")]
    Consumer {
        /// Stream name.
        stream: String,
        /// Durable name.
        durable: String,
        /// Client error.
        source: BoxError,
    },
    /// No stream captures the subject.
    #[error("no stream captures subject {subject}")]
    NoStream {
        /// The subject published to.
        subject: String,
    },
    /// A publish was not confirmed by the stream.
    #[error("publish to {subject} failed")]
    Publish {
        /// The subject published to.
        subject: String,
        /// Client error.
        source: BoxError,
    },
    /// Receiving from a consumer failed; the consumer may recover.
    #[error("receive from consumer {durable} failed")]
    Receive {
        /// Durable name.
        durable: String,
        /// Client error.
        source: BoxError,
    },
    /// An acknowledgement did not reach the server; the message will be
    /// redelivered, which handlers tolerate.
    #[error("acknowledgement failed")]
    Ack {
        /// Client error.
        source: BoxError,
    },
}
