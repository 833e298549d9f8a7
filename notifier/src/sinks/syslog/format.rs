//! RFC 5424 and RFC 3164 messages, without framing.
//!
//! RFC 5424: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID [SD] MSG`, with the
//! alert's time in UTC at microsecond precision (the RFC allows six
//! fractional digits), the node as HOSTNAME, the change as MSGID and the
//! key fields as structured-data parameters, escaped as the RFC requires
//! (`"`, `\` and `]`). Header fields are cut to their RFC lengths and keep
//! only printable US-ASCII. RFC 3164: `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG:
//! MSG`, time in UTC since the format has no zone.

use schemas::{Alert, Severity};

use super::SyslogConfig;

/// The syslog severity of an alert severity.
pub fn severity_code(severity: Severity) -> u8 {
    match severity {
        Severity::Critical => 2,
        Severity::High => 3,
        Severity::Medium => 4,
        Severity::Low => 5,
        Severity::Info => 6,
    }
}

fn priority(config: &SyslogConfig, alert: &Alert) -> u16 {
    u16::from(config.facility.code()) * 8 + u16::from(severity_code(alert.severity))
}

/// One RFC 5424 message.
pub fn rfc5424(config: &SyslogConfig, alert: &Alert) -> String {
    let time = alert.time.to_offset(time::UtcOffset::UTC);
    let timestamp = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
        time.microsecond(),
    );
    let header = format!(
        "<{}>1 {timestamp} {} {} - {}",
        priority(config, alert),
        header_field(&alert.node, 255),
        header_field(&config.app_name, 48),
        header_field(alert.change.as_str(), 32),
    );
    let message = config.encoding.encode(alert).into_line();
    format!("{header} {} {message}", structured_data(config, alert))
}

/// One RFC 3164 message.
pub fn rfc3164(config: &SyslogConfig, alert: &Alert) -> String {
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let time = alert.time.to_offset(time::UtcOffset::UTC);
    let month = MONTHS[usize::from(u8::from(time.month())) - 1];
    let tag: String =
        config.app_name.chars().filter(char::is_ascii_alphanumeric).take(32).collect();
    let tag = if tag.is_empty() { "fim".to_owned() } else { tag };
    format!(
        "<{}>{month} {:>2} {:02}:{:02}:{:02} {} {tag}: {}",
        priority(config, alert),
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
        header_field(&alert.node, 255),
        config.encoding.encode(alert).into_line(),
    )
}

// PRINTUSASCII only, at most `max` characters, `-` when empty.
fn header_field(value: &str, max: usize) -> String {
    let clean: String = value.chars().filter(|c| ('!'..='~').contains(c)).take(max).collect();
    if clean.is_empty() { "-".into() } else { clean }
}

fn structured_data(config: &SyslogConfig, alert: &Alert) -> String {
    let mut params = vec![
        ("id", alert.id.clone()),
        ("severity", alert.severity.as_str().to_owned()),
        ("rule", alert.rule.clone()),
        ("change", alert.change.as_str().to_owned()),
        ("path", alert.path.escaped()),
        ("node", alert.node.clone()),
    ];
    if let Some(previous) = &alert.previous_path {
        params.push(("previous_path", previous.escaped()));
    }
    if let Some(container) = &alert.container {
        params.push(("container_id", container.id.clone()));
        let optional = [
            ("container", &container.name),
            ("image", &container.image),
            ("pod", &container.pod),
            ("namespace", &container.namespace),
        ];
        params.extend(optional.into_iter().filter_map(|(k, v)| v.clone().map(|v| (k, v))));
    }
    if let Some(process) = &alert.process {
        params.push(("pid", process.pid.to_string()));
        params.extend(process.command.clone().map(|c| ("command", c)));
        params.extend(process.uid.map(|uid| ("uid", uid.to_string())));
    }
    if let Some(hash) = alert.after.as_ref().and_then(|s| s.blake3.clone()) {
        params.push(("blake3", hash));
    }
    if let Some(hash) = alert.before.as_ref().and_then(|s| s.blake3.clone()) {
        params.push(("previous_blake3", hash));
    }
    let sd_id = sd_name(&config.sd_id);
    let params: Vec<String> =
        params.into_iter().map(|(name, value)| format!("{name}=\"{}\"", escape(&value))).collect();
    format!("[{sd_id} {}]", params.join(" "))
}

// SD-NAME: PRINTUSASCII except '=', space, ']' and '"', at most 32.
fn sd_name(value: &str) -> String {
    let clean: String = value
        .chars()
        .filter(|c| ('!'..='~').contains(c) && !matches!(c, '=' | ']' | '"'))
        .take(32)
        .collect();
    if clean.is_empty() { "fim@32473".into() } else { clean }
}

/// Escapes a PARAM-VALUE: `"`, `\` and `]`.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::{Encoding, fixtures};
    use crate::sinks::syslog::{Facility, Framing, SyslogFormat, Transport};

    pub(crate) fn config() -> SyslogConfig {
        SyslogConfig {
            address: "127.0.0.1:514".into(),
            transport: Transport::Tcp,
            format: SyslogFormat::Rfc5424,
            framing: Framing::OctetCounting,
            facility: Facility::Auth,
            app_name: "fim".into(),
            sd_id: "fim@32473".into(),
            encoding: Encoding::Text,
            tls: None,
        }
    }

    #[test]
    fn rfc5424_header_and_structured_data() {
        let line = rfc5424(&config(), &fixtures::alert());
        let expected_start = "<34>1 2025-12-03T12:46:40.123456Z node-1 fim - modified \
            [fim@32473 id=\"alert:obs:node-1:1764766000000000000:7\" severity=\"critical\" \
            rule=\"passwd-changed\" change=\"modified\" path=\"/etc/passwd\" node=\"node-1\" \
            container_id=\"c0ffee\" container=\"web\" image=\"registry.local/web:1.2\" \
            pod=\"web-7d9f\" namespace=\"payments\" pid=\"4242\" command=\"sh\" uid=\"0\"";
        assert!(line.starts_with(expected_start), "{line}");
        assert!(line.ends_with("] critical /etc/passwd modified in container web (pod payments/web-7d9f) on node-1 by sh[4242] uid 0 (rule passwd-changed, alert alert:obs:node-1:1764766000000000000:7)"), "{line}");
    }

    #[test]
    fn param_values_escape_quotes_backslashes_and_brackets() {
        let mut alert = fixtures::hostile_alert();
        alert.path = schemas::RawPath::from_bytes(b"/x/\"]\\\xff".to_vec());
        let line = rfc5424(&config(), &alert);
        assert!(line.contains(r#"path="/x/\"\]\\\\\\xff""#), "{line}");
        assert_eq!(escape(r#"a"b]c\d"#), r#"a\"b\]c\\d"#);
    }

    #[test]
    fn rfc3164_has_a_bsd_header() {
        let mut config = config();
        config.format = SyslogFormat::Rfc3164;
        config.facility = Facility::Local4;
        let line = rfc3164(&config, &fixtures::alert());
        assert!(
            line.starts_with("<162>Dec  3 12:46:40 node-1 fim: critical /etc/passwd"),
            "{line}"
        );
    }
}
