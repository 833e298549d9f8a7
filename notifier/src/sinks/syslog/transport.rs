//! Connections to the receiver: a connected UDP socket, or a TCP or TLS
//! stream kept open between alerts and reopened after any error.
//!
//! A stream write succeeding only means the kernel took the bytes. Before
//! each write the stream is checked for a close by the receiver, so a
//! receiver that restarted is noticed and the message goes on a fresh
//! connection instead of into a dead one.
//! Limitation: a receiver that dies after the check and before reading
//! still loses what was in flight; syslog has no acknowledgements (RELP
//! would add them).

use std::path::Path;
use std::sync::Arc;

use futures_util::FutureExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::{SyslogConfig, TlsConfig, Transport};
use crate::Error;

pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

/// An open connection.
pub(crate) enum Connection {
    Udp(UdpSocket),
    Stream(Box<dyn Stream>),
}

/// Everything needed to (re)connect.
pub(crate) struct Connector {
    address: String,
    transport: Transport,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

impl Connector {
    /// Checks the address and loads TLS material; `field` names the sink.
    pub(crate) fn new(config: &SyslogConfig, field: &str) -> Result<Self, Error> {
        let host = config
            .address
            .rsplit_once(':')
            .filter(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
            .map(|(host, _)| host.trim_start_matches('[').trim_end_matches(']').to_owned())
            .ok_or_else(|| {
                let reason = format!("must be host:port, got {:?}", config.address);
                Error::config(format!("{field}.address"), reason)
            })?;
        let tls = match (config.transport, &config.tls) {
            (Transport::Tls, tls) => {
                let tls = tls.clone().unwrap_or_default();
                let name = tls.server_name.clone().unwrap_or(host);
                let server_name = ServerName::try_from(name.clone()).map_err(|_| {
                    Error::config(
                        format!("{field}.tls.server_name"),
                        format!("invalid name {name:?}"),
                    )
                })?;
                Some((tls_connector(&tls, &format!("{field}.tls"))?, server_name))
            }
            (_, Some(_)) => {
                return Err(Error::config(format!("{field}.tls"), "only for transport: tls"));
            }
            (_, None) => None,
        };
        Ok(Self { address: config.address.clone(), transport: config.transport, tls })
    }

    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    pub(crate) async fn connect(&self) -> std::io::Result<Connection> {
        if self.transport == Transport::Udp {
            let local = if self.address.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" };
            let socket = UdpSocket::bind(local).await?;
            socket.connect(&self.address).await?;
            return Ok(Connection::Udp(socket));
        }
        let tcp = TcpStream::connect(&self.address).await?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            Some((connector, name)) => {
                let stream = connector.connect(name.clone(), tcp).await?;
                Ok(Connection::Stream(Box::new(stream)))
            }
            None => Ok(Connection::Stream(Box::new(tcp))),
        }
    }
}

impl Connection {
    /// Whether the receiver closed (or broke) the stream since last time.
    pub(crate) fn closed_by_peer(&mut self) -> bool {
        let Self::Stream(stream) = self else { return false };
        let mut buffer = [0u8; 512];
        // Receivers send nothing, so a ready read means EOF or an error;
        // a pending one means the stream is still open.
        match stream.read(&mut buffer).now_or_never() {
            None => false,
            Some(Ok(0)) | Some(Err(_)) => true,
            Some(Ok(_)) => false,
        }
    }

    /// Sends one framed message (stream) or one datagram.
    pub(crate) async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Udp(socket) => socket.send(bytes).await.map(drop),
            Self::Stream(stream) => stream.write_all(bytes).await,
        }
    }

    pub(crate) async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Udp(_) => Ok(()),
            Self::Stream(stream) => stream.flush().await,
        }
    }
}

fn tls_connector(tls: &TlsConfig, field: &str) -> Result<tokio_rustls::TlsConnector, Error> {
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            for certificate in certificates(path, &format!("{field}.ca_file"))? {
                roots
                    .add(certificate)
                    .map_err(|e| Error::config(format!("{field}.ca_file"), e.to_string()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(field, e.to_string()))?
        .with_root_certificates(roots);
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = certificates(cert, &format!("{field}.cert_file"))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                Error::config(format!("{field}.key_file"), format!("{}: {e}", key.display()))
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| Error::config(format!("{field}.cert_file"), e.to_string()))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(Error::config(field, "set both cert_file and key_file, or neither")),
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

fn certificates(path: &Path, field: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let error = |reason: String| Error::config(field, format!("{}: {reason}", path.display()));
    let certificates: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| error(e.to_string()))?;
    if certificates.is_empty() {
        return Err(error("no certificate in the file".into()));
    }
    Ok(certificates)
}
