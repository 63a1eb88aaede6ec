//! The reqwest-based Twilio client: GETs only, with timeouts, retries on 429/5xx that honour
//! `Retry-After`, and a bound on the accounts read at once.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use serde::Deserialize;

use super::{
    AccountListing, ListingKey, PAGE_SIZE, TwilioAuth, TwilioError, TwilioNumber, mask_sid,
};
use crate::state::mask_numbers_in;
use crate::vapi::RetryPolicy;

/// Where and how to reach Twilio.
#[derive(Debug, Clone)]
pub struct TwilioConfig {
    pub base_url: String,
    /// Per-request timeout.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Accounts listed at once.
    pub parallelism: usize,
    /// `PageSize` of a listing (Twilio's maximum unless a test wants small pages).
    pub page_size: usize,
}

impl TwilioConfig {
    pub fn new(base_url: impl Into<String>) -> Self {
        TwilioConfig {
            base_url: base_url.into(),
            timeout: Duration::from_secs(30),
            retry: RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(250),
                max_delay: Duration::from_secs(8),
                max_retry_after: Duration::from_secs(30),
            },
            parallelism: 4,
            page_size: PAGE_SIZE,
        }
    }
}

/// Reads Twilio; never writes it.
#[derive(Debug, Clone)]
pub struct TwilioClient {
    cfg: TwilioConfig,
    base: reqwest::Url,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    incoming_phone_numbers: Vec<NumberDto>,
    #[serde(default)]
    next_page_uri: Option<String>,
}

#[derive(Deserialize)]
struct NumberDto {
    #[serde(default)]
    sid: String,
    phone_number: String,
    #[serde(default)]
    voice_url: Option<String>,
    #[serde(default)]
    sms_url: Option<String>,
    #[serde(default)]
    capabilities: Capabilities,
}

#[derive(Deserialize, Default)]
struct Capabilities {
    #[serde(default)]
    voice: bool,
    #[serde(default)]
    sms: bool,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    code: Option<u32>,
    #[serde(default)]
    message: Option<String>,
}

impl TwilioClient {
    /// # Errors
    /// [`TwilioError::Config`] when the base URL is not an http(s) URL.
    pub fn new(cfg: TwilioConfig) -> Result<Self, TwilioError> {
        let (base, http) =
            crate::http::client_for(&cfg.base_url, cfg.timeout).map_err(TwilioError::Config)?;
        Ok(TwilioClient { cfg, base, http })
    }

    /// Lists every account once, at most [`TwilioConfig::parallelism`] at a time. One result per
    /// distinct [`ListingKey`]; an account's failure is its own result.
    pub async fn list_accounts(
        &self,
        accounts: impl IntoIterator<Item = TwilioAuth>,
    ) -> BTreeMap<ListingKey, Result<AccountListing, TwilioError>> {
        let mut distinct: BTreeMap<ListingKey, TwilioAuth> = BTreeMap::new();
        for auth in accounts {
            distinct.entry(auth.listing_key()).or_insert(auth);
        }
        futures::stream::iter(distinct)
            .map(|(key, auth)| async move { (key, self.list_numbers(&auth).await) })
            .buffer_unordered(self.cfg.parallelism.max(1))
            .collect()
            .await
    }

