//! The rules of one `phoneNumbers` entry (and of the Twilio account it uses), each pushing its
//! problem to the [`Collector`] with the field's position.

use crate::secrets::TokenCache;
use crate::spec::{Hook, HookAction, PhoneNumberSpec, ServerSpec, TransferDestination, TwilioSpec};
use crate::state::{
    DesiredNumber, DesiredTwilio, E164, EncryptedToken, HeaderValue, ServerConfig, canonical_json,
};

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
    "squad",
    "twilio",
    "server",
    "smsEnabled",
    "notes",
    "fallbackDestination",
    "hooks",
];

/// What `defaults` gives every entry.
pub(super) struct Defaults {
    /// `None` without `defaults.twilio`; `Some(None)` when it has a problem (already reported,
    /// so entries relying on it report nothing more).
    pub twilio: Option<Option<DesiredTwilio>>,
    pub sms_enabled: Option<bool>,
    /// `defaults.assistant` or `defaults.squad` (at most one: checked with `defaults`), as
    /// (field, reference).
    pub target: Option<(&'static str, String)>,
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
    // Vapi counts UTF-16 code units (JavaScript's `length`): an emoji counts twice.
    let name_len = entry.name.encode_utf16().count();
    if name_len == 0 || entry.name.trim().is_empty() {
        c.push(
            &f("name"),
            "name is empty",
            Some("give the number a label of 1 to 40 characters".into()),
        );
    } else if name_len > MAX_NAME_CHARS {
        c.push(
            &f("name"),
            if name_len == entry.name.chars().count() {
                format!("name is {name_len} characters, over Vapi's limit of {MAX_NAME_CHARS}")
            } else {
                format!(
                    "name is {name_len} characters as Vapi counts them (UTF-16: some characters, \
                     such as emoji, count twice), over Vapi's limit of {MAX_NAME_CHARS}"
                )
            },
            Some("shorten it; vapictl never truncates names".into()),
        );
    }
    check_target(c, base, entry.assistant.as_deref(), entry.squad.as_deref());
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
    let server = entry
        .server
        .as_ref()
        .map(|s| check_server(c, tokens, &f("server"), s));
    if let Some(d) = &entry.fallback_destination {
        check_destination(c, &f("fallbackDestination"), d);
    }
    if let Some(hooks) = &entry.hooks {
        check_hooks(c, &f("hooks"), hooks);
    }
    if entry.absent && entry.protected {
        c.push(
            &f("absent"),
            "a number cannot be both `protected` and `absent`",
            Some("set `protected: false` to allow the deletion".into()),
        );
    }
    let locations = &c.loaded.locations;
    let mut positions: std::collections::BTreeMap<&'static str, _> = POSITIONED_FIELDS
        .iter()
        .filter_map(|k| Some((*k, locations.get(&f(k))?)))
        .collect();
    // The routing target: the entry's, else the one `defaults` gives (its refusals then point
    // at `defaults`). An entry that writes `assistant: null` (or `squad: null`) has none.
    let mut from_defaults = Vec::new();
    let explicitly_none = positions.contains_key("assistant") || positions.contains_key("squad");
    let (assistant, squad) = match (&entry.assistant, &entry.squad, &defaults.target) {
        (None, None, Some((field, reference))) if !explicitly_none => {
            if let Some(at) = locations.get(&format!("defaults.{field}")) {
                positions.insert(field, at);
            }
            from_defaults.push(*field);
            let reference = Some(reference.clone());
            if *field == "squad" {
                (None, reference)
            } else {
                (reference, None)
            }
        }
        (a, q, _) => (a.clone(), q.clone()),
    };
    Some(DesiredNumber {
        number: number?,
        name: entry.name.clone(),
        assistant,
        squad,
        notes: entry.notes.clone(),
        twilio: twilio?,
        server,
        sms_enabled: entry.sms_enabled.or(defaults.sms_enabled).unwrap_or(true),
        fallback_destination: entry.fallback_destination.as_ref().map(to_json),
        hooks: entry.hooks.as_ref().map(to_json),
        protected: entry.protected,
        absent: entry.absent,
        line: locations.of(base).line,
        positions,
        from_defaults,
        path: base.to_string(),
    })
}

/// The routing target of an entry or of `defaults` at `base`: at most one of `assistant` and
/// `squad`, neither empty.
pub(super) fn check_target(
    c: &mut Collector,
    base: &str,
    assistant: Option<&str>,
    squad: Option<&str>,
) {
    let f = |name: &str| format!("{base}.{name}");
    for (field, value, table) in [
        ("assistant", assistant, "assistants"),
        ("squad", squad, "squads"),
    ] {
        if value.is_some_and(|v| v.trim().is_empty()) {
            c.push(
                &f(field),
                format!("{field} is empty"),
                Some(format!(
                    "name one of the owner's {table} (its `name` or `id`), or remove the field"
                )),
            );
        }
    }
    if assistant.is_some() && squad.is_some() {
        c.push(
            &f("squad"),
            "both `assistant` and `squad` are set; a number is answered by one of them",
            Some(
                "keep one: `assistant` for a single assistant, `squad` to route calls to a squad"
                    .into(),
            ),
        );
    }
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

/// `SK` followed by 32 hexadecimal characters.
pub fn is_api_key_sid(s: &str) -> bool {
    s.len() == 34 && s.starts_with("SK") && s[2..].chars().all(|ch| ch.is_ascii_hexdigit())
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
    // Exactly one form: the auth token, or an API key with its secret.
    let (secret_name, armored) = match (&t.auth_token, &t.api_key, &t.api_secret) {
        (Some(token), None, None) => ("authToken", token),
        (None, Some(_), Some(secret)) => ("apiSecret", secret),
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            c.push(
                field,
                "both an `authToken` and an API key are given",
                Some("keep one form: `authToken`, or `apiKey` with `apiSecret`".into()),
            );
            return None;
        }
        (None, Some(_), None) => {
            c.push(
                &format!("{field}.apiKey"),
                "`apiKey` needs its `apiSecret`",
                Some("add `apiSecret: |` with the secret encrypted by `vapictl encrypt --recipient age1…`".into()),
            );
            return None;
        }
        (None, None, Some(_)) => {
            c.push(
                &format!("{field}.apiSecret"),
                "`apiSecret` needs the `apiKey` it belongs to",
                Some("add `apiKey: SK…` (the API key SID from the Twilio console)".into()),
            );
            return None;
        }
        (None, None, None) => {
            c.push(
                field,
                "no Twilio credentials: neither `authToken` nor `apiKey`",
                Some(
                    "add `authToken`, or `apiKey` with `apiSecret` (both secrets age-encrypted)"
                        .into(),
                ),
            );
            return None;
        }
    };
    if let Some(k) = &t.api_key
        && !is_api_key_sid(k)
    {
        ok = false;
        c.push(
            &format!("{field}.apiKey"),
            format!("`{k}` is not a Twilio API key SID"),
            Some(
                "it is `SK` followed by 32 hexadecimal characters, as shown in the Twilio console"
                    .into(),
            ),
        );
    }
    let token_field = format!("{field}.{secret_name}");
    let token = match tokens.get(armored) {
        Ok(plaintext) => Some(EncryptedToken {
            armored: armored.clone(),
            plaintext,
        }),
        Err(e) => {
            c.push(
                &token_field,
                e.to_string().replace("authToken", secret_name),
                Some(e.hint().to_string()),
            );
            None
        }
    };
    (ok && token.is_some()).then(|| DesiredTwilio {
        account_sid: t.account_sid.clone(),
        auth_token: token.expect("checked"),
        api_key: t.api_key.clone(),
    })
}

/// A spec value in Vapi's JSON form (the spec's types use Vapi's field names).
fn to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    canonical_json(serde_json::to_value(v).expect("spec values serialize"))
}

