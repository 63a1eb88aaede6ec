//! Vapi's JSON shapes (wire DTOs), kept apart from the domain types in `state`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::plan::{VapiCreate, VapiPatch};
use crate::secrets::SecretValue;
use crate::state::{
    HeaderValue, ObservedAssistant, ObservedNumber, ObservedSquad, ServerConfig, canonical_json,
};

/// A phone number as any provider returns it; unknown fields are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhoneNumberDto {
    pub id: String,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub number: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub assistant_id: Option<String>,
    #[serde(default)]
    pub squad_id: Option<String>,
    #[serde(default)]
    pub workflow_id: Option<String>,
    /// Kept whole: a PATCH of `server` starts from it, so sub-fields vapictl does not model
    /// (and any Vapi adds later) survive.
    #[serde(default)]
    pub server: Option<Map<String, Value>>,
    #[serde(default)]
    pub sms_enabled: Option<bool>,
    #[serde(default)]
    pub fallback_destination: Option<Value>,
    #[serde(default)]
    pub hooks: Option<Value>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub twilio_account_sid: Option<String>,
    #[serde(default)]
    pub credential_id: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// The modelled part of Vapi's `server` object (what vapictl compares), read leniently: a
/// sub-field of an unexpected type reads as unset rather than failing the listing.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerDto {
    #[serde(default)]
    pub url: Option<Value>,
    #[serde(default)]
    pub credential_id: Option<Value>,
    /// A number in the spec; may arrive as a float.
    #[serde(default)]
    pub timeout_seconds: Option<Value>,
    #[serde(default)]
    pub headers: Option<Value>,
    #[serde(default)]
    pub static_ip_addresses_enabled: Option<Value>,
    #[serde(default)]
    pub encrypted_paths: Option<Value>,
    #[serde(default)]
    pub backoff_plan: Option<Value>,
}

impl ServerDto {
    /// The modelled view; `None` without a URL (a server without one sends nothing).
    fn config(raw: &Map<String, Value>) -> Option<ServerConfig> {
        let d: ServerDto = serde_json::from_value(Value::Object(raw.clone())).unwrap_or_default();
        let text = |v: Option<Value>| v.and_then(|v| v.as_str().map(str::to_owned));
        let url = text(d.url)?;
        Some(ServerConfig {
            url,
            credential_id: text(d.credential_id),
            timeout_seconds: d
                .timeout_seconds
                .and_then(|t| t.as_f64())
                .map(|t| t.round() as u32),
            headers: d.headers.and_then(|h| match h {
                Value::Object(m) => Some(
                    m.into_iter()
                        .map(|(k, v)| {
                            let v = match v {
                                Value::String(s) => s,
                                other => other.to_string(),
                            };
                            (k, HeaderValue::Plain(v))
                        })
                        .collect(),
                ),
                _ => None,
            }),
            static_ip_addresses_enabled: d.static_ip_addresses_enabled.and_then(|v| v.as_bool()),
            encrypted_paths: d.encrypted_paths.and_then(|v| {
                v.as_array().map(|a| {
                    a.iter()
                        .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned))
                        .collect()
                })
            }),
            backoff_plan: d.backoff_plan.filter(|b| !b.is_null()).map(canonical_json),
        })
    }
}

