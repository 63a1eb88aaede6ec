//! The three-way diff (pure): desired (spec) × recorded (database) × observed (Vapi) → [`Plan`].
//!
//! Numbers are matched by their E.164 form: a row's `phone_number` is read however the
//! application wrote it (`4155557002`, `+1 415-555-7002`, `0014155557002`: see [`matching`]),
//! and a row also matches the Vapi number whose id it records. For each number the decision is:
//!
//! | spec | owner's row | Vapi | action |
//! |---|---|---|---|
//! | yes | no | no | [`Action::Create`]: create in Vapi, then insert the row with Vapi's id |
//! | yes | no | yes, recorded by no one | [`Action::Adopt`]: PATCH what differs (always the token, which Vapi never shows), insert the row; never a second POST |
//! | yes | yes | yes | [`Action::Update`]: PATCH the Vapi fields and/or update the row fields that differ; nothing when equal. A row that records another Vapi copy (or none) is repointed, and the copy in use gets the token, as in an adopt. A row whose number is not written in E.164 is the same number: it is updated in place and its `phone_number` canonicalized |
//! | yes | yes | no | [`Action::Recreate`] (deleted by hand) — or [`Action::Create`] when the row never had a Vapi id: create, then repoint the row |
//! | no, or `absent: true` | yes | yes | [`Action::Delete`]: release from Vapi, then delete the row — unless protected ([`Kept`]) |
//! | no, or `absent: true` | yes | no | [`Action::RemoveRow`]: delete the stale row — unless protected |
//! | `absent: true` | no | yes | [`Action::Delete`] in Vapi only: the entry names the number explicitly |
//! | `absent: true` | no | no | nothing: already absent |
//! | yes | row of another user (by number in any form, or by the Vapi id in use) | any | refused: the number belongs to someone else |
//! | no | row of the owner and of another user | any | kept: never released |
//! | yes | any | another provider (row or Vapi) | refused: vapictl manages Twilio numbers only |
//! | no | another provider (row or Vapi) | any | out of scope ([`Plan::out_of_scope`]): never deleted, never adopted |
//! | no | no | yes, recorded by no one | unmanaged: never touched, listed in [`Plan::unmanaged`] |
//! | no | no | yes, recorded for another user | counted in [`Plan::other_users_count`], never shown |
//!
//! Also refused: a number that Vapi lists more than once (unless the owner's row names one of
//! them), a number for which the owner has several rows, an assistant reference that matches
//! none, several, or another user's assistant, or whose Vapi assistant does not exist. Each
//! refusal is a [`RefusalReason`] and points at the spec field it is about.
//!
//! A row with no `provider` (NULL) is taken as Twilio; Vapi's `provider` decides then.
//! Protection is remembered in the row (`vapictl_protected`), so removing a protected entry from
//! the spec keeps the number ([`Kept`]).
//!
//! Each field is compared once, in [`fields::judge`], which gives its cause.

mod assistants;
mod fields;
pub(crate) mod matching;
mod refusal;
#[cfg(test)]
mod tests;

pub use assistants::{AssistantIndex, Resolved};
pub use refusal::{FieldAt, Refusal, RefusalReason, Refusals};

use crate::plan::{
    Action, Blocked, Cause, Change, FieldChange, Kept, OutOfScope, Plan, RowStep, Target,
    Unmanaged, VapiCreate, VapiPatch, VapiStep,
};
use crate::secrets::digest_matches;
use crate::state::{
    DesiredNumber, DesiredState, E164, ObservedNumber, ObservedState, PhoneRow, RecordedState,
    RowWrite, ServerConfig,
};
use fields::{Applied, Mode, Views, judge, normalized_server};
use matching::{match_numbers, pick_observed};

/// Vapi's `status` of a number that takes no calls.
pub const BLOCKED: &str = "blocked";

/// The only provider vapictl manages.
pub const TWILIO: &str = "twilio";

