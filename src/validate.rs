//! Spec + identities → [`DesiredState`], collecting every problem with its file position (pure).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;

use uuid::Uuid;

use crate::secrets::{Identities, SecretValue, looks_armored};
use crate::spec::{
    Hook, HookAction, LoadedSpec, Location, SPEC_VERSION, TransferDestination, TwilioSpec,
};
use crate::state::{
    DesiredNumber, DesiredState, DesiredTwilio, E164, EncryptedToken, HeaderValue, ServerConfig,
    canonical_json,
};

/// The shortest Twilio auth token accepted (Twilio's are 32 hex characters).
pub const MIN_TOKEN_LEN: usize = 32;
/// Vapi's limit on a phone number's `name`.
pub const MAX_NAME_CHARS: usize = 40;
/// Longest `notes` accepted (the column is text; this only catches accidents).
pub const MAX_NOTES_CHARS: usize = 10_000;

/// The fields of an entry whose positions the diff may cite in a refusal.
const POSITIONED_FIELDS: &[&str] = &[
    "number",
    "name",
    "assistant",
    "twilio",
    "server",
    "smsEnabled",
    "notes",
    "fallbackDestination",
    "hooks",
];

/// Whether tokens must be decrypted (apply) or may stay ciphertext (keyless plan and drift).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretMode {
    /// Every token must decrypt with the identities given.
    Required,
    /// Without identities, tokens are compared as ciphertext; with identities they must decrypt.
    Optional,
}

/// One thing wrong with the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub location: Location,
    /// The field's path, e.g. `phoneNumbers[2].number`.
    pub field: String,
    pub message: String,
    pub hint: Option<String>,
}