    /// Every `IncomingPhoneNumbers` entry of the account, following `next_page_uri`.
    ///
    /// # Errors
    /// See [`TwilioError`]; nothing partial is returned.
    pub async fn list_numbers(&self, auth: &TwilioAuth) -> Result<AccountListing, TwilioError> {
        let account = auth.account_sid();
        let mut url = self
            .base
            .join(&format!(
                "/2010-04-01/Accounts/{account}/IncomingPhoneNumbers.json"
            ))
            .map_err(|e| TwilioError::Config(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("PageSize", &self.cfg.page_size.to_string());
        let mut listing = AccountListing::default();
        // Twilio's paging ends with a null `next_page_uri`; a page limit guards a server that
        // loops (10,000 pages of 1,000 numbers is more than any account holds).
        for _ in 0..10_000 {
            let page: Page = self.get(&url, auth).await?;
            listing.numbers.extend(
                page.incoming_phone_numbers
                    .into_iter()
                    .map(|n| TwilioNumber {
                        phone_number: n.phone_number,
                        sid: n.sid,
                        voice_url: n.voice_url.filter(|u| !u.is_empty()),
                        sms_url: n.sms_url.filter(|u| !u.is_empty()),
                        voice: n.capabilities.voice,
                        sms: n.capabilities.sms,
                    }),
            );
            match page.next_page_uri.filter(|u| !u.is_empty()) {
                Some(next) => {
                    url = self.base.join(&next).map_err(|e| TwilioError::Status {
                        account: mask_sid(account),
                        status: 200,
                        message: format!("unreadable `next_page_uri`: {e}"),
                    })?;
                }
                None => break,
            }
        }
        tracing::debug!(
            account = %mask_sid(account),
            numbers = listing.numbers.len(),
            "listed the Twilio account's numbers"
        );
        Ok(listing)
    }

    /// One GET with retries on 429 and 5xx (and on transport errors: a GET is safe to repeat).
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        url: &reqwest::Url,
        auth: &TwilioAuth,
    ) -> Result<T, TwilioError> {
        let account = mask_sid(auth.account_sid());
        let policy = &self.cfg.retry;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let sent = self
                .http
                .get(url.clone())
                .basic_auth(auth.username(), Some(auth.password().expose()))
                .send()
                .await;
            let (failure, retry_after) = match sent {
                Err(e) => (
                    TwilioError::Transport {
                        account: account.clone(),
                        reason: transport_reason(&e),
                    },
                    None,
                ),
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(crate::http::parse_retry_after);
                    let bytes = resp.bytes().await.map_err(|e| TwilioError::Transport {
                        account: account.clone(),
                        reason: transport_reason(&e),
                    })?;
                    if status.is_success() {
                        return serde_json::from_slice(&bytes).map_err(|e| TwilioError::Status {
                            account: account.clone(),
                            status: status.as_u16(),
                            message: format!("unreadable answer: {e}"),
                        });
                    }
                    let failure = classify(status, &bytes, &account);
                    let retryable =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    if !retryable {
                        return Err(failure);
                    }
                    (failure, retry_after)
                }
            };
            if attempt >= policy.max_attempts {
                return Err(failure);
            }
            let backoff = policy
                .base_delay
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(policy.max_delay);
            let wait = match retry_after {
                Some(d) if d > policy.max_retry_after => return Err(failure),
                Some(d) => d,
                None => backoff,
            };
            tracing::debug!(account = %account, attempt, wait_ms = wait.as_millis() as u64, error = %failure, "retrying a Twilio read");
            tokio::time::sleep(wait).await;
        }
    }
}

/// Maps an error answer to its condition (Twilio's error codes: 20003 authenticate, 10001
/// account not active, 20005 account not active, 20404 not found, 20429 too many requests).
fn classify(status: StatusCode, body: &[u8], account: &str) -> TwilioError {
    let body: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let account = account.to_string();
    match (status.as_u16(), body.code) {
        (_, Some(10001 | 20005)) => TwilioError::AccountNotActive { account },
        (401, _) | (_, Some(20003)) => TwilioError::CredentialsRejected { account },
        (404, _) | (_, Some(20404)) => TwilioError::AccountNotFound { account },
        (429, _) | (_, Some(20429)) => TwilioError::RateLimited { account },
        (s, code) => TwilioError::Status {
            account,
            status: s,
            message: match (code, body.message) {
                (Some(c), Some(m)) => format!("error {c}: {}", mask_numbers_in(&m)),
                (None, Some(m)) => mask_numbers_in(&m),
                (Some(c), None) => format!("error {c}"),
                (None, None) => "no details".into(),
            },
        },
    }
}

fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection refused or unreachable".into()
    } else if e.is_body() || e.is_decode() {
        "the answer was cut off".into()
    } else {
        // reqwest's text names the URL, which holds the account SID: the causes only.
        let mut s = String::from("request failed");
        let mut src = std::error::Error::source(e);
        while let Some(inner) = src {
            s.push_str(": ");
            s.push_str(&inner.to_string());
            src = inner.source();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_map_to_their_conditions() {
        let acct = "AC…cdef";
        let c =
            |s: u16, body: &str| classify(StatusCode::from_u16(s).unwrap(), body.as_bytes(), acct);
        assert!(matches!(
            c(401, r#"{"code":20003,"message":"Authenticate"}"#),
            TwilioError::CredentialsRejected { .. }
        ));
        assert!(matches!(
            c(401, r#"{"code":10001,"message":"Account is not active"}"#),
            TwilioError::AccountNotActive { .. }
        ));
        assert!(matches!(c(404, "{}"), TwilioError::AccountNotFound { .. }));
        assert!(matches!(c(429, ""), TwilioError::RateLimited { .. }));
        let TwilioError::Status { message, .. } =
            c(500, r#"{"code":1,"message":"oops for +14155550100"}"#)
        else {
            panic!()
        };
        assert_eq!(message, "error 1: oops for …0100");
    }
}
