//! The notifier's configuration: the sinks file (YAML, parsed with
//! serde-saphyr), validated once at start-up. Unknown fields are rejected
//! and every error names the field, e.g. `sinks[1] (security).slack.url_env`.
//! Without a sinks file the notifier writes JSON lines to stdout.

use std::path::Path;
use std::time::Duration;

use bus::ConsumerSpec;
use schemas::{stream, subject};
use serde::Deserialize;

use crate::Error;
use crate::encoding::Encoding;
use crate::sinks::{slack, splunk_hec, stdout, syslog, webhook};

// A Slack message holds at most 50 blocks; an alert takes up to four plus a
// divider.
const SLACK_MAX_BATCH: usize = 10;

/// How the notifier runs: which alerts, to which sinks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Alert subject filter for every sink without its own, e.g.
    /// `fim.alerts.critical.>`. Default: `fim.alerts.>` (everything).
    #[serde(default = "default_filter")]
    pub filter: String,
    /// The sinks; each gets its own durable consumer `notifier-<name>`.
    /// Default: one `stdout` sink writing JSON lines.
    #[serde(default = "default_sinks")]
    pub sinks: Vec<SinkConfig>,
}

fn default_filter() -> String {
    format!("{}.>", subject::ALERTS)
}

fn default_sinks() -> Vec<SinkConfig> {
    vec![SinkConfig::stdout()]
}

impl Default for Config {
    fn default() -> Self {
        Self { filter: default_filter(), sinks: default_sinks() }
    }
}

/// One sink: a name, what to deliver, how, and exactly one kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Unique name: lower-case letters, digits, `-` and `_`. It names the
    /// durable consumer (`notifier-<name>`), the dead-letter subject
    /// (`fim.dlq.notifier-<name>`) and the `sink` metrics label.
    pub name: String,
    /// Alert subject filter of this sink. Default: the top-level `filter`.
    /// Changing it later needs the durable consumer deleted, since an
    /// existing consumer keeps its filter.
    #[serde(default)]
    pub filter: Option<String>,
    /// Retries, batching and rate limits.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// Write to standard output.
    #[serde(default)]
    pub stdout: Option<stdout::StdoutConfig>,
    /// Post to a Slack incoming webhook.
    #[serde(default)]
    pub slack: Option<slack::SlackConfig>,
    /// Send to a syslog receiver.
    #[serde(default)]
    pub syslog: Option<syslog::SyslogConfig>,
    /// Post to any HTTP endpoint.
    #[serde(default)]
    pub webhook: Option<webhook::WebhookConfig>,
    /// Post to a Splunk HTTP Event Collector.
    #[serde(default)]
    pub splunk_hec: Option<splunk_hec::SplunkHecConfig>,
}

/// Retries, batching and rate limits of one sink. Fields left out take the
/// sink kind's defaults (Slack: 5 alerts per message, 1 request a second).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Attempts per batch before its alerts go to the dead-letter subject.
    /// Default 10.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// First retry delay in milliseconds; doubles per attempt, with jitter.
    /// Default 500.
    #[serde(default)]
    pub initial_backoff_ms: Option<u64>,
    /// Longest retry delay in milliseconds. Default 60000.
    #[serde(default)]
    pub max_backoff_ms: Option<u64>,
    /// Longest `Retry-After` honoured, in seconds; a receiver asking for more
    /// is retried after this. Default 300.
    #[serde(default)]
    pub max_retry_after_s: Option<u64>,
    /// Timeout of one delivery attempt (connect and send), in seconds.
    /// Default 10.
    #[serde(default)]
    pub timeout_s: Option<u64>,
    /// Most alerts sent in one request. Default: 5 for Slack, 50 for Splunk
    /// HEC, 1 otherwise.
    #[serde(default)]
    pub batch_max_events: Option<usize>,
    /// How long to wait for more alerts to fill a batch, in milliseconds.
    /// Default 200 when batching, 0 otherwise.
    #[serde(default)]
    pub batch_max_wait_ms: Option<u64>,
    /// Most requests per second, retries included. Default: 1 for Slack,
    /// unlimited otherwise.
    #[serde(default)]
    pub rate_limit_per_second: Option<f64>,
    /// How long the bus waits for an acknowledgement before redelivering,
    /// in seconds; also how long alerts held by a crashed notifier wait
    /// before another takes them. Default 60.
    #[serde(default)]
    pub ack_wait_s: Option<u64>,
}

/// [`DeliveryConfig`] with every default applied.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryPolicy {
    /// Attempts per batch before dead-lettering (at least 1).
    pub max_attempts: u32,
    /// First retry delay.
    pub initial_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Longest honoured `Retry-After`.
    pub max_retry_after: Duration,
    /// Timeout of one attempt.
    pub timeout: Duration,
    /// Most alerts per request.
    pub batch_max_events: usize,
    /// Longest wait to fill a batch.
    pub batch_max_wait: Duration,
    /// Least time between two requests.
    pub min_interval: Duration,
    /// Acknowledgement wait of the durable consumer.
    pub ack_wait: Duration,
}

