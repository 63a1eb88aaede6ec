//! The reqwest-based Vapi client.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::limit::{Permit, RateLimitState, RateLimiter};
use super::wire::{self, AssistantDto, ErrorBody, ListShape, PhoneNumberDto, V2Page};
use super::{RetryPolicy, VapiError};
use crate::plan::{VapiCreate, VapiPatch};
use crate::secrets::SecretValue;
use crate::state::{
    ObservedAssistant, ObservedNumber, ObservedState, mask_number, mask_numbers_in,
};
use crate::store::redact_url;

/// Vapi's largest page (`limit` is 0–1000).
pub const PAGE_LIMIT: usize = 1000;

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
}

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
        }
    }
}

/// Requests made, for benchmarks and for tests that prove a no-op apply mutates nothing.
#[derive(Debug, Default)]
pub struct Counters {
    pub list_requests: AtomicU64,
    pub get_requests: AtomicU64,
    pub mutating_requests: AtomicU64,
    pub retries: AtomicU64,
}

/// A client for one Vapi organization (the API key's).
///
/// Whatever it reports (errors, logs, `Debug`) shows the base URL with any password replaced
/// and phone numbers masked to their last four digits: reqwest's errors quote the request URL
/// (a lookup's carries the number in its query), so they are stripped of it where requests are
/// sent ([`VapiClient::send`]), and every text taken from a failure goes through [`scrub`].
#[derive(Clone)]
pub struct VapiClient {
    http: reqwest::Client,
    cfg: Arc<VapiConfig>,
    base: reqwest::Url,
    /// `base` as it may be shown: its password replaced.
    shown_base: String,
    counters: Arc<Counters>,
    /// Paces mutating calls; shared by clones, so one run's calls share one budget.
    limiter: Arc<RateLimiter>,
}

/// An HTTP answer, read whole.
struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

