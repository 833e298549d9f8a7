//! HTTP sinks over TLS: a Splunk HEC receiver on loopback behind a
//! certificate signed by a test CA (made with the openssl CLI), trusted
//! through `ca_file`. Proves the process-wide rustls provider is in place
//! (a missing one panics on the first TLS connect) and that `ca_file` is
//! honoured; the same receiver with no `ca_file` is refused and retried.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bus::Bus;
use common::{Running, alert, make_certificates, publish};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

// A one-request-per-connection HTTPS server that answers 200 and sends
// each request (head and body) to the test.
async fn serve_https(dir: &Path) -> (u16, mpsc::UnboundedReceiver<String>) {
    let chain: Vec<_> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, sender) = (acceptor.clone(), sender.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut request = Vec::new();
                let mut buffer = [0u8; 8192];
                while let Ok(n) = tls.read(&mut buffer).await {
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&request).into_owned();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(str::to_owned)
                            })
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if body.len() >= length {
                            let _ = sender.send(text);
                            let reply = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                            let _ = tls.write_all(reply.as_bytes()).await;
                            let _ = tls.shutdown().await;
                            break;
                        }
                    }
                }
            });
        }
    });
    (port, receiver)
}

#[tokio::test(flavor = "multi_thread")]
async fn splunk_hec_over_https_trusts_the_configured_ca_only() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let (port, mut requests) = serve_https(dir.path()).await;
    unsafe { std::env::set_var("FIM_TEST_HTTPS_TOKEN", "t") };
    let bus = Bus::memory();
    let yaml = format!(
        "sinks:
  - name: trusted
    splunk_hec: {{ url: \"https://localhost:{port}/services/collector/event\", token_env: FIM_TEST_HTTPS_TOKEN, ca_file: \"{ca}\" }}
  - name: untrusted
    splunk_hec: {{ url: \"https://localhost:{port}/services/collector/event\", token_env: FIM_TEST_HTTPS_TOKEN }}
    delivery: {{ max_attempts: 2, initial_backoff_ms: 10 }}
",
        ca = dir.path().join("ca.pem").display()
    );
    let notifier = Running::start(&bus, &yaml).await;
    publish(&bus, &[alert(1)]).await;

    let request =
        tokio::time::timeout(Duration::from_secs(10), requests.recv()).await.unwrap().unwrap();
    assert!(request.starts_with("POST /services/collector/event HTTP/1.1"), "{request}");
    assert!(request.contains("\"id\":\"alert-001\""), "{request}");
    // The sink without the CA refuses the certificate, retries, then parks it.
    let letters = common::dead_letters(&bus, "untrusted", 1).await;
    assert_eq!(letters[0].headers.get(schemas::header::DEAD_LETTER_REASON), Some("http"));
    assert!(requests.try_recv().is_err(), "no request passed an untrusted handshake");
    notifier.stop().await;
}
