//! How one call reaches Vapi: the HTTP exchange, the one retry policy, the mapping of answers to
//! [`VapiError`], backoff, and the redaction of everything a failure may show.
//!
//! Every request goes through [`Transport::call`], so every call is paced, counted, retried and
//! scrubbed the same way. What may be retried follows from the method: a GET, PATCH or DELETE is
//! idempotent and is retried on 429, 5xx and transport failures; a POST is retried only on 429,
//! the one answer that proves it was not carried out ([`Retry::RefusalsOnly`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::VapiError;
use super::client::{Counters, VapiConfig};
use super::limit::{Permit, RateLimitState, RateLimiter};
use super::wire::ErrorBody;
use crate::secrets::SecretValue;
use crate::state::mask_numbers_in;
use crate::store::redact_url;

/// The HTTP side of a [`super::VapiClient`]; cheap to clone (clones share counters and limiter).
#[derive(Clone)]
pub(super) struct Transport {
    http: reqwest::Client,
    cfg: Arc<VapiConfig>,
    base: reqwest::Url,
    /// `base` as it may be shown: its password replaced.
    shown_base: String,
    counters: Arc<Counters>,
    /// Paces mutating calls; shared by clones, so one run's calls share one budget.
    limiter: Arc<RateLimiter>,
}

/// How calls are retried: every failure an idempotent call can be repeated after, and a create's
/// 429 (see the module docs).
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

/// An HTTP answer, read whole.
pub(super) struct Answer {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

/// Which failures a call may be retried after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// The call can be repeated safely: retried on 429, 5xx and transport failures.
    Idempotent,
    /// A create: only a 429 proves it was not carried out. A 5xx or a transport failure after the
    /// request may have reached Vapi is [`VapiError::OutcomeUnknown`], never sent again.
    RefusalsOnly,
}

impl Retry {
    fn for_method(method: &Method) -> Self {
        if *method == Method::POST {
            Retry::RefusalsOnly
        } else {
            Retry::Idempotent
        }
    }
}

/// What one attempt came to.
enum Attempt {
    Done(Answer),
    /// Failed, but the same call may succeed later: wait (Vapi's `Retry-After`, or the backoff)
    /// and try again while the policy allows; otherwise `failure` is the call's error.
    Retryable {
        failure: VapiError,
        retry_after: Option<Duration>,
    },
    Failed(VapiError),
}