impl std::fmt::Debug for VapiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapiClient")
            .field("base", &self.shown_base)
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl VapiClient {
    /// Builds the client.
    ///
    /// # Errors
    /// [`VapiError::Config`] when the base URL is not an http(s) URL.
    pub fn new(cfg: VapiConfig) -> Result<Self, VapiError> {
        // reqwest needs a process-wide rustls provider; installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let shown = redact_url(&cfg.base_url);
        let base = reqwest::Url::parse(cfg.base_url.trim_end_matches('/'))
            .map_err(|e| VapiError::Config(format!("`{shown}` is not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(VapiError::Config(format!(
                "`{shown}` is not an http(s) URL"
            )));
        }
        let shown_base = redact_url(base.as_str());
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("vapictl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| VapiError::Config(e.to_string()))?;
        Ok(VapiClient {
            http,
            limiter: Arc::new(RateLimiter::new(cfg.max_rps)),
            cfg: Arc::new(cfg),
            base,
            shown_base,
            counters: Arc::new(Counters::default()),
        })
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Where the limit on mutating calls stands (it drops on 429s and recovers).
    pub fn rate_limit(&self) -> RateLimitState {
        self.limiter.state()
    }

    fn url(&self, path: &str) -> reqwest::Url {
        let mut u = self.base.clone();
        let joined = format!("{}{}", self.base.path().trim_end_matches('/'), path);
        u.set_path(&joined);
        u
    }

    /// One HTTP exchange, no retry. `Err` only for transport failures, without the request URL
    /// (which may carry a password or a phone number): the caller names the request.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Answer, reqwest::Error> {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(self.cfg.api_key.expose());
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(reqwest::Error::without_url)?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = resp
            .bytes()
            .await
            .map_err(reqwest::Error::without_url)?
            .to_vec();
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }

    /// An idempotent call (GET, PATCH, DELETE) with retries on 429, 5xx and transport errors.
    async fn call_idempotent(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        label: &str,
        secrets: &[&SecretValue],
    ) -> Result<Answer, VapiError> {
        let policy = &self.cfg.retry;
        let limited = method != Method::GET;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let permit = if limited {
                Some(self.limiter.acquire().await)
            } else {
                None
            };
            let outcome = self.send(method.clone(), path, query, body).await;
            if let (Some(permit), Ok(a)) = (permit, &outcome) {
                self.report_to_limiter(permit, a);
            }
            let (retryable, wait_hint, failure) = match outcome {
                Ok(a) if a.status.is_success() => return Ok(a),
                Ok(a)
                    if a.status == StatusCode::TOO_MANY_REQUESTS || a.status.is_server_error() =>
                {
                    let msg = self.error_text(&a.body, secrets);
                    (
                        true,
                        a.retry_after,
                        VapiError::Unavailable {
                            request: label.to_string(),
                            status: a.status.as_u16(),
                            attempts: attempt,
                            message: msg,
                        },
                    )
                }
                Ok(a) => return Err(self.classify(label, a, secrets)),
                Err(e) => (
                    true,
                    None,
                    VapiError::Unreachable {
                        base_url: self.shown_base.clone(),
                        request: label.to_string(),
                        reason: transport_reason(&e),
                    },
                ),
            };
            if !retryable || attempt >= policy.max_attempts {
                return Err(failure);
            }
            let delay = match wait_hint {
                Some(d) if d > policy.max_retry_after => return Err(failure),
                Some(d) => d,
                None => backoff(policy, attempt),
            };
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                request = label,
                attempt,
                delay_ms = delay.as_millis() as u64,
                "retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// Tells the limiter how a mutating call went: a 429 slows every later call down, anything
    /// else Vapi answered counts as accepted. Transport failures say nothing about the rate.
    fn report_to_limiter(&self, permit: Permit, a: &Answer) {
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            // A `Retry-After` past what the retry policy honours ends that call's retries; the
            // others wait no longer than the policy would.
            let hold = a.retry_after.map(|d| d.min(self.cfg.retry.max_retry_after));
            self.limiter.throttled(permit, hold);
        } else {
            self.limiter.succeeded(permit);
        }
    }

    fn classify(&self, label: &str, a: Answer, secrets: &[&SecretValue]) -> VapiError {
        let messages = self.error_messages(&a.body, secrets);
        match a.status {
            StatusCode::UNAUTHORIZED => VapiError::Unauthorized {
                message: messages.join("; "),
            },
            // Not the key's fault: it was accepted but lacks the right (issue 9, defect 14).
            StatusCode::FORBIDDEN => VapiError::Forbidden {
                request: label.to_string(),
                message: messages.join("; "),
            },
            StatusCode::CONFLICT => VapiError::Conflict {
                request: label.to_string(),
                message: messages.join("; "),
            },
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => VapiError::BadRequest {
                request: label.to_string(),
                messages,
            },
            StatusCode::NOT_FOUND => VapiError::NotFound {
                what: label.to_string(),
            },
            s => VapiError::Unexpected {
                request: label.to_string(),
                status: s.as_u16(),
                message: messages.join("; "),
            },
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(label: &str, body: &[u8]) -> Result<T, VapiError> {
        serde_json::from_slice(body).map_err(|e| VapiError::Decode {
            request: label.to_string(),
            reason: scrub(&e.to_string(), &[]),
        })
    }

    /// Vapi's error messages with every secret that was sent (and the API key) replaced, since
    /// 400 bodies may echo the request.
    fn error_messages(&self, body: &[u8], secrets: &[&SecretValue]) -> Vec<String> {
        let raw = match serde_json::from_slice::<ErrorBody>(body) {
            Ok(b) if !b.messages().is_empty() => b.messages(),
            _ => vec![String::from_utf8_lossy(body).chars().take(500).collect()],
        };
        let mut all: Vec<&SecretValue> = secrets.to_vec();
        all.push(&self.cfg.api_key);
        raw.into_iter().map(|m| scrub(&m, &all)).collect()
    }

    fn error_text(&self, body: &[u8], secrets: &[&SecretValue]) -> String {
        self.error_messages(body, secrets).join("; ")
    }

    /// Reads everything vapictl compares: every phone number and every assistant.
    ///
    /// # Errors
    /// Any failed or incomplete listing: nothing may be planned from a partial view.
    pub async fn observe(&self) -> Result<ObservedState, VapiError> {
        let (numbers, assistants) =
            tokio::try_join!(self.list_phone_numbers(), self.list_assistants())?;
        Ok(ObservedState {
            numbers,
            assistants,
        })
    }

    /// Every phone number of every provider.
    ///
    /// # Guarantees
    /// Complete, or an error: pages of `limit` items are walked by `createdAt` with an inclusive
    /// bound (ties at the page edge are fetched again and de-duplicated by id); when a whole page
    /// shares one `createdAt`, that instant is read through `/v2/phone-number`'s numbered pages.
    /// The first page comes from `/v2/phone-number` (newest first), whose `totalItems` the number
    /// read is then checked against; the listing is read again once when they differ.
    ///
    /// # Caveats
    /// Without `/v2/phone-number` (a 404), the first page comes from `/phone-number` and the
    /// total cannot be cross-checked.
    pub async fn list_phone_numbers(&self) -> Result<Vec<ObservedNumber>, VapiError> {
        let mut last_err = None;
        for _ in 0..2 {
            let (items, total) = self.list_all("/phone-number", true).await?;
            match total {
                Some(total) if total != items.len() as u64 => {
                    last_err = Some(VapiError::IncompleteListing {
                        what: "phone numbers".into(),
                        reason: format!("read {} numbers but Vapi reports {total}", items.len()),
                    });
                    continue;
                }
                _ => {}
            }
            let mut out = Vec::with_capacity(items.len());
            for v in items {
                let dto: PhoneNumberDto =
                    serde_json::from_value(v).map_err(|e| VapiError::Decode {
                        request: "GET /phone-number".into(),
                        reason: scrub(&e.to_string(), &[]),
                    })?;
                out.push(ObservedNumber::from(dto));
            }
            return Ok(out);
        }
        Err(last_err.expect("loop ran"))
    }

    /// The newest `limit` phone numbers and the total, from `/v2/phone-number`; None when that
    /// endpoint is not offered. One request instead of a first page plus a count: the total is
    /// taken at the same instant as the page, so a number deleted while later pages are read
    /// still shows as a shortfall.
    async fn first_page_v2(&self) -> Result<Option<(Vec<Value>, u64)>, VapiError> {
        // The order is stated rather than left to the default, so that the next pages (walked
        // by `createdAt` from this page's oldest item) continue exactly where this one ends.
        let q = [
            ("limit", self.cfg.page_limit.to_string()),
            ("sortBy", "createdAt".to_string()),
            ("sortOrder", "DESC".to_string()),
        ];
        let page = self.v2_page(&q).await?;
        if page.is_none() {
            tracing::debug!("`/v2/phone-number` not offered; listing not cross-checked");
        }
        Ok(page.map(|p| (p.results, p.metadata.total_items)))
    }

    /// One page of `/v2/phone-number`; None when Vapi does not offer that endpoint (404).
    async fn v2_page(&self, query: &[(&str, String)]) -> Result<Option<V2Page>, VapiError> {
        self.counters.list_requests.fetch_add(1, Ordering::Relaxed);
        let label = "GET /v2/phone-number";
        match self
            .call_idempotent(Method::GET, "/v2/phone-number", query, None, label, &[])
            .await
        {
            Ok(a) => Ok(Some(Self::decode(label, &a.body)?)),
            Err(VapiError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every assistant, by id.
    pub async fn list_assistants(&self) -> Result<BTreeMap<String, ObservedAssistant>, VapiError> {
        let (items, _) = self.list_all("/assistant", false).await?;
        let mut out = BTreeMap::new();
        for v in items {
            let dto: AssistantDto = serde_json::from_value(v).map_err(|e| VapiError::Decode {
                request: "GET /assistant".into(),
                reason: scrub(&e.to_string(), &[]),
            })?;
            out.insert(dto.id.clone(), ObservedAssistant::from(dto));
        }
        Ok(out)
    }

    async fn list_page(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<Value>, VapiError> {
        self.counters.list_requests.fetch_add(1, Ordering::Relaxed);
        let label = format!("GET {path}");
        let a = self
            .call_idempotent(Method::GET, path, query, None, &label, &[])
            .await?;
        let shape: ListShape = Self::decode(&label, &a.body)?;
        Ok(shape.into_items())
    }

    /// Pages through a v1 list endpoint to the end (see [`Self::list_phone_numbers`]); for phone
    /// numbers (`has_v2`), also returns the total `/v2/phone-number` reported with the first page.
    async fn list_all(
        &self,
        path: &str,
        has_v2: bool,
    ) -> Result<(Vec<Value>, Option<u64>), VapiError> {
        let limit = self.cfg.page_limit;
        let mut seen: HashMap<String, Value> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        // The bound for the next page: (query key, createdAt).
        let mut bound: Option<(&'static str, String)> = None;
        let what = path.trim_start_matches('/').to_string();
        let mut pages = 0usize;
        let mut total = None;
        loop {
            pages += 1;
            if pages > 100_000 {
                return Err(VapiError::IncompleteListing {
                    what,
                    reason: "paging did not end".into(),
                });
            }
            let mut q = vec![("limit", limit.to_string())];
            if let Some((k, v)) = &bound {
                q.push((k, v.clone()));
            }
            let first_v2 = match (pages, has_v2) {
                (1, true) => self.first_page_v2().await?,
                _ => None,
            };
            let page = match first_v2 {
                Some((page, reported)) => {
                    total = Some(reported);
                    page
                }
                None => self.list_page(path, &q).await?,
            };
            let full = page.len() >= limit;
            let mut stamps = Vec::with_capacity(page.len());
            for item in page {
                let id = item
                    .get("id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| VapiError::Decode {
                        request: format!("GET {path}"),
                        reason: "an item has no `id`".into(),
                    })?
                    .to_string();
                let created = item
                    .get("createdAt")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                stamps.push(created);
                remember(&mut seen, &mut order, id, item);
            }
            if !full {
                break;
            }
            // A full page: continue past its far edge. Decide the direction from the page itself
            // (the default order is documented nowhere; newest first is the observed behaviour).
            let first = stamps.first().cloned().unwrap_or_default();
            let last = stamps.last().cloned().unwrap_or_default();
            let ascending = instant(&first) < instant(&last);
            let edge = if ascending {
                stamps.iter().max_by_key(|s| instant(s)).cloned()
            } else {
                stamps.iter().min_by_key(|s| instant(s)).cloned()
            }
            .unwrap_or_default();
            if edge.is_empty() {
                return Err(VapiError::IncompleteListing {
                    what,
                    reason: "a full page has items without `createdAt`, so it cannot be paged"
                        .into(),
                });
            }
            let all_same = stamps.iter().all(|s| instant(s) == instant(&edge));
            if all_same {
                // More items share this instant than fit a page: read the instant by page number.
                if !has_v2 {
                    return Err(VapiError::IncompleteListing {
                        what,
                        reason: format!("more than {limit} items share createdAt {edge}"),
                    });
                }
                for item in self.list_instant_v2(&edge).await? {
                    if let Some(id) = item.get("id").and_then(Value::as_str) {
                        let id = id.to_string();
                        remember(&mut seen, &mut order, id, item);
                    }
                }
                bound = Some((
                    if ascending {
                        "createdAtGt"
                    } else {
                        "createdAtLt"
                    },
                    edge,
                ));
            } else {
                bound = Some((
                    if ascending {
                        "createdAtGe"
                    } else {
                        "createdAtLe"
                    },
                    edge,
                ));
            }
        }
        let items = order
            .into_iter()
            .filter_map(|id| seen.remove(&id))
            .collect();
        Ok((items, total))
    }

    /// Every phone number created at exactly `at`, by `/v2/phone-number` page numbers.
    async fn list_instant_v2(&self, at: &str) -> Result<Vec<Value>, VapiError> {
        let mut out: HashMap<String, Value> = HashMap::new();
        let mut page = 1u64;
        loop {
            let q = [
                ("limit", self.cfg.page_limit.to_string()),
                ("page", page.to_string()),
                ("sortOrder", "ASC".to_string()),
                ("createdAtGe", at.to_string()),
                ("createdAtLe", at.to_string()),
            ];
            let Some(p) = self.v2_page(&q).await? else {
                return Err(VapiError::IncompleteListing {
                    what: "phone-number".into(),
                    reason: format!(
                        "more numbers share createdAt {at} than one page holds, and `/v2/phone-number` is not offered"
                    ),
                });
            };
            let n = p.results.len();
            for item in p.results {
                if let Some(id) = item.get("id").and_then(Value::as_str) {
                    out.insert(id.to_string(), item);
                }
            }
            let total = p.metadata.total_items as usize;
            if out.len() >= total {
                return Ok(out.into_values().collect());
            }
            let last_page = p.metadata.total_pages.unwrap_or(u64::MAX);
            if n == 0 || page >= last_page {
                return Err(VapiError::IncompleteListing {
                    what: "phone-number".into(),
                    reason: format!(
                        "{} of {total} numbers created at {at} could be read",
                        out.len()
                    ),
                });
            }
            page += 1;
        }
    }

    /// Phone numbers whose `number` is exactly `number` (used after a create's outcome is
    /// unknown). Uses `/v2/phone-number?search=`, falling back to a full listing.
    pub async fn find_by_number(&self, number: &str) -> Result<Vec<ObservedNumber>, VapiError> {
        let q = [
            ("search", number.to_string()),
            ("limit", self.cfg.page_limit.to_string()),
        ];
        let found = match self.v2_page(&q).await {
            // More matches than one page: list everything instead.
            Ok(Some(p)) if (p.results.len() as u64) >= p.metadata.total_items => Some(p.results),
            Ok(_) | Err(VapiError::BadRequest { .. }) => None,
            Err(e) => return Err(e),
        };
        let items = match found {
            Some(items) => items,
            None => self.list_all("/phone-number", true).await?.0,
        };
        Ok(items
            .into_iter()
            .filter_map(|v| serde_json::from_value::<PhoneNumberDto>(v).ok())
            .map(ObservedNumber::from)
            .filter(|o| o.number.as_deref() == Some(number))
            .collect())
    }

    /// POST /phone-number — sent once, never retried blindly.
    ///
    /// # Errors
    /// [`VapiError::OutcomeUnknown`] when the request may or may not have been carried out
    /// (timeout, dropped connection, 5xx): the caller must look the number up before trying again.
    /// A 429 means it was not carried out and is retried after `Retry-After`.
    pub async fn create_phone_number(
        &self,
        c: &VapiCreate,
        token: &SecretValue,
    ) -> Result<ObservedNumber, VapiError> {
        let label = format!("POST /phone-number ({})", mask_number(&c.number));
        let body = wire::create_body(c, token);
        let secrets: Vec<&SecretValue> = std::iter::once(token)
            .chain(c.server.iter().flat_map(|s| s.secrets()))
            .collect();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let permit = self.limiter.acquire().await;
            self.counters
                .mutating_requests
                .fetch_add(1, Ordering::Relaxed);
            let a = match self
                .send(Method::POST, "/phone-number", &[], Some(&body))
                .await
            {
                Ok(a) => {
                    self.report_to_limiter(permit, &a);
                    a
                }
                Err(e) if e.is_connect() => {
                    // Nothing reached Vapi: safe to report as unreachable (not unknown).
                    return Err(VapiError::Unreachable {
                        base_url: self.shown_base.clone(),
                        request: label,
                        reason: transport_reason(&e),
                    });
                }
                Err(e) => {
                    return Err(VapiError::OutcomeUnknown {
                        request: label,
                        reason: transport_reason(&e),
                    });
                }
            };
            if a.status.is_success() {
                let dto: PhoneNumberDto = Self::decode(&label, &a.body)?;
                return Ok(dto.into());
            }
            if a.status == StatusCode::TOO_MANY_REQUESTS && attempt < self.cfg.retry.max_attempts {
                let delay = a
                    .retry_after
                    .unwrap_or_else(|| backoff(&self.cfg.retry, attempt));
                if delay <= self.cfg.retry.max_retry_after {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    continue;
                }
            }
            if a.status.is_server_error() {
                return Err(VapiError::OutcomeUnknown {
                    request: label,
                    reason: format!(
                        "{} {}",
                        a.status.as_u16(),
                        self.error_text(&a.body, &secrets)
                    ),
                });
            }
            if a.status == StatusCode::TOO_MANY_REQUESTS {
                return Err(VapiError::Unavailable {
                    request: label,
                    status: 429,
                    attempts: attempt,
                    message: self.error_text(&a.body, &secrets),
                });
            }
            return Err(self.classify(&label, a, &secrets));
        }
    }

    /// PATCH /phone-number/{id} with only the changed fields; checks that Vapi applied them.
    pub async fn update_phone_number(
        &self,
        id: &str,
        number: &str,
        patch: &VapiPatch,
        token: Option<&SecretValue>,
    ) -> Result<ObservedNumber, VapiError> {
        let label = format!("PATCH /phone-number/{id} ({})", mask_number(number));
        let body = wire::patch_body(patch, token);
        let secrets: Vec<&SecretValue> = token
            .into_iter()
            .chain(patch.server.iter().flatten().flat_map(|s| s.secrets()))
            .collect();
        self.counters
            .mutating_requests
            .fetch_add(1, Ordering::Relaxed);
        let a = self
            .call_idempotent(
                Method::PATCH,
                &format!("/phone-number/{id}"),
                &[],
                Some(&body),
                &label,
                &secrets,
            )
            .await?;
        let got: ObservedNumber = Self::decode::<PhoneNumberDto>(&label, &a.body)?.into();
        verify_patch(&label, patch, &got)?;
        Ok(got)
    }

    /// DELETE /phone-number/{id}. A number that is already gone counts as deleted.
    pub async fn delete_phone_number(&self, id: &str, number: &str) -> Result<(), VapiError> {
        let label = format!("DELETE /phone-number/{id} ({})", mask_number(number));
        self.counters
            .mutating_requests
            .fetch_add(1, Ordering::Relaxed);
        match self
            .call_idempotent(
                Method::DELETE,
                &format!("/phone-number/{id}"),
                &[],
                None,
                &label,
                &[],
            )
            .await
        {
            Ok(_) | Err(VapiError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Vapi's answer must show what was sent; clearing with `null` is unconfirmed in the contract.
fn verify_patch(label: &str, p: &VapiPatch, got: &ObservedNumber) -> Result<(), VapiError> {
    let fail = |field: &str, got: String| {
        Err(VapiError::NotApplied {
            request: label.to_string(),
            field: field.to_string(),
            got,
        })
    };
    if let Some(a) = &p.assistant_id
        && got.assistant_id != *a
    {
        return fail("assistantId", format!("{:?}", got.assistant_id));
    }
    if let Some(sq) = &p.squad_id
        && got.squad_id != *sq
    {
        return fail("squadId", format!("{:?}", got.squad_id));
    }
    if let Some(n) = &p.name
        && got.name.as_deref() != Some(n.as_str())
    {
        return fail("name", format!("{:?}", got.name));
    }
    if let Some(None) = &p.server
        && got.server.is_some()
    {
        return fail("server", "a server".into());
    }
    Ok(())
}

/// Keeps the first copy of an item seen on several pages, in listing order.
fn remember(seen: &mut HashMap<String, Value>, order: &mut Vec<String>, id: String, item: Value) {
    if let std::collections::hash_map::Entry::Vacant(slot) = seen.entry(id) {
        order.push(slot.key().clone());
        slot.insert(item);
    }
}

fn instant(s: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(s).ok()
}

fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy
        .base_delay
        .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16));
    let capped = exp.min(policy.max_delay);
    // Full jitter between half and all of the delay.
    let ms = capped.as_millis() as u64;
    Duration::from_millis(ms / 2 + rand::random_range(0..=ms / 2))
}

/// `Retry-After`: seconds, or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.trim().parse::<f64>() {
        return (secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v.trim()).ok()?;
    let now = chrono::Utc::now();
    Some(
        (when.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection refused or unreachable".into()
    } else {
        // `send` took the URL out of reqwest's text, which never holds headers or bodies; the
        // causes below it are the transport's own.
        let mut s = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(inner) = src {
            s.push_str(": ");
            s.push_str(&inner.to_string());
            src = inner.source();
        }
        scrub(&s, &[])
    }
}

/// Text from a failure made fit to show: secrets replaced with `(sensitive)`, URLs' passwords
/// with `***`, phone numbers masked to their last four digits.
fn scrub(text: &str, secrets: &[&SecretValue]) -> String {
    let redacted = redact(text, secrets);
    let without_passwords = redacted
        .split(' ')
        .map(|word| {
            if word.contains("://") && word.contains('@') {
                redact_url(word)
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    mask_numbers_in(&without_passwords)
}

/// Replaces every occurrence of a secret with `(sensitive)`.
pub fn redact(text: &str, secrets: &[&SecretValue]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if !s.expose().is_empty() {
            out = out.replace(s.expose(), "(sensitive)");
        }
    }
    out
}
