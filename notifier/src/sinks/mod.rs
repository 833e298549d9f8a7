//! Sinks: where alerts go. Each sink is a folder with its `config.rs`
//! (the YAML settings) and `sink.rs` (the [`Sink`] implementation); the
//! delivery worker around every sink (batching, rate limits, retries, dead
//! letters, acknowledgements) lives in [`crate::delivery`] and is the same
//! for all of them.

mod error;
mod http;
pub mod slack;
pub mod splunk_hec;
pub mod stdout;
pub mod syslog;
pub mod webhook;

use std::future::Future;

use schemas::Alert;

pub use error::SinkError;

use crate::Error;
use crate::config::SinkKind;

/// A receiver of alerts.
pub trait Sink: Send + 'static {
    /// Delivers every alert of `batch`, in order.
    ///
    /// `Ok` means the receiver took all of them (an HTTP 2xx, or the bytes
    /// written to the socket); the alerts are acknowledged right after and
    /// never sent again. An error means some or none were taken: when
    /// [`SinkError::is_retryable`] the worker sends the whole batch again
    /// after a backoff (at least its [`SinkError::retry_after`]), so a
    /// receiver may see an alert twice and should deduplicate on its `id`;
    /// otherwise, or once the attempts are used up, the batch goes to the
    /// sink's dead-letter subject. The worker bounds each call with the
    /// sink's timeout.
    fn send(&mut self, batch: &[Alert]) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// Any configured sink; dispatches to the kind's implementation.
pub(crate) enum AnySink {
    Stdout(stdout::StdoutSink),
    Slack(slack::SlackSink),
    Syslog(syslog::SyslogSink),
    Webhook(webhook::WebhookSink),
    SplunkHec(splunk_hec::SplunkHecSink),
}

impl AnySink {
    /// Builds a sink, reading its secrets and certificates; `field` names
    /// it in errors.
    pub(crate) fn build(
        kind: SinkKind,
        field: &str,
        timeout: std::time::Duration,
    ) -> Result<Self, Error> {
        Ok(match kind {
            SinkKind::Stdout(config) => Self::Stdout(stdout::StdoutSink::new(config)),
            SinkKind::Slack(config) => {
                Self::Slack(slack::SlackSink::new(config, &format!("{field}.slack"), timeout)?)
            }
            SinkKind::Syslog(config) => {
                Self::Syslog(syslog::SyslogSink::new(config, &format!("{field}.syslog"))?)
            }
            SinkKind::Webhook(config) => Self::Webhook(webhook::WebhookSink::new(
                config,
                &format!("{field}.webhook"),
                timeout,
            )?),
            SinkKind::SplunkHec(config) => Self::SplunkHec(splunk_hec::SplunkHecSink::new(
                config,
                &format!("{field}.splunk_hec"),
                timeout,
            )?),
        })
    }
}

impl Sink for AnySink {
    async fn send(&mut self, batch: &[Alert]) -> Result<(), SinkError> {
        match self {
            Self::Stdout(sink) => sink.send(batch).await,
            Self::Slack(sink) => sink.send(batch).await,
            Self::Syslog(sink) => sink.send(batch).await,
            Self::Webhook(sink) => sink.send(batch).await,
            Self::SplunkHec(sink) => sink.send(batch).await,
        }
    }
}