/// Shows the base URL with its password replaced; the key is a [`SecretValue`].
impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("base", &self.shown_base)
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Transport {
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
        Ok(Transport {
            http,
            limiter: Arc::new(RateLimiter::new(cfg.max_rps)),
            cfg: Arc::new(cfg),
            base,
            shown_base,
            counters: Arc::new(Counters::default()),
        })
    }

    pub fn config(&self) -> &VapiConfig {
        &self.cfg
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn rate_limit(&self) -> RateLimitState {
        self.limiter.state()
    }

    /// A GET, retried as any idempotent call.
    pub async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
        label: &str,
    ) -> Result<Answer, VapiError> {
        self.call(Method::GET, path, query, None::<&()>, label, &[])
            .await
    }

    /// One call, with the retries its method allows (see the module docs). Mutating calls wait
    /// for the rate limiter before each attempt and report each answer to it.
    ///
    /// `label` names the call in errors and logs (numbers masked); `secrets` are the values the
    /// body carries, replaced in whatever Vapi's answer echoes (the API key always is).
    ///
    /// # Errors
    /// The last attempt's failure, classified ([`VapiError`]); a success is any 2xx.
    pub async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
        label: &str,
        secrets: &[&SecretValue],
    ) -> Result<Answer, VapiError> {
        let policy = &self.cfg.retry;
        let mode = Retry::for_method(&method);
        let limited = method != Method::GET;
        let counter = if limited {
            &self.counters.mutating_requests
        } else {
            &self.counters.list_requests
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let permit = if limited {
                Some(self.limiter.acquire().await)
            } else {
                None
            };
            let sent = self.send(method.clone(), path, query, body).await;
            if let (Some(permit), Ok(a)) = (permit, &sent) {
                self.report_to_limiter(permit, a);
            }
            let (failure, retry_after) = match self.judge(sent, mode, attempt, label, secrets) {
                Attempt::Done(a) => return Ok(a),
                Attempt::Failed(e) => return Err(e),
                Attempt::Retryable {
                    failure,
                    retry_after,
                } => (failure, retry_after),
            };
            if attempt >= policy.max_attempts {
                return Err(failure);
            }
            let delay = match retry_after {
                // A longer wait than the policy honours ends the retries.
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

    /// One HTTP exchange, no retry. `Err` only for transport failures, without the request URL
    /// (which may carry a password or a phone number): the caller names the request.
    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
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

    /// Classifies one attempt's outcome under the call's retry mode.
    fn judge(
        &self,
        sent: Result<Answer, reqwest::Error>,
        mode: Retry,
        attempt: u32,
        label: &str,
        secrets: &[&SecretValue],
    ) -> Attempt {
        let a = match sent {
            Ok(a) => a,
            // Nothing reached Vapi: safe to report as unreachable, and to try again.
            Err(e) if mode == Retry::Idempotent || e.is_connect() => {
                let failure = VapiError::Unreachable {
                    base_url: self.shown_base.clone(),
                    request: label.to_string(),
                    reason: transport_reason(&e),
                };
                return match mode {
                    Retry::Idempotent => Attempt::Retryable {
                        failure,
                        retry_after: None,
                    },
                    Retry::RefusalsOnly => Attempt::Failed(failure),
                };
            }
            Err(e) => {
                return Attempt::Failed(VapiError::OutcomeUnknown {
                    request: label.to_string(),
                    reason: transport_reason(&e),
                });
            }
        };
        if a.status.is_success() {
            return Attempt::Done(a);
        }
        if a.status.is_server_error() && mode == Retry::RefusalsOnly {
            return Attempt::Failed(VapiError::OutcomeUnknown {
                request: label.to_string(),
                reason: format!(
                    "{} {}",
                    a.status.as_u16(),
                    self.error_text(&a.body, secrets)
                ),
            });
        }
        if a.status == StatusCode::TOO_MANY_REQUESTS || a.status.is_server_error() {
            return Attempt::Retryable {
                failure: VapiError::Unavailable {
                    request: label.to_string(),
                    status: a.status.as_u16(),
                    attempts: attempt,
                    message: self.error_text(&a.body, secrets),
                },
                retry_after: a.retry_after,
            };
        }
        Attempt::Failed(self.classify(label, a, secrets))
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

    /// An answer that no retry changes, as the error it means.
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

    fn url(&self, path: &str) -> reqwest::Url {
        let mut u = self.base.clone();
        let joined = format!("{}{}", self.base.path().trim_end_matches('/'), path);
        u.set_path(&joined);
        u
    }
}

/// Reads an answer's body as `T`.
pub(super) fn decode<T: DeserializeOwned>(label: &str, body: &[u8]) -> Result<T, VapiError> {
    serde_json::from_slice(body).map_err(|e| decode_error(label, &e))
}

/// Reads one item of a listing as `T`.
pub(super) fn decode_item<T: DeserializeOwned>(label: &str, item: Value) -> Result<T, VapiError> {
    serde_json::from_value(item).map_err(|e| decode_error(label, &e))
}

fn decode_error(label: &str, e: &serde_json::Error) -> VapiError {
    VapiError::Decode {
        request: label.to_string(),
        reason: scrub(&e.to_string(), &[]),
    }
}

/// Exponential backoff with jitter between half and all of the delay.
fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy
        .base_delay
        .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16));
    let capped = exp.min(policy.max_delay);
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
    let mut redacted = text.to_string();
    for s in secrets {
        if !s.expose().is_empty() {
            redacted = redacted.replace(s.expose(), "(sensitive)");
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_post_is_kept_from_blind_retries() {
        assert_eq!(Retry::for_method(&Method::POST), Retry::RefusalsOnly);
        for m in [Method::GET, Method::PATCH, Method::DELETE] {
            assert_eq!(Retry::for_method(&m), Retry::Idempotent, "{m}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn backoff_doubles_within_its_cap_with_jitter() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_retry_after: Duration::from_secs(1),
        };
        for (attempt, full) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (9, 1000)] {
            let d = backoff(&policy, attempt).as_millis() as u64;
            assert!(
                (full / 2..=full).contains(&d),
                "attempt {attempt}: {d} ms not in {}..={full}",
                full / 2
            );
        }
    }

    #[test]
    fn scrub_hides_secrets_passwords_and_numbers() {
        let token = SecretValue::new("SECRETtoken0123456789");
        let text = "echo SECRETtoken0123456789 at http://u:pw@h/x for +14155550002";
        let shown = scrub(text, &[&token]);
        assert!(!shown.contains("SECRETtoken"), "{shown}");
        assert!(!shown.contains(":pw@"), "{shown}");
        assert!(!shown.contains("4155550002"), "{shown}");
        assert!(
            shown.contains("(sensitive)") && shown.contains("0002"),
            "{shown}"
        );
    }
}
