//! The audit trail: one [`ChangeRecord`] per change an apply attempted, kept in `vapictl_changes`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// One attempted change, as written to and read from `vapictl_changes`.
///
/// **Callers pass non-secret values only.** `before` and `after` hold the non-secret fields of a
/// number (name, assistant, notes, server URL, Vapi ids, the token *digest*), never a Twilio auth
/// token, its ciphertext, or an API key. The number is stored masked (last four digits) whatever
/// the caller passes in `number_masked`: [`Store::record_change`](super::Store::record_change)
/// masks it again, which leaves an already-masked value unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRecord {
    /// The apply run that made the change.
    pub run_id: String,
    pub at: DateTime<Utc>,
    /// The spec's owner (`user_id` in the table).
    pub owner: Uuid,
    /// The number as [`mask_number`](crate::state::mask_number) shows it (`…1234`).
    pub number_masked: String,
    /// The kind of change, as the plan names it (`create`, `update`, `delete`, `adopt`, …).
    pub action: String,
    /// Names of the fields the change touched.
    pub fields: Vec<String>,
    /// Non-secret fields before the change; `None` when there was nothing (a create).
    pub before: Option<Map<String, Value>>,
    /// Non-secret fields after the change; `None` when nothing remains (a delete).
    pub after: Option<Map<String, Value>>,
    pub vapi_phone_id: Option<String>,
    /// How it ended (`applied`, `failed`, `skipped`, …).
    pub outcome: String,
    /// The error message when it failed (already free of secrets).
    pub error: Option<String>,
    /// The CI run that applied it (e.g. `GITHUB_RUN_ID`), when known.
    pub ci_run_id: Option<String>,
    pub commit_sha: Option<String>,
}

/// Serializes an optional JSON object for a nullable JSON column.
pub(crate) fn object_json(object: &Option<Map<String, Value>>) -> Option<Value> {
    object.clone().map(Value::Object)
}

/// Reads back what [`object_json`] wrote; anything but an object (or null) is a corrupt row.
pub(crate) fn json_object(
    value: Option<Value>,
    column: &'static str,
) -> Result<Option<Map<String, Value>>, super::StoreError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(other) => Err(super::StoreError::UnreadableValue {
            table: "vapictl_changes",
            column,
            reason: format!("expected a JSON object, found `{other}`"),
        }),
    }
}

/// Reads the `fields` column: a JSON array of strings.
pub(crate) fn json_fields(value: Value) -> Result<Vec<String>, super::StoreError> {
    serde_json::from_value(value).map_err(|e| super::StoreError::UnreadableValue {
        table: "vapictl_changes",
        column: "fields",
        reason: e.to_string(),
    })
}

impl ChangeRecord {
    /// The audit record of `change` applied by run `run_id`: the names of the fields it touched
    /// and the before/after display values of the non-sensitive ones (never a token).
    pub fn from_change(
        change: &crate::plan::Change,
        owner: Uuid,
        run_id: &str,
        error: Option<&str>,
        ci_run_id: Option<String>,
        commit_sha: Option<String>,
    ) -> Self {
        let (mut before, mut after) = (Map::new(), Map::new());
        for f in change.fields.iter().filter(|f| !f.sensitive) {
            if let Some(v) = &f.before {
                before.insert(f.field.to_owned(), Value::String(v.clone()));
            }
            if let Some(v) = &f.after {
                after.insert(f.field.to_owned(), Value::String(v.clone()));
            }
        }
        let vapi_phone_id = change.observed.as_ref().map(|o| o.id.clone()).or_else(|| {
            change
                .recorded
                .as_ref()
                .and_then(|r| r.vapi_phone_id.clone())
        });
        ChangeRecord {
            run_id: run_id.to_owned(),
            at: Utc::now(),
            owner,
            number_masked: crate::state::mask_number(&change.number),
            action: change.action.label().to_owned(),
            fields: change.fields.iter().map(|f| f.field.to_owned()).collect(),
            before: (!before.is_empty()).then_some(before),
            after: (!after.is_empty()).then_some(after),
            vapi_phone_id,
            outcome: if error.is_some() { "failed" } else { "applied" }.to_owned(),
            error: error.map(str::to_owned),
            ci_run_id,
            commit_sha,
        }
    }
}
