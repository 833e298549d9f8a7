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
    /// Directory for the baseline database.
    #[arg(long, env = "FIM_DATA_DIR", default_value = "/var/lib/fim", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// A host directory or file to watch (repeatable).
    #[arg(long, value_name = "PATH", required = true)]
    pub watch: Vec<PathBuf>,
    /// Hashing workers [default: the number of cores].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
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
    #[arg(long, value_name = "PATH", required = true)]
    pub watch: Vec<PathBuf>,
    /// A path whose changes are never reported (repeatable).
    #[arg(long, value_name = "PATH")]
    pub exclude: Vec<PathBuf>,
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
}

/// `fim notifier`.
#[derive(Debug, Args)]
pub struct NotifierArgs {
    #[command(flatten)]
    pub common: Common,
    /// NATS server URL.
    #[arg(long, env = "FIM_NATS", value_name = "URL")]
    pub nats: String,
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
