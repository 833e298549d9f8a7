//! The generic webhook sink: POSTs alerts to any HTTP endpoint, optionally
//! signed with HMAC-SHA256 so the receiver can check where they came from.

mod config;
mod sink;

pub use config::WebhookConfig;
pub use sink::{WebhookSink, sign};
