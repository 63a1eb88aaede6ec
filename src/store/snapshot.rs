//! Everything the database records for a fleet run, read in three statements and then split per
//! owner in memory, so that planning a thousand owners costs what planning one does.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::sql::{self, Everything};
use super::{Lookup, Store, StoreError};
use crate::state::{AssistantRow, PhoneRow, RecordedState, SquadRow, TargetRow};

/// Every `phone_numbers`, `assistants` and `squads` row, as one run reads them.
///
/// [`for_owner`](RecordedSnapshot::for_owner) gives each owner exactly the
/// [`RecordedState`] that [`Store::load_recorded_for`] would have read for it with the same
/// [`Lookup`] (a conformance test holds the two to that on both backends).
#[derive(Debug, Clone, Default)]
pub struct RecordedSnapshot {
    /// Row indexes by `user_id`.
    by_user: BTreeMap<Uuid, Vec<usize>>,
    /// Row indexes by `phone_number` as stored.
    by_number: BTreeMap<String, Vec<usize>>,
    /// Row indexes by `vapi_phone_id`.
    by_vapi_id: BTreeMap<String, Vec<usize>>,
    /// Indexes of the rows whose number is not written in E.164 (claims of every plan).
    non_canonical: Vec<usize>,
    rows: Vec<PhoneRow>,
    /// Rows without a number that record a Vapi id: (user, Vapi id). No spec or diff refers to
    /// them by number, but their Vapi id is another user's claim.
    numberless: Vec<(Uuid, String)>,
    assistants: Vec<AssistantRow>,
    squads: Vec<SquadRow>,
    /// Why the app's `squads` table cannot be read, when it cannot.
    squads_unusable: Option<String>,
}

/// Whether a stored number is written in E.164 as the claims query tells it (`+` then 7 to 15
/// digits, the first not 0).
fn looks_canonical(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|d| {
        (7..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

impl RecordedSnapshot {
    /// Builds the indexes over rows read elsewhere.
    pub fn new(
        rows: Vec<PhoneRow>,
        assistants: Vec<AssistantRow>,
        squads: Vec<SquadRow>,
    ) -> RecordedSnapshot {
        RecordedSnapshot::with_numberless(rows, Vec::new(), assistants, squads)
    }

    /// As [`new`](RecordedSnapshot::new), plus the rows without a number that record a Vapi id
    /// (user, Vapi id).
    pub fn with_numberless(
        rows: Vec<PhoneRow>,
        numberless: Vec<(Uuid, String)>,
        assistants: Vec<AssistantRow>,
        squads: Vec<SquadRow>,
    ) -> RecordedSnapshot {
        let mut by_user: BTreeMap<Uuid, Vec<usize>> = BTreeMap::new();
        let mut by_number: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut by_vapi_id: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut non_canonical = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            by_user.entry(r.user_id).or_default().push(i);
            by_number.entry(r.phone_number.clone()).or_default().push(i);
            if let Some(id) = &r.vapi_phone_id {
                by_vapi_id.entry(id.clone()).or_default().push(i);
            }
            if !looks_canonical(&r.phone_number) {
                non_canonical.push(i);
            }
        }
        RecordedSnapshot {
            by_user,
            by_number,
            by_vapi_id,
            non_canonical,
            rows,
            numberless,
            assistants: sql::sorted_targets(assistants),
            squads: sql::sorted_targets(squads),
            squads_unusable: None,
        }
    }

    /// The rows of `owner`.
    pub fn rows_of(&self, owner: Uuid) -> impl Iterator<Item = &PhoneRow> + '_ {
        self.by_user
            .get(&owner)
            .into_iter()
            .flatten()
            .map(|&i| &self.rows[i])
    }

    /// What the database records for `owner`: its rows; other users' rows that hold one of
    /// `lookup.numbers`, record one of `lookup.vapi_ids`, or (with `lookup.non_canonical`) store
    /// a number not written in E.164, as claims; and its assistants (squads) plus others'
    /// matching `lookup.assistant_refs` (`lookup.squad_refs`) — the same value [`Store::load_recorded_for`] returns for these
    /// arguments.
    pub fn for_owner(&self, owner: Uuid, lookup: &Lookup<'_>) -> RecordedState {
        let Lookup {
            numbers,
            vapi_ids,
            assistant_refs,
            squad_refs,
            non_canonical,
        } = *lookup;
        let mut state = RecordedState::default();
        for row in self.rows_of(owner) {
            state.rows.insert(row.phone_number.clone(), row.clone());
        }
        // The claims, in the order the table holds them (as the query returns them).
        let mut claims: BTreeSet<usize> = BTreeSet::new();
        for n in numbers {
            claims.extend(self.by_number.get(n).into_iter().flatten().copied());
        }
        for id in vapi_ids {
            claims.extend(self.by_vapi_id.get(id).into_iter().flatten().copied());
        }
        if non_canonical {
            claims.extend(self.non_canonical.iter().copied());
        }
        for i in claims {
            let row = &self.rows[i];
            if row.user_id != owner {
                state.add_claim(
                    Some(row.phone_number.clone()),
                    row.vapi_phone_id.clone(),
                    row.user_id,
                );
            }
        }
        if !vapi_ids.is_empty() {
            let ids: BTreeSet<&str> = vapi_ids.iter().map(String::as_str).collect();
            for (user, id) in &self.numberless {
                if *user != owner && ids.contains(id.as_str()) {
                    state.add_claim(None, Some(id.clone()), *user);
                }
            }
        }
        state.assistants = targets_for(&self.assistants, owner, assistant_refs);
        state.squads = targets_for(&self.squads, owner, squad_refs);
        state.squads_unusable = self.squads_unusable.clone();
        state
    }

    /// Every user that has at least one `phone_numbers` row.
    pub fn users_with_rows(&self) -> impl Iterator<Item = (Uuid, usize)> + '_ {
        self.by_user
            .iter()
            .filter(|(u, _)| !u.is_nil())
            .map(|(u, rows)| (*u, rows.len()))
    }

    /// The rows, of every user, that store exactly `number`.
    pub fn rows_numbered(&self, number: &str) -> impl Iterator<Item = &PhoneRow> + '_ {
        self.by_number
            .get(number)
            .into_iter()
            .flatten()
            .map(|&i| &self.rows[i])
    }

    /// Every Vapi id a row records (rows without a number included), of every user.
    pub fn vapi_ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.by_vapi_id
            .keys()
            .map(String::as_str)
            .chain(self.numberless.iter().map(|(_, id)| id.as_str()))
    }

    /// Every row, of every user.
    pub fn rows(&self) -> &[PhoneRow] {
        &self.rows
    }
}

