//! Command-line flags, turned into validated stage configurations once.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// File integrity monitoring for containers, over NATS.
#[derive(Debug, Parser)]
#[command(name = "fim", version)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The modes of the binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run all four stages in one process (in-process bus unless --nats).
    All(AllArgs),
    /// Watch files and publish raw events.
    Collector(CollectorArgs),
    /// Hash changed files and publish observations.
    Hasher(HasherArgs),
    /// Compare observations with baselines and publish alerts.
    Evaluator(EvaluatorArgs),
    /// Deliver alerts to sinks (stdout).
    Notifier(NotifierArgs),
    /// Work with rule files.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Approve, list and export baselines.
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// Compare every source in the baseline database now and print one
    /// report per source (JSON lines).
    Report(DataDirArgs),
    /// Hash host trees into a manifest (JSON lines on stdout), or compare
    /// them with an earlier manifest: exit 0 identical, 1 different, 2 errors.
    Scan(ScanArgs),
}

/// Flags every mode takes.
#[derive(Debug, Args)]
pub struct Common {
    /// Serve /healthz, /readyz and /metrics on this address (e.g. 127.0.0.1:9090).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Name of this node in events and subjects [default: the host name].
    #[arg(long, env = "FIM_NODE", value_name = "NAME")]
    pub node: Option<String>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `fim all`.
#[derive(Debug, Args)]
pub struct AllArgs {
    #[command(flatten)]
    pub common: Common,
    /// NATS server URL; without it the stages share an in-process bus.
    #[arg(long, env = "FIM_NATS", value_name = "URL")]
    pub nats: Option<String>,
    /// Sinks file (YAML) for the notifier [default: JSON lines on stdout].
    #[arg(long, env = "FIM_SINKS", value_name = "FILE")]
    pub sinks: Option<PathBuf>,
    /// Directory for the baseline database.
    #[arg(long, env = "FIM_DATA_DIR", default_value = "/var/lib/fim", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// A host directory or file to watch (repeatable).
    #[arg(long, value_name = "PATH")]
    pub watch: Vec<PathBuf>,
    #[command(flatten)]
    pub containers: ContainerArgs,
    /// Hashing workers [default: the number of cores].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    #[command(flatten)]
    pub hashing: HashingArgs,
    #[command(flatten)]
    pub evaluation: EvaluationArgs,
}

/// Hasher flags shared by `fim all` and `fim hasher`.
#[derive(Debug, Args)]
pub struct HashingArgs {
    /// Bytes of a file hashed at most; larger files get a partial hash.
    #[arg(long, value_name = "BYTES", default_value_t = hasher::DEFAULT_MAX_HASH_BYTES)]
    pub max_hash_bytes: u64,
    /// Glob of paths whose content is captured (redacted) for diffs,
    /// repeatable; replaces the default set.
    #[arg(long = "capture", value_name = "GLOB")]
    pub capture: Vec<String>,
}

/// `fim scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Directories (walked) and files to scan.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// Compare with this manifest instead of printing one.
    #[arg(long, value_name = "MANIFEST")]
    pub compare: Option<PathBuf>,
    /// Hashing threads [default: the number of cores].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Bytes of a file hashed at most; larger files get a partial hash.
    #[arg(long, value_name = "BYTES", default_value_t = hasher::DEFAULT_MAX_HASH_BYTES)]
    pub max_hash_bytes: u64,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `fim collector`.
#[derive(Debug, Args)]
pub struct CollectorArgs {
    #[command(flatten)]
    pub common: Common,
    /// NATS server URL.
    #[arg(long, env = "FIM_NATS", value_name = "URL")]
    pub nats: String,
    /// A host directory or file to watch (repeatable).
    #[arg(long, value_name = "PATH")]
    pub watch: Vec<PathBuf>,
    /// A path whose changes are never reported (repeatable).
    #[arg(long, value_name = "PATH")]
    pub exclude: Vec<PathBuf>,
    #[command(flatten)]
    pub containers: ContainerArgs,
}

/// Container discovery flags of `fim all` and `fim collector`.
#[derive(Debug, Args)]
pub struct ContainerArgs {
    /// Do not discover or watch containers; only --watch paths.
    #[arg(long)]
    pub no_containers: bool,
    /// Where the node's /proc is mounted.
    #[arg(long = "proc", value_name = "DIR", default_value = "/proc")]
    pub proc_root: PathBuf,
    /// Docker's data root (container names and images).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/docker")]
    pub docker_root: PathBuf,
    /// containerd's state directory (OCI bundles with Kubernetes annotations).
    #[arg(long, value_name = "DIR", default_value = "/run/containerd")]
    pub containerd_state: PathBuf,
    /// Run directory of containers/storage (CRI-O and podman).
    #[arg(long, value_name = "DIR", default_value = "/run/containers/storage")]
    pub containers_storage: PathBuf,
    /// Also watch containers labelled io.fim.ignore=true.
    #[arg(long)]
    pub watch_ignored_containers: bool,
}

/// `fim hasher`.
#[derive(Debug, Args)]
pub struct HasherArgs {
    #[command(flatten)]
    pub common: Common,
    /// NATS server URL.
    #[arg(long, env = "FIM_NATS", value_name = "URL")]
    pub nats: String,
    /// Hashing workers [default: the number of cores].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    #[command(flatten)]
    pub hashing: HashingArgs,
    /// Number of evaluator partitions observations are spread over; must
    /// equal the evaluators' --partitions.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub partitions: u32,
}

/// `fim evaluator`.
#[derive(Debug, Args)]
pub struct EvaluatorArgs {
    #[command(flatten)]
    pub common: Common,
    /// NATS server URL.
    #[arg(long, env = "FIM_NATS", value_name = "URL")]
    pub nats: String,
    /// Directory for the baseline database.
    #[arg(long, env = "FIM_DATA_DIR", default_value = "/var/lib/fim", value_name = "DIR")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub evaluation: EvaluationArgs,
}

/// Evaluator flags shared by `fim all` and `fim evaluator`.
#[derive(Debug, Args)]
pub struct EvaluationArgs {
    /// Directory of rule files (*.yaml), checked for changes every 2 s
    /// [default: the built-in rules only].
    #[arg(long, env = "FIM_RULES", value_name = "DIR")]
    pub rules: Option<PathBuf>,
    /// Number of observation partitions; must equal the hashers' setting.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub partitions: u32,
    /// Partitions this replica owns, comma-separated [default: all].
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    pub partition_ids: Option<Vec<u32>>,
    /// Hours between scheduled full comparisons [default: 168, weekly].
    #[arg(long, value_name = "HOURS", default_value_t = 168)]
    pub compare_every_hours: u64,
    /// Days a departed container's baselines are kept.
    #[arg(long, value_name = "DAYS", default_value_t = 14)]
    pub retention_days: u64,
}

/// `fim rules …`.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Check a rule file or a directory of them; errors name file, line
    /// and column, and the exit status is 1.
    Check {
        /// A rule file or a directory of *.yaml files.
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
}

/// `fim baseline …`.
#[derive(Debug, Subcommand)]
pub enum BaselineCommand {
    /// Approve the current state of changed files as their baseline.
    Accept(AcceptArgs),
    /// Print the approvals applied so far (JSON lines).
    List(DataDirArgs),
    /// Print every baseline (JSON lines).
    Export(ExportArgs),
}

/// Where the baseline database is.
#[derive(Debug, Args)]
pub struct DataDirArgs {
    /// Directory of the baseline database; no evaluator may be running on it.
    #[arg(long, env = "FIM_DATA_DIR", default_value = "/var/lib/fim", value_name = "DIR")]
    pub data_dir: PathBuf,
}

/// `fim baseline accept`.
#[derive(Debug, Args)]
pub struct AcceptArgs {
    /// Only this container (full id).
    #[arg(long, value_name = "ID")]
    pub container: Option<String>,
    /// Every container of this image (reference or id), now and later.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Only this path.
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// Who approves (recorded with the approval).
    #[arg(long, value_name = "NAME")]
    pub approver: Option<String>,
    /// Why, e.g. a change ticket (recorded with the approval).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Send the approval to the running evaluators over NATS instead of
    /// opening the database.
    #[arg(long, env = "FIM_NATS", value_name = "URL")]
    pub nats: Option<String>,
    #[command(flatten)]
    pub db: DataDirArgs,
}

/// `fim baseline export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Only this source: `container:<id>` or `host:<node>`.
    #[arg(long, value_name = "SOURCE")]
    pub source: Option<String>,
    #[command(flatten)]
    pub db: DataDirArgs,
}

/// `fim notifier`.
#[derive(Debug, Args)]
pub struct NotifierArgs {
    #[command(flatten)]
    pub common: Common,
    /// NATS server URL.
    #[arg(long, env = "FIM_NATS", value_name = "URL")]
    pub nats: String,
    /// Sinks file (YAML) [default: JSON lines on stdout].
    #[arg(long, env = "FIM_SINKS", value_name = "FILE")]
    pub sinks: Option<PathBuf>,
}

impl Common {
    /// The node name: the flag, else the kernel's host name.
    pub fn node(&self) -> anyhow::Result<String> {
        use anyhow::Context;
        if let Some(node) = &self.node {
            anyhow::ensure!(!node.trim().is_empty(), "invalid --node: must not be empty");
            return Ok(node.clone());
        }
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("cannot read the host name; pass --node")?;
        Ok(name.trim().to_owned())
    }
}
