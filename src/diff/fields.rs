//! The field comparison: every field a number has is compared in one place, [`judge`], which
//! yields whether Vapi differs, whether the row differs, the cause and where the change goes.
//!
//! | Vapi differs | row differs | cause |
//! |---|---|---|
//! | yes | yes (or not stored in the row) and the spec sets what Vapi lacks | spec edit |
//! | yes | yes | spec edit: the spec moved away from what both recorded |
//! | yes | no | changed in Vapi outside vapictl |
//! | no | yes | changed in the database outside vapictl (fields Vapi also has) |
//! | — | yes | row-only fields: spec edit (`notes`, `protected`), or what the row failed to keep up with |
//!
//! `server` and `smsEnabled` have no column of the application's, so vapictl keeps what it last
//! applied to them in its own column, `vapictl_applied` ([`Applied`]): a spec that differs from
//! it is a spec edit; a spec that equals it while Vapi differs means an edit in Vapi. Rows that
//! vapictl has not written since that column exists have no record; for them, when Vapi holds
//! nothing of its own (no `server`; `smsEnabled` at Vapi's default `true`) and the spec sets a
//! value, the spec added it (spec edit); otherwise someone set it in Vapi.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::plan::{Cause, FieldChange, Target};
use crate::state::{DesiredNumber, HeaderValue, ServerConfig};

/// Vapi's default webhook timeout: an observed `20` equals an unset `timeoutSeconds`.
const DEFAULT_SERVER_TIMEOUT: u32 = 20;

/// `server` as compared: an explicit default timeout equals an unset one.
pub(crate) fn normalized_server(s: Option<&ServerConfig>) -> Option<ServerConfig> {
    s.map(|s| ServerConfig {
        timeout_seconds: s.timeout_seconds.filter(|t| *t != DEFAULT_SERVER_TIMEOUT),
        ..s.clone()
    })
}

/// What vapictl applied to the fields only Vapi keeps, as the row's `vapictl_applied` stores it
/// (JSON: `{"server":…,"smsEnabled":…,"fallbackDestination":…,"hooks":…}`). Encrypted header
/// values are recorded as their ciphertext, never in plaintext. Fields the spec did not declare
/// are absent; one that was recorded and is no longer declared is removed from Vapi (a visible
/// line of the plan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Applied {
    pub server: Option<ServerConfig>,
    pub sms_enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_destination: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Value>,
}

impl Applied {
    pub(crate) fn of(d: &DesiredNumber) -> Applied {
        Applied {
            server: normalized_server(d.server.as_ref()),
            sms_enabled: d.sms_enabled,
            fallback_destination: d.fallback_destination.clone(),
            hooks: d.hooks.clone(),
        }
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain data serializes")
    }

    /// `None` for a row without a record (or one that cannot be read: treated alike).
    pub(crate) fn of_row(stored: Option<&str>) -> Option<Applied> {
        serde_json::from_str(stored?).ok()
    }
}

/// Where a field lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Home {
    /// In Vapi and in a column of the row (`name`/`friendly_name`, …).
    VapiAndRow,
    /// In Vapi only (`server`, `smsEnabled`).
    VapiOnly,
    /// In the row only (`notes`, `protected`, bookkeeping columns).
    RowOnly,
}

/// One field: its names in Vapi and in the row, and where it lives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub vapi_name: &'static str,
    pub row_name: &'static str,
    pub home: Home,
    /// For row-only fields: why the row would differ.
    pub row_cause: Cause,
}

const fn both(vapi_name: &'static str, row_name: &'static str) -> Field {
    Field {
        vapi_name,
        row_name,
        home: Home::VapiAndRow,
        row_cause: Cause::DatabaseEditedOutOfBand,
    }
}

const fn vapi_only(name: &'static str) -> Field {
    Field {
        vapi_name: name,
        row_name: name,
        home: Home::VapiOnly,
        row_cause: Cause::SpecEdit,
    }
}

const fn row_only(name: &'static str, row_cause: Cause) -> Field {
    Field {
        vapi_name: name,
        row_name: name,
        home: Home::RowOnly,
        row_cause,
    }
}

