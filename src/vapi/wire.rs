//! Vapi's JSON shapes (wire DTOs), kept apart from the domain types in `state`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    pub server: Option<Option<ServerBody<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sms_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub twilio_account_sid: Option<&'a str>,
    /// Write-only in Vapi; the one place a token's plaintext is serialized.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_secret"
    )]
    pub twilio_auth_token: Option<&'a SecretValue>,
}

/// `server` as vapictl sends it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerBody<'a> {
    pub url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
}

impl<'a> From<&'a ServerConfig> for ServerBody<'a> {
    fn from(s: &'a ServerConfig) -> Self {
        ServerBody {
            url: &s.url,
            credential_id: s.credential_id.as_deref(),
            timeout_seconds: s.timeout_seconds,
        }
    }
}

/// The POST body (CreateTwilioPhoneNumberDTO): every field vapictl manages, an unset assistant
/// and server left out.
#[derive(Debug, Serialize)]
pub struct CreatePhoneNumber<'a> {
    provider: &'static str,
    number: &'a str,
    #[serde(flatten)]
    fields: PhoneNumberFields<'a>,
}

impl<'a> CreatePhoneNumber<'a> {
    pub fn new(c: &'a VapiCreate, token: &'a SecretValue) -> Self {
        CreatePhoneNumber {
            provider: "twilio",
            number: &c.number,
            fields: PhoneNumberFields {
                name: Some(&c.name),
                assistant_id: c.assistant_id.as_deref().map(Some),
                server: c.server.as_ref().map(|s| Some(s.into())),
                sms_enabled: Some(c.sms_enabled),
                twilio_account_sid: Some(&c.account_sid),
                twilio_auth_token: Some(token),
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
        UpdatePhoneNumber(PhoneNumberFields {
            name: p.name.as_deref(),
            assistant_id: p.assistant_id.as_ref().map(Option::as_deref),
            server: p.server.as_ref().map(|s| s.as_ref().map(ServerBody::from)),
            sms_enabled: p.sms_enabled,
            twilio_account_sid: p.account_sid.as_deref(),
            twilio_auth_token: token,
        })
    }
}

/// [`SecretValue`] has no `Serialize` on purpose: only a request body may expose it.
fn expose_secret<S: serde::Serializer>(
    secret: &Option<&SecretValue>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(v) => s.serialize_str(v.expose()),
        None => s.serialize_none(),
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
            number: "+14155550002".into(),
            name: "Main".into(),
            assistant_id: None,
            server: None,
            sms_enabled: false,
            account_sid: "AC0123456789abcdef0123456789abcdef".into(),
            token: crate::state::EncryptedToken {
                armored: String::new(),
                plaintext: None,
            },
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
                url: "https://example.com/hook".into(),
                credential_id: None,
                timeout_seconds: Some(20),
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
