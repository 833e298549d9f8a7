//! Settings of the stdout sink.

use serde::Deserialize;

use crate::encoding::Encoding;

/// `stdout:` in the sinks file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {
    /// How each line is rendered: json (default), ocsf, ecs, cef or text.
    #[serde(default)]
    pub encoding: Encoding,
}
