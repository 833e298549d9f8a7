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

use crate::cli::{
    AllArgs, BaselineCommand, Cli, Command, Common, ContainerArgs, EvaluationArgs, HashingArgs,
    RulesCommand, ScanArgs,
};
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
            let config =
                collector_config(&args.common, args.watch, args.exclude, &args.containers)?;
            let bus = process.connect(&args.nats, "fim-collector").await?;
            let ready = process.health.register("collector");
            process.collector(&bus, config, ready);
            process.supervise(&args.common).await
        }
        Command::Hasher(args) => {
            let mut process = Process::start(&args.common, "fim-hasher")?;
            let mut config = hasher_config(&args.common, args.workers, &args.hashing)?;
            config.partitions = args.partitions;
            config.validate().context("invalid --partitions")?;
            let bus = process.connect(&args.nats, "fim-hasher").await?;
            process.hasher(&bus, config);
            process.supervise(&args.common).await
        }
        Command::Evaluator(args) => {
            let mut process = Process::start(&args.common, "fim-evaluator")?;
            let data_dir = prepare_data_dir(&args.data_dir)?;
            let config = evaluator_config(data_dir, &args.evaluation)?;
            let bus = process.connect(&args.nats, "fim-evaluator").await?;
            process.evaluator(&bus, config);
            process.supervise(&args.common).await
        }
        Command::Notifier(args) => {
            let mut process = Process::start(&args.common, "fim-notifier")?;
            let config = notifier_config(args.sinks.as_deref())?;
            let bus = process.connect(&args.nats, "fim-notifier").await?;
            process.notifier(&bus, config);
            process.supervise(&args.common).await
        }
        Command::Rules(command) => rules(command),
        Command::Baseline(command) => baseline(command).await,
        Command::Report(args) => print_lines(evaluator::admin::report(&args.data_dir)?),
        // main runs scans before the runtime starts; they have their own
        // exit statuses.
        Command::Scan(args) => Err(anyhow!("scan of {:?} reached the stage runner", args.paths)),
    }
}

// The consuming stages start first and the collector only once they have
// their consumers, so nothing the collector publishes waits on a stage that
// does not exist yet.
async fn all(args: AllArgs) -> anyhow::Result<()> {
    let mut process = Process::start(&args.common, "fim")?;
    let data_dir = prepare_data_dir(&args.data_dir)?;
    let collector =
        collector_config(&args.common, args.watch, vec![data_dir.clone()], &args.containers)?;
    let mut hasher = hasher_config(&args.common, args.workers, &args.hashing)?;
    // One process: the hasher spreads over exactly the evaluator's partitions.
    hasher.partitions = args.evaluation.partitions;
    let sinks = notifier_config(args.sinks.as_deref())?;
    let bus = match &args.nats {
        Some(url) => process.connect(url, "fim-all").await?,
        None => Bus::memory(),
    };
    let consumers = [
        process.notifier(&bus, sinks),
        process.evaluator(&bus, evaluator_config(data_dir, &args.evaluation)?),
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

// The sinks file when given, else JSON lines on stdout.
fn notifier_config(sinks: Option<&std::path::Path>) -> anyhow::Result<notifier::Config> {
    let Some(path) = sinks else { return Ok(notifier::Config::default()) };
    let config = notifier::Config::from_file(path).context("invalid --sinks")?;
    config.preflight().context("invalid --sinks")?;
    Ok(config)
}

fn collector_config(
    common: &Common,
    watch: Vec<PathBuf>,
    exclude: Vec<PathBuf>,
    containers: &ContainerArgs,
) -> anyhow::Result<collector::Config> {
    let state = collector::StatePaths {
        docker: containers.docker_root.clone(),
        containerd: containers.containerd_state.clone(),
        containers_storage: containers.containers_storage.clone(),
    };
    let config = collector::Config {
        node: common.node()?,
        watch,
        exclude,
        containers: !containers.no_containers,
        proc_root: containers.proc_root.clone(),
        state,
        watch_ignored: containers.watch_ignored_containers,
    };
    config.validate().context("invalid collector configuration")?;
    Ok(config)
}

fn hasher_config(
    common: &Common,
    workers: Option<usize>,
    hashing: &HashingArgs,
) -> anyhow::Result<hasher::Config> {
    let mut config = hasher::Config::new(common.node()?);
    if let Some(workers) = workers {
        config.workers = workers;
    }
    config.max_hash_bytes = hashing.max_hash_bytes;
    if !hashing.capture.is_empty() {
        config.capture_globs = hashing.capture.clone();
    }
    config.validate().context("invalid --workers or --max-hash-bytes")?;
    Ok(config)
}

/// `fim scan`, a batch job run without the async runtime: a manifest on
/// stdout, or with `--compare` the differences. Exit status 0 when the
/// scan is complete (and identical), 1 when anything differs, 2 on errors.
pub fn scan(args: &ScanArgs) -> std::process::ExitCode {
    let _telemetry = match telemetry::init(args.log_format, "fim-scan") {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("fim: {error:#}");
            return std::process::ExitCode::from(2);
        }
    };
    match run_scan(args) {
        Ok(code) => code,
        Err(error) => {
            error!(error = %format!("{error:#}"), "scan failed");
            std::process::ExitCode::from(2)
        }
    }
}

fn run_scan(args: &ScanArgs) -> anyhow::Result<std::process::ExitCode> {
    use std::io::Write;
    let mut options = hasher::scan::ScanOptions::default();
    options.workers = args.workers.unwrap_or(options.workers);
    anyhow::ensure!(
        (1..=1024).contains(&options.workers),
        "invalid --workers: must be between 1 and 1024, got {}",
        options.workers
    );
    anyhow::ensure!(args.max_hash_bytes > 0, "invalid --max-hash-bytes: must be at least 1");
    options.max_hash_bytes = args.max_hash_bytes;
    let before = args.compare.as_deref().map(read_manifest).transpose()?;

    let scan = hasher::scan::scan(&args.paths, &options);
    for failure in &scan.errors {
        warn!(path = %failure.path, error = %failure.source, "cannot scan path");
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let differs = match before {
        None => {
            hasher::scan::write_manifest(&scan.entries, &mut out).context("cannot write stdout")?;
            false
        }
        Some(before) => {
            let differences = hasher::scan::compare(&before, &scan.entries);
            hasher::scan::write_differences(&differences, &mut out)
                .context("cannot write stdout")?;
            !differences.is_empty()
        }
    };
    out.flush().context("cannot write stdout")?;
    info!(entries = scan.entries.len(), errors = scan.errors.len(), differs, "scan finished");
    Ok(std::process::ExitCode::from(match (scan.errors.is_empty(), differs) {
        (false, _) => 2,
        (true, true) => 1,
        (true, false) => 0,
    }))
}

fn read_manifest(path: &std::path::Path) -> anyhow::Result<Vec<hasher::scan::Entry>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("invalid --compare: cannot open {}", path.display()))?;
    hasher::scan::read_manifest(std::io::BufReader::new(file))
        .with_context(|| format!("invalid --compare: {} is not a manifest", path.display()))
}

