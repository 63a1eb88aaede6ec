//! Everything the database records for a fleet run, read in two statements and then split per
//! owner in memory, so that planning a thousand owners costs what planning one does.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;
use uuid::fmt::Hyphenated;

use super::sql::{self, RawAssistantRow, RawPhoneRow};
use super::{Store, StoreError};
use crate::state::{AssistantRow, PhoneRow, RecordedState};

/// Every `phone_numbers` and `assistants` row, as one run reads them.
///
/// [`for_owner`](RecordedSnapshot::for_owner) gives each owner exactly the
/// [`RecordedState`] that [`Store::load_recorded`] would have read for it (a conformance test
/// holds the two to that on both backends).
#[derive(Debug, Clone, Default)]
pub struct RecordedSnapshot {
    /// Row indexes by `user_id`.
    by_user: BTreeMap<Uuid, Vec<usize>>,
    /// Row indexes by `phone_number` as stored.
    by_number: BTreeMap<String, Vec<usize>>,
    rows: Vec<PhoneRow>,
    assistants: Vec<AssistantRow>,
}

impl RecordedSnapshot {
    /// Builds the indexes over rows read elsewhere.
    pub fn new(rows: Vec<PhoneRow>, assistants: Vec<AssistantRow>) -> RecordedSnapshot {
        let mut by_user: BTreeMap<Uuid, Vec<usize>> = BTreeMap::new();
        let mut by_number: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, r) in rows.iter().enumerate() {
            by_user.entry(r.user_id).or_default().push(i);
            by_number.entry(r.phone_number.clone()).or_default().push(i);
        }
        RecordedSnapshot {
            by_user,
            by_number,
            rows,
            assistants: sql::sorted_assistants(assistants),
        }
    }

    /// What the database records for `owner`: its rows, other users' rows holding any of
    /// `numbers`, and its assistants plus others' matching `assistant_refs` — the same value
    /// [`Store::load_recorded`] returns for these arguments.
    pub fn for_owner(
        &self,
        owner: Uuid,
        numbers: &[String],
        assistant_refs: &[String],
    ) -> RecordedState {
        let mut state = RecordedState::default();
        for &i in self.by_user.get(&owner).into_iter().flatten() {
            let row = &self.rows[i];
            state.rows.insert(row.phone_number.clone(), row.clone());
        }
        for n in numbers {
            for &i in self.by_number.get(n).into_iter().flatten() {
                let row = &self.rows[i];
                if row.user_id != owner {
                    state.foreign.insert(row.phone_number.clone(), row.user_id);
                }
            }
        }
        let refs: BTreeSet<String> = sql::lowercase_too(assistant_refs).into_iter().collect();
        state.assistants = self
            .assistants
            .iter()
            .filter(|a| {
                a.user_id == owner
                    || refs.contains(&a.id.to_string())
                    || a.name.as_ref().is_some_and(|n| refs.contains(n))
                    || a.vapi_assistant_id
                        .as_ref()
                        .is_some_and(|v| refs.contains(v))
            })
            .cloned()
            .collect();
        state
    }

    /// Every user that has at least one `phone_numbers` row.
    pub fn users_with_rows(&self) -> impl Iterator<Item = (Uuid, usize)> + '_ {
        self.by_user
            .iter()
            .filter(|(u, _)| !u.is_nil())
            .map(|(u, rows)| (*u, rows.len()))
    }

    /// Every row, of every user.
    pub fn rows(&self) -> &[PhoneRow] {
        &self.rows
    }
}

impl Store {
    /// Reads every `phone_numbers` and `assistants` row in two statements, for a run over many
    /// owners (see [`RecordedSnapshot::for_owner`]).
    ///
    /// # Errors
    /// [`StoreError::QueryFailed`] when a statement fails.
    ///
    /// # Caveats
    /// As for [`Store::load_recorded`], the two statements do not share one snapshot; and the
    /// whole table is read, which is what a run over every owner needs anyway.
    pub async fn load_recorded_snapshot(&self) -> Result<RecordedSnapshot, StoreError> {
        const ALL_ROWS: &str = concat!(
            "SELECT id, user_id, phone_number, friendly_name, provider, vapi_phone_id, ",
            "vapi_credential_id, twilio_account_sid, twilio_auth_token, assigned_assistant_id, ",
            "notes, vapictl_token_digest, vapictl_protected FROM phone_numbers"
        );
        const ALL_ASSISTANTS: &str = "SELECT id, user_id, name, vapi_assistant_id FROM assistants";
        let (rows, assistants) = match self {
            Store::Sqlite(s) => {
                s.queries().tick();
                let rows: Vec<RawPhoneRow<Hyphenated>> =
                    sqlx::query_as(ALL_ROWS).fetch_all(s.pool()).await?;
                s.queries().tick();
                let assistants: Vec<RawAssistantRow<Hyphenated>> =
                    sqlx::query_as(ALL_ASSISTANTS).fetch_all(s.pool()).await?;
                (
                    rows.into_iter()
                        .filter_map(RawPhoneRow::into_phone_row)
                        .collect::<Vec<_>>(),
                    assistants
                        .into_iter()
                        .map(RawAssistantRow::into_assistant_row)
                        .collect::<Vec<_>>(),
                )
            }
            Store::Postgres(s) => {
                s.queries().tick();
                let rows: Vec<RawPhoneRow<Uuid>> =
                    sqlx::query_as(ALL_ROWS).fetch_all(s.pool()).await?;
                s.queries().tick();
                let assistants: Vec<RawAssistantRow<Uuid>> =
                    sqlx::query_as(ALL_ASSISTANTS).fetch_all(s.pool()).await?;
                (
                    rows.into_iter()
                        .filter_map(RawPhoneRow::into_phone_row)
                        .collect(),
                    assistants
                        .into_iter()
                        .map(RawAssistantRow::into_assistant_row)
                        .collect(),
                )
            }
        };
        Ok(RecordedSnapshot::new(rows, assistants))
    }
}
