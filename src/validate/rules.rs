//! The rules of one `phoneNumbers` entry (and of the Twilio account it uses), each pushing its
//! problem to the [`Collector`] with the field's position.

use crate::secrets::TokenCache;
use crate::spec::{PhoneNumberSpec, ServerSpec, TwilioSpec};
use crate::state::{DesiredNumber, DesiredTwilio, E164, EncryptedToken, ServerConfig};

use super::Collector;

/// Vapi's limit on a phone number's `name`.
const MAX_NAME_CHARS: usize = 40;
/// Longest `notes` accepted (the column is text; this only catches accidents).
const MAX_NOTES_CHARS: usize = 10_000;

/// The fields of an entry whose positions the diff may cite in a refusal.
const POSITIONED_FIELDS: &[&str] = &[
    "number",
    "name",
    "assistant",
    "twilio",
    "server",
    "smsEnabled",
    "notes",
];

/// What `defaults` gives every entry.
pub(super) struct Defaults {
    /// `None` without `defaults.twilio`; `Some(None)` when it has a problem (already reported,
    /// so entries relying on it report nothing more).
    pub twilio: Option<Option<DesiredTwilio>>,
    pub sms_enabled: Option<bool>,
}

/// Checks the entry at `base` (`phoneNumbers[i]`) whose number has been checked already (`None`
/// when it is invalid); returns what it asks for when nothing in it is wrong.
pub(super) fn check_entry(
    c: &mut Collector,
    tokens: &mut TokenCache,
    defaults: &Defaults,
    base: &str,
    entry: &PhoneNumberSpec,
    number: Option<E164>,
) -> Option<DesiredNumber> {
    let f = |name: &str| format!("{base}.{name}");
    let name_len = entry.name.chars().count();
    if name_len == 0 || entry.name.trim().is_empty() {
        c.push(
            &f("name"),
            "name is empty",
            Some("give the number a label of 1 to 40 characters".into()),
        );
    } else if name_len > MAX_NAME_CHARS {
        c.push(
            &f("name"),
            format!("name is {name_len} characters, over Vapi's limit of {MAX_NAME_CHARS}"),
            Some("shorten it; vapictl never truncates names".into()),
        );
    }
    if let Some(a) = &entry.assistant
        && a.trim().is_empty()
    {
        c.push(
            &f("assistant"),
            "assistant is empty",
            Some("name one of the owner's assistants, or remove the field".into()),
        );
    }
    if let Some(n) = &entry.notes
        && n.chars().count() > MAX_NOTES_CHARS
    {
        c.push(
            &f("notes"),
            format!("notes are over {MAX_NOTES_CHARS} characters"),
            None,
        );
    }
    let twilio = match (&entry.twilio, &defaults.twilio) {
        (Some(t), _) => check_twilio(c, tokens, &f("twilio"), t),
        (None, Some(d)) => d.clone(),
        (None, None) => {
            c.push(
                base,
                "no Twilio account for this number",
                Some(
                    "add `twilio: { accountSid, authToken }` to the entry or to `defaults`".into(),
                ),
            );
            None
        }
    };
    let server = entry.server.as_ref().map(|s| {
        check_server(c, &f("server"), s);
        ServerConfig {
            url: s.url.clone(),
            credential_id: s.credential_id.clone(),
            timeout_seconds: s.timeout_seconds,
        }
    });
    if entry.absent && entry.protected {
        c.push(
            &f("absent"),
            "a number cannot be both `protected` and `absent`",
            Some("set `protected: false` to allow the deletion".into()),
        );
    }
    let locations = &c.loaded.locations;
    Some(DesiredNumber {
        number: number?,
        name: entry.name.clone(),
        assistant: entry.assistant.clone(),
        notes: entry.notes.clone(),
        twilio: twilio?,
        server,
        sms_enabled: entry.sms_enabled.or(defaults.sms_enabled).unwrap_or(true),
        protected: entry.protected,
        absent: entry.absent,
        line: locations.of(base).line,
        positions: POSITIONED_FIELDS
            .iter()
            .filter_map(|k| Some((*k, locations.get(&f(k))?)))
            .collect(),
        path: base.to_string(),
    })
}

