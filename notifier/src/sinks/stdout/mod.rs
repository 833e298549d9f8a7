//! The stdout sink: one alert per line, in any encoding (JSON by default).

mod config;
mod sink;

pub use config::StdoutConfig;
pub use sink::StdoutSink;