/// What a sink kind prefers when the configuration says nothing.
pub(crate) struct KindDefaults {
    pub batch_max_events: usize,
    pub rate_limit_per_second: Option<f64>,
}

impl DeliveryConfig {
    fn policy(&self, field: &str, defaults: KindDefaults) -> Result<DeliveryPolicy, Error> {
        let batch = self.batch_max_events.unwrap_or(defaults.batch_max_events);
        let max_attempts = self.max_attempts.unwrap_or(10);
        if max_attempts == 0 {
            return Err(Error::config(format!("{field}.max_attempts"), "must be at least 1"));
        }
        if batch == 0 {
            return Err(Error::config(format!("{field}.batch_max_events"), "must be at least 1"));
        }
        let rate = self.rate_limit_per_second.or(defaults.rate_limit_per_second);
        let min_interval = match rate {
            Some(rate) if !(rate > 0.0 && rate.is_finite()) => {
                let reason = format!("must be a positive number, got {rate}");
                return Err(Error::config(format!("{field}.rate_limit_per_second"), reason));
            }
            Some(rate) => Duration::from_secs_f64(1.0 / rate),
            None => Duration::ZERO,
        };
        let default_wait = if batch > 1 { 200 } else { 0 };
        let policy = DeliveryPolicy {
            max_attempts,
            initial_backoff: Duration::from_millis(self.initial_backoff_ms.unwrap_or(500)),
            max_backoff: Duration::from_millis(self.max_backoff_ms.unwrap_or(60_000)),
            max_retry_after: Duration::from_secs(self.max_retry_after_s.unwrap_or(300)),
            timeout: Duration::from_secs(self.timeout_s.unwrap_or(10).max(1)),
            batch_max_events: batch,
            batch_max_wait: Duration::from_millis(self.batch_max_wait_ms.unwrap_or(default_wait)),
            min_interval,
            ack_wait: Duration::from_secs(self.ack_wait_s.unwrap_or(60).max(1)),
        };
        Ok(policy)
    }
}

/// The kind of a sink, with its own settings.
#[derive(Debug, Clone)]
pub enum SinkKind {
    /// Standard output.
    Stdout(stdout::StdoutConfig),
    /// Slack incoming webhook.
    Slack(slack::SlackConfig),
    /// Syslog.
    Syslog(syslog::SyslogConfig),
    /// Generic webhook.
    Webhook(webhook::WebhookConfig),
    /// Splunk HEC.
    SplunkHec(splunk_hec::SplunkHecConfig),
}

impl SinkConfig {
    /// The default sink: JSON lines on stdout, named `stdout`.
    pub fn stdout() -> Self {
        Self {
            name: "stdout".into(),
            filter: None,
            delivery: DeliveryConfig::default(),
            stdout: Some(stdout::StdoutConfig { encoding: Encoding::Json }),
            slack: None,
            syslog: None,
            webhook: None,
            splunk_hec: None,
        }
    }

    /// The one kind that is set, or an error naming the sink.
    pub fn kind(&self, field: &str) -> Result<SinkKind, Error> {
        let mut kinds = Vec::new();
        if let Some(c) = &self.stdout {
            kinds.push(SinkKind::Stdout(c.clone()));
        }
        if let Some(c) = &self.slack {
            kinds.push(SinkKind::Slack(c.clone()));
        }
        if let Some(c) = &self.syslog {
            kinds.push(SinkKind::Syslog(c.clone()));
        }
        if let Some(c) = &self.webhook {
            kinds.push(SinkKind::Webhook(c.clone()));
        }
        if let Some(c) = &self.splunk_hec {
            kinds.push(SinkKind::SplunkHec(c.clone()));
        }
        match kinds.len() {
            1 => Ok(kinds.remove(0)),
            n => Err(Error::config(
                field,
                format!(
                    "set exactly one of stdout, slack, syslog, webhook, splunk_hec (found {n})"
                ),
            )),
        }
    }

    /// The delivery policy with this sink kind's defaults.
    pub fn policy(&self, field: &str) -> Result<DeliveryPolicy, Error> {
        let defaults = match self.kind(field)? {
            SinkKind::Slack(_) => {
                KindDefaults { batch_max_events: 5, rate_limit_per_second: Some(1.0) }
            }
            SinkKind::SplunkHec(_) => {
                KindDefaults { batch_max_events: 50, rate_limit_per_second: None }
            }
            _ => KindDefaults { batch_max_events: 1, rate_limit_per_second: None },
        };
        let policy = self.delivery.policy(&format!("{field}.delivery"), defaults)?;
        if self.slack.is_some() && policy.batch_max_events > SLACK_MAX_BATCH {
            let reason = format!("at most {SLACK_MAX_BATCH} for Slack (50 blocks per message)");
            return Err(Error::config(format!("{field}.delivery.batch_max_events"), reason));
        }
        Ok(policy)
    }
}

