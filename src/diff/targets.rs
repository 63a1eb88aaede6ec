//! The owner's routing targets (assistants, squads) as one index per table: how a spec's
//! `assistant` or `squad` reference resolves (diff) and how a Vapi assistant or squad is written
//! back as a reference (import), so the two agree.

use uuid::Uuid;

use super::refusal::RefusalReason;
use crate::state::{ObservedState, TargetRow};

/// What a number can be routed to in Vapi: one assistant, or one squad (issue 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    Assistant,
    Squad,
}

impl TargetKind {
    /// The spec field that names it (`assistant`, `squad`).
    pub fn field(self) -> &'static str {
        match self {
            TargetKind::Assistant => "assistant",
            TargetKind::Squad => "squad",
        }
    }

    /// The application's table (`assistants`, `squads`).
    pub fn table(self) -> &'static str {
        match self {
            TargetKind::Assistant => "assistants",
            TargetKind::Squad => "squads",
        }
    }

    /// The table's column holding the Vapi id.
    pub fn vapi_column(self) -> &'static str {
        match self {
            TargetKind::Assistant => "vapi_assistant_id",
            TargetKind::Squad => "vapi_squad_id",
        }
    }

    /// Whether Vapi has the assistant or squad `vapi_id`.
    fn exists_in(self, observed: &ObservedState, vapi_id: &str) -> bool {
        match self {
            TargetKind::Assistant => observed.assistants.contains_key(vapi_id),
            TargetKind::Squad => observed.squads.contains_key(vapi_id),
        }
    }
}

/// The rows of one routing-target table a spec may refer to, seen from one owner.
#[derive(Debug, Clone, Copy)]
pub struct TargetIndex<'a> {
    kind: TargetKind,
    owner: Uuid,
    rows: &'a [TargetRow],
    /// Why the table cannot be read, when it cannot: every reference is refused with it.
    unusable: Option<&'a str>,
}

/// A resolved reference: the owner's row and its Vapi id.
pub type Resolved<'a> = (&'a TargetRow, String);

/// Where a number's calls go, as the spec asks: the resolved assistant or squad, or nothing.
#[derive(Debug, Clone, Default)]
pub(crate) struct Route {
    /// (row id, Vapi id) of the assistant.
    pub assistant: Option<(Uuid, String)>,
    /// (row id, Vapi id) of the squad.
    pub squad: Option<(Uuid, String)>,
}

impl Route {
    /// The spec's `assistant` or `squad` (at most one: validation saw to it), resolved.
    ///
    /// # Errors
    /// The [`RefusalReason`] of the reference that does not resolve.
    pub(crate) fn resolve(
        assistant: Option<&str>,
        squad: Option<&str>,
        indexes: [&TargetIndex<'_>; 2],
        observed: &ObservedState,
    ) -> Result<Route, RefusalReason> {
        let [assistants, squads] = indexes;
        let one = |index: &TargetIndex<'_>, reference: Option<&str>| {
            reference
                .map(|r| index.resolve(r, observed).map(|(row, id)| (row.id, id)))
                .transpose()
        };
        Ok(Route {
            assistant: one(assistants, assistant)?,
            squad: one(squads, squad)?,
        })
    }

    pub(crate) fn assistant_vapi_id(&self) -> Option<String> {
        self.assistant.as_ref().map(|(_, id)| id.clone())
    }

    pub(crate) fn squad_vapi_id(&self) -> Option<String> {
        self.squad.as_ref().map(|(_, id)| id.clone())
    }
}

impl<'a> TargetIndex<'a> {
    pub fn new(kind: TargetKind, owner: Uuid, rows: &'a [TargetRow]) -> Self {
        TargetIndex {
            kind,
            owner,
            rows,
            unusable: None,
        }
    }

    /// The index of a table that cannot be read (`reason`), when it cannot.
    pub fn unusable(mut self, reason: Option<&'a str>) -> Self {
        self.unusable = reason;
        self
    }

