//! The Splunk HTTP Event Collector sink: posts batches of events to
//! `/services/collector/event` with a `Splunk <token>` authorization.

mod config;
mod sink;

pub use config::SplunkHecConfig;
pub use sink::SplunkHecSink;
