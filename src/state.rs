//! The three views of an owner's phone numbers that the diff compares: desired (spec), recorded
//! (database) and observed (Vapi), each keyed by E.164 number.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::secrets::SecretValue;
use crate::spec::Location;

/// A phone number written exactly in E.164 (`+` and digits, checked by `phonenumber` in validate).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct E164(String);

impl E164 {
    /// Wraps a string that validation already proved to be canonical E.164.
    pub fn new_unchecked(s: impl Into<String>) -> Self {
        E164(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form used in logs: everything but the last four digits hidden (`…1234`).
    pub fn masked(&self) -> String {
        mask_number(&self.0)
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Masks any phone-number-like string to its last four characters, for logs and the audit trail.
pub fn mask_number(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 4 {
        return "…".to_string() + s;
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("…{tail}")
}

/// Masks every E.164-looking number in free text (`+` then 7 to 15 digits, or `%2B` then as
/// many, as a query string carries it) to its last four digits, for messages that may quote a
/// request or a response: a driver's error, a URL, Vapi's own words. Bare digit runs are left
/// alone, since ids and timestamps are made of them too.
pub fn mask_numbers_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let prefix = if rest.starts_with('+') {
            1
        } else if rest.len() >= 3 && rest.as_bytes()[..3].eq_ignore_ascii_case(b"%2B") {
            3
        } else {
            0
        };
        if prefix > 0 {
            let digits = rest[prefix..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            if (7..=15).contains(&digits) {
                out.push_str(&mask_number(&rest[prefix..prefix + digits]));
                rest = &rest[prefix + digits..];
                continue;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Desired: what the spec asks for, after decryption and validation.
// ---------------------------------------------------------------------------------------------

/// The validated spec: the owner and every number it mentions.
#[derive(Debug, Clone)]
pub struct DesiredState {
    pub owner: Uuid,
    /// Every entry of `phoneNumbers`, including those marked `absent: true`.
    pub numbers: BTreeMap<E164, DesiredNumber>,
    /// SHA-256 (hex) of the spec file's bytes: saved plans use it to notice an edited spec.
    pub spec_digest: String,
    /// The spec file as given, for messages (`file:line:col`).
    pub spec_path: PathBuf,
}

/// One `phoneNumbers` entry with defaults applied.
#[derive(Debug, Clone)]
pub struct DesiredNumber {
    pub number: E164,
    pub name: String,
    /// The `assistant` reference as written (the entry's, else `defaults.assistant`): a name or
    /// an `assistants.id` of the owner. Never set together with `squad`.
    pub assistant: Option<String>,
    /// The `squad` reference as written (the entry's, else `defaults.squad`): a name or a
    /// `squads.id` of the owner. Never set together with `assistant`.
    pub squad: Option<String>,
    pub notes: Option<String>,
    pub twilio: DesiredTwilio,
    pub server: Option<ServerConfig>,
    /// `smsEnabled` from the entry, else `defaults.smsEnabled`, else Vapi's default (`true`).
    pub sms_enabled: bool,
    /// `fallbackDestination` in Vapi's JSON form ([`canonical_json`]); `None`: not declared
    /// (not owned, unless vapictl applied one before).
    pub fallback_destination: Option<Value>,
    /// `hooks` in Vapi's JSON form (an array); `None`: not declared.
    pub hooks: Option<Value>,
    pub protected: bool,
    /// `absent: true`: the number must not exist (an explicit, reviewed delete).
    pub absent: bool,
    /// 1-based line of the entry in the spec, for messages.
    pub line: usize,
    /// The entry's path in the spec (`phoneNumbers[2]`), for messages about one of its fields.
    pub path: String,
    /// Where the entry's fields are written (`number`, `assistant`, …), for messages.
    pub positions: BTreeMap<&'static str, Location>,
    /// Fields the entry takes from `defaults` (`assistant`, `squad`): messages about them point
    /// at `defaults`.
    pub from_defaults: Vec<&'static str>,
}

impl DesiredNumber {
    /// The path of `field` of this entry in the spec: `phoneNumbers[2].squad`, or
    /// `defaults.squad` when the entry takes it from there.
    pub fn path_of(&self, field: &str) -> String {
        if self.from_defaults.contains(&field) {
            format!("defaults.{field}")
        } else {
            format!("{}.{field}", self.path)
        }
    }

    /// Where `field` of this entry is written (the entry itself when the field is not).
    pub fn position(&self, field: &str) -> Location {
        self.positions.get(field).copied().unwrap_or(Location {
            line: self.line,
            column: 1,
        })
    }
}

#[derive(Debug, Clone)]
pub struct DesiredTwilio {
    pub account_sid: String,
    /// The secret Vapi gets: the auth token, or the API key's secret when `api_key` is set.
    pub auth_token: EncryptedToken,
    /// The API key SID (`SK…`) of the API-key form; `None`: the auth-token form.
    pub api_key: Option<String>,
}

/// A Twilio auth token as the spec carries it: age ciphertext, plus the plaintext when an identity
/// could decrypt it (keyless plans have only the ciphertext).
#[derive(Debug, Clone)]
pub struct EncryptedToken {
    /// The ASCII-armored age ciphertext exactly as written in the spec.
    pub armored: String,
    pub plaintext: Option<SecretValue>,
}

/// The webhook settings vapictl models on a number (`server` in Vapi). `url`, `credentialId`
/// and `timeoutSeconds` are owned whenever the spec declares `server`; the other fields only
/// when declared (`None`: left as Vapi has them). Sub-fields vapictl does not model are never
/// part of this type: a PATCH starts from Vapi's object and keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerConfig {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, HeaderValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_ip_addresses_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_paths: Option<Vec<String>>,
    /// Vapi's `BackoffPlan`, as [`canonical_json`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_plan: Option<Value>,
}

impl ServerConfig {
    /// A server with only a URL.
    pub fn with_url(url: impl Into<String>) -> Self {
        ServerConfig {
            url: url.into(),
            credential_id: None,
            timeout_seconds: None,
            headers: None,
            static_ip_addresses_enabled: None,
            encrypted_paths: None,
            backoff_plan: None,
        }
    }

    /// The decrypted values of encrypted headers (for scrubbing error messages).
    pub fn secrets(&self) -> Vec<&SecretValue> {
        self.headers
            .iter()
            .flat_map(|h| h.values())
            .filter_map(|v| match v {
                HeaderValue::Encrypted { plaintext, .. } => plaintext.as_ref(),
                HeaderValue::Plain(_) => None,
            })
            .collect()
    }

    /// Whether an encrypted header could not be decrypted (a keyless plan).
    pub fn needs_key(&self) -> bool {
        self.headers.iter().flat_map(|h| h.values()).any(|v| {
            matches!(
                v,
                HeaderValue::Encrypted {
                    plaintext: None,
                    ..
                }
            )
        })
    }
}

/// A webhook header's value: plain text, or an age ciphertext from the spec (decrypted when an
/// identity could; serialized — into `vapictl_applied` — as its ciphertext only).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HeaderValue {
    Plain(String),
    Encrypted {
        armored: String,
        #[serde(skip)]
        plaintext: Option<SecretValue>,
    },
}

impl PartialEq for HeaderValue {
    /// Encrypted values are equal when their ciphertexts are (what the spec wrote).
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (HeaderValue::Plain(a), HeaderValue::Plain(b)) => a == b,
            (
                HeaderValue::Encrypted { armored: a, .. },
                HeaderValue::Encrypted { armored: b, .. },
            ) => a == b,
            _ => false,
        }
    }
}

impl Eq for HeaderValue {}

/// A JSON value in one canonical form, so that Vapi's `3` and the spec's `3.0` compare equal:
/// integral numbers become integers; objects are already ordered (serde_json's `Map` is a
/// `BTreeMap` without `preserve_order`).
pub fn canonical_json(v: Value) -> Value {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(canonical_json).collect()),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, canonical_json(v)))
                .collect::<Map<String, Value>>(),
        ),
        other => other,
    }
}

