//! Full comparisons and retention.
//!
//! A comparison walks every baseline of every source this replica owns and
//! reports, per source, how many files it holds, how many differ from their
//! authorized state and when the source was last fully scanned. Reports are
//! stored (for `fim report`) and published on `fim.reports.<partition>.<source>`.
//! Freshness comes from the collector: a scheduled comparison first asks
//! every known node to rescan, so the inventory refreshes each file's state.
//!
//! Retention drops everything known about a container not seen for longer
//! than the retention period; host sources are never pruned.

use std::collections::BTreeMap;

use bus::Outgoing;
use schemas::message::ComparisonReport;
use schemas::{RawPath, RescanRequest, SCHEMA_VERSION, subject};
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::Error;
use crate::store::{Baseline, BaselineStore, ContainerRecord, Table, Write, split_key};
use crate::worker::Shared;

/// Differing paths listed in one report.
const MAX_LISTED: usize = 50;

// Limitation: a report reflects the last state each file was seen in; a
// file the collector cannot see (outside its watches) is not re-read, and
// `last_verified` is only as recent as the source's last inventory.
/// Builds the report of every source in the store.
pub fn reports<S: BaselineStore>(
    store: &S,
    trigger: &str,
    now: OffsetDateTime,
) -> Result<Vec<(String, ComparisonReport)>, Error> {
    let records: BTreeMap<String, ContainerRecord> = store
        .scan::<ContainerRecord>(Table::Containers, b"")?
        .into_iter()
        .map(|(k, r)| (String::from_utf8_lossy(&k).into_owned(), r))
        .collect();
    let mut tallies: BTreeMap<String, (u64, u64, Vec<RawPath>)> = BTreeMap::new();
    for (key, baseline) in store.scan::<Baseline>(Table::Baselines, b"")? {
        let Some((source, path)) = split_key(&key) else { continue };
        let tally = tallies.entry(source).or_default();
        tally.0 += 1;
        if baseline.drifted() {
            tally.1 += 1;
            if tally.2.len() < MAX_LISTED {
                tally.2.push(path);
            }
        }
    }
    let reports = tallies
        .into_iter()
        .map(|(source, (checked, differences, paths))| {
            let record = records.get(&source);
            let report = ComparisonReport {
                schema_version: SCHEMA_VERSION,
                id: format!("report:{source}:{}", now.unix_timestamp_nanos()),
                time: now,
                trigger: trigger.into(),
                node: record.map(|r| r.node.clone()).unwrap_or_default(),
                container: record.and_then(|r| r.info.clone()),
                files_checked: checked,
                differences,
                differing_paths: paths,
                last_verified: record
                    .and_then(|r| r.last_inventory_ns)
                    .and_then(|ns| OffsetDateTime::from_unix_timestamp_nanos(ns).ok()),
            };
            (source, report)
        })
        .collect();
    Ok(reports)
}

/// The subject of a source's report: under the partition that owns it, as
/// the hasher computes it (the container id, or the node for host paths).
fn report_subject(source: &str, report: &ComparisonReport, partitions: u32) -> String {
    let owner = match &report.container {
        Some(container) => container.id.clone(),
        None => report.node.clone(),
    };
    let partition = subject::partition(owner.as_bytes(), partitions);
    let token = source.replace(':', "_");
    subject::reports(partition, &token)
}

/// Runs a comparison: stores and publishes one report per source.
pub(crate) async fn run<S: BaselineStore>(
    shared: &Shared<S>,
    trigger: &str,
    partitions: u32,
) -> Result<usize, Error> {
    let now = OffsetDateTime::now_utc();
    let reports = reports(&shared.store, trigger, now)?;
    let mut writes = Vec::with_capacity(reports.len());
    for (source, report) in &reports {
        let payload = schemas::encode(report)?;
        let subject = report_subject(source, report, partitions);
        if let Err(error) =
            shared.ctx.bus.publish(Outgoing::new(subject, &report.id, payload)).await
        {
            warn!(source = %source, %error, "comparison report not published; kept in the store");
        }
        writes.push(Write::put(Table::Reports, source.as_bytes().to_vec(), report)?);
        shared.metrics.reports.inc();
    }
    shared.store.apply(writes).await?;
    let baselines: u64 = reports.iter().map(|(_, report)| report.files_checked).sum();
    shared.metrics.baselines.set(i64::try_from(baselines).unwrap_or(i64::MAX));
    info!(trigger, sources = reports.len(), baselines, "comparison finished");
    Ok(reports.len())
}