/// Vapi's limit on a transfer's `callerId`.
const MAX_CALLER_ID_CHARS: usize = 40;
/// Vapi's limit on a `say` action's `exact` text.
const MAX_SAY_CHARS: usize = 4000;

fn check_destination(c: &mut Collector, field: &str, d: &TransferDestination) {
    let caller_id = match d {
        TransferDestination::Number(n) => {
            if n.number_e164_check_enabled != Some(false) {
                if let Err((message, hint)) = parse_e164(&n.number) {
                    c.push(
                        &format!("{field}.number"),
                        message,
                        hint.map(|h| {
                            format!("{h}; or set `numberE164CheckEnabled: false` for a dial string that is not E.164")
                        }),
                    );
                }
            } else {
                let len = n.number.chars().count();
                if !(3..=40).contains(&len) {
                    c.push(
                        &format!("{field}.number"),
                        format!("number is {len} characters, outside Vapi's 3 to 40"),
                        None,
                    );
                }
            }
            if let Some(e) = &n.extension
                && (e.is_empty()
                    || e.chars().count() > 10
                    || !e
                        .chars()
                        .all(|ch| ch.is_ascii_digit() || matches!(ch, '*' | '#' | 'w')))
            {
                c.push(
                    &format!("{field}.extension"),
                    format!("`{e}` is not an extension of 1 to 10 digits"),
                    Some("write the digits dialled after the call connects, e.g. `123`".into()),
                );
            }
            &n.caller_id
        }
        TransferDestination::Sip(s) => {
            let lower = s.sip_uri.to_ascii_lowercase();
            let rest = lower
                .strip_prefix("sip:")
                .or_else(|| lower.strip_prefix("sips:"));
            if rest.is_none_or(|r| r.trim().is_empty() || r.contains(char::is_whitespace)) {
                c.push(
                    &format!("{field}.sipUri"),
                    format!("`{}` is not a SIP URI", s.sip_uri),
                    Some("write it as `sip:user@host` (or `sips:…`)".into()),
                );
            }
            &s.caller_id
        }
    };
    if let Some(id) = caller_id
        && id.chars().count() > MAX_CALLER_ID_CHARS
    {
        c.push(
            &format!("{field}.callerId"),
            format!("callerId is over Vapi's limit of {MAX_CALLER_ID_CHARS} characters"),
            None,
        );
    }
}

