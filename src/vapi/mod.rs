//! The Vapi REST API: complete listings of phone numbers and assistants, and the create, patch
//! and delete calls the applier makes. Retries never duplicate a create; creates, patches and
//! deletes are paced by a client-side limit that slows down on 429 ([`RateLimitState`]).
//!
//! Where each concern lives:
//! - `client.rs`: [`VapiClient`], its configuration and counters, and `observe`;
//! - `transport.rs`: sending one call, the one retry policy (a create is retried only on 429),
//!   classifying answers into [`VapiError`], backoff, and scrubbing what a failure shows;
//! - `listing.rs`: complete paging, the v2 first page with its total, same-instant reads;
//! - `resources.rs`: create, update and delete of a phone number;
//! - `wire.rs`: Vapi's JSON shapes, read and written, apart from the domain types;
//! - `limit.rs`: the adaptive limit on the rate of mutating calls.

mod client;
mod limit;
mod listing;
mod resources;
mod transport;
mod wire;

pub use client::{Counters, DEFAULT_MAX_RPS, VapiClient, VapiConfig};
pub use limit::RateLimitState;
pub use transport::RetryPolicy;

/// What a Vapi call can fail with. Messages never contain the API key or a token.
#[derive(Debug, thiserror::Error)]
pub enum VapiError {
    /// 401: the key itself is wrong (unknown, revoked, or a public key).
    #[error(
        "Vapi rejected the API key (401){}\nhint: set `VAPI_API_KEY` to a private key from the Vapi dashboard (public keys do not work)",
        vapi_says(message)
    )]
    Unauthorized { message: String },
    /// 403: the key is valid but may not do this (a key without the right to manage phone
    /// numbers, or another organization's resource).
    #[error(
        "Vapi refused `{request}` (403): the API key is valid but not allowed to do this{}\nhint: use a private key of the organization that owns the numbers, with the right to manage phone numbers (check the key's permissions in the Vapi dashboard)",
        vapi_says(message)
    )]
    Forbidden { request: String, message: String },
    /// 409: the request conflicts with what Vapi holds.
    #[error(
        "Vapi refused `{request}` because it conflicts with what Vapi holds (409){}\nhint: the number may already exist in Vapi (in this organization or another) or be changing in another run; run `vapictl plan` to see Vapi's current state, and check the number in the Vapi dashboard",
        vapi_says(message)
    )]
    Conflict { request: String, message: String },
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

/// `: <Vapi's message>`, or nothing when Vapi said nothing.
fn vapi_says(message: &str) -> String {
    if message.trim().is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
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
