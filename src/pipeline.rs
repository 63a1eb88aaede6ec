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
use crate::store::{Lookup, Store};
use crate::twilio::Preflight;
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
/// stays at four statements whatever the number of rows.
///
/// # Errors
/// Any failed read: no plan is made from a partial view.
pub async fn observe(
    store: &Store,
    vapi: &VapiClient,
    desired: &DesiredState,
) -> Result<(RecordedState, ObservedState), Error> {
    let observed = vapi.observe().await?;
    let (numbers, assistant_refs, squad_refs) = crate::run::observe::references(desired);
    let numbers: Vec<String> = numbers
        .into_iter()
        .chain(observed.numbers.iter().filter_map(|o| o.number.clone()))
        .collect::<std::collections::BTreeSet<_>>()
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
    let recorded = store.load_recorded_for(desired.owner, &lookup).await?;
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
    let (recorded, observed) = observe(store, vapi, desired).await?;
    Ok(plan_from(desired, recorded, &observed, identities)?)
}

/// [`plan`], then the Twilio preflight of its creates, adoptions and credential changes
/// (`None`: no preflight, as for library callers that never read Twilio).
///
/// # Errors
/// As [`plan`], plus [`Error::Refused`] for what Twilio refuses and [`Error::Twilio`] when
/// Twilio cannot be read.
pub async fn plan_checked(
    store: &Store,
    vapi: &VapiClient,
    twilio: Option<&Preflight>,
    desired: &DesiredState,
    identities: &Identities,
) -> Result<Plan, Error> {
    let plan = plan(store, vapi, desired, identities).await?;
    match twilio {
        Some(t) => t.check_one(desired, plan).await,
        None => Ok(plan),
    }
}

