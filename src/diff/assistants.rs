//! The owner's assistants as one index: how a spec's `assistant` reference resolves (diff) and
//! how a Vapi assistant is written back as a reference (import), so the two agree.

use uuid::Uuid;

use super::refusal::RefusalReason;
use crate::state::{AssistantRow, ObservedState};

/// The `assistants` rows a spec may refer to, seen from one owner.
#[derive(Debug, Clone, Copy)]
pub struct AssistantIndex<'a> {
    owner: Uuid,
    rows: &'a [AssistantRow],
}

/// A resolved reference: the owner's row and its Vapi assistant id.
pub type Resolved<'a> = (&'a AssistantRow, String);

impl<'a> AssistantIndex<'a> {
    pub fn new(owner: Uuid, rows: &'a [AssistantRow]) -> Self {
        AssistantIndex { owner, rows }
    }

    fn mine(&self) -> impl Iterator<Item = &'a AssistantRow> + '_ {
        self.rows.iter().filter(move |a| a.user_id == self.owner)
    }

    /// The assistant `reference` (a `name`, `id` or `vapi_assistant_id`) names: exactly one of
    /// the owner's rows, whose Vapi assistant exists.
    ///
    /// # Errors
    /// The [`RefusalReason`] naming what is wrong with the reference.
    pub fn resolve(
        &self,
        reference: &str,
        observed: &ObservedState,
    ) -> Result<Resolved<'a>, RefusalReason> {
        let by_id = Uuid::parse_str(reference).ok();
        let matches_ref = |a: &&AssistantRow| {
            Some(a.id) == by_id
                || a.name.as_deref() == Some(reference)
                || a.vapi_assistant_id.as_deref() == Some(reference)
        };
        let (mine, theirs): (Vec<&AssistantRow>, Vec<&AssistantRow>) = self
            .rows
            .iter()
            .filter(matches_ref)
            .partition(|a| a.user_id == self.owner);
        let reference = reference.to_string();
        let row = match mine.as_slice() {
            [one] => *one,
            [] if !theirs.is_empty() => {
                return Err(RefusalReason::AssistantOfAnotherUser { reference });
            }
            [] => {
                let mut known: Vec<String> = self.mine().filter_map(|a| a.name.clone()).collect();
                known.sort_unstable();
                return Err(RefusalReason::UnknownAssistant { reference, known });
            }
            many => {
                return Err(RefusalReason::AmbiguousAssistant {
                    reference,
                    ids: many.iter().map(|a| a.id).collect(),
                });
            }
        };
        let Some(vapi_id) = row.vapi_assistant_id.clone() else {
            return Err(RefusalReason::AssistantWithoutVapiId { reference });
        };
        if !observed.assistants.contains_key(&vapi_id) {
            return Err(RefusalReason::AssistantMissingInVapi { reference, vapi_id });
        }
        Ok((row, vapi_id))
    }

    /// How a spec refers to `row`: its name when no other assistant of the owner shares it,
    /// else its id — a reference that [`resolve`](Self::resolve) maps back to the same row.
    fn reference_to(&self, row: &AssistantRow) -> String {
        match &row.name {
            Some(n) if self.mine().filter(|a| a.name.as_ref() == Some(n)).count() == 1 => n.clone(),
            _ => row.id.to_string(),
        }
    }

    /// The reference for the owner's assistant whose Vapi id is `vapi_id`, if a row has it.
    pub fn reference_for_vapi_id(&self, vapi_id: &str) -> Option<String> {
        let row = self
            .mine()
            .find(|a| a.vapi_assistant_id.as_deref() == Some(vapi_id))?;
        Some(self.reference_to(row))
    }

    /// The reference for the owner's assistant row `row_id`, if it exists.
    pub fn reference_for_row(&self, row_id: Uuid) -> Option<String> {
        let row = self.mine().find(|a| a.id == row_id)?;
        Some(self.reference_to(row))
    }
}
