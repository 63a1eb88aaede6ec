//! A saved run plan (pure): `plan --out FILE` over several specs writes one, holding each
//! owner's [`SavedPlan`]; `apply FILE` checks staleness and replay per owner.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::plan::Plan;
use crate::saved::SavedPlan;

/// Bumped on any incompatible change to the file.
const SAVED_RUN_VERSION: u32 = 1;

/// The saved-run file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedRun {
    /// The format version; its presence marks a file as a saved run plan.
    pub vapictl_run_plan: u32,
    pub run_plan_id: String,
    /// One per owner that could be planned, each with its own plan id (claimed on its own).
    pub plans: Vec<SavedPlan>,
}

/// The spec path to record: absolute when it can be, so that `apply` works from anywhere.
fn recorded_path(spec: &str) -> String {
    std::path::absolute(spec)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| spec.to_string())
}

impl SavedRun {
    /// The file for `plan --out` over `plans` (spec path, plan).
    pub fn new(plans: &[(&str, &Plan)], run_plan_id: Uuid) -> SavedRun {
        SavedRun {
            vapictl_run_plan: SAVED_RUN_VERSION,
            run_plan_id: run_plan_id.to_string(),
            plans: plans
                .iter()
                .map(|(spec, plan)| SavedPlan::new(plan, &recorded_path(spec), Uuid::new_v4()))
                .collect(),
        }
    }

    /// Reads a file's bytes as a saved run plan; `Ok(None)` when they are not one.
    ///
    /// # Errors
    /// The bytes look like a saved run plan but cannot be read as one.
    pub fn parse(bytes: &[u8]) -> Result<Option<SavedRun>, String> {
        let text = match std::str::from_utf8(bytes) {
            Ok(t) if t.trim_start().starts_with('{') => t,
            _ => return Ok(None),
        };
        let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
            return Ok(None);
        };
        let Some(version) = value.get("vapictl_run_plan").and_then(|v| v.as_u64()) else {
            return Ok(None);
        };
        if version != u64::from(SAVED_RUN_VERSION) {
            return Err(format!(
                "the saved run plan has format version {version}; this vapictl reads {SAVED_RUN_VERSION}"
            ));
        }
        serde_json::from_value(value)
            .map(Some)
            .map_err(|e| format!("the saved run plan is damaged: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_run_round_trips_and_a_single_plan_is_not_one() {
        let plan = Plan::default();
        let run = SavedRun::new(&[("a.yaml", &plan), ("b.yaml", &plan)], Uuid::nil());
        assert_ne!(run.plans[0].plan_id, run.plans[1].plan_id);
        let bytes = serde_json::to_vec(&run).unwrap();
        assert_eq!(SavedRun::parse(&bytes).unwrap(), Some(run));
        let single = SavedPlan::new(&plan, "a.yaml", Uuid::nil());
        assert_eq!(
            SavedRun::parse(&serde_json::to_vec(&single).unwrap()).unwrap(),
            None
        );
    }
}