// ---------------------------------------------------------------------------------------------
// Recorded: the application's database.
// ---------------------------------------------------------------------------------------------

/// What the database records: the owner's rows, other users' claims on the numbers in question,
/// and the assistants a spec may refer to.
#[derive(Debug, Clone, Default)]
pub struct RecordedState {
    /// The owner's `phone_numbers` rows, keyed by `phone_number` as stored.
    pub rows: BTreeMap<String, PhoneRow>,
    /// `phone_number` (as stored) → `user_id` for rows of *other* users that may hold a number in
    /// question: those whose number the spec or Vapi lists exactly, and (for plans) those whose
    /// number is not written in E.164, which the diff canonicalizes itself.
    pub foreign: BTreeMap<String, Uuid>,
    /// `vapi_phone_id` → `user_id` for rows of other users that record one of Vapi's numbers.
    pub foreign_vapi_ids: BTreeMap<String, Uuid>,
    /// The owner's `assistants` rows, plus rows of other users whose `id` the spec names
    /// (so that a reference to someone else's assistant can be refused by name).
    pub assistants: Vec<AssistantRow>,
    /// The owner's `squads` rows, plus other users' the spec names, as for `assistants`.
    pub squads: Vec<SquadRow>,
    /// Why the app's `squads` table cannot be read, when it cannot: `squads` is then empty and
    /// an entry that names a squad is refused with this reason.
    pub squads_unusable: Option<String>,
}

