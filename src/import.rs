//! Writing a spec for what an owner already has (pure): the owner's rows joined with Vapi's
//! numbers, in a stable order, so that `import` then `plan` shows no changes.

use std::collections::BTreeSet;

use uuid::Uuid;

use crate::diff::matching::{looks_canonical, match_numbers};
use crate::diff::{AssistantIndex, TWILIO, row_in_scope};
use crate::secrets::{Identities, SecretsError, encrypt};
use crate::spec::{Defaults, PhoneNumberSpec, SPEC_VERSION, ServerSpec, Spec, TwilioSpec, to_yaml};
use crate::state::{ObservedNumber, ObservedState, RecordedState};

pub use crate::secrets::TOKEN_PLACEHOLDER;

/// How to write tokens.
pub enum Tokens<'a> {
    /// Keep each row's ciphertext as it is (no key needed; round-trips exactly).
    Keep,
    /// Decrypt each row's token and encrypt it to these recipients.
    ReEncrypt {
        identities: &'a Identities,
        recipients: &'a [age::x25519::Recipient],
    },
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
    notes: Option<String>,
    account_sid: String,
    token: String,
    server: Option<crate::state::ServerConfig>,
    sms_enabled: bool,
    protected: bool,
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
    let assistants = AssistantIndex::new(owner, &recorded.assistants);
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
    // The assistant a Vapi number has, as the spec refers to it. Without a row in `assistants`
    // it is kept by its Vapi id (and `plan` refuses it until the application has the row), so
    // that applying the imported spec never unassigns a live assistant (issue 9).
    let assistant_of = |number: &str, vapi_id: &str, warnings: &mut Vec<String>| {
        assistants.reference_for_vapi_id(vapi_id).or_else(|| {
            warnings.push(format!(
                "`{number}` is answered by Vapi assistant `{vapi_id}`, which has no row in `assistants`; the spec keeps it by Vapi id, and `plan` refuses it until the application has that row"
            ));
            Some(vapi_id.to_string())
        })
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
        let token = match (&row.twilio_auth_token, tokens) {
            (Some(armored), Tokens::Keep) => armored.clone(),
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
        let assistant = match (
            o.and_then(|o| o.assistant_id.as_deref()),
            row.assigned_assistant_id,
        ) {
            (Some(vid), _) => assistant_of(number, vid, &mut out.warnings),
            (None, Some(row_id)) => assistants.reference_for_row(row_id),
            (None, None) => None,
        };
        items.push(Item {
            number: number.clone(),
            name: o
                .and_then(|o| o.name.clone())
                .or_else(|| row.friendly_name.clone())
                .unwrap_or_default(),
            assistant,
            notes: row.notes.clone(),
            account_sid: o
                .and_then(|o| o.twilio_account_sid.clone())
                .or_else(|| row.twilio_account_sid.clone())
                .unwrap_or_default(),
            token,
            server: o.and_then(|o| o.server.clone()),
            sms_enabled: o.is_none_or(ObservedNumber::sms_enabled_effective),
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
            let assistant = o
                .assistant_id
                .as_deref()
                .and_then(|vid| assistant_of(number, vid, &mut out.warnings));
            items.push(Item {
                number: number.to_string(),
                name: o.name.clone().unwrap_or_default(),
                assistant,
                notes: None,
                account_sid: o.twilio_account_sid.clone().unwrap_or_default(),
                token: TOKEN_PLACEHOLDER.to_string(),
                server: o.server.clone(),
                sms_enabled: o.sms_enabled_effective(),
                protected: false,
            });
        }
    }
    items.sort_by(|a, b| a.number.cmp(&b.number));

    // One shared account and token go into `defaults`.
    let shared = items
        .first()
        .map(|f| (f.account_sid.clone(), f.token.clone()))
        .filter(|(sid, tok)| {
            items
                .iter()
                .all(|i| &i.account_sid == sid && &i.token == tok)
        });

    let twilio = |account_sid: &str, token: &str| TwilioSpec {
        account_sid: account_sid.to_owned(),
        auth_token: token.to_owned(),
    };
    let spec = Spec {
        version: SPEC_VERSION,
        owner: owner.to_string(),
        defaults: shared.as_ref().map(|(sid, token)| Defaults {
            twilio: Some(twilio(sid, token)),
            sms_enabled: None,
        }),
        phone_numbers: items
            .iter()
            .map(|i| PhoneNumberSpec {
                number: i.number.clone(),
                name: i.name.clone(),
                assistant: i.assistant.clone(),
                notes: i.notes.clone(),
                twilio: shared.is_none().then(|| twilio(&i.account_sid, &i.token)),
                server: i.server.as_ref().map(|s| ServerSpec {
                    url: s.url.clone(),
                    credential_id: s.credential_id.clone(),
                    timeout_seconds: s.timeout_seconds,
                }),
                sms_enabled: (!i.sms_enabled).then_some(false),
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
