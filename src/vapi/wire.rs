//! Vapi's JSON shapes (wire DTOs), kept apart from the domain types in `state`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::plan::{VapiCreate, VapiPatch};
use crate::secrets::SecretValue;
use crate::state::{HeaderValue, ObservedAssistant, ObservedNumber, ServerConfig, canonical_json};

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

/// The POST body (CreateTwilioPhoneNumberDTO).
pub fn create_body(c: &VapiCreate, token: &SecretValue) -> Value {
    let mut m = Map::new();
    m.insert("provider".into(), "twilio".into());
    m.insert("number".into(), c.number.clone().into());
    m.insert("twilioAccountSid".into(), c.account_sid.clone().into());
    match &c.api_key {
        Some(key) => {
            m.insert("twilioApiKey".into(), key.clone().into());
            m.insert("twilioApiSecret".into(), token.expose().into());
        }
        None => {
            m.insert("twilioAuthToken".into(), token.expose().into());
        }
    }
    m.insert("name".into(), c.name.clone().into());
    if let Some(a) = &c.assistant_id {
        m.insert("assistantId".into(), a.clone().into());
    }
    if let Some(s) = &c.server {
        m.insert("server".into(), server_json(s, None, &[]));
    }
    m.insert("smsEnabled".into(), c.sms_enabled.into());
    if let Some(f) = &c.fallback_destination {
        m.insert("fallbackDestination".into(), f.clone());
    }
    if let Some(h) = &c.hooks {
        m.insert("hooks".into(), h.clone());
    }
    Value::Object(m)
}

/// The PATCH body (UpdateTwilioPhoneNumberDTO): only the fields that changed. Clearing sends
/// `null` (the contract marks this unconfirmed; the applier checks Vapi's answer).
pub fn patch_body(p: &VapiPatch, token: Option<&SecretValue>) -> Value {
    let mut m = Map::new();
    if let Some(n) = &p.name {
        m.insert("name".into(), n.clone().into());
    }
    if let Some(a) = &p.assistant_id {
        m.insert(
            "assistantId".into(),
            a.clone().map_or(Value::Null, Value::String),
        );
    }
    if let Some(sq) = &p.squad_id {
        m.insert(
            "squadId".into(),
            sq.clone().map_or(Value::Null, Value::String),
        );
    }
    if let Some(s) = &p.server {
        m.insert(
            "server".into(),
            s.as_ref().map_or(Value::Null, |s| {
                server_json(s, p.server_base.as_ref(), &p.server_clear)
            }),
        );
    }
    if let Some(b) = p.sms_enabled {
        m.insert("smsEnabled".into(), b.into());
    }
    if let Some(f) = &p.fallback_destination {
        m.insert(
            "fallbackDestination".into(),
            f.clone().unwrap_or(Value::Null),
        );
    }
    if let Some(h) = &p.hooks {
        // Vapi's hooks are an array; clearing sends `[]` (an empty list is what "no hooks" is).
        m.insert(
            "hooks".into(),
            h.clone().unwrap_or_else(|| Value::Array(Vec::new())),
        );
    }
    if let Some(sid) = &p.account_sid {
        m.insert("twilioAccountSid".into(), sid.clone().into());
    }
    if let Some(t) = token {
        // The secret goes with its form; on a change of form the other form's fields are
        // cleared (Vapi ignores an API key while an auth token is set).
        match &p.api_key {
            Some(key) => {
                m.insert("twilioApiKey".into(), key.clone().into());
                m.insert("twilioApiSecret".into(), t.expose().into());
                if p.switch_form {
                    m.insert("twilioAuthToken".into(), Value::Null);
                }
            }
            None => {
                m.insert("twilioAuthToken".into(), t.expose().into());
                if p.switch_form {
                    m.insert("twilioApiKey".into(), Value::Null);
                    m.insert("twilioApiSecret".into(), Value::Null);
                }
            }
        }
    }
    Value::Object(m)
}

/// A list response: a plain array (the documented shape) or `{results: [...]}`.
#[derive(Debug, Serialize, Deserialize)]
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
        let body = patch_body(&p, None);
        assert_eq!(body, serde_json::json!({"name": "n", "assistantId": null}));
    }
}
