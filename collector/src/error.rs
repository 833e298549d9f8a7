//! Errors of the collector, each naming the path, field or limit involved.
//!
//! Only start-up problems end [`crate::run`]: a bad configuration, a missing
//! privilege, a watch root that cannot be marked, or the bus refusing the
//! rescan consumer. Problems with single events are counted and logged, never
//! returned.

use std::io;

use schemas::RawPath;

/// What stopped the collector.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is unusable.
    #[error("invalid collector configuration: `{field}` = {value:?}: {reason}")]
    InvalidConfig {
        /// Name of the field, as in [`crate::Config`].
        field: &'static str,
        /// The offending value, as text.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// The process may not create a fanotify group.
    #[error("fanotify_init was refused: fim's collector needs root or CAP_SYS_ADMIN")]
    NotPermitted {
        /// The kernel's answer (EPERM).
        source: io::Error,
    },
    /// The fanotify group could not be created for another reason.
    #[error("fanotify_init failed (needs Linux 5.17 or later with fanotify enabled)")]
    Init {
        /// The kernel's answer.
        source: io::Error,
    },
    /// The per-user mark limit was reached.
    #[error(
        "cannot watch directory {path}: too many fanotify marks; raise \
         /proc/sys/fs/fanotify/max_user_marks"
    )]
    MarkLimit {
        /// Directory that could not be marked.
        path: RawPath,
        /// The kernel's answer (ENOSPC).
        source: io::Error,
    },
    /// A directory could not be opened, identified or marked.
    #[error("cannot watch directory {path}")]
    Watch {
        /// Directory that could not be watched.
        path: RawPath,
        /// What failed.
        source: io::Error,
    },
    /// Reading the fanotify queue failed.
    #[error("cannot read fanotify events")]
    Read {
        /// The kernel's answer.
        source: io::Error,
    },
    /// The bus refused the rescan consumer.
    #[error("cannot attach to rescan requests on {subject}")]
    Bus {
        /// Subject of the rescan requests.
        subject: String,
        /// Transport error.
        source: bus::BusError,
    },
    /// A background task of the collector ended abnormally.
    #[error("collector task {task} failed")]
    Task {
        /// Which task.
        task: &'static str,
        /// How it ended.
        source: tokio::task::JoinError,
    },
}

impl Error {
    /// Classifies a failed mark: ENOSPC has its own advice.
    pub(crate) fn watch(path: RawPath, source: io::Error) -> Self {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            Self::MarkLimit { path, source }
        } else {
            Self::Watch { path, source }
        }
    }
}