/// The plan from the three views: [`recognise_row_tokens`], then the diff. Pure but for the
/// decryption of rows' tokens.
///
/// # Errors
/// [`Refusals`](crate::diff::Refusals) when a number cannot be planned safely.
pub fn plan_from(
    desired: &DesiredState,
    mut recorded: RecordedState,
    observed: &ObservedState,
    identities: &Identities,
) -> Result<Plan, crate::diff::Refusals> {
    let as_stored = recognise_row_tokens(&mut recorded, desired, identities);
    let mut plan = diff(desired, &recorded, observed)?;
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
/// vapictl wrote (re-encrypted when equal), and which the row update then stores. Rows whose ciphertext is the spec's need no decryption (the token is unchanged)
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
    // The spec's numbers as digits and their tails, to skip rows the spec cannot be about (a
    // superset test: a row stored as `4155557002` or `+1 415-555-7002` still matches
    // `+14155557002`). Shorter tails than MIN_TAIL are not numbers anyone stores.
    const MIN_TAIL: usize = 6;
    let spec_tails: std::collections::HashSet<String> = desired
        .numbers
        .keys()
        .flat_map(|n| {
            let d = digits(n.as_str());
            (0..=d.len().saturating_sub(MIN_TAIL))
                .map(|i| d[i..].to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut decrypted = BTreeMap::new();
    for row in recorded.rows.values_mut() {
        let Some(armored) = row.secret_ciphertext() else {
            continue;
        };
        if row.token_digest.is_some() || spec_ciphertexts.contains(armored) {
            continue;
        }
        let row_digits = digits(&row.phone_number);
        let row_digits = row_digits.trim_start_matches('0');
        if !spec_tails.contains(row_digits) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{RowStep, VapiStep};
    use crate::saved::SavedPlan;
    use crate::secrets::{SecretValue, digest_matches, encrypt};
    use crate::state::{DesiredNumber, DesiredTwilio, E164, EncryptedToken, ObservedNumber};

    const OWNER: Uuid = Uuid::from_u128(1);
    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    struct Key {
        identities: Identities,
        recipient: age::x25519::Recipient,
    }

    fn key() -> Key {
        use age::secrecy::ExposeSecret;
        let id = age::x25519::Identity::generate();
        let mut identities = Identities::none();
        identities
            .add_text("test", &SecretValue::new(id.to_string().expose_secret()))
            .unwrap();
        Key {
            identities,
            recipient: id.to_public(),
        }
    }

    impl Key {
        fn encrypt(&self, plain: &str) -> String {
            encrypt(
                std::slice::from_ref(&self.recipient),
                &SecretValue::new(plain),
            )
            .unwrap()
        }
    }

    fn wanted(number: &str, armored: &str, plain: Option<&str>) -> DesiredNumber {
        DesiredNumber {
            number: E164::new_unchecked(number),
            name: "Main".into(),
            assistant: None,
            squad: None,
            notes: None,
            twilio: DesiredTwilio {
                account_sid: SID.into(),
                auth_token: EncryptedToken {
                    armored: armored.into(),
                    plaintext: plain.map(SecretValue::new),
                },
                api_key: None,
            },
            server: None,
            sms_enabled: true,
            fallback_destination: None,
            hooks: None,
            protected: false,
            absent: false,
            line: 1,
            path: "phoneNumbers[0]".into(),
            positions: Default::default(),
            from_defaults: Vec::new(),
        }
    }

    /// A row as the application writes it: its own ciphertext, no digest.
    fn app_row(number: &str, armored: &str) -> PhoneRow {
        PhoneRow {
            id: Uuid::new_v4(),
            user_id: OWNER,
            phone_number: number.into(),
            friendly_name: Some("Main".into()),
            provider: "twilio".into(),
            vapi_phone_id: Some(format!("id-{number}")),
            vapi_credential_id: None,
            twilio_account_sid: Some(SID.into()),
            twilio_auth_token: Some(armored.into()),
            api_key: None,
            api_secret: None,
            assigned_assistant_id: None,
            assigned_squad_id: None,
            notes: None,
            token_digest: None,
            protected: false,
            applied: None,
        }
    }

    fn in_vapi(number: &str) -> ObservedNumber {
        ObservedNumber {
            id: format!("id-{number}"),
            provider: "twilio".into(),
            number: Some(number.into()),
            name: Some("Main".into()),
            assistant_id: None,
            squad_id: None,
            workflow_id: None,
            server: None,
            server_raw: None,
            sms_enabled: None,
            fallback_destination: None,
            hooks: None,
            status: None,
            twilio_account_sid: Some(SID.into()),
            credential_id: None,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            updated_at: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    fn state(
        numbers: Vec<DesiredNumber>,
        rows: Vec<PhoneRow>,
    ) -> (DesiredState, RecordedState, ObservedState) {
        let observed = ObservedState {
            numbers: numbers.iter().map(|d| in_vapi(d.number.as_str())).collect(),
            ..ObservedState::default()
        };
        let desired = DesiredState {
            owner: OWNER,
            numbers: numbers.into_iter().map(|d| (d.number.clone(), d)).collect(),
            spec_digest: "d".into(),
            spec_path: "spec.yaml".into(),
        };
        let recorded = RecordedState {
            rows: rows
                .into_iter()
                .map(|r| (r.phone_number.clone(), r))
                .collect(),
            ..RecordedState::default()
        };
        (desired, recorded, observed)
    }

    const SAME: &str = "+14155550001";
    const ROTATED: &str = "+14155550002";
    const IDENTICAL: &str = "+14155550003";
    const NOT_IN_SPEC: &str = "+14155550004";
    /// The app stored this one as `(415) 555-0005`.
    const WRITTEN_OTHERWISE: &str = "+14155550005";

    #[test]
    fn rows_without_digest_are_compared_by_their_plaintext() {
        let k = key();
        let token = "t".repeat(32);
        let spec = k.encrypt(&token);
        let (desired, mut recorded, observed) = state(
            vec![
                wanted(SAME, &spec, Some(&token)),
                wanted(ROTATED, &spec, Some(&token)),
                wanted(IDENTICAL, &spec, Some(&token)),
                wanted(WRITTEN_OTHERWISE, &spec, Some(&token)),
            ],
            vec![
                // The same token, encrypted by `echo … | age` (with a newline) by the app.
                app_row(SAME, &k.encrypt(&format!("{token}\n"))),
                app_row(ROTATED, &k.encrypt(&"u".repeat(32))),
                app_row(IDENTICAL, &spec),
                app_row(NOT_IN_SPEC, &k.encrypt(&token)),
                app_row("(415) 555-0005", &k.encrypt(&token)),
            ],
        );
        let stored = recorded.clone();

        assert!(recognise_row_tokens(&mut recorded, &desired, &Identities::none()).is_empty());
        let as_stored = recognise_row_tokens(&mut recorded, &desired, &k.identities);
        assert_eq!(
            as_stored.len(),
            3,
            "the re-encrypted rows and the rotated one"
        );
        assert!(recorded.rows["(415) 555-0005"].token_digest.is_some());
        let digest = |n: &str| recorded.rows[n].token_digest.clone();
        assert!(digest(SAME).is_some_and(|d| digest_matches(&d, &SecretValue::new(&token))));
        assert!(digest(ROTATED).is_some_and(|d| !digest_matches(&d, &SecretValue::new(&token))));
        assert_eq!(
            digest(IDENTICAL),
            None,
            "same ciphertext: nothing to decrypt"
        );
        assert_eq!(digest(NOT_IN_SPEC), None, "not the spec's: left alone");
        assert_eq!(as_stored[&stored.rows[SAME].id], stored.rows[SAME]);

        let plan = diff(&desired, &recorded, &observed).unwrap();
        let change = |n: &str| plan.changes.iter().find(|c| c.number == n).unwrap();
        let same = change(SAME);
        assert!(matches!(same.vapi, VapiStep::None), "nothing sent to Vapi");
        let RowStep::Update { values, .. } = &same.row else {
            panic!("the row takes the spec's ciphertext")
        };
        assert_eq!(values.token_digest, digest(SAME), "and its digest");
        assert!(matches!(change(ROTATED).vapi, VapiStep::Update { .. }));
    }

    #[test]
    fn a_plan_made_without_a_key_is_not_stale_with_the_key() {
        let k = key();
        let token = "t".repeat(32);
        let spec = k.encrypt(&token);
        let rows = vec![app_row(SAME, &k.encrypt(&token))];
        // Without a key: "token changed (cannot verify without key)", sent to Vapi.
        let (desired, recorded, observed) = state(vec![wanted(SAME, &spec, None)], rows.clone());
        let keyless = plan_from(&desired, recorded, &observed, &Identities::none()).unwrap();
        assert!(matches!(keyless.changes[0].vapi, VapiStep::Update { .. }));
        let saved = SavedPlan::new(&keyless, "/spec.yaml", Uuid::nil());

        // With the key: re-encrypted, the row only — the same change carried out.
        let (desired, recorded, observed) = state(vec![wanted(SAME, &spec, Some(&token))], rows);
        let keyed = plan_from(&desired, recorded, &observed, &k.identities).unwrap();
        assert!(matches!(keyed.changes[0].vapi, VapiStep::None));
        assert_eq!(saved.staleness(&keyed), Vec::<String>::new());
    }
}
