//! Rule files: the YAML shape, and its compilation into matchers.
//!
//! Unknown fields are refused, and every error names the file, line and
//! column of the offending value (values are read with their spans), so
//! `fim rules check` can point at the mistake. Compilation is all-or-nothing
//! per set of files: one bad rule rejects the set.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use schemas::{ChangeKind, Severity};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::{Action, Exception, PathSet, Rule, Scope, Selector, ValueSet};

/// One problem in a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// The file.
    pub file: PathBuf,
    /// Line and column (1-based), when the problem has a place.
    pub position: Option<(u64, u64)>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => {
                write!(f, "{}:{line}:{column}: {}", self.file.display(), self.message)
            }
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Every problem found in a set of rule files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RuleErrors(pub Vec<RuleError>);

impl fmt::Display for RuleErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(RuleError::to_string).collect();
        f.write_str(&lines.join("; "))
    }
}

/// A rule file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    /// The rules, in order; the first that matches a change decides.
    #[serde(default)]
    rules: Vec<RawRule>,
}

/// One rule as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    /// Unique id, shown in alerts and metrics.
    id: Spanned<String>,
    /// Free text for people.
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    /// Path globs; empty matches every path.
    #[serde(default)]
    paths: Vec<Spanned<String>>,
    /// Change kinds; empty matches every change.
    #[serde(default)]
    changes: Vec<Spanned<ChangeKind>>,
    /// Host paths, container paths, or both (default).
    #[serde(default)]
    scope: Scope,
    /// Container selectors; empty matches every source.
    #[serde(default)]
    containers: RawSelector,
    /// Changes that match the rule but are let through to later rules.
    #[serde(default)]
    except: Vec<RawException>,
    /// Severity of the alert; required when the action is `alert`.
    #[serde(default)]
    severity: Option<Severity>,
    /// Compliance control ids, copied into alerts.
    #[serde(default)]
    controls: Vec<String>,
    /// What to do on a match (default `alert`).
    #[serde(default)]
    action: Action,
    /// A file that is not in the image takes its first observed state as
    /// its baseline instead of alerting on creation.
    #[serde(default)]
    learn: bool,
}

/// Container selectors as written: each list holds globs, a match needs one
/// glob of every non-empty list to match.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelector {
    #[serde(default)]
    images: Vec<Spanned<String>>,
    #[serde(default)]
    names: Vec<Spanned<String>>,
    #[serde(default)]
    namespaces: Vec<Spanned<String>>,
    #[serde(default)]
    pods: Vec<Spanned<String>>,
    #[serde(default)]
    labels: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    annotations: BTreeMap<String, Spanned<String>>,
}

/// An exception as written: it applies when all its non-empty parts match.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawException {
    #[serde(default)]
    paths: Vec<Spanned<String>>,
    #[serde(default)]
    changes: Vec<Spanned<ChangeKind>>,
    #[serde(default)]
    containers: RawSelector,
}

/// Parses and compiles the rules of one file. `seen` holds the ids of
/// earlier files, so an id used twice is reported where it repeats.
pub(crate) fn parse(
    file: &Path,
    text: &str,
    seen: &mut HashSet<String>,
) -> Result<Vec<Rule>, Vec<RuleError>> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let parsed: RuleFile = serde_saphyr::from_str(text).map_err(|e| vec![yaml_error(file, &e)])?;
    let mut compiler = Compiler { file, errors: Vec::new() };
    let mut rules = Vec::with_capacity(parsed.rules.len());
    for raw in parsed.rules {
        if !seen.insert(raw.id.value.clone()) {
            compiler.error(raw.id.referenced, format!("duplicate rule id {:?}", raw.id.value));
        }
        if let Some(rule) = compiler.rule(raw) {
            rules.push(rule);
        }
    }
    if compiler.errors.is_empty() { Ok(rules) } else { Err(compiler.errors) }
}

fn yaml_error(file: &Path, error: &serde_saphyr::Error) -> RuleError {
    let position = error.location().and_then(position);
    // The plain message: the rendered form repeats the source snippet.
    let message = error.without_snippet().to_string();
    let message = message.lines().next().unwrap_or("invalid YAML").trim();
    // The position is reported on its own; drop the copy in the text.
    let message = match message.rfind(" at line ") {
        Some(at) if position.is_some() => &message[..at],
        _ => message,
    };
    let message = message.to_owned();
    RuleError { file: file.to_owned(), position, message }
}

