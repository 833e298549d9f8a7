//! POSTs each batch as one request. With a key, the body is signed:
//! `<signature_header>: sha256=<hex HMAC-SHA256(key, body)>`, which the
//! receiver recomputes over the raw body before parsing it.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderName};
use schemas::Alert;

use super::WebhookConfig;
use crate::Error;
use crate::encoding::Encoding;
use crate::secret::{self, Secret};
use crate::sinks::{Sink, SinkError, http};

/// Header with the ids of the alerts in the body, for receivers that
/// deduplicate.
pub const ALERT_IDS_HEADER: &str = "X-Fim-Alert-Ids";

/// Posts alerts to an HTTP endpoint.
pub struct WebhookSink {
    client: reqwest::Client,
    url: Secret,
    encoding: Encoding,
    key: Option<Secret>,
    signature_header: HeaderName,
}

impl WebhookSink {
    /// Reads the URL and key and builds the client.
    pub fn new(config: WebhookConfig, field: &str, timeout: Duration) -> Result<Self, Error> {
        let url = match (&config.url, config.url_env.is_some() || config.url_file.is_some()) {
            (Some(_), true) => {
                return Err(Error::config(
                    format!("{field}.url"),
                    "set only one of url, url_env and url_file",
                ));
            }
            (Some(url), false) => Secret::new(url.clone()),
            (None, _) => secret::require(
                &format!("{field}.url"),
                config.url_env.as_deref(),
                config.url_file.as_deref(),
            )?,
        };
        if reqwest::Url::parse(url.expose()).is_err() {
            return Err(Error::config(format!("{field}.url"), "not a URL"));
        }
        let key = secret::resolve(
            &format!("{field}.hmac_key"),
            config.hmac_key_env.as_deref(),
            config.hmac_key_file.as_deref(),
        )?;
        let signature_header = HeaderName::from_bytes(config.signature_header.as_bytes())
            .map_err(|e| Error::config(format!("{field}.signature_header"), e.to_string()))?;
        let client = http::client(field, timeout, config.ca_file.as_deref())?;
        Ok(Self { client, url, encoding: config.encoding, key, signature_header })
    }

    fn body(&self, batch: &[Alert]) -> (String, &'static str) {
        let encoded = batch.iter().map(|alert| self.encoding.encode(alert));
        if !self.encoding.is_json() {
            let lines: Vec<String> = encoded.map(|e| e.into_line() + "\n").collect();
            return (lines.concat(), "text/plain; charset=utf-8");
        }
        let body = match batch.len() {
            1 => encoded.map(|e| e.into_json()).next().unwrap_or_default(),
            _ => serde_json::Value::Array(encoded.map(|e| e.into_json()).collect()),
        };
        (body.to_string(), "application/json")
    }
}

impl Sink for WebhookSink {
    async fn send(&mut self, batch: &[Alert]) -> Result<(), SinkError> {
        let (body, content_type) = self.body(batch);
        let ids: Vec<&str> = batch.iter().map(|a| a.id.as_str()).collect();
        let mut request = self
            .client
            .post(self.url.expose())
            .header(CONTENT_TYPE, content_type)
            .header(ALERT_IDS_HEADER, ids.join(","));
        if let Some(key) = &self.key {
            request = request.header(self.signature_header.clone(), sign(key.expose(), &body));
        }
        http::send(request.body(body)).await
    }
}

/// `sha256=<hex>` of HMAC-SHA256 over `body`.
pub fn sign(key: &str, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
    let tag = ring::hmac::sign(&key, body.as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc_4231_test_case_2() {
        let signature = sign("Jefe", "what do ya want for nothing?");
        assert_eq!(
            signature,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
