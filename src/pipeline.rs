//! The pipeline's stages wired together: load → decrypt → validate → observe → diff → plan.
//! The commands of the binary are thin wrappers around these functions.

use std::path::Path;

use crate::Error;
use crate::diff::diff;
use crate::plan::Plan;
use crate::secrets::Identities;
use crate::spec::{LoadedSpec, load_file};
use crate::state::{DesiredState, ObservedState, RecordedState};
use crate::store::{Lookup, Store};
use crate::validate::{SecretMode, validate};
use crate::vapi::VapiClient;

/// Reads, decrypts and validates a spec. Touches nothing but the file.
///
/// # Errors
/// [`Error::Spec`] when the file cannot be read as a spec, [`Error::Invalid`] with every
/// problem otherwise.
pub fn load_desired(
    path: &Path,
    identities: &Identities,
    mode: SecretMode,
) -> Result<(LoadedSpec, DesiredState), Error> {
    let loaded = load_file(path)?;
    let desired = validate(&loaded, identities, mode)?;
    Ok((loaded, desired))
}

/// Reads Vapi, then the database for the numbers and assistants the spec mentions and for the
/// rows of other users that may hold Vapi's numbers (by number in any form, or by Vapi id).
///
/// Vapi comes first because the database read needs its numbers and ids; the database read
/// stays at three statements whatever the number of rows.
///
/// # Errors
/// Any failed read: no plan is made from a partial view.
pub async fn observe(
    store: &Store,
    vapi: &VapiClient,
    desired: &DesiredState,
) -> Result<(RecordedState, ObservedState), Error> {
    let observed = vapi.observe().await?;
    let numbers: Vec<String> = desired
        .numbers
        .keys()
        .map(|n| n.as_str().to_string())
        .chain(observed.numbers.iter().filter_map(|o| o.number.clone()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let vapi_ids: Vec<String> = observed.numbers.iter().map(|o| o.id.clone()).collect();
    let assistant_refs: Vec<String> = desired
        .numbers
        .values()
        .filter_map(|d| d.assistant.clone())
        .collect();
    let lookup = Lookup {
        numbers: &numbers,
        vapi_ids: &vapi_ids,
        assistant_refs: &assistant_refs,
        non_canonical: true,
    };
    let recorded = store.load_recorded_for(desired.owner, &lookup).await?;
    Ok((recorded, observed))
}

/// Observes and diffs.
///
/// # Errors
/// As [`observe`], plus [`Error::Refused`] when a number cannot be planned safely.
pub async fn plan(store: &Store, vapi: &VapiClient, desired: &DesiredState) -> Result<Plan, Error> {
    let (recorded, observed) = observe(store, vapi, desired).await?;
    Ok(diff(desired, &recorded, &observed)?)
}