impl RecordedState {
    /// Records another user's row as a claim on its number and on its Vapi id.
    pub fn add_claim(&mut self, number: Option<String>, vapi_id: Option<String>, user: Uuid) {
        if let Some(n) = number {
            self.foreign.insert(n, user);
        }
        if let Some(id) = vapi_id {
            self.foreign_vapi_ids.insert(id, user);
        }
    }
}

/// A `phone_numbers` row (app columns plus vapictl's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub phone_number: String,
    pub friendly_name: Option<String>,
    pub provider: String,
    pub vapi_phone_id: Option<String>,
    pub vapi_credential_id: Option<String>,
    pub twilio_account_sid: Option<String>,
    /// age ciphertext (armored) of the number's Twilio secret — the auth token, or for a number
    /// on an API key the key's secret (also in `api_secret`); never plaintext.
    pub twilio_auth_token: Option<String>,
    /// `vapictl_twilio_api_key`: the API key SID for a number on the API-key form.
    pub api_key: Option<String>,
    /// `vapictl_twilio_api_secret`: age ciphertext of the API key's secret (the API-key form).
    pub api_secret: Option<String>,
    pub assigned_assistant_id: Option<Uuid>,
    /// The `squads.id` the number is routed to (`vapictl_squad_id`, vapictl's column; issue
    /// 12); `None` when unset or not a UUID.
    pub assigned_squad_id: Option<Uuid>,
    pub notes: Option<String>,
    /// `vapictl_token_digest`: salted SHA-256 of the plaintext token, to tell a rotation.
    pub token_digest: Option<String>,
    /// `vapictl_protected`: remembered so that removing the entry from the spec cannot delete it.
    pub protected: bool,
    /// `vapictl_applied`: what vapictl last applied to the fields only Vapi keeps (`server`,
    /// `smsEnabled`), as JSON, so that a spec edit can be told from an edit in Vapi. NULL for
    /// rows vapictl has not written since the column was added.
    pub applied: Option<String>,
}

/// A row of a routing-target table (`assistants` or `squads`): the application's record of
/// one of its users' assistants or squads, and the Vapi id it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: Option<String>,
    /// `vapi_assistant_id` or `vapi_squad_id`.
    pub vapi_id: Option<String>,
}

impl PhoneRow {
    /// The ciphertext of the number's Twilio secret as the row records it: on the API-key form
    /// vapictl's `vapictl_twilio_api_secret` (else, for rows written before that column, the
    /// app's `twilio_auth_token`), on the auth-token form `twilio_auth_token`.
    pub fn secret_ciphertext(&self) -> Option<&str> {
        match (&self.api_key, &self.api_secret) {
            (Some(_), Some(secret)) => Some(secret),
            _ => self.twilio_auth_token.as_deref(),
        }
    }
}

