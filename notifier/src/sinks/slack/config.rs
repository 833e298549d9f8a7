//! Settings of the Slack sink.

use std::path::PathBuf;

use serde::Deserialize;

/// `slack:` in the sinks file. The webhook URL is a secret: it comes from
/// an environment variable or a file, never from the sinks file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// Environment variable holding the webhook URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// File holding the webhook URL (e.g. a mounted Kubernetes secret).
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// Extra CA certificate (PEM) to trust, for a proxy in between.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}
