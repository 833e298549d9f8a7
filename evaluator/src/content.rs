//! What changed inside a file: a unified diff and semantic findings, both
//! read from the content the hasher captured.
//!
//! The captured content is already redacted on the node; this module only
//! compares the two redacted texts (the image's and the current one), so a
//! secret that never left the node never appears here. Findings name the
//! facts that make a change dangerous (a new uid 0 user, a new SSH key, a
//! new sudo grant, a preloaded library, a datasource pointing elsewhere)
//! and raise the alert's severity to at least critical.

use std::collections::{BTreeMap, BTreeSet};

use schemas::{CapturedContent, RawPath, Severity};
use similar::TextDiff;

/// Longest diff put in an alert: sinks have limits (Slack sections hold
/// 3000 characters) and a diff longer than this is not read by anyone.
pub const MAX_DIFF: usize = 16 * 1024;

/// One fact found in the changed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Lowest severity an alert carrying it gets.
    pub severity: Severity,
    /// What was found, for people.
    pub text: String,
}

fn critical(text: String) -> Finding {
    Finding { severity: Severity::Critical, text }
}

/// A unified diff from the image's content (or nothing) to the current one.
pub fn diff(content: &CapturedContent) -> String {
    let old = String::from_utf8_lossy(content.image.as_deref().unwrap_or_default());
    let new = String::from_utf8_lossy(&content.current);
    let diff = TextDiff::from_lines(old.as_ref(), new.as_ref());
    let mut text = diff.unified_diff().context_radius(3).header("image", "current").to_string();
    if text.len() > MAX_DIFF {
        let mut cut = MAX_DIFF;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n[diff cut at the alert size limit]\n");
    }
    if content.truncated {
        text.push_str("[content truncated at the capture limit]\n");
    }
    text
}

/// Findings for `path` given its captured content.
pub fn findings(path: &RawPath, content: &CapturedContent) -> Vec<Finding> {
    let old = String::from_utf8_lossy(content.image.as_deref().unwrap_or_default()).into_owned();
    let new = String::from_utf8_lossy(&content.current).into_owned();
    let bytes = path.as_bytes();
    let name = bytes.rsplit(|b| *b == b'/').next().unwrap_or_default();
    match (bytes, name) {
        (b"/etc/passwd", _) => root_users(&old, &new),
        (_, b"authorized_keys" | b"authorized_keys2") => new_keys(&old, &new),
        (b"/etc/sudoers", _) => new_grants(&old, &new),
        (p, _) if p.starts_with(b"/etc/sudoers.d/") => new_grants(&old, &new),
        (b"/etc/ld.so.preload", _) => preload(&new),
        (_, n) if is_config(n) => datasources(&old, &new),
        _ => Vec::new(),
    }
}

fn is_config(name: &[u8]) -> bool {
    [&b".properties"[..], b".yml", b".yaml"].iter().any(|ext| name.ends_with(ext))
}

// Users whose uid field is 0, by name.
fn uid_zero(text: &str) -> BTreeSet<&str> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() >= 4 && fields[2].trim() == "0").then_some(fields[0])
        })
        .collect()
}

fn root_users(old: &str, new: &str) -> Vec<Finding> {
    let before = uid_zero(old);
    uid_zero(new)
        .into_iter()
        .filter(|user| !before.contains(user))
        .map(|user| critical(format!("new user with uid 0 in /etc/passwd: {user}")))
        .collect()
}

// Lines that carry meaning: not blank, not comments.
fn entries(text: &str) -> BTreeSet<&str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
}

fn new_keys(old: &str, new: &str) -> Vec<Finding> {
    let before = entries(old);
    entries(new)
        .into_iter()
        .filter(|line| !before.contains(line))
        .map(|line| critical(format!("new authorized_keys entry: {}", describe_key(line))))
        .collect()
}

// The key type and comment, and the key's last characters: enough to
// recognise it without copying the whole key into every sink.
fn describe_key(line: &str) -> String {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let Some(at) = fields.iter().position(|f| f.starts_with("ssh-") || f.starts_with("ecdsa-"))
    else {
        return "unrecognised key line".into();
    };
    let key = fields.get(at + 1).copied().unwrap_or_default();
    let tail = &key[key.len().saturating_sub(8)..];
    let comment = fields.get(at + 2..).map(|c| c.join(" ")).unwrap_or_default();
    format!("{} …{tail} {comment}", fields[at]).trim_end().to_owned()
}

fn new_grants(old: &str, new: &str) -> Vec<Finding> {
    let before = entries(old);
    entries(new)
        .into_iter()
        .filter(|line| !before.contains(line) && !line.starts_with("Defaults"))
        .map(|line| critical(format!("new sudoers grant: {line}")))
        .collect()
}

fn preload(new: &str) -> Vec<Finding> {
    let libraries: Vec<&str> = entries(new).into_iter().collect();
    if libraries.is_empty() {
        return Vec::new();
    }
    vec![critical(format!("/etc/ld.so.preload is not empty: {}", libraries.join(", ")))]
}

fn datasources(old: &str, new: &str) -> Vec<Finding> {
    let before = datasource_values(old);
    let mut found = Vec::new();
    for (key, value) in datasource_values(new) {
        match before.get(&key) {
            Some(was) if *was == value => {}
            Some(was) => {
                found.push(critical(format!("datasource {key} now points to {value} (was {was})")))
            }
            None => found.push(critical(format!("datasource {key} now points to {value}"))),
        }
    }
    found
}

