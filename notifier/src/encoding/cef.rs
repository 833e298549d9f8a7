//! ArcSight Common Event Format, one line per alert:
//! `CEF:0|fim|fim|<version>|<rule>|<name>|<severity>|<extension>`.
//!
//! Header fields escape `\` and `|`; extension values escape `\`, `=`, and
//! write newlines as `\n` and `\r`. Other control characters become a
//! space, since CEF has no escape for them (the path stays recoverable from
//! the `\xNN` form, which only uses printable characters).

use schemas::{Alert, Severity};

use super::{PRODUCT, VERSION, summary};

/// The CEF line of one alert.
pub fn cef(alert: &Alert) -> String {
    let name = format!("{} {}", alert.path.escaped(), alert.change.as_str());
    let header = [PRODUCT, PRODUCT, VERSION, &alert.rule, &name].map(escape_header).join("|");
    let mut line = format!("CEF:0|{header}|{}|", severity(alert.severity));
    let extension: Vec<String> = fields(alert)
        .into_iter()
        .map(|(key, value)| format!("{key}={}", escape_extension(&value)))
        .collect();
    line.push_str(&extension.join(" "));
    line
}

fn severity(severity: Severity) -> u8 {
    match severity {
        Severity::Info => 1,
        Severity::Low => 3,
        Severity::Medium => 5,
        Severity::High => 8,
        Severity::Critical => 10,
    }
}

// Keys from the CEF dictionary; custom strings carry what it has no key for.
fn fields(alert: &Alert) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("rt", (alert.time.unix_timestamp_nanos() / 1_000_000).to_string()),
        ("externalId", alert.id.clone()),
        ("act", alert.change.as_str().to_owned()),
        ("filePath", alert.path.escaped()),
        ("fname", file_name(&alert.path.escaped()).to_owned()),
        ("dvchost", alert.node.clone()),
        ("msg", summary(alert)),
    ];
    if let Some(previous) = &alert.previous_path {
        out.push(("oldFilePath", previous.escaped()));
    }
    if let Some(after) = &alert.after {
        out.extend(after.blake3.clone().map(|hash| ("fileHash", hash)));
        out.push(("fsize", after.size.to_string()));
        out.push(("filePermission", format!("{:o}", after.mode & 0o7777)));
    }
    if let Some(before) = &alert.before {
        out.extend(before.blake3.clone().map(|hash| ("oldFileHash", hash)));
        out.push(("oldFileSize", before.size.to_string()));
        out.push(("oldFilePermission", format!("{:o}", before.mode & 0o7777)));
    }
    if let Some(process) = &alert.process {
        out.push(("spid", process.pid.to_string()));
        out.extend(process.command.clone().map(|command| ("sproc", command)));
        out.extend(process.uid.map(|uid| ("suid", uid.to_string())));
    }
    if let Some(container) = &alert.container {
        let custom = [
            ("cs1", "container", Some(container.name.clone().unwrap_or(container.id.clone()))),
            ("cs2", "pod", container.pod.clone()),
            ("cs3", "namespace", container.namespace.clone()),
            ("cs4", "image", container.image.clone()),
        ];
        for (key, label, value) in custom {
            if let Some(value) = value {
                out.push((label_key(key), label.to_owned()));
                out.push((key, value));
            }
        }
    }
    if !alert.controls.is_empty() {
        out.push(("cs5Label", "controls".into()));
        out.push(("cs5", alert.controls.join(",")));
    }
    out
}

fn label_key(key: &str) -> &'static str {
    match key {
        "cs1" => "cs1Label",
        "cs2" => "cs2Label",
        "cs3" => "cs3Label",
        _ => "cs4Label",
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Escapes a header field: `\` and `|`; control characters become spaces.
pub fn escape_header(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Escapes an extension value: `\`, `=`, newline and carriage return;
/// other control characters become spaces.
pub fn escape_extension(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::fixtures;

    // Splits a CEF line the way a receiver does: header on unescaped `|`.
    fn header_fields(line: &str) -> Vec<String> {
        let mut fields = vec![String::new()];
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' if fields.len() < 8 => {
                    let next = chars.next().unwrap();
                    fields.last_mut().unwrap().push(next);
                }
                '|' if fields.len() < 8 => fields.push(String::new()),
                c => fields.last_mut().unwrap().push(c),
            }
        }
        fields
    }

    // Reads one extension value back: unescapes until the next ` key=`.
    fn extension_value(extension: &str, key: &str) -> String {
        let start = extension.find(&format!("{key}=")).unwrap() + key.len() + 1;
        let mut value = String::new();
        let mut chars = extension[start..].chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next().unwrap() {
                    'n' => value.push('\n'),
                    'r' => value.push('\r'),
                    other => value.push(other),
                },
                '=' => panic!("unescaped = in value of {key}: {extension}"),
                ' ' if chars.clone().take_while(|c| *c != ' ').any(|c| c == '=') => break,
                c => value.push(c),
            }
        }
        value
    }

    #[test]
    fn a_plain_alert_has_eight_header_fields() {
        let line = cef(&fixtures::alert());
        let fields = header_fields(&line);
        assert_eq!(fields.len(), 8, "{line}");
        assert_eq!(
            fields[..7],
            ["CEF:0", "fim", "fim", VERSION, "passwd-changed", "/etc/passwd modified", "10"]
        );
        assert!(fields[7].contains("filePath=/etc/passwd"), "{line}");
        assert!(fields[7].contains("cs3Label=namespace cs3=payments"), "{line}");
        assert!(fields[7].contains(&format!("fileHash={}", "9a".repeat(32))), "{line}");
    }

    #[test]
    fn hostile_file_names_cannot_forge_fields() {
        let alert = fixtures::hostile_alert();
        let line = cef(&alert);
        assert!(!line.contains('\n') && !line.contains('\r'), "one line: {line:?}");
        let fields = header_fields(&line);
        assert_eq!(fields.len(), 8, "pipes in names stay inside their field: {line}");
        assert_eq!(fields[4], "jar|swap\\x");
        assert_eq!(fields[5], "/app/a|b\\\\c=d e\\xff\\xfe.jar modified");
        // The extension value unescapes to the escaped path, which in turn
        // restores the original bytes.
        let path = extension_value(&fields[7], "filePath");
        assert_eq!(path, alert.path.escaped());
        assert_eq!(schemas::RawPath::from_escaped(&path).unwrap(), alert.path);
        assert!(
            fields[7].contains("filePath=/app/a|b\\\\\\\\c\\=d\\ne\\\\xff\\\\xfe.jar "),
            "{line}"
        );
    }

    #[test]
    fn escaping_follows_the_cef_rules() {
        assert_eq!(escape_header("a|b\\c=d"), "a\\|b\\\\c=d");
        assert_eq!(escape_extension("a|b\\c=d\ne\rf"), "a|b\\\\c\\=d\\ne\\rf");
    }
}
