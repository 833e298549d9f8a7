//! The evaluator's one-shot commands, behind `fim rules check`,
//! `fim baseline accept|list|export` and `fim report`.
//!
//! They open the baseline database directly, which sled allows for one
//! process only: while an evaluator runs on the same directory they fail
//! with [`Error::Locked`], and an approval must travel as a control message
//! instead ([`send_approval`]), which every running evaluator applies.

use std::path::Path;

use bus::{Bus, Outgoing};
use schemas::message::{ApprovalScope, BaselineApproval};
use schemas::{SCHEMA_VERSION, subject};
use serde::Serialize;
use time::OffsetDateTime;

use crate::approve::{self, Applied};
use crate::rules::{self, RuleErrors};
use crate::store::{Authorized, Baseline, BaselineStore, Records, SledStore, Table, split_key};
use crate::{Error, compare};

/// Checks rule files; on success, says how many rules they hold.
pub fn check_rules(path: &Path) -> Result<String, RuleErrors> {
    let count = rules::check(path)?;
    Ok(format!("ok: {count} rules in {}", path.display()))
}

/// A new approval with a unique id.
pub fn approval(
    scope: ApprovalScope,
    approver: Option<String>,
    reason: Option<String>,
) -> BaselineApproval {
    let time = OffsetDateTime::now_utc();
    BaselineApproval {
        schema_version: SCHEMA_VERSION,
        id: format!("approval:{}:{}", time.unix_timestamp_nanos(), std::process::id()),
        time,
        scope,
        approver,
        reason,
    }
}

/// Applies an approval to the database in `data_dir` (no evaluator may be
/// running on it).
pub async fn accept(data_dir: &Path, approval: &BaselineApproval) -> Result<Applied, Error> {
    let store = SledStore::open(data_dir)?;
    approve::apply(&store, approval).await
}

/// Publishes an approval for the running evaluators to apply.
pub async fn send_approval(bus: &Bus, approval: &BaselineApproval) -> Result<(), Error> {
    let payload = schemas::encode(approval)?;
    let message = Outgoing::new(subject::BASELINE_APPROVALS, &approval.id, payload);
    bus.publish(message).await?;
    Ok(())
}

/// The approvals applied so far, as JSON lines.
pub fn list(data_dir: &Path) -> Result<Vec<String>, Error> {
    let store = SledStore::open(data_dir)?;
    store.approvals()?.iter().map(json).collect()
}

/// One exported baseline.
#[derive(Serialize)]
struct Exported {
    source: String,
    path: schemas::RawPath,
    #[serde(flatten)]
    baseline: ExportedBaseline,
}

#[derive(Serialize)]
struct ExportedBaseline {
    state: Option<schemas::FileState>,
    authorized: Option<Authorized>,
    drifted: bool,
}

/// Every baseline (of one source key, when given), as JSON lines.
pub fn export(data_dir: &Path, source: Option<&str>) -> Result<Vec<String>, Error> {
    let store = SledStore::open(data_dir)?;
    let prefix = source.map(|s| format!("{s}\0").into_bytes()).unwrap_or_default();
    let mut lines = Vec::new();
    for (key, baseline) in store.scan::<Baseline>(Table::Baselines, &prefix)? {
        let Some((source, path)) = split_key(&key) else { continue };
        let drifted = baseline.drifted();
        let baseline =
            ExportedBaseline { state: baseline.state, authorized: baseline.authorized, drifted };
        lines.push(json(&Exported { source, path, baseline })?);
    }
    Ok(lines)
}

/// A comparison of every source in the database now, as JSON lines.
pub fn report(data_dir: &Path) -> Result<Vec<String>, Error> {
    let store = SledStore::open(data_dir)?;
    let reports = compare::reports(&store, "manual", OffsetDateTime::now_utc())?;
    reports.iter().map(|(_, report)| json(report)).collect()
}

fn json(value: &impl Serialize) -> Result<String, Error> {
    serde_json::to_string(value).map_err(Error::Json)
}
