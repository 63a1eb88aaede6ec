//! Writing a spec for what an owner already has (pure): the owner's rows joined with Vapi's
//! numbers, in a stable order, so that `import` then `plan` shows no changes.

use std::collections::BTreeSet;

use uuid::Uuid;

use crate::diff::matching::{looks_canonical, match_numbers};
use crate::diff::{TWILIO, TargetIndex, row_in_scope};
use crate::secrets::{Identities, SecretsError, encrypt};
use crate::spec::{
    BackoffPlan, Defaults, Hook, PhoneNumberSpec, SPEC_VERSION, ServerSpec, Spec,
    TransferDestination, TwilioSpec, to_yaml,
};
use crate::state::{ObservedNumber, ObservedState, RecordedState};

pub use crate::secrets::TOKEN_PLACEHOLDER;

/// Marks a secret webhook header value `import` could not encrypt (no `--recipient`); validation
/// refuses it like any plaintext secret header.
pub const HEADER_PLACEHOLDER: &str = "REPLACE-ME-encrypt-this-header-value";

/// How to write tokens.
#[derive(Debug)]
pub enum Tokens<'a> {
    /// Keep each row's ciphertext as it is (no key needed; round-trips exactly).
    Keep,
    /// Decrypt each row's token and encrypt it to these recipients.
    ReEncrypt {
        identities: &'a Identities,
        recipients: &'a [age::x25519::Recipient],
    },
}

impl<'a> Tokens<'a> {
    /// Re-encrypt to `recipients` when there are any, else keep the stored ciphertexts.
    pub fn new(
        identities: &'a Identities,
        recipients: Option<&'a [age::x25519::Recipient]>,
    ) -> Self {
        match recipients {
            Some(recipients) => Tokens::ReEncrypt {
                identities,
                recipients,
            },
            None => Tokens::Keep,
        }
    }
}

/// The imported spec and what the user should know about it.
#[derive(Debug, Clone, Default)]
pub struct Imported {
    pub yaml: String,
    pub numbers: usize,
    /// Numbers whose token is a placeholder that must be filled in.
    pub placeholders: Vec<String>,
    /// Twilio numbers in Vapi that nobody records (listed, and included with `--adopt`).
    pub unmanaged: Vec<String>,
    /// The owner's numbers left out because vapictl does not manage them (another provider than
    /// Twilio, a stored number it cannot read), each with the reason.
    pub out_of_scope: Vec<String>,
    pub warnings: Vec<String>,
}

/// One number, as it goes into the spec.
struct Item {
    number: String,
    name: String,
    assistant: Option<String>,
    squad: Option<String>,
    notes: Option<String>,
    account_sid: String,
    token: String,
    /// The API key SID when the number is on the API-key form (`token` is then its secret).
    api_key: Option<String>,
    server: Option<crate::state::ServerConfig>,
    sms_enabled: bool,
    fallback_destination: Option<TransferDestination>,
    hooks: Option<Vec<Hook>>,
    protected: bool,
}

/// A value of Vapi's in the spec's form, or `None` with a warning when the spec cannot express
/// it (a field vapictl does not model): then it stays out of the spec, and vapictl leaves it as
/// Vapi has it.
fn modelled<T: serde::de::DeserializeOwned>(
    number: &str,
    field: &str,
    v: Option<&serde_json::Value>,
    warnings: &mut Vec<String>,
) -> Option<T> {
    let v = v?;
    match serde_json::from_value::<T>(v.clone()) {
        Ok(t) => Some(t),
        Err(e) => {
            warnings.push(format!(
                "`{number}`: Vapi's `{field}` uses what the spec cannot express ({e}); it is left out of the spec, and vapictl leaves it as Vapi has it"
            ));
            None
        }
    }
}

/// Vapi's `hooks`, when there are any, in the spec's form.
fn modelled_hooks(
    number: &str,
    o: &ObservedNumber,
    warnings: &mut Vec<String>,
) -> Option<Vec<Hook>> {
    modelled::<Vec<Hook>>(
        number,
        "hooks",
        o.hooks
            .as_ref()
            .filter(|h| h.as_array().is_none_or(|a| !a.is_empty())),
        warnings,
    )
}