fn evaluator_config(data_dir: PathBuf, args: &EvaluationArgs) -> anyhow::Result<evaluator::Config> {
    const HOUR: u64 = 60 * 60;
    let mut config = evaluator::Config::new(data_dir);
    config.rules_dir = args.rules.clone();
    config.partitions = args.partitions;
    config.partition_ids = args.partition_ids.clone();
    config.comparison_interval = Duration::from_secs(args.compare_every_hours * HOUR);
    config.retention = Duration::from_secs(args.retention_days * 24 * HOUR);
    config.validate().context(
        "invalid evaluator flags (--partitions, --partition-ids, --compare-every-hours)",
    )?;
    Ok(config)
}

// `fim rules check`: errors one per line, exit status 1.
fn rules(command: RulesCommand) -> anyhow::Result<()> {
    let RulesCommand::Check { path } = command;
    match evaluator::admin::check_rules(&path) {
        Ok(summary) => print_lines(vec![summary]),
        Err(errors) => {
            let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
            Err(anyhow!("{} error(s) in rules:\n{}", lines.len(), lines.join("\n")))
        }
    }
}

// `fim baseline …`: over NATS when asked, else on the database directly.
async fn baseline(command: BaselineCommand) -> anyhow::Result<()> {
    match command {
        BaselineCommand::Accept(args) => {
            let path = args.path.map(|p| schemas::RawPath::from_escaped(&p)).transpose()?;
            let scope = schemas::message::ApprovalScope {
                container: args.container,
                image: args.image,
                path,
            };
            anyhow::ensure!(
                scope.container.is_some() || scope.image.is_some() || scope.path.is_some(),
                "invalid fim baseline accept: name --container, --image or --path"
            );
            let approval = evaluator::admin::approval(scope, args.approver, args.reason);
            match args.nats {
                Some(url) => {
                    let bus = Bus::connect(&url, "fim-baseline")
                        .await
                        .with_context(|| format!("invalid --nats: cannot use {url}"))?;
                    evaluator::admin::send_approval(&bus, &approval).await?;
                    print_lines(vec![format!("sent approval {}", approval.id)])
                }
                None => match evaluator::admin::accept(&args.db.data_dir, &approval).await? {
                    evaluator::Applied::Approved(n) => print_lines(vec![format!(
                        "approval {} applied to {n} baselines",
                        approval.id
                    )]),
                    evaluator::Applied::Duplicate => print_lines(vec!["already applied".into()]),
                },
            }
        }
        BaselineCommand::List(args) => print_lines(evaluator::admin::list(&args.data_dir)?),
        BaselineCommand::Export(args) => {
            print_lines(evaluator::admin::export(&args.db.data_dir, args.source.as_deref())?)
        }
    }
}

fn print_lines(lines: Vec<String>) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    for line in lines {
        writeln!(stdout, "{line}")?;
    }
    Ok(())
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
