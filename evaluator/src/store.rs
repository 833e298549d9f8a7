//! Baseline storage: one entry per (source, path), in sled.
//!
//! A write and its flush happen before the message that caused them is
//! acknowledged, so a crash never leaves an acknowledged change unrecorded.
//! sled allows one process per database; each evaluator has its own.

use std::path::Path;

use schemas::{FileState, RawPath, Source};
use serde::{Deserialize, Serialize};

use crate::Error;

/// What is known about one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    /// The accepted state; `None` once the path was seen deleted.
    pub state: Option<FileState>,
    /// Collector time of the event that set it, nanoseconds since the
    /// epoch; older observations arriving late (redeliveries) are ignored.
    pub event_time_ns: i128,
}

/// Where baselines are kept. Writes are durable when the call returns.
pub trait BaselineStore: Send + Sync {
    /// The baseline of one key.
    fn get(&self, key: &[u8]) -> Result<Option<Baseline>, Error>;
    /// Stores several baselines atomically and durably.
    fn put_all(
        &self,
        entries: Vec<(Vec<u8>, Baseline)>,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}

/// The baseline key of a path: the source, a NUL, then the path bytes
/// (a NUL never occurs in a path, so keys of different sources never mix).
pub fn key(source: &Source, node: &str, path: &RawPath) -> Vec<u8> {
    let mut key = match source {
        Source::Host { .. } => format!("host:{node}").into_bytes(),
        Source::Container(container) => format!("container:{}", container.id).into_bytes(),
    };
    key.push(0);
    key.extend_from_slice(path.as_bytes());
    key
}

/// Baselines in a sled database.
#[derive(Clone)]
pub struct SledStore {
    tree: sled::Tree,
    db: sled::Db,
}

impl SledStore {
    /// Opens (or creates) `<dir>/baselines.sled`.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let path = dir.join("baselines.sled");
        let db = sled::open(&path).map_err(|source| Error::Open { path, source })?;
        let tree = db.open_tree("baselines")?;
        Ok(Self { tree, db })
    }
}

impl BaselineStore for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Baseline>, Error> {
        match self.tree.get(key)? {
            Some(bytes) => Ok(Some(rmp_serde::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    async fn put_all(&self, entries: Vec<(Vec<u8>, Baseline)>) -> Result<(), Error> {
        let mut batch = sled::Batch::default();
        for (key, baseline) in entries {
            batch.insert(key, rmp_serde::to_vec_named(&baseline)?);
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
        let baseline = Baseline { state: None, event_time_ns: 5 };
        {
            let store = SledStore::open(dir.path()).unwrap();
            store.put_all(vec![(key.clone(), baseline.clone())]).await.unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.get(&key).unwrap(), Some(baseline));
    }
}