pub(crate) const NAME: Field = both("name", "friendlyName");
pub(crate) const ASSISTANT: Field = both("assistantId", "assignedAssistantId");
pub(crate) const ACCOUNT_SID: Field = both("twilioAccountSid", "twilioAccountSid");
pub(crate) const SERVER: Field = vapi_only("server");
pub(crate) const SMS_ENABLED: Field = vapi_only("smsEnabled");
/// The squad a number is routed to (issue 12): Vapi's `squadId`, the row's `vapictl_squad_id`.
pub(crate) const SQUAD: Field = both("squadId", "vapictlSquadId");
pub(crate) const FALLBACK_DESTINATION: Field = vapi_only("fallbackDestination");
pub(crate) const HOOKS: Field = vapi_only("hooks");
pub(crate) const SERVER_URL: Field = vapi_only("server.url");
pub(crate) const SERVER_CREDENTIAL: Field = vapi_only("server.credentialId");
pub(crate) const SERVER_TIMEOUT: Field = vapi_only("server.timeoutSeconds");
pub(crate) const SERVER_HEADERS: Field = vapi_only("server.headers");
pub(crate) const SERVER_STATIC_IPS: Field = vapi_only("server.staticIpAddressesEnabled");
pub(crate) const SERVER_ENCRYPTED_PATHS: Field = vapi_only("server.encryptedPaths");
pub(crate) const SERVER_BACKOFF: Field = vapi_only("server.backoffPlan");
pub(crate) const NOTES: Field = row_only("notes", Cause::SpecEdit);
pub(crate) const PROTECTED: Field = row_only("protected", Cause::SpecEdit);
/// The row keeps Vapi's credential id; it differs when the row has not kept up.
pub(crate) const CREDENTIAL: Field = row_only("vapiCredentialId", Cause::DatabaseEditedOutOfBand);
/// The application stored the number in another form than E.164; it is canonicalized.
pub(crate) const PHONE_NUMBER: Field = row_only("phoneNumber", Cause::DatabaseEditedOutOfBand);

/// One sub-field of `server` as the spec, Vapi and the last apply have it, for display and
/// comparison (values are display strings; secret header values are never in them).
#[derive(Debug, Clone)]
pub(crate) struct SubField {
    pub field: Field,
    /// The sub-field's key in Vapi's object (what a removal deletes).
    pub key: &'static str,
    /// The spec declares it, or vapictl applied it before (then the spec's `None` removes it).
    pub owned: bool,
    pub declared: bool,
    pub differs: bool,
    pub vapi: Option<String>,
    pub desired: Option<String>,
    /// Vapi has no value and the spec sets one.
    pub vapi_lacks: bool,
    /// The spec differs from the last apply (when recorded).
    pub spec_changed: Option<bool>,
}

