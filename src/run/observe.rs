//! One observation for a whole run: one complete Vapi listing and one read of the database
//! (two statements), whatever the number of owners; each owner is then diffed on its own view.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::Error;
use crate::diff::{Refusals, diff};
use crate::plan::{Plan, Unmanaged};
use crate::state::{DesiredState, ObservedNumber, ObservedState, RecordedState};
use crate::store::{RecordedSnapshot, Store};
use crate::vapi::VapiClient;

/// What the database and Vapi held when the run looked.
#[derive(Debug, Clone)]
pub struct Observation {
    pub observed: ObservedState,
    pub recorded: RecordedSnapshot,
    /// Indexes into `observed.numbers` by number as listed.
    by_number: BTreeMap<String, Vec<usize>>,
    /// Indexes into `observed.numbers` by Vapi id.
    by_id: BTreeMap<String, usize>,
}

/// An owner that has rows in the database but no spec in the run: reported, never touched.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Orphan {
    pub owner: Uuid,
    pub rows: usize,
}

/// Reads Vapi (one complete listing) and the database (two statements) concurrently.
///
/// # Errors
/// Any failed read: no owner is planned from a partial view.
pub async fn observe(store: &Store, vapi: &VapiClient) -> Result<Observation, Error> {
    let recorded = async { store.load_recorded_snapshot().await.map_err(Error::from) };
    let observed = async { vapi.observe().await.map_err(Error::from) };
    let (recorded, observed) = tokio::try_join!(recorded, observed)?;
    Ok(Observation::new(observed, recorded))
}

/// The spec's numbers and assistant references, as the store's reads take them.
pub(crate) fn references(desired: &DesiredState) -> (Vec<String>, Vec<String>) {
    let numbers = desired
        .numbers
        .keys()
        .map(|n| n.as_str().to_string())
        .collect();
    let refs = desired
        .numbers
        .values()
        .filter_map(|d| d.assistant.clone())
        .collect();
    (numbers, refs)
}

/// A stored number and its E.164 form, when it has one that differs (the application may have
/// stored `4155557002` or `+1 415-555-7002`; North American numbers are assumed without `+`).
fn spellings(stored: &str) -> impl Iterator<Item = String> {
    let plain = stored.starts_with('+') && stored[1..].bytes().all(|b| b.is_ascii_digit());
    let canonical = (!plain)
        .then(|| {
            let parse = |region| {
                phonenumber::parse(region, stored)
                    .ok()
                    .filter(|p| p.is_valid())
                    .map(|p| p.format().mode(phonenumber::Mode::E164).to_string())
            };
            parse(None).or_else(|| parse(Some(phonenumber::country::Id::US)))
        })
        .flatten()
        .filter(|c| c != stored);
    std::iter::once(stored.to_string()).chain(canonical)
}

impl Observation {
    pub fn new(observed: ObservedState, recorded: RecordedSnapshot) -> Observation {
        let mut by_number: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut by_id = BTreeMap::new();
        for (i, o) in observed.numbers.iter().enumerate() {
            if let Some(n) = &o.number {
                by_number.entry(n.clone()).or_default().push(i);
            }
            by_id.insert(o.id.clone(), i);
        }
        Observation {
            observed,
            recorded,
            by_number,
            by_id,
        }
    }

    /// What the database records for this owner (as [`Store::load_recorded`] would read it).
    pub fn recorded_for(&self, desired: &DesiredState) -> RecordedState {
        let (numbers, refs) = references(desired);
        self.recorded.for_owner(desired.owner, &numbers, &refs)
    }

    /// The part of Vapi's listing that concerns this owner: the numbers its spec names, the
    /// numbers its rows and the other users' rows in question record (as stored and in E.164),
    /// and the Vapi ids its rows point at; all assistants.
    fn observed_for(&self, desired: &DesiredState, recorded: &RecordedState) -> ObservedState {
        let mut picked: BTreeSet<usize> = BTreeSet::new();
        let mut by_number = |n: &str| {
            if let Some(ix) = self.by_number.get(n) {
                picked.extend(ix.iter().copied());
            }
        };
        for n in desired.numbers.keys() {
            by_number(n.as_str());
        }
        for stored in recorded.rows.keys().chain(recorded.foreign.keys()) {
            for s in spellings(stored) {
                by_number(&s);
            }
        }
        for row in recorded.rows.values() {
            if let Some(i) = row.vapi_phone_id.as_ref().and_then(|id| self.by_id.get(id)) {
                picked.insert(*i);
            }
        }
        ObservedState {
            numbers: picked
                .into_iter()
                .map(|i| self.observed.numbers[i].clone())
                .collect(),
            assistants: self.observed.assistants.clone(),
        }
    }

    /// The owner's plan, from this observation. Its `unmanaged` list is left empty: in a run,
    /// numbers nobody manages are reported once, by [`Observation::unmanaged`].
    ///
    /// # Errors
    /// [`Refusals`] as [`diff`] gives them.
    pub fn plan(&self, desired: &DesiredState) -> Result<Plan, Refusals> {
        let recorded = self.recorded_for(desired);
        let observed = self.observed_for(desired, &recorded);
        let mut plan = diff(desired, &recorded, &observed)?;
        plan.unmanaged.clear();
        Ok(plan)
    }

    /// Vapi numbers that no user's row records (by number, as stored or in E.164, or by Vapi id)
    /// and no spec of the run declares.
    pub fn unmanaged(&self, owners: &[&DesiredState]) -> Vec<Unmanaged> {
        let mut known: BTreeSet<String> = BTreeSet::new();
        let mut ids: BTreeSet<&str> = BTreeSet::new();
        for row in self.recorded.rows() {
            known.extend(spellings(&row.phone_number));
            if let Some(id) = &row.vapi_phone_id {
                ids.insert(id);
            }
        }
        for d in owners {
            known.extend(d.numbers.keys().map(|n| n.as_str().to_string()));
        }
        let mut out: Vec<Unmanaged> = self
            .observed
            .numbers
            .iter()
            .filter(|o: &&ObservedNumber| {
                !ids.contains(o.id.as_str()) && o.number.as_ref().is_none_or(|n| !known.contains(n))
            })
            .map(|o| Unmanaged {
                number: o.number.clone(),
                id: o.id.clone(),
                provider: o.provider.clone(),
            })
            .collect();
        out.sort_by(|a, b| (&a.number, &a.id).cmp(&(&b.number, &b.id)));
        out
    }

    /// Owners with rows in the database that are not among `owners` (the run's specs, valid or
    /// not): never touched, since deleting an owner's numbers takes an explicit spec.
    pub fn orphans(&self, owners: &BTreeSet<Uuid>) -> Vec<Orphan> {
        self.recorded
            .users_with_rows()
            .filter(|(u, _)| !owners.contains(u))
            .map(|(owner, rows)| Orphan { owner, rows })
            .collect()
    }
}
