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
    /// the `assistants` table. Omitted or `null`: no assistant (Vapi sends `assistant-request` to
    /// the server URL instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant: Option<String>,
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

/// Twilio credentials. The auth token is age-encrypted.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TwilioSpec {
    /// Twilio Account SID: `AC` followed by 32 hexadecimal characters.
    #[schemars(regex(pattern = r"^AC[0-9a-fA-F]{32}$"))]
    pub account_sid: String,
    /// The Twilio auth token, age-encrypted and ASCII-armored (a YAML block string from
    /// `-----BEGIN AGE ENCRYPTED FILE-----` to `-----END AGE ENCRYPTED FILE-----`), as printed by
    /// `vapictl encrypt --recipient age1…` or `age -a -r age1…`. Plaintext is refused.
    #[schemars(regex(pattern = r"^\s*-----BEGIN AGE ENCRYPTED FILE-----"))]
    pub auth_token: String,
}

/// The number's webhook settings (Vapi's `server` object).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
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