/// Compares the sub-fields of two servers that both exist. `last` is what vapictl last applied
/// (for ownership of the optional sub-fields and for comparing encrypted headers without a key).
pub(crate) fn server_sub_fields(
    desired: &ServerConfig,
    observed: &ServerConfig,
    last: Option<Option<&ServerConfig>>,
) -> Vec<SubField> {
    let d = normalized_server(Some(desired)).expect("some");
    let o = normalized_server(Some(observed)).expect("some");
    let last_server = last.flatten().and_then(|l| normalized_server(Some(l)));
    let spec_changed = |same: &dyn Fn(&ServerConfig) -> bool| -> Option<bool> {
        match last {
            None => None,
            Some(None) => Some(true),
            Some(Some(_)) => Some(!last_server.as_ref().is_some_and(same)),
        }
    };
    let json = |v: &Value| v.to_string();
    let secret_names = secret_header_names(&d);
    let show_headers = |h: &Option<_>| h.as_ref().map(|h| show_headers(h, &secret_names));
    let mut out = Vec::new();
    let mut push = |field: Field,
                    key: &'static str,
                    always: bool,
                    declared: bool,
                    was_applied: bool,
                    differs: bool,
                    vapi: Option<String>,
                    desired: Option<String>,
                    spec_changed: Option<bool>| {
        let owned = always || declared || was_applied;
        out.push(SubField {
            field,
            key,
            owned,
            declared,
            differs: owned && differs,
            vapi_lacks: vapi.is_none() && desired.is_some(),
            vapi,
            desired,
            spec_changed,
        });
    };
    let ls = last_server.as_ref();
    push(
        SERVER_URL,
        "url",
        true,
        true,
        false,
        d.url != o.url,
        Some(o.url.clone()),
        Some(d.url.clone()),
        spec_changed(&|l| l.url == d.url),
    );
    push(
        SERVER_CREDENTIAL,
        "credentialId",
        true,
        d.credential_id.is_some(),
        false,
        d.credential_id != o.credential_id,
        o.credential_id.clone(),
        d.credential_id.clone(),
        spec_changed(&|l| l.credential_id == d.credential_id),
    );
    push(
        SERVER_TIMEOUT,
        "timeoutSeconds",
        true,
        d.timeout_seconds.is_some(),
        false,
        d.timeout_seconds != o.timeout_seconds,
        o.timeout_seconds.map(|t| t.to_string()),
        d.timeout_seconds.map(|t| t.to_string()),
        spec_changed(&|l| l.timeout_seconds == d.timeout_seconds),
    );
    push(
        SERVER_HEADERS,
        "headers",
        false,
        d.headers.is_some(),
        ls.is_some_and(|l| l.headers.is_some()),
        !headers_equal(
            d.headers.as_ref(),
            o.headers.as_ref(),
            ls.and_then(|l| l.headers.as_ref()),
        ),
        show_headers(&o.headers),
        show_headers(&d.headers),
        spec_changed(&|l| l.headers == d.headers),
    );
    push(
        SERVER_STATIC_IPS,
        "staticIpAddressesEnabled",
        false,
        d.static_ip_addresses_enabled.is_some(),
        ls.is_some_and(|l| l.static_ip_addresses_enabled.is_some()),
        d.static_ip_addresses_enabled.unwrap_or(false)
            != o.static_ip_addresses_enabled.unwrap_or(false)
            || (d.static_ip_addresses_enabled.is_none() && o.static_ip_addresses_enabled.is_some()),
        o.static_ip_addresses_enabled.map(|b| b.to_string()),
        d.static_ip_addresses_enabled.map(|b| b.to_string()),
        spec_changed(&|l| l.static_ip_addresses_enabled == d.static_ip_addresses_enabled),
    );
    push(
        SERVER_ENCRYPTED_PATHS,
        "encryptedPaths",
        false,
        d.encrypted_paths.is_some(),
        ls.is_some_and(|l| l.encrypted_paths.is_some()),
        d.encrypted_paths != o.encrypted_paths,
        o.encrypted_paths.as_ref().map(|p| p.join(", ")),
        d.encrypted_paths.as_ref().map(|p| p.join(", ")),
        spec_changed(&|l| l.encrypted_paths == d.encrypted_paths),
    );
    push(
        SERVER_BACKOFF,
        "backoffPlan",
        false,
        d.backoff_plan.is_some(),
        ls.is_some_and(|l| l.backoff_plan.is_some()),
        d.backoff_plan != o.backoff_plan,
        o.backoff_plan.as_ref().map(json),
        d.backoff_plan.as_ref().map(json),
        spec_changed(&|l| l.backoff_plan == d.backoff_plan),
    );
    out
}

/// The `server` keys vapictl models (every sub-field of Vapi's `Server` schema).
const MODELLED_SERVER_KEYS: &[&str] = &[
    "url",
    "credentialId",
    "timeoutSeconds",
    "headers",
    "staticIpAddressesEnabled",
    "encryptedPaths",
    "backoffPlan",
];

/// What Vapi has in the number's `server` that the spec does not own and vapictl keeps: the
/// optional sub-fields the spec does not declare (and vapictl did not apply), and any sub-field
/// vapictl does not model (by name only). Nothing when either side has no server (the spec then
/// owns the whole object).
pub(crate) fn not_owned(
    number: &str,
    d: &crate::state::DesiredNumber,
    r: Option<&crate::state::PhoneRow>,
    o: &crate::state::ObservedNumber,
) -> Vec<crate::plan::NotOwned> {
    let (Some(ds), Some(os)) = (&d.server, &o.server) else {
        return Vec::new();
    };
    let last = r.and_then(|r| Applied::of_row(r.applied.as_deref()));
    let mut out: Vec<crate::plan::NotOwned> =
        server_sub_fields(ds, os, last.as_ref().map(|l| l.server.as_ref()))
            .into_iter()
            .filter(|s| !s.owned && s.vapi.is_some())
            .map(|s| crate::plan::NotOwned {
                number: number.to_string(),
                field: s.field.vapi_name.to_string(),
                // Headers the spec does not own are shown by name only: a secret may sit under
                // any name (`X-Auth`), and nothing here says which values are secret.
                value: if s.key == "headers" {
                    os.headers.as_ref().map(|h| {
                        let names: Vec<String> =
                            h.keys().map(|k| format!("{k}: (not shown)")).collect();
                        format!("{{{}}}", names.join(", "))
                    })
                } else {
                    s.vapi
                },
            })
            .collect();
    out.extend(
        o.server_raw
            .iter()
            .flat_map(|raw| raw.keys())
            .filter(|k| !MODELLED_SERVER_KEYS.contains(&k.as_str()))
            .map(|k| crate::plan::NotOwned {
                number: number.to_string(),
                field: format!("server.{k}"),
                value: None,
            }),
    );
    out
}