/// Whether a row's `provider` column puts it within vapictl's scope (NULL reads as Twilio).
pub fn row_in_scope(provider: &str) -> bool {
    provider.is_empty() || provider.eq_ignore_ascii_case(TWILIO)
}

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
        spec_entries: desired.numbers.len(),
        ..Plan::default()
    };
    let assistants = AssistantIndex::new(desired.owner, &recorded.assistants);
    let matched = match_numbers(
        desired.numbers.keys().map(E164::as_str),
        &recorded.rows,
        &recorded.foreign,
        &observed.numbers,
    );
    for u in &matched.unmatched {
        plan.out_of_scope.push(OutOfScope {
            number: u.row.phone_number.clone(),
            provider: None,
            reason: u.reason.clone(),
        });
    }

    let keys: std::collections::BTreeSet<&str> = desired
        .numbers
        .keys()
        .map(E164::as_str)
        .chain(matched.rows.keys().map(String::as_str))
        .collect();
    // Vapi ids the owner's numbers use, so that they are not listed as unmanaged.
    let mut handled_ids = std::collections::BTreeSet::new();

    for key in &keys {
        let d = desired.numbers.get(&E164::new_unchecked(*key));
        let rows = matched.rows.get(*key).map(Vec::as_slice).unwrap_or(&[]);
        let refuse = |reason: RefusalReason| Refusal {
            number: key.to_string(),
            at: d.map(|d| FieldAt {
                path: format!("{}.{}", d.path, reason.field()),
                location: d.position(reason.field()),
            }),
            reason,
        };
        let r = match rows {
            [] => None,
            [one] => Some(*one),
            many => {
                refusals.push(refuse(RefusalReason::DuplicateRows {
                    stored_as: many.iter().map(|r| r.phone_number.clone()).collect(),
                }));
                continue;
            }
        };
        let found = matched.in_vapi.get(*key).map(Vec::as_slice).unwrap_or(&[]);
        handled_ids.extend(found.iter().map(|o| o.id.as_str()));
        let o = match pick_observed(r, found) {
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
                    refusals.push(refuse(reason));
                }
                continue;
            }
        };

        // Another user's row: by number (in any form), or by the Vapi id in use.
        let claim = matched
            .claims
            .get(*key)
            .map(|(user, stored)| (*user, (stored != key).then(|| stored.clone())))
            .or_else(|| {
                o.and_then(|o| recorded.foreign_vapi_ids.get(&o.id))
                    .map(|user| (*user, None))
            });
        if let Some((user, stored_as)) = claim {
            if d.is_some() {
                refusals.push(refuse(RefusalReason::AnotherUsersNumber {
                    user,
                    stored_as,
                }));
            } else if r.is_some() {
                plan.kept.push(Kept {
                    number: key.to_string(),
                    reason: "also recorded for another user: vapictl never releases it".into(),
                });
            }
            continue;
        }

        // vapictl manages Twilio numbers only: another provider in the row or in Vapi puts the
        // number out of scope on every path (issue 9).
        let row_provider = r.map(|r| r.provider.as_str()).filter(|p| !row_in_scope(p));
        let vapi_provider = o.map(|o| o.provider.as_str()).filter(|p| *p != TWILIO);
        if row_provider.is_some() || vapi_provider.is_some() {
            match (d, vapi_provider.zip(o)) {
                (Some(_), Some((provider, o))) => {
                    refusals.push(refuse(RefusalReason::OtherProviderInVapi {
                        provider: provider.to_string(),
                        id: o.id.clone(),
                    }))
                }
                (Some(_), None) => refusals.push(refuse(RefusalReason::OtherProviderInDatabase {
                    provider: row_provider.unwrap_or_default().to_string(),
                })),
                (None, _) => {
                    let provider = vapi_provider.or(row_provider).unwrap_or_default();
                    plan.out_of_scope.push(OutOfScope {
                        number: r.map_or_else(|| key.to_string(), |r| r.phone_number.clone()),
                        provider: Some(provider.to_string()),
                        reason: format!(
                            "a `{provider}` number: vapictl manages Twilio numbers only and never deletes it"
                        ),
                    });
                }
            }
            continue;
        }

        if let Some(r) = r {
            plan.managed_count += 1;
            if o.is_some() && !r.protected {
                plan.releasable_count += 1;
            }
        }

        // A number Vapi blocked takes no calls, whatever is applied: a finding of its own and a
        // warning in every plan of the owner (issue 12).
        if let Some(o) = o
            && o.status.as_deref() == Some(BLOCKED)
            && (d.is_some() || r.is_some())
        {
            plan.blocked.push(Blocked {
                number: key.to_string(),
                id: o.id.clone(),
                status: BLOCKED.to_string(),
                cause: "blocked_in_vapi",
            });
            plan.warnings.push(format!(
                "`{key}` is blocked in Vapi (status `blocked`, id `{}`): it takes no calls whatever vapictl applies; see the number in the Vapi dashboard or ask Vapi support",
                o.id
            ));
        }

        match d {
            Some(d) if !d.absent => {
                let assistant = match d.assistant.as_deref() {
                    None => None,
                    Some(reference) => match assistants.resolve(reference, observed) {
                        Ok(a) => Some(a),
                        Err(reason) => {
                            refusals.push(refuse(reason));
                            continue;
                        }
                    },
                };
                if let Some(change) = plan_present(d, r, o, assistant, observed) {
                    plan.changes.push(change);
                }
            }
            _ => {
                let cause = if d.is_some() {
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
    // Rows matched to a Vapi number by id only use that number's copies too.
    for rows in matched.rows.values() {
        for r in rows {
            if let Some(id) = r.vapi_phone_id.as_deref() {
                handled_ids.insert(id);
            }
        }
    }

    if !refusals.is_empty() {
        return Err(Refusals {
            spec_path: desired.spec_path.clone(),
            items: refusals,
        });
    }

    for o in &observed.numbers {
        if handled_ids.contains(o.id.as_str()) {
            continue;
        }
        let recorded_by_other = recorded.foreign_vapi_ids.contains_key(&o.id)
            || o.number
                .as_deref()
                .is_some_and(|n| matched.claims.contains_key(n));
        if recorded_by_other {
            // "Users can only manage their own phone numbers" includes seeing them: counted only.
            plan.other_users_count += 1;
            continue;
        }
        plan.unmanaged.push(Unmanaged {
            number: o.number.clone(),
            id: o.id.clone(),
            provider: o.provider.clone(),
        });
    }
    plan.unmanaged
        .sort_by(|a, b| (&a.number, &a.id).cmp(&(&b.number, &b.id)));
    plan.out_of_scope.sort_by(|a, b| a.number.cmp(&b.number));
    // Deletes first (a number being replaced is released before it is created again), then the
    // rest; by number within an action.
    plan.changes
        .sort_by(|a, b| (a.action, &a.number).cmp(&(b.action, &b.number)));
    Ok(plan)
}

fn server_eq(desired: Option<&ServerConfig>, observed: Option<&ServerConfig>) -> bool {
    normalized_server(desired) == normalized_server(observed)
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
        if let Some(h) = &s.headers {
            out.push_str(&format!(" headers={}", fields::show_headers(h, &[])));
        }
        if let Some(b) = s.static_ip_addresses_enabled {
            out.push_str(&format!(" staticIpAddressesEnabled={b}"));
        }
        if let Some(p) = &s.encrypted_paths {
            out.push_str(&format!(" encryptedPaths=[{}]", p.join(", ")));
        }
        if let Some(b) = &s.backoff_plan {
            out.push_str(&format!(" backoffPlan={b}"));
        }
        out
    })
}

