//! Rules: which changes alert, at what severity, and which are quiet.
//!
//! A [`RuleSet`] is the user's rules (YAML files in one directory, read in
//! file-name order) followed by the defaults compiled into the binary; the
//! first rule that matches a change decides. When none matches, a host path
//! falls back to `host-path-changed` (high) and a container path to
//! `container-drift` (medium), so a watched change is never silently lost.

mod file;
pub mod reload;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use globset::{GlobMatcher, GlobSet};
use schemas::{ChangeKind, ContainerInfo, RawPath, Severity};
use serde::Deserialize;

pub use file::{RuleError, RuleErrors};

/// The default rules, shipped in the binary.
pub const DEFAULT_RULES: &str = include_str!("default.yaml");
/// Name under which errors in the default rules are reported.
const DEFAULT_RULES_NAME: &str = "<default rules>";

/// Rule of a changed host path that no rule matched.
pub const HOST_FALLBACK: &str = "host-path-changed";
/// Rule of a changed container path that no rule matched.
pub const CONTAINER_FALLBACK: &str = "container-drift";
/// Controls of the fallback rules: any unexpected change of a monitored
/// file is change-detection evidence.
pub const CONTROLS: [&str; 2] = ["PCI-DSS-4.0:11.5.2", "NIST-800-53:SI-7"];

/// Which sources a rule applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Host paths and container paths.
    #[default]
    Any,
    /// Only paths on the node itself (named with `--watch`).
    Host,
    /// Only paths inside containers.
    Container,
}

/// What a matching rule does with a change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Publish an alert; the new state becomes the last seen state.
    #[default]
    Alert,
    /// Nothing: no alert, nothing recorded.
    Ignore,
    /// No alert; the new state becomes the authorized baseline.
    Accept,
}

/// Path globs; `None` matches every path.
pub(crate) struct PathSet(Option<GlobSet>);

impl PathSet {
    fn matches(&self, path: &RawPath) -> bool {
        self.0.as_ref().is_none_or(|set| set.is_match(path.as_path()))
    }

    fn is_any(&self) -> bool {
        self.0.is_none()
    }
}

/// Globs over a text value; `None` matches anything, even a missing value.
pub(crate) struct ValueSet(Option<GlobSet>);

impl ValueSet {
    fn matches(&self, value: Option<&str>) -> bool {
        match &self.0 {
            None => true,
            Some(set) => value.is_some_and(|v| set.is_match(v)),
        }
    }
}

/// Container selectors. An empty selector matches every source; any
/// non-empty one never matches a host path.
pub(crate) struct Selector {
    images: ValueSet,
    names: ValueSet,
    namespaces: ValueSet,
    pods: ValueSet,
    labels: Vec<(String, GlobMatcher)>,
    annotations: Vec<(String, GlobMatcher)>,
}

impl Selector {
    fn is_empty(&self) -> bool {
        [&self.images, &self.names, &self.namespaces, &self.pods].iter().all(|v| v.0.is_none())
            && self.labels.is_empty()
            && self.annotations.is_empty()
    }

    fn matches(&self, container: Option<&ContainerInfo>) -> bool {
        if self.is_empty() {
            return true;
        }
        let Some(c) = container else { return false };
        let pairs = |wanted: &[(String, GlobMatcher)], have: &std::collections::BTreeMap<_, _>| {
            wanted.iter().all(|(k, glob)| have.get(k).is_some_and(|v: &String| glob.is_match(v)))
        };
        self.images.matches(c.image.as_deref())
            && self.names.matches(c.name.as_deref())
            && self.namespaces.matches(c.namespace.as_deref())
            && self.pods.matches(c.pod.as_deref())
            && pairs(&self.labels, &c.labels)
            && pairs(&self.annotations, &c.annotations)
    }
}

/// An exception: a change it matches skips the rule.
pub(crate) struct Exception {
    paths: PathSet,
    changes: Vec<ChangeKind>,
    selector: Selector,
}

impl Exception {
    fn matches(&self, target: &Target<'_>) -> bool {
        // An exception with nothing in it would swallow every change.
        if self.paths.is_any() && self.changes.is_empty() && self.selector.is_empty() {
            return false;
        }
        self.paths.matches(target.path)
            && (self.changes.is_empty() || self.changes.contains(&target.change))
            && self.selector.matches(target.container)
    }
}

/// One compiled rule.
pub struct Rule {
    /// Unique id.
    pub id: String,
    paths: PathSet,
    changes: Vec<ChangeKind>,
    scope: Scope,
    selector: Selector,
    exceptions: Vec<Exception>,
    /// Severity of its alerts.
    pub severity: Severity,
    /// Compliance control ids.
    pub controls: Vec<String>,
    /// What it does.
    pub action: Action,
    /// Whether files missing from the image are learned on first sight.
    pub learn: bool,
}

