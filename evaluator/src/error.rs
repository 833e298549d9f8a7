//! Errors of the evaluator.

use std::path::PathBuf;

/// Why the evaluator could not run or store a baseline.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration field is invalid.
    #[error("invalid evaluator configuration: {field} {reason}")]
    Config {
        /// Field name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The baseline database could not be opened.
    #[error("cannot open baseline database at {path}")]
    Open {
        /// Database directory.
        path: PathBuf,
        /// sled's error.
        source: sled::Error,
    },
    /// Another process holds the baseline database (sled allows one).
    #[error(
        "baseline database {path} is locked by another process (a running evaluator?); \
         use --nats to send the request to it, or stop it first"
    )]
    Locked {
        /// Database directory.
        path: PathBuf,
    },
    /// The rule files are invalid.
    #[error("invalid rules: {0}")]
    Rules(#[from] crate::rules::RuleErrors),
    /// Reading or writing a baseline failed.
    #[error("baseline store failed")]
    Store(#[from] sled::Error),
    /// A stored baseline could not be decoded.
    #[error("corrupt baseline entry")]
    Corrupt(#[from] rmp_serde::decode::Error),
    /// A baseline could not be encoded.
    #[error("cannot encode baseline entry")]
    Encode(#[from] rmp_serde::encode::Error),
    /// A message could not be encoded.
    #[error("cannot encode message")]
    Codec(#[from] schemas::CodecError),
    /// A record could not be written as JSON.
    #[error("cannot write JSON")]
    Json(#[source] serde_json::Error),
    /// The bus refused to set up the consumer.
    #[error(transparent)]
    Bus(#[from] bus::BusError),
}