/// How the token in the spec relates to what the number has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenState {
    /// No row: nothing to compare against.
    Unknown,
    Same,
    ReEncrypted,
    Rotated,
    /// The ciphertext differs and there is no key to compare plaintexts.
    Unverifiable,
    /// The row is compared, but the Vapi copy in use is not the one the row records: whatever
    /// the row says, that copy never got the token from vapictl.
    NotOnThisCopy,
}

/// What happened when the row's recorded Vapi copy is not the one in use.
fn repointed(
    r: &PhoneRow,
    o: &ObservedNumber,
    observed: &ObservedState,
) -> Option<(Cause, String)> {
    let recorded = r.vapi_phone_id.as_deref();
    if recorded == Some(o.id.as_str()) {
        return None;
    }
    Some(match recorded {
        None => (
            Cause::DatabaseEditedOutOfBand,
            format!("the row records no Vapi copy; the copy `{}` is used", o.id),
        ),
        Some(old) if observed.numbers.iter().any(|x| x.id == old) => (
            Cause::DatabaseEditedOutOfBand,
            format!(
                "the row was pointed at `{old}`, another Vapi number; the copy `{}` is used",
                o.id
            ),
        ),
        Some(old) => (
            Cause::DeletedInVapi,
            format!(
                "the recorded copy `{old}` no longer exists in Vapi; the copy `{}` is used",
                o.id
            ),
        ),
    })
}

