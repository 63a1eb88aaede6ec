//! The machine-readable plan (`--format json`): versioned, stably ordered, no secret values.

use std::io::{self, Write};

use serde::Serialize;
use sha2::Digest;

use crate::plan::{
    Action, Cause, Change, FieldChange, Kept, NotOwned, OutOfScope, Plan, Summary, Unmanaged,
};
use crate::safety::DeleteThreshold;
use crate::twilio::{TwilioCheck, TwilioDrift};

/// Bumped on any incompatible change to the JSON shape.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Serialize)]
pub(crate) struct JsonPlan<'a> {
    format_version: u32,
    owner: String,
    spec_digest: &'a str,
    summary: Summary,
    changes: Vec<JsonChange<'a>>,
    kept: &'a [Kept],
    unmanaged: &'a [Unmanaged],
    /// The owner's numbers vapictl leaves alone (another provider, an unreadable number).
    out_of_scope: &'a [OutOfScope],
    /// Vapi numbers recorded for other users: counted, never listed.
    other_users_count: usize,
    warnings: &'a [String],
    /// The owner's numbers Vapi reports as blocked: drift findings (addition to format 1).
    blocked: Vec<JsonBlocked<'a>>,
    /// What Vapi has that the spec does not declare and vapictl keeps (`server` sub-fields set
    /// in the dashboard): shown, never changed, not drift; absent when there is none (addition
    /// to format 1).
    #[serde(skip_serializing_if = "<[NotOwned]>::is_empty")]
    not_owned: &'a [NotOwned],
    safety: Safety,
    /// The Twilio preflight: `status` (`checked`, `skipped_keyless`, `off`, `not_needed`) and
    /// its structured warnings; absent when no preflight ran.
    #[serde(skip_serializing_if = "TwilioCheck::is_not_run")]
    twilio: &'a TwilioCheck,
    /// Twilio-side drift findings (`drift` with an identity), each with `cause` and
    /// `fingerprint`; absent when there are none.
    #[serde(skip_serializing_if = "<[TwilioDrift]>::is_empty")]
    twilio_drift: &'a [TwilioDrift],
}

#[derive(Serialize)]
struct JsonBlocked<'a> {
    #[serde(flatten)]
    blocked: &'a crate::plan::Blocked,
    cause_text: &'static str,
    fingerprint: String,
}

#[derive(Serialize)]
struct Safety {
    implicit_deletes: usize,
    managed_numbers: usize,
    /// The deletion gate's base: the owner's numbers vapictl could release from Vapi.
    releasable_numbers: usize,
    needs_confirmation: bool,
}

#[derive(Serialize)]
struct JsonChange<'a> {
    number: &'a str,
    action: Action,
    cause: Cause,
    cause_text: &'static str,
    destructive: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    vapi_id: Option<&'a str>,
    fields: &'a [FieldChange],
    fingerprint: String,
}

/// A stable id for a change: the same difference found twice has the same fingerprint, so a
/// scheduled drift job can tell new findings from ones it already reported.
pub fn fingerprint(c: &Change) -> String {
    let mut h = sha2::Sha256::new();
    h.update(c.number.as_bytes());
    h.update([0]);
    h.update(c.action.label().as_bytes());
    h.update([0]);
    h.update(c.cause.describe().as_bytes());
    for f in &c.fields {
        h.update([1]);
        h.update(f.field.as_bytes());
        h.update([0]);
        h.update(f.before.as_deref().unwrap_or("\u{0}none").as_bytes());
        h.update([0]);
        h.update(f.after.as_deref().unwrap_or("\u{0}none").as_bytes());
        h.update([0]);
        h.update(f.note.as_deref().unwrap_or_default().as_bytes());
    }
    format!("sha256:{}", &hex::encode(h.finalize())[..32])
}

fn vapi_id(c: &Change) -> Option<&str> {
    c.observed
        .as_ref()
        .map(|o| o.id.as_str())
        .or_else(|| c.recorded.as_ref().and_then(|r| r.vapi_phone_id.as_deref()))
}

/// Today's single-spec plan object, as the run's `plans` entries embed it.
fn plan_doc(plan: &Plan) -> JsonPlan<'_> {
    let threshold = DeleteThreshold::default();
    JsonPlan {
        format_version: FORMAT_VERSION,
        owner: plan.owner.to_string(),
        spec_digest: &plan.spec_digest,
        summary: plan.summary(),
        changes: plan
            .changes
            .iter()
            .map(|c| JsonChange {
                number: &c.number,
                action: c.action,
                cause: c.cause,
                cause_text: c.cause.describe(),
                destructive: c.action.is_destructive(),
                vapi_id: vapi_id(c),
                fields: &c.fields,
                fingerprint: fingerprint(c),
            })
            .collect(),
        kept: &plan.kept,
        unmanaged: &plan.unmanaged,
        out_of_scope: &plan.out_of_scope,
        other_users_count: plan.other_users_count,
        warnings: &plan.warnings,
        blocked: plan
            .blocked
            .iter()
            .map(|b| JsonBlocked {
                blocked: b,
                cause_text: "blocked in Vapi",
                fingerprint: {
                    let mut h = sha2::Sha256::new();
                    for part in [b.number.as_str(), b.id.as_str(), b.status.as_str(), b.cause] {
                        h.update(part.as_bytes());
                        h.update([0]);
                    }
                    format!("sha256:{}", &hex::encode(h.finalize())[..32])
                },
            })
            .collect(),
        not_owned: &plan.not_owned,
        safety: Safety {
            implicit_deletes: plan.implicit_deletes(),
            managed_numbers: plan.managed_count,
            releasable_numbers: plan.releasable_count,
            needs_confirmation: threshold.check(plan, None).is_err(),
        },
        twilio: &plan.twilio,
        twilio_drift: &plan.twilio_drift,
    }
}

/// A plan of a run: the single-spec object with the spec it came from.
#[derive(Serialize)]
pub(crate) struct JsonRunPlan<'a> {
    spec: &'a str,
    #[serde(flatten)]
    plan: JsonPlan<'a>,
}

pub(crate) fn run_plan_doc<'a>(spec: &'a str, plan: &'a Plan) -> JsonRunPlan<'a> {
    JsonRunPlan {
        spec,
        plan: plan_doc(plan),
    }
}

/// Writes the plan as one JSON document.
pub fn render_plan_json(plan: &Plan, out: &mut dyn Write) -> io::Result<()> {
    let doc = plan_doc(plan);
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}
