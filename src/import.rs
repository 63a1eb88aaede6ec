//! Writing a spec for what an owner already has (pure): the owner's rows joined with Vapi's
//! numbers, in a stable order, so that `import` then `plan` shows no changes.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use uuid::Uuid;

use crate::diff::matching::{looks_canonical, match_numbers};
use crate::diff::{AssistantIndex, TWILIO, row_in_scope};
use crate::secrets::{Identities, SecretsError, encrypt};
use crate::state::{ObservedNumber, ObservedState, RecordedState};

/// Marks a token `import` could not fill in; validation names it.
pub const TOKEN_PLACEHOLDER: &str = "REPLACE-ME-encrypt-the-twilio-auth-token";

/// Marks a secret webhook header value `import` could not encrypt (no `--recipient`); validation
/// refuses it like any plaintext secret header.
pub const HEADER_PLACEHOLDER: &str = "REPLACE-ME-encrypt-this-header-value";

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
    /// The API key SID when the number is on the API-key form (`token` is then its secret).
    api_key: Option<String>,
    server: Option<crate::state::ServerConfig>,
    sms_enabled: bool,
    fallback_destination: Option<serde_json::Value>,
    hooks: Option<serde_json::Value>,
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
) -> Option<serde_json::Value> {
    let v = v?;
    match serde_json::from_value::<T>(v.clone()) {
        Ok(_) => Some(v.clone()),
        Err(e) => {
            warnings.push(format!(
                "`{number}`: Vapi's `{field}` uses what the spec cannot express ({e}); it is left out of the spec, and vapictl leaves it as Vapi has it"
            ));
            None
        }
    }
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
        && modelled::<crate::spec::BackoffPlan>(
            number,
            "server.backoffPlan",
            Some(b),
            &mut out.warnings,
        )
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

fn q(s: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar.
    serde_json::to_string(s).expect("strings serialize")
}

fn block(armored: &str, indent: usize) -> String {
    if !armored.contains('\n') {
        return format!(" {}\n", q(armored));
    }
    let mut out = String::from(" |\n");
    for line in armored.trim_end().lines() {
        let _ = writeln!(out, "{}{line}", " ".repeat(indent));
    }
    out
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
            api_key: row.api_key.clone(),
            server: match o {
                Some(o) => imported_server(number, o, tokens, &mut out)?,
                None => None,
            },
            sms_enabled: o.is_none_or(ObservedNumber::sms_enabled_effective),
            fallback_destination: o.and_then(|o| {
                modelled::<crate::spec::TransferDestination>(
                    number,
                    "fallbackDestination",
                    o.fallback_destination.as_ref(),
                    &mut out.warnings,
                )
            }),
            hooks: o.and_then(|o| {
                modelled::<Vec<crate::spec::Hook>>(
                    number,
                    "hooks",
                    o.hooks
                        .as_ref()
                        .filter(|h| h.as_array().is_none_or(|a| !a.is_empty())),
                    &mut out.warnings,
                )
            }),
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
                api_key: None,
                server: imported_server(number, o, tokens, &mut out)?,
                sms_enabled: o.sms_enabled_effective(),
                fallback_destination: modelled::<crate::spec::TransferDestination>(
                    number,
                    "fallbackDestination",
                    o.fallback_destination.as_ref(),
                    &mut out.warnings,
                ),
                hooks: modelled::<Vec<crate::spec::Hook>>(
                    number,
                    "hooks",
                    o.hooks
                        .as_ref()
                        .filter(|h| h.as_array().is_none_or(|a| !a.is_empty())),
                    &mut out.warnings,
                ),
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
    let credentials = |y: &mut String, key: &Option<String>, token: &str, indent: usize| {
        let pad = " ".repeat(indent);
        match key {
            Some(k) => {
                let _ = write!(
                    y,
                    "{pad}apiKey: {}\n{pad}apiSecret:{}",
                    q(k),
                    block(token, indent + 2)
                );
            }
            None => {
                let _ = write!(y, "{pad}authToken:{}", block(token, indent + 2));
            }
        }
    };

    let y = &mut out.yaml;
    // `vapictl schema > vapictl.schema.json` next to the spec gives editors completion.
    let _ = writeln!(y, "# yaml-language-server: $schema=vapictl.schema.json");
    let _ = writeln!(
        y,
        "# Written by `vapictl import`. Review it, then `vapictl plan` should show no changes."
    );
    let _ = writeln!(y, "version: 1\nowner: {owner}");
    if let Some((sid, token, key)) = &shared {
        let _ = write!(y, "defaults:\n  twilio:\n    accountSid: {}\n", q(sid));
        credentials(y, key, token, 4);
    }
    if items.is_empty() {
        let _ = writeln!(y, "phoneNumbers: []");
    } else {
        let _ = writeln!(y, "phoneNumbers:");
    }
    for i in &items {
        let _ = writeln!(y, "  - number: {}\n    name: {}", q(&i.number), q(&i.name));
        if let Some(a) = &i.assistant {
            let _ = writeln!(y, "    assistant: {}", q(a));
        }
        if let Some(n) = &i.notes {
            let _ = writeln!(y, "    notes: {}", q(n));
        }
        if shared.is_none() {
            let _ = write!(y, "    twilio:\n      accountSid: {}\n", q(&i.account_sid));
            credentials(y, &i.api_key, &i.token, 6);
        }
        if let Some(s) = &i.server {
            let _ = writeln!(y, "    server:\n      url: {}", q(&s.url));
            if let Some(c) = &s.credential_id {
                let _ = writeln!(y, "      credentialId: {}", q(c));
            }
            if let Some(t) = s.timeout_seconds {
                let _ = writeln!(y, "      timeoutSeconds: {t}");
            }
            if let Some(h) = &s.headers {
                if h.is_empty() {
                    let _ = writeln!(y, "      headers: {{}}");
                } else {
                    let _ = writeln!(y, "      headers:");
                }
                for (name, value) in h {
                    match value {
                        crate::state::HeaderValue::Plain(p) => {
                            let _ = writeln!(y, "        {}: {}", q(name), q(p));
                        }
                        crate::state::HeaderValue::Encrypted { armored, .. } => {
                            let _ = write!(y, "        {}:{}", q(name), block(armored, 10));
                        }
                    }
                }
            }
            if let Some(b) = s.static_ip_addresses_enabled {
                let _ = writeln!(y, "      staticIpAddressesEnabled: {b}");
            }
            if let Some(p) = &s.encrypted_paths {
                // JSON is YAML: flow collections keep Vapi's values exactly.
                let _ = writeln!(
                    y,
                    "      encryptedPaths: {}",
                    serde_json::Value::from(p.clone())
                );
            }
            if let Some(b) = &s.backoff_plan {
                let _ = writeln!(y, "      backoffPlan: {b}");
            }
        }
        if !i.sms_enabled {
            let _ = writeln!(y, "    smsEnabled: false");
        }
        if let Some(f) = &i.fallback_destination {
            let _ = writeln!(y, "    fallbackDestination: {f}");
        }
        if let Some(h) = &i.hooks {
            let _ = writeln!(y, "    hooks: {h}");
        }
        if i.protected {
            let _ = writeln!(y, "    protected: true");
        }
    }
    out.numbers = items.len();
    Ok(out)
}
