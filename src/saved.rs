//! Saved plans (pure): `plan --out FILE` writes one, `apply FILE` applies exactly it or refuses.
//!
//! A saved plan records, for every number it touches, what Vapi and the database showed when
//! the plan was made (a digest of the Vapi record, including its `updatedAt`, and of the row),
//! the change's fingerprint, and a digest of the spec file. Before applying, vapictl plans again
//! and compares: any difference makes the saved plan stale. It holds no secret and no ciphertext.

use serde::{Deserialize, Serialize};
use sha2::Digest;
use uuid::Uuid;

use crate::plan::{Change, Plan};
use crate::render::fingerprint;
use crate::state::{ObservedNumber, PhoneRow};

/// Bumped on any incompatible change to the file.
pub const SAVED_PLAN_VERSION: u32 = 1;

/// The saved-plan file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    /// The format version; its presence marks a file as a saved plan.
    pub vapictl_plan: u32,
    pub plan_id: String,
    pub owner: Uuid,
    /// The spec as named on the `plan` command line.
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
    sha(&[
        &r.id.to_string(),
        &r.user_id.to_string(),
        &r.phone_number,
        &opt(&r.friendly_name),
        &opt(&r.vapi_phone_id),
        &opt(&r.vapi_credential_id),
        &opt(&r.twilio_account_sid),
        &opt(&r.twilio_auth_token),
        &opt(&r.assigned_assistant_id.map(|u| u.to_string())),
        &opt(&r.notes),
        &opt(&r.token_digest),
        &r.protected.to_string(),
    ])
}

fn saved_change(c: &Change) -> SavedChange {
    SavedChange {
        number: c.number.clone(),
        action: c.action.label().to_string(),
        cause: c.cause.describe().to_string(),
        fields: serde_json::to_value(&c.fields).unwrap_or_default(),
        fingerprint: fingerprint(c),
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
    /// # Errors
    /// The bytes look like a saved plan but cannot be read as one (damaged, newer version).
    pub fn parse(bytes: &[u8]) -> Result<Option<SavedPlan>, String> {
        let text = match std::str::from_utf8(bytes) {
            Ok(t) if t.trim_start().starts_with('{') => t,
            _ => return Ok(None),
        };
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => return Ok(None),
        };
        let Some(version) = value.get("vapictl_plan").and_then(|v| v.as_u64()) else {
            return Ok(None);
        };
        if version != u64::from(SAVED_PLAN_VERSION) {
            return Err(format!(
                "the saved plan has format version {version}; this vapictl reads {SAVED_PLAN_VERSION}"
            ));
        }
        serde_json::from_value(value)
            .map(Some)
            .map_err(|e| format!("the saved plan is damaged: {e}"))
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
                    } else if now.fingerprint != saved.fingerprint {
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
