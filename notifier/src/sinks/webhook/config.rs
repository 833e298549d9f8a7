//! Settings of the generic webhook sink.

use std::path::PathBuf;

use serde::Deserialize;

use crate::encoding::Encoding;

/// `webhook:` in the sinks file. Set exactly one of `url`, `url_env` and
/// `url_file`; URLs with tokens in them belong in the latter two.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Endpoint URL, when it holds no secret.
    #[serde(default)]
    pub url: Option<String>,
    /// Environment variable holding the endpoint URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// File holding the endpoint URL.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// Body encoding: json (default), ocsf, ecs, cef or text. JSON
    /// encodings send one object, or an array when a batch holds several
    /// alerts; cef and text send one line per alert.
    #[serde(default)]
    pub encoding: Encoding,
    /// Environment variable holding the HMAC-SHA256 key.
    #[serde(default)]
    pub hmac_key_env: Option<String>,
    /// File holding the HMAC-SHA256 key.
    #[serde(default)]
    pub hmac_key_file: Option<PathBuf>,
    /// Header carrying `sha256=<hex HMAC of the body>`. Default
    /// `X-Fim-Signature-256`.
    #[serde(default = "default_signature_header")]
    pub signature_header: String,
    /// Extra CA certificate (PEM) to trust.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_signature_header() -> String {
    "X-Fim-Signature-256".into()
}