/// Vapi's `fallbackDestination` in the spec's form.
fn modelled_fallback(
    number: &str,
    o: &ObservedNumber,
    warnings: &mut Vec<String>,
) -> Option<TransferDestination> {
    modelled::<TransferDestination>(
        number,
        "fallbackDestination",
        o.fallback_destination.as_ref(),
        warnings,
    )
}

/// The server as the spec writes it: secret-looking header values are encrypted to the
/// recipients, or replaced by a placeholder that fails validation until filled in.
fn imported_server(
    number: &str,
    o: &ObservedNumber,
    tokens: &Tokens<'_>,
    out: &mut Imported,
) -> Result<Option<crate::state::ServerConfig>, (String, SecretsError)> {
    let Some(mut s) = o.server.clone() else {
        return Ok(None);
    };
    if let Some(b) = &s.backoff_plan
        && modelled::<BackoffPlan>(number, "server.backoffPlan", Some(b), &mut out.warnings)
            .is_none()
    {
        s.backoff_plan = None;
    }
    if let Some(h) = &mut s.headers {
        for (name, value) in h.iter_mut() {
            if !crate::validate::looks_secret_header(name) {
                continue;
            }
            let crate::state::HeaderValue::Plain(plain) = value else {
                continue;
            };
            let armored = match tokens {
                Tokens::ReEncrypt { recipients, .. } => {
                    encrypt(recipients, &crate::secrets::SecretValue::new(plain.clone()))
                        .map_err(|e| (number.to_string(), e))?
                }
                Tokens::Keep => {
                    out.warnings.push(format!(
                        "`{number}`: the webhook header `{name}` holds a secret; its value is a placeholder: encrypt it with `vapictl encrypt` (or import with `--recipient`)"
                    ));
                    HEADER_PLACEHOLDER.to_string()
                }
            };
            *value = crate::state::HeaderValue::Encrypted {
                armored,
                plaintext: None,
            };
        }
    }
    Ok(Some(s))
}

/// The server in the spec's form (headers as written: plaintext, or the armored ciphertext).
fn server_spec(s: &crate::state::ServerConfig) -> ServerSpec {
    ServerSpec {
        url: s.url.clone(),
        credential_id: s.credential_id.clone(),
        timeout_seconds: s.timeout_seconds,
        headers: s.headers.as_ref().map(|h| {
            h.iter()
                .map(|(name, value)| {
                    let v = match value {
                        crate::state::HeaderValue::Plain(p) => p.clone(),
                        crate::state::HeaderValue::Encrypted { armored, .. } => armored.clone(),
                    };
                    (name.clone(), v)
                })
                .collect()
        }),
        static_ip_addresses_enabled: s.static_ip_addresses_enabled,
        encrypted_paths: s.encrypted_paths.clone(),
        backoff_plan: s
            .backoff_plan
            .as_ref()
            .and_then(|b| serde_json::from_value(b.clone()).ok()),
    }
}

