//! The messages exchanged between stages.
//!
//! The flow is `RawEvent` (collector) → `Observation` (hasher) → `Alert`
//! (evaluator) → sinks (notifier), plus `RescanRequest` as a control message.
//! Optional fields carry `#[serde(default)]` so that a reader accepts
//! messages written before the field existed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::RawPath;

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The path already existed when the collector started watching it.
    /// Not a change: it seeds baselines and feeds full comparisons.
    Inventory,
    /// A file or directory appeared.
    Created,
    /// Content was written (reported once per close after writing).
    Modified,
    /// The path disappeared.
    Deleted,
    /// The path was renamed; the old name is in `previous_path`.
    Renamed,
    /// Mode, owner, timestamps or extended attributes changed.
    Attributes,
}

impl ChangeKind {
    /// The lower-case name used in JSON, logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inventory => "inventory",
            Self::Created => "created",
            Self::Modified => "modified",
            Self::Deleted => "deleted",
            Self::Renamed => "renamed",
            Self::Attributes => "attributes",
        }
    }
}

/// Where a watched path lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// A path on the node itself, watched because an operator named it.
    Host {
        /// The watched root the path was found under.
        root: RawPath,
    },
    /// A path inside a container's filesystem.
    Container(ContainerInfo),
}

/// Identity of a container, as far as the collector could learn it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// Full runtime id.
    pub id: String,
    /// Runtime name (Docker name, or the Kubernetes container name).
    #[serde(default)]
    pub name: Option<String>,
    /// Image reference as the container was started with it.
    #[serde(default)]
    pub image: Option<String>,
    /// Image id (content digest) when known.
    #[serde(default)]
    pub image_id: Option<String>,
    /// Kubernetes pod name.
    #[serde(default)]
    pub pod: Option<String>,
    /// Kubernetes namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Container labels (Docker labels, or the pod's Kubernetes labels),
    /// for rule selectors; empty when unknown.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations (OCI bundle or pod annotations), for rule selectors;
    /// empty when unknown.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// The process that made a change, read from /proc when the event was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// Process id as seen from the node.
    pub pid: u32,
    /// Command name (`comm`).
    #[serde(default)]
    pub command: Option<String>,
    /// Executable path.
    #[serde(default)]
    pub executable: Option<RawPath>,
    /// Real user id.
    #[serde(default)]
    pub uid: Option<u32>,
}

/// A change seen by the collector, before anyone looked at the content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawEvent {
    /// Always [`crate::SCHEMA_VERSION`] when written by this version.
    pub schema_version: u16,
    /// Unique id of this event; also its `Nats-Msg-Id`.
    pub id: String,
    /// Node that saw the change.
    pub node: String,
    /// When the collector read the event.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// Host or container the path belongs to.
    pub source: Source,
    /// The path as seen from the source: inside the container for
    /// containers, absolute on the node for host paths.
    pub path: RawPath,
    /// Where the file can be opened on the node (for host paths, `path`).
    pub host_path: RawPath,
    /// The old path of a rename.
    #[serde(default)]
    pub previous_path: Option<RawPath>,
    /// What happened.
    pub change: ChangeKind,
    /// Whether the path is a directory.
    #[serde(default)]
    pub is_dir: bool,
    /// The writing process, when it still existed.
    #[serde(default)]
    pub process: Option<ProcessInfo>,
    /// For container paths on overlay roots: the layers, so the hasher can
    /// find the image's version of the path.
    #[serde(default)]
    pub container_root: Option<ContainerRoot>,
}

/// Where a container's root filesystem lives on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRoot {
    /// The overlay upper directory (the container's own writes).
    pub upper_dir: RawPath,
    /// The image's read-only layers, top first (overlay `lowerdir` order).
    pub lower_dirs: Vec<RawPath>,
}

/// Type of a file system object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// Regular file.
    File,
    /// Directory.
    Directory,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
    /// Block device.
    BlockDevice,
    /// Character device (an overlay whiteout is one).
    CharDevice,
}

/// Content and metadata of a file at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    /// Object type.
    pub kind: FileKind,
    /// BLAKE3 of the content, lower-case hex; regular files only.
    #[serde(default)]
    pub blake3: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// Permission and type bits (`st_mode`).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Target of a symbolic link.
    #[serde(default)]
    pub link_target: Option<RawPath>,
    /// The hash covers only the first bytes of the file (a size cap was
    /// reached); `size` is still the full size.
    #[serde(default)]
    pub partial: bool,
    /// The file kept changing while it was hashed; the hash is of one of
    /// the versions seen.
    #[serde(default)]
    pub unstable: bool,
}

impl FileState {
    /// Whether only metadata (mode, owner) differs while content is the same.
    pub fn same_content(&self, other: &FileState) -> bool {
        self.kind == other.kind
            && self.blake3 == other.blake3
            && self.size == other.size
            && self.link_target == other.link_target
    }

    /// Whether two states differ in anything an integrity check cares about.
    /// Timestamps alone do not count: content, type, mode and owner do. A
    /// directory's size changes with its entries, which are watched on their
    /// own, so it does not count either.
    pub fn differs_from(&self, other: &FileState) -> bool {
        let directories = self.kind == FileKind::Directory && other.kind == FileKind::Directory;
        self.kind != other.kind
            || self.blake3 != other.blake3
            || (!directories && self.size != other.size)
            || self.mode != other.mode
            || self.uid != other.uid
            || self.gid != other.gid
            || self.link_target != other.link_target
    }
}

