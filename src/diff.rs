//! The three-way diff (pure): desired (spec) × recorded (database) × observed (Vapi) → [`Plan`].
//!
//! Numbers are matched by their E.164 string. For each number the decision is:
//!
//! | spec | owner's row | Vapi | action |
//! |---|---|---|---|
//! | yes | no | no | [`Action::Create`]: create in Vapi, then insert the row with Vapi's id |
//! | yes | no | yes, recorded by no one | [`Action::Adopt`]: PATCH what differs (always the token, which Vapi never shows), insert the row; never a second POST |
//! | yes | yes | yes | [`Action::Update`]: PATCH the Vapi fields and/or update the row fields that differ; nothing when equal |
//! | yes | yes | no | [`Action::Recreate`] (deleted by hand) — or [`Action::Create`] when the row never had a Vapi id: create, then repoint the row |
//! | no, or `absent: true` | yes | yes | [`Action::Delete`]: release from Vapi, then delete the row — unless protected ([`Kept`]) |
//! | no, or `absent: true` | yes | no | [`Action::RemoveRow`]: delete the stale row — unless protected |
//! | `absent: true` | no | yes | [`Action::Delete`] in Vapi only: the entry names the number explicitly |
//! | `absent: true` | no | no | nothing: already absent |
//! | any | row of another user | any | refused: the number belongs to someone else |
//! | no | no | yes | unmanaged: never touched, listed in [`Plan::unmanaged`] |
//!
//! Also refused: a number that Vapi lists more than once (unless the owner's row names one of
//! them), a number that exists in Vapi under another provider, an assistant reference that
//! matches none, several, or another user's assistant, or whose Vapi assistant does not exist.
//!
//! Protection is remembered in the row (`vapictl_protected`), so removing a protected entry from
//! the spec keeps the number ([`Kept`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use uuid::Uuid;

use crate::plan::{
    Action, Cause, Change, FieldChange, Kept, Plan, RowStep, Target, Unmanaged, VapiCreate,
    VapiPatch, VapiStep,
};
use crate::secrets::digest_matches;
use crate::state::{
    AssistantRow, DesiredNumber, DesiredState, ObservedNumber, ObservedState, PhoneRow,
    RecordedState, RowWrite, ServerConfig,
};

/// Vapi's default webhook timeout: an observed `20` equals an unset `timeoutSeconds`.
const DEFAULT_SERVER_TIMEOUT: u32 = 20;

/// Why a number cannot be planned. The whole plan is refused: nothing is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub number: String,
    /// The entry's line in the spec, when the spec lists the number.
    pub line: Option<usize>,
    pub reason: String,
    pub hint: String,
}

/// Every refusal of one plan.
#[derive(Debug, Clone)]
pub struct Refusals(pub Vec<Refusal>);

impl fmt::Display for Refusals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "cannot plan: {n} number{} refused",
            if n == 1 { "" } else { "s" }
        )?;
        for r in &self.0 {
            match r.line {
                Some(l) => writeln!(f, "`{}` (line {l}): {}", r.number, r.reason)?,
                None => writeln!(f, "`{}`: {}", r.number, r.reason)?,
            }
            writeln!(f, "  hint: {}", r.hint)?;
        }
        Ok(())
    }
}

impl std::error::Error for Refusals {}

/// Computes the plan.
///
/// # Errors
/// [`Refusals`] when any number cannot be planned safely (see the module docs).
pub fn diff(
    desired: &DesiredState,
    recorded: &RecordedState,
    observed: &ObservedState,
) -> Result<Plan, Refusals> {
    let mut refusals = Vec::new();
    let mut plan = Plan {
        owner: desired.owner,
        spec_digest: desired.spec_digest.clone(),
        managed_count: recorded.rows.len(),
        ..Plan::default()
    };

    let mut in_vapi: BTreeMap<&str, Vec<&ObservedNumber>> = BTreeMap::new();
    for o in &observed.numbers {
        if let Some(n) = o.number.as_deref() {
            in_vapi.entry(n).or_default().push(o);
        }
    }

    let keys: BTreeSet<&str> = desired
        .numbers
        .keys()
        .map(|k| k.as_str())
        .chain(recorded.rows.keys().map(String::as_str))
        .collect();

    for key in &keys {
        let d = desired
            .numbers
            .get(&crate::state::E164::new_unchecked(*key));
        let r = recorded.rows.get(*key);
        let line = d.map(|d| d.line);
        let refuse = |reason: String, hint: &str| Refusal {
            number: key.to_string(),
            line,
            reason,
            hint: hint.to_string(),
        };

        if d.is_some()
            && let Some(other) = recorded.foreign.get(*key)
        {
            refusals.push(refuse(
                format!("the number is recorded in the database for another user (`{other}`)"),
                "a spec can only manage its owner's numbers; remove the entry, or move the row to this owner in the application first",
            ));
            continue;
        }

        let o = match pick_observed(key, r, in_vapi.get(*key).map(Vec::as_slice).unwrap_or(&[])) {
            Ok((o, extras)) => {
                for x in extras {
                    plan.warnings.push(format!(
                        "`{key}` is listed in Vapi more than once; the copy `{}` is not recorded and is left alone",
                        x.id
                    ));
                }
                o
            }
            Err(reason) => {
                // Only a problem when vapictl would act on the number.
                if d.is_some() || r.is_some() {
                    refusals.push(refuse(
                        reason,
                        "delete the extra copies in the Vapi dashboard, keeping the one in use, then plan again",
                    ));
                }
                continue;
            }
        };
        if let Some(o) = o
            && o.provider != "twilio"
            && d.is_some()
        {
            refusals.push(refuse(
                format!(
                    "the number exists in Vapi as a `{}` number (`{}`); vapictl manages Twilio numbers only",
                    o.provider, o.id
                ),
                "remove the entry, or delete that number in Vapi first",
            ));
            continue;
        }

        match d {
            Some(d) if !d.absent => {
                let assistant = match resolve_assistant(desired.owner, d, recorded, observed) {
                    Ok(a) => a,
                    Err((reason, hint)) => {
                        refusals.push(refuse(reason, &hint));
                        continue;
                    }
                };
                if let Some(change) = plan_present(d, r, o, assistant) {
                    plan.changes.push(change);
                }
            }
            _ => {
                let explicit = d.is_some();
                let cause = if explicit {
                    Cause::MarkedAbsent
                } else {
                    Cause::RemovedFromSpec
                };
                if let Some(r) = r
                    && r.protected
                {
                    plan.kept.push(Kept {
                        number: key.to_string(),
                        reason: "protected: set `protected: false` and apply before removing it"
                            .into(),
                    });
                    continue;
                }
                if let Some(change) = plan_absent(key, r, o, cause) {
                    plan.changes.push(change);
                }
            }
        }
    }

    if !refusals.is_empty() {
        return Err(Refusals(refusals));
    }

    for o in &observed.numbers {
        let managed = o.number.as_deref().is_some_and(|n| keys.contains(n));
        if !managed {
            plan.unmanaged.push(Unmanaged {
                number: o.number.clone(),
                id: o.id.clone(),
                provider: o.provider.clone(),
            });
        }
    }
    plan.unmanaged
        .sort_by(|a, b| (&a.number, &a.id).cmp(&(&b.number, &b.id)));
    // Deletes first (a number being replaced is released before it is created again), then the
    // rest; by number within an action.
    plan.changes
        .sort_by(|a, b| (a.action, &a.number).cmp(&(b.action, &b.number)));
    Ok(plan)
}

