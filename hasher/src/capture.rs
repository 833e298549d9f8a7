//! Content capture for diffs: which paths are captured (globs), how much
//! (a byte bound), and redaction of secrets before anything leaves the node.
//!
//! Only small text files are captured: content with a NUL byte is binary
//! and skipped. Redaction replaces the value of any key that looks like a
//! password, token, key, secret or credential with `<redacted>` in
//! properties, YAML, env, INI and JSON text, the password of a URL's user
//! part, and the body of PEM private keys. Shadow files are never captured,
//! whatever the globs say.

use std::borrow::Cow;

/// The value written in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// Paths captured when no globs are configured: configuration formats
/// applications reload at run time, the account and privilege files an
/// intruder edits first, and common template suffixes.
pub const DEFAULT_GLOBS: &[&str] = &[
    "*.properties",
    "*.yml",
    "*.yaml",
    "*.conf",
    "*.cnf",
    "*.ini",
    "*.toml",
    "*.env",
    ".env",
    "*.json",
    "*.xml",
    "*.tmpl",
    "*.tpl",
    "*.j2",
    "*.ftl",
    "*.mustache",
    "*.hbs",
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/sudoers",
    "/etc/sudoers.d/*",
    "/etc/crontab",
    "/etc/cron.d/*",
    "/etc/ld.so.preload",
    "**/authorized_keys",
    "**/authorized_keys2",
];

// Never captured: hashed passwords are secrets in their own right.
const NEVER: &[&str] = &["/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-"];

// Key fragments that mark a value as secret, compared lower-case with `-`,
// `_` and `.` removed. "key" alone catches `api.key`, `secret_key`,
// `aws.access.key`; over-redacting a harmless value is the cheaper mistake.
const SECRET_KEYS: &[&str] =
    &["password", "passwd", "pwd", "secret", "token", "key", "credential", "passphrase", "auth"];

/// Whether `path` (as seen by the container or on the host) is captured
/// under `globs`.
pub fn wanted(globs: &[String], path: &[u8]) -> bool {
    if NEVER.iter().any(|never| never.as_bytes() == path) {
        return false;
    }
    globs.iter().any(|glob| glob_matches(glob.as_bytes(), path))
}

/// Globs: `*` and `?` within one component, `**` across components. A
/// glob with no `/` matches the file name anywhere; one with a `/` matches
/// the whole path.
pub fn glob_matches(glob: &[u8], path: &[u8]) -> bool {
    if glob.contains(&b'/') {
        return match_from(glob, path);
    }
    let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    match_from(glob, name)
}

fn match_from(glob: &[u8], text: &[u8]) -> bool {
    match glob {
        [] => text.is_empty(),
        [b'*', b'*', b'/', rest @ ..] => {
            // `**/x` matches `x` at this level or after any number of
            // components.
            match_from(rest, text)
                || text
                    .iter()
                    .enumerate()
                    .any(|(i, &b)| b == b'/' && match_from(rest, &text[i + 1..]))
        }
        [b'*', b'*', rest @ ..] => (0..=text.len()).any(|i| match_from(rest, &text[i..])),
        [b'*', rest @ ..] => {
            let end = text.iter().position(|&b| b == b'/').unwrap_or(text.len());
            (0..=end).any(|i| match_from(rest, &text[i..]))
        }
        [b'?', rest @ ..] => matches!(text, [c, tail @ ..] if *c != b'/' && match_from(rest, tail)),
        [c, rest @ ..] => matches!(text, [t, tail @ ..] if t == c && match_from(rest, tail)),
    }
}

/// Whether content looks like text (no NUL byte).
pub fn is_text(content: &[u8]) -> bool {
    !content.contains(&0)
}

/// `content` with secrets replaced; the format is judged by the path.
pub fn redact(path: &[u8], content: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(content);
    let redacted = if path.ends_with(b".json") { redact_json(&text) } else { redact_lines(&text) };
    redact_url_passwords(&redacted).into_owned().into_bytes()
}

