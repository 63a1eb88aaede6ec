//! `import` over the real sources: Vapi and the database read, then each owner's spec written by
//! the pure [`crate::import::import`] — for one owner, or for every owner that has rows from one
//! observation.

use uuid::Uuid;

use crate::error::Error;
use crate::import::{Imported, Tokens, import};
use crate::secrets::SecretsError;
use crate::state::ObservedState;
use crate::store::{Lookup, Store};
use crate::vapi::VapiClient;

/// Why an import failed: a read, or a stored secret that could not be re-encrypted.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Read(#[from] Error),
    #[error("owner `{owner}`, `{number}`: {source}")]
    Secret {
        owner: Uuid,
        number: String,
        #[source]
        source: SecretsError,
    },
}

/// Every owner's imported spec, from one observation.
#[derive(Debug, Default)]
pub struct ImportedAll {
    /// Owners in `user_id` order, each with its spec.
    pub owners: Vec<(Uuid, Imported)>,
    /// Vapi numbers nobody records (not imported: they have no owner to go to).
    pub unmanaged: usize,
}

/// What an import reads about other users' rows: the claims on every number and Vapi id Vapi
/// lists, and rows not written in E.164 (numbers, Vapi ids).
fn claims_of(observed: &ObservedState) -> (Vec<String>, Vec<String>) {
    (
        observed
            .numbers
            .iter()
            .filter_map(|o| o.number.clone())
            .collect(),
        observed.numbers.iter().map(|o| o.id.clone()).collect(),
    )
}

fn lookup<'a>(numbers: &'a [String], vapi_ids: &'a [String]) -> Lookup<'a> {
    Lookup {
        numbers,
        vapi_ids,
        non_canonical: true,
        ..Lookup::default()
    }
}

/// The spec for `owner`'s numbers (with `adopt`, also the Twilio numbers in Vapi nobody
/// records).
///
/// # Errors
/// A failed read, or a stored secret `tokens` cannot re-encrypt.
pub async fn import_owner(
    store: &Store,
    vapi: &VapiClient,
    owner: Uuid,
    tokens: &Tokens<'_>,
    adopt: bool,
) -> Result<Imported, ImportError> {
    let observed = vapi.observe().await.map_err(Error::from)?;
    let (numbers, vapi_ids) = claims_of(&observed);
    let recorded = store
        .load_recorded_for(owner, &lookup(&numbers, &vapi_ids))
        .await
        .map_err(Error::from)?;
    import(owner, &recorded, &observed, tokens, adopt).map_err(|(number, source)| {
        ImportError::Secret {
            owner,
            number,
            source,
        }
    })
}

/// One spec per owner that has rows, from one read of Vapi and the database; each owner's view
/// is what [`import_owner`] would read for it.
///
/// # Errors
/// As [`import_owner`]: nothing is returned unless every owner imported.
pub async fn import_all(
    store: &Store,
    vapi: &VapiClient,
    tokens: &Tokens<'_>,
) -> Result<ImportedAll, ImportError> {
    let observation = super::observe(store, vapi).await?;
    let (numbers, vapi_ids) = claims_of(&observation.observed);
    let lookup = lookup(&numbers, &vapi_ids);
    let mut all = ImportedAll {
        unmanaged: observation.unmanaged(&[]).len(),
        ..ImportedAll::default()
    };
    let owners: Vec<Uuid> = observation
        .recorded
        .users_with_rows()
        .map(|(u, _)| u)
        .collect();
    for owner in owners {
        let recorded = observation.recorded.for_owner(owner, &lookup);
        let imported = import(owner, &recorded, &observation.observed, tokens, false).map_err(
            |(number, source)| ImportError::Secret {
                owner,
                number,
                source,
            },
        )?;
        all.owners.push((owner, imported));
    }
    Ok(all)
}