fn position(location: Location) -> Option<(u64, u64)> {
    (location.line() > 0).then(|| (location.line(), location.column()))
}

struct Compiler<'a> {
    file: &'a Path,
    errors: Vec<RuleError>,
}

impl Compiler<'_> {
    fn error(&mut self, at: Location, message: String) {
        self.errors.push(RuleError { file: self.file.to_owned(), position: position(at), message });
    }

    fn rule(&mut self, raw: RawRule) -> Option<Rule> {
        let before = self.errors.len();
        if raw.id.value.trim().is_empty() {
            self.error(raw.id.referenced, "rule id must not be empty".into());
        }
        if raw.action == Action::Alert && raw.severity.is_none() {
            self.error(
                raw.id.referenced,
                format!("rule {:?} alerts but has no severity", raw.id.value),
            );
        }
        let paths = self.paths(&raw.paths);
        let changes = self.changes(&raw.changes);
        let selector = self.selector(&raw.containers);
        let exceptions = raw.except.iter().map(|e| self.exception(e)).collect();
        (self.errors.len() == before).then(|| Rule {
            id: raw.id.value,
            paths,
            changes,
            scope: raw.scope,
            selector,
            exceptions,
            severity: raw.severity.unwrap_or(Severity::Medium),
            controls: raw.controls,
            action: raw.action,
            learn: raw.learn,
        })
    }

    fn exception(&mut self, raw: &RawException) -> Exception {
        Exception {
            paths: self.paths(&raw.paths),
            changes: self.changes(&raw.changes),
            selector: self.selector(&raw.containers),
        }
    }

    fn changes(&mut self, raw: &[Spanned<ChangeKind>]) -> Vec<ChangeKind> {
        for change in raw.iter().filter(|c| c.value == ChangeKind::Inventory) {
            self.error(change.referenced, "inventory is not a change and never matches".into());
        }
        raw.iter().map(|c| c.value).collect()
    }

    // A pattern that starts with `/` is absolute; any other matches at any
    // depth, so `*.jar` finds every archive and `templates/**` every
    // template directory.
    fn paths(&mut self, raw: &[Spanned<String>]) -> PathSet {
        if raw.is_empty() {
            return PathSet(None);
        }
        let mut builder = GlobSetBuilder::new();
        for pattern in raw {
            let anchored = if pattern.value.starts_with('/') {
                pattern.value.clone()
            } else {
                format!("**/{}", pattern.value)
            };
            match GlobBuilder::new(&anchored).literal_separator(true).build() {
                Ok(glob) => {
                    builder.add(glob);
                }
                Err(e) => self.error(pattern.referenced, format!("invalid path glob: {e}")),
            }
        }
        PathSet(Some(self.build(builder, raw)))
    }

    fn build(&mut self, builder: GlobSetBuilder, raw: &[Spanned<String>]) -> GlobSet {
        builder.build().unwrap_or_else(|e| {
            self.error(raw[0].referenced, format!("invalid globs: {e}"));
            GlobSet::empty()
        })
    }

    fn values(&mut self, raw: &[Spanned<String>]) -> ValueSet {
        if raw.is_empty() {
            return ValueSet(None);
        }
        let mut builder = GlobSetBuilder::new();
        for pattern in raw {
            match Glob::new(&pattern.value) {
                Ok(glob) => {
                    builder.add(glob);
                }
                Err(e) => self.error(pattern.referenced, format!("invalid glob: {e}")),
            }
        }
        ValueSet(Some(self.build(builder, raw)))
    }

    fn pairs(&mut self, raw: &BTreeMap<String, Spanned<String>>) -> Vec<(String, GlobMatcher)> {
        let mut pairs = Vec::with_capacity(raw.len());
        for (key, pattern) in raw {
            match Glob::new(&pattern.value) {
                Ok(glob) => pairs.push((key.clone(), glob.compile_matcher())),
                Err(e) => self.error(pattern.referenced, format!("invalid glob: {e}")),
            }
        }
        pairs
    }

    fn selector(&mut self, raw: &RawSelector) -> Selector {
        Selector {
            images: self.values(&raw.images),
            names: self.values(&raw.names),
            namespaces: self.values(&raw.namespaces),
            pods: self.values(&raw.pods),
            labels: self.pairs(&raw.labels),
            annotations: self.pairs(&raw.annotations),
        }
    }
}
