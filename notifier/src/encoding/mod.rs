//! How a sink renders an alert: native JSON, OCSF File System Activity,
//! Elastic Common Schema, ArcSight CEF, or one human-readable line.
//!
//! Every encoding is a pure function of the alert, so a redelivered alert
//! renders byte for byte the same. Paths are shown in their escaped form
//! (`\xNN` for bytes that are not UTF-8), so every output is valid UTF-8.

mod cef;
mod ecs;
mod ocsf;

use schemas::{Alert, ChangeKind};
use serde::Deserialize;

pub use cef::cef;
pub use ecs::ecs;
pub use ocsf::ocsf;

/// Product name in OCSF metadata, CEF headers and ECS `observer`.
pub const PRODUCT: &str = "fim";
/// Product version, from this crate.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The encodings a sink can choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The alert as documented in docs/alerts.md.
    #[default]
    Json,
    /// OCSF File System Activity (class 1001).
    Ocsf,
    /// Elastic Common Schema.
    Ecs,
    /// ArcSight Common Event Format, one line.
    Cef,
    /// One human-readable line.
    Text,
}

/// An encoded alert: a JSON document or a line of text.
#[derive(Debug, Clone, PartialEq)]
pub enum Encoded {
    /// JSON encodings.
    Json(serde_json::Value),
    /// CEF and text.
    Text(String),
}

impl Encoded {
    /// One line: compact JSON, or the text as is.
    pub fn into_line(self) -> String {
        match self {
            Self::Json(value) => value.to_string(),
            Self::Text(text) => text,
        }
    }

    /// As a JSON value; text becomes a JSON string.
    pub fn into_json(self) -> serde_json::Value {
        match self {
            Self::Json(value) => value,
            Self::Text(text) => serde_json::Value::String(text),
        }
    }
}

impl Encoding {
    /// Renders one alert.
    pub fn encode(self, alert: &Alert) -> Encoded {
        match self {
            // Serializing an Alert to a Value cannot fail: every key is a string.
            Self::Json => Encoded::Json(serde_json::to_value(alert).unwrap_or_default()),
            Self::Ocsf => Encoded::Json(ocsf(alert)),
            Self::Ecs => Encoded::Json(ecs(alert)),
            Self::Cef => Encoded::Text(cef(alert)),
            Self::Text => Encoded::Text(summary(alert)),
        }
    }

    /// Whether the output is JSON (for content types and batching).
    pub fn is_json(self) -> bool {
        matches!(self, Self::Json | Self::Ocsf | Self::Ecs)
    }
}

/// What happened, in words: `modified`, `created`, ...
pub fn change_word(change: ChangeKind) -> &'static str {
    change.as_str()
}

/// Where the change happened: `container web (pod ns/pod)` or `host node-1`.
pub fn place(alert: &Alert) -> String {
    let Some(container) = &alert.container else {
        return format!("host {}", alert.node);
    };
    let name = container.name.as_deref().unwrap_or(&container.id);
    let mut text = format!("container {name}");
    if let Some(pod) = &container.pod {
        let namespace = container.namespace.as_deref().unwrap_or("-");
        text.push_str(&format!(" (pod {namespace}/{pod})"));
    }
    text.push_str(&format!(" on {}", alert.node));
    text
}

/// Who made the change: `sh[4242] uid 0`, or `unknown process`.
pub fn actor(alert: &Alert) -> String {
    let Some(process) = &alert.process else { return "unknown process".into() };
    let command = process.command.as_deref().unwrap_or("?");
    let mut text = format!("{command}[{}]", process.pid);
    if let Some(uid) = process.uid {
        text.push_str(&format!(" uid {uid}"));
    }
    text
}

/// The one-line summary: severity, path, change, where, who and rule.
/// Control characters (a newline in a file name) are shown as `\u{..}`
/// escapes so the line stays one line.
pub fn summary(alert: &Alert) -> String {
    let path = alert.path.escaped();
    let text = format!(
        "{severity} {path} {change} in {place} by {actor} (rule {rule}, alert {id})",
        severity = alert.severity.as_str(),
        change = change_word(alert.change),
        place = place(alert),
        actor = actor(alert),
        rule = alert.rule,
        id = alert.id,
    );
    one_line(&text)
}

/// Replaces control characters with visible escapes.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { c.escape_unicode().to_string() } else { c.to_string() })
        .collect()
}

#[cfg(test)]
pub(crate) mod fixtures {
    use schemas::{Alert, RawPath};
    use serde_json::json;

    /// A modified /etc/passwd in a Kubernetes container. Built from JSON,
    /// as documented in docs/alerts.md, so fields added to the schema later
    /// take their defaults.
    pub fn alert() -> Alert {
        let state = |hash: &str, size: u64| {
            json!({
                "kind": "file", "blake3": hash.repeat(32), "size": size, "mode": 0o100644,
                "uid": 0, "gid": 0, "mtime_ns": 1_764_766_000_000_000_000_i64, "link_target": null,
            })
        };
        let value = json!({
            "schema_version": schemas::SCHEMA_VERSION,
            "id": "alert:obs:node-1:1764766000000000000:7",
            "time": "2025-12-03T12:46:40.123456789Z",
            "severity": "critical",
            "rule": "passwd-changed",
            "change": "modified",
            "path": "/etc/passwd",
            "previous_path": null,
            "node": "node-1",
            "container": {
                "id": "c0ffee", "name": "web", "image": "registry.local/web:1.2",
                "image_id": "sha256:abcd", "pod": "web-7d9f", "namespace": "payments",
            },
            "before": state("3f", 1021),
            "after": state("9a", 1043),
            "process": { "pid": 4242, "command": "sh", "executable": "/bin/busybox", "uid": 0 },
            "controls": ["PCI-DSS-4.0:11.5.2", "NIST-800-53:SI-7"],
            "diff": "+evil:x:0:0::/:/bin/sh\n",
        });
        serde_json::from_value(value).expect("the documented alert parses")
    }

    /// A file name an attacker chose: pipes, backslashes, equals signs,
    /// a newline and bytes that are not UTF-8.
    pub fn hostile_alert() -> Alert {
        let mut alert = alert();
        alert.path = RawPath::from_bytes(b"/app/a|b\\c=d\ne\xff\xfe.jar".to_vec());
        alert.rule = "jar|swap\\x".into();
        alert
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_one_line_even_for_hostile_names() {
        let line = summary(&fixtures::hostile_alert());
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("\\xff\\xfe"), "{line}");
        let line = summary(&fixtures::alert());
        assert_eq!(
            line,
            "critical /etc/passwd modified in container web (pod payments/web-7d9f) on node-1 \
             by sh[4242] uid 0 (rule passwd-changed, alert alert:obs:node-1:1764766000000000000:7)"
        );
    }

    #[test]
    fn json_is_the_documented_alert() {
        let value = Encoding::Json.encode(&fixtures::alert()).into_json();
        assert_eq!(value["path"], "/etc/passwd");
        assert_eq!(value["severity"], "critical");
    }
}
