//! Saved plans (pure): `plan --out FILE` writes one, `apply FILE` applies exactly it or refuses.
//!
//! A saved plan records, for every number it touches, what Vapi and the database showed when
//! the plan was made (a digest of the Vapi record, including its `updatedAt`, and of the row),
//! the change's fingerprint, and a digest of the spec file. Before applying, vapictl plans again
//! and compares: any difference makes the saved plan stale. It holds no secret and no ciphertext.

use serde::{Deserialize, Serialize};
use sha2::Digest;
use uuid::Uuid;

use crate::plan::{Change, Plan, RowStep, VapiStep};
use crate::render::fingerprint;
use crate::state::{ObservedNumber, PhoneRow, RowWrite};

/// Bumped on any incompatible change to the file.
const SAVED_PLAN_VERSION: u32 = 1;

/// The saved-plan file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    /// The format version; its presence marks a file as a saved plan.
    pub vapictl_plan: u32,
    pub plan_id: String,
    pub owner: Uuid,
    /// The spec's absolute path, so that the plan applies from any directory. (Plans saved by
    /// earlier versions hold the path as named on the `plan` command line, relative to where
    /// `plan` ran.)
    pub spec_path: String,
    /// SHA-256 of the spec file's bytes.
    pub spec_digest: String,
    pub changes: Vec<SavedChange>,
}

/// One change as planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedChange {
    pub number: String,
    pub action: String,
    pub cause: String,
    /// The field differences, for people reading the file (never secrets).
    pub fields: serde_json::Value,
    pub fingerprint: String,
    /// A digest of what applying the change does — its Vapi and row steps — without the text
    /// shown to people (notes, causes): the part of a change that staleness compares. Absent
    /// in plans saved by earlier versions, which compare `fingerprint` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vapi: Option<VapiSnapshot>,
    /// Digest of the owner's row for the number, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_digest: Option<String>,
}

/// What Vapi showed for the number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VapiSnapshot {
    pub id: String,
    pub updated_at: String,
    pub digest: String,
}

/// Whether `text` (starting with `{`) begins as a saved plan does: `{ "vapictl_plan"`, or any
/// beginning of that cut short, or names the key anywhere (a plan edited by hand).
fn looks_like_a_plan(text: &str) -> bool {
    const KEY: &str = "\"vapictl_plan\"";
    let rest = text.trim_start().trim_start_matches('{').trim_start();
    rest.starts_with(KEY) || KEY.starts_with(rest) || text.contains(KEY)
}

fn sha(parts: &[&str]) -> String {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

fn vapi_snapshot(o: &ObservedNumber) -> VapiSnapshot {
    VapiSnapshot {
        id: o.id.clone(),
        updated_at: o.updated_at.clone(),
        digest: sha(&[&serde_json::to_string(o).unwrap_or_default()]),
    }
}

fn row_digest(r: &PhoneRow) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "\u{0}".into());
    // The squad and the API secret only when set, so that rows without them digest as before
    // those columns existed.
    let squad = r.assigned_squad_id.map(|s| format!("squad:{s}"));
    let api_secret = r.api_secret.as_ref().map(|s| format!("api-secret:{s}"));
    let mut parts = vec![
        r.id.to_string(),
        r.user_id.to_string(),
        r.phone_number.clone(),
        opt(&r.friendly_name),
        opt(&r.vapi_phone_id),
        opt(&r.vapi_credential_id),
        opt(&r.twilio_account_sid),
        opt(&r.twilio_auth_token),
        opt(&r.assigned_assistant_id.map(|u| u.to_string())),
        opt(&r.notes),
        opt(&r.token_digest),
        r.protected.to_string(),
        opt(&r.api_key),
    ];
    parts.extend(squad);
    parts.extend(api_secret);
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    sha(&parts)
}