impl Rule {
    fn matches(&self, target: &Target<'_>) -> bool {
        let scoped = match self.scope {
            Scope::Any => true,
            Scope::Host => target.container.is_none(),
            Scope::Container => target.container.is_some(),
        };
        scoped
            && (self.changes.is_empty() || self.changes.contains(&target.change))
            && self.paths.matches(target.path)
            && self.selector.matches(target.container)
            && !self.exceptions.iter().any(|e| e.matches(target))
    }
}

/// The change a rule is asked about.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The path, inside the container or on the node.
    pub path: &'a RawPath,
    /// What happened, judged from the states.
    pub change: ChangeKind,
    /// The container, `None` for host paths.
    pub container: Option<&'a ContainerInfo>,
}

/// What the rules decided about one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The deciding rule (or a fallback id).
    pub rule: String,
    /// What to do.
    pub action: Action,
    /// Severity of the alert.
    pub severity: Severity,
    /// Compliance controls.
    pub controls: Vec<String>,
    /// Whether a file missing from the image is learned on first sight.
    pub learn: bool,
}

/// User rules followed by the defaults.
pub struct RuleSet {
    rules: Vec<Rule>,
    user_rules: usize,
}

impl RuleSet {
    /// Only the default rules.
    pub fn defaults() -> Result<Self, RuleErrors> {
        let rules = parse_text(Path::new(DEFAULT_RULES_NAME), DEFAULT_RULES, &mut HashSet::new())?;
        Ok(Self { rules, user_rules: 0 })
    }

    /// The rules of every `*.yaml`/`*.yml` file in `dir` (in file-name
    /// order), then the defaults. A user rule may not reuse a default id.
    pub fn load(dir: Option<&Path>) -> Result<Self, RuleErrors> {
        // Default ids are taken first, so a clash is reported in the user's file.
        let mut seen = HashSet::new();
        let defaults = parse_text(Path::new(DEFAULT_RULES_NAME), DEFAULT_RULES, &mut seen)?;
        let mut rules = match dir {
            Some(dir) => load_files(&rule_files(dir)?, &mut seen)?,
            None => Vec::new(),
        };
        let user_rules = rules.len();
        rules.extend(defaults);
        Ok(Self { rules, user_rules })
    }

    /// Number of user rules and of all rules.
    pub fn counts(&self) -> (usize, usize) {
        (self.user_rules, self.rules.len())
    }

    /// The first matching rule's verdict, or the fallback for the source.
    pub fn evaluate(&self, target: &Target<'_>) -> Verdict {
        match self.rules.iter().find(|rule| rule.matches(target)) {
            Some(rule) => Verdict {
                rule: rule.id.clone(),
                action: rule.action,
                severity: rule.severity,
                controls: rule.controls.clone(),
                learn: rule.learn,
            },
            None => fallback(target.container.is_some()),
        }
    }
}

fn fallback(container: bool) -> Verdict {
    let (rule, severity) = match container {
        true => (CONTAINER_FALLBACK, Severity::Medium),
        false => (HOST_FALLBACK, Severity::High),
    };
    Verdict {
        rule: rule.into(),
        action: Action::Alert,
        severity,
        controls: CONTROLS.iter().map(|c| (*c).to_owned()).collect(),
        learn: false,
    }
}

/// Checks a rule file, or every rule file of a directory, as the
/// evaluator would load it (so reusing a built-in id is an error); returns
/// the number of user rules.
pub fn check(path: &Path) -> Result<usize, RuleErrors> {
    let files = if path.is_dir() { rule_files(path)? } else { vec![path.to_owned()] };
    let mut seen = HashSet::new();
    parse_text(Path::new(DEFAULT_RULES_NAME), DEFAULT_RULES, &mut seen)?;
    Ok(load_files(&files, &mut seen)?.len())
}

/// The rule files of a directory, sorted by name.
pub(crate) fn rule_files(dir: &Path) -> Result<Vec<PathBuf>, RuleErrors> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, &e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

fn load_files(files: &[PathBuf], seen: &mut HashSet<String>) -> Result<Vec<Rule>, RuleErrors> {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let parsed = std::fs::read_to_string(file)
            .map_err(|e| io_error(file, &e))
            .and_then(|text| parse_text(file, &text, seen));
        match parsed {
            Ok(more) => rules.extend(more),
            Err(RuleErrors(more)) => errors.extend(more),
        }
    }
    if errors.is_empty() { Ok(rules) } else { Err(RuleErrors(errors)) }
}

fn parse_text(
    file: &Path,
    text: &str,
    seen: &mut HashSet<String>,
) -> Result<Vec<Rule>, RuleErrors> {
    file::parse(file, text, seen).map_err(RuleErrors)
}

fn io_error(path: &Path, error: &std::io::Error) -> RuleErrors {
    RuleErrors(vec![RuleError {
        file: path.to_owned(),
        position: None,
        message: format!("cannot read: {error}"),
    }])
}

/// A rule set that can be replaced while workers read it.
pub type SharedRules = Arc<std::sync::RwLock<Arc<RuleSet>>>;

#[cfg(test)]
mod tests;