/// Strict E.164: parses, is a valid number, has no extension, and is written exactly as its
/// E.164 form. Returns the problem's message and hint otherwise.
fn parse_e164(input: &str) -> Result<E164, (String, Option<String>)> {
    let canonical = |s: &str, region: Option<phonenumber::country::Id>| {
        phonenumber::parse(region, s).ok().and_then(|p| {
            (p.is_valid() && p.extension().is_none())
                .then(|| p.format().mode(phonenumber::Mode::E164).to_string())
        })
    };
    if let Some(c) = canonical(input, None) {
        if c == input {
            return Ok(E164::new_unchecked(c));
        }
        return Err((
            format!("`{input}` is not written in E.164"),
            Some(format!(
                "write it as `{c}` (plus sign, country code, digits, no spaces)"
            )),
        ));
    }
    if !input.starts_with('+')
        && let Some(c) = canonical(input, Some(phonenumber::country::Id::US))
    {
        return Err((
            format!("`{input}` is not in E.164 (no `+` and country code)"),
            Some(format!("if this is a North American number, write `{c}`")),
        ));
    }
    let ext = phonenumber::parse(None, input)
        .ok()
        .is_some_and(|p| p.extension().is_some());
    Err((
        if ext {
            format!("`{input}` has an extension; Vapi numbers cannot")
        } else {
            format!("`{input}` is not a valid phone number")
        },
        Some("write the number in E.164, e.g. `+14155551234`".into()),
    ))
}

pub(super) fn check_number(c: &mut Collector, field: &str, input: &str) -> Option<E164> {
    match parse_e164(input) {
        Ok(n) => Some(n),
        Err((message, hint)) => {
            c.push(field, message, hint);
            None
        }
    }
}

/// `AC` followed by 32 hexadecimal characters.
fn is_account_sid(s: &str) -> bool {
    s.len() == 34 && s.starts_with("AC") && s[2..].chars().all(|ch| ch.is_ascii_hexdigit())
}

/// Returns None when there was a problem (already pushed).
pub(super) fn check_twilio(
    c: &mut Collector,
    tokens: &mut TokenCache,
    field: &str,
    t: &TwilioSpec,
) -> Option<DesiredTwilio> {
    let mut ok = true;
    if !is_account_sid(&t.account_sid) {
        ok = false;
        c.push(
            &format!("{field}.accountSid"),
            format!("`{}` is not a Twilio Account SID", t.account_sid),
            Some(
                "it is `AC` followed by 32 hexadecimal characters, as shown in the Twilio console"
                    .into(),
            ),
        );
    }
    let token_field = format!("{field}.authToken");
    let token = match tokens.get(&t.auth_token) {
        Ok(plaintext) => Some(EncryptedToken {
            armored: t.auth_token.clone(),
            plaintext,
        }),
        Err(e) => {
            c.push(&token_field, e.to_string(), Some(e.hint().to_string()));
            None
        }
    };
    (ok && token.is_some()).then(|| DesiredTwilio {
        account_sid: t.account_sid.clone(),
        auth_token: token.expect("checked"),
    })
}

fn check_server(c: &mut Collector, field: &str, s: &ServerSpec) {
    match reqwest::Url::parse(&s.url) {
        Ok(u) => {
            let local = matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
            if u.scheme() != "https" && !(u.scheme() == "http" && local) {
                c.push(
                    &format!("{field}.url"),
                    format!("`{}` is not an https URL", s.url),
                    Some("Vapi calls webhooks over https; use `https://…`".into()),
                );
            }
        }
        Err(e) => c.push(
            &format!("{field}.url"),
            format!("`{}` is not a URL ({e})", s.url),
            Some("write the full URL, e.g. `https://example.com/vapi/webhook`".into()),
        ),
    }
    if let Some(t) = s.timeout_seconds
        && !(1..=300).contains(&t)
    {
        c.push(
            &format!("{field}.timeoutSeconds"),
            format!("timeoutSeconds is {t}, outside 1 to 300"),
            Some("Vapi accepts 1 to 300 seconds (default 20)".into()),
        );
    }
    if let Some(id) = &s.credential_id
        && id.trim().is_empty()
    {
        c.push(
            &format!("{field}.credentialId"),
            "credentialId is empty",
            Some("remove it, or give the id of a Vapi credential".into()),
        );
    }
}
