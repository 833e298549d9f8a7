//! Baseline storage in sled: baselines per (source, path), containers seen,
//! approvals applied and the last comparison report of each source.
//!
//! Every record lives in one sled tree under a one-letter table prefix, so a
//! batch that touches several tables is applied atomically. A write and its
//! flush happen before the message that caused them is acknowledged, so a
//! crash never leaves an acknowledged change unrecorded. sled allows one
//! process per database; each evaluator replica has its own.

use std::path::Path;

use schemas::message::{BaselineApproval, ComparisonReport};
use schemas::{ContainerInfo, FileState, RawPath, Source};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Error;

/// How an authorized state came to be authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The image's version of the path.
    Image,
    /// First seen at the collector's inventory (host paths, or containers
    /// without image information).
    Inventory,
    /// First seen for a file missing from the image, where a rule learns.
    Learned,
    /// Accepted by a rule with `action: accept`.
    Accepted,
    /// Approved by an operator (`fim baseline accept`).
    Approved,
}

/// A state the comparison treats as expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorized {
    /// The state; `None` when the path is expected not to exist.
    pub state: Option<FileState>,
    /// Where it came from.
    pub origin: Origin,
}

// How many alerted content fingerprints a baseline remembers: enough for a
// file flapping between a few versions to alert once per version.
const ALERTED_MEMORY: usize = 16;

/// What is known about one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    /// The state last seen (and alerted on, if it differed); `None` once
    /// the path was seen deleted.
    pub state: Option<FileState>,
    /// Collector time of the event that set it, nanoseconds since the
    /// epoch; older observations arriving late (redeliveries) are ignored.
    pub event_time_ns: i128,
    /// The expected state, when known; comparisons count a path as a
    /// difference while `state` differs from it.
    #[serde(default)]
    pub authorized: Option<Authorized>,
    /// Fingerprints of states already alerted on, newest last.
    #[serde(default)]
    pub alerted: Vec<String>,
}

impl Baseline {
    /// A path known to be absent as of `event_time_ns`, with no authorized
    /// state and no alerts yet.
    pub fn absent(event_time_ns: i128) -> Self {
        Self { state: None, event_time_ns, authorized: None, alerted: Vec::new() }
    }

    /// Whether the last seen state differs from the authorized one.
    pub fn drifted(&self) -> bool {
        match &self.authorized {
            None => false,
            Some(authorized) => states_differ(authorized.state.as_ref(), self.state.as_ref()),
        }
    }

    /// Remembers that `state` was alerted on.
    pub(crate) fn remember_alert(&mut self, state: Option<&FileState>) {
        self.alerted.retain(|f| *f != fingerprint(state));
        self.alerted.push(fingerprint(state));
        let excess = self.alerted.len().saturating_sub(ALERTED_MEMORY);
        self.alerted.drain(..excess);
    }

    /// Whether `state` was alerted on before.
    pub(crate) fn already_alerted(&self, state: Option<&FileState>) -> bool {
        self.alerted.contains(&fingerprint(state))
    }
}

/// Whether two optional states differ in anything integrity cares about.
pub fn states_differ(a: Option<&FileState>, b: Option<&FileState>) -> bool {
    match (a, b) {
        (None, None) => false,
        (Some(a), Some(b)) => a.differs_from(b),
        _ => true,
    }
}

fn fingerprint(state: Option<&FileState>) -> String {
    match state {
        None => "absent".into(),
        Some(s) => {
            let content = s.blake3.as_deref().unwrap_or("-");
            format!("{:?}:{content}:{}:{}:{}", s.kind, s.mode, s.uid, s.gid)
        }
    }
}

/// A source (a container, or a node's watched paths) the evaluator has seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// The container's identity, as last reported; `None` for host paths.
    pub info: Option<ContainerInfo>,
    /// Node it runs on.
    pub node: String,
    /// Last observation of any of its paths, nanoseconds since the epoch.
    pub last_seen_ns: i128,
    /// Last inventory (full scan) observation, nanoseconds since the epoch.
    #[serde(default)]
    pub last_inventory_ns: Option<i128>,
}

