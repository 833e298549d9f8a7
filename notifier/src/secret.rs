//! Secrets (webhook URLs, tokens, HMAC keys) read from an environment
//! variable or a file at start-up, never from the sinks file itself, so the
//! file can be committed. A [`Secret`] prints as `<redacted>` in `Debug`
//! and has no `Display`, so it cannot end up in a log line by accident.

use std::fmt;
use std::path::Path;

use crate::Error;

/// A secret value; only [`Secret::expose`] reveals it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value (tests and tools; the notifier reads secrets with
    /// [`resolve`]).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Reads the secret named by `<field>_env` or `<field>_file`; exactly one of
/// them may be set. `None` when neither is. File contents are trimmed of
/// trailing newlines, as `echo secret > file` adds one.
pub(crate) fn resolve(
    field: &str,
    env: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<Secret>, Error> {
    match (env, file) {
        (Some(_), Some(_)) => {
            Err(Error::config(field, "set only one of the _env and _file variants"))
        }
        (Some(variable), None) => match std::env::var(variable) {
            Ok(value) if !value.is_empty() => Ok(Some(Secret(value))),
            Ok(_) => Err(Error::config(format!("{field}_env"), format!("{variable} is empty"))),
            Err(_) => Err(Error::config(format!("{field}_env"), format!("{variable} is not set"))),
        },
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|error| {
                Error::config(format!("{field}_file"), format!("{}: {error}", path.display()))
            })?;
            let value = text.trim_end_matches(['\r', '\n']);
            if value.is_empty() {
                return Err(Error::config(format!("{field}_file"), "the file is empty"));
            }
            Ok(Some(Secret(value.to_owned())))
        }
        (None, None) => Ok(None),
    }
}

/// Like [`resolve`], but one of the two must be set.
pub(crate) fn require(
    field: &str,
    env: Option<&str>,
    file: Option<&Path>,
) -> Result<Secret, Error> {
    resolve(field, env, file)?
        .ok_or_else(|| Error::config(field, format!("set {field}_env or {field}_file")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("https://hooks.slack.com/services/T/B/XYZ");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(secret)), "Some(<redacted>)");
    }

    #[test]
    fn files_are_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        let secret = require("token", None, Some(&path)).unwrap();
        assert_eq!(secret.expose(), "s3cret");
    }

    #[test]
    fn missing_sources_name_the_field() {
        let error = require("url", Some("FIM_TEST_SURELY_UNSET_VARIABLE"), None).unwrap_err();
        assert!(error.to_string().contains("url_env"), "{error}");
        let error = require("url", None, None).unwrap_err();
        assert!(error.to_string().contains("url_env or url_file"), "{error}");
    }
}