/// Every problem found in one spec file.
#[derive(Debug, Clone)]
pub struct Problems {
    pub path: PathBuf,
    pub items: Vec<Problem>,
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.items.len();
        writeln!(
            f,
            "spec `{}` is invalid: {n} problem{}",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.items {
            writeln!(
                f,
                "{}:{}: `{}`: {}",
                self.path.display(),
                p.location,
                p.field,
                p.message
            )?;
            if let Some(h) = &p.hint {
                writeln!(f, "  hint: {h}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

struct Collector<'a> {
    loaded: &'a LoadedSpec,
    items: Vec<Problem>,
}

impl Collector<'_> {
    fn push(&mut self, field: &str, message: impl Into<String>, hint: Option<String>) {
        self.items.push(Problem {
            location: self.loaded.locations.of(field),
            field: field.to_string(),
            message: message.into(),
            hint,
        });
    }
}

/// Checks the spec and decrypts its tokens.
///
/// # Errors
/// Every problem found, in file order: nothing is planned or applied from an invalid spec.
pub fn validate(
    loaded: &LoadedSpec,
    identities: &Identities,
    mode: SecretMode,
) -> Result<DesiredState, Problems> {
    let spec = &loaded.spec;
    let mut c = Collector {
        loaded,
        items: Vec::new(),
    };

    for (path, first, _second) in &loaded.locations.duplicate_keys {
        c.push(
            path,
            format!("key appears twice (first at line {})", first.line),
            Some("keep one of them".into()),
        );
    }

    if spec.version != SPEC_VERSION {
        c.push(
            "version",
            format!("unsupported spec version `{}`", spec.version),
            Some(format!("this vapictl reads `version: {SPEC_VERSION}`")),
        );
    }
    let owner = match Uuid::parse_str(spec.owner.trim()) {
        Ok(u) if spec.owner.trim() == spec.owner => Some(u),
        _ => {
            c.push(
                "owner",
                format!("`{}` is not a UUID", spec.owner),
                Some(
                    "use the owner's `users.id`, e.g. `3f1c2b7e-0000-4000-8000-000000000001`"
                        .into(),
                ),
            );
            None
        }
    };

    let mut tokens = TokenCache::new(identities, mode);
    let default_twilio = spec.defaults.as_ref().and_then(|d| d.twilio.as_ref());
    let default_creds =
        default_twilio.map(|t| check_twilio(&mut c, &mut tokens, "defaults.twilio", t));
    let default_sms = spec.defaults.as_ref().and_then(|d| d.sms_enabled);

    let mut numbers = BTreeMap::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for (i, entry) in spec.phone_numbers.iter().enumerate() {
        let base = format!("phoneNumbers[{i}]");
        let f = |name: &str| format!("{base}.{name}");
        let number = check_number(&mut c, &f("number"), &entry.number);
        if let Some(n) = &number {
            if let Some(first) = seen.get(n.as_str()) {
                let first_loc = loaded.locations.of(first);
                c.push(
                    &f("number"),
                    format!(
                        "`{n}` is listed twice (also at line {}, `{first}`)",
                        first_loc.line
                    ),
                    Some("keep one entry per number".into()),
                );
            } else {
                seen.insert(n.as_str().to_string(), f("number"));
            }
        }
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
        let twilio = match &entry.twilio {
            Some(t) => Some(check_twilio(&mut c, &mut tokens, &f("twilio"), t)),
            None => {
                match &default_creds {
                    Some(d) => Some(d.clone()),
                    None => {
                        c.push(
                        &base,
                        "no Twilio account for this number",
                        Some("add `twilio: { accountSid, authToken }` to the entry or to `defaults`".into()),
                    );
                        None
                    }
                }
            }
        };
        let server = entry
            .server
            .as_ref()
            .map(|s| check_server(&mut c, &mut tokens, &f("server"), s));
        if let Some(d) = &entry.fallback_destination {
            check_destination(&mut c, &f("fallbackDestination"), d);
        }
        if let Some(hooks) = &entry.hooks {
            check_hooks(&mut c, &f("hooks"), hooks);
        }
        if entry.absent && entry.protected {
            c.push(
                &f("absent"),
                "a number cannot be both `protected` and `absent`",
                Some("set `protected: false` to allow the deletion".into()),
            );
        }
        if let (Some(number), Some(Some(twilio))) = (number, twilio) {
            numbers.insert(
                number.clone(),
                DesiredNumber {
                    number,
                    name: entry.name.clone(),
                    assistant: entry.assistant.clone(),
                    notes: entry.notes.clone(),
                    twilio,
                    server,
                    sms_enabled: entry.sms_enabled.or(default_sms).unwrap_or(true),
                    fallback_destination: entry.fallback_destination.as_ref().map(to_json),
                    hooks: entry.hooks.as_ref().map(to_json),
                    protected: entry.protected,
                    absent: entry.absent,
                    line: loaded.locations.of(&base).line,
                    positions: POSITIONED_FIELDS
                        .iter()
                        .filter_map(|k| Some((*k, loaded.locations.get(&f(k))?)))
                        .collect(),
                    path: base.clone(),
                },
            );
        }
    }

    if !c.items.is_empty() {
        c.items.sort_by_key(|p| p.location);
        return Err(Problems {
            path: loaded.path.clone(),
            items: c.items,
        });
    }
    Ok(DesiredState {
        owner: owner.expect("no problems means the owner parsed"),
        numbers,
        spec_digest: loaded.digest.clone(),
        spec_path: loaded.path.clone(),
    })
}

/// Strict E.164: parses, is a valid number, has no extension, and is written exactly as its
/// E.164 form. Returns the problem's message and hint otherwise.
pub fn parse_e164(input: &str) -> Result<E164, (String, Option<String>)> {
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

fn check_number(c: &mut Collector, field: &str, input: &str) -> Option<E164> {
    match parse_e164(input) {
        Ok(n) => Some(n),
        Err((message, hint)) => {
            c.push(field, message, hint);
            None
        }
    }
}

/// `AC` followed by 32 hexadecimal characters.
pub fn is_account_sid(s: &str) -> bool {
    s.len() == 34 && s.starts_with("AC") && s[2..].chars().all(|ch| ch.is_ascii_hexdigit())
}

/// `SK` followed by 32 hexadecimal characters.
pub fn is_api_key_sid(s: &str) -> bool {
    s.len() == 34 && s.starts_with("SK") && s[2..].chars().all(|ch| ch.is_ascii_hexdigit())
}

/// Returns None when there was a problem (already pushed).
fn check_twilio(
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
        Err((message, hint)) => {
            c.push(
                &token_field,
                message.replace("authToken", secret_name),
                Some(hint),
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
                        Err((message, hint)) => {
                            c.push(&hf, message, Some(hint));
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

fn check_server_fields(c: &mut Collector, field: &str, s: &crate::spec::ServerSpec) {
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

/// Decrypts each distinct ciphertext once (10,000 numbers often share one token).
struct TokenCache<'a> {
    identities: &'a Identities,
    mode: SecretMode,
    done: HashMap<String, Result<Option<SecretValue>, (String, String)>>,
}

impl<'a> TokenCache<'a> {
    fn new(identities: &'a Identities, mode: SecretMode) -> Self {
        TokenCache {
            identities,
            mode,
            done: HashMap::new(),
        }
    }

    fn get(&mut self, armored: &str) -> Result<Option<SecretValue>, (String, String)> {
        if let Some(r) = self.done.get(armored) {
            return r.clone();
        }
        let r = self.decrypt(armored);
        self.done.insert(armored.to_string(), r.clone());
        r
    }

    /// Decrypts a secret other than a token (a header value): no placeholder or length rules.
    fn secret(&mut self, armored: &str) -> Result<Option<SecretValue>, (String, String)> {
        if self.identities.is_empty() && self.mode == SecretMode::Optional {
            return Ok(None);
        }
        match self.identities.decrypt(armored) {
            Ok(secret) => Ok(Some(secret)),
            Err(e) => {
                let text = e.to_string();
                let (message, hint) = text.split_once("\nhint: ").unwrap_or((&text, ""));
                Err((message.to_string(), hint.to_string()))
            }
        }
    }

    fn decrypt(&self, armored: &str) -> Result<Option<SecretValue>, (String, String)> {
        if armored.trim().starts_with(crate::import::TOKEN_PLACEHOLDER) {
            return Err((
                "authToken is a placeholder left by `vapictl import`".into(),
                "encrypt this number's Twilio auth token with `printf '%s' \"$TOKEN\" | vapictl encrypt -r age1…` and paste the block here".into(),
            ));
        }
        if !looks_armored(armored) {
            return Err((
                "authToken is not age-encrypted; plaintext tokens are refused".into(),
                "encrypt it with `vapictl encrypt --recipient age1…` and paste the armored block (the plaintext must not stay in git history)".into(),
            ));
        }
        if self.identities.is_empty() && self.mode == SecretMode::Optional {
            return Ok(None);
        }
        match self.identities.decrypt(armored) {
            Ok(secret) => {
                if secret.expose().chars().count() < MIN_TOKEN_LEN {
                    Err((
                        format!(
                            "the decrypted authToken is shorter than {MIN_TOKEN_LEN} characters"
                        ),
                        "paste the full auth token from the Twilio console, then encrypt it again"
                            .into(),
                    ))
                } else {
                    Ok(Some(secret))
                }
            }
            Err(e) => {
                let text = e.to_string();
                let (message, hint) = text.split_once("\nhint: ").unwrap_or((&text, ""));
                Err((message.to_string(), hint.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! One test per validation rule.
    use super::*;
    use crate::secrets::{encrypt, parse_recipients};
    use crate::spec::load_str;
    use std::path::Path;

    struct Key {
        identities: Identities,
        recipient: String,
    }

    fn key() -> Key {
        use age::secrecy::ExposeSecret;
        let id = age::x25519::Identity::generate();
        let mut identities = Identities::none();
        identities
            .add_text("test", &SecretValue::new(id.to_string().expose_secret()))
            .unwrap();
        Key {
            identities,
            recipient: id.to_public().to_string(),
        }
    }

    fn armor(k: &Key, plain: &str) -> String {
        encrypt(
            &parse_recipients(std::slice::from_ref(&k.recipient)).unwrap(),
            &SecretValue::new(plain),
        )
        .unwrap()
    }

    fn indent(s: &str, n: usize) -> String {
        s.lines()
            .map(|l| format!("{}{l}\n", " ".repeat(n)))
            .collect()
    }

    /// A spec with one entry whose body lines are given (indented under `- `).
    fn spec_with(k: &Key, entry: &str) -> String {
        format!(
            "version: 1\nowner: 3f1c2b7e-0000-4000-8000-000000000001\ndefaults:\n  twilio:\n    accountSid: AC0123456789abcdef0123456789abcdef\n    authToken: |\n{}phoneNumbers:\n  - {entry}\n",
            indent(&armor(k, &"t".repeat(32)), 6)
        )
    }

    fn run(k: &Key, src: &str) -> Result<DesiredState, Problems> {
        let loaded = load_str(Path::new("spec.yaml"), src).expect("parses");
        validate(&loaded, &k.identities, SecretMode::Required)
    }

    /// The 1-based line of the first line containing `needle`.
    fn line_of(src: &str, needle: &str) -> usize {
        src.lines()
            .position(|l| l.contains(needle))
            .expect("needle present")
            + 1
    }

    fn problems(k: &Key, src: &str) -> Vec<Problem> {
        run(k, src).expect_err("should be invalid").items
    }

    #[test]
    fn a_good_entry_validates_with_defaults_applied() {
        let k = key();
        let src = spec_with(&k, "number: \"+14155551234\"\n    name: Main Sales Line");
        let d = run(&k, &src).unwrap();
        let n = d.numbers.values().next().unwrap();
        assert_eq!(n.number.as_str(), "+14155551234");
        assert!(n.sms_enabled, "Vapi's default");
        assert_eq!(
            n.twilio.auth_token.plaintext.as_ref().unwrap().expose(),
            "t".repeat(32)
        );
        assert_eq!(n.line, line_of(&src, "+14155551234"));
    }

    #[test]
    fn number_without_plus_is_refused_with_the_canonical_form() {
        let k = key();
        let src = spec_with(&k, "number: \"4155551234\"\n    name: x");
        let p = problems(&k, &src);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].field, "phoneNumbers[0].number");
        assert_eq!(p[0].location.line, line_of(&src, "4155551234"));
        assert!(
            p[0].hint.as_deref().unwrap().contains("+14155551234"),
            "{:?}",
            p[0]
        );
    }

    #[test]
    fn number_with_spaces_is_refused_with_the_canonical_form() {
        let k = key();
        let p = problems(
            &k,
            &spec_with(&k, "number: \"+1 415 555 1234\"\n    name: x"),
        );
        assert!(p[0].message.contains("not written in E.164"));
        assert!(p[0].hint.as_deref().unwrap().contains("`+14155551234`"));
    }

    #[test]
    fn invalid_number_is_refused() {
        let k = key();
        let p = problems(&k, &spec_with(&k, "number: \"+1999\"\n    name: x"));
        assert!(p[0].message.contains("not a valid phone number"));
    }

    #[test]
    fn name_over_forty_characters_is_refused_not_truncated() {
        let k = key();
        let p = problems(
            &k,
            &spec_with(
                &k,
                &format!("number: \"+14155551234\"\n    name: {}", "n".repeat(41)),
            ),
        );
        assert_eq!(p[0].field, "phoneNumbers[0].name");
        assert!(p[0].message.contains("41 characters"));
    }

    #[test]
    fn forty_characters_is_fine() {
        let k = key();
        run(
            &k,
            &spec_with(
                &k,
                &format!("number: \"+14155551234\"\n    name: {}", "é".repeat(40)),
            ),
        )
        .unwrap();
    }

    #[test]
    fn empty_name_is_refused() {
        let k = key();
        let p = problems(
            &k,
            &spec_with(&k, "number: \"+14155551234\"\n    name: \"\""),
        );
        assert!(p[0].message.contains("empty"));
    }

    #[test]
    fn bad_account_sid_is_refused() {
        let k = key();
        let src = spec_with(&k, "number: \"+14155551234\"\n    name: x")
            .replace("AC0123456789abcdef0123456789abcdef", "AC123");
        let p = problems(&k, &src);
        assert_eq!(p[0].field, "defaults.twilio.accountSid");
        assert_eq!(p[0].location.line, 5);
    }

    #[test]
    fn plaintext_token_is_refused_with_encrypt_hint() {
        let k = key();
        let src = "version: 1\nowner: 3f1c2b7e-0000-4000-8000-000000000001\nphoneNumbers:\n  - number: \"+14155551234\"\n    name: x\n    twilio:\n      accountSid: AC0123456789abcdef0123456789abcdef\n      authToken: 0123456789abcdef0123456789abcdef\n";
        let p = problems(&k, src);
        assert_eq!(p[0].field, "phoneNumbers[0].twilio.authToken");
        assert!(p[0].hint.as_deref().unwrap().contains("vapictl encrypt"));
        let shown = format!("{p:?}");
        assert!(
            !shown.contains("0123456789abcdef0123456789abcdef"),
            "the plaintext is not echoed"
        );
    }

    #[test]
    fn short_token_is_refused_after_decryption() {
        let k = key();
        let src = format!(
            "version: 1\nowner: 3f1c2b7e-0000-4000-8000-000000000001\nphoneNumbers:\n  - number: \"+14155551234\"\n    name: x\n    twilio:\n      accountSid: AC0123456789abcdef0123456789abcdef\n      authToken: |\n{}",
            indent(&armor(&k, "short"), 8)
        );
        let p = problems(&k, &src);
        assert!(p[0].message.contains("shorter than 32"));
    }

    #[test]
    fn token_for_another_recipient_is_refused() {
        let k = key();
        let other = key();
        let src = spec_with(&other, "number: \"+14155551234\"\n    name: x");
        let p = problems(&k, &src);
        assert!(
            p[0].message.contains("none of the age identities"),
            "{:?}",
            p[0]
        );
    }

    #[test]
    fn keyless_optional_mode_keeps_ciphertext_only() {
        let k = key();
        let loaded = load_str(
            Path::new("s.yaml"),
            &spec_with(&k, "number: \"+14155551234\"\n    name: x"),
        )
        .unwrap();
        let d = validate(&loaded, &Identities::none(), SecretMode::Optional).unwrap();
        assert!(
            d.numbers
                .values()
                .next()
                .unwrap()
                .twilio
                .auth_token
                .plaintext
                .is_none()
        );
        let err = validate(&loaded, &Identities::none(), SecretMode::Required).unwrap_err();
        assert!(err.items[0].message.contains("no age identity"));
    }

    #[test]
    fn duplicate_numbers_name_both_places() {
        let k = key();
        let src = spec_with(
            &k,
            "number: \"+14155551234\"\n    name: a\n  - number: \"+14155551234\"\n    name: b",
        );
        let p = problems(&k, &src);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].location.line, line_of(&src, "name: a") + 1);
        assert!(
            p[0].message
                .contains(&format!("line {}", line_of(&src, "+14155551234")))
        );
    }

    #[test]
    fn wrong_version_is_refused() {
        let k = key();
        let p = problems(
            &k,
            &spec_with(&k, "number: \"+14155551234\"\n    name: x")
                .replace("version: 1", "version: 2"),
        );
        assert_eq!(p[0].field, "version");
    }

    #[test]
    fn owner_must_be_a_uuid() {
        let k = key();
        let p = problems(
            &k,
            &spec_with(&k, "number: \"+14155551234\"\n    name: x")
                .replace("3f1c2b7e-0000-4000-8000-000000000001", "alice"),
        );
        assert_eq!(p[0].field, "owner");
        assert_eq!(p[0].location.line, 2);
    }

    #[test]
    fn missing_twilio_everywhere_is_refused() {
        let k = key();
        let src = "version: 1\nowner: 3f1c2b7e-0000-4000-8000-000000000001\nphoneNumbers:\n  - number: \"+14155551234\"\n    name: x\n";
        let p = problems(&k, src);
        assert!(p[0].message.contains("no Twilio account"));
    }

    #[test]
    fn server_rules() {
        let k = key();
        let p = problems(
            &k,
            &spec_with(
                &k,
                "number: \"+14155551234\"\n    name: x\n    server: { url: \"http://example.com\", timeoutSeconds: 301 }",
            ),
        );
        let fields: Vec<&str> = p.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "phoneNumbers[0].server.url",
                "phoneNumbers[0].server.timeoutSeconds"
            ]
        );
    }

    #[test]
    fn protected_and_absent_conflict() {
        let k = key();
        let p = problems(
            &k,
            &spec_with(
                &k,
                "number: \"+14155551234\"\n    name: x\n    protected: true\n    absent: true",
            ),
        );
        assert!(p[0].message.contains("both"));
    }

    #[test]
    fn duplicate_keys_are_reported_with_location() {
        let k = key();
        let src = spec_with(&k, "number: \"+14155551234\"\n    name: x\n    name: y");
        match load_str(Path::new("spec.yaml"), &src).unwrap_err() {
            crate::spec::SpecError::Yaml { line, message, .. } => {
                assert_eq!(line, line_of(&src, "name: y"));
                assert!(
                    message.contains("`phoneNumbers[0].name` appears twice"),
                    "{message}"
                );
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn all_problems_are_collected_in_file_order() {
        let k = key();
        let src =
            spec_with(&k, "number: \"123\"\n    name: \"\"").replace("version: 1", "version: 3");
        let p = problems(&k, &src);
        assert_eq!(p.len(), 3);
        assert!(p.windows(2).all(|w| w[0].location <= w[1].location));
    }
}