/// The tables of the store, each a key prefix in one sled tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Baselines by [`key`].
    Baselines,
    /// Sources seen, by source key.
    Containers,
    /// Approvals applied, by approval id.
    Approvals,
    /// Image-wide approved states, by image, NUL, path.
    ImageApprovals,
    /// The last comparison report, by source key.
    Reports,
    /// Storm aggregates waiting to be published, by source key.
    Storms,
}

impl Table {
    fn prefix(self) -> &'static [u8] {
        match self {
            Self::Baselines => b"b/",
            Self::Containers => b"c/",
            Self::Approvals => b"a/",
            Self::ImageApprovals => b"i/",
            Self::Reports => b"r/",
            Self::Storms => b"s/",
        }
    }

    fn key(self, key: &[u8]) -> Vec<u8> {
        [self.prefix(), key].concat()
    }
}

/// One change to the store.
#[derive(Debug, Clone)]
pub enum Write {
    /// Set a record.
    Put(Table, Vec<u8>, Vec<u8>),
    /// Remove a record.
    Delete(Table, Vec<u8>),
}

impl Write {
    /// A record encoded as MessagePack.
    pub fn put<T: Serialize>(table: Table, key: Vec<u8>, value: &T) -> Result<Self, Error> {
        Ok(Self::Put(table, key, rmp_serde::to_vec_named(value)?))
    }
}

/// One stored record: its key (without the table prefix) and its bytes.
pub type RawRecord = (Vec<u8>, Vec<u8>);

