//! The evaluator stage: applies rules to each observation, compares it with
//! its baselines in sled, and publishes alerts that say what changed.
//!
//! Baselines come from the image (a container file that still matches its
//! image version is fine), from learning (files missing from the image,
//! where a rule says so), from inventory (host paths) and from operators'
//! approvals. A difference alerts once; a flood of them in one container is
//! aggregated. Full comparisons produce per-source reports. Replicas own
//! observation partitions, each with its own database.

pub mod admin;
mod approve;
mod compare;
mod config;
mod content;
mod control;
mod decide;
mod error;
mod metrics;
pub mod rules;
mod store;
mod storm;
mod worker;

pub use approve::{Applied, apply as apply_approval};
pub use compare::{prune, reports};
pub use config::{Config, DEFAULT_COMPARISON_INTERVAL, DEFAULT_RETENTION};
pub use content::{Finding, diff, findings};
pub use decide::{Decision, decide};
pub use error::Error;
pub use metrics::Metrics;
pub use store::{
    Authorized, Baseline, BaselineStore, ContainerRecord, Origin, Records, SledStore, Table, Write,
    key, source_key, split_key,
};
pub use storm::{Aggregate, StormLimits};

use std::sync::{Arc, RwLock};

use bus::StageContext;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::rules::RuleSet;
use crate::worker::{Shared, Worker};

/// Runs the evaluator until `ctx.shutdown` is cancelled.
pub async fn run(config: Config, metrics: Metrics, ctx: StageContext) -> Result<(), Error> {
    config.validate()?;
    let rules = RuleSet::load(config.rules_dir.as_deref())?;
    let (user_rules, all_rules) = rules.counts();
    let store = SledStore::open(&config.data_dir)?;
    let shared = Shared {
        metrics,
        ctx: ctx.clone(),
        store,
        rules: Arc::new(RwLock::new(Arc::new(rules))),
        limits: config.storms,
        storm_lock: Arc::default(),
    };
    let mut loops = JoinSet::new();
    for spec in config.observation_consumers() {
        let consumer = ctx.bus.consumer(spec).await?;
        let (ctx, worker) = (ctx.clone(), Worker::new(shared.clone()));
        loops.spawn(async move { bus::stage::consume(&ctx, "evaluator", consumer, worker).await });
    }
    spawn_control(&config, &shared, &mut loops).await?;
    spawn_timers(&config, &shared, &mut loops);

    ctx.ready.set(true);
    info!(
        data_dir = %config.data_dir.display(),
        partitions = config.partitions,
        replica = %config.replica(),
        user_rules,
        rules = all_rules,
        "evaluator started"
    );
    if let Err(error) = compare::run(&shared, "startup", config.partitions).await {
        warn!(%error, "start-up comparison failed");
    }
    while loops.join_next().await.is_some() {}
    info!("evaluator stopped");
    Ok(())
}

async fn spawn_control(
    config: &Config,
    shared: &Shared<SledStore>,
    loops: &mut JoinSet<()>,
) -> Result<(), Error> {
    let ctx = shared.ctx.clone();
    let consumer = ctx.bus.consumer(config.approval_consumer()).await?;
    let handler = control::Approvals { shared: shared.clone() };
    let approvals_ctx = ctx.clone();
    loops.spawn(async move {
        bus::stage::consume(&approvals_ctx, "evaluator", consumer, handler).await
    });

    let consumer = ctx.bus.consumer(config.rescan_consumer()).await?;
    let handler = control::Rescans {
        shared: shared.clone(),
        partitions: config.partitions,
        settle: config.rescan_settle,
    };
    loops.spawn(async move { bus::stage::consume(&ctx, "evaluator", consumer, handler).await });
    Ok(())
}

fn spawn_timers(config: &Config, shared: &Shared<SledStore>, loops: &mut JoinSet<()>) {
    if let Some(dir) = config.rules_dir.clone() {
        let (rules, metrics) = (shared.rules.clone(), shared.metrics.clone());
        let (interval, shutdown) = (config.rules_reload, shared.ctx.shutdown.clone());
        loops.spawn(rules::reload::watch(dir, rules, interval, metrics, shutdown));
    }
    loops.spawn(control::storms(shared.clone()));
    loops.spawn(control::schedule(shared.clone(), config.comparison_interval));
    loops.spawn(control::retention(shared.clone(), config.retention));
}