/// A raw event verified by the hasher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// Always [`crate::SCHEMA_VERSION`] when written by this version.
    pub schema_version: u16,
    /// Unique id; derived from the event id so redelivery keeps it.
    pub id: String,
    /// The event this observation verifies.
    pub event: RawEvent,
    /// The file as found; `None` when it no longer exists.
    pub state: Option<FileState>,
    /// The image's version of the path, for container paths on overlay
    /// roots; `None` when that does not apply or was not looked up.
    #[serde(default)]
    pub image: Option<ImageVersion>,
    /// Captured content for diffs, when the path is marked for capture.
    #[serde(default)]
    pub content: Option<CapturedContent>,
}

/// The image's version of one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageVersion {
    /// The state in the image; `None` when the image has no such path (or
    /// a whiteout or opaque directory hides it).
    pub state: Option<FileState>,
    /// The layer directory that holds it.
    #[serde(default)]
    pub layer: Option<RawPath>,
}

/// Small text content captured on the node for a diff. Secrets are
/// redacted before it is published, so they never leave the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedContent {
    /// The current content, redacted and bounded.
    #[serde(with = "serde_bytes")]
    pub current: Vec<u8>,
    /// The image's content, redacted and bounded, when there is one.
    #[serde(default, with = "serde_bytes")]
    pub image: Option<Vec<u8>>,
    /// Either side was cut at the capture limit.
    #[serde(default)]
    pub truncated: bool,
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For the record.
    Info,
    /// Worth a look.
    Low,
    /// Investigate.
    Medium,
    /// Investigate now.
    High,
    /// Likely compromise.
    Critical,
}

impl Severity {
    /// The lower-case name used in JSON, subjects and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// A change that a rule says someone must know about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Always [`crate::SCHEMA_VERSION`] when written by this version.
    pub schema_version: u16,
    /// Unique id; derived from the observation id so redelivery keeps it.
    pub id: String,
    /// When the change was seen.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// How urgent it is.
    pub severity: Severity,
    /// Id of the rule that raised it.
    pub rule: String,
    /// What happened.
    pub change: ChangeKind,
    /// The path as seen inside the container, or on the node for host paths.
    pub path: RawPath,
    /// The old path of a rename.
    #[serde(default)]
    pub previous_path: Option<RawPath>,
    /// Node that saw the change.
    pub node: String,
    /// The container, or `None` for host paths.
    pub container: Option<ContainerInfo>,
    /// The baseline state, or `None` when the path had none.
    pub before: Option<FileState>,
    /// The state now, or `None` when the path is gone.
    pub after: Option<FileState>,
    /// The writing process, when known.
    #[serde(default)]
    pub process: Option<ProcessInfo>,
    /// Compliance control ids this alert is evidence for.
    #[serde(default)]
    pub controls: Vec<String>,
    /// Redacted content diff, when content was captured.
    #[serde(default)]
    pub diff: Option<String>,
    /// What the evaluator found in the change, in words (a new uid 0
    /// user, a new authorized key, a datasource pointing elsewhere, or the
    /// counts of an aggregated storm); empty when nothing stood out.
    #[serde(default)]
    pub findings: Vec<String>,
}

/// Asks a collector to report everything under its watches again, for
/// example after the kernel queue overflowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RescanRequest {
    /// Always [`crate::SCHEMA_VERSION`] when written by this version.
    pub schema_version: u16,
    /// Unique id.
    pub id: String,
    /// Node whose collector should rescan.
    pub node: String,
    /// Why, in words for the log.
    pub reason: String,
}

/// Which baselines an approval covers. At least one of the fields is set;
/// set fields narrow each other.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ApprovalScope {
    /// One container, by full id.
    #[serde(default)]
    pub container: Option<String>,
    /// Every container of one image (reference or image id), now and later.
    #[serde(default)]
    pub image: Option<String>,
    /// One path (inside the container, or on the node for host paths).
    #[serde(default)]
    pub path: Option<RawPath>,
}

/// An operator's approval of changes: the current states in its scope
/// become the authorized baseline, so the next comparison treats them as
/// expected. Sent by `fim baseline accept` on `fim.control.baseline`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineApproval {
    /// Always [`crate::SCHEMA_VERSION`] when written by this version.
    pub schema_version: u16,
    /// Unique id; an approval applied once is never applied again.
    pub id: String,
    /// When it was given.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// What it covers.
    pub scope: ApprovalScope,
    /// Who approved, as given on the command line.
    #[serde(default)]
    pub approver: Option<String>,
    /// Why (a change ticket, for the audit trail).
    #[serde(default)]
    pub reason: Option<String>,
}

/// A full comparison of one container (or the node's watched paths) with
/// its baselines: the evidence PCI DSS 11.5.2 asks for at least weekly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComparisonReport {
    /// Always [`crate::SCHEMA_VERSION`] when written by this version.
    pub schema_version: u16,
    /// Unique id.
    pub id: String,
    /// When the comparison ran.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// Why it ran: `startup`, `rescan` or `schedule`.
    pub trigger: String,
    /// Node of the source.
    pub node: String,
    /// The container, or `None` for the node's watched paths.
    #[serde(default)]
    pub container: Option<ContainerInfo>,
    /// Files compared with a baseline.
    pub files_checked: u64,
    /// Files whose current state differs from the authorized baseline.
    pub differences: u64,
    /// Up to a bounded number of the differing paths.
    #[serde(default)]
    pub differing_paths: Vec<RawPath>,
    /// When the files were last seen by a full scan (the collector's
    /// inventory), if ever.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_verified: Option<OffsetDateTime>,
}

impl crate::Describe for BaselineApproval {
    fn path(&self) -> Option<&RawPath> {
        self.scope.path.as_ref()
    }

    fn container(&self) -> Option<&str> {
        self.scope.container.as_deref()
    }
}
