//! The spec as written: one owner's phone numbers in YAML (format version 1), with the source
//! locations of every field so that problems can be reported as `file:line:col`.

mod load;
mod locations;
mod structure;
mod write;

pub use load::{LoadedSpec, SpecError, load_file, load_str};
pub use locations::{Location, Locations};
pub use structure::StructureProblem;
pub use write::to_yaml;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The largest spec file vapictl reads; larger files are refused before parsing.
pub const MAX_SPEC_BYTES: u64 = 8 * 1024 * 1024;

/// The spec format version this vapictl understands.
pub const SPEC_VERSION: u64 = 1;

/// A vapictl spec: the Twilio phone numbers one owner keeps in Vapi, declared in full.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "vapictl spec")]
pub struct Spec {
    /// Spec format version. Must be `1`.
    #[schemars(range(min = 1, max = 1))]
    pub version: u64,
    /// The owner's user id (`users.id` in the application database, a UUID). Every database row
    /// vapictl writes carries it as `user_id`, and only that owner's rows are ever changed.
    #[schemars(regex(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ))]
    pub owner: String,
    /// Values that apply to every entry of `phoneNumbers` that does not set its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Defaults>,
    /// Every phone number the owner keeps. A number recorded for the owner but missing here is
    /// deleted from Vapi and the database (unless protected; large deletions need confirmation).
    pub phone_numbers: Vec<PhoneNumberSpec>,
}

/// Defaults for all phone numbers in this spec.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Defaults {
    /// Twilio account used by numbers that have no `twilio` block of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio: Option<TwilioSpec>,
    /// Default for `smsEnabled`. When neither is set, Vapi's default (`true`) applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_enabled: Option<bool>,
    /// The assistant that answers numbers whose entry names neither `assistant` nor `squad`.
    /// Not with `defaults.squad`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant: Option<String>,
    /// The squad that answers numbers whose entry names neither `assistant` nor `squad`. Not
    /// with `defaults.assistant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub squad: Option<String>,
}

/// One Twilio phone number imported into Vapi.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PhoneNumberSpec {
    /// The number in strict E.164: `+`, country code and subscriber number, no spaces
    /// (for example `+14155551234`). Quote it in YAML.
    #[schemars(regex(pattern = r"^\+[1-9][0-9]{6,14}$"))]
    pub number: String,
    /// Label shown in the Vapi dashboard and stored as `friendly_name`: 1 to 40 characters
    /// (Vapi's limit; longer names are an error, never truncated).
    #[schemars(length(min = 1, max = 40))]
    pub name: String,
    /// The assistant that answers inbound calls: the `name` or `id` of one of the owner's rows in
    /// the `assistants` table. Not with `squad`. Omitted (and no `squad`): the routing target of
    /// `defaults`, else none (Vapi sends `assistant-request` to the server URL instead); `null`:
    /// none, whatever `defaults` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant: Option<String>,
    /// The squad that answers inbound calls instead of an assistant: the `name` or `id` of one of
    /// the owner's rows in the `squads` table. Not with `assistant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub squad: Option<String>,
    /// Free text kept in the database only (`notes` column); never sent to Vapi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Twilio account that owns the number. Optional when `defaults.twilio` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio: Option<TwilioSpec>,
    /// Webhook target for this number (Vapi's `server`). Omitted: the number has none, and
    /// calls fall back to the assistant's or the organization's server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerSpec>,
    /// Whether Vapi may take over the number's SMS webhook in Twilio. Falls back to
    /// `defaults.smsEnabled`, then to Vapi's default (`true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_enabled: Option<bool>,
    /// Where an inbound call goes when the assistant-request webhook fails (Vapi's
    /// `fallbackDestination`): a phone number or a SIP URI. Owned as a whole when present;
    /// omitted: vapictl leaves Vapi's value alone (unless it set one before: then it is removed,
    /// as a visible line of the plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_destination: Option<TransferDestination>,
    /// The number's hooks (`call.ringing`, `call.ending`). Owned as a whole list when present
    /// (`[]` removes every hook); omitted: as for `fallbackDestination`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Vec<Hook>>,
    /// `true`: vapictl never deletes this number, even after its entry is removed from the spec.
    /// Set it to `false` and apply before removing a protected number.
    #[serde(default, skip_serializing_if = "is_false")]
    pub protected: bool,
    /// `true`: the number must not exist; it is released from Vapi and its row deleted. This is
    /// the explicit, reviewable way to delete (no deletion threshold applies). The entry can be
    /// dropped after the apply.
    #[serde(default, skip_serializing_if = "is_false")]
    pub absent: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Twilio credentials: the account's auth token, or an API key and its secret (exactly one of
