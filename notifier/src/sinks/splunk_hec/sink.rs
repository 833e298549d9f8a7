//! One request per batch: the events are concatenated JSON objects, as HEC
//! accepts them, each with the alert's time, the node as `host`, and the
//! configured source, sourcetype and index. HEC answers 503 when busy
//! (retried) and 400/401/403 for a bad event or token (dead-lettered).
//!
//! Limitation: HEC indexer acknowledgement (`useACK`) is not used, so
//! "delivered" means HEC accepted the events, not that they were indexed.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use schemas::Alert;
use serde_json::json;

use super::SplunkHecConfig;
use crate::Error;
use crate::secret::{self, Secret};
use crate::sinks::{Sink, SinkError, http};

/// Posts alerts to a Splunk HTTP Event Collector.
pub struct SplunkHecSink {
    client: reqwest::Client,
    config: SplunkHecConfig,
    authorization: Secret,
}

impl SplunkHecSink {
    /// Reads the token and builds the client.
    pub fn new(config: SplunkHecConfig, field: &str, timeout: Duration) -> Result<Self, Error> {
        if reqwest::Url::parse(&config.url).is_err() {
            return Err(Error::config(
                format!("{field}.url"),
                format!("not a URL: {:?}", config.url),
            ));
        }
        let token = secret::require(
            &format!("{field}.token"),
            config.token_env.as_deref(),
            config.token_file.as_deref(),
        )?;
        let authorization = Secret::new(format!("Splunk {}", token.expose()));
        let client = http::client(field, timeout, config.ca_file.as_deref())?;
        Ok(Self { client, config, authorization })
    }

    /// The request body: one HEC event object per alert.
    pub fn body(&self, batch: &[Alert]) -> String {
        let mut body = String::new();
        for alert in batch {
            let time = alert.time.unix_timestamp_nanos() as f64 / 1e9;
            let mut event = json!({
                "time": (time * 1000.0).round() / 1000.0,
                "host": alert.node,
                "source": self.config.source,
                "sourcetype": self.config.sourcetype,
                "event": self.config.encoding.encode(alert).into_json(),
            });
            if let Some(index) = &self.config.index {
                event["index"] = index.clone().into();
            }
            body.push_str(&event.to_string());
            body.push('\n');
        }
        body
    }
}

impl Sink for SplunkHecSink {
    async fn send(&mut self, batch: &[Alert]) -> Result<(), SinkError> {
        let request = self
            .client
            .post(&self.config.url)
            .header(AUTHORIZATION, self.authorization.expose())
            .header(CONTENT_TYPE, "application/json")
            .body(self.body(batch));
        http::send(request).await
    }
}