impl From<PhoneNumberDto> for ObservedNumber {
    fn from(d: PhoneNumberDto) -> Self {
        ObservedNumber {
            id: d.id,
            provider: d.provider.unwrap_or_else(|| "unknown".into()),
            number: d.number,
            name: d.name,
            assistant_id: d.assistant_id,
            squad_id: d.squad_id,
            workflow_id: d.workflow_id,
            server: d.server.as_ref().and_then(ServerDto::config),
            server_raw: d.server,
            sms_enabled: d.sms_enabled,
            fallback_destination: d
                .fallback_destination
                .filter(|v| !v.is_null())
                .map(canonical_json),
            hooks: d.hooks.filter(|v| !v.is_null()).map(canonical_json),
            status: d.status,
            twilio_account_sid: d.twilio_account_sid,
            credential_id: d.credential_id,
            created_at: d.created_at.unwrap_or_default(),
            updated_at: d.updated_at.unwrap_or_default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssistantDto {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

impl From<AssistantDto> for ObservedAssistant {
    fn from(d: AssistantDto) -> Self {
        ObservedAssistant {
            id: d.id,
            name: d.name,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SquadDto {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

impl From<SquadDto> for ObservedSquad {
    fn from(d: SquadDto) -> Self {
        ObservedSquad {
            id: d.id,
            name: d.name,
        }
    }
}

/// Vapi's (NestJS) error body: `message` is a string or a list of strings.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub message: Option<Value>,
    #[serde(default)]
    pub error: Option<String>,
}

impl ErrorBody {
    pub fn messages(&self) -> Vec<String> {
        match &self.message {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
            Some(other) => vec![other.to_string()],
            None => self.error.clone().into_iter().collect(),
        }
    }
}

/// A `/v2/phone-number` page.
#[derive(Debug, Deserialize)]
pub struct V2Page {
    #[serde(default)]
    pub results: Vec<Value>,
    pub metadata: PageMeta,
}

/// `/v2/phone-number` paging metadata (only what vapictl reads).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageMeta {
    pub total_items: u64,
    #[serde(default)]
    pub total_pages: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// Request bodies. Each field Vapi takes is declared once, in [`PhoneNumberFields`], which both the
// create and the update body carry: adding a field vapictl manages is one line there and one line
// in each `From` below.
// ---------------------------------------------------------------------------------------------

/// The fields of a Twilio phone number that vapictl writes, shared by the POST and the PATCH body.
/// A field left `None` is not sent; `Some(None)` sends `null`, which clears it (the contract marks
/// clearing unconfirmed; the applier checks Vapi's answer).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhoneNumberFields<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assistant_id: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub squad_id: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<Option<ServerBody<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sms_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_destination: Option<Option<&'a Value>>,
    /// Vapi's hooks are an array; clearing sends `[]` (an empty list is what "no hooks" is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hooks: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub twilio_account_sid: Option<&'a str>,
    /// Write-only in Vapi, like the two below; the only places a secret's plaintext is serialized.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_secret"
    )]
    pub twilio_auth_token: Option<Option<&'a SecretValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub twilio_api_key: Option<Option<&'a str>>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_secret"
    )]
    pub twilio_api_secret: Option<Option<&'a SecretValue>>,
}

/// `hooks: []`, what clearing the hooks sends.
static NO_HOOKS: Value = Value::Array(Vec::new());

/// `server` as vapictl sends it: the spec's [`ServerConfig`] written over Vapi's current object
/// (`base`), with `clear` removed. Built only when serialized, so that an encrypted header's
/// plaintext appears in the request body and nowhere else (its `Debug` shows none).
#[derive(Debug)]
pub struct ServerBody<'a> {
    pub config: &'a ServerConfig,
    pub base: Option<&'a Map<String, Value>>,
    pub clear: &'a [String],
}

impl Serialize for ServerBody<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        server_json(self.config, self.base, self.clear).serialize(s)
    }
}

impl<'a> From<&'a ServerConfig> for ServerBody<'a> {
    fn from(config: &'a ServerConfig) -> Self {
        ServerBody {
            config,
            base: None,
            clear: &[],
        }
    }
}

/// The `server` object to send: Vapi's current object (`base`, when there is one) with what the
/// spec owns written over it, so that sub-fields vapictl does not model are kept. `clear` names
/// sub-fields vapictl set before and the spec no longer declares: they are removed.
///
/// An encrypted header whose plaintext is unknown is sent as nothing: the applier refuses such a
/// patch before it gets here ([`ServerConfig::needs_key`]).
fn server_json(s: &ServerConfig, base: Option<&Map<String, Value>>, clear: &[String]) -> Value {
    let mut m = base.cloned().unwrap_or_default();
    m.insert("url".into(), Value::String(s.url.clone()));
    let mut put = |k: &str, v: Option<Value>| match v {
        Some(v) => {
            m.insert(k.into(), v);
        }
        None => {
            m.remove(k);
        }
    };
    put("credentialId", s.credential_id.clone().map(Value::String));
    put("timeoutSeconds", s.timeout_seconds.map(Value::from));
    if let Some(h) = &s.headers {
        let headers: Map<String, Value> = h
            .iter()
            .filter_map(|(k, v)| {
                let v = match v {
                    HeaderValue::Plain(p) => p.clone(),
                    HeaderValue::Encrypted { plaintext, .. } => {
                        plaintext.as_ref()?.expose().to_owned()
                    }
                };
                Some((k.clone(), Value::String(v)))
            })
            .collect();
        m.insert("headers".into(), Value::Object(headers));
    }
    if let Some(b) = s.static_ip_addresses_enabled {
        m.insert("staticIpAddressesEnabled".into(), b.into());
    }
    if let Some(p) = &s.encrypted_paths {
        m.insert("encryptedPaths".into(), p.clone().into());
    }
    if let Some(b) = &s.backoff_plan {
        m.insert("backoffPlan".into(), b.clone());
    }
    for k in clear {
        m.remove(k);
    }
    Value::Object(m)
}