/// Where baselines are kept.
///
/// Contract: `apply` is atomic (all writes or none) and durable when it
/// returns; reads see every write applied before them.
pub trait BaselineStore: Clone + Send + Sync + 'static {
    /// One record.
    fn get_raw(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, Error>;
    /// Every record of a table whose key starts with `prefix`, in key order.
    fn scan_raw(&self, table: Table, prefix: &[u8]) -> Result<Vec<RawRecord>, Error>;
    /// Applies writes atomically and durably.
    fn apply(&self, writes: Vec<Write>) -> impl Future<Output = Result<(), Error>> + Send;

    /// One decoded record.
    fn get<T: DeserializeOwned>(&self, table: Table, key: &[u8]) -> Result<Option<T>, Error> {
        match self.get_raw(table, key)? {
            Some(bytes) => Ok(Some(rmp_serde::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Every decoded record under a prefix, with its key.
    fn scan<T: DeserializeOwned>(
        &self,
        table: Table,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, T)>, Error> {
        let raw = self.scan_raw(table, prefix)?;
        raw.into_iter().map(|(k, v)| Ok((k, rmp_serde::from_slice(&v)?))).collect()
    }
}

/// The key of a source: `host:<node>` or `container:<id>`.
pub fn source_key(source: &Source, node: &str) -> String {
    match source {
        Source::Host { .. } => format!("host:{node}"),
        Source::Container(container) => format!("container:{}", container.id),
    }
}

/// The baseline key of a path: the source key, a NUL, then the path bytes
/// (a NUL never occurs in a path, so keys of different sources never mix).
pub fn key(source: &Source, node: &str, path: &RawPath) -> Vec<u8> {
    let mut key = source_key(source, node).into_bytes();
    key.push(0);
    key.extend_from_slice(path.as_bytes());
    key
}

/// Splits a baseline key into its source key and path.
pub fn split_key(key: &[u8]) -> Option<(String, RawPath)> {
    let at = key.iter().position(|b| *b == 0)?;
    let source = String::from_utf8_lossy(&key[..at]).into_owned();
    Some((source, RawPath::from_bytes(key[at + 1..].to_vec())))
}

/// The key of an image-wide approval.
pub fn image_key(image: &str, path: &RawPath) -> Vec<u8> {
    let mut key = image.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(path.as_bytes());
    key
}

/// Typed reads shared by the worker, the comparisons and the CLI.
pub trait Records: BaselineStore {
    /// The approvals applied so far, oldest id first.
    fn approvals(&self) -> Result<Vec<BaselineApproval>, Error> {
        Ok(self.scan(Table::Approvals, b"")?.into_iter().map(|(_, a)| a).collect())
    }

    /// The last comparison reports.
    fn reports(&self) -> Result<Vec<ComparisonReport>, Error> {
        Ok(self.scan(Table::Reports, b"")?.into_iter().map(|(_, r)| r).collect())
    }
}

impl<S: BaselineStore> Records for S {}

/// Baselines in a sled database.
#[derive(Clone)]
pub struct SledStore {
    tree: sled::Tree,
    db: sled::Db,
}

impl SledStore {
    /// Opens (or creates) `<dir>/baselines.sled`. Fails with
    /// [`Error::Locked`] when another process holds it.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let path = dir.join("baselines.sled");
        let db = sled::open(&path).map_err(|source| match &source {
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                Error::Locked { path: path.clone() }
            }
            sled::Error::Io(io) if io.to_string().contains("lock") => {
                Error::Locked { path: path.clone() }
            }
            _ => Error::Open { path: path.clone(), source },
        })?;
        let tree = db.open_tree("fim")?;
        Ok(Self { tree, db })
    }
}

impl BaselineStore for SledStore {
    fn get_raw(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.tree.get(table.key(key))?.map(|v| v.to_vec()))
    }

    fn scan_raw(&self, table: Table, prefix: &[u8]) -> Result<Vec<RawRecord>, Error> {
        let skip = table.prefix().len();
        self.tree
            .scan_prefix(table.key(prefix))
            .map(|entry| {
                let (k, v) = entry?;
                Ok((k[skip..].to_vec(), v.to_vec()))
            })
            .collect()
    }

    async fn apply(&self, writes: Vec<Write>) -> Result<(), Error> {
        let mut batch = sled::Batch::default();
        for write in writes {
            match write {
                Write::Put(table, key, value) => batch.insert(table.key(&key), value),
                Write::Delete(table, key) => batch.remove(table.key(&key)),
            }
        }
        self.tree.apply_batch(batch)?;
        self.db.flush_async().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn baselines_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let key = key(&Source::Host { root: "/etc".into() }, "n", &RawPath::from("/etc/passwd"));
        let baseline =
            Baseline { state: None, event_time_ns: 5, authorized: None, alerted: Vec::new() };
        {
            let store = SledStore::open(dir.path()).unwrap();
            let write = Write::put(Table::Baselines, key.clone(), &baseline).unwrap();
            store.apply(vec![write]).await.unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.get(Table::Baselines, &key).unwrap(), Some(baseline));
    }

    #[test]
    fn a_second_process_is_told_the_database_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _held = SledStore::open(dir.path()).unwrap();
        // sled locks with flock, which is per open file description, so a
        // second open in the same process sees the lock as another would.
        match SledStore::open(dir.path()) {
            Err(Error::Locked { path }) => assert!(path.ends_with("baselines.sled")),
            Err(other) => panic!("expected Locked, got {other}"),
            Ok(_) => panic!("a second open should fail"),
        }
    }

    #[test]
    fn keys_split_back_into_source_and_path() {
        let source = Source::Container(ContainerInfo { id: "c1".into(), ..Default::default() });
        let key = key(&source, "n", &RawPath::from_bytes(b"/etc/\xff".to_vec()));
        let (source, path) = split_key(&key).unwrap();
        assert_eq!(source, "container:c1");
        assert_eq!(path.as_bytes(), b"/etc/\xff");
    }

    #[test]
    fn the_alert_memory_is_bounded_and_recognises_repeats() {
        let mut baseline =
            Baseline { state: None, event_time_ns: 0, authorized: None, alerted: Vec::new() };
        baseline.remember_alert(None);
        assert!(baseline.already_alerted(None));
        for i in 0..40 {
            baseline.alerted.push(format!("x{i}"));
        }
        baseline.remember_alert(None);
        assert!(baseline.alerted.len() <= ALERTED_MEMORY);
    }
}
