//! Renders alerts as a Slack Block Kit message: per alert a headline
//! (severity, path, change), fields for where (container, pod, node), who
//! (process), the rule and hashes, the redacted diff in a code block, and
//! a context line with the alert id. Text is escaped for Slack's mrkdwn and
//! every section text is capped at Slack's 3000 characters.

use schemas::{Alert, Severity};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use crate::encoding::{actor, place, summary};

/// Slack rejects section texts longer than this (characters).
pub const SECTION_TEXT_LIMIT: usize = 3000;
// Slack's limit for one field of a section.
const FIELD_TEXT_LIMIT: usize = 2000;

/// The message body for a batch of alerts.
pub fn message(batch: &[Alert]) -> Value {
    let mut blocks = Vec::new();
    for (index, alert) in batch.iter().enumerate() {
        if index > 0 {
            blocks.push(json!({ "type": "divider" }));
        }
        blocks.extend(alert_blocks(alert));
    }
    let text = match batch {
        [one] => summary(one),
        [first, ..] => format!("{} (and {} more fim alerts)", summary(first), batch.len() - 1),
        [] => String::new(),
    };
    json!({ "text": cap(&escape(&text), SECTION_TEXT_LIMIT), "blocks": blocks })
}

fn alert_blocks(alert: &Alert) -> Vec<Value> {
    let headline = format!(
        "{} *{}* `{}` {}",
        emoji(alert.severity),
        alert.severity.as_str().to_uppercase(),
        escape(&code_safe(&alert.path.escaped())),
        alert.change.as_str(),
    );
    let mut blocks =
        vec![section(&headline), json!({ "type": "section", "fields": fields(alert) })];
    if let Some(diff) = &alert.diff {
        let fence = "```";
        let room = SECTION_TEXT_LIMIT - 2 * fence.len() - 2;
        let body = cap(&escape(&code_safe(diff)), room);
        blocks.push(section(&format!("{fence}\n{body}{fence}")));
    }
    let time = alert.time.format(&Rfc3339).unwrap_or_default();
    let controls = alert.controls.join(", ");
    let context = format!("alert `{}` · {time} · {controls}", escape(&alert.id));
    blocks.push(json!({
        "type": "context",
        "elements": [{ "type": "mrkdwn", "text": cap(&context, SECTION_TEXT_LIMIT) }],
    }));
    blocks
}

fn fields(alert: &Alert) -> Vec<Value> {
    let mut fields =
        vec![("Where", place(alert)), ("Who", actor(alert)), ("Rule", alert.rule.clone())];
    if let Some(image) = alert.container.as_ref().and_then(|c| c.image.clone()) {
        fields.push(("Image", image));
    }
    if let Some(previous) = &alert.previous_path {
        fields.push(("Renamed from", previous.escaped()));
    }
    // The first 16 hex digits are enough to tell versions apart.
    let hash = |state: &Option<schemas::FileState>| {
        let hash = state.as_ref().and_then(|s| s.blake3.as_deref()).unwrap_or("-");
        hash.chars().take(16).collect::<String>()
    };
    fields.push(("BLAKE3", format!("{} → {}", hash(&alert.before), hash(&alert.after))));
    fields
        .into_iter()
        .map(|(label, value)| {
            let text = format!("*{label}*\n{}", escape(&value));
            json!({ "type": "mrkdwn", "text": cap(&text, FIELD_TEXT_LIMIT) })
        })
        .collect()
}

fn section(text: &str) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": cap(text, SECTION_TEXT_LIMIT) } })
}

fn emoji(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => ":rotating_light:",
        Severity::High => ":red_circle:",
        Severity::Medium => ":large_orange_circle:",
        Severity::Low => ":large_yellow_circle:",
        Severity::Info => ":information_source:",
    }
}

/// Escapes the three characters Slack's mrkdwn requires escaped.
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

// A backtick run in a file name or diff would close the code span early.
fn code_safe(text: &str) -> String {
    text.replace('`', "'")
}

/// At most `limit` characters; a cut text ends with `…`.
pub(crate) fn cap(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(limit - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::fixtures;

    fn texts(value: &Value) -> Vec<String> {
        let mut out = Vec::new();
        match value {
            Value::Object(map) => {
                if let Some(Value::String(text)) = map.get("text") {
                    out.push(text.clone());
                }
                map.values().for_each(|v| out.extend(texts(v)));
            }
            Value::Array(items) => items.iter().for_each(|v| out.extend(texts(v))),
            _ => {}
        }
        out
    }

    #[test]
    fn a_message_says_what_where_who_and_shows_the_diff() {
        let body = message(&[fixtures::alert()]).to_string();
        for expected in [
            "*CRITICAL* `/etc/passwd` modified",
            "container web (pod payments/web-7d9f) on node-1",
            "sh[4242] uid 0",
            "passwd-changed",
            "```\\n+evil:x:0:0::/:/bin/sh\\n```",
            "2025-12-03T12:46:40.123456789Z",
        ] {
            assert!(body.contains(expected), "{expected} missing in {body}");
        }
    }

    #[test]
    fn huge_diffs_are_capped_at_3000_characters() {
        let mut alert = fixtures::alert();
        alert.diff = Some("é<".repeat(10_000));
        let value = message(&[alert.clone(), alert]);
        for text in texts(&value) {
            assert!(text.chars().count() <= SECTION_TEXT_LIMIT, "{} chars", text.len());
        }
        assert_eq!(value["blocks"].as_array().unwrap().len(), 9);
    }

    #[test]
    fn markup_in_names_is_escaped() {
        let mut alert = fixtures::alert();
        alert.path = schemas::RawPath::from("/tmp/<!channel>&`x`");
        let body = message(&[alert]).to_string();
        assert!(body.contains("/tmp/&lt;!channel&gt;&amp;'x'"), "{body}");
        assert!(!body.contains("<!channel>"));
    }
}
