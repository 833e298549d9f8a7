//! The syslog sink: RFC 5424 (or RFC 3164 for old receivers) over UDP,
//! TCP with octet counting (RFC 6587) or TLS (RFC 5425). The framing is
//! written here: it is short and fully specified, and the `syslog` crate
//! has neither TLS nor octet counting.

mod config;
mod format;
mod sink;
mod transport;

pub use config::{Facility, Framing, SyslogConfig, SyslogFormat, TlsConfig, Transport};
pub use format::{rfc3164, rfc5424};
pub use sink::SyslogSink;
