//! Mode dispatch: which stages run in this process, on which transport.
//!
//! Every mode follows the same life: telemetry, transport, stages, the
//! health listener, then wait for SIGTERM/SIGINT or a stage failure, cancel
//! the shutdown token and give the stages time to drain.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use bus::stage::{DeadLetterMetrics, StageMetrics};
use bus::{Bus, Health, ReadyFlag, StageContext};
use prometheus_client::registry::Registry;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::cli::{AllArgs, Cli, Command, Common};
use crate::{http, telemetry};

// Longest wait for stages to finish in-flight work after a stop signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

type StageResult = (&'static str, anyhow::Result<()>);

/// Runs the command until a stop signal or a stage failure.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::All(args) => all(args).await,
        Command::Collector(args) => {
            let mut process = Process::start(&args.common, "fim-collector")?;
            let config = collector_config(&args.common, args.watch, args.exclude)?;
            let bus = process.connect(&args.nats, "fim-collector").await?;
            let ready = process.health.register("collector");
            process.collector(&bus, config, ready);
            process.supervise(&args.common).await
        }
        Command::Hasher(args) => {
            let mut process = Process::start(&args.common, "fim-hasher")?;
            let config = hasher_config(&args.common, args.workers)?;
            let bus = process.connect(&args.nats, "fim-hasher").await?;
            process.hasher(&bus, config);
            process.supervise(&args.common).await
        }
        Command::Evaluator(args) => {
            let mut process = Process::start(&args.common, "fim-evaluator")?;
            let config = evaluator::Config { data_dir: prepare_data_dir(&args.data_dir)? };
            let bus = process.connect(&args.nats, "fim-evaluator").await?;
            process.evaluator(&bus, config);
            process.supervise(&args.common).await
        }
        Command::Notifier(args) => {
            let mut process = Process::start(&args.common, "fim-notifier")?;
            let bus = process.connect(&args.nats, "fim-notifier").await?;
            process.notifier(&bus, notifier::Config::default());
            process.supervise(&args.common).await
        }
    }
}

// The consuming stages start first and the collector only once they have
// their consumers, so nothing the collector publishes waits on a stage that
// does not exist yet.
async fn all(args: AllArgs) -> anyhow::Result<()> {
    let mut process = Process::start(&args.common, "fim")?;
    let data_dir = prepare_data_dir(&args.data_dir)?;
    let collector = collector_config(&args.common, args.watch, vec![data_dir.clone()])?;
    let hasher = hasher_config(&args.common, args.workers)?;
    let bus = match &args.nats {
        Some(url) => process.connect(url, "fim-all").await?,
        None => Bus::memory(),
    };
    let consumers = [
        process.notifier(&bus, notifier::Config::default()),
        process.evaluator(&bus, evaluator::Config { data_dir }),
        process.hasher(&bus, hasher),
    ];
    let collector_ready = process.health.register("collector");
    for ready in consumers {
        tokio::select! {
            () = ready.wait() => {}
            Some(failed) = process.stages.join_next() => return Err(stage_failure(failed)),
        }
    }
    process.collector(&bus, collector, collector_ready);
    process.supervise(&args.common).await
}

fn collector_config(
    common: &Common,
    watch: Vec<PathBuf>,
    exclude: Vec<PathBuf>,
) -> anyhow::Result<collector::Config> {
    let config = collector::Config { node: common.node()?, watch, exclude };
    config.validate().context("invalid collector configuration")?;
    Ok(config)
}

fn hasher_config(common: &Common, workers: Option<usize>) -> anyhow::Result<hasher::Config> {
    let mut config = hasher::Config::new(common.node()?);
    if let Some(workers) = workers {
        config.workers = workers;
    }
    config.validate().context("invalid --workers")?;
    Ok(config)
}

fn prepare_data_dir(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("invalid --data-dir: cannot create {}", dir.display()))?;
    dir.canonicalize().with_context(|| format!("invalid --data-dir: {}", dir.display()))
}

fn stage_failure(joined: Result<StageResult, tokio::task::JoinError>) -> anyhow::Error {
    match joined {
        Ok((stage, Ok(()))) => anyhow!("stage {stage} stopped unexpectedly"),
        Ok((stage, Err(error))) => error.context(format!("stage {stage} failed")),
        Err(error) => anyhow!("a stage panicked: {error}"),
    }
}

/// The stages of this process and what they share.
struct Process {
    registry: Registry,
    health: Health,
    shutdown: CancellationToken,
    dead_letters: DeadLetterMetrics,
    stage_metrics: StageMetrics,
    stages: JoinSet<StageResult>,
    _telemetry: telemetry::Telemetry,
}