/// The two secret fields of the form `api_key` says (the auth token without one), and, on a
/// change of form (`switch`), the other form's fields cleared (Vapi ignores an API key while an
/// auth token is set).
type SecretFields<'a> = (
    Option<Option<&'a SecretValue>>,
    Option<Option<&'a str>>,
    Option<Option<&'a SecretValue>>,
);

fn secret_fields<'a>(
    api_key: Option<&'a str>,
    secret: &'a SecretValue,
    switch: bool,
) -> SecretFields<'a> {
    match api_key {
        Some(key) => (switch.then_some(None), Some(Some(key)), Some(Some(secret))),
        None => (
            Some(Some(secret)),
            switch.then_some(None),
            switch.then_some(None),
        ),
    }
}

/// The POST body (CreateTwilioPhoneNumberDTO): every field vapictl manages, an unset assistant,
/// squad and server left out.
#[derive(Debug, Serialize)]
pub struct CreatePhoneNumber<'a> {
    provider: &'static str,
    number: &'a str,
    #[serde(flatten)]
    fields: PhoneNumberFields<'a>,
}

impl<'a> CreatePhoneNumber<'a> {
    pub fn new(c: &'a VapiCreate, token: &'a SecretValue) -> Self {
        let (twilio_auth_token, twilio_api_key, twilio_api_secret) =
            secret_fields(c.api_key.as_deref(), token, false);
        CreatePhoneNumber {
            provider: "twilio",
            number: &c.number,
            fields: PhoneNumberFields {
                name: Some(&c.name),
                assistant_id: c.assistant_id.as_deref().map(Some),
                squad_id: c.squad_id.as_deref().map(Some),
                server: c.server.as_ref().map(|s| Some(s.into())),
                sms_enabled: Some(c.sms_enabled),
                fallback_destination: c.fallback_destination.as_ref().map(Some),
                hooks: c.hooks.as_ref(),
                twilio_account_sid: Some(&c.account_sid),
                twilio_auth_token,
                twilio_api_key,
                twilio_api_secret,
            },
        }
    }
}

/// The PATCH body (UpdateTwilioPhoneNumberDTO): only the fields that changed.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct UpdatePhoneNumber<'a>(PhoneNumberFields<'a>);

impl<'a> UpdatePhoneNumber<'a> {
    pub fn new(p: &'a VapiPatch, token: Option<&'a SecretValue>) -> Self {
        let (twilio_auth_token, twilio_api_key, twilio_api_secret) = match token {
            Some(t) => secret_fields(p.api_key.as_deref(), t, p.switch_form),
            None => (None, None, None),
        };
        UpdatePhoneNumber(PhoneNumberFields {
            name: p.name.as_deref(),
            assistant_id: p.assistant_id.as_ref().map(Option::as_deref),
            squad_id: p.squad_id.as_ref().map(Option::as_deref),
            server: p.server.as_ref().map(|s| {
                s.as_ref().map(|config| ServerBody {
                    config,
                    base: p.server_base.as_ref(),
                    clear: &p.server_clear,
                })
            }),
            sms_enabled: p.sms_enabled,
            fallback_destination: p.fallback_destination.as_ref().map(Option::as_ref),
            hooks: p.hooks.as_ref().map(|h| h.as_ref().unwrap_or(&NO_HOOKS)),
            twilio_account_sid: p.account_sid.as_deref(),
            twilio_auth_token,
            twilio_api_key,
            twilio_api_secret,
        })
    }
}

