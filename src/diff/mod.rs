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
//! them), a number for which the owner has several rows, an assistant or squad reference that
//! matches none, several, or another user's, or whose Vapi assistant or squad does not exist. Each
//! refusal is a [`RefusalReason`] and points at the spec field it is about.
//!
//! A row with no `provider` (NULL) is taken as Twilio; Vapi's `provider` decides then.
//! Protection is remembered in the row (`vapictl_protected`), so removing a protected entry from
//! the spec keeps the number ([`Kept`]).
//!
//! Each field is compared once, in [`fields::judge`], which gives its cause.

mod absent;
mod create;
mod fields;
pub(crate) mod matching;
mod present;
mod refusal;
mod targets;
#[cfg(test)]
mod tests;

pub use refusal::{FieldAt, Refusal, RefusalReason, Refusals};
pub use targets::{Resolved, TargetIndex, TargetKind};

use crate::plan::{
    Action, Blocked, Cause, Change, FieldChange, Kept, OutOfScope, Plan, RowStep, Target,
    Unmanaged, VapiCreate, VapiPatch, VapiStep,
};
use crate::secrets::digest_matches;
use crate::state::{
    DesiredNumber, DesiredState, E164, ObservedNumber, ObservedState, PhoneRow, RecordedState,
    RowWrite, ServerConfig,
};
use absent::plan_absent;
use create::plan_create;
use fields::{Applied, Mode, Views, judge, normalized_server};
use matching::{match_numbers, pick_observed};
use present::plan_present;
use targets::Route;

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
    let assistants = TargetIndex::assistants(desired.owner, &recorded.assistants);
    let squads = TargetIndex::squads(desired.owner, &recorded.squads)
        .unusable(recorded.squads_unusable.as_deref());
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
                path: d.path_of(reason.field()),
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
                let route = match Route::resolve(
                    d.assistant.as_deref(),
                    d.squad.as_deref(),
                    [&assistants, &squads],
                    observed,
                ) {
                    Ok(route) => route,
                    Err(reason) => {
                        refusals.push(refuse(reason));
                        continue;
                    }
                };
                if let Some(change) = plan_present(d, r, o, &route, observed) {
                    plan.changes.push(change);
                }
                if let Some(o) = o {
                    plan.not_owned.extend(fields::not_owned(key, d, r, o));
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

/// The headline cause of an update with several fields: a spec edit explains the most.
fn cause_rank(c: Cause) -> u8 {
    match c {
        Cause::SpecEdit => 0,
        Cause::VapiEditedOutOfBand => 1,
        Cause::DatabaseEditedOutOfBand => 2,
        _ => 3,
    }
}
