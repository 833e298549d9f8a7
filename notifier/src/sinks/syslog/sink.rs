//! Sends each alert of a batch as one syslog message on one connection,
//! reconnecting after any error; the batch is retried whole, so a
//! receiver may see an alert twice after a broken connection.

use schemas::Alert;

use super::transport::{Connection, Connector};
use super::{Framing, SyslogConfig, SyslogFormat, Transport, rfc3164, rfc5424};
use crate::Error;
use crate::sinks::{Sink, SinkError};

/// Sends alerts to a syslog receiver.
pub struct SyslogSink {
    config: SyslogConfig,
    connector: Connector,
    connection: Option<Connection>,
}

impl SyslogSink {
    /// Checks the settings and loads TLS material; connects lazily (the
    /// worker's attempt timeout bounds connecting too).
    pub fn new(config: SyslogConfig, field: &str) -> Result<Self, Error> {
        let connector = Connector::new(&config, field)?;
        Ok(Self { config, connector, connection: None })
    }

    /// One message with its framing, as bytes on the wire.
    pub fn frame(&self, alert: &Alert) -> Vec<u8> {
        let message = match self.config.format {
            SyslogFormat::Rfc5424 => rfc5424(&self.config, alert),
            SyslogFormat::Rfc3164 => rfc3164(&self.config, alert),
        };
        match (self.config.transport, self.config.framing) {
            (Transport::Udp, _) => message.into_bytes(),
            (_, Framing::OctetCounting) => format!("{} {message}", message.len()).into_bytes(),
            (_, Framing::Newline) => {
                format!("{}\n", message.replace(['\n', '\r'], " ")).into_bytes()
            }
        }
    }

    // The open connection, or a new one when there is none or the
    // receiver closed it.
    async fn take_connection(&mut self) -> Result<Connection, SinkError> {
        if let Some(mut connection) = self.connection.take()
            && !connection.closed_by_peer()
        {
            return Ok(connection);
        }
        self.connector.connect().await.map_err(|e| self.io_error(e))
    }

    fn io_error(&self, source: std::io::Error) -> SinkError {
        SinkError::Io { target: self.connector.address().to_owned(), source }
    }
}

impl Sink for SyslogSink {
    async fn send(&mut self, batch: &[Alert]) -> Result<(), SinkError> {
        let frames: Vec<Vec<u8>> = batch.iter().map(|alert| self.frame(alert)).collect();
        let mut connection = self.take_connection().await?;
        let mut result = Ok(());
        for frame in &frames {
            result = connection.send(frame).await;
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = connection.flush().await;
        }
        // A connection that failed is dropped; the next attempt opens one.
        result.map_err(|error| self.io_error(error))?;
        self.connection = Some(connection);
        Ok(())
    }
}