/// the two forms). Secrets are age-encrypted.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TwilioSpec {
    /// Twilio Account SID: `AC` followed by 32 hexadecimal characters.
    #[schemars(regex(pattern = r"^AC[0-9a-fA-F]{32}$"))]
    pub account_sid: String,
    /// The Twilio auth token, age-encrypted and ASCII-armored (a YAML block string from
    /// `-----BEGIN AGE ENCRYPTED FILE-----` to `-----END AGE ENCRYPTED FILE-----`), as printed by
    /// `vapictl encrypt --recipient age1…` or `age -a -r age1…`. Plaintext is refused. Not with
    /// `apiKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\s*-----BEGIN AGE ENCRYPTED FILE-----"))]
    pub auth_token: Option<String>,
    /// A Twilio API key SID (`SK` followed by 32 hexadecimal characters), the alternative to
    /// `authToken` for accounts whose policies forbid the root token. Needs `apiSecret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^SK[0-9a-fA-F]{32}$"))]
    pub api_key: Option<String>,
    /// The API key's secret, age-encrypted like `authToken`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\s*-----BEGIN AGE ENCRYPTED FILE-----"))]
    pub api_secret: Option<String>,
}

/// The number's webhook settings (Vapi's `server` object).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerSpec {
    /// Webhook URL (`https://…`; `http://` only for localhost).
    pub url: String,
    /// Id of a Vapi credential that authenticates webhook requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    /// Webhook request timeout in seconds, 1 to 300 (Vapi's default: 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 300))]
    pub timeout_seconds: Option<u32>,
    /// Extra HTTP headers Vapi sends with each webhook request. A value may be an age
    /// ciphertext (ASCII-armored, as `vapictl encrypt` prints it) for `Authorization`-style
    /// secrets: it is decrypted like a token and never shown. Owned as a whole map when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// Send webhooks from Vapi's static IP addresses (Vapi's default: `false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_ip_addresses_enabled: Option<bool>,
    /// Paths in the webhook body that Vapi encrypts (with a credential's encryption plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_paths: Option<Vec<String>>,
    /// How Vapi retries a failing webhook (Vapi's default: no retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_plan: Option<BackoffPlan>,
}

/// Vapi's `BackoffPlan`: how a failing webhook is retried.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackoffPlan {
    /// `fixed` or `exponential`.
    #[serde(rename = "type")]
    pub kind: BackoffType,
    /// Retries after the first attempt, 0 to 10.
    #[schemars(range(min = 0, max = 10))]
    pub max_retries: u32,
    /// Delay before the first retry, 0 to 10 seconds.
    #[schemars(range(min = 0, max = 10))]
    pub base_delay_seconds: f64,
    /// HTTP status codes that are never retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded_status_codes: Option<Vec<u16>>,
}

/// The retry schedule of a [`BackoffPlan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackoffType {
    Fixed,
    Exponential,
}

/// A transfer destination (Vapi's `TransferDestinationNumber` / `TransferDestinationSip`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum TransferDestination {
    /// A phone number.
    Number(NumberDestination),
    /// A SIP URI.
    Sip(SipDestination),
}