impl Config {
    /// Reads and validates a sinks file.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::Read { path: path.to_owned(), source })?;
        let config: Self = serde_saphyr::from_str(&text)
            .map_err(|error| Error::Parse { path: path.to_owned(), message: error.to_string() })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every field, naming the first bad one. Secrets are read
    /// later, when the sinks are built, still before any work is done.
    pub fn validate(&self) -> Result<(), Error> {
        validate_filter("filter", &self.filter)?;
        if self.sinks.is_empty() {
            return Err(Error::config("sinks", "at least one sink is needed"));
        }
        let mut names = std::collections::HashSet::new();
        for (index, sink) in self.sinks.iter().enumerate() {
            let field = sink.field(index);
            validate_name(&format!("{field}.name"), &sink.name)?;
            if !names.insert(sink.name.as_str()) {
                return Err(Error::config(format!("{field}.name"), "used by another sink"));
            }
            if let Some(filter) = &sink.filter {
                validate_filter(&format!("{field}.filter"), filter)?;
            }
            sink.policy(&field)?;
        }
        Ok(())
    }

    /// The durable consumer of one sink.
    pub(crate) fn consumer_spec(&self, sink: &SinkConfig, policy: &DeliveryPolicy) -> ConsumerSpec {
        let filter = sink.filter.clone().unwrap_or_else(|| self.filter.clone());
        let mut spec = ConsumerSpec::new(stream::ALERTS, durable_name(&sink.name), filter);
        spec.ack_wait = policy.ack_wait;
        spec
    }
}

impl SinkConfig {
    /// How errors name this sink: `sinks[<index>] (<name>)`.
    pub(crate) fn field(&self, index: usize) -> String {
        format!("sinks[{index}] ({})", self.name)
    }
}

/// The durable consumer name of a sink.
pub fn durable_name(sink: &str) -> String {
    format!("notifier-{sink}")
}

fn validate_name(field: &str, name: &str) -> Result<(), Error> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        let reason = format!("must be 1-64 of a-z, 0-9, '-' and '_', got {name:?}");
        Err(Error::config(field, reason))
    }
}

fn validate_filter(field: &str, filter: &str) -> Result<(), Error> {
    let prefix = format!("{}.", subject::ALERTS);
    let valid = filter.starts_with(&prefix)
        && filter.len() > prefix.len()
        && !filter.contains(char::is_whitespace);
    if valid {
        Ok(())
    } else {
        Err(Error::config(field, format!("must be a subject under {prefix}, got {filter:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Config, String> {
        let config: Config = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn the_example_sinks_file_is_valid() {
        let yaml = include_str!("../../deploy/sinks.example.yaml");
        let config = parse(yaml).unwrap();
        assert_eq!(config.sinks.len(), 6);
        for (index, sink) in config.sinks.iter().enumerate() {
            sink.kind(&sink.field(index)).unwrap();
        }
    }

    #[test]
    fn no_sinks_file_means_json_lines_on_stdout() {
        let config = Config::default();
        config.validate().unwrap();
        assert_eq!(config.sinks.len(), 1);
        assert!(matches!(config.sinks[0].kind("s").unwrap(), SinkKind::Stdout(_)));
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_name_and_line() {
        let error =
            parse("sinks:\n  - name: a\n    slack:\n      url_env: X\n      channel: '#x'\n")
                .unwrap_err();
        assert!(error.contains("channel"), "{error}");
        assert!(error.contains('5'), "names the line: {error}");
    }

    #[test]
    fn a_sink_needs_exactly_one_kind_and_a_unique_name() {
        let error = parse("sinks:\n  - name: a\n").unwrap_err();
        assert!(error.contains("sinks[0] (a)") && error.contains("exactly one"), "{error}");
        let yaml = "sinks:\n  - name: a\n    stdout: {}\n  - name: a\n    stdout: {}\n";
        let error = parse(yaml).unwrap_err();
        assert!(error.contains("sinks[1] (a).name"), "{error}");
        let error = parse("sinks:\n  - name: Bad.Name\n    stdout: {}\n").unwrap_err();
        assert!(error.contains(".name"), "{error}");
    }

    #[test]
    fn kind_defaults_apply_unless_overridden() {
        let yaml = "sinks:\n  - name: s\n    slack: { url_env: X }\n  - name: h\n    slack: { url_env: X }\n    delivery: { batch_max_events: 2, rate_limit_per_second: 4 }\n";
        let config = parse(yaml).unwrap();
        let slack = config.sinks[0].policy("s").unwrap();
        assert_eq!((slack.batch_max_events, slack.min_interval), (5, Duration::from_secs(1)));
        let custom = config.sinks[1].policy("h").unwrap();
        assert_eq!((custom.batch_max_events, custom.min_interval), (2, Duration::from_millis(250)));
        let error =
            parse("sinks:\n  - name: s\n    stdout: {}\n    delivery: { max_attempts: 0 }\n")
                .unwrap_err();
        assert!(error.contains("delivery.max_attempts"), "{error}");
    }
}
