//! The read-only Twilio client: lists the phone numbers of the accounts a spec names, so that a
//! wrong account, credential or number is caught in the plan instead of by Vapi's import (issue 13).
//!
//! vapictl never writes to Twilio. [`TwilioClient::list_accounts`] reads each distinct account
//! once per run (`IncomingPhoneNumbers`, paged by 1,000), a few accounts at a time;
//! [`preflight`] turns the listings into refusals and warnings for a plan (pure), and [`drift`]
//! compares them with what vapictl recorded after a create or adopt (pure).

mod http;
pub mod preflight;

pub use http::{TwilioClient, TwilioConfig};
pub use preflight::{Preflight, TwilioCheck, TwilioDrift, TwilioDriftKind, TwilioWarning};

use crate::secrets::SecretValue;

/// Twilio's API unless configured otherwise (`TWILIO_BASE_URL`, `--twilio-url`).
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

/// Twilio's largest page of `IncomingPhoneNumbers`.
pub const PAGE_SIZE: usize = 1000;

/// How vapictl authenticates to one Twilio account: HTTP basic auth with the account SID and
/// its auth token, or with an API key SID and its secret (organizations with security policies
/// use restricted keys instead of the root token). The account is always named in the URL.
#[derive(Clone)]
pub enum TwilioAuth {
    AuthToken {
        account_sid: String,
        token: SecretValue,
    },
    ApiKey {
        account_sid: String,
        key_sid: String,
        secret: SecretValue,
    },
}

impl TwilioAuth {
    /// The account whose numbers are listed.
    pub fn account_sid(&self) -> &str {
        match self {
            TwilioAuth::AuthToken { account_sid, .. } | TwilioAuth::ApiKey { account_sid, .. } => {
                account_sid
            }
        }
    }

    /// The basic-auth user name (never secret).
    pub fn username(&self) -> &str {
        match self {
            TwilioAuth::AuthToken { account_sid, .. } => account_sid,
            TwilioAuth::ApiKey { key_sid, .. } => key_sid,
        }
    }

    pub(crate) fn password(&self) -> &SecretValue {
        match self {
            TwilioAuth::AuthToken { token, .. } => token,
            TwilioAuth::ApiKey { secret, .. } => secret,
        }
    }

    /// One listing per distinct account and credential: two entries with the same account but
    /// different tokens are two listings (one of the tokens may be wrong). The key holds a
    /// digest of the secret (in memory only, never shown), not the secret itself.
    pub fn listing_key(&self) -> ListingKey {
        use sha2::Digest;
        ListingKey {
            account_sid: self.account_sid().to_string(),
            username: self.username().to_string(),
            secret_digest: sha2::Sha256::digest(self.password().expose().as_bytes()).into(),
        }
    }
}

/// Never prints the secret.
impl std::fmt::Debug for TwilioAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TwilioAuth::AuthToken { account_sid, .. } => f
                .debug_struct("AuthToken")
                .field("account_sid", &mask_sid(account_sid))
                .finish_non_exhaustive(),
            TwilioAuth::ApiKey {
                account_sid,
                key_sid,
                ..
            } => f
                .debug_struct("ApiKey")
                .field("account_sid", &mask_sid(account_sid))
                .field("key_sid", &mask_sid(key_sid))
                .finish_non_exhaustive(),
        }
    }
}

/// Identifies one listing of a run: the account, the user name and a digest of the secret.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListingKey {
    pub account_sid: String,
    pub username: String,
    secret_digest: [u8; 32],
}

/// The digest never shows.
impl std::fmt::Debug for ListingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListingKey")
            .field("account_sid", &mask_sid(&self.account_sid))
            .field("username", &mask_sid(&self.username))
            .finish_non_exhaustive()
    }
}

/// One number as Twilio lists it (the fields vapictl reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioNumber {
    /// E.164, as Twilio stores it.
    pub phone_number: String,
    pub sid: String,
    pub voice_url: Option<String>,
    pub sms_url: Option<String>,
    pub voice: bool,
    pub sms: bool,
}

/// Every number of one account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountListing {
    pub numbers: Vec<TwilioNumber>,
}

impl AccountListing {
    pub fn find(&self, e164: &str) -> Option<&TwilioNumber> {
        self.numbers.iter().find(|n| n.phone_number == e164)
    }
}

