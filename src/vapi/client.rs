//! The client for one Vapi organization: its configuration, its counters and the one read that a
//! plan needs ([`VapiClient::observe`]). The listings live in `listing.rs`, the phone-number
//! calls in `resources.rs`, and how each request is sent and retried in `transport.rs`.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use super::VapiError;
use super::limit::RateLimitState;
use super::transport::{RetryPolicy, Transport};
use crate::secrets::SecretValue;
use crate::state::ObservedState;
use crate::store::redact_url;

/// Vapi's largest page (`limit` is 0–1000).
const PAGE_LIMIT: usize = 1000;

/// Mutating calls per second unless configured otherwise: conservative, since Vapi documents no
/// rate limit and a 429 costs a retry.
pub const DEFAULT_MAX_RPS: u32 = 10;

/// Where and how to reach Vapi.
#[derive(Clone)]
pub struct VapiConfig {
    pub base_url: String,
    pub api_key: SecretValue,
    /// Per-request timeout.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Page size for listings (Vapi's maximum unless a test wants small pages).
    pub page_limit: usize,
    /// Most POST, PATCH and DELETE calls started per second; 429s lower the rate for a while
    /// (see [`RateLimitState`]). Reads are not limited: a plan's few pages never need it.
    pub max_rps: u32,
    /// Told of every HTTP exchange (each attempt of a call): its method and status (`None`: no
    /// answer), e.g. for `vapictl serve`'s `vapictl_vapi_requests_total`. Never given a URL,
    /// header or body.
    pub on_response: Option<ResponseObserver>,
}

/// See [`VapiConfig::on_response`].
pub type ResponseObserver = Arc<dyn Fn(&str, Option<u16>) + Send + Sync>;

/// The base URL's password, if any, never shows (nor does the key: [`SecretValue`]).
impl std::fmt::Debug for VapiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapiConfig")
            .field("base_url", &redact_url(&self.base_url))
            .field("api_key", &self.api_key)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("page_limit", &self.page_limit)
            .field("max_rps", &self.max_rps)
            .finish()
    }
}

impl VapiConfig {
    pub fn new(base_url: impl Into<String>, api_key: SecretValue) -> Self {
        VapiConfig {
            base_url: base_url.into(),
            api_key,
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            page_limit: PAGE_LIMIT,
            max_rps: DEFAULT_MAX_RPS,
            on_response: None,
        }
    }
}

/// Calls made, for benchmarks and tests: each call counts once, however many attempts it took.
#[derive(Debug, Default)]
pub struct Counters {
    /// GET calls (listing pages and lookups).
    pub list_requests: AtomicU64,
    /// POST, PATCH and DELETE calls.
    pub mutating_requests: AtomicU64,
    /// Attempts repeated after a retryable failure, over all calls.
    pub retries: AtomicU64,
}

/// A client for one Vapi organization (the API key's).
///
/// Whatever it reports (errors, logs, `Debug`) shows the base URL with any password replaced
/// and phone numbers masked to their last four digits: reqwest's errors quote the request URL
/// (a lookup's carries the number in its query), so they are stripped of it where requests are
/// sent, and every text taken from a failure is scrubbed (see `transport.rs`).
#[derive(Clone)]
pub struct VapiClient {
    /// How calls reach Vapi; the listing and resource calls go through it and nothing else.
    pub(super) transport: Transport,
}

impl std::fmt::Debug for VapiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapiClient")
            .field("transport", &self.transport)
            .finish()
    }
}

impl VapiClient {
    /// Builds the client.
    ///
    /// # Errors
    /// [`VapiError::Config`] when the base URL is not an http(s) URL.
    pub fn new(cfg: VapiConfig) -> Result<Self, VapiError> {
        Ok(VapiClient {
            transport: Transport::new(cfg)?,
        })
    }

    pub fn counters(&self) -> &Counters {
        self.transport.counters()
    }

    /// Where the limit on mutating calls stands (it drops on 429s and recovers).
    pub fn rate_limit(&self) -> RateLimitState {
        self.transport.rate_limit()
    }

    /// Reads everything vapictl compares: every phone number, assistant and squad.
    ///
    /// # Errors
    /// Any failed or incomplete listing: nothing may be planned from a partial view.
    pub async fn observe(&self) -> Result<ObservedState, VapiError> {
        let (numbers, assistants, squads) = tokio::try_join!(
            self.list_phone_numbers(),
            self.list_assistants(),
            self.list_squads()
        )?;
        Ok(ObservedState {
            numbers,
            assistants,
            squads,
        })
    }
}
