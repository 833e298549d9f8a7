//! The stdout sink: one alert per line as JSON, flushed per alert so a
//! reader sees it at once. A failed write (a closed pipe) is retried.

use std::io::Write;

use bus::Delivery;
use bus::stage::{Failure, Handler};
use schemas::Alert;

use crate::Metrics;

const SINK: &str = "stdout";

pub(crate) struct StdoutSink {
    metrics: Metrics,
}

impl StdoutSink {
    pub(crate) fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }

    fn write(&self, alert: &Alert) -> Result<(), Failure> {
        let mut line = serde_json::to_vec(alert)
            .map_err(|e| Failure::Permanent { reason: "encode", error: e.into() })?;
        line.push(b'\n');
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(&line)
            .and_then(|()| stdout.flush())
            .map_err(|e| Failure::Transient(e.into()))
    }
}

impl Handler<Alert> for StdoutSink {
    async fn handle(&mut self, alert: Alert, _: &Delivery) -> Result<(), Failure> {
        let result = self.write(&alert);
        self.metrics.delivery(SINK, if result.is_ok() { "delivered" } else { "failed" });
        result
    }
}