/// `type: number`: a phone number, in strict E.164 unless `numberE164CheckEnabled: false`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NumberDestination {
    /// The destination, in E.164 (`+14155550123`); 3 to 40 characters.
    #[schemars(length(min = 3, max = 40))]
    pub number: String,
    /// `false` lets `number` be a dial string that is not E.164 (Vapi's default: `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_e164_check_enabled: Option<bool>,
    /// Digits dialled after the call connects, 1 to 10 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 10))]
    pub extension: Option<String>,
    /// What the caller hears before the transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A description for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The caller id shown to the destination, at most 40 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 40))]
    pub caller_id: Option<String>,
}

/// `type: sip`: a SIP URI.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SipDestination {
    /// The destination, `sip:…` or `sips:…`.
    #[schemars(regex(pattern = r"^sips?:.+"))]
    pub sip_uri: String,
    /// Extra SIP headers sent with the transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_headers: Option<BTreeMap<String, String>>,
    /// What the caller hears before the transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A description for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The caller id shown to the destination, at most 40 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 40))]
    pub caller_id: Option<String>,
}

/// A phone-number hook (Vapi's `PhoneNumberHookCallRinging` / `PhoneNumberHookCallEnding`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "on", deny_unknown_fields)]
pub enum Hook {
    /// While the call rings: `do` lists the actions (Vapi runs the first).
    #[serde(rename = "call.ringing")]
    CallRinging {
        /// Only for callers whose number starts with one of these prefixes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filters: Option<Vec<RingingFilter>>,
        /// The actions (Vapi runs only the first).
        #[serde(rename = "do")]
        #[schemars(length(min = 1))]
        actions: Vec<HookAction>,
    },
    /// When the call ends because the assistant request failed.
    #[serde(rename = "call.ending")]
    CallEnding {
        /// Only for these ended reasons.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filters: Option<Vec<EndingFilter>>,
        /// The action.
        #[serde(rename = "do", default, skip_serializing_if = "Option::is_none")]
        action: Option<HookAction>,
    },
}

/// `{type: startsWith, key: number, startsWith: [...]}`: caller-number prefixes (digits, no `+`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RingingFilter {
    /// Always `startsWith`.
    #[serde(rename = "type")]
    pub kind: StartsWith,
    /// Always `number`.
    pub key: NumberKey,
    /// At most 20 prefixes of at most 20 characters.
    #[schemars(length(max = 20))]
    pub starts_with: Vec<String>,
}

/// The literal `startsWith`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum StartsWith {
    #[serde(rename = "startsWith")]
    StartsWith,
}

/// The literal `number`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum NumberKey {
    #[serde(rename = "number")]
    Number,
}

/// `{type: oneOf, key: call.endedReason, oneOf: [...]}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndingFilter {
    /// Always `oneOf`.
    #[serde(rename = "type")]
    pub kind: OneOfKind,
    /// Always `call.endedReason`.
    pub key: EndedReasonKey,
    /// The ended reasons the hook runs for.
    pub one_of: Vec<EndedReason>,
}

/// The literal `oneOf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum OneOfKind {
    #[serde(rename = "oneOf")]
    OneOf,
}

/// The literal `call.endedReason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum EndedReasonKey {
    #[serde(rename = "call.endedReason")]
    EndedReason,
}

/// The assistant-request failures a `call.ending` hook can filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EndedReason {
    AssistantRequestFailed,
    AssistantRequestReturnedError,
    AssistantRequestReturnedUnspeakableError,
    AssistantRequestReturnedInvalidAssistant,
    AssistantRequestReturnedNoAssistant,
    AssistantRequestReturnedForwardingPhoneNumber,
}

/// What a hook does.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum HookAction {
    /// Transfer the call.
    Transfer {
        /// Where to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        destination: Option<TransferDestination>,
    },
    /// Say something, at most 4000 characters.
    Say {
        #[schemars(length(max = 4000))]
        exact: String,
    },
}

/// The JSON Schema of the spec format, as committed in `schema/vapictl.schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Spec);
    let mut out = serde_json::to_string_pretty(&schema).expect("schema serializes");
    out.push('\n');
    out
}

/// A spec's entries by field name, for code that wants maps (import, tests).
pub type Entries = BTreeMap<String, PhoneNumberSpec>;