/// Why an account could not be listed. Messages name the account masked, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwilioError {
    /// 401 / error 20003: the SID and token (or API key and secret) do not authenticate.
    #[error("Twilio rejected the credentials for account `{account}` (401, error 20003)")]
    CredentialsRejected { account: String },
    /// Error 10001 or 20005: the account is suspended or closed.
    #[error("Twilio account `{account}` is not active (suspended or closed)")]
    AccountNotActive { account: String },
    /// 404: the account does not exist, or the API key belongs to another account.
    #[error("Twilio account `{account}` was not found with these credentials (404)")]
    AccountNotFound { account: String },
    /// 429 after every retry.
    #[error("Twilio kept answering 429 (rate limited) for account `{account}`")]
    RateLimited { account: String },
    /// Another answer (5xx after every retry, an unexpected status or body).
    #[error("Twilio answered {status} for account `{account}`: {message}")]
    Status {
        account: String,
        status: u16,
        message: String,
    },
    /// No answer: timeout, connection refused, TLS.
    #[error("cannot reach Twilio for account `{account}`: {reason}")]
    Transport { account: String, reason: String },
    #[error("Twilio settings: {0}")]
    Config(String),
}

impl TwilioError {
    /// What the user can do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            TwilioError::CredentialsRejected { .. } => {
                "check the entry's `twilio.accountSid` and re-encrypt the current auth token (Twilio console → Account → API keys & tokens) with `vapictl encrypt`"
            }
            TwilioError::AccountNotActive { .. } => {
                "reactivate the account in the Twilio console, or move the numbers to an active account"
            }
            TwilioError::AccountNotFound { .. } => {
                "check `twilio.accountSid`; an API key must belong to that account (or its parent)"
            }
            TwilioError::RateLimited { .. } => "retry later; Twilio limits requests per account",
            TwilioError::Status { .. } | TwilioError::Transport { .. } => {
                "retry; to plan without reading Twilio, pass `--twilio-check off`"
            }
            TwilioError::Config(_) => "set `--twilio-url` / `TWILIO_BASE_URL` to an http(s) URL",
        }
    }

    /// Whether the error is about the entry's account or credentials (a refusal of the entries
    /// that use it) rather than about reaching Twilio (an error of the run).
    pub fn is_about_the_account(&self) -> bool {
        matches!(
            self,
            TwilioError::CredentialsRejected { .. }
                | TwilioError::AccountNotActive { .. }
                | TwilioError::AccountNotFound { .. }
        )
    }
}

/// A Twilio SID shown in messages: its kind and last four characters (`AC…cdef`).
pub fn mask_sid(sid: &str) -> String {
    let chars: Vec<char> = sid.chars().collect();
    if chars.len() <= 6 {
        return "…".into();
    }
    let head: String = chars[..2].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

/// The host of a URL, for messages (`https://example.com/voice` → `example.com`); the URL
/// itself when it has none. Credentials in the URL never show.
pub fn url_host(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => crate::store::redact_url(url),
        },
        Err(_) => crate::store::redact_url(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_are_masked_to_kind_and_last_four() {
        assert_eq!(mask_sid("AC0123456789abcdef0123456789abcdef"), "AC…cdef");
        assert_eq!(mask_sid("SK1"), "…");
    }

    #[test]
    fn hosts_keep_the_port_and_drop_credentials() {
        assert_eq!(url_host("https://example.com/voice"), "example.com");
        assert_eq!(url_host("http://127.0.0.1:8080/x"), "127.0.0.1:8080");
        assert_eq!(url_host("https://user:pw@h.example/x"), "h.example");
    }

    #[test]
    fn debug_of_credentials_shows_no_secret() {
        let auth = TwilioAuth::ApiKey {
            account_sid: "AC0123456789abcdef0123456789abcdef".into(),
            key_sid: "SK0123456789abcdef0123456789abcdef".into(),
            secret: SecretValue::new("CANARYsecret"),
        };
        let shown = format!("{auth:?}");
        assert!(!shown.contains("CANARY"), "{shown}");
        assert!(
            !shown.contains("0123456789abcdef0123456789abcdef"),
            "{shown}"
        );
    }
}
