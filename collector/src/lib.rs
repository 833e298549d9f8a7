//! The collector stage: watches host paths and running containers with
//! fanotify and publishes one [`schemas::RawEvent`] per change on
//! `fim.events.<node>`.
//!
//! Start-up order is what makes readiness meaningful: the fanotify group is
//! created, the containers running now are discovered, and every directory
//! of every watch root (host paths, container upper directories, volumes)
//! is marked before the ready flag is raised, so any change made after
//! readiness is reported. Only then is the inventory (every existing path,
//! as [`schemas::ChangeKind::Inventory`]) published, alongside live events.
//! Containers that start later are found by polling /proc and inventoried
//! when marked. A queue overflow or a rescan request on
//! `fim.control.rescan.<node>` publishes the inventory again.

mod config;
mod containers;
mod error;
mod fanotify;
mod inventory;
mod metrics;
mod process;
mod publish;
mod quiet;
mod watch;
mod worker;

pub use config::{Config, IGNORE_LABEL, StatePaths};
pub use error::Error;
pub use metrics::Metrics;

use bus::stage::{self, Failure, Handler};
use bus::{ConsumerSpec, Delivery, StageContext};
use schemas::{RescanRequest, subject};
use tokio::sync::{mpsc, oneshot};
use tracing::info;

use crate::containers::discovery::{self, Discovery};
use crate::fanotify::Group;
use crate::inventory::{Marking, Request};
use crate::publish::Publisher;
use crate::watch::{Excludes, Watches};
use crate::worker::Worker;

/// Stage name in logs, metrics and the dead-letter subject.
const STAGE: &str = "collector";
// Pending inventory requests; one queued request already covers any later
// one, so a few are plenty.
const INVENTORY_QUEUE: usize = 4;

/// Runs the collector until `ctx.shutdown` is cancelled.
pub async fn run(config: Config, metrics: Metrics, ctx: StageContext) -> Result<(), Error> {
    config.validate()?;
    let roots = watch::resolve_roots(&config.watch)?;
    let excludes = Excludes::resolve(&config.exclude);
    let watches = Watches::new(Group::new()?, roots, excludes, metrics.clone());
    let rescans = rescan_consumer(&ctx, &config.node).await?;
    let discovery = discover(&config, &watches).await?;

    let directories = place_marks(&watches).await?;
    let roots: Vec<String> = watches.roots().iter().map(|root| root.path.escaped()).collect();
    let containers = discovery.as_ref().map_or(0, Discovery::len);
    info!(?roots, directories, containers, node = %config.node, "collector watching");
    ctx.ready.set(true);

    // Stops the helpers if the event loop fails without a shutdown.
    let stop = ctx.shutdown.child_token();
    let origins = watches.origins.clone();
    let publisher = Publisher::new(ctx.bus.clone(), &config.node, origins, metrics, stop.clone());
    let (requests, pending) = mpsc::channel(INVENTORY_QUEUE);
    let initial = Request { remark: false, roots: None, done: None };
    let _ = requests.try_send(initial);
    let inventory =
        tokio::spawn(inventory::serve(watches.clone(), publisher.clone(), pending, stop.clone()));
    let control_ctx = StageContext { shutdown: stop.clone(), ..ctx.clone() };
    let control = tokio::spawn(serve_rescans(control_ctx, rescans, requests.clone()));
    let discovering = discovery.map(|discovery| {
        let serve = discovery::serve(discovery, watches.clone(), requests.clone(), stop.clone());
        tokio::spawn(serve)
    });

    let outcome = Worker::new(watches, publisher, requests).run(stop.clone()).await;
    stop.cancel();
    let mut joined = join(inventory, "inventory").await.and(join(control, "rescan").await);
    if let Some(task) = discovering {
        joined = joined.and(join(task, "discovery").await);
    }
    ctx.ready.set(false);
    info!(node = %config.node, "collector stopped");
    outcome.and(joined)
}

async fn rescan_consumer(ctx: &StageContext, node: &str) -> Result<bus::Consumer, Error> {
    let filter = subject::rescan(node);
    let durable = format!("{STAGE}-{}", subject::token(node));
    let spec = ConsumerSpec::new(schemas::stream::CONTROL, durable, filter.clone());
    ctx.bus.consumer(spec).await.map_err(|source| Error::Bus { subject: filter, source })
}

// The containers running at start, registered as roots before the marks
// are placed; `None` when containers are not watched.
async fn discover(config: &Config, watches: &Watches) -> Result<Option<Discovery>, Error> {
    if !config.containers {
        return Ok(None);
    }
    let discovery = Discovery::new(config.proc_root.clone(), config.state.clone());
    let mut discovery = discovery.watch_ignored(config.watch_ignored);
    let polled = tokio::task::spawn_blocking(move || {
        let changes = discovery.poll();
        (discovery, changes)
    });
    let (discovery, changes) =
        polled.await.map_err(|source| Error::Task { task: "discovery", source })?;
    for started in &changes.started {
        discovery::register(watches, started);
    }
    Ok(Some(discovery))
}

// Marks every directory of every root on a blocking thread; returns how
// many directories are marked. A container root that cannot be marked
// (its container just stopped) is skipped; a host root must be marked.
async fn place_marks(watches: &Watches) -> Result<usize, Error> {
    let marker = watches.clone();
    let placed = tokio::task::spawn_blocking(move || {
        for root in marker.roots() {
            let mut ignore = |_| std::ops::ControlFlow::Continue(());
            let walked = inventory::walk_root(&marker, &root, Marking::Mark, &mut ignore);
            match walked {
                Err(error) if marker.origins.get(&root.path).is_some() => {
                    let error = bus::stage::error_chain(&error);
                    tracing::warn!(root = %root.path, error, "cannot watch container root");
                }
                other => other?,
            }
        }
        Ok::<_, Error>(marker.map().len())
    });
    placed.await.map_err(|source| Error::Task { task: "marks", source })?
}

// Each rescan request queues a full inventory and is acknowledged once that
// inventory is published.
// Limitation: an inventory that takes longer than the consumer's ack wait
// (30 s) is requested again by the redelivery; the repeat is merged into the
// next run but still repeats the walk.
struct RescanHandler {
    requests: mpsc::Sender<Request>,
}

impl Handler<RescanRequest> for RescanHandler {
    async fn handle(&mut self, request: RescanRequest, _: &Delivery) -> Result<(), Failure> {
        info!(id = %request.id, reason = %request.reason, "rescan requested");
        let stopped = || Failure::Transient("the inventory task has stopped".into());
        let (done, finished) = oneshot::channel();
        let request = Request { remark: true, roots: None, done: Some(done) };
        self.requests.send(request).await.map_err(|_| stopped())?;
        finished.await.map_err(|_| stopped())
    }
}

async fn serve_rescans(
    ctx: StageContext,
    consumer: bus::Consumer,
    requests: mpsc::Sender<Request>,
) {
    let handler = RescanHandler { requests };
    stage::consume::<RescanRequest, _>(&ctx, STAGE, consumer, handler).await;
}

async fn join(task: tokio::task::JoinHandle<()>, name: &'static str) -> Result<(), Error> {
    task.await.map_err(|source| Error::Task { task: name, source })
}
