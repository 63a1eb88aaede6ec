//! The Vapi REST API: complete listings of phone numbers and assistants, and the create, patch
//! and delete calls the applier makes. Retries never duplicate a create; creates, patches and
//! deletes are paced by a client-side limit that slows down on 429 ([`RateLimitState`]).

mod http;
mod limit;
mod wire;

pub use http::{Counters, DEFAULT_MAX_RPS, VapiClient, VapiConfig};
pub use limit::{MIN_RPS, RateLimitState};

use std::time::Duration;

/// What a Vapi call can fail with. Messages never contain the API key or a token.
#[derive(Debug, thiserror::Error)]
pub enum VapiError {
    #[error(
        "Vapi rejected the API key (401)\nhint: set `VAPI_API_KEY` to a private key from the Vapi dashboard (public keys do not work)"
    )]
    Unauthorized,
    #[error("Vapi refused the request `{request}` (400): {}", messages.join("; "))]
    BadRequest {
        request: String,
        messages: Vec<String>,
    },
    #[error("Vapi has no `{what}` (404)")]
    NotFound { what: String },
    #[error(
        "Vapi kept answering `{request}` with {status} after {attempts} attempts: {message}\nhint: Vapi may be rate limiting or unavailable; run again later (nothing is lost: the next run continues)"
    )]
    Unavailable {
        request: String,
        status: u16,
        attempts: u32,
        message: String,
    },
    #[error("Vapi answered `{request}` with {status}: {message}")]
    Unexpected {
        request: String,
        status: u16,
        message: String,
    },
    #[error(
        "cannot reach Vapi at `{base_url}` for `{request}`: {reason}\nhint: check `VAPI_BASE_URL`/`--vapi-url` and the network"
    )]
    Unreachable {
        base_url: String,
        request: String,
        reason: String,
    },
    #[error("the outcome of `{request}` is unknown ({reason})")]
    OutcomeUnknown { request: String, reason: String },
    #[error("Vapi's answer to `{request}` could not be read: {reason}")]
    Decode { request: String, reason: String },
    #[error(
        "the Vapi listing of `{what}` is incomplete: {reason}\nhint: nothing was planned from it; run again (vapictl never treats a number as missing from a partial listing)"
    )]
    IncompleteListing { what: String, reason: String },
    #[error(
        "Vapi accepted `{request}` but did not apply `{field}` (it answered `{got}`)\nhint: change it in the Vapi dashboard; Vapi may not support clearing this field through the API"
    )]
    NotApplied {
        request: String,
        field: String,
        got: String,
    },
    #[error("invalid Vapi configuration: {0}")]
    Config(String),
}

impl VapiError {
    /// Errors after which the same call may succeed later (reported as "try again").
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            VapiError::Unavailable { .. }
                | VapiError::Unreachable { .. }
                | VapiError::OutcomeUnknown { .. }
                | VapiError::IncompleteListing { .. }
        )
    }
}

/// How idempotent calls are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Longest `Retry-After` honoured; a longer one ends the retries.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}
