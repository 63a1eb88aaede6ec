//! Vapi's JSON shapes (wire DTOs), kept apart from the domain types in `state`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::plan::{VapiCreate, VapiPatch};
use crate::secrets::SecretValue;
use crate::state::{ObservedAssistant, ObservedNumber, ServerConfig};

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
    #[serde(default)]
    pub server: Option<ServerDto>,
    #[serde(default)]
    pub sms_enabled: Option<bool>,
    #[serde(default)]
    pub twilio_account_sid: Option<String>,
    #[serde(default)]
    pub credential_id: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerDto {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub credential_id: Option<String>,
    /// A number in the spec; may arrive as a float.
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
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
            server: d.server.and_then(|s| {
                s.url.map(|url| ServerConfig {
                    url,
                    credential_id: s.credential_id,
                    timeout_seconds: s.timeout_seconds.map(|t| t.round() as u32),
                })
            }),
            sms_enabled: d.sms_enabled,
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

fn server_json(s: &ServerConfig) -> Value {
    let mut m = Map::new();
    m.insert("url".into(), Value::String(s.url.clone()));
    if let Some(c) = &s.credential_id {
        m.insert("credentialId".into(), Value::String(c.clone()));
    }
    if let Some(t) = s.timeout_seconds {
        m.insert("timeoutSeconds".into(), Value::from(t));
    }
    Value::Object(m)
}

/// The POST body (CreateTwilioPhoneNumberDTO).
pub fn create_body(c: &VapiCreate, token: &SecretValue) -> Value {
    let mut m = Map::new();
    m.insert("provider".into(), "twilio".into());
    m.insert("number".into(), c.number.clone().into());
    m.insert("twilioAccountSid".into(), c.account_sid.clone().into());
    m.insert("twilioAuthToken".into(), token.expose().into());
    m.insert("name".into(), c.name.clone().into());
    if let Some(a) = &c.assistant_id {
        m.insert("assistantId".into(), a.clone().into());
    }
    if let Some(s) = &c.server {
        m.insert("server".into(), server_json(s));
    }
    m.insert("smsEnabled".into(), c.sms_enabled.into());
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
    if let Some(s) = &p.server {
        m.insert("server".into(), s.as_ref().map_or(Value::Null, server_json));
    }
    if let Some(b) = p.sms_enabled {
        m.insert("smsEnabled".into(), b.into());
    }
    if let Some(sid) = &p.account_sid {
        m.insert("twilioAccountSid".into(), sid.clone().into());
    }
    if let Some(t) = token {
        m.insert("twilioAuthToken".into(), t.expose().into());
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