/// [`SecretValue`] has no `Serialize` on purpose: only a request body may expose it.
fn expose_secret<S: serde::Serializer>(
    secret: &Option<Option<&SecretValue>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(Some(v)) => s.serialize_str(v.expose()),
        _ => s.serialize_none(),
    }
}

/// A list response: a plain array (the documented shape) or `{results: [...]}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ListShape {
    Plain(Vec<Value>),
    Wrapped { results: Vec<Value> },
}

impl ListShape {
    pub fn into_items(self) -> Vec<Value> {
        match self {
            ListShape::Plain(v) => v,
            ListShape::Wrapped { results } => results,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_list_shapes_decode() {
        let plain: ListShape = serde_json::from_str(r#"[{"id":"a"}]"#).unwrap();
        let wrapped: ListShape =
            serde_json::from_str(r#"{"results":[{"id":"a"},{"id":"b"}],"metadata":{}}"#).unwrap();
        assert_eq!(plain.into_items().len(), 1);
        assert_eq!(wrapped.into_items().len(), 2);
    }

    #[test]
    fn error_messages_decode_as_string_or_list() {
        let one: ErrorBody =
            serde_json::from_str(r#"{"message":"nope","statusCode":404}"#).unwrap();
        let many: ErrorBody =
            serde_json::from_str(r#"{"message":["a","b"],"error":"Bad Request"}"#).unwrap();
        assert_eq!(one.messages(), vec!["nope"]);
        assert_eq!(many.messages(), vec!["a", "b"]);
    }

    #[test]
    fn patch_body_clears_with_null_and_sends_only_changes() {
        let p = VapiPatch {
            assistant_id: Some(None),
            name: Some("n".into()),
            ..VapiPatch::default()
        };
        let body = serde_json::to_value(UpdatePhoneNumber::new(&p, None)).unwrap();
        assert_eq!(body, serde_json::json!({"name": "n", "assistantId": null}));
    }

    fn create() -> VapiCreate {
        VapiCreate {
            squad_id: None,
            number: "+14155550002".into(),
            name: "Main".into(),
            assistant_id: None,
            server: None,
            sms_enabled: false,
            fallback_destination: None,
            hooks: None,
            account_sid: "AC0123456789abcdef0123456789abcdef".into(),
            token: crate::state::EncryptedToken {
                armored: String::new(),
                plaintext: None,
            },
            api_key: None,
        }
    }

    #[test]
    fn create_body_sends_every_managed_field_and_leaves_unset_ones_out() {
        let token = SecretValue::new("t".repeat(32));
        let c = create();
        let body = serde_json::to_value(CreatePhoneNumber::new(&c, &token)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "provider": "twilio",
                "number": "+14155550002",
                "name": "Main",
                "smsEnabled": false,
                "twilioAccountSid": "AC0123456789abcdef0123456789abcdef",
                "twilioAuthToken": "t".repeat(32),
            })
        );
        let c = VapiCreate {
            assistant_id: Some("a1".into()),
            server: Some(ServerConfig {
                timeout_seconds: Some(20),
                ..ServerConfig::with_url("https://example.com/hook")
            }),
            ..create()
        };
        let body = serde_json::to_value(CreatePhoneNumber::new(&c, &token)).unwrap();
        assert_eq!(body["assistantId"], "a1");
        assert_eq!(
            body["server"],
            serde_json::json!({"url": "https://example.com/hook", "timeoutSeconds": 20})
        );
    }

    #[test]
    fn patch_body_clears_the_server_with_null_and_carries_a_new_token() {
        let token = SecretValue::new("n".repeat(32));
        let p = VapiPatch {
            server: Some(None),
            sms_enabled: Some(true),
            ..VapiPatch::default()
        };
        let body = serde_json::to_value(UpdatePhoneNumber::new(&p, Some(&token))).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"server": null, "smsEnabled": true, "twilioAuthToken": "n".repeat(32)})
        );
        let shown = format!("{:?}", UpdatePhoneNumber::new(&p, Some(&token)));
        assert!(!shown.contains(&"n".repeat(32)), "{shown}");
    }
}
