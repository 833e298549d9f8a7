//! Errors that stop the notifier.

/// Why the notifier could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration field is invalid.
    #[error("invalid notifier configuration: {field} {reason}")]
    Config {
        /// Field name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The bus refused to set up a consumer.
    #[error(transparent)]
    Bus(#[from] bus::BusError),
}
