//! What the HTTP sinks share: one client per sink, a POST that turns the
//! response into `Ok` or a [`SinkError`], and `Retry-After` parsing.
//!
//! Errors never carry the URL: Slack webhook URLs are secrets.

use std::path::Path;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::SinkError;
use crate::Error;

// Enough of an error body to explain it in a log line.
const BODY_EXCERPT: usize = 256;

/// A client with the sink's timeout and, when given, an extra trusted CA.
pub(crate) fn client(
    field: &str,
    timeout: Duration,
    ca_file: Option<&Path>,
) -> Result<reqwest::Client, Error> {
    let mut builder = reqwest::Client::builder().timeout(timeout).connect_timeout(timeout);
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|error| {
            Error::config(format!("{field}.ca_file"), format!("{}: {error}", path.display()))
        })?;
        let certificate = reqwest::Certificate::from_pem(&pem).map_err(|error| {
            Error::config(format!("{field}.ca_file"), format!("{}: {error}", path.display()))
        })?;
        builder = builder.add_root_certificate(certificate);
    }
    builder
        .build()
        .map_err(|error| Error::config(field, format!("cannot build an HTTP client: {error}")))
}

/// Sends `request`; any 2xx is success.
pub(crate) async fn send(request: reqwest::RequestBuilder) -> Result<(), SinkError> {
    let response =
        request.send().await.map_err(|source| SinkError::Http { source: source.without_url() })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = retry_after(response.headers());
    let body = response.text().await.unwrap_or_default();
    let body: String = body.chars().take(BODY_EXCERPT).collect();
    Err(SinkError::Status { status: status.as_u16(), retry_after, body })
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let format = time::format_description::parse_borrowed::<2>(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT",
    )
    .ok()?;
    let at = time::PrimitiveDateTime::parse(value, &format).ok()?.assume_utc();
    let delay = at - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(delay).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&headers), Some(Duration::ZERO), "a past date means now");
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }
}