/// The owner's rows of a routing-target table and other users' named by `refs` (as the
/// backend's `TARGETS_FOR` selects them).
fn targets_for(rows: &[TargetRow], owner: Uuid, refs: &[String]) -> Vec<TargetRow> {
    let refs: BTreeSet<String> = sql::lowercase_too(refs).into_iter().collect();
    rows.iter()
        .filter(|a| {
            // The id as the database spells it in text, as `TARGETS_FOR` compares it.
            let id = match super::ids::uuid_as_int(a.id) {
                Some(n) => n.to_string(),
                None => a.id.to_string(),
            };
            a.user_id == owner
                || refs.contains(&id)
                || a.name.as_ref().is_some_and(|n| refs.contains(n))
                || a.vapi_id.as_ref().is_some_and(|v| refs.contains(v))
        })
        .cloned()
        .collect()
}

impl Store {
    /// Reads every `phone_numbers`, `assistants` and `squads` row in three statements, for a run over many
    /// owners (see [`RecordedSnapshot::for_owner`]).
    ///
    /// # Errors
    /// [`StoreError::QueryFailed`] when a statement fails.
    ///
    /// # Caveats
    /// As for [`Store::load_recorded`], the statements do not share one snapshot; and the
    /// whole table is read, which is what a run over every owner needs anyway.
    pub async fn load_recorded_snapshot(&self) -> Result<RecordedSnapshot, StoreError> {
        let Everything {
            rows: raw_rows,
            assistants,
            squads,
        } = self.load_everything().await?;
        let mut rows = Vec::with_capacity(raw_rows.len());
        let mut numberless = Vec::new();
        for r in raw_rows {
            match r.into_phone_row_or_claim() {
                Ok(row) => rows.push(row),
                Err(Some(claim)) => numberless.push(claim),
                Err(None) => {}
            }
        }
        let (squads, squads_unusable) = match squads {
            Ok(squads) => (squads, None),
            Err(reason) => (Vec::new(), Some(reason)),
        };
        let mut snapshot = RecordedSnapshot::with_numberless(rows, numberless, assistants, squads);
        snapshot.squads_unusable = squads_unusable;
        Ok(snapshot)
    }
}
