//! Errors that stop the notifier: an invalid sinks file, a secret that
//! cannot be read, or a consumer the bus refused. Delivery failures are not
//! here; they are [`crate::sinks::SinkError`] and are retried.

use std::path::PathBuf;

/// Why the notifier could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sinks file could not be read.
    #[error("cannot read sinks file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The sinks file is not valid YAML of the expected shape.
    #[error("invalid sinks file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A configuration field is invalid.
    #[error("invalid notifier configuration: {field}: {reason}")]
    Config {
        /// Field name, e.g. `sinks[1].slack.url_env`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The bus refused to set up a consumer.
    #[error(transparent)]
    Bus(#[from] bus::BusError),
    /// A sink worker panicked (a bug); the other sinks were stopped too.
    #[error("a sink worker panicked: {reason}")]
    Panicked {
        /// The panic as reported by the runtime.
        reason: String,
    },
    /// A sink's consumer closed for good while the notifier was running.
    #[error("consumer of sink {sink} closed by the transport")]
    ConsumerClosed {
        /// Sink name.
        sink: String,
    },
}

impl Error {
    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Config { field: field.into(), reason: reason.into() }
    }
}
