//! Errors that stop the hasher.

/// Why the hasher could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration field is invalid.
    #[error("invalid hasher configuration: {field} {reason}")]
    Config {
        /// Field name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The bus refused to set up the consumer.
    #[error(transparent)]
    Bus(#[from] bus::BusError),
}