fn check_action(c: &mut Collector, field: &str, a: &HookAction) {
    match a {
        HookAction::Transfer { destination: None } => c.push(
            &format!("{field}.destination"),
            "a transfer needs a `destination`",
            Some("add `destination: { type: number, number: \"+1…\" }` or a SIP URI".into()),
        ),
        HookAction::Transfer {
            destination: Some(d),
        } => check_destination(c, &format!("{field}.destination"), d),
        HookAction::Say { exact } => {
            let n = exact.encode_utf16().count();
            if exact.trim().is_empty() {
                c.push(&format!("{field}.exact"), "`say` has nothing to say", None);
            } else if n > MAX_SAY_CHARS {
                c.push(
                    &format!("{field}.exact"),
                    format!("`exact` is {n} characters, over Vapi's limit of {MAX_SAY_CHARS}"),
                    None,
                );
            }
        }
    }
}

fn check_hooks(c: &mut Collector, field: &str, hooks: &[Hook]) {
    for (i, h) in hooks.iter().enumerate() {
        let f = format!("{field}[{i}]");
        match h {
            Hook::CallRinging { filters, actions } => {
                if actions.is_empty() {
                    c.push(
                        &format!("{f}.do"),
                        "`call.ringing` needs at least one action",
                        Some("add `do: [{ type: say, exact: \"…\" }]` or a transfer".into()),
                    );
                }
                if actions.len() > 1 {
                    c.push(
                        &format!("{f}.do"),
                        "Vapi runs only the first action of `call.ringing`",
                        Some("keep one action".into()),
                    );
                }
                for (j, a) in actions.iter().enumerate() {
                    check_action(c, &format!("{f}.do[{j}]"), a);
                }
                for (j, filter) in filters.iter().flatten().enumerate() {
                    let ff = format!("{f}.filters[{j}].startsWith");
                    if filter.starts_with.is_empty() || filter.starts_with.len() > 20 {
                        c.push(&ff, "give 1 to 20 prefixes", None);
                    }
                    for p in &filter.starts_with {
                        if p.is_empty() || p.len() > 20 || !p.bytes().all(|b| b.is_ascii_digit()) {
                            c.push(
                                &ff,
                                format!("`{p}` is not a number prefix (1 to 20 digits, no `+`)"),
                                Some("write the caller's leading digits, e.g. `1415`".into()),
                            );
                        }
                    }
                }
            }
            Hook::CallEnding { filters, action } => {
                if let Some(a) = action {
                    check_action(c, &format!("{f}.do"), a);
                }
                for (j, filter) in filters.iter().flatten().enumerate() {
                    if filter.one_of.is_empty() {
                        c.push(
                            &format!("{f}.filters[{j}].oneOf"),
                            "list at least one ended reason",
                            None,
                        );
                    }
                }
            }
        }
    }
}

