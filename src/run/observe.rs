//! One observation for a whole run: one complete Vapi listing and one read of the database
//! (three statements), whatever the number of owners; each owner is then diffed on its own view.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::Error;
use crate::diff::Refusals;
use crate::diff::matching::{NumberMatch, NumberReader, looks_canonical};
use crate::pipeline;
use crate::plan::{Plan, Unmanaged};
use crate::secrets::Identities;
use crate::state::{DesiredState, E164, ObservedNumber, ObservedState, RecordedState};
use crate::store::{Lookup, RecordedSnapshot, Store};
use crate::vapi::VapiClient;

/// What the database and Vapi held when the run looked.
#[derive(Debug, Clone)]
pub struct Observation {
    pub observed: ObservedState,
    pub recorded: RecordedSnapshot,
    /// Indexes into `observed.numbers` by number as listed.
    by_number: BTreeMap<String, Vec<usize>>,
    /// Indexes into `observed.numbers` by the last digits of the number ([`tail`]).
    by_tail: BTreeMap<String, Vec<usize>>,
    /// Indexes into `observed.numbers` by Vapi id.
    by_id: BTreeMap<String, usize>,
}

/// An owner that has rows in the database but no spec in the run: reported, never touched.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Orphan {
    pub owner: Uuid,
    pub rows: usize,
}

/// Reads Vapi (one complete listing) and the database (three statements) concurrently.
///
/// # Errors
/// Any failed read: no owner is planned from a partial view.
pub async fn observe(store: &Store, vapi: &VapiClient) -> Result<Observation, Error> {
    let recorded = async { store.load_recorded_snapshot().await.map_err(Error::from) };
    let observed = async { vapi.observe().await.map_err(Error::from) };
    let (recorded, observed) = tokio::try_join!(recorded, observed)?;
    Ok(Observation::new(observed, recorded))
}

/// The spec's numbers, assistant references and squad references, as the store's reads take
/// them.
pub(crate) fn references(desired: &DesiredState) -> (Vec<String>, Vec<String>, Vec<String>) {
    let numbers = desired
        .numbers
        .keys()
        .map(|n| n.as_str().to_string())
        .collect();
    let refs = |get: fn(&crate::state::DesiredNumber) -> &Option<String>| {
        desired
            .numbers
            .values()
            .filter_map(|d| get(d).clone())
            .collect()
    };
    (numbers, refs(|d| &d.assistant), refs(|d| &d.squad))
}

/// The last six digits of a number, by which a stored national form (`(415) 555-7002`,
/// `020 7946 0958`) and the E.164 number it may read as are paired up: the national
/// significant number ends both.
const TAIL: usize = 6;

fn tail(s: &str) -> Option<String> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_digit).collect();
    (digits.len() >= TAIL).then(|| String::from_utf8_lossy(&digits[digits.len() - TAIL..]).into())
}

impl Observation {
    pub fn new(observed: ObservedState, recorded: RecordedSnapshot) -> Observation {
        let mut by_number: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut by_tail: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut by_id = BTreeMap::new();
        for (i, o) in observed.numbers.iter().enumerate() {
            if let Some(n) = &o.number {
                by_number.entry(n.clone()).or_default().push(i);
                if let Some(t) = tail(n) {
                    by_tail.entry(t).or_default().push(i);
                }
            }
            by_id.insert(o.id.clone(), i);
        }
        Observation {
            observed,
            recorded,
            by_number,
            by_tail,
            by_id,
        }
    }

