//! Settings of the syslog sink.

use std::path::PathBuf;

use serde::Deserialize;

use crate::encoding::Encoding;

/// `syslog:` in the sinks file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// Receiver, `host:port`.
    pub address: String,
    /// udp, tcp or tls. Default tcp.
    #[serde(default)]
    pub transport: Transport,
    /// rfc5424 (default) or rfc3164.
    #[serde(default)]
    pub format: SyslogFormat,
    /// Stream framing: octet_counting (default, RFC 6587) or newline (for
    /// receivers that only split on line ends; newlines in a message are
    /// then sent as spaces). UDP sends one message per datagram.
    #[serde(default)]
    pub framing: Framing,
    /// Facility name (kern, user, ..., auth, authpriv, local0 ... local7).
    /// Default auth.
    #[serde(default)]
    pub facility: Facility,
    /// APP-NAME (RFC 5424) or TAG (RFC 3164). Default `fim`.
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// Structured-data id carrying the alert fields. Default `fim@32473`
    /// (32473 is the documentation enterprise number of RFC 5612; use your
    /// own private enterprise number in production).
    #[serde(default = "default_sd_id")]
    pub sd_id: String,
    /// The message text after the structured data: text (default, one
    /// readable line), json, ocsf, ecs or cef.
    #[serde(default = "default_encoding")]
    pub encoding: Encoding,
    /// TLS settings, for `transport: tls`.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

fn default_app_name() -> String {
    "fim".into()
}

fn default_sd_id() -> String {
    "fim@32473".into()
}

fn default_encoding() -> Encoding {
    Encoding::Text
}

/// How messages travel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// One datagram per message (RFC 5426). Nothing confirms receipt.
    Udp,
    /// A TCP stream.
    #[default]
    Tcp,
    /// A TLS stream (RFC 5425).
    Tls,
}

/// Message format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyslogFormat {
    /// RFC 5424, with structured data.
    #[default]
    Rfc5424,
    /// The BSD format of RFC 3164.
    Rfc3164,
}

/// How messages are delimited on a stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// `<length> <message>` (RFC 6587 section 3.4.1).
    #[default]
    OctetCounting,
    /// `<message>\n` (RFC 6587 section 3.4.2).
    Newline,
}

/// TLS settings of the syslog sink.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificates (PEM) that sign the receiver's certificate.
    /// Default: the system's trusted roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Name to verify in the receiver's certificate. Default: the host of
    /// `address`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Client certificate chain (PEM), for receivers that require one.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Client private key (PEM), with `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// Syslog facilities (RFC 5424 table 1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Facility {
    Kern,
    User,
    Mail,
    Daemon,
    #[default]
    Auth,
    Syslog,
    Lpr,
    News,
    Uucp,
    Cron,
    Authpriv,
    Ftp,
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

impl Facility {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            Self::Kern => 0,
            Self::User => 1,
            Self::Mail => 2,
            Self::Daemon => 3,
            Self::Auth => 4,
            Self::Syslog => 5,
            Self::Lpr => 6,
            Self::News => 7,
            Self::Uucp => 8,
            Self::Cron => 9,
            Self::Authpriv => 10,
            Self::Ftp => 11,
            Self::Local0 => 16,
            Self::Local1 => 17,
            Self::Local2 => 18,
            Self::Local3 => 19,
            Self::Local4 => 20,
            Self::Local5 => 21,
            Self::Local6 => 22,
            Self::Local7 => 23,
        }
    }
}