impl Process {
    fn start(common: &Common, service: &'static str) -> anyhow::Result<Self> {
        let telemetry = telemetry::init(common.log_format, service)?;
        // Installed first: a SIGTERM at any later point must drain, not kill.
        let shutdown = CancellationToken::new();
        spawn_signal_handler(shutdown.clone())?;
        let mut registry = Registry::default();
        let dead_letters = DeadLetterMetrics::register(&mut registry);
        let stage_metrics = StageMetrics::register(&mut registry);
        Ok(Self {
            registry,
            health: Health::default(),
            shutdown,
            dead_letters,
            stage_metrics,
            stages: JoinSet::new(),
            _telemetry: telemetry,
        })
    }

    /// Connects to NATS; the process is not ready while the connection is down.
    async fn connect(&self, url: &str, client: &str) -> anyhow::Result<Bus> {
        let bus = Bus::connect(url, client)
            .await
            .with_context(|| format!("invalid --nats: cannot use {url}"))?;
        let watched = bus.clone();
        self.health.register_check("nats", move || watched.is_connected());
        Ok(bus)
    }

    fn context(&self, bus: &Bus, ready: ReadyFlag) -> StageContext {
        StageContext {
            bus: bus.clone(),
            shutdown: self.shutdown.clone(),
            ready,
            dead_letters: self.dead_letters.clone(),
            metrics: self.stage_metrics.clone(),
        }
    }

    /// Registers a stage's readiness and metrics, then spawns it.
    fn launch<M, E, F>(
        &mut self,
        stage: &'static str,
        bus: &Bus,
        ready: ReadyFlag,
        register: fn(&mut Registry) -> M,
        run: impl FnOnce(M, StageContext) -> F,
    ) -> ReadyFlag
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let metrics = register(&mut self.registry);
        let work = run(metrics, self.context(bus, ready.clone()));
        self.stages.spawn(async move { (stage, work.await.map_err(anyhow::Error::from)) });
        ready
    }

    fn collector(&mut self, bus: &Bus, config: collector::Config, ready: ReadyFlag) {
        let run = |metrics, ctx| collector::run(config, metrics, ctx);
        self.launch("collector", bus, ready, collector::Metrics::register, run);
    }

    fn hasher(&mut self, bus: &Bus, config: hasher::Config) -> ReadyFlag {
        let ready = self.health.register("hasher");
        let run = |metrics, ctx| hasher::run(config, metrics, ctx);
        self.launch("hasher", bus, ready, hasher::Metrics::register, run)
    }

    fn evaluator(&mut self, bus: &Bus, config: evaluator::Config) -> ReadyFlag {
        let ready = self.health.register("evaluator");
        let run = |metrics, ctx| evaluator::run(config, metrics, ctx);
        self.launch("evaluator", bus, ready, evaluator::Metrics::register, run)
    }

    fn notifier(&mut self, bus: &Bus, config: notifier::Config) -> ReadyFlag {
        let ready = self.health.register("notifier");
        let run = |metrics, ctx| notifier::run(config, metrics, ctx);
        self.launch("notifier", bus, ready, notifier::Metrics::register, run)
    }

    /// Serves health and metrics, then waits for a stop signal or a failed
    /// stage, and drains.
    async fn supervise(mut self, common: &Common) -> anyhow::Result<()> {
        let registry = Arc::new(std::mem::take(&mut self.registry));
        if let Some(addr) = common.listen {
            http::serve(addr, self.health.clone(), registry, self.shutdown.clone()).await?;
        }

        let mut failure = None;
        tokio::select! {
            biased;
            () = self.shutdown.cancelled() => {}
            Some(joined) = self.stages.join_next() => {
                // A stage that returns Ok after the stop signal is draining, not failing.
                let stopping = self.shutdown.is_cancelled() && matches!(joined, Ok((_, Ok(()))));
                if !stopping {
                    failure = Some(stage_failure(joined));
                }
            }
        }
        self.shutdown.cancel();
        self.drain().await;
        match failure {
            Some(error) => {
                error!(error = %format!("{error:#}"), "stopping after a stage failure");
                Err(error)
            }
            None => Ok(()),
        }
    }

    async fn drain(&mut self) {
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while let Some(joined) = self.stages.join_next().await {
                if let Ok((stage, Err(error))) = joined {
                    warn!(stage, error = %format!("{error:#}"), "stage failed while stopping");
                }
            }
        });
        match drained.await {
            Ok(()) => info!("all stages stopped"),
            Err(_) => warn!(timeout_s = DRAIN_TIMEOUT.as_secs(), "stages did not stop in time"),
        }
    }
}

fn spawn_signal_handler(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => info!(signal = "SIGTERM", "stopping"),
            _ = interrupt.recv() => info!(signal = "SIGINT", "stopping"),
            () = shutdown.cancelled() => {}
        }
        shutdown.cancel();
    });
    Ok(())
}
