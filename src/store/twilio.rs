//! What Twilio showed for a number after vapictl created or adopted it, kept in
//! `vapictl_twilio_urls` (migration 0006) so that `drift` can tell a number repointed in the
//! Twilio console (issue 13).

use std::collections::BTreeMap;

use uuid::Uuid;

use super::{Store, StoreError};

/// One number's Twilio URLs as recorded after its create or adopt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedTwilioUrls {
    /// E.164.
    pub phone_number: String,
    pub account_sid: String,
    pub voice_url: Option<String>,
    pub sms_url: Option<String>,
}

const UPSERT: &str = "INSERT INTO vapictl_twilio_urls (user_id, phone_number, account_sid, \
     voice_url, sms_url, recorded_at) VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (user_id, phone_number) DO UPDATE SET account_sid = excluded.account_sid, \
     voice_url = excluded.voice_url, sms_url = excluded.sms_url, recorded_at = excluded.recorded_at";

const SELECT: &str = "SELECT phone_number, account_sid, voice_url, sms_url \
     FROM vapictl_twilio_urls WHERE user_id = $1";

const DELETE: &str = "DELETE FROM vapictl_twilio_urls WHERE user_id = $1 AND phone_number = $2";

type Row = (String, String, Option<String>, Option<String>);

impl Store {
    /// Records (or replaces) what Twilio shows for the owner's number.
    ///
    /// # Errors
    /// [`StoreError::QueryFailed`].
    pub async fn record_twilio_urls(
        &self,
        owner: Uuid,
        urls: &RecordedTwilioUrls,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => {
                s.queries().tick();
                sqlx::query(UPSERT)
                    .bind(owner.hyphenated().to_string())
                    .bind(&urls.phone_number)
                    .bind(&urls.account_sid)
                    .bind(&urls.voice_url)
                    .bind(&urls.sms_url)
                    .bind(chrono::Utc::now().to_rfc3339())
                    .execute(s.pool())
                    .await?;
            }
            Store::Postgres(s) => {
                s.queries().tick();
                sqlx::query(UPSERT)
                    .bind(owner)
                    .bind(&urls.phone_number)
                    .bind(&urls.account_sid)
                    .bind(&urls.voice_url)
                    .bind(&urls.sms_url)
                    .bind(chrono::Utc::now())
                    .execute(s.pool())
                    .await?;
            }
        }
        Ok(())
    }

    /// Forgets the owner's number (it was deleted, or re-imported and recorded anew).
    ///
    /// # Errors
    /// [`StoreError::QueryFailed`].
    pub async fn forget_twilio_urls(&self, owner: Uuid, number: &str) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => {
                s.queries().tick();
                sqlx::query(DELETE)
                    .bind(owner.hyphenated().to_string())
                    .bind(number)
                    .execute(s.pool())
                    .await?;
            }
            Store::Postgres(s) => {
                s.queries().tick();
                sqlx::query(DELETE)
                    .bind(owner)
                    .bind(number)
                    .execute(s.pool())
                    .await?;
            }
        }
        Ok(())
    }

    /// Everything recorded for the owner, by number.
    ///
    /// # Errors
    /// [`StoreError::QueryFailed`].
    pub async fn twilio_urls(
        &self,
        owner: Uuid,
    ) -> Result<BTreeMap<String, RecordedTwilioUrls>, StoreError> {
        let rows: Vec<Row> = match self {
            Store::Sqlite(s) => {
                s.queries().tick();
                sqlx::query_as(SELECT)
                    .bind(owner.hyphenated().to_string())
                    .fetch_all(s.pool())
                    .await?
            }
            Store::Postgres(s) => {
                s.queries().tick();
                sqlx::query_as(SELECT)
                    .bind(owner)
                    .fetch_all(s.pool())
                    .await?
            }
        };
        Ok(rows
            .into_iter()
            .map(|(phone_number, account_sid, voice_url, sms_url)| {
                (
                    phone_number.clone(),
                    RecordedTwilioUrls {
                        phone_number,
                        account_sid,
                        voice_url,
                        sms_url,
                    },
                )
            })
            .collect())
    }
}
