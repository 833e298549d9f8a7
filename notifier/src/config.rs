//! Notifier configuration, validated once at start-up.

use bus::ConsumerSpec;
use schemas::{stream, subject};

use crate::Error;

/// How the notifier runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Alert subject filter, e.g. `fim.alerts.>` (everything, the default)
    /// or `fim.alerts.critical.>`.
    pub filter: String,
}

impl Default for Config {
    fn default() -> Self {
        Self { filter: format!("{}.>", subject::ALERTS) }
    }
}

impl Config {
    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), Error> {
        let prefix = format!("{}.", subject::ALERTS);
        let valid = self.filter.starts_with(&prefix)
            && self.filter.len() > prefix.len()
            && !self.filter.contains(char::is_whitespace);
        if !valid {
            let reason = format!("must be a subject under {prefix}, got {:?}", self.filter);
            return Err(Error::Config { field: "filter", reason });
        }
        Ok(())
    }

    pub(crate) fn consumer_spec(&self, sink: &str) -> ConsumerSpec {
        ConsumerSpec::new(stream::ALERTS, format!("notifier-{sink}"), self.filter.clone())
    }
}