/// Header names whose values are secrets in this server: encrypted in the spec, or named like
/// a secret (`Authorization`, `X-Api-Key`, …).
fn secret_header_names(s: &ServerConfig) -> Vec<String> {
    s.headers
        .iter()
        .flatten()
        .filter(|(_, v)| matches!(v, HeaderValue::Encrypted { .. }))
        .map(|(k, _)| k.to_ascii_lowercase())
        .collect()
}

/// `{Name: value, Authorization: (sensitive)}`: secret values are never shown.
pub(crate) fn show_headers(
    h: &std::collections::BTreeMap<String, HeaderValue>,
    secret_names: &[String],
) -> String {
    let parts: Vec<String> = h
        .iter()
        .map(|(k, v)| {
            let secret = matches!(v, HeaderValue::Encrypted { .. })
                || secret_names.contains(&k.to_ascii_lowercase())
                || crate::validate::looks_secret_header(k);
            match v {
                HeaderValue::Plain(p) if !secret => format!("{k}: {p}"),
                _ => format!("{k}: (sensitive)"),
            }
        })
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Whether Vapi's headers are the spec's. An encrypted value is compared in plaintext when it
/// was decrypted; without a key, it counts as equal when vapictl applied that same ciphertext
/// last and Vapi still has the header.
fn headers_equal(
    desired: Option<&std::collections::BTreeMap<String, HeaderValue>>,
    observed: Option<&std::collections::BTreeMap<String, HeaderValue>>,
    last: Option<&std::collections::BTreeMap<String, HeaderValue>>,
) -> bool {
    let empty = std::collections::BTreeMap::new();
    let d = desired.unwrap_or(&empty);
    let o = observed.unwrap_or(&empty);
    if d.len() != o.len() {
        return false;
    }
    d.iter().all(|(k, dv)| {
        let Some(HeaderValue::Plain(ov)) = o.get(k) else {
            return false;
        };
        match dv {
            HeaderValue::Plain(p) => p == ov,
            HeaderValue::Encrypted {
                plaintext: Some(p), ..
            } => p.expose() == ov,
            HeaderValue::Encrypted {
                plaintext: None, ..
            } => last.and_then(|l| l.get(k)) == Some(dv),
        }
    })
}

/// Display of a JSON value owned as a whole (`fallbackDestination`, `hooks`).
pub(crate) fn show_json(v: Option<&Value>) -> Option<String> {
    v.map(Value::to_string)
}

/// How the number is being planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// In Vapi, not recorded: every differing field is taken over.
    Adopt,
    /// In Vapi and recorded.
    Update,
}

/// One field as the three views have it. Values are display strings.
#[derive(Debug, Clone, Default)]
pub(crate) struct Views {
    /// What Vapi has, when Vapi has this field.
    pub vapi: Option<Option<String>>,
    pub vapi_differs: bool,
    /// What the row has, when there is a row and it stores this field.
    pub row: Option<Option<String>>,
    pub row_differs: bool,
    /// Vapi holds nothing of its own (no value, or its default) and the spec sets one.
    pub spec_sets_what_vapi_lacks: bool,
    /// For fields only Vapi keeps: whether the spec differs from what vapictl last applied,
    /// when that is recorded.
    pub spec_changed: Option<bool>,
    pub desired: Option<String>,
}

/// The outcome of comparing one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub vapi_differs: bool,
    pub row_differs: bool,
    pub cause: Cause,
    pub target: Target,
    pub change: FieldChange,
}

