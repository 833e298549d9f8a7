//! What the collector watches, as given by the binary.
//!
//! [`Config::validate`] checks it once, before any work: a node name, at
//! least one watch root, and every root an existing directory or regular
//! file. Roots are resolved to absolute, symlink-free paths at start, so the
//! paths in events are the ones a hasher can open.

use std::path::{Path, PathBuf};

use crate::Error;

/// Configuration of the collector stage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// Name of this node; part of every event id and of the event subject.
    pub node: String,
    /// Directories (watched with everything below them) and single regular
    /// files. At least one.
    pub watch: Vec<PathBuf>,
    /// Paths whose changes are never reported, with everything below them
    /// (the binary passes its own data directory). May not exist yet.
    pub exclude: Vec<PathBuf>,
}

impl Config {
    /// Checks every field; the error names the field and the value.
    pub fn validate(&self) -> Result<(), Error> {
        if self.node.trim().is_empty() {
            return Err(invalid("node", &self.node, "must not be empty"));
        }
        if self.watch.is_empty() {
            return Err(invalid("watch", "[]", "at least one path to watch is required"));
        }
        self.watch.iter().try_for_each(|path| validate_watch(path))
    }
}

fn validate_watch(path: &Path) -> Result<(), Error> {
    let shown = path.display().to_string();
    let metadata = std::fs::metadata(path)
        .map_err(|error| invalid("watch", &shown, &format!("cannot be read: {error}")))?;
    if metadata.is_dir() || metadata.is_file() {
        Ok(())
    } else {
        Err(invalid("watch", &shown, "is neither a directory nor a regular file"))
    }
}

fn invalid(field: &'static str, value: &str, reason: &str) -> Error {
    Error::InvalidConfig { field, value: value.to_owned(), reason: reason.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(watch: Vec<PathBuf>) -> Config {
        Config { node: "node-1".into(), watch, exclude: Vec::new() }
    }

    fn field_of(error: Error) -> &'static str {
        match error {
            Error::InvalidConfig { field, .. } => field,
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn an_empty_watch_list_is_refused_by_field_name() {
        let error = config(Vec::new()).validate().unwrap_err();
        assert_eq!(field_of(error), "watch");
    }

    #[test]
    fn a_missing_watch_path_is_refused_with_its_value() {
        let error = config(vec!["/nonexistent/fim-test".into()]).validate().unwrap_err();
        assert!(error.to_string().contains("/nonexistent/fim-test"), "{error}");
        assert_eq!(field_of(error), "watch");
    }

    #[test]
    fn a_device_is_not_a_watch_root() {
        let error = config(vec!["/dev/null".into()]).validate().unwrap_err();
        assert_eq!(field_of(error), "watch");
    }

    #[test]
    fn an_empty_node_name_is_refused() {
        let mut config = config(vec!["/".into()]);
        config.node = " ".into();
        assert_eq!(field_of(config.validate().unwrap_err()), "node");
    }

    #[test]
    fn directories_and_files_are_accepted() {
        assert!(config(vec!["/".into(), "/etc/hostname".into()]).validate().is_ok());
    }
}
