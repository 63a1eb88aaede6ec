//! What the HTTP clients share: a reqwest client with vapictl's timeouts and user agent for a
//! checked base URL, and the reading of `Retry-After`.
//!
//! The Vapi client's transport (`vapi/transport.rs`) and the Twilio client (`twilio/http.rs`)
//! both build their client here and read `Retry-After` here, so the two agree on both.

use std::time::Duration;

use crate::store::redact_url;

/// The base URL, parsed (http or https only), and a client whose requests time out after
/// `timeout` (connecting after at most 10 s).
///
/// # Errors
/// A message naming the URL (its password redacted) when it is not an http(s) URL, or when the
/// client cannot be built.
pub(crate) fn client_for(
    base_url: &str,
    timeout: Duration,
) -> Result<(reqwest::Url, reqwest::Client), String> {
    // reqwest needs a process-wide rustls provider; installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let shown = redact_url(base_url);
    let base = reqwest::Url::parse(base_url.trim_end_matches('/'))
        .map_err(|e| format!("`{shown}` is not a URL: {e}"))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(format!("`{shown}` is not an http(s) URL"));
    }
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("vapictl/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())?;
    Ok((base, http))
}

/// `Retry-After` as seconds or as an HTTP date (a past date is zero).
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.trim().parse::<f64>() {
        return (secs >= 0.0 && secs.is_finite()).then(|| Duration::from_secs_f64(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v.trim()).ok()?;
    Some(
        (when.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("inf"), None);
        assert_eq!(
            parse_retry_after("Mon, 01 Jan 2001 00:00:00 GMT"),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn only_http_urls_make_a_client() {
        assert!(client_for("https://api.twilio.com/", Duration::from_secs(1)).is_ok());
        let err = client_for("ftp://u:secret@h/", Duration::from_secs(1)).unwrap_err();
        assert!(
            err.contains("not an http(s) URL") && !err.contains("secret"),
            "{err}"
        );
    }
}
