//! Posts one Block Kit message per batch to the webhook. Slack answers
//! 200 `ok` on success, 429 with `Retry-After` when posting too fast, and
//! 4xx (`invalid_payload`, `no_service`) when it will never accept it.

use std::time::Duration;

use schemas::Alert;

use super::{SlackConfig, message};
use crate::Error;
use crate::secret::{self, Secret};
use crate::sinks::{Sink, SinkError, http};

/// Posts alerts to a Slack incoming webhook.
pub struct SlackSink {
    client: reqwest::Client,
    url: Secret,
}

impl SlackSink {
    /// Reads the webhook URL and builds the client; `field` names the
    /// settings in errors.
    pub fn new(config: SlackConfig, field: &str, timeout: Duration) -> Result<Self, Error> {
        let url = secret::require(
            &format!("{field}.url"),
            config.url_env.as_deref(),
            config.url_file.as_deref(),
        )?;
        if reqwest::Url::parse(url.expose()).is_err() {
            return Err(Error::config(format!("{field}.url"), "the secret is not a URL"));
        }
        let client = http::client(field, timeout, config.ca_file.as_deref())?;
        Ok(Self { client, url })
    }
}

impl Sink for SlackSink {
    async fn send(&mut self, batch: &[Alert]) -> Result<(), SinkError> {
        let body = message(batch).to_string();
        let request = self
            .client
            .post(self.url.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        http::send(request).await
    }
}
