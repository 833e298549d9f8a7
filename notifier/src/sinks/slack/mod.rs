//! The Slack sink: posts alerts to an incoming webhook as Block Kit
//! messages (several alerts per message when they arrive together), at
//! most one request a second by default, as Slack asks.

mod blocks;
mod config;
mod sink;

pub use blocks::{SECTION_TEXT_LIMIT, message};
pub use config::SlackConfig;
pub use sink::SlackSink;
