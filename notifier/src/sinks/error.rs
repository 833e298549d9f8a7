//! Why a delivery attempt failed, and whether trying again can help.

use std::time::Duration;

/// A failed delivery attempt.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The receiver could not be reached or the connection broke.
    #[error("cannot reach {target}")]
    Io {
        /// Address or host, never a secret URL.
        target: String,
        /// Why.
        source: std::io::Error,
    },
    /// An HTTP request failed before a response arrived.
    #[error("HTTP request failed")]
    Http {
        /// The client's error, with any URL removed (it may be a secret).
        source: reqwest::Error,
    },
    /// The receiver answered with an error status.
    #[error("receiver answered HTTP {status}: {body}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// What `Retry-After` asked for, if anything.
        retry_after: Option<Duration>,
        /// The start of the response body.
        body: String,
    },
    /// The attempt took longer than the sink's timeout.
    #[error("delivery attempt timed out after {0:?}")]
    Timeout(Duration),
    /// The alert cannot be rendered for this sink; retrying cannot help.
    #[error("cannot encode alert {id}: {reason}")]
    Encode {
        /// Alert id.
        id: String,
        /// Why.
        reason: String,
    },
}

impl SinkError {
    /// Whether another attempt may succeed: network errors, timeouts,
    /// HTTP 408, 425, 429 and 5xx are retried; other 4xx mean the receiver
    /// refuses this request (a revoked webhook, a malformed event) and are
    /// dead-lettered at once.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Io { .. } | Self::Http { .. } | Self::Timeout(_) => true,
            Self::Status { status, .. } => matches!(status, 408 | 425 | 429 | 500..=599),
            Self::Encode { .. } => false,
        }
    }

    /// How long the receiver asked us to wait (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short fixed label for metrics and dead-letter headers.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Http { .. } => "http",
            Self::Status { status: 429, .. } => "rate_limited",
            Self::Status { status: 500..=599, .. } => "server_error",
            Self::Status { .. } => "rejected",
            Self::Timeout(_) => "timeout",
            Self::Encode { .. } => "encode",
        }
    }
}
