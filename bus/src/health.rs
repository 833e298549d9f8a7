//! Readiness of the parts of a process, for `/readyz`.
//!
//! Each stage registers one flag and raises it when it can do its job (the
//! collector: once its marks are in place, so a change made after `/readyz`
//! answers 200 is guaranteed to be reported). Checks are evaluated on each
//! request instead (the NATS connection is up). The process is ready when
//! every flag is up and every check passes.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

type Flags = Vec<(&'static str, watch::Receiver<bool>)>;
type Check = Arc<dyn Fn() -> bool + Send + Sync>;

/// All readiness flags and checks of a process.
#[derive(Clone, Default)]
pub struct Health {
    flags: Arc<Mutex<Flags>>,
    checks: Arc<Mutex<Vec<(&'static str, Check)>>>,
}

impl Health {
    /// Registers a component, not ready until its flag is raised.
    pub fn register(&self, component: &'static str) -> ReadyFlag {
        let (sender, receiver) = watch::channel(false);
        self.lock().push((component, receiver));
        ReadyFlag { sender: Arc::new(sender) }
    }

    /// Adds a condition evaluated at every readiness request.
    pub fn register_check(
        &self,
        name: &'static str,
        check: impl Fn() -> bool + Send + Sync + 'static,
    ) {
        let mut checks = self.checks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        checks.push((name, Arc::new(check)));
    }

    /// Components that are not ready yet; empty when the process is ready.
    pub fn not_ready(&self) -> Vec<&'static str> {
        let flags = self.lock();
        let waiting = flags.iter().filter(|(_, flag)| !*flag.borrow()).map(|(name, _)| *name);
        let checks = self.checks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let failing = checks.iter().filter(|(_, check)| !check()).map(|(name, _)| *name);
        waiting.chain(failing).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Flags> {
        self.flags.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One component's readiness.
#[derive(Clone)]
pub struct ReadyFlag {
    sender: Arc<watch::Sender<bool>>,
}

impl ReadyFlag {
    /// A flag that belongs to no [`Health`], for tests and tools.
    pub fn detached() -> Self {
        Self { sender: Arc::new(watch::channel(false).0) }
    }

    /// Marks the component ready or not.
    pub fn set(&self, ready: bool) {
        self.sender.send_replace(ready);
    }

    /// Waits until the component is ready.
    pub async fn wait(&self) {
        let mut receiver = self.sender.subscribe();
        // The sender lives in `self`, so waiting cannot fail.
        let _ = receiver.wait_for(|ready| *ready).await;
    }
}
