//! Header names carried on bus messages.

/// JetStream deduplicates messages with the same id inside the stream's
/// duplicate window; the in-process bus honours it the same way.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// W3C Trace Context parent, so one file change is one trace across stages.
pub const TRACEPARENT: &str = "traceparent";
/// W3C Trace Context vendor state.
pub const TRACESTATE: &str = "tracestate";
/// On a dead letter: the subject the message was first published on.
pub const DEAD_LETTER_SUBJECT: &str = "Fim-Dead-Letter-Subject";
/// On a dead letter: why the stage refused it (a fixed, short reason).
pub const DEAD_LETTER_REASON: &str = "Fim-Dead-Letter-Reason";
/// On a dead letter: the error text.
pub const DEAD_LETTER_ERROR: &str = "Fim-Dead-Letter-Error";