/// An `assistants` row.
pub type AssistantRow = TargetRow;

/// A `squads` row (issue 12), shaped like an `assistants` row.
pub type SquadRow = TargetRow;

/// The values vapictl writes into a `phone_numbers` row (insert or update).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowWrite {
    pub phone_number: String,
    pub friendly_name: String,
    pub vapi_phone_id: Option<String>,
    pub vapi_credential_id: Option<String>,
    pub twilio_account_sid: String,
    /// age ciphertext (armored) of the auth token or the API key's secret.
    pub twilio_auth_token: String,
    /// `vapictl_twilio_api_key` (see [`PhoneRow::api_key`]).
    pub api_key: Option<String>,
    /// `vapictl_twilio_api_secret` (see [`PhoneRow::api_secret`]): the secret's ciphertext on the
    /// API-key form, `None` on the auth-token form.
    pub api_secret: Option<String>,
    pub token_digest: Option<String>,
    pub assigned_assistant_id: Option<Uuid>,
    /// `vapictl_squad_id` (see [`PhoneRow::assigned_squad_id`]).
    pub assigned_squad_id: Option<Uuid>,
    pub notes: Option<String>,
    pub protected: bool,
    /// `vapictl_applied` (see [`PhoneRow::applied`]).
    pub applied: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Observed: Vapi.
// ---------------------------------------------------------------------------------------------

/// What Vapi holds for the organization behind the API key.
#[derive(Debug, Clone, Default)]
pub struct ObservedState {
    /// Every phone number of every provider, as listed (complete: see `vapi::list`).
    pub numbers: Vec<ObservedNumber>,
    /// Assistants by Vapi id.
    pub assistants: BTreeMap<String, ObservedAssistant>,
    /// Squads by Vapi id (`GET /squad`, complete).
    pub squads: BTreeMap<String, ObservedSquad>,
}

/// One phone number in Vapi, reduced to the fields vapictl reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedNumber {
    pub id: String,
    pub provider: String,
    pub number: Option<String>,
    pub name: Option<String>,
    pub assistant_id: Option<String>,
    pub squad_id: Option<String>,
    pub workflow_id: Option<String>,
    pub server: Option<ServerConfig>,
    /// Vapi's `server` object exactly as listed, with the sub-fields vapictl does not model:
    /// a PATCH of `server` starts from it.
    pub server_raw: Option<Map<String, Value>>,
    /// Absent in a response means Vapi's default, `true`.
    pub sms_enabled: Option<bool>,
    /// `fallbackDestination`, as [`canonical_json`].
    pub fallback_destination: Option<Value>,
    /// `hooks`, as [`canonical_json`].
    pub hooks: Option<Value>,
    /// `active`, `activating` or `blocked` (absent: not reported).
    pub status: Option<String>,
    pub twilio_account_sid: Option<String>,
    pub credential_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl ObservedNumber {
    pub fn sms_enabled_effective(&self) -> bool {
        self.sms_enabled.unwrap_or(true)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedAssistant {
    pub id: String,
    pub name: Option<String>,
}

/// A squad in Vapi: a routing target like an assistant (issue 12).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedSquad {
    pub id: String,
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_text_and_query_strings_are_masked() {
        assert_eq!(
            mask_numbers_in("number +14155551234 already exists"),
            "number …1234 already exists"
        );
        assert_eq!(
            mask_numbers_in("/v2/phone-number?search=%2B14155551234&limit=1000"),
            "/v2/phone-number?search=…1234&limit=1000"
        );
        assert_eq!(mask_numbers_in("search=%2b442071234567"), "search=…4567");
    }

    #[test]
    fn ids_counts_and_short_codes_are_left_alone() {
        for text in [
            "PATCH /phone-number/3f1c2b7e-0000-4000-8000-000000000001 (…1234)",
            "created at 1733190000, 12 items, +1 retry",
            "+123456 is too short",
            "ünïcode … text with %2 and + signs",
        ] {
            assert_eq!(mask_numbers_in(text), text);
        }
    }
}
