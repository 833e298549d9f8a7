//! The syslog sink against a real rsyslogd on loopback: RFC 5424 over UDP,
//! TCP with octet counting and TLS (a CA and server certificate made with
//! the openssl CLI for the test), and RFC 3164 over TCP. rsyslog writes
//! each received message's parsed fields to a file, which the test reads
//! back.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bus::Bus;
use common::{Running, alert, make_certificates, publish};

/// An rsyslogd with its own config, pid file and work directory.
struct Rsyslog {
    child: Child,
    dir: tempfile::TempDir,
    udp: u16,
    tcp: u16,
    tls: u16,
}

impl Rsyslog {
    fn start() -> Self {
        let binary = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("rsyslogd not found; install it with `apt-get install rsyslog rsyslog-gnutls`");
        let dir = tempfile::tempdir().unwrap();
        make_certificates(dir.path());
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (tcp, tls) = (testkit::free_port().unwrap(), testkit::free_port().unwrap());
        let d = dir.path().display();
        std::fs::create_dir(dir.path().join("work")).unwrap();
        let config = format!(
            r#"global(workDirectory="{d}/work" maxMessageSize="64k"
       DefaultNetstreamDriverCAFile="{d}/ca.pem"
       DefaultNetstreamDriverCertFile="{d}/server.pem"
       DefaultNetstreamDriverKeyFile="{d}/server.key")
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
input(type="imtcp" address="127.0.0.1" port="{tls}"
      StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
template(name="fields" type="string"
         string="%pri%|%timestamp:::date-rfc3339%|%hostname%|%app-name%|%msgid%|%structured-data%|%msg%\n")
action(type="omfile" file="{d}/received.log" template="fields")
"#
        );
        std::fs::write(dir.path().join("rsyslog.conf"), config).unwrap();
        let child = Command::new(binary)
            .args(["-n", "-f"])
            .arg(dir.path().join("rsyslog.conf"))
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("rsyslogd starts");
        let rsyslog = Self { child, dir, udp, tcp, tls };
        rsyslog.wait_listening();
        rsyslog
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        // Every listener opens at once; probing the TLS port would only log
        // a failed handshake.
        for port in [self.tcp] {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "rsyslogd did not listen on {port}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Received lines that contain `needle`, waiting for `count` of them.
    fn lines_with(&self, needle: &str, count: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text =
                std::fs::read_to_string(self.dir.path().join("received.log")).unwrap_or_default();
            let lines: Vec<String> =
                text.lines().filter(|l| l.contains(needle)).map(str::to_owned).collect();
            if lines.len() >= count {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "rsyslog received {} of {count} lines with {needle}:\n{text}",
                lines.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fields(line: &str) -> Vec<&str> {
    line.splitn(7, '|').collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn rsyslog_receives_rfc5424_over_udp_tcp_and_tls() {
    let rsyslog = Rsyslog::start();
    let yaml = format!(
        r#"sinks:
  - name: udp
    filter: fim.alerts.high.>
    syslog: {{ address: "127.0.0.1:{udp}", transport: udp }}
  - name: tcp
    filter: fim.alerts.high.>
    syslog: {{ address: "127.0.0.1:{tcp}", transport: tcp, facility: local4 }}
  - name: tls
    filter: fim.alerts.high.>
    syslog:
      address: "127.0.0.1:{tls}"
      transport: tls
      encoding: cef
      tls: {{ ca_file: "{ca}", server_name: localhost }}
  - name: bsd
    filter: fim.alerts.high.>
    syslog: {{ address: "127.0.0.1:{tcp}", format: rfc3164, app_name: fimbsd, framing: newline }}
"#,
        udp = rsyslog.udp,
        tcp = rsyslog.tcp,
        tls = rsyslog.tls,
        ca = rsyslog.ca().display(),
    );
    let bus = Bus::memory();
    let notifier = Running::start(&bus, &yaml).await;
    let mut hostile = alert(7);
    hostile.path = schemas::RawPath::from_bytes(b"/etc/a\"]\\b\xff".to_vec());
    let alerts = [alert(1), alert(2), hostile];
    publish(&bus, &alerts).await;

    // Each alert arrives once per sink: UDP, TCP and TLS in RFC 5424 (the
    // TLS one with a CEF message), the BSD sink with its own tag.
    for alert in &alerts {
        let id = format!("id=\"{}\"", alert.id);
        let lines = rsyslog.lines_with(&id, 3);
        assert_eq!(lines.len(), 3, "{lines:#?}");
        let mut pris: Vec<&str> = lines.iter().map(|l| fields(l)[0]).collect();
        pris.sort();
        // auth (4) * 8 + err (3) = 35 twice (udp, tls); local4 (20) * 8 + 3 = 163.
        assert_eq!(pris, ["163", "35", "35"], "{lines:#?}");
        for line in &lines {
            let f = fields(line);
            assert_eq!(f[1], "2026-12-03T13:00:00.100000Z", "{line}");
            assert_eq!((f[2], f[3], f[4]), ("node-1", "fim", "modified"), "{line}");
            let sd = f[5];
            assert!(sd.starts_with("[fim@32473 "), "{line}");
            for param in [
                "severity=\"high\"",
                "rule=\"host-path-changed\"",
                "change=\"modified\"",
                "node=\"node-1\"",
                "pid=\"4242\"",
                "command=\"sh\"",
            ] {
                assert!(sd.contains(param), "{param} in {line}");
            }
            assert!(sd.contains(&format!("blake3=\"{}\"", "ab".repeat(32))), "{line}");
        }
        assert!(
            lines.iter().any(|l| fields(l)[6].starts_with("CEF:0|fim|fim|")),
            "TLS sink uses CEF: {lines:#?}"
        );
        assert!(
            lines.iter().any(|l| fields(l)[6].starts_with("high ")),
            "text message: {lines:#?}"
        );
        let bsd = rsyslog.lines_with(&format!("alert {})", alert.id), 1);
        assert!(bsd.iter().any(|l| fields(l)[3] == "fimbsd"), "{bsd:#?}");
    }
    let sd = &rsyslog.lines_with("id=\"alert-007\"", 3)[0];
    assert!(sd.contains(r#"path="/etc/a\"\]\\\\b\\xff""#), "escaped structured data: {sd}");
    notifier.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_receiver_gets_the_next_alerts_on_a_new_connection() {
    let mut rsyslog = Rsyslog::start();
    let yaml = format!(
        "sinks:\n  - name: tcp\n    syslog: {{ address: \"127.0.0.1:{}\" }}\n    delivery: {{ initial_backoff_ms: 100, max_backoff_ms: 500 }}\n",
        rsyslog.tcp
    );
    let bus = Bus::memory();
    let notifier = Running::start(&bus, &yaml).await;
    publish(&bus, &[alert(1)]).await;
    rsyslog.lines_with("id=\"alert-001\"", 1);

    // Restart rsyslogd on the same ports; the sink notices the closed
    // connection and reconnects instead of writing into it.
    let _ = rsyslog.child.kill();
    let _ = rsyslog.child.wait();
    let restarted = Command::new("/usr/sbin/rsyslogd")
        .args(["-n", "-f"])
        .arg(rsyslog.dir.path().join("rsyslog.conf"))
        .arg("-i")
        .arg(rsyslog.dir.path().join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    rsyslog.child = restarted;
    rsyslog.wait_listening();
    publish(&bus, &[alert(2), alert(3)]).await;
    rsyslog.lines_with("id=\"alert-002\"", 1);
    rsyslog.lines_with("id=\"alert-003\"", 1);
    notifier.stop().await;
}