/// Asks the collector of every known node to rescan.
pub(crate) async fn request_rescans<S: BaselineStore>(
    shared: &Shared<S>,
    reason: &str,
) -> Result<(), Error> {
    let mut nodes: Vec<String> = shared
        .store
        .scan::<ContainerRecord>(Table::Containers, b"")?
        .into_iter()
        .map(|(_, r)| r.node)
        .collect();
    nodes.sort();
    nodes.dedup();
    let stamp = OffsetDateTime::now_utc().unix_timestamp_nanos();
    for node in nodes {
        let request = RescanRequest {
            schema_version: SCHEMA_VERSION,
            id: format!("rescan:{node}:{stamp}"),
            node: node.clone(),
            reason: reason.into(),
        };
        let payload = schemas::encode(&request)?;
        let message = Outgoing::new(subject::rescan(&node), &request.id, payload);
        if let Err(error) = shared.ctx.bus.publish(message).await {
            warn!(node = %node, %error, "rescan request not published");
        }
    }
    Ok(())
}

/// Drops every record of containers not seen for `retention_ns`.
pub async fn prune<S: BaselineStore>(
    store: &S,
    retention_ns: i128,
    now_ns: i128,
) -> Result<u64, Error> {
    let mut writes = Vec::new();
    let mut pruned = 0;
    for (key, record) in store.scan::<ContainerRecord>(Table::Containers, b"")? {
        if record.info.is_none() || now_ns - record.last_seen_ns <= retention_ns {
            continue;
        }
        let mut prefix = key.clone();
        prefix.push(0);
        for (baseline_key, _) in store.scan_raw(Table::Baselines, &prefix)? {
            writes.push(Write::Delete(Table::Baselines, baseline_key));
            pruned += 1;
        }
        writes.push(Write::Delete(Table::Reports, key.clone()));
        writes.push(Write::Delete(Table::Storms, key.clone()));
        writes.push(Write::Delete(Table::Containers, key));
    }
    if !writes.is_empty() {
        store.apply(writes).await?;
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use schemas::{ContainerInfo, Source};

    use super::*;
    use crate::store::{SledStore, key, source_key};

    fn baseline() -> Baseline {
        Baseline::absent(0)
    }

    async fn seed(store: &SledStore, source: &Source, info: Option<ContainerInfo>, seen_ns: i128) {
        let path = RawPath::from("/etc/passwd");
        let record = ContainerRecord {
            info,
            node: "n".into(),
            last_seen_ns: seen_ns,
            last_inventory_ns: None,
        };
        let writes = vec![
            Write::put(Table::Baselines, key(source, "n", &path), &baseline()).unwrap(),
            Write::put(Table::Containers, source_key(source, "n").into_bytes(), &record).unwrap(),
        ];
        store.apply(writes).await.unwrap();
    }

    #[tokio::test]
    async fn containers_gone_past_retention_are_pruned_and_hosts_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let info = |id: &str| ContainerInfo { id: id.into(), ..ContainerInfo::default() };
        let gone = Source::Container(info("gone"));
        let alive = Source::Container(info("alive"));
        let host = Source::Host { root: "/etc".into() };
        seed(&store, &gone, Some(info("gone")), 0).await;
        seed(&store, &alive, Some(info("alive")), 900).await;
        seed(&store, &host, None, 0).await;

        assert_eq!(prune(&store, 500, 1000).await.unwrap(), 1);
        let sources: Vec<String> = reports(&store, "manual", OffsetDateTime::UNIX_EPOCH)
            .unwrap()
            .into_iter()
            .map(|(source, _)| source)
            .collect();
        assert_eq!(sources, ["container:alive", "host:n"]);
    }
}
