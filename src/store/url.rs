//! Database URLs made safe to show: the password is replaced before a URL reaches a message.

/// What stands in for a removed password.
const REDACTED: &str = "***";

/// Returns `url` with any password replaced by `***`: the one in the user-info part
/// (`postgres://user:secret@host`) and any query parameter whose name contains `password`.
///
/// Deliberately conservative: when the URL is malformed (say, a password with an unescaped `/` or
/// `@`), everything between the first `:` after the user name and the last `@` is hidden, even if
/// that hides more than the password.
pub fn redact_url(url: &str) -> String {
    let (before_query, query) = match url.split_once('?') {
        // A `?` before the last `@` is part of the password, not the start of a query.
        Some((head, tail)) if !tail.contains('@') => (head, Some(tail)),
        _ => (url, None),
    };
    let mut out = redact_userinfo(before_query);
    if let Some(query) = query {
        out.push('?');
        out.push_str(&redact_query(query));
    }
    out
}

fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    match userinfo.split_once(':') {
        Some((user, _password)) => {
            format!("{}{user}:{REDACTED}{}", &url[..scheme_end + 3], &rest[at..])
        }
        None => url.to_owned(),
    }
}

fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.to_ascii_lowercase().contains("password") => {
                format!("{key}={REDACTED}")
            }
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The passwords `url` carries (as written and percent-decoded), for scrubbing driver messages
/// that might quote them.
pub(crate) fn passwords_in(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        if let Some(at) = rest.rfind('@')
            && let Some((_, password)) = rest[..at].split_once(':')
        {
            found.push(password.to_owned());
        }
    }
    if let Some((_, query)) = url.split_once('?') {
        for pair in query.split('&') {
            if let Some((key, value)) = pair.split_once('=')
                && key.to_ascii_lowercase().contains("password")
            {
                found.push(value.to_owned());
            }
        }
    }
    let decoded: Vec<String> = found.iter().map(|p| percent_decode(p)).collect();
    found.extend(decoded);
    found.retain(|p| !p.is_empty());
    found.sort();
    found.dedup();
    found
}

/// Removes every password of `url` from `message` (a driver's error text).
pub(crate) fn scrub(message: &str, url: &str) -> String {
    let mut out = message.to_owned();
    // Longest first, so that a password containing another one is replaced whole.
    let mut passwords = passwords_in(url);
    passwords.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for password in passwords {
        out = out.replace(&password, REDACTED);
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_in_userinfo_is_replaced() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db.example:5432/prod"),
            "postgres://app:***@db.example:5432/prod"
        );
    }

    #[test]
    fn url_without_password_is_unchanged() {
        for url in [
            "postgres://app@db.example/prod",
            "postgresql://db.example/prod",
            "sqlite://vapictl.db",
            "sqlite::memory:",
            "mysql://host/db",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn password_in_query_is_replaced() {
        assert_eq!(
            redact_url("postgres://db.example/prod?user=app&password=s3cret&sslmode=require"),
            "postgres://db.example/prod?user=app&password=***&sslmode=require"
        );
    }

    #[test]
    fn password_with_reserved_characters_never_leaks() {
        for (url, secret) in [
            ("postgres://app:pa/ss@host/db", "pa/ss"),
            ("postgres://app:p@ss@host/db", "p@ss"),
            ("postgres://app:p?ss@host/db", "p?ss"),
            ("postgres://app:p%40ss@host/db", "p%40ss"),
            ("postgres://app:a:b@host/db?sslpassword=k3y", "k3y"),
        ] {
            let redacted = redact_url(url);
            assert!(!redacted.contains(secret), "{redacted} leaks {secret}");
            assert!(redacted.contains("host"), "{redacted}");
        }
    }

    #[test]
    fn scrub_removes_raw_and_decoded_passwords() {
        let url = "postgres://app:p%40ss@host/db";
        let message = "auth failed for p%40ss (p@ss)";
        assert_eq!(scrub(message, url), "auth failed for *** (***)");
    }
}
