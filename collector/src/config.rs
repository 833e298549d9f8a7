//! What the collector watches, as given by the binary.
//!
//! [`Config::validate`] checks it once, before any work: a node name,
//! something to watch (a root or containers), every root an existing
//! directory or regular file, and a readable /proc for discovery. Roots are resolved to absolute, symlink-free paths at start, so the
//! paths in events are the ones a hasher can open.

use std::path::{Path, PathBuf};

use crate::Error;
pub use crate::containers::metadata::StatePaths;

/// Configuration of the collector stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Name of this node; part of every event id and of the event subject.
    pub node: String,
    /// Directories (watched with everything below them) and single regular
    /// files. At least one unless containers are watched.
    pub watch: Vec<PathBuf>,
    /// Paths whose changes are never reported, with everything below them
    /// (the binary passes its own data directory). May not exist yet.
    pub exclude: Vec<PathBuf>,
    /// Discover running containers and watch their root filesystems and
    /// volumes. Default: true.
    pub containers: bool,
    /// Where the node's /proc is mounted (a pod sees the host's at another
    /// path). Default: `/proc`.
    pub proc_root: PathBuf,
    /// Where the container runtimes keep their state files.
    pub state: StatePaths,
    /// Also watch containers labelled [`IGNORE_LABEL`]` = true` (or
    /// annotated so). Default: false.
    pub watch_ignored: bool,
}

/// A container label (Docker) or annotation (OCI bundle) that, set to
/// `true`, keeps the collector away from the container: fim's own
/// container, or containers of tests running beside other monitors.
pub const IGNORE_LABEL: &str = "io.fim.ignore";

impl Default for Config {
    fn default() -> Self {
        Self {
            node: String::new(),
            watch: Vec::new(),
            exclude: Vec::new(),
            containers: true,
            proc_root: "/proc".into(),
            state: StatePaths::default(),
            watch_ignored: false,
        }
    }
}

impl Config {
    /// Checks every field; the error names the field and the value.
    pub fn validate(&self) -> Result<(), Error> {
        if self.node.trim().is_empty() {
            return Err(invalid("node", &self.node, "must not be empty"));
        }
        if self.watch.is_empty() && !self.containers {
            let reason = "at least one path to watch is required when containers are not watched";
            return Err(invalid("watch", "[]", reason));
        }
        if self.containers && !self.proc_root.join("self").is_dir() {
            let shown = self.proc_root.display().to_string();
            return Err(invalid("proc_root", &shown, "is not a mounted /proc"));
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
        Config { node: "node-1".into(), watch, containers: false, ..Config::default() }
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
    fn containers_alone_are_enough_to_watch_but_need_proc() {
        let containers = Config { containers: true, ..config(Vec::new()) };
        assert!(containers.validate().is_ok());
        let no_proc = Config { proc_root: "/nonexistent".into(), ..containers };
        assert_eq!(field_of(no_proc.validate().unwrap_err()), "proc_root");
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