/// Builds the spec.
///
/// # Errors
/// With [`Tokens::ReEncrypt`], a row's token that cannot be decrypted or encrypted.
pub fn import(
    owner: Uuid,
    recorded: &RecordedState,
    observed: &ObservedState,
    tokens: &Tokens<'_>,
    adopt: bool,
) -> Result<Imported, (String, SecretsError)> {
    let mut out = Imported::default();
    let assistants = TargetIndex::assistants(owner, &recorded.assistants);
    let squads = TargetIndex::squads(owner, &recorded.squads);
    let matched = match_numbers(
        std::iter::empty(),
        &recorded.rows,
        &recorded.foreign,
        &observed.numbers,
    );
    for u in &matched.unmatched {
        out.out_of_scope
            .push(format!("`{}`: {}", u.row.phone_number, u.reason));
    }
    // The routing target a number has (in Vapi, else as its row records it), as the spec
    // refers to it: (assistant, squad). A Vapi assistant or squad without a row in its table is
    // kept by its Vapi id (and `plan` refuses it until the application has the row), so that
    // applying the imported spec never unassigns a live one (issue 9).
    let route_of = |number: &str,
                    o: Option<&ObservedNumber>,
                    row: Option<&crate::state::PhoneRow>,
                    warnings: &mut Vec<String>| {
        let mut one = |index: &TargetIndex<'_>, vapi_id: Option<&str>, row_id: Option<Uuid>| {
            match (vapi_id, row_id) {
                (Some(vid), _) => index.reference_for_vapi_id(vid).or_else(|| {
                    let kind = index.kind();
                    warnings.push(format!(
                        "`{number}` is answered by Vapi {} `{vid}`, which has no row in `{}`; the spec keeps it by Vapi id, and `plan` refuses it until the application has that row",
                        kind.field(),
                        kind.table()
                    ));
                    Some(vid.to_string())
                }),
                (None, Some(id)) => index.reference_for_row(id),
                (None, None) => None,
            }
        };
        // Vapi's routing is what answers calls: when Vapi has a target, both come from Vapi
        // (the row may still record an older one); the row is read only when Vapi has none.
        let in_vapi = o.filter(|o| o.assistant_id.is_some() || o.squad_id.is_some());
        let row = row.filter(|_| in_vapi.is_none());
        let assistant = one(
            &assistants,
            in_vapi.and_then(|o| o.assistant_id.as_deref()),
            row.and_then(|r| r.assigned_assistant_id),
        );
        let squad = one(
            &squads,
            in_vapi.and_then(|o| o.squad_id.as_deref()),
            row.and_then(|r| r.assigned_squad_id),
        );
        if assistant.is_some() && squad.is_some() {
            warnings.push(format!(
                "`{number}` has both an assistant and a squad in Vapi; the spec keeps the assistant, and `plan` shows the squad being cleared"
            ));
            return (assistant, None);
        }
        (assistant, squad)
    };
    let mut items = Vec::new();
    for (number, rows) in &matched.rows {
        let [row] = rows.as_slice() else {
            out.out_of_scope.push(format!(
                "`{number}`: the owner has {} rows for it; delete the extra ones in the application",
                rows.len()
            ));
            continue;
        };
        let o = row
            .vapi_phone_id
            .as_deref()
            .and_then(|id| observed.numbers.iter().find(|o| o.id == id))
            .or_else(|| {
                matched
                    .in_vapi
                    .get(number.as_str())
                    .and_then(|found| found.first().copied())
            });
        // vapictl manages Twilio numbers only: never write another provider's as a Twilio entry.
        let provider = Some(row.provider.as_str())
            .filter(|p| !row_in_scope(p))
            .or(o.map(|o| o.provider.as_str()).filter(|p| *p != TWILIO));
        if let Some(provider) = provider {
            out.out_of_scope.push(format!(
                "`{number}` is a `{provider}` number; vapictl manages Twilio numbers only"
            ));
            continue;
        }
        if o.is_none() {
            out.warnings.push(format!(
                "`{number}` is recorded but not in Vapi: the first apply re-creates it"
            ));
        }
        if !looks_canonical(number) {
            out.warnings.push(format!(
                "`{number}` is stored in a form vapictl cannot read as E.164: write it in E.164 in the spec"
            ));
        }
        let token = match (row.secret_ciphertext(), tokens) {
            (Some(armored), Tokens::Keep) => armored.to_owned(),
            (
                Some(armored),
                Tokens::ReEncrypt {
                    identities,
                    recipients,
                },
            ) => {
                let plain = identities
                    .decrypt(armored)
                    .map_err(|e| (number.clone(), e))?;
                encrypt(recipients, &plain).map_err(|e| (number.clone(), e))?
            }
            (None, _) => {
                out.placeholders.push(number.clone());
                TOKEN_PLACEHOLDER.to_string()
            }
        };
        let (assistant, squad) = route_of(number, o, Some(row), &mut out.warnings);
        items.push(Item {
            number: number.clone(),
            name: o
                .and_then(|o| o.name.clone())
                .or_else(|| row.friendly_name.clone())
                .unwrap_or_default(),
            assistant,
            squad,
            notes: row.notes.clone(),
            account_sid: o
                .and_then(|o| o.twilio_account_sid.clone())
                .or_else(|| row.twilio_account_sid.clone())
                .unwrap_or_default(),
            token,
            api_key: row.api_key.clone(),
            server: match o {
                Some(o) => imported_server(number, o, tokens, &mut out)?,
                None => None,
            },
            sms_enabled: o.is_none_or(ObservedNumber::sms_enabled_effective),
            fallback_destination: o.and_then(|o| modelled_fallback(number, o, &mut out.warnings)),
            hooks: o.and_then(|o| modelled_hooks(number, o, &mut out.warnings)),
            protected: row.protected,
        });
    }
    // Vapi numbers that no user's row records: listed, and added with `--adopt`.
    let recorded_ids: BTreeSet<&str> = recorded
        .rows
        .values()
        .filter_map(|r| r.vapi_phone_id.as_deref())
        .chain(recorded.foreign_vapi_ids.keys().map(String::as_str))
        .collect();
    for (number, found) in &matched.in_vapi {
        let Some(o) = found.iter().find(|o| o.provider == TWILIO) else {
            continue;
        };
        if matched.rows.contains_key(*number)
            || matched.claims.contains_key(*number)
            || found.iter().any(|o| recorded_ids.contains(o.id.as_str()))
        {
            continue;
        }
        out.unmanaged.push(number.to_string());
        if adopt {
            out.placeholders.push(number.to_string());
            let (assistant, squad) = route_of(number, Some(o), None, &mut out.warnings);
            items.push(Item {
                number: number.to_string(),
                name: o.name.clone().unwrap_or_default(),
                assistant,
                squad,
                notes: None,
                account_sid: o.twilio_account_sid.clone().unwrap_or_default(),
                token: TOKEN_PLACEHOLDER.to_string(),
                api_key: None,
                server: imported_server(number, o, tokens, &mut out)?,
                sms_enabled: o.sms_enabled_effective(),
                fallback_destination: modelled_fallback(number, o, &mut out.warnings),
                hooks: modelled_hooks(number, o, &mut out.warnings),
                protected: false,
            });
        }
    }
    items.sort_by(|a, b| a.number.cmp(&b.number));

    // One shared account and token go into `defaults`.
    let shared = items
        .first()
        .map(|f| (f.account_sid.clone(), f.token.clone(), f.api_key.clone()))
        .filter(|(sid, tok, key)| {
            items
                .iter()
                .all(|i| &i.account_sid == sid && &i.token == tok && &i.api_key == key)
        });

    // The secret under its form's name: `authToken`, or `apiKey` + `apiSecret`.
    let twilio = |account_sid: &str, token: &str, key: &Option<String>| TwilioSpec {
        account_sid: account_sid.to_owned(),
        auth_token: key.is_none().then(|| token.to_owned()),
        api_key: key.clone(),
        api_secret: key.is_some().then(|| token.to_owned()),
    };
    let spec = Spec {
        version: SPEC_VERSION,
        owner: owner.to_string(),
        defaults: shared.as_ref().map(|(sid, token, key)| Defaults {
            twilio: Some(twilio(sid, token, key)),
            ..Defaults::default()
        }),
        phone_numbers: items
            .iter()
            .map(|i| PhoneNumberSpec {
                number: i.number.clone(),
                name: i.name.clone(),
                assistant: i.assistant.clone(),
                squad: i.squad.clone(),
                notes: i.notes.clone(),
                twilio: shared
                    .is_none()
                    .then(|| twilio(&i.account_sid, &i.token, &i.api_key)),
                server: i.server.as_ref().map(server_spec),
                sms_enabled: (!i.sms_enabled).then_some(false),
                fallback_destination: i.fallback_destination.clone(),
                hooks: i.hooks.clone(),
                protected: i.protected,
                absent: false,
            })
            .collect(),
    };
    // `vapictl schema > vapictl.schema.json` next to the spec gives editors completion.
    out.yaml = format!(
        "# yaml-language-server: $schema=vapictl.schema.json\n\
         # Written by `vapictl import`. Review it, then `vapictl plan` should show no changes.\n{}",
        to_yaml(&spec)
    );
    out.numbers = items.len();
    Ok(out)
}
