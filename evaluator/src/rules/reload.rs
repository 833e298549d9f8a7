//! Reloading the rule directory when its files change.
//!
//! The directory is polled: a fingerprint of file names, sizes and
//! modification times is compared every interval, which works on every
//! filesystem (including ConfigMap mounts, whose files are swapped by
//! symlink) without inotify. A set that fails to compile is reported and
//! the rules in force stay; the next change is tried again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{RuleSet, SharedRules, rule_files};
use crate::Metrics;

/// Default polling interval: quick enough for an operator editing a file,
/// and a directory listing every two seconds costs nothing.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);

type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// The names, sizes and modification times of the rule files.
pub(crate) fn fingerprint(dir: &Path) -> Fingerprint {
    let files = rule_files(dir).unwrap_or_default();
    files
        .into_iter()
        .map(|file| {
            let meta = std::fs::metadata(&file).ok();
            let size = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (file, size, modified)
        })
        .collect()
}

/// Polls `dir` until shutdown, swapping `shared` when the files change.
pub async fn watch(
    dir: PathBuf,
    shared: SharedRules,
    interval: Duration,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let mut last = fingerprint(&dir);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let now = fingerprint(&dir);
        if now == last {
            continue;
        }
        last = now;
        reload(&dir, &shared, &metrics);
    }
}

fn reload(dir: &Path, shared: &SharedRules, metrics: &Metrics) {
    match RuleSet::load(Some(dir)) {
        Ok(rules) => {
            let (user, total) = rules.counts();
            let mut slot = shared.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            *slot = Arc::new(rules);
            metrics.rule_reload("applied");
            info!(dir = %dir.display(), user_rules = user, rules = total, "rules reloaded");
        }
        Err(errors) => {
            metrics.rule_reload("rejected");
            warn!(dir = %dir.display(), %errors, "rule files invalid, keeping the rules in force");
        }
    }
}