    /// The owner's assistants among `rows`.
    pub fn assistants(owner: Uuid, rows: &'a [TargetRow]) -> Self {
        TargetIndex::new(TargetKind::Assistant, owner, rows)
    }

    /// The owner's squads among `rows`.
    pub fn squads(owner: Uuid, rows: &'a [TargetRow]) -> Self {
        TargetIndex::new(TargetKind::Squad, owner, rows)
    }

    pub fn kind(&self) -> TargetKind {
        self.kind
    }

    fn mine(&self) -> impl Iterator<Item = &'a TargetRow> + '_ {
        self.rows.iter().filter(move |a| a.user_id == self.owner)
    }

    /// The row `reference` (a `name`, `id` or Vapi id) names: exactly one of the owner's rows,
    /// whose Vapi assistant or squad exists.
    ///
    /// # Errors
    /// The [`RefusalReason`] naming what is wrong with the reference.
    pub fn resolve(
        &self,
        reference: &str,
        observed: &ObservedState,
    ) -> Result<Resolved<'a>, RefusalReason> {
        let kind = self.kind;
        if let Some(reason) = self.unusable {
            return Err(RefusalReason::TargetTableUnusable {
                kind,
                reason: reason.to_owned(),
            });
        }
        // An `id` as the app spells it: a UUID, or an integer's digits.
        let by_id = crate::store::ids::DbId::uuid_of_text(reference);
        let matches_ref = |a: &&TargetRow| {
            Some(a.id) == by_id
                || a.name.as_deref() == Some(reference)
                || a.vapi_id.as_deref() == Some(reference)
        };
        let (mine, theirs): (Vec<&TargetRow>, Vec<&TargetRow>) = self
            .rows
            .iter()
            .filter(matches_ref)
            .partition(|a| a.user_id == self.owner);
        let reference = reference.to_string();
        let row = match mine.as_slice() {
            [one] => *one,
            [] if !theirs.is_empty() => {
                return Err(RefusalReason::TargetOfAnotherUser { kind, reference });
            }
            [] => {
                let mut known: Vec<String> = self.mine().filter_map(|a| a.name.clone()).collect();
                known.sort_unstable();
                return Err(RefusalReason::UnknownTarget {
                    kind,
                    reference,
                    known,
                });
            }
            many => {
                return Err(RefusalReason::AmbiguousTarget {
                    kind,
                    reference,
                    ids: many.iter().map(|a| a.id).collect(),
                });
            }
        };
        let Some(vapi_id) = row.vapi_id.clone() else {
            return Err(RefusalReason::TargetWithoutVapiId { kind, reference });
        };
        if !kind.exists_in(observed, &vapi_id) {
            return Err(RefusalReason::TargetMissingInVapi {
                kind,
                reference,
                vapi_id,
            });
        }
        Ok((row, vapi_id))
    }

    /// How a spec refers to `row`: its name when no other row of the owner shares it, else its
    /// id — a reference that [`resolve`](Self::resolve) maps back to the same row.
    fn reference_to(&self, row: &TargetRow) -> String {
        match &row.name {
            Some(n) if self.mine().filter(|a| a.name.as_ref() == Some(n)).count() == 1 => n.clone(),
            _ => row.id.to_string(),
        }
    }

    /// The reference for the owner's row whose Vapi id is `vapi_id`, if a row has it.
    pub fn reference_for_vapi_id(&self, vapi_id: &str) -> Option<String> {
        let row = self
            .mine()
            .find(|a| a.vapi_id.as_deref() == Some(vapi_id))?;
        Some(self.reference_to(row))
    }

    /// The reference for the owner's row `row_id`, if it exists.
    pub fn reference_for_row(&self, row_id: Uuid) -> Option<String> {
        let row = self.mine().find(|a| a.id == row_id)?;
        Some(self.reference_to(row))
    }
}
