//! The evaluator's control inputs and timers: baseline approvals, rescan
//! requests (which trigger comparisons), scheduled comparisons, storm
//! flushing and retention.
//!
//! Each timer logs and counts its failures and tries again at its next
//! tick; none of them stops the stage.

use std::time::Duration;

use bus::stage::{Failure, Handler};
use bus::{Delivery, StageContext};
use schemas::RescanRequest;
use schemas::message::BaselineApproval;
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::approve::{self, Applied};
use crate::compare;
use crate::store::BaselineStore;
use crate::worker::{Shared, flush_storms};

/// How long after a rescan request the comparison runs, so the inventory
/// it causes has reached the evaluator. A rescan of a large container
/// takes seconds; the wait stays below the consumer's 30 s ack wait, or the
/// request would be redelivered while it is still being handled.
pub const RESCAN_SETTLE: Duration = Duration::from_secs(20);
/// How often closed storm windows are published.
const STORM_TICK: Duration = Duration::from_secs(1);
/// How often retention runs.
const PRUNE_TICK: Duration = Duration::from_secs(60 * 60);

/// Applies baseline approvals from `fim.control.baseline`.
pub(crate) struct Approvals<S> {
    pub shared: Shared<S>,
}

impl<S: BaselineStore> Handler<BaselineApproval> for Approvals<S> {
    async fn handle(&mut self, approval: BaselineApproval, _: &Delivery) -> Result<(), Failure> {
        match approve::apply(&self.shared.store, &approval).await {
            Ok(Applied::Approved(count)) => {
                self.shared.metrics.approval("applied");
                info!(approval = %approval.id, baselines = count, "baseline approval applied");
                Ok(())
            }
            Ok(Applied::Duplicate) => {
                self.shared.metrics.approval("duplicate");
                Ok(())
            }
            Err(error @ crate::Error::Config { .. }) => {
                self.shared.metrics.approval("failed");
                Err(Failure::Permanent { reason: "invalid_approval", error: error.into() })
            }
            Err(error) => {
                self.shared.metrics.approval("failed");
                Err(Failure::Transient(error.into()))
            }
        }
    }
}

/// Runs a comparison after each rescan request has settled.
pub(crate) struct Rescans<S> {
    pub shared: Shared<S>,
    pub partitions: u32,
    pub settle: Duration,
}

impl<S: BaselineStore> Handler<RescanRequest> for Rescans<S> {
    async fn handle(&mut self, request: RescanRequest, _: &Delivery) -> Result<(), Failure> {
        tokio::select! {
            () = self.shared.ctx.shutdown.cancelled() => {
                // Not acknowledged: the comparison runs after the restart.
                return Err(Failure::Transient("stopping before the rescan settled".into()));
            }
            () = tokio::time::sleep(self.settle) => {}
        }
        let trigger = if request.reason.starts_with(SCHEDULED) { "schedule" } else { "rescan" };
        compare::run(&self.shared, trigger, self.partitions)
            .await
            .map(|_| ())
            .map_err(|error| Failure::Transient(error.into()))
    }
}

/// Reason of the rescans a scheduled comparison asks for.
pub(crate) const SCHEDULED: &str = "scheduled comparison";

/// Every `interval`, asks all known nodes to rescan; the comparison runs
/// when the requests come back through [`Rescans`].
pub(crate) async fn schedule<S: BaselineStore>(shared: Shared<S>, interval: Duration) {
    let ctx: &StageContext = &shared.ctx;
    loop {
        tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        if let Err(error) = compare::request_rescans(&shared, SCHEDULED).await {
            warn!(%error, "scheduled comparison could not start, will retry next period");
        }
    }
}

/// Publishes closed storm windows every second.
pub(crate) async fn storms<S: BaselineStore>(shared: Shared<S>) {
    loop {
        tokio::select! {
            () = shared.ctx.shutdown.cancelled() => return,
            () = tokio::time::sleep(STORM_TICK) => {}
        }
        if let Err(failure) = flush_storms(&shared).await {
            warn!(?failure, "storm aggregate not published, will retry");
        }
    }
}

/// Prunes containers gone longer than `retention`, hourly.
pub(crate) async fn retention<S: BaselineStore>(shared: Shared<S>, retention: Duration) {
    loop {
        let now = OffsetDateTime::now_utc().unix_timestamp_nanos();
        match compare::prune(&shared.store, retention.as_nanos() as i128, now).await {
            Ok(0) => {}
            Ok(pruned) => {
                shared.metrics.pruned.inc_by(pruned);
                info!(baselines = pruned, "baselines of departed containers pruned");
            }
            Err(error) => warn!(%error, "retention failed, will retry"),
        }
        tokio::select! {
            () = shared.ctx.shutdown.cancelled() => return,
            () = tokio::time::sleep(PRUNE_TICK) => {}
        }
    }
}
