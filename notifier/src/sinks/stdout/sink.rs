//! Writes each alert as one line and flushes, so a reader sees it at once.
//! A failed write (a closed pipe) is retried.

use std::io::Write;

use schemas::Alert;

use super::StdoutConfig;
use crate::sinks::{Sink, SinkError};

/// Writes alerts to standard output.
pub struct StdoutSink {
    config: StdoutConfig,
}

impl StdoutSink {
    /// A sink with these settings.
    pub fn new(config: StdoutConfig) -> Self {
        Self { config }
    }
}

impl Sink for StdoutSink {
    async fn send(&mut self, batch: &[Alert]) -> Result<(), SinkError> {
        let mut text = String::new();
        for alert in batch {
            text.push_str(&self.config.encoding.encode(alert).into_line());
            text.push('\n');
        }
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|source| SinkError::Io { target: "stdout".into(), source })
    }
}