/// The Vapi record a number maps to, plus unrecorded duplicates to warn about.
fn pick_observed<'a>(
    key: &str,
    row: Option<&PhoneRow>,
    found: &[&'a ObservedNumber],
) -> Result<(Option<&'a ObservedNumber>, Vec<&'a ObservedNumber>), String> {
    match found {
        [] => Ok((None, vec![])),
        [one] => Ok((Some(*one), vec![])),
        many => {
            let recorded_id = row.and_then(|r| r.vapi_phone_id.as_deref());
            match many.iter().find(|o| Some(o.id.as_str()) == recorded_id) {
                Some(hit) => Ok((
                    Some(*hit),
                    many.iter().filter(|o| o.id != hit.id).copied().collect(),
                )),
                None => Err(format!(
                    "`{key}` is listed in Vapi {} times ({}) and no row says which one is in use",
                    many.len(),
                    many.iter()
                        .map(|o| o.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
    }
}

/// The assistant a desired number refers to: (row, Vapi id).
type Resolved<'a> = Option<(&'a AssistantRow, String)>;

fn resolve_assistant<'a>(
    owner: Uuid,
    d: &DesiredNumber,
    recorded: &'a RecordedState,
    observed: &ObservedState,
) -> Result<Resolved<'a>, (String, String)> {
    let Some(reference) = d.assistant.as_deref() else {
        return Ok(None);
    };
    let by_id = Uuid::parse_str(reference).ok();
    let matches_ref = |a: &&AssistantRow| {
        Some(a.id) == by_id
            || a.name.as_deref() == Some(reference)
            || a.vapi_assistant_id.as_deref() == Some(reference)
    };
    let (mine, theirs): (Vec<&AssistantRow>, Vec<&AssistantRow>) = recorded
        .assistants
        .iter()
        .filter(matches_ref)
        .partition(|a| a.user_id == owner);
    let row = match mine.as_slice() {
        [one] => *one,
        [] if !theirs.is_empty() => {
            return Err((
                format!("assistant `{reference}` belongs to another user"),
                "a number can only be answered by one of its owner's assistants".into(),
            ));
        }
        [] => {
            let mut known: Vec<&str> = recorded
                .assistants
                .iter()
                .filter(|a| a.user_id == owner)
                .filter_map(|a| a.name.as_deref())
                .collect();
            known.sort_unstable();
            return Err((
                format!("unknown assistant `{reference}`"),
                if known.is_empty() {
                    "the owner has no rows in `assistants`; create the assistant in the application first".into()
                } else {
                    format!(
                        "use the name or id of one of the owner's assistants: {}",
                        known.join(", ")
                    )
                },
            ));
        }
        many => {
            return Err((
                format!(
                    "assistant name `{reference}` matches {} of the owner's assistants",
                    many.len()
                ),
                format!(
                    "refer to it by id instead: {}",
                    many.iter()
                        .map(|a| a.id.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    };
    let Some(vapi_id) = row.vapi_assistant_id.clone() else {
        return Err((
            format!("assistant `{reference}` has no `vapi_assistant_id` in the database"),
            "create the assistant in Vapi through the application first".into(),
        ));
    };
    if !observed.assistants.contains_key(&vapi_id) {
        return Err((
            format!(
                "assistant `{reference}` points at Vapi assistant `{vapi_id}`, which does not exist in Vapi"
            ),
            "fix the `assistants` row or re-create the assistant in Vapi".into(),
        ));
    }
    Ok(Some((row, vapi_id)))
}

fn server_eq(desired: Option<&ServerConfig>, observed: Option<&ServerConfig>) -> bool {
    let norm = |s: Option<&ServerConfig>| {
        s.map(|s| ServerConfig {
            url: s.url.clone(),
            credential_id: s.credential_id.clone(),
            timeout_seconds: s.timeout_seconds.filter(|t| *t != DEFAULT_SERVER_TIMEOUT),
        })
    };
    norm(desired) == norm(observed)
}

fn show_server(s: Option<&ServerConfig>) -> Option<String> {
    s.map(|s| {
        let mut out = format!("url={}", s.url);
        if let Some(c) = &s.credential_id {
            out.push_str(&format!(" credentialId={c}"));
        }
        if let Some(t) = s.timeout_seconds {
            out.push_str(&format!(" timeoutSeconds={t}"));
        }
        out
    })
}

fn plan_present(
    d: &DesiredNumber,
    r: Option<&PhoneRow>,
    o: Option<&ObservedNumber>,
    assistant: Resolved<'_>,
) -> Option<Change> {
    let assistant_vapi_id = assistant.as_ref().map(|(_, id)| id.clone());
    let assistant_row_id = assistant.as_ref().map(|(row, _)| row.id);
    let assistant_label = d.assistant.clone();
    let number = d.number.as_str().to_string();
    let token = &d.twilio.auth_token;

    // What the row should hold afterwards (the Vapi id is filled in below or by the applier).
    let mut row_values = RowWrite {
        phone_number: number.clone(),
        friendly_name: d.name.clone(),
        vapi_phone_id: o.map(|o| o.id.clone()),
        vapi_credential_id: o
            .and_then(|o| o.credential_id.clone())
            .or_else(|| r.and_then(|r| r.vapi_credential_id.clone())),
        twilio_account_sid: d.twilio.account_sid.clone(),
        twilio_auth_token: token.armored.clone(),
        token_digest: None,
        assigned_assistant_id: assistant_row_id,
        notes: d.notes.clone(),
        protected: d.protected,
    };

    // The token: unchanged when the row holds the same ciphertext, or a digest of the same
    // plaintext (re-encrypted to other recipients).
    let token_state = match r {
        None => TokenState::Unknown,
        Some(r) => {
            if r.twilio_auth_token.as_deref() == Some(token.armored.as_str()) {
                TokenState::Same
            } else {
                match (&token.plaintext, r.token_digest.as_deref()) {
                    (Some(p), Some(dg)) if digest_matches(dg, p) => TokenState::ReEncrypted,
                    (Some(_), _) => TokenState::Rotated,
                    (None, _) => TokenState::Unverifiable,
                }
            }
        }
    };
    if matches!(token_state, TokenState::Same | TokenState::ReEncrypted) {
        row_values.token_digest = r.and_then(|r| r.token_digest.clone());
    }

    let mut fields = Vec::new();
    let field = |field, target, before: Option<String>, after: Option<String>, cause| FieldChange {
        field,
        target,
        before,
        after,
        sensitive: false,
        note: None,
        cause,
    };

    let Some(o) = o else {
        // Not in Vapi: create (new) or re-create (deleted by hand).
        let (action, cause) = match r.and_then(|r| r.vapi_phone_id.as_ref()) {
            Some(_) => (Action::Recreate, Cause::DeletedInVapi),
            None => (Action::Create, Cause::NewInSpec),
        };
        fields.push(field(
            "name",
            Target::Both,
            None,
            Some(d.name.clone()),
            cause,
        ));
        if let Some(a) = &assistant_label {
            fields.push(field(
                "assistant",
                Target::Both,
                None,
                Some(a.clone()),
                cause,
            ));
        }
        if d.server.is_some() {
            fields.push(field(
                "server",
                Target::Vapi,
                None,
                show_server(d.server.as_ref()),
                cause,
            ));
        }
        fields.push(field(
            "smsEnabled",
            Target::Vapi,
            None,
            Some(d.sms_enabled.to_string()),
            cause,
        ));
        fields.push(field(
            "twilioAccountSid",
            Target::Both,
            None,
            Some(d.twilio.account_sid.clone()),
            cause,
        ));
        fields.push(FieldChange {
            sensitive: true,
            note: Some("set".into()),
            ..field("twilioAuthToken", Target::Both, None, None, cause)
        });
        if let Some(n) = &d.notes {
            fields.push(field(
                "notes",
                Target::Database,
                None,
                Some(n.clone()),
                cause,
            ));
        }
        let row = match r {
            Some(r) => RowStep::Update {
                row_id: r.id,
                values: Box::new(row_values),
            },
            None => RowStep::Insert(Box::new(row_values)),
        };
        return Some(Change {
            number,
            action,
            cause,
            fields,
            vapi: VapiStep::Create(Box::new(VapiCreate {
                number: d.number.as_str().to_string(),
                name: d.name.clone(),
                assistant_id: assistant_vapi_id,
                server: d.server.clone(),
                sms_enabled: d.sms_enabled,
                account_sid: d.twilio.account_sid.clone(),
                token: token.clone(),
            })),
            row,
            observed: None,
            recorded: r.cloned(),
        });
    };

    // In Vapi. Compare each owned field; the cause is a spec edit when the spec differs from what
    // the row recorded at the last apply, else an out-of-band edit in Vapi.
    let adopting = r.is_none();
    let vapi_cause = |spec_differs_from_row: bool| {
        if adopting {
            Cause::AdoptUnmanaged
        } else if spec_differs_from_row {
            Cause::SpecEdit
        } else {
            Cause::VapiEditedOutOfBand
        }
    };
    let mut patch = VapiPatch::default();
    // A field recorded in the row too changes in both places when the row differs as well.
    let target = |row_differs: bool| {
        if adopting || row_differs {
            Target::Both
        } else {
            Target::Vapi
        }
    };

    if o.name.as_deref() != Some(d.name.as_str()) {
        let row_differs = r.is_some_and(|r| r.friendly_name.as_deref() != Some(&d.name));
        let cause = vapi_cause(row_differs);
        fields.push(field(
            "name",
            target(row_differs),
            o.name.clone(),
            Some(d.name.clone()),
            cause,
        ));
        patch.name = Some(d.name.clone());
    }
    if o.assistant_id != assistant_vapi_id {
        let row_differs = r.is_some_and(|r| r.assigned_assistant_id != assistant_row_id);
        let cause = vapi_cause(row_differs);
        fields.push(field(
            "assistantId",
            target(row_differs),
            o.assistant_id.clone(),
            assistant_vapi_id.clone(),
            cause,
        ));
        patch.assistant_id = Some(assistant_vapi_id.clone());
    }
    if !server_eq(d.server.as_ref(), o.server.as_ref()) {
        let cause = vapi_cause(false);
        fields.push(field(
            "server",
            Target::Vapi,
            show_server(o.server.as_ref()),
            show_server(d.server.as_ref()),
            cause,
        ));
        patch.server = Some(d.server.clone());
    }
    if o.sms_enabled_effective() != d.sms_enabled {
        fields.push(field(
            "smsEnabled",
            Target::Vapi,
            Some(o.sms_enabled_effective().to_string()),
            Some(d.sms_enabled.to_string()),
            vapi_cause(false),
        ));
        patch.sms_enabled = Some(d.sms_enabled);
    }
    if o.twilio_account_sid.as_deref() != Some(d.twilio.account_sid.as_str()) {
        let row_differs =
            r.is_some_and(|r| r.twilio_account_sid.as_deref() != Some(&d.twilio.account_sid));
        let cause = vapi_cause(row_differs);
        fields.push(field(
            "twilioAccountSid",
            target(row_differs),
            o.twilio_account_sid.clone(),
            Some(d.twilio.account_sid.clone()),
            cause,
        ));
        patch.account_sid = Some(d.twilio.account_sid.clone());
    }
    // Vapi never shows the token: send it when adopting (unknown) or when it was rotated.
    match token_state {
        TokenState::Unknown => {
            fields.push(FieldChange {
                sensitive: true,
                note: Some("set (Vapi does not show the current value)".into()),
                ..field(
                    "twilioAuthToken",
                    Target::Both,
                    None,
                    None,
                    Cause::AdoptUnmanaged,
                )
            });
            patch.token = Some(token.clone());
        }
        TokenState::Rotated => {
            fields.push(FieldChange {
                sensitive: true,
                note: Some("sensitive value changed".into()),
                ..field("twilioAuthToken", Target::Both, None, None, Cause::SpecEdit)
            });
            patch.token = Some(token.clone());
        }
        TokenState::Unverifiable => {
            fields.push(FieldChange {
                sensitive: true,
                note: Some("token changed (cannot verify without key)".into()),
                ..field("twilioAuthToken", Target::Both, None, None, Cause::SpecEdit)
            });
            patch.token = Some(token.clone());
        }
        TokenState::ReEncrypted => {
            fields.push(FieldChange {
                sensitive: true,
                note: Some("re-encrypted, value unchanged".into()),
                ..field(
                    "twilioAuthToken",
                    Target::Database,
                    None,
                    None,
                    Cause::SpecEdit,
                )
            });
        }
        TokenState::Same => {}
    }

    // The row.
    let row = match r {
        None => {
            if let Some(n) = &d.notes {
                fields.push(field(
                    "notes",
                    Target::Database,
                    None,
                    Some(n.clone()),
                    Cause::AdoptUnmanaged,
                ));
            }
            RowStep::Insert(Box::new(row_values))
        }
        Some(r) => {
            let db = |name, before: Option<String>, after: Option<String>| {
                // Vapi already matches (or is being patched); the row alone differs.
                field(name, Target::Database, before, after, Cause::SpecEdit)
            };
            let mut row_fields = Vec::new();
            if r.friendly_name.as_deref() != Some(d.name.as_str()) && patch.name.is_none() {
                row_fields.push(db(
                    "friendlyName",
                    r.friendly_name.clone(),
                    Some(d.name.clone()),
                ));
            }
            if r.assigned_assistant_id != assistant_row_id && patch.assistant_id.is_none() {
                row_fields.push(db(
                    "assignedAssistantId",
                    r.assigned_assistant_id.map(|u| u.to_string()),
                    assistant_row_id.map(|u| u.to_string()),
                ));
            }
            if r.notes != d.notes {
                row_fields.push(db("notes", r.notes.clone(), d.notes.clone()));
            }
            if r.twilio_account_sid.as_deref() != Some(d.twilio.account_sid.as_str())
                && patch.account_sid.is_none()
            {
                row_fields.push(db(
                    "twilioAccountSid",
                    r.twilio_account_sid.clone(),
                    Some(d.twilio.account_sid.clone()),
                ));
            }
            if r.protected != d.protected {
                row_fields.push(db(
                    "protected",
                    Some(r.protected.to_string()),
                    Some(d.protected.to_string()),
                ));
            }
            if r.vapi_phone_id.as_deref() != Some(o.id.as_str()) {
                row_fields.push(field(
                    "vapiPhoneId",
                    Target::Database,
                    r.vapi_phone_id.clone(),
                    Some(o.id.clone()),
                    Cause::DatabaseEditedOutOfBand,
                ));
            }
            if r.vapi_credential_id != row_values.vapi_credential_id {
                row_fields.push(db(
                    "vapiCredentialId",
                    r.vapi_credential_id.clone(),
                    row_values.vapi_credential_id.clone(),
                ));
            }
            let row_token_differs = r.twilio_auth_token.as_deref() != Some(token.armored.as_str());
            let row_changes = !row_fields.is_empty()
                || row_token_differs
                || r.friendly_name.as_deref() != Some(d.name.as_str())
                || r.assigned_assistant_id != assistant_row_id
                || r.twilio_account_sid.as_deref() != Some(d.twilio.account_sid.as_str());
            fields.extend(row_fields);
            if row_changes {
                RowStep::Update {
                    row_id: r.id,
                    values: Box::new(row_values),
                }
            } else {
                RowStep::None
            }
        }
    };

    let vapi = if patch.is_empty() {
        VapiStep::None
    } else {
        VapiStep::Update {
            id: o.id.clone(),
            patch: Box::new(patch),
        }
    };
    if matches!(vapi, VapiStep::None) && matches!(row, RowStep::None) {
        return None;
    }
    let (action, cause) = if adopting {
        (Action::Adopt, Cause::AdoptUnmanaged)
    } else {
        let cause = fields
            .iter()
            .map(|f| f.cause)
            .min_by_key(|c| cause_rank(*c))
            .unwrap_or(Cause::SpecEdit);
        (Action::Update, cause)
    };
    Some(Change {
        number,
        action,
        cause,
        fields,
        vapi,
        row,
        observed: Some(o.clone()),
        recorded: r.cloned(),
    })
}

/// The headline cause of an update with several fields: a spec edit explains the most.
fn cause_rank(c: Cause) -> u8 {
    match c {
        Cause::SpecEdit => 0,
        Cause::VapiEditedOutOfBand => 1,
        Cause::DatabaseEditedOutOfBand => 2,
        _ => 3,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenState {
    /// No row: nothing to compare against.
    Unknown,
    Same,
    ReEncrypted,
    Rotated,
    /// The ciphertext differs and there is no key to compare plaintexts.
    Unverifiable,
}

fn plan_absent(
    key: &str,
    r: Option<&PhoneRow>,
    o: Option<&ObservedNumber>,
    cause: Cause,
) -> Option<Change> {
    let before_name = o
        .and_then(|o| o.name.clone())
        .or_else(|| r.and_then(|r| r.friendly_name.clone()));
    let fields = vec![FieldChange {
        field: "name",
        target: Target::Both,
        before: before_name,
        after: None,
        sensitive: false,
        note: None,
        cause,
    }];
    let row = r.map_or(RowStep::None, |r| RowStep::Delete { row_id: r.id });
    let (action, cause, vapi) = match o {
        Some(o) => (Action::Delete, cause, VapiStep::Delete { id: o.id.clone() }),
        None if r.is_some() => (Action::RemoveRow, Cause::StaleDatabaseRow, VapiStep::None),
        None => return None,
    };
    Some(Change {
        number: key.to_string(),
        action,
        cause,
        fields,
        vapi,
        row,
        observed: o.cloned(),
        recorded: r.cloned(),
    })
}

#[cfg(test)]
mod tests {
    //! One test per row of the decision table, plus the refusals and field rules.
    use super::*;
    use crate::secrets::{SecretValue, token_digest};
    use crate::state::{DesiredTwilio, E164, EncryptedToken, ObservedAssistant};

    const OWNER: Uuid = Uuid::from_u128(0x3f1c2b7e_0000_4000_8000_000000000001);
    const OTHER: Uuid = Uuid::from_u128(0x99);
    const SID: &str = "AC0123456789abcdef0123456789abcdef";
    const N1: &str = "+14155551234";
    const N2: &str = "+14155551235";

    fn token(armored: &str, plain: Option<&str>) -> EncryptedToken {
        EncryptedToken {
            armored: armored.into(),
            plaintext: plain.map(SecretValue::new),
        }
    }

    fn want(n: &str) -> DesiredNumber {
        DesiredNumber {
            number: E164::new_unchecked(n),
            name: "Main".into(),
            assistant: None,
            notes: None,
            twilio: DesiredTwilio {
                account_sid: SID.into(),
                auth_token: token("ARMOR-A", Some(&"a".repeat(32))),
            },
            server: None,
            sms_enabled: true,
            protected: false,
            absent: false,
            line: 3,
        }
    }

    fn desired(numbers: Vec<DesiredNumber>) -> DesiredState {
        DesiredState {
            owner: OWNER,
            numbers: numbers.into_iter().map(|d| (d.number.clone(), d)).collect(),
            spec_digest: "d".into(),
        }
    }

    fn row(n: &str, vapi_id: Option<&str>) -> PhoneRow {
        PhoneRow {
            id: Uuid::new_v4(),
            user_id: OWNER,
            phone_number: n.into(),
            friendly_name: Some("Main".into()),
            provider: "twilio".into(),
            vapi_phone_id: vapi_id.map(Into::into),
            vapi_credential_id: None,
            twilio_account_sid: Some(SID.into()),
            twilio_auth_token: Some("ARMOR-A".into()),
            assigned_assistant_id: None,
            notes: None,
            token_digest: Some(token_digest(&SecretValue::new("a".repeat(32)))),
            protected: false,
        }
    }

    fn recorded(rows: Vec<PhoneRow>) -> RecordedState {
        RecordedState {
            rows: rows
                .into_iter()
                .map(|r| (r.phone_number.clone(), r))
                .collect(),
            ..RecordedState::default()
        }
    }

    fn seen(n: &str, id: &str) -> ObservedNumber {
        ObservedNumber {
            id: id.into(),
            provider: "twilio".into(),
            number: Some(n.into()),
            name: Some("Main".into()),
            assistant_id: None,
            squad_id: None,
            workflow_id: None,
            server: None,
            sms_enabled: None,
            twilio_account_sid: Some(SID.into()),
            credential_id: None,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            updated_at: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    fn observed(numbers: Vec<ObservedNumber>) -> ObservedState {
        ObservedState {
            numbers,
            assistants: BTreeMap::new(),
        }
    }

    fn only(plan: &Plan) -> &Change {
        assert_eq!(plan.changes.len(), 1, "{:#?}", plan.changes);
        &plan.changes[0]
    }

    #[test]
    fn in_spec_only_is_created_then_inserted() {
        let plan = diff(
            &desired(vec![want(N1)]),
            &recorded(vec![]),
            &observed(vec![]),
        )
        .unwrap();
        let c = only(&plan);
        assert_eq!((c.action, c.cause), (Action::Create, Cause::NewInSpec));
        assert!(matches!(c.vapi, VapiStep::Create(_)));
        assert!(matches!(c.row, RowStep::Insert(_)));
    }

    #[test]
    fn unrecorded_vapi_number_is_adopted_not_posted() {
        let plan = diff(
            &desired(vec![want(N1)]),
            &recorded(vec![]),
            &observed(vec![seen(N1, "v1")]),
        )
        .unwrap();
        let c = only(&plan);
        assert_eq!((c.action, c.cause), (Action::Adopt, Cause::AdoptUnmanaged));
        let VapiStep::Update { id, patch } = &c.vapi else {
            panic!("adopt must PATCH, not POST: {:?}", c.vapi)
        };
        assert_eq!(id, "v1");
        // Nothing but the token differs; the token is sent because Vapi never shows it.
        assert!(patch.token.is_some() && patch.name.is_none() && patch.assistant_id.is_none());
        let RowStep::Insert(values) = &c.row else {
            panic!()
        };
        assert_eq!(values.vapi_phone_id.as_deref(), Some("v1"));
    }

    #[test]
    fn everything_equal_plans_nothing() {
        let plan = diff(
            &desired(vec![want(N1)]),
            &recorded(vec![row(N1, Some("v1"))]),
            &observed(vec![seen(N1, "v1")]),
        )
        .unwrap();
        assert!(plan.is_empty(), "{:#?}", plan.changes);
    }

    #[test]
    fn spec_edit_patches_only_changed_fields_and_updates_row() {
        let mut d = want(N1);
        d.name = "Sales".into();
        let plan = diff(
            &desired(vec![d]),
            &recorded(vec![row(N1, Some("v1"))]),
            &observed(vec![seen(N1, "v1")]),
        )
        .unwrap();
        let c = only(&plan);
        assert_eq!((c.action, c.cause), (Action::Update, Cause::SpecEdit));
        let VapiStep::Update { patch, .. } = &c.vapi else {
            panic!()
        };
        assert_eq!(
            **patch,
            VapiPatch {
                name: Some("Sales".into()),
                ..VapiPatch::default()
            }
        );
        let RowStep::Update { values, .. } = &c.row else {
            panic!()
        };
        assert_eq!(values.friendly_name, "Sales");
    }

    #[test]
    fn dashboard_edit_is_reverted_and_blamed_on_vapi() {
        let mut o = seen(N1, "v1");
        o.name = Some("Changed by hand".into());
        o.sms_enabled = Some(false);
        let plan = diff(
            &desired(vec![want(N1)]),
            &recorded(vec![row(N1, Some("v1"))]),
            &observed(vec![o]),
        )
        .unwrap();
        let c = only(&plan);
        assert_eq!(
            (c.action, c.cause),
            (Action::Update, Cause::VapiEditedOutOfBand)
        );
        let VapiStep::Update { patch, .. } = &c.vapi else {
            panic!()
        };
        assert_eq!(patch.name.as_deref(), Some("Main"));
        assert_eq!(patch.sms_enabled, Some(true));
        assert!(matches!(c.row, RowStep::None), "the row already matches");
    }

    #[test]
    fn deleted_in_vapi_is_recreated_and_row_repointed() {
        let r = row(N1, Some("gone"));
        let row_id = r.id;
        let plan = diff(
            &desired(vec![want(N1)]),
            &recorded(vec![r]),
            &observed(vec![]),
        )
        .unwrap();
        let c = only(&plan);
        assert_eq!(
            (c.action, c.cause),
            (Action::Recreate, Cause::DeletedInVapi)
        );
        assert!(matches!(c.vapi, VapiStep::Create(_)));
        assert!(matches!(&c.row, RowStep::Update { row_id: id, .. } if *id == row_id));
    }

    #[test]
    fn removed_from_spec_is_deleted_in_vapi_then_row() {
        let plan = diff(
            &desired(vec![]),
            &recorded(vec![row(N1, Some("v1"))]),
            &observed(vec![seen(N1, "v1")]),
        )
        .unwrap();
        let c = only(&plan);
        assert_eq!(
            (c.action, c.cause),
            (Action::Delete, Cause::RemovedFromSpec)
        );
        assert!(matches!(&c.vapi, VapiStep::Delete { id } if id == "v1"));
        assert!(matches!(c.row, RowStep::Delete { .. }));
        assert_eq!(plan.implicit_deletes(), 1);
    }

    #[test]
    fn protected_row_is_kept_after_its_entry_is_removed() {
        let mut r = row(N1, Some("v1"));
        r.protected = true;
        let plan = diff(
            &desired(vec![]),
            &recorded(vec![r]),
            &observed(vec![seen(N1, "v1")]),
        )
        .unwrap();
        assert!(plan.is_empty());
        assert_eq!(plan.kept.len(), 1);
        assert_eq!(plan.kept[0].number, N1);
    }

    #[test]
    fn stale_row_without_vapi_number_is_removed() {
        let plan = diff(
            &desired(vec![]),
            &recorded(vec![row(N1, Some("v1"))]),
            &observed(vec![]),
        )
        .unwrap();
        let c = only(&plan);
        assert_eq!(
            (c.action, c.cause),
            (Action::RemoveRow, Cause::StaleDatabaseRow)
        );
        assert!(matches!(c.vapi, VapiStep::None));
        assert!(matches!(c.row, RowStep::Delete { .. }));
        assert_eq!(plan.implicit_deletes(), 0, "no number is released");
    }

    #[test]
    fn number_of_another_user_is_refused() {
        let mut rec = recorded(vec![]);
        rec.foreign.insert(N1.into(), OTHER);
        let err = diff(
            &desired(vec![want(N1)]),
            &rec,
            &observed(vec![seen(N1, "v1")]),
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert!(err.0[0].reason.contains("another user"), "{}", err);
        assert_eq!(err.0[0].line, Some(3));
    }

    #[test]
    fn unmanaged_vapi_number_is_listed_and_untouched() {
        let plan = diff(
            &desired(vec![]),
            &recorded(vec![]),
            &observed(vec![seen(N2, "v2")]),
        )
        .unwrap();
        assert!(plan.is_empty());
        assert_eq!(plan.unmanaged.len(), 1);
        assert_eq!(plan.unmanaged[0].number.as_deref(), Some(N2));
    }

    #[test]
    fn absent_entry_deletes_even_an_unrecorded_vapi_number() {
        let mut d = want(N1);
        d.absent = true;
        let plan = diff(
            &desired(vec![d]),
            &recorded(vec![]),
            &observed(vec![seen(N1, "v1")]),
        )
        .unwrap();
        let c = only(&plan);
        assert_eq!((c.action, c.cause), (Action::Delete, Cause::MarkedAbsent));
        assert!(matches!(c.row, RowStep::None));
        assert_eq!(plan.implicit_deletes(), 0);
    }

    #[test]
    fn absent_entry_already_gone_plans_nothing() {
        let mut d = want(N1);
        d.absent = true;
        let plan = diff(&desired(vec![d]), &recorded(vec![]), &observed(vec![])).unwrap();
        assert!(plan.is_empty());
    }

    #[test]
    fn row_without_vapi_id_is_created_and_repointed() {
        let plan = diff(
            &desired(vec![want(N1)]),
            &recorded(vec![row(N1, None)]),
            &observed(vec![]),
        )
        .unwrap();
        let c = only(&plan);
        assert_eq!((c.action, c.cause), (Action::Create, Cause::NewInSpec));
        assert!(matches!(c.row, RowStep::Update { .. }));
    }

    #[test]
    fn row_pointing_at_another_vapi_id_is_repointed() {
        let plan = diff(
            &desired(vec![want(N1)]),
            &recorded(vec![row(N1, Some("old"))]),
            &observed(vec![seen(N1, "new")]),
        )
        .unwrap();
        let c = only(&plan);
        assert_eq!(c.action, Action::Update);
        assert!(matches!(c.vapi, VapiStep::None));
        let RowStep::Update { values, .. } = &c.row else {
            panic!()
        };
        assert_eq!(values.vapi_phone_id.as_deref(), Some("new"));
    }

    #[test]
    fn duplicate_in_vapi_without_a_row_is_refused() {
        let err = diff(
            &desired(vec![want(N1)]),
            &recorded(vec![]),
            &observed(vec![seen(N1, "a"), seen(N1, "b")]),
        )
        .unwrap_err();
        assert!(err.0[0].reason.contains("2 times"), "{err}");
    }

    #[test]
    fn duplicate_in_vapi_with_a_row_uses_the_recorded_one_and_warns() {
        let plan = diff(
            &desired(vec![want(N1)]),
            &recorded(vec![row(N1, Some("b"))]),
            &observed(vec![seen(N1, "a"), seen(N1, "b")]),
        )
        .unwrap();
        assert!(plan.is_empty());
        assert_eq!(plan.warnings.len(), 1);
    }

    #[test]
    fn other_provider_with_the_same_number_is_refused() {
        let mut o = seen(N1, "v1");
        o.provider = "vonage".into();
        let err = diff(
            &desired(vec![want(N1)]),
            &recorded(vec![]),
            &observed(vec![o]),
        )
        .unwrap_err();
        assert!(err.0[0].reason.contains("vonage"));
    }

    fn with_assistants(rec: &mut RecordedState, obs: &mut ObservedState) -> Uuid {
        let id = Uuid::from_u128(7);
        rec.assistants.push(AssistantRow {
            id,
            user_id: OWNER,
            name: Some("sales-bot".into()),
            vapi_assistant_id: Some("va-1".into()),
        });
        rec.assistants.push(AssistantRow {
            id: Uuid::from_u128(8),
            user_id: OTHER,
            name: Some("their-bot".into()),
            vapi_assistant_id: Some("va-2".into()),
        });
        for (vid, name) in [("va-1", "sales-bot"), ("va-2", "their-bot")] {
            obs.assistants.insert(
                vid.into(),
                ObservedAssistant {
                    id: vid.into(),
                    name: Some(name.into()),
                },
            );
        }
        id
    }

    #[test]
    fn assistant_name_resolves_to_vapi_id_and_row_id() {
        let mut rec = recorded(vec![row(N1, Some("v1"))]);
        let mut obs = observed(vec![seen(N1, "v1")]);
        let row_id = with_assistants(&mut rec, &mut obs);
        let mut d = want(N1);
        d.assistant = Some("sales-bot".into());
        let plan = diff(&desired(vec![d]), &rec, &obs).unwrap();
        let c = only(&plan);
        let VapiStep::Update { patch, .. } = &c.vapi else {
            panic!()
        };
        assert_eq!(patch.assistant_id, Some(Some("va-1".into())));
        let RowStep::Update { values, .. } = &c.row else {
            panic!()
        };
        assert_eq!(values.assigned_assistant_id, Some(row_id));
    }

    #[test]
    fn removing_the_assistant_clears_it() {
        let mut rec = recorded(vec![row(N1, Some("v1"))]);
        let mut obs = observed(vec![seen(N1, "v1")]);
        let row_id = with_assistants(&mut rec, &mut obs);
        rec.rows.get_mut(N1).unwrap().assigned_assistant_id = Some(row_id);
        obs.numbers[0].assistant_id = Some("va-1".into());
        let plan = diff(&desired(vec![want(N1)]), &rec, &obs).unwrap();
        let VapiStep::Update { patch, .. } = &only(&plan).vapi else {
            panic!()
        };
        assert_eq!(patch.assistant_id, Some(None));
    }

    #[test]
    fn another_users_assistant_is_refused() {
        let mut rec = recorded(vec![]);
        let mut obs = observed(vec![]);
        with_assistants(&mut rec, &mut obs);
        let mut d = want(N1);
        d.assistant = Some("their-bot".into());
        let err = diff(&desired(vec![d]), &rec, &obs).unwrap_err();
        assert!(err.0[0].reason.contains("belongs to another user"), "{err}");
    }

    #[test]
    fn unknown_assistant_is_refused_listing_known_ones() {
        let mut rec = recorded(vec![]);
        let mut obs = observed(vec![]);
        with_assistants(&mut rec, &mut obs);
        let mut d = want(N1);
        d.assistant = Some("nope".into());
        let err = diff(&desired(vec![d]), &rec, &obs).unwrap_err();
        assert!(err.0[0].reason.contains("unknown assistant"));
        assert!(err.0[0].hint.contains("sales-bot"));
    }

    #[test]
    fn assistant_missing_in_vapi_is_refused() {
        let mut rec = recorded(vec![]);
        let mut obs = observed(vec![]);
        with_assistants(&mut rec, &mut obs);
        obs.assistants.clear();
        let mut d = want(N1);
        d.assistant = Some("sales-bot".into());
        let err = diff(&desired(vec![d]), &rec, &obs).unwrap_err();
        assert!(err.0[0].reason.contains("does not exist in Vapi"));
    }

    #[test]
    fn ambiguous_assistant_name_is_refused() {
        let mut rec = recorded(vec![]);
        let mut obs = observed(vec![]);
        with_assistants(&mut rec, &mut obs);
        let mut twin = rec.assistants[0].clone();
        twin.id = Uuid::from_u128(9);
        rec.assistants.push(twin);
        let mut d = want(N1);
        d.assistant = Some("sales-bot".into());
        let err = diff(&desired(vec![d]), &rec, &obs).unwrap_err();
        assert!(err.0[0].reason.contains("matches 2"));
    }

    #[test]
    fn rotated_token_is_sent_and_shown_as_sensitive() {
        let mut d = want(N1);
        d.twilio.auth_token = token("ARMOR-B", Some(&"b".repeat(32)));
        let plan = diff(
            &desired(vec![d]),
            &recorded(vec![row(N1, Some("v1"))]),
            &observed(vec![seen(N1, "v1")]),
        )
        .unwrap();
        let c = only(&plan);
        let VapiStep::Update { patch, .. } = &c.vapi else {
            panic!()
        };
        assert!(patch.token.is_some());
        let f = c
            .fields
            .iter()
            .find(|f| f.field == "twilioAuthToken")
            .unwrap();
        assert!(f.sensitive && f.before.is_none() && f.after.is_none());
        assert_eq!(f.note.as_deref(), Some("sensitive value changed"));
    }

    #[test]
    fn re_encrypted_same_token_updates_only_the_row() {
        let mut d = want(N1);
        d.twilio.auth_token = token("ARMOR-A2", Some(&"a".repeat(32)));
        let plan = diff(
            &desired(vec![d]),
            &recorded(vec![row(N1, Some("v1"))]),
            &observed(vec![seen(N1, "v1")]),
        )
        .unwrap();
        let c = only(&plan);
        assert!(matches!(c.vapi, VapiStep::None));
        let RowStep::Update { values, .. } = &c.row else {
            panic!()
        };
        assert_eq!(values.twilio_auth_token, "ARMOR-A2");
        assert!(values.token_digest.is_some(), "the digest is kept");
    }

    #[test]
    fn keyless_changed_ciphertext_cannot_be_verified() {
        let mut d = want(N1);
        d.twilio.auth_token = token("ARMOR-B", None);
        let plan = diff(
            &desired(vec![d]),
            &recorded(vec![row(N1, Some("v1"))]),
            &observed(vec![seen(N1, "v1")]),
        )
        .unwrap();
        let f = only(&plan)
            .fields
            .iter()
            .find(|f| f.field == "twilioAuthToken")
            .unwrap();
        assert_eq!(
            f.note.as_deref(),
            Some("token changed (cannot verify without key)")
        );
    }

    #[test]
    fn keyless_same_ciphertext_plans_nothing() {
        let mut d = want(N1);
        d.twilio.auth_token = token("ARMOR-A", None);
        let plan = diff(
            &desired(vec![d]),
            &recorded(vec![row(N1, Some("v1"))]),
            &observed(vec![seen(N1, "v1")]),
        )
        .unwrap();
        assert!(plan.is_empty());
    }

    #[test]
    fn server_default_timeout_equals_unset() {
        let mut d = want(N1);
        d.server = Some(ServerConfig {
            url: "https://x.test/hook".into(),
            credential_id: None,
            timeout_seconds: None,
        });
        let mut o = seen(N1, "v1");
        o.server = Some(ServerConfig {
            url: "https://x.test/hook".into(),
            credential_id: None,
            timeout_seconds: Some(20),
        });
        let plan = diff(
            &desired(vec![d]),
            &recorded(vec![row(N1, Some("v1"))]),
            &observed(vec![o]),
        )
        .unwrap();
        assert!(plan.is_empty());
    }

    #[test]
    fn removed_server_is_cleared() {
        let mut o = seen(N1, "v1");
        o.server = Some(ServerConfig {
            url: "https://x.test/hook".into(),
            credential_id: None,
            timeout_seconds: None,
        });
        let plan = diff(
            &desired(vec![want(N1)]),
            &recorded(vec![row(N1, Some("v1"))]),
            &observed(vec![o]),
        )
        .unwrap();
        let VapiStep::Update { patch, .. } = &only(&plan).vapi else {
            panic!()
        };
        assert_eq!(patch.server, Some(None));
    }

    #[test]
    fn notes_change_touches_only_the_database() {
        let mut d = want(N1);
        d.notes = Some("call center".into());
        let plan = diff(
            &desired(vec![d]),
            &recorded(vec![row(N1, Some("v1"))]),
            &observed(vec![seen(N1, "v1")]),
        )
        .unwrap();
        let c = only(&plan);
        assert!(matches!(c.vapi, VapiStep::None));
        assert!(matches!(c.row, RowStep::Update { .. }));
    }

    #[test]
    fn deletes_are_ordered_before_creates() {
        let plan = diff(
            &desired(vec![want(N2)]),
            &recorded(vec![row(N1, Some("v1"))]),
            &observed(vec![seen(N1, "v1")]),
        )
        .unwrap();
        let actions: Vec<Action> = plan.changes.iter().map(|c| c.action).collect();
        assert_eq!(actions, vec![Action::Delete, Action::Create]);
    }
}