/// Compares one field of a number that exists in Vapi; `None` when nothing differs.
pub(crate) fn judge(field: Field, mode: Mode, v: Views) -> Option<Verdict> {
    let vapi_differs = v.vapi.is_some() && v.vapi_differs;
    let row_differs = v.row.is_some() && v.row_differs;
    let (cause, target) = match (mode, field.home) {
        (Mode::Adopt, Home::VapiAndRow) if vapi_differs => (Cause::AdoptUnmanaged, Target::Both),
        (Mode::Adopt, Home::VapiOnly) if vapi_differs => (Cause::AdoptUnmanaged, Target::Vapi),
        (Mode::Adopt, Home::RowOnly) if v.desired.is_some() => {
            (Cause::AdoptUnmanaged, Target::Database)
        }
        (Mode::Adopt, _) => return None,
        (Mode::Update, Home::VapiAndRow) => match (vapi_differs, row_differs) {
            (true, true) => (Cause::SpecEdit, Target::Both),
            (true, false) => (Cause::VapiEditedOutOfBand, Target::Vapi),
            (false, true) => (Cause::DatabaseEditedOutOfBand, Target::Database),
            (false, false) => return None,
        },
        (Mode::Update, Home::VapiOnly) if vapi_differs => {
            let spec_edit = v.spec_changed.unwrap_or(v.spec_sets_what_vapi_lacks);
            if spec_edit {
                (Cause::SpecEdit, Target::Vapi)
            } else {
                (Cause::VapiEditedOutOfBand, Target::Vapi)
            }
        }
        (Mode::Update, Home::RowOnly) if row_differs => (field.row_cause, Target::Database),
        (Mode::Update, _) => return None,
    };
    let (name, before) = match target {
        Target::Database => (field.row_name, v.row.clone().flatten()),
        _ => (field.vapi_name, v.vapi.clone().flatten()),
    };
    let before = if mode == Mode::Adopt && field.home == Home::RowOnly {
        None
    } else {
        before
    };
    Some(Verdict {
        vapi_differs,
        row_differs,
        cause,
        target,
        change: FieldChange {
            field: name,
            target,
            before,
            after: v.desired,
            sensitive: false,
            note: None,
            cause,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn views(vapi_differs: bool, row_differs: bool) -> Views {
        Views {
            vapi: Some(Some("v".into())),
            vapi_differs,
            row: Some(Some("r".into())),
            row_differs,
            desired: Some("d".into()),
            ..Views::default()
        }
    }

    #[test]
    fn each_combination_has_one_cause() {
        let j = |vd, rd| judge(NAME, Mode::Update, views(vd, rd)).map(|v| (v.cause, v.target));
        assert_eq!(j(true, true), Some((Cause::SpecEdit, Target::Both)));
        assert_eq!(
            j(true, false),
            Some((Cause::VapiEditedOutOfBand, Target::Vapi))
        );
        assert_eq!(
            j(false, true),
            Some((Cause::DatabaseEditedOutOfBand, Target::Database))
        );
        assert_eq!(j(false, false), None);
    }

    #[test]
    fn a_database_edit_shows_the_row_column_and_its_value() {
        let v = judge(NAME, Mode::Update, views(false, true)).unwrap();
        assert_eq!(v.change.field, "friendlyName");
        assert_eq!(v.change.before.as_deref(), Some("r"));
    }

    #[test]
    fn vapi_only_fields_added_in_the_spec_are_spec_edits() {
        let mut v = views(true, false);
        v.row = None;
        v.spec_sets_what_vapi_lacks = true;
        assert_eq!(
            judge(SERVER, Mode::Update, v.clone()).unwrap().cause,
            Cause::SpecEdit
        );
        v.spec_sets_what_vapi_lacks = false;
        assert_eq!(
            judge(SMS_ENABLED, Mode::Update, v.clone()).unwrap().cause,
            Cause::VapiEditedOutOfBand
        );
        // What vapictl last applied decides when it is recorded.
        v.spec_changed = Some(true);
        assert_eq!(
            judge(SERVER, Mode::Update, v.clone()).unwrap().cause,
            Cause::SpecEdit
        );
        v.spec_changed = Some(false);
        v.spec_sets_what_vapi_lacks = true;
        assert_eq!(
            judge(SERVER, Mode::Update, v).unwrap().cause,
            Cause::VapiEditedOutOfBand
        );
    }
}
