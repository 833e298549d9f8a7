//! What a message is about, for spans and logs: the path, the container and
//! the rule, whichever apply. Every stage's span carries these fields, so one
//! file change can be followed through the whole pipeline.

use crate::{Alert, Observation, RawEvent, RawPath, RescanRequest, Source};

/// The traceable facts of a message.
pub trait Describe {
    /// The path the message is about.
    fn path(&self) -> Option<&RawPath> {
        None
    }
    /// The container id, for container paths.
    fn container(&self) -> Option<&str> {
        None
    }
    /// The rule that matched, once one did.
    fn rule(&self) -> Option<&str> {
        None
    }
}

impl Describe for RawEvent {
    fn path(&self) -> Option<&RawPath> {
        Some(&self.path)
    }

    fn container(&self) -> Option<&str> {
        match &self.source {
            Source::Container(container) => Some(&container.id),
            Source::Host { .. } => None,
        }
    }
}

impl Describe for Observation {
    fn path(&self) -> Option<&RawPath> {
        self.event.path()
    }

    fn container(&self) -> Option<&str> {
        self.event.container()
    }
}

impl Describe for Alert {
    fn path(&self) -> Option<&RawPath> {
        Some(&self.path)
    }

    fn container(&self) -> Option<&str> {
        self.container.as_ref().map(|container| container.id.as_str())
    }

    fn rule(&self) -> Option<&str> {
        Some(&self.rule)
    }
}

impl Describe for RescanRequest {}