fn check_server(
    c: &mut Collector,
    tokens: &mut TokenCache,
    field: &str,
    s: &crate::spec::ServerSpec,
) -> ServerConfig {
    let headers = s.headers.as_ref().map(|h| {
        h.iter()
            .map(|(name, value)| {
                let hf = format!("{field}.headers.{name}");
                if name.trim().is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
                {
                    c.push(
                        &hf,
                        format!("`{name}` is not an HTTP header name"),
                        Some("use letters, digits and `-`, e.g. `X-Api-Key`".into()),
                    );
                }
                let v = if crate::secrets::looks_armored(value) {
                    match tokens.secret(value) {
                        Ok(plaintext) => HeaderValue::Encrypted {
                            armored: value.clone(),
                            plaintext,
                        },
                        Err(e) => {
                            c.push(&hf, e.to_string(), Some(e.hint().to_string()));
                            HeaderValue::Plain(String::new())
                        }
                    }
                } else {
                    if looks_secret_header(name) {
                        c.push(
                            &hf,
                            format!("header `{name}` carries a secret in plaintext"),
                            Some(format!(
                                "encrypt the value with `printf '%s' \"$VALUE\" | vapictl encrypt --recipient age1…` and paste the armored block (`{name}: |`)"
                            )),
                        );
                    }
                    HeaderValue::Plain(value.clone())
                };
                (name.clone(), v)
            })
            .collect()
    });
    if let Some(b) = &s.backoff_plan {
        if b.max_retries > 10 {
            c.push(
                &format!("{field}.backoffPlan.maxRetries"),
                format!("maxRetries is {}, outside 0 to 10", b.max_retries),
                None,
            );
        }
        if !(0.0..=10.0).contains(&b.base_delay_seconds) {
            c.push(
                &format!("{field}.backoffPlan.baseDelaySeconds"),
                format!(
                    "baseDelaySeconds is {}, outside 0 to 10",
                    b.base_delay_seconds
                ),
                None,
            );
        }
        for code in b.excluded_status_codes.iter().flatten() {
            if !(100..=599).contains(code) {
                c.push(
                    &format!("{field}.backoffPlan.excludedStatusCodes"),
                    format!("`{code}` is not an HTTP status code"),
                    None,
                );
            }
        }
    }
    for p in s.encrypted_paths.iter().flatten() {
        if p.trim().is_empty() {
            c.push(&format!("{field}.encryptedPaths"), "a path is empty", None);
        }
    }
    check_server_fields(c, field, s);
    ServerConfig {
        url: s.url.clone(),
        credential_id: s.credential_id.clone(),
        timeout_seconds: s.timeout_seconds,
        headers,
        static_ip_addresses_enabled: s.static_ip_addresses_enabled,
        encrypted_paths: s.encrypted_paths.clone(),
        backoff_plan: s.backoff_plan.as_ref().map(to_json),
    }
}

/// Header names whose values are secrets: a plaintext value is refused (and Vapi's value is
/// never shown in a plan).
pub fn looks_secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "authorization",
        "token",
        "secret",
        "api-key",
        "apikey",
        "password",
        "cookie",
        "signature",
    ]
    .iter()
    .any(|s| n.contains(s))
}

fn check_server_fields(c: &mut Collector, field: &str, s: &ServerSpec) {
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