    /// The owner's two views, as [`pipeline::observe`](crate::pipeline::observe) reads them for
    /// one spec but with Vapi's listing narrowed to the numbers that can concern the owner
    /// ([`observed_for`](Observation::observed_for)): the database's view is what
    /// [`Store::load_recorded_for`](crate::store::Store::load_recorded_for) gives for the spec's
    /// numbers and those numbers, their Vapi ids, and other users' numbers not written in E.164.
    pub fn view_for(&self, desired: &DesiredState) -> (RecordedState, ObservedState) {
        let observed = self.observed_for(desired);
        let (numbers, assistant_refs, squad_refs) = references(desired);
        let numbers: Vec<String> = numbers
            .into_iter()
            .chain(observed.numbers.iter().filter_map(|o| o.number.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let vapi_ids: Vec<String> = observed.numbers.iter().map(|o| o.id.clone()).collect();
        let lookup = Lookup {
            numbers: &numbers,
            vapi_ids: &vapi_ids,
            assistant_refs: &assistant_refs,
            squad_refs: &squad_refs,
            non_canonical: true,
        };
        let recorded = self.recorded.for_owner(desired.owner, &lookup);
        (recorded, observed)
    }

    /// What the database records for this owner (see [`view_for`](Observation::view_for)).
    pub fn recorded_for(&self, desired: &DesiredState) -> RecordedState {
        self.view_for(desired).0
    }

    /// The part of Vapi's listing that can concern this owner's plan, as the diff matches
    /// ([`crate::diff`]): the numbers its spec names; for each of its rows, the number it stores
    /// when written in E.164, every number it could read as otherwise (by the last digits, a
    /// superset of what the diff's reader accepts), and the number its Vapi id points at; every
    /// copy of each of those numbers; all assistants.
    ///
    /// The diff of this view gives the owner the changes, refusals, kept and out-of-scope
    /// numbers of the whole listing: the numbers left out are no key of the owner's plan and
    /// cannot change how its rows read (the diff reads a national form only as a number of the
    /// listing, which then shares its last digits). Only what the plan says about numbers that
    /// are not the owner's (`unmanaged`, `other_users_count`) depends on the rest; a run reports
    /// those once, for all owners ([`Observation::unmanaged`]).
    pub fn observed_for(&self, desired: &DesiredState) -> ObservedState {
        let mut picked: BTreeSet<usize> = BTreeSet::new();
        let mut everything = false;
        for n in desired.numbers.keys() {
            if let Some(ix) = self.by_number.get(n.as_str()) {
                picked.extend(ix.iter().copied());
            }
        }
        let no_numbers = BTreeSet::new();
        let mut reader = NumberReader::new(&no_numbers);
        for row in self.recorded.rows_of(desired.owner) {
            if let Some(i) = row.vapi_phone_id.as_ref().and_then(|id| self.by_id.get(id)) {
                picked.insert(*i);
            }
            // Another user's row storing the same E.164 number is a claim on it through the
            // Vapi number its id points at, as one spec's plan reads it.
            if let NumberMatch::One(n) = reader.read(&row.phone_number) {
                for other in self.recorded.rows_numbered(&n) {
                    if other.user_id != desired.owner
                        && let Some(i) = other
                            .vapi_phone_id
                            .as_ref()
                            .and_then(|id| self.by_id.get(id))
                    {
                        picked.insert(*i);
                    }
                }
            }
            if looks_canonical(&row.phone_number) {
                if let Some(ix) = self.by_number.get(&row.phone_number) {
                    picked.extend(ix.iter().copied());
                }
            } else {
                match tail(&row.phone_number) {
                    Some(t) => {
                        if let Some(ix) = self.by_tail.get(&t) {
                            picked.extend(ix.iter().copied());
                        }
                    }
                    // Too short to pair by its last digits: the whole listing, as one spec's
                    // plan reads it.
                    None => everything = true,
                }
            }
        }
        if everything {
            return self.observed.clone();
        }
        // Every copy of a picked number (duplicates in Vapi are the diff's to judge).
        let numbers: BTreeSet<&str> = picked
            .iter()
            .filter_map(|&i| self.observed.numbers[i].number.as_deref())
            .collect();
        for n in numbers {
            if let Some(ix) = self.by_number.get(n) {
                picked.extend(ix.iter().copied());
            }
        }
        ObservedState {
            numbers: picked
                .into_iter()
                .map(|i| self.observed.numbers[i].clone())
                .collect(),
            assistants: self.observed.assistants.clone(),
            squads: self.observed.squads.clone(),
        }
    }

    /// The owner's plan, from this observation, made as one spec's plan is
    /// ([`pipeline::plan_from`]: rows' tokens compared by decryption with `identities`, then the
    /// diff). Its `unmanaged` list is left empty and `other_users_count` at 0: in a run, where
    /// the other users are mostly the run's other owners, numbers nobody manages are reported
    /// once, by [`Observation::unmanaged`], and other users' numbers are never shown.
    ///
    /// # Errors
    /// [`Refusals`] as [`diff`](crate::diff::diff) gives them.
    pub fn plan(&self, desired: &DesiredState, identities: &Identities) -> Result<Plan, Refusals> {
        let (recorded, observed) = self.view_for(desired);
        let mut plan = pipeline::plan_from(desired, recorded, &observed, identities)?;
        plan.unmanaged.clear();
        plan.other_users_count = 0;
        Ok(plan)
    }

    /// Vapi numbers that no user's row records and no spec of the run declares, read as the
    /// diff reads them: a row records the number it stores, the E.164 number that form reads
    /// as against Vapi's listing and the run's specs (every candidate, when it could be several),
    /// and the number its Vapi id points at. Numbers recorded for other users are thus never
    /// listed; numbers of other providers that nobody records are, as in one spec's plan.
    pub fn unmanaged(&self, owners: &[&DesiredState]) -> Vec<Unmanaged> {
        let mut known: BTreeSet<String> = self.by_number.keys().cloned().collect();
        for d in owners {
            known.extend(d.numbers.keys().map(|n| n.as_str().to_string()));
        }
        let mut recorded: BTreeSet<String> = BTreeSet::new();
        {
            let mut reader = NumberReader::new(&known);
            for row in self.recorded.rows() {
                recorded.insert(row.phone_number.clone());
                match reader.read(&row.phone_number) {
                    NumberMatch::One(n) => {
                        recorded.insert(n);
                    }
                    NumberMatch::Several(all) => recorded.extend(all),
                    NumberMatch::Elsewhere | NumberMatch::Unreadable => {}
                }
            }
        }
        let ids: BTreeSet<&str> = self.recorded.vapi_ids().collect();
        let declared: BTreeSet<&str> = owners
            .iter()
            .flat_map(|d| d.numbers.keys().map(E164::as_str))
            .collect();
        let mut out: Vec<Unmanaged> = self
            .observed
            .numbers
            .iter()
            .filter(|o: &&ObservedNumber| {
                !ids.contains(o.id.as_str())
                    && o.number
                        .as_deref()
                        .is_none_or(|n| !recorded.contains(n) && !declared.contains(n))
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