fn is_secret_key(key: &str) -> bool {
    let key: String = key
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | '.' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_KEYS.iter().any(|fragment| key.contains(fragment))
}

/// Line formats: `key=value`, `key: value`, `export KEY=value`, YAML block
/// scalars (`key: |` with the indented lines below), PEM private keys.
fn redact_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut block_indent: Option<usize> = None;
    let mut in_private_key = false;
    for line in text.split_inclusive('\n') {
        let (body, newline) = split_newline(line);
        let indent = body.len() - body.trim_start().len();
        if let Some(parent) = block_indent {
            if body.trim().is_empty() || indent > parent {
                out.push_str(&format!("{}{REDACTED}{newline}", &body[..indent]));
                continue;
            }
            block_indent = None;
        }
        if in_private_key {
            in_private_key = !body.contains("-----END");
            if in_private_key {
                out.push_str(&format!("{REDACTED}{newline}"));
                continue;
            }
        } else if body.contains("-----BEGIN") && body.contains("PRIVATE KEY") {
            in_private_key = true;
        }
        let (redacted, block) = redact_assignment(body);
        if block {
            block_indent = Some(indent);
        }
        out.push_str(&redacted);
        out.push_str(newline);
    }
    out
}

fn split_newline(line: &str) -> (&str, &str) {
    match line.strip_suffix('\n') {
        Some(body) => (body, "\n"),
        None => (line, ""),
    }
}

/// One `key<sep>value` line: the value redacted when the key is secret.
/// The second result says the value is a YAML block scalar whose lines
/// follow.
fn redact_assignment(line: &str) -> (Cow<'_, str>, bool) {
    let trimmed = line.trim_start();
    if trimmed.starts_with('#') || trimmed.starts_with(';') || trimmed.starts_with("//") {
        return (Cow::Borrowed(line), false);
    }
    let Some(sep) = line.find(['=', ':']) else { return (Cow::Borrowed(line), false) };
    let key = line[..sep].trim().trim_start_matches("- ").trim_start_matches("export ");
    let key = key.trim_matches(|c| c == '"' || c == '\'');
    let value = &line[sep + 1..];
    let value_start = sep + 1 + (value.len() - value.trim_start().len());
    if !is_secret_key(key) || value.trim().is_empty() {
        return (Cow::Borrowed(line), false);
    }
    let block = matches!(value.trim().chars().next(), Some('|' | '>'));
    (Cow::Owned(format!("{}{REDACTED}", &line[..value_start])), block)
}

/// JSON as written, without re-formatting: the value after any secret key
/// (a string, number, literal, object or array) becomes `"<redacted>"`.
fn redact_json(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        let end = string_end(bytes, i);
        let key = text.get(i + 1..end.saturating_sub(1)).unwrap_or("");
        let after = skip_space(bytes, end);
        if after < bytes.len() && bytes[after] == b':' && is_secret_key(key) {
            let start = skip_space(bytes, after + 1);
            let stop = value_end(bytes, start);
            out.push_str(&text[copied..start]);
            out.push_str(&format!("\"{REDACTED}\""));
            copied = stop;
            i = stop;
        } else {
            i = end;
        }
    }
    out.push_str(&text[copied..]);
    out
}

// Index just past the string that opens at `start`.
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

