//! The pipeline's stages wired together: load → decrypt → validate → observe → decrypt the rows'
//! tokens → diff → plan. The commands of the binary are thin wrappers around these functions.

use std::collections::BTreeMap;
use std::path::Path;

use uuid::Uuid;

use crate::Error;
use crate::diff::diff;
use crate::plan::Plan;
use crate::secrets::{Identities, token_digest};
use crate::spec::{LoadedSpec, load_file};
use crate::state::{DesiredState, ObservedState, PhoneRow, RecordedState};
use crate::store::Store;
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

/// Reads the database and Vapi (concurrently) for the numbers and assistants the spec mentions.
///
/// # Errors
/// Any failed read: no plan is made from a partial view.
pub async fn observe(
    store: &Store,
    vapi: &VapiClient,
    desired: &DesiredState,
) -> Result<(RecordedState, ObservedState), Error> {
    let numbers: Vec<String> = desired
        .numbers
        .keys()
        .map(|n| n.as_str().to_string())
        .collect();
    let assistant_refs: Vec<String> = desired
        .numbers
        .values()
        .filter_map(|d| d.assistant.clone())
        .collect();
    let recorded = async {
        store
            .load_recorded(desired.owner, &numbers, &assistant_refs)
            .await
            .map_err(Error::from)
    };
    let observed = async { vapi.observe().await.map_err(Error::from) };
    let (recorded, observed) = tokio::try_join!(recorded, observed)?;
    Ok((recorded, observed))
}

/// Observes, recognises unchanged tokens in rows written by others ([`recognise_row_tokens`]),
/// and diffs. `identities` are those the spec was decrypted with (none for a keyless plan).
///
/// # Errors
/// As [`observe`], plus [`Error::Refused`] when a number cannot be planned safely.
pub async fn plan(
    store: &Store,
    vapi: &VapiClient,
    desired: &DesiredState,
    identities: &Identities,
) -> Result<Plan, Error> {
    let (mut recorded, observed) = observe(store, vapi, desired).await?;
    let as_stored = recognise_row_tokens(&mut recorded, desired, identities);
    let mut plan = diff(desired, &recorded, &observed)?;
    // A change keeps the row as the database holds it: saved plans compare it (by digest) with
    // what the database holds at apply time, when this run's digest, salted afresh, is gone.
    for change in &mut plan.changes {
        if let Some(row) = change.recorded.as_mut()
            && let Some(stored) = as_stored.get(&row.id)
        {
            *row = stored.clone();
        }
    }
    Ok(plan)
}

/// The "decrypt" stage for rows: tells a re-encrypted token from a rotated one in rows that have
/// no `vapictl_token_digest` (rows written by the application, or by `import --recipient`'s
/// first apply), so that re-encryption updates the row only and never re-sends the token.
///
/// For each of the owner's rows without a digest whose ciphertext is not one the spec holds, the
/// row's ciphertext is decrypted with `identities`; when it decrypts, the row gets (in memory) a
/// fresh digest of its plaintext, which the diff compares with the spec's token like any digest
/// vapictl wrote (re-encrypted when equal), and which the row update
/// then stores. Rows whose ciphertext is the spec's need no decryption (the token is unchanged)
/// and are left without a digest until vapictl next writes them; rows that do not decrypt (other
/// recipients, damaged, plaintext) are left as they are and compare as a rotated token.
///
/// Returns the rows as stored, by id, for those it changed. Pure but for the decryption; without
/// identities it does nothing.
pub fn recognise_row_tokens(
    recorded: &mut RecordedState,
    desired: &DesiredState,
    identities: &Identities,
) -> BTreeMap<Uuid, PhoneRow> {
    let mut as_stored = BTreeMap::new();
    if identities.is_empty() {
        return as_stored;
    }
    let spec_ciphertexts: std::collections::BTreeSet<&str> = desired
        .numbers
        .values()
        .map(|d| d.twilio.auth_token.armored.as_str())
        .collect();
    // The spec's numbers as digits, to skip rows the spec cannot be about (a superset test: a
    // row stored as `4155557002` or `+1 415-555-7002` still matches `+14155557002`).
    let spec_digits: Vec<String> = desired.numbers.keys().map(|n| digits(n.as_str())).collect();
    let mut decrypted = BTreeMap::new();
    for row in recorded.rows.values_mut() {
        let Some(armored) = row.twilio_auth_token.as_deref() else {
            continue;
        };
        if row.token_digest.is_some() || spec_ciphertexts.contains(armored) {
            continue;
        }
        let row_digits = digits(&row.phone_number);
        let row_digits = row_digits.trim_start_matches('0');
        if row_digits.is_empty() || !spec_digits.iter().any(|d| d.ends_with(row_digits)) {
            continue;
        }
        let digest = decrypted
            .entry(armored.to_string())
            .or_insert_with(|| identities.decrypt(armored).ok().map(|p| token_digest(&p)))
            .clone();
        if let Some(digest) = digest {
            as_stored.insert(row.id, row.clone());
            row.token_digest = Some(digest);
        }
    }
    if !as_stored.is_empty() {
        tracing::debug!(
            rows = as_stored.len(),
            "compared the tokens of rows without a digest by decrypting them"
        );
    }
    as_stored
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}