fn plan_present(
    d: &DesiredNumber,
    r: Option<&PhoneRow>,
    o: Option<&ObservedNumber>,
    assistant: Option<Resolved<'_>>,
    observed: &ObservedState,
) -> Option<Change> {
    let assistant_vapi_id = assistant.as_ref().map(|(_, id)| id.clone());
    let assistant_row_id = assistant.as_ref().map(|(row, _)| row.id);
    let number = d.number.as_str().to_string();
    let token = &d.twilio.auth_token;
    let repoint = match (r, o) {
        (Some(r), Some(o)) => repointed(r, o, observed),
        _ => None,
    };

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
        api_key: d.twilio.api_key.clone(),
        token_digest: None,
        assigned_assistant_id: assistant_row_id,
        // The spec routes to an assistant or to nothing: a squad in Vapi is cleared (below).
        assigned_squad_id: None,
        notes: d.notes.clone(),
        protected: d.protected,
        applied: Some(Applied::of(d).to_json()),
    };
    let applied = Applied::of(d);
    let last_applied = r.and_then(|r| Applied::of_row(r.applied.as_deref()));

    // The token: unchanged when the row holds the same ciphertext, or a digest of the same
    // plaintext (re-encrypted to other recipients) — for the copy the row records.
    // A change of form (auth token ↔ API key) or of API key sends the secret again.
    let form_changed = r.is_some_and(|r| r.api_key != d.twilio.api_key);
    let row_token = match r {
        None => TokenState::Unknown,
        Some(_) if form_changed => TokenState::Rotated,
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
    if matches!(row_token, TokenState::Same | TokenState::ReEncrypted) {
        row_values.token_digest = r.and_then(|r| r.token_digest.clone());
    }
    let token_state = if repoint.is_some() {
        TokenState::NotOnThisCopy
    } else {
        row_token
    };

    let Some(o) = o else {
        return Some(plan_create(d, r, row_values, assistant_vapi_id));
    };

    // In Vapi: each field compared once (see `fields`).
    let mode = if r.is_some() {
        Mode::Update
    } else {
        Mode::Adopt
    };
    let show = |s: &str| Some(s.to_string());
    let mut fields = Vec::new();
    let mut patch = VapiPatch::default();
    let mut row_differs = false;
    let mut take = |v: Option<fields::Verdict>, fields: &mut Vec<FieldChange>| {
        let v = v?;
        row_differs |= v.row_differs;
        fields.push(v.change);
        Some(v.vapi_differs)
    };

    let name = judge(
        fields::NAME,
        mode,
        Views {
            vapi: Some(o.name.clone()),
            vapi_differs: o.name.as_deref() != Some(d.name.as_str()),
            row: r.map(|r| r.friendly_name.clone()),
            row_differs: r.is_some_and(|r| r.friendly_name.as_deref() != Some(&d.name)),
            desired: show(&d.name),
            ..Views::default()
        },
    );
    if take(name, &mut fields) == Some(true) {
        patch.name = Some(d.name.clone());
    }
    let assistant = judge(
        fields::ASSISTANT,
        mode,
        Views {
            vapi: Some(o.assistant_id.clone()),
            vapi_differs: o.assistant_id != assistant_vapi_id,
            row: r.map(|r| r.assigned_assistant_id.map(|u| u.to_string())),
            row_differs: r.is_some_and(|r| r.assigned_assistant_id != assistant_row_id),
            desired: assistant_vapi_id.clone(),
            ..Views::default()
        },
    )
    .map(|mut v| {
        // The row holds the assistant's row id; the Vapi side its Vapi id.
        if v.target == Target::Database {
            v.change.after = assistant_row_id.map(|u| u.to_string());
        }
        v
    });
    if take(assistant, &mut fields) == Some(true) {
        patch.assistant_id = Some(assistant_vapi_id.clone());
    }
    // One routing target: a squad set in Vapi (the dashboard) beside or instead of the spec's
    // assistant is shown with its cause and cleared, never left routing calls unannounced.
    let squad = judge(
        fields::SQUAD,
        mode,
        Views {
            vapi: Some(o.squad_id.clone()),
            vapi_differs: o.squad_id.is_some(),
            desired: None,
            ..Views::default()
        },
    );
    if take(squad, &mut fields) == Some(true) {
        patch.squad_id = Some(None);
    }
    match (&d.server, &o.server) {
        // Both have a server: each sub-field the spec owns is compared and shown on its own, and
        // the PATCH starts from Vapi's object, so that what the spec does not own is kept.
        (Some(ds), Some(os)) => {
            let last = last_applied.as_ref().map(|l| l.server.as_ref());
            let mut send = false;
            let mut clear = Vec::new();
            for sub in fields::server_sub_fields(ds, os, last) {
                if !sub.owned || !sub.differs {
                    continue;
                }
                if !sub.declared && sub.vapi.is_some() && sub.field.home == fields::Home::VapiOnly {
                    clear.push(sub.key.to_string());
                }
                let v = judge(
                    sub.field,
                    mode,
                    Views {
                        vapi: Some(sub.vapi.clone()),
                        vapi_differs: true,
                        spec_sets_what_vapi_lacks: sub.vapi_lacks,
                        spec_changed: sub.spec_changed,
                        desired: sub.desired.clone(),
                        ..Views::default()
                    },
                );
                // A rotated secret header looks the same on both sides: say what changed.
                let v = v.map(|mut v| {
                    if sub.key == "headers" && v.change.before == v.change.after {
                        v.change.note = Some("sensitive value changed".into());
                    }
                    v
                });
                send |= take(v, &mut fields) == Some(true);
            }
            if send {
                patch.server = Some(d.server.clone());
                patch.server_base = o.server_raw.clone();
                // `url`, `credentialId` and `timeoutSeconds` are written (or removed) from the
                // spec anyway; only the optional sub-fields need an explicit removal.
                clear.retain(|k| !matches!(k.as_str(), "url" | "credentialId" | "timeoutSeconds"));
                patch.server_clear = clear;
            }
        }
        _ => {
            let server = judge(
                fields::SERVER,
                mode,
                Views {
                    vapi: Some(show_server(o.server.as_ref())),
                    vapi_differs: !server_eq(d.server.as_ref(), o.server.as_ref()),
                    spec_sets_what_vapi_lacks: o.server.is_none() && d.server.is_some(),
                    spec_changed: last_applied.as_ref().map(|l| l.server != applied.server),
                    desired: show_server(d.server.as_ref()),
                    ..Views::default()
                },
            );
            if take(server, &mut fields) == Some(true) {
                patch.server = Some(d.server.clone());
                patch.server_base = o.server_raw.clone();
            }
        }
    }
    // `fallbackDestination` and `hooks`: owned as a whole when the spec declares them, or when
    // vapictl applied them before (then the spec's omission removes them, visibly).
    let empty_hooks = serde_json::Value::Array(Vec::new());
    for (field, want, have, recorded) in [
        (
            fields::FALLBACK_DESTINATION,
            d.fallback_destination.as_ref(),
            o.fallback_destination.as_ref(),
            last_applied
                .as_ref()
                .map(|l| l.fallback_destination.as_ref()),
        ),
        (
            fields::HOOKS,
            d.hooks.as_ref(),
            o.hooks.as_ref().filter(|h| **h != empty_hooks),
            last_applied.as_ref().map(|l| l.hooks.as_ref()),
        ),
    ] {
        let owned = want.is_some() || recorded.flatten().is_some();
        let want_cmp = want.filter(|w| **w != empty_hooks);
        if !owned || want_cmp == have {
            continue;
        }
        let v = judge(
            field,
            mode,
            Views {
                vapi: Some(fields::show_json(have)),
                vapi_differs: true,
                spec_sets_what_vapi_lacks: have.is_none() && want_cmp.is_some(),
                spec_changed: recorded.map(|r| r != want),
                desired: fields::show_json(want),
                ..Views::default()
            },
        );
        if take(v, &mut fields) == Some(true) {
            let value = Some(want.cloned());
            if field.vapi_name == fields::HOOKS.vapi_name {
                patch.hooks = value;
            } else {
                patch.fallback_destination = value;
            }
        }
    }
    let sms = judge(
        fields::SMS_ENABLED,
        mode,
        Views {
            vapi: Some(Some(o.sms_enabled_effective().to_string())),
            vapi_differs: o.sms_enabled_effective() != d.sms_enabled,
            // Vapi's default is `true`: a spec that turns SMS off sets what Vapi lacks.
            spec_sets_what_vapi_lacks: o.sms_enabled.is_none_or(|s| s) && !d.sms_enabled,
            spec_changed: last_applied
                .as_ref()
                .map(|l| l.sms_enabled != applied.sms_enabled),
            desired: Some(d.sms_enabled.to_string()),
            ..Views::default()
        },
    );
    if take(sms, &mut fields) == Some(true) {
        patch.sms_enabled = Some(d.sms_enabled);
    }
    let sid = judge(
        fields::ACCOUNT_SID,
        mode,
        Views {
            vapi: Some(o.twilio_account_sid.clone()),
            vapi_differs: o.twilio_account_sid.as_deref() != Some(d.twilio.account_sid.as_str()),
            row: r.map(|r| r.twilio_account_sid.clone()),
            row_differs: r
                .is_some_and(|r| r.twilio_account_sid.as_deref() != Some(&d.twilio.account_sid)),
            desired: show(&d.twilio.account_sid),
            ..Views::default()
        },
    );
    if take(sid, &mut fields) == Some(true) {
        patch.account_sid = Some(d.twilio.account_sid.clone());
    }

    // Vapi never shows the token: send it when adopting (unknown), when it was rotated, or when
    // the copy in use is not the one the row records.
    let secret = |note: &str, target, cause| FieldChange {
        field: "twilioAuthToken",
        target,
        before: None,
        after: None,
        sensitive: true,
        note: Some(note.into()),
        cause,
    };
    let (token_field, send) = match token_state {
        TokenState::Unknown => (
            Some(secret(
                "set; Vapi does not show the current value",
                Target::Both,
                Cause::AdoptUnmanaged,
            )),
            true,
        ),
        TokenState::NotOnThisCopy => (
            Some(secret(
                "set; this Vapi copy did not get it from vapictl",
                if row_token == TokenState::Same {
                    Target::Vapi
                } else {
                    Target::Both
                },
                repoint.as_ref().map_or(Cause::SpecEdit, |(c, _)| *c),
            )),
            true,
        ),
        TokenState::Rotated => (
            Some(secret(
                "sensitive value changed",
                Target::Both,
                Cause::SpecEdit,
            )),
            true,
        ),
        TokenState::Unverifiable => (
            Some(secret(
                "token changed (cannot verify without key)",
                Target::Both,
                Cause::SpecEdit,
            )),
            true,
        ),
        TokenState::ReEncrypted => (
            Some(secret(
                "re-encrypted, value unchanged",
                Target::Database,
                Cause::SpecEdit,
            )),
            false,
        ),
        TokenState::Same => (None, false),
    };
    let secret_field = if d.twilio.api_key.is_some() {
        "twilioApiSecret"
    } else {
        "twilioAuthToken"
    };
    fields.extend(token_field.map(|f| FieldChange {
        field: secret_field,
        ..f
    }));
    if form_changed {
        let r = r.expect("a form change has a row");
        fields.push(FieldChange {
            field: "twilioApiKey",
            target: Target::Both,
            before: r.api_key.clone(),
            after: d.twilio.api_key.clone(),
            sensitive: false,
            note: None,
            cause: Cause::SpecEdit,
        });
    }
    if send {
        patch.token = Some(token.clone());
        patch.api_key = d.twilio.api_key.clone();
        patch.switch_form = r.is_some_and(|r| r.api_key.is_some() != d.twilio.api_key.is_some());
    }

    // Row-only fields.
    let row_only = |field, before: Option<Option<String>>, differs: bool, after: Option<String>| {
        judge(
            field,
            mode,
            Views {
                row: before,
                row_differs: differs,
                desired: after,
                ..Views::default()
            },
        )
    };
    let notes = row_only(
        fields::NOTES,
        r.map(|r| r.notes.clone()),
        r.is_some_and(|r| r.notes != d.notes),
        d.notes.clone(),
    );
    take(notes, &mut fields);
    let protected = row_only(
        fields::PROTECTED,
        r.map(|r| Some(r.protected.to_string())),
        r.is_some_and(|r| r.protected != d.protected),
        Some(d.protected.to_string()),
    )
    .filter(|_| mode == Mode::Update);
    take(protected, &mut fields);
    if let (Some(r), Some((cause, note))) = (r, &repoint) {
        fields.push(FieldChange {
            field: "vapiPhoneId",
            target: Target::Database,
            before: r.vapi_phone_id.clone(),
            after: Some(o.id.clone()),
            sensitive: false,
            note: Some(note.clone()),
            cause: *cause,
        });
    }
    let credential = row_only(
        fields::CREDENTIAL,
        r.map(|r| r.vapi_credential_id.clone()),
        r.is_some_and(|r| r.vapi_credential_id != row_values.vapi_credential_id),
        row_values.vapi_credential_id.clone(),
    )
    .filter(|_| mode == Mode::Update);
    take(credential, &mut fields);
    // The application's own form of the number becomes E.164: the same number, updated in place.
    let canonical = row_only(
        fields::PHONE_NUMBER,
        r.map(|r| Some(r.phone_number.clone())),
        r.is_some_and(|r| r.phone_number != number),
        Some(number.clone()),
    )
    .filter(|_| mode == Mode::Update);
    take(canonical, &mut fields);
    let row_token_differs =
        r.is_some_and(|r| r.twilio_auth_token.as_deref() != Some(&token.armored));
    // A PATCH of a field only Vapi keeps is recorded in the row, so that the next plan can tell
    // a spec edit from an edit in Vapi.
    let record_applied = (patch.server.is_some()
        || patch.sms_enabled.is_some()
        || patch.fallback_destination.is_some()
        || patch.hooks.is_some())
        && last_applied.as_ref() != Some(&applied);

    let row = match r {
        None => RowStep::Insert(Box::new(row_values)),
        Some(r) if row_differs || repoint.is_some() || row_token_differs || record_applied => {
            RowStep::Update {
                row_id: r.id,
                values: Box::new(row_values),
            }
        }
        Some(_) => RowStep::None,
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
    let (action, cause) = match mode {
        Mode::Adopt => (Action::Adopt, Cause::AdoptUnmanaged),
        Mode::Update => {
            let cause = fields
                .iter()
                .map(|f| f.cause)
                .min_by_key(|c| cause_rank(*c))
                .unwrap_or(Cause::SpecEdit);
            (Action::Update, cause)
        }
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

/// Not in Vapi: create (new) or re-create (deleted by hand). Every field is set.
fn plan_create(
    d: &DesiredNumber,
    r: Option<&PhoneRow>,
    row_values: RowWrite,
    assistant_vapi_id: Option<String>,
) -> Change {
    let (action, cause) = match r.and_then(|r| r.vapi_phone_id.as_ref()) {
        Some(_) => (Action::Recreate, Cause::DeletedInVapi),
        None => (Action::Create, Cause::NewInSpec),
    };
    let set = |field, target, after: Option<String>| FieldChange {
        field,
        target,
        before: None,
        after,
        sensitive: false,
        note: None,
        cause,
    };
    let mut fields = vec![set("name", Target::Both, Some(d.name.clone()))];
    if let Some(a) = &d.assistant {
        fields.push(set("assistant", Target::Both, Some(a.clone())));
    }
    if d.server.is_some() {
        fields.push(set("server", Target::Vapi, show_server(d.server.as_ref())));
    }
    fields.push(set(
        "smsEnabled",
        Target::Vapi,
        Some(d.sms_enabled.to_string()),
    ));
    if let Some(f) = &d.fallback_destination {
        fields.push(set(
            "fallbackDestination",
            Target::Vapi,
            Some(f.to_string()),
        ));
    }
    if let Some(h) = &d.hooks {
        fields.push(set("hooks", Target::Vapi, Some(h.to_string())));
    }
    fields.push(set(
        "twilioAccountSid",
        Target::Both,
        Some(d.twilio.account_sid.clone()),
    ));
    if let Some(k) = &d.twilio.api_key {
        fields.push(set("twilioApiKey", Target::Both, Some(k.clone())));
    }
    fields.push(FieldChange {
        sensitive: true,
        note: Some("set".into()),
        ..set(
            if d.twilio.api_key.is_some() {
                "twilioApiSecret"
            } else {
                "twilioAuthToken"
            },
            Target::Both,
            None,
        )
    });
    if let Some(n) = &d.notes {
        fields.push(set("notes", Target::Database, Some(n.clone())));
    }
    if let Some(r) = r
        && r.phone_number != d.number.as_str()
    {
        fields.push(FieldChange {
            before: Some(r.phone_number.clone()),
            cause: Cause::DatabaseEditedOutOfBand,
            ..set("phoneNumber", Target::Database, Some(d.number.to_string()))
        });
    }
    let row = match r {
        Some(r) => RowStep::Update {
            row_id: r.id,
            values: Box::new(row_values),
        },
        None => RowStep::Insert(Box::new(row_values)),
    };
    Change {
        number: d.number.as_str().to_string(),
        action,
        cause,
        fields,
        vapi: VapiStep::Create(Box::new(VapiCreate {
            number: d.number.as_str().to_string(),
            name: d.name.clone(),
            assistant_id: assistant_vapi_id,
            server: d.server.clone(),
            sms_enabled: d.sms_enabled,
            fallback_destination: d.fallback_destination.clone(),
            hooks: d.hooks.clone(),
            account_sid: d.twilio.account_sid.clone(),
            token: d.twilio.auth_token.clone(),
            api_key: d.twilio.api_key.clone(),
        })),
        row,
        observed: None,
        recorded: r.cloned(),
    }
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