fn skip_space(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

// Index just past the JSON value that starts at `start`.
fn value_end(bytes: &[u8], start: usize) -> usize {
    match bytes.get(start) {
        Some(b'"') => string_end(bytes, start),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut i = start;
            while i < bytes.len() {
                match bytes[i] {
                    b'"' => {
                        i = string_end(bytes, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            bytes.len()
        }
        _ => {
            let rest = &bytes[start.min(bytes.len())..];
            let len = rest.iter().position(|b| matches!(b, b',' | b'}' | b']' | b'\n'));
            start + len.unwrap_or(rest.len())
        }
    }
}

/// `scheme://user:password@host` keeps the user and hides the password.
fn redact_url_passwords(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end =
            tail.find(|c: char| c == '/' || c.is_whitespace()).unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..=colon]);
                out.push_str(REDACTED);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globs() -> Vec<String> {
        DEFAULT_GLOBS.iter().map(|g| g.to_string()).collect()
    }

    fn redacted(path: &str, text: &str) -> String {
        String::from_utf8(redact(path.as_bytes(), text.as_bytes())).unwrap()
    }

    #[test]
    fn default_globs_capture_config_and_account_files_but_never_shadow() {
        let globs = globs();
        for path in ["/app/application.properties", "/etc/passwd", "/etc/sudoers.d/90-ops"] {
            assert!(wanted(&globs, path.as_bytes()), "{path}");
        }
        assert!(wanted(&globs, b"/root/.ssh/authorized_keys"));
        assert!(wanted(&globs, b"/app/config/app.yml"));
        assert!(!wanted(&globs, b"/etc/shadow"));
        assert!(!wanted(&globs, b"/app/app.jar"));
        assert!(!wanted(&globs, b"/etc/sudoers.d/deep/x"));
        assert!(!wanted(&["/etc/shadow".to_string()], b"/etc/shadow"));
    }

    #[test]
    fn double_star_crosses_directories_and_single_star_does_not() {
        assert!(glob_matches(b"/srv/**/*.conf", b"/srv/a/b/c.conf"));
        assert!(glob_matches(b"/srv/**/*.conf", b"/srv/c.conf"));
        assert!(!glob_matches(b"/srv/*.conf", b"/srv/a/c.conf"));
        assert!(glob_matches(b"app-?.yml", b"/x/app-1.yml"));
    }

    #[test]
    fn properties_secrets_are_redacted_and_other_values_kept() {
        let text = "spring.datasource.url=jdbc:postgresql://db/app\n\
                    spring.datasource.password=hunter2\n\
                    api.key: abc123\n\
                    # password=commented\n";
        let out = redacted("/app/application.properties", text);
        assert!(out.contains("spring.datasource.url=jdbc:postgresql://db/app\n"));
        assert!(out.contains("spring.datasource.password=<redacted>\n"));
        assert!(out.contains("api.key: <redacted>\n"));
        assert!(!out.contains("hunter2") && !out.contains("abc123"));
    }

    #[test]
    fn yaml_block_scalars_and_env_exports_are_redacted() {
        let yaml = "db:\n  user: app\n  client_secret: |\n    line1\n    line2\n  host: db\n";
        let out = redacted("/app/app.yml", yaml);
        assert_eq!(
            out,
            "db:\n  user: app\n  client_secret: <redacted>\n    <redacted>\n    <redacted>\n  host: db\n"
        );
        let env = redacted("/app/.env", "export GITHUB_TOKEN=ghp_x\nPATH=/bin\n");
        assert_eq!(env, "export GITHUB_TOKEN=<redacted>\nPATH=/bin\n");
    }

    #[test]
    fn json_secret_values_of_any_shape_are_redacted_in_place() {
        let json = r#"{"user":"app","password":"p\"w","nested":{"apiToken":42},"credentials":{"a":[1,"x"]},"ok":true}"#;
        let out = redacted("/app/config.json", json);
        assert_eq!(
            out,
            r#"{"user":"app","password":"<redacted>","nested":{"apiToken":"<redacted>"},"credentials":"<redacted>","ok":true}"#
        );
    }

    #[test]
    fn url_passwords_and_private_keys_are_redacted_anywhere() {
        let out = redacted("/app/app.conf", "url = postgres://app:s3cret@db:5432/app\n");
        assert_eq!(out, "url = postgres://app:<redacted>@db:5432/app\n");
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\nabcd\n-----END RSA PRIVATE KEY-----\n";
        let out = redacted("/app/tls.conf", pem);
        assert!(!out.contains("MIIE") && !out.contains("abcd"), "{out}");
    }

    #[test]
    fn binary_content_is_not_text() {
        assert!(!is_text(b"\x7fELF\0\0"));
        assert!(is_text(b"root:x:0:0::/root:/bin/sh\n"));
    }
}