/// What applying `c` does, as a digest: the action, the Vapi call and the row write with every
/// value they carry — and nothing that only describes them (notes, causes, before-values, which
/// the Vapi and row snapshots cover).
///
/// The token is the spec's ciphertext in the row write. Whether it is also sent to Vapi depends
/// only on what the run knows (a plan made without a key cannot tell a re-encrypted token from a
/// rotated one and plans to send it; with the key it may not need to), so a PATCH that carries
/// only the token counts as no Vapi call, and the row's token digest (derived from that same
/// value) is left out: the value the token ends up with is the one the spec digest pins.
fn steps_digest(c: &Change) -> String {
    let opt = |v: Option<&str>| v.map_or_else(|| "\u{0}none".to_string(), str::to_string);
    let mut parts: Vec<String> = vec![c.number.clone(), c.action.label().to_string()];
    match &c.vapi {
        VapiStep::None => parts.push("vapi:none".into()),
        VapiStep::Create(create) => parts.extend([
            "vapi:create".into(),
            create.number.clone(),
            create.name.clone(),
            opt(create.assistant_id.as_deref()),
            json(&create.server),
            create.sms_enabled.to_string(),
            json(&create.fallback_destination),
            json(&create.hooks),
            create.account_sid.clone(),
            sha(&[&create.token.armored]),
            json(&create.api_key),
        ]),
        VapiStep::Update { id, patch } => {
            let without_token = crate::plan::VapiPatch {
                token: None,
                ..(**patch).clone()
            };
            if without_token.is_empty() {
                parts.push("vapi:none".into());
            } else {
                parts.extend([
                    "vapi:update".into(),
                    id.clone(),
                    json(&patch.name),
                    set(patch.assistant_id.as_ref()),
                    set(patch.squad_id.as_ref()),
                    set(patch.server.as_ref()),
                    json(&patch.server_clear),
                    json(&patch.sms_enabled),
                    set(patch.fallback_destination.as_ref()),
                    set(patch.hooks.as_ref()),
                    json(&patch.account_sid),
                ]);
            }
        }
        VapiStep::Delete { id } => parts.extend(["vapi:delete".into(), id.clone()]),
    }
    let row = |parts: &mut Vec<String>, v: &RowWrite| {
        parts.extend([
            v.phone_number.clone(),
            v.friendly_name.clone(),
            opt(v.vapi_phone_id.as_deref()),
            opt(v.vapi_credential_id.as_deref()),
            v.twilio_account_sid.clone(),
            sha(&[&v.twilio_auth_token]),
            json(&v.api_key),
            json(&v.assigned_assistant_id),
            opt(v.notes.as_deref()),
            v.protected.to_string(),
        ]);
        parts.extend(v.assigned_squad_id.map(|q| format!("squad:{q}")));
        parts.extend(
            v.api_secret
                .as_ref()
                .map(|s| format!("api-secret:{}", sha(&[s]))),
        );
    };
    // Squads only when set, so that steps without one digest as before squads existed.
    if let VapiStep::Create(create) = &c.vapi
        && let Some(q) = &create.squad_id
    {
        parts.push(format!("vapi:squad:{q}"));
    }
    match &c.row {
        RowStep::None => parts.push("row:none".into()),
        RowStep::Insert(values) => {
            parts.push("row:insert".into());
            row(&mut parts, values);
        }
        RowStep::Update { row_id, values } => {
            parts.extend(["row:update".into(), row_id.to_string()]);
            row(&mut parts, values);
        }
        RowStep::Delete { row_id } => parts.extend(["row:delete".into(), row_id.to_string()]),
    }
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    format!("sha256:{}", sha(&parts))
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A PATCH field that may also clear (`Some(None)`): unset and cleared must not hash alike.
fn set<T: Serialize>(v: Option<&T>) -> String {
    v.map_or_else(|| "\u{0}unset".to_string(), json)
}

fn saved_change(c: &Change) -> SavedChange {
    SavedChange {
        number: c.number.clone(),
        action: c.action.label().to_string(),
        cause: c.cause.describe().to_string(),
        fields: serde_json::to_value(&c.fields).unwrap_or_default(),
        fingerprint: fingerprint(c),
        steps: Some(steps_digest(c)),
        vapi: c.observed.as_ref().map(vapi_snapshot),
        row_digest: c.recorded.as_ref().map(row_digest),
    }
}

impl SavedPlan {
    /// The file for `plan`, made from the spec at `spec_path`.
    pub fn new(plan: &Plan, spec_path: &str, plan_id: Uuid) -> SavedPlan {
        SavedPlan {
            vapictl_plan: SAVED_PLAN_VERSION,
            plan_id: plan_id.to_string(),
            owner: plan.owner,
            spec_path: spec_path.to_string(),
            spec_digest: plan.spec_digest.clone(),
            changes: plan.changes.iter().map(saved_change).collect(),
        }
    }

    /// Reads a file's bytes as a saved plan; `Ok(None)` when they are not one (a spec, say).
    ///
    /// A saved plan is JSON whose first key is `vapictl_plan` (as [`SavedPlan`] writes it), so a
    /// file that starts that way is a plan even when it is cut short or damaged: it is refused as
    /// such instead of being read as a spec (a spec may be JSON too, but never has that key).
    ///
    /// # Errors
    /// The bytes are a saved plan that cannot be read (truncated, damaged, newer version).
    pub fn parse(bytes: &[u8]) -> Result<Option<SavedPlan>, String> {
        let text = match std::str::from_utf8(bytes) {
            Ok(t) if t.trim_start().starts_with('{') => t,
            _ => return Ok(None),
        };
        let damaged = |reason: String| {
            format!("the saved plan file is truncated or corrupt ({reason}); nothing was applied")
        };
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) if looks_like_a_plan(text) => return Err(damaged(e.to_string())),
            Err(_) => return Ok(None),
        };
        let version = match value.get("vapictl_plan") {
            None => return Ok(None),
            Some(v) => match v.as_u64() {
                Some(v) => v,
                None => return Err(damaged(format!("`vapictl_plan` is `{v}`"))),
            },
        };
        if version != u64::from(SAVED_PLAN_VERSION) {
            return Err(format!(
                "the saved plan has format version {version}; this vapictl reads {SAVED_PLAN_VERSION}"
            ));
        }
        serde_json::from_value(value)
            .map(Some)
            .map_err(|e| damaged(e.to_string()))
    }

    /// Why this saved plan no longer describes what applying would do, one reason per number;
    /// empty when it is still exact.
    pub fn staleness(&self, fresh: &Plan) -> Vec<String> {
        let mut reasons = Vec::new();
        if fresh.spec_digest != self.spec_digest {
            reasons.push(format!(
                "the spec `{}` changed since the plan was made",
                self.spec_path
            ));
        }
        if fresh.owner != self.owner {
            reasons.push("the spec's owner changed".to_string());
        }
        for saved in &self.changes {
            match fresh.changes.iter().find(|c| c.number == saved.number) {
                None => reasons.push(format!("`{}`: no longer needs a change", saved.number)),
                Some(now) => {
                    let now = saved_change(now);
                    if now.vapi != saved.vapi {
                        let was = saved
                            .vapi
                            .as_ref()
                            .map_or("absent", |v| v.updated_at.as_str());
                        let is = now
                            .vapi
                            .as_ref()
                            .map_or("absent", |v| v.updated_at.as_str());
                        reasons.push(format!(
                            "`{}`: changed in Vapi since the plan (updatedAt {was} → {is})",
                            saved.number
                        ));
                    } else if now.row_digest != saved.row_digest {
                        reasons.push(format!(
                            "`{}`: its database row changed since the plan",
                            saved.number
                        ));
                    } else if match &saved.steps {
                        Some(steps) => now.steps.as_ref() != Some(steps),
                        None => now.fingerprint != saved.fingerprint,
                    } {
                        reasons.push(format!("`{}`: the change differs now", saved.number));
                    }
                }
            }
        }
        for c in &fresh.changes {
            if !self.changes.iter().any(|s| s.number == c.number) {
                reasons.push(format!("`{}`: a change appeared since the plan", c.number));
            }
        }
        reasons
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_is_not_a_saved_plan() {
        assert_eq!(SavedPlan::parse(b"version: 1\n").unwrap(), None);
        assert_eq!(SavedPlan::parse(b"{\"a\": 1}").unwrap(), None);
        assert!(SavedPlan::parse(b"{\"vapictl_plan\": 99}").is_err());
    }

    #[test]
    fn a_truncated_plan_is_named_as_one_whatever_the_cut() {
        let plan = Plan {
            spec_digest: "d".into(),
            ..Plan::default()
        };
        let bytes =
            serde_json::to_vec_pretty(&SavedPlan::new(&plan, "/s.yaml", Uuid::nil())).unwrap();
        for cut in 1..bytes.len() - 1 {
            let err = SavedPlan::parse(&bytes[..cut]).expect_err("refused");
            assert!(err.contains("truncated or corrupt"), "{cut}: {err}");
        }
        // A spec written as JSON is still a spec.
        assert_eq!(SavedPlan::parse(b"{\"version\": 1").unwrap(), None);
    }

    #[test]
    fn a_plan_saved_before_steps_were_recorded_still_loads() {
        let old = r#"{"vapictl_plan": 1, "plan_id": "p", "owner": "00000000-0000-0000-0000-000000000000",
            "spec_path": "spec.yaml", "spec_digest": "d",
            "changes": [{"number": "+1", "action": "create", "cause": "new in the spec",
                         "fields": [], "fingerprint": "sha256:x"}]}"#;
        let saved = SavedPlan::parse(old.as_bytes()).unwrap().unwrap();
        assert_eq!(saved.changes[0].steps, None);
        assert_eq!(saved.spec_path, "spec.yaml");
    }

    #[test]
    fn an_identical_plan_is_not_stale_and_a_new_change_is() {
        let plan = Plan {
            spec_digest: "d".into(),
            ..Plan::default()
        };
        let saved = SavedPlan::new(&plan, "s.yaml", Uuid::nil());
        let bytes = serde_json::to_vec(&saved).unwrap();
        assert_eq!(SavedPlan::parse(&bytes).unwrap().as_ref(), Some(&saved));
        assert!(saved.staleness(&plan).is_empty());
        let edited = Plan {
            spec_digest: "e".into(),
            ..Plan::default()
        };
        assert_eq!(saved.staleness(&edited).len(), 1);
    }
}
