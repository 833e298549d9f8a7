//! Settings of the Splunk HEC sink.

use std::path::PathBuf;

use serde::Deserialize;

use crate::encoding::Encoding;

/// `splunk_hec:` in the sinks file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplunkHecConfig {
    /// Collector endpoint, e.g. `https://splunk:8088/services/collector/event`.
    pub url: String,
    /// Environment variable holding the HEC token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// File holding the HEC token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Index to write to. Default: the token's default index.
    #[serde(default)]
    pub index: Option<String>,
    /// Source type. Default `fim:alert`.
    #[serde(default = "default_sourcetype")]
    pub sourcetype: String,
    /// Source. Default `fim`.
    #[serde(default = "default_source")]
    pub source: String,
    /// Event encoding: json (default), ocsf, ecs, cef or text.
    #[serde(default)]
    pub encoding: Encoding,
    /// Extra CA certificate (PEM) to trust, e.g. Splunk's own.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_sourcetype() -> String {
    "fim:alert".into()
}

fn default_source() -> String {
    "fim".into()
}