// Keys that name a datasource URL, or hold a JDBC URL, with their values.
fn datasource_values(text: &str) -> BTreeMap<String, String> {
    settings(text)
        .into_iter()
        .filter(|(key, value)| {
            let key = key.to_ascii_lowercase();
            key.ends_with("datasource.url")
                || key.ends_with("datasource.jdbc-url")
                || value.starts_with("jdbc:")
        })
        .collect()
}

// Limitation: YAML is read line by line, so flow mappings (`{url: x}`),
// anchors and multi-line values are not seen; Spring's block style is.
// `key=value` and `key: value` lines; YAML nesting by indentation becomes
// dotted keys (`spring:` / `  datasource:` / `    url: x` is
// `spring.datasource.url`).
fn settings(text: &str) -> Vec<(String, String)> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut found = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let Some((key, value)) = split_setting(trimmed) else { continue };
        stack.retain(|(depth, _)| *depth < indent);
        let mut path: Vec<&str> = stack.iter().map(|(_, k)| k.as_str()).collect();
        path.push(key);
        if value.is_empty() {
            stack.push((indent, key.to_owned()));
        } else {
            found.push((path.join("."), value.trim_matches(['"', '\'']).to_owned()));
        }
    }
    found
}

fn split_setting(line: &str) -> Option<(&str, &str)> {
    let at = line.find(['=', ':'])?;
    // `jdbc:postgresql://…` as a key would split at its first colon; keys
    // never contain `/`.
    let (key, value) = (line[..at].trim(), line[at + 1..].trim());
    (!key.is_empty() && !key.contains('/') && !key.contains(' ')).then_some((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(image: Option<&str>, current: &str) -> CapturedContent {
        CapturedContent {
            current: current.as_bytes().to_vec(),
            image: image.map(|i| i.as_bytes().to_vec()),
            truncated: false,
        }
    }

    fn texts(path: &str, image: Option<&str>, current: &str) -> Vec<String> {
        let found = findings(&RawPath::from(path), &content(image, current));
        assert!(found.iter().all(|f| f.severity == Severity::Critical));
        found.into_iter().map(|f| f.text).collect()
    }

    #[test]
    fn a_new_uid_zero_user_is_named() {
        let image = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n";
        let current = format!("{image}evil:x:0:0::/:/bin/sh\n");
        assert_eq!(
            texts("/etc/passwd", Some(image), &current),
            ["new user with uid 0 in /etc/passwd: evil"]
        );
        let harmless = format!("{image}app:x:1000:1000::/home/app:/bin/sh\n");
        assert!(texts("/etc/passwd", Some(image), &harmless).is_empty());
    }

    #[test]
    fn a_new_authorized_key_is_described_without_the_whole_key() {
        let current = "# keys\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIabcdefgh attacker@box\n";
        let found = texts("/root/.ssh/authorized_keys", None, current);
        assert_eq!(found, ["new authorized_keys entry: ssh-ed25519 …abcdefgh attacker@box"]);
    }

    #[test]
    fn a_new_sudoers_grant_is_quoted() {
        let image = "Defaults env_reset\nroot ALL=(ALL) ALL\n";
        let current = format!("{image}www ALL=(ALL) NOPASSWD: ALL\n");
        assert_eq!(
            texts("/etc/sudoers.d/www", Some(image), &current),
            ["new sudoers grant: www ALL=(ALL) NOPASSWD: ALL"]
        );
    }

    #[test]
    fn a_non_empty_ld_so_preload_is_reported() {
        assert_eq!(
            texts("/etc/ld.so.preload", None, "/lib/libevil.so\n"),
            ["/etc/ld.so.preload is not empty: /lib/libevil.so"]
        );
        assert!(texts("/etc/ld.so.preload", None, "# nothing\n").is_empty());
    }

    #[test]
    fn a_datasource_pointing_elsewhere_is_reported_in_properties_and_yaml() {
        let image = "server.port=8080\nspring.datasource.url=jdbc:postgresql://db:5432/shop\n";
        let current = "server.port=8080\nspring.datasource.url=jdbc:postgresql://evil:5432/shop\n";
        assert_eq!(
            texts("/app/application.properties", Some(image), current),
            ["datasource spring.datasource.url now points to jdbc:postgresql://evil:5432/shop \
                 (was jdbc:postgresql://db:5432/shop)"]
        );
        let yaml_image = "spring:\n  datasource:\n    url: jdbc:mysql://db/shop\n";
        let yaml_now = "spring:\n  datasource:\n    url: jdbc:mysql://evil/shop\n";
        let found = texts("/app/application.yml", Some(yaml_image), yaml_now);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("datasource spring.datasource.url now points to"));
        assert!(texts("/app/application.yml", Some(yaml_image), yaml_image).is_empty());
    }

    #[test]
    fn diffs_show_redacted_values_as_redacted() {
        let image = "user=shop\npassword=[REDACTED]\nurl=jdbc:h2:mem\n";
        let current = "user=shop\npassword=[REDACTED]\nurl=jdbc:h2:evil\n";
        let text = diff(&content(Some(image), current));
        assert!(text.starts_with("--- image\n+++ current\n"), "{text}");
        assert!(text.contains("-url=jdbc:h2:mem\n+url=jdbc:h2:evil\n"), "{text}");
        // The redacted line is context, exactly as captured.
        assert!(text.contains(" password=[REDACTED]\n"), "{text}");
    }

    #[test]
    fn diffs_say_when_content_was_cut() {
        let mut captured = content(None, "a\n");
        captured.truncated = true;
        assert!(diff(&captured).ends_with("[content truncated at the capture limit]\n"));
        let huge = "x\n".repeat(MAX_DIFF);
        assert!(diff(&content(None, &huge)).len() < MAX_DIFF + 100);
    }
}
