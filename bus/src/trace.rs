//! W3C Trace Context in message headers, so one file change is one trace
//! from the collector to the notifier.
//!
//! The propagator is the process-wide one that the binary installs; with
//! none installed, injecting and extracting do nothing.

use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::Headers;

struct HeaderInjector<'a>(&'a mut Headers);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value);
    }
}

struct HeaderExtractor<'a>(&'a Headers);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name).collect()
    }
}

/// Adds the current span's context to `headers`.
pub fn inject_current(headers: &mut Headers) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// Makes `span` a child of the context carried in `headers`, if any.
pub fn continue_from(headers: &Headers, span: &tracing::Span) {
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    // Fails only when no OpenTelemetry layer is installed: nothing to link.
    let _ = span.set_parent(parent);
}

/// Records what `message` is about (path, container, rule) on `span`, which
/// must declare those fields (empty) when created. Every stage's span of
/// one change then carries the same facts.
pub fn describe(span: &tracing::Span, message: &impl schemas::Describe) {
    if let Some(path) = message.path() {
        span.record("path", tracing::field::display(path));
    }
    if let Some(container) = message.container() {
        span.record("container", container);
    }
    if let Some(rule) = message.rule() {
        span.record("rule", rule);
    }
}
