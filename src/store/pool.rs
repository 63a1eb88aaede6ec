//! A migrated pool on one backend, and every store operation written once over [`Backend`].
//!
//! The bodies bind ids in the app's own types (`ids.rs`), times in the column's own
//! representation ([`TimeValue`]) and lists as one [`TextList`]; what the engines spell
//! differently (the list statements, the lease clock, reading vapictl's own times and UUIDs) is
//! asked of the backend. The public contracts (`# Errors`, `# Guarantees`) are written on
//! [`Store`](super::Store), which dispatches here.
//!
//! This file is a little over 600 lines on purpose: it is the one place where every operation
//! is written, so that reading it shows the whole of what vapictl does to a database.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{ColumnIndex, Decode, Encode, Executor, FromRow, IntoArguments, Pool, Row, Type};
use uuid::Uuid;

use super::audit::{self, ChangeRecord};
use super::backend::{Backend, LeaseClock, RowValue, TextList, TimeValue};
use super::ids::{DbId, IdKind};
use super::lock::{Lease, LockHolder};
use super::schema::AppSchema;
use super::sql::{self, ASSISTANTS, Everything, RawPhoneRow, RawTargetRow, SQUADS, TargetTable};
use super::twilio::RecordedTwilioUrls;
use super::{Lookup, QueryCounter, StoreError};
use crate::state::{RecordedState, RowWrite, TargetRow, mask_number};

/// A migrated pool on one database of backend `B`, with what connecting learned about the app's
/// tables. [`SqliteStore`](super::SqliteStore) and [`PgStore`](super::PgStore) are its two forms.
///
/// Cheap to clone: clones share the pool and the query counter.
#[derive(Debug)]
pub struct BackendStore<B: sqlx::Database> {
    pool: Pool<B>,
    queries: QueryCounter,
    lock_ttl: Duration,
    /// How the app's tables take vapictl's writes, learned when connecting.
    app: Arc<AppSchema>,
}

impl<B: sqlx::Database> Clone for BackendStore<B> {
    fn clone(&self) -> Self {
        BackendStore {
            pool: self.pool.clone(),
            queries: self.queries.clone(),
            lock_ttl: self.lock_ttl,
            app: self.app.clone(),
        }
    }
}

/// A claim on a number or a Vapi id by another user's row: (number, user, Vapi id).
type ClaimRow = (Option<String>, Option<DbId>, Option<String>);

impl<B: sqlx::Database> BackendStore<B> {
    /// A store over `pool`, whose app schema connecting found to be `app`.
    pub(crate) fn new(pool: Pool<B>, lock_ttl: Duration, app: AppSchema) -> Self {
        BackendStore {
            pool,
            queries: QueryCounter::default(),
            lock_ttl,
            app: Arc::new(app),
        }
    }

    pub(crate) fn queries(&self) -> &QueryCounter {
        &self.queries
    }

    pub(crate) fn lock_ttl(&self) -> Duration {
        self.lock_ttl
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}

// The encodings each operation needs, stated once: both backends provide them (`ids.rs`,
// `backend.rs` and sqlx's own types), and the compiler checks it where `Store` dispatches.
// The bounds name crate-private types, as the methods they allow are crate-private.
#[allow(private_bounds)]
impl<B> BackendStore<B>
where
    B: Backend,
    for<'c> &'c mut B::Connection: Executor<'c, Database = B>,
    B::Arguments: IntoArguments<B>,
    for<'e> String: Encode<'e, B> + Decode<'e, B> + Type<B>,
    for<'e> Option<String>: Encode<'e, B> + Decode<'e, B> + Type<B>,
    for<'e> Option<DbId>: Encode<'e, B> + Type<B>,
    for<'e> Option<Json<Value>>: Encode<'e, B> + Decode<'e, B> + Type<B>,
    for<'e> i64: Encode<'e, B> + Decode<'e, B> + Type<B>,
    for<'e> Option<i64>: Encode<'e, B> + Type<B>,
    for<'e> bool: Encode<'e, B> + Type<B>,
    for<'e> DbId: Encode<'e, B> + Decode<'e, B> + Type<B>,
    for<'e> TimeValue: Encode<'e, B> + Type<B>,
    for<'e> RowValue: Encode<'e, B> + Type<B>,
    for<'e> TextList: Encode<'e, B> + Type<B>,
    for<'e> Json<Value>: Encode<'e, B> + Decode<'e, B> + Type<B>,
    for<'r> RawPhoneRow<DbId>: FromRow<'r, B::Row>,
    for<'r> RawTargetRow<DbId>: FromRow<'r, B::Row>,
    for<'r> ClaimRow: FromRow<'r, B::Row>,
    for<'r> (i64,): FromRow<'r, B::Row>,
    usize: ColumnIndex<B::Row>,
    for<'a> &'a str: ColumnIndex<B::Row>,
{
    /// vapictl's own tables' form of `id` (`owner`, `user_id`, `lease_token`): `uuid` in
    /// PostgreSQL, lowercase hyphenated TEXT in SQLite.
    fn own(id: Uuid) -> DbId {
        DbId::Uuid(id)
    }

    /// A time as vapictl's own tables spell it.
    fn own_time(t: chrono::DateTime<Utc>) -> TimeValue {
        TimeValue::new(B::OWN_TIME, t)
    }

    pub(crate) async fn load_recorded(
        &self,
        owner: Uuid,
        lookup: &Lookup<'_>,
    ) -> Result<RecordedState, StoreError> {
        let mut state = RecordedState::default();
        let owner_id = self.app.phone_user.bind(owner);

        self.queries.tick();
        let rows: Vec<RawPhoneRow<DbId>> = sqlx::query_as(sql::select_owner_rows())
            .bind(owner_id.clone())
            .fetch_all(&self.pool)
            .await?;
        state.rows = rows
            .into_iter()
            .filter_map(RawPhoneRow::into_phone_row)
            .map(|row| (row.phone_number.clone(), row))
            .collect();

        if !lookup.numbers.is_empty() || !lookup.vapi_ids.is_empty() || lookup.non_canonical {
            self.queries.tick();
            let claims: Vec<ClaimRow> = sqlx::query_as(B::SELECT_CLAIMS)
                .bind(TextList(lookup.numbers.to_vec()))
                .bind(owner_id)
                .bind(TextList(lookup.vapi_ids.to_vec()))
                .bind(lookup.non_canonical)
                .fetch_all(&self.pool)
                .await?;
            for (number, user, vapi_id) in claims {
                state.add_claim(number, vapi_id, user.map(Uuid::from).unwrap_or_default());
            }
        }

        let mine = |user| Some((user, owner));
        state.assistants = self
            .load_targets(
                &ASSISTANTS,
                mine(self.app.assistant_user),
                lookup.assistant_refs,
            )
            .await?;
        match &self.app.squads_unusable {
            None => {
                state.squads = self
                    .load_targets(&SQUADS, mine(self.app.squad_user), lookup.squad_refs)
                    .await?;
            }
            Some(reason) => state.squads_unusable = Some(reason.clone()),
        }
        Ok(state)
    }

    /// The rows of `table` (`assistants` or `squads`), in one statement: with `owner` (the
    /// table's `user_id` kind, the owner), the owner's and other users' whose id, name or Vapi
    /// id is one of `refs`; without, every row.
    async fn load_targets(
        &self,
        table: &TargetTable,
        owner: Option<(IdKind, Uuid)>,
        refs: &[String],
    ) -> Result<Vec<TargetRow>, StoreError> {
        self.queries.tick();
        let statement = table.select(if owner.is_some() { B::TARGETS_FOR } else { "" });
        let query = sqlx::query_as(sqlx::AssertSqlSafe(statement));
        let query = match owner {
            Some((user, owner)) => query
                .bind(user.bind(owner))
                // Ids are stored lowercase; the references are matched as written too.
                .bind(TextList(sql::lowercase_too(refs))),
            None => query,
        };
        let rows: Vec<RawTargetRow<DbId>> = query.fetch_all(&self.pool).await?;
        Ok(sql::sorted_targets(
            rows.into_iter()
                .map(RawTargetRow::into_target_row)
                .collect(),
        ))
    }

    /// Every `phone_numbers`, `assistants` and `squads` row, in three statements (two when the
    /// app's `squads` cannot be read).
    pub(crate) async fn load_everything(&self) -> Result<Everything, StoreError> {
        self.queries.tick();
        let rows = sqlx::query_as(sql::select_all_rows())
            .fetch_all(&self.pool)
            .await?;
        let squads = match &self.app.squads_unusable {
            None => Ok(self.load_targets(&SQUADS, None, &[]).await?),
            Some(reason) => Err(reason.clone()),
        };
        Ok(Everything {
            rows,
            assistants: self.load_targets(&ASSISTANTS, None, &[]).await?,
            squads,
        })
    }

    pub(crate) async fn insert_row(&self, owner: Uuid, row: &RowWrite) -> Result<Uuid, StoreError> {
        self.insert_with(&self.pool, owner, row).await
    }

    /// Tries the write, then rolls it back (see [`Store::probe_row_write`](super::Store::probe_row_write)).
    pub(crate) async fn probe_row_write(
        &self,
        owner: Uuid,
        row_id: Option<Uuid>,
        row: &RowWrite,
    ) -> Result<(), StoreError> {
        self.queries.tick();
        let mut tx = self.pool.begin().await?;
        let tried = match row_id {
            None => self.insert_with(&mut *tx, owner, row).await.map(|_| 1),
            Some(id) => self.update_with(&mut *tx, owner, id, row).await,
        };
        tx.rollback().await?;
        // An update that would match nothing fails the same way the real one would.
        match (tried?, row_id) {
            (0, Some(id)) => Err(self.why_untouched(id).await?),
            _ => Ok(()),
        }
    }

    async fn insert_with<'c, E>(
        &self,
        exec: E,
        owner: Uuid,
        row: &RowWrite,
    ) -> Result<Uuid, StoreError>
    where
        E: Executor<'c, Database = B>,
    {
        let app = &*self.app;
        let chosen = (app.phone_id != IdKind::Integer).then(Uuid::new_v4);
        let now = Utc::now();
        let mut query = sqlx::query(sql::insert_row(chosen.is_some()));
        for value in sql::inserted_values(app, owner, row, now)? {
            query = query.bind(value);
        }
        if let Some(id) = chosen {
            query = query.bind(sql::id_param(app.phone_id, id, "phone_numbers", "id")?);
        }
        self.queries.tick();
        let inserted = query
            .fetch_one(exec)
            .await
            .map_err(|e| super::error::write_error(e, &row.phone_number, app))?;
        match chosen {
            Some(id) => Ok(id),
            None => Ok(inserted.try_get::<DbId, _>(0)?.to_uuid()),
        }
    }

    pub(crate) async fn update_row(
        &self,
        owner: Uuid,
        row_id: Uuid,
        row: &RowWrite,
    ) -> Result<(), StoreError> {
        if self.update_with(&self.pool, owner, row_id, row).await? == 1 {
            Ok(())
        } else {
            Err(self.why_untouched(row_id).await?)
        }
    }

    /// The update statement; returns how many rows it matched.
    async fn update_with<'c, E>(
        &self,
        exec: E,
        owner: Uuid,
        row_id: Uuid,
        row: &RowWrite,
    ) -> Result<u64, StoreError>
    where
        E: Executor<'c, Database = B>,
    {
        let app = &*self.app;
        let Some(id) = app.phone_id.bind(row_id) else {
            return Err(StoreError::RowNotFound { row_id });
        };
        let mut query = sqlx::query(sql::update_row());
        for value in sql::updated_values(app, id, owner, row, Utc::now())? {
            query = query.bind(value);
        }
        self.queries.tick();
        let done = query
            .execute(exec)
            .await
            .map_err(|e| super::error::write_error(e, &row.phone_number, app))?;
        Ok(B::rows_affected(&done))
    }

    pub(crate) async fn delete_row(&self, owner: Uuid, row_id: Uuid) -> Result<(), StoreError> {
        let Some(id) = self.app.phone_id.bind(row_id) else {
            return Err(StoreError::RowNotFound { row_id });
        };
        self.queries.tick();
        let done = sqlx::query(sql::DELETE_ROW)
            .bind(id)
            .bind(self.app.phone_user.bind(owner))
            .execute(&self.pool)
            .await?;
        if B::rows_affected(&done) == 1 {
            Ok(())
        } else {
            Err(self.why_untouched(row_id).await?)
        }
    }

    /// After a write to `row_id` matched no row of the owner: whose fault it was.
    async fn why_untouched(&self, row_id: Uuid) -> Result<StoreError, StoreError> {
        let Some(id) = self.app.phone_id.bind(row_id) else {
            return Ok(StoreError::RowNotFound { row_id });
        };
        self.queries.tick();
        let count: i64 = sqlx::query_scalar(sql::ROW_EXISTS)
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        Ok(if count == 0 {
            StoreError::RowNotFound { row_id }
        } else {
            StoreError::RowOwnedByAnotherUser { row_id }
        })
    }

    pub(crate) async fn plan_claimed(&self, plan_id: &str) -> Result<bool, StoreError> {
        self.queries.tick();
        let n: i64 = sqlx::query_scalar(sql::PLAN_CLAIMED)
            .bind(plan_id.to_owned())
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    pub(crate) async fn claim_plan(
        &self,
        plan_id: &str,
        owner: Uuid,
        run_id: &str,
    ) -> Result<bool, StoreError> {
        self.queries.tick();
        let done = sqlx::query(sql::CLAIM_PLAN)
            .bind(plan_id.to_owned())
            .bind(Self::own(owner))
            .bind(run_id.to_owned())
            .bind(Self::own_time(Utc::now()))
            .execute(&self.pool)
            .await?;
        Ok(B::rows_affected(&done) == 1)
    }

    pub(crate) async fn record_change(&self, change: &ChangeRecord) -> Result<(), StoreError> {
        self.queries.tick();
        sqlx::query(sql::INSERT_CHANGE)
            .bind(change.run_id.clone())
            .bind(Self::own_time(change.at))
            .bind(Self::own(change.owner))
            .bind(mask_number(&change.number_masked))
            .bind(change.action.clone())
            .bind(Json(Value::from(change.fields.clone())))
            .bind(audit::object_json(&change.before).map(Json))
            .bind(audit::object_json(&change.after).map(Json))
            .bind(change.vapi_phone_id.clone())
            .bind(change.outcome.clone())
            .bind(change.error.clone())
            .bind(change.ci_run_id.clone())
            .bind(change.commit_sha.clone())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn history(
        &self,
        owner: Uuid,
        number_masked: Option<String>,
        limit: i64,
    ) -> Result<Vec<ChangeRecord>, StoreError> {
        self.queries.tick();
        let rows = sqlx::query(sql::SELECT_CHANGES)
            .bind(Self::own(owner))
            .bind(number_masked)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let fields: Json<Value> = row.try_get("fields")?;
                let before: Option<Json<Value>> = row.try_get("before")?;
                let after: Option<Json<Value>> = row.try_get("after")?;
                Ok(ChangeRecord {
                    run_id: row.try_get("run_id")?,
                    at: B::read_time(row, "vapictl_changes", "at")?,
                    owner: B::read_uuid(row, "vapictl_changes", "user_id")?,
                    number_masked: row.try_get("number_masked")?,
                    action: row.try_get("action")?,
                    fields: audit::json_fields(fields.0)?,
                    before: audit::json_object(before.map(|j| j.0), "before")?,
                    after: audit::json_object(after.map(|j| j.0), "after")?,
                    vapi_phone_id: row.try_get("vapi_phone_id")?,
                    outcome: row.try_get("outcome")?,
                    error: row.try_get("error")?,
                    ci_run_id: row.try_get("ci_run_id")?,
                    commit_sha: row.try_get("commit_sha")?,
                })
            })
            .collect()
    }

    pub(crate) async fn record_twilio_urls(
        &self,
        owner: Uuid,
        urls: &RecordedTwilioUrls,
    ) -> Result<(), StoreError> {
        self.queries.tick();
        sqlx::query(sql::UPSERT_TWILIO_URLS)
            .bind(Self::own(owner))
            .bind(urls.phone_number.clone())
            .bind(urls.account_sid.clone())
            .bind(urls.voice_url.clone())
            .bind(urls.sms_url.clone())
            .bind(Self::own_time(Utc::now()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn forget_twilio_urls(
        &self,
        owner: Uuid,
        number: &str,
    ) -> Result<(), StoreError> {
        self.queries.tick();
        sqlx::query(sql::DELETE_TWILIO_URLS)
            .bind(Self::own(owner))
            .bind(number.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn twilio_urls(
        &self,
        owner: Uuid,
    ) -> Result<BTreeMap<String, RecordedTwilioUrls>, StoreError> {
        self.queries.tick();
        let rows = sqlx::query(sql::SELECT_TWILIO_URLS)
            .bind(Self::own(owner))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let urls = RecordedTwilioUrls {
                    phone_number: row.try_get("phone_number")?,
                    account_sid: row.try_get("account_sid")?,
                    voice_url: row.try_get("voice_url")?,
                    sms_url: row.try_get("sms_url")?,
                };
                Ok((urls.phone_number.clone(), urls))
            })
            .collect()
    }

    /// Takes the owner's lease when it is free or expired, in one statement.
    pub(crate) async fn take_lease(
        &self,
        owner: Uuid,
        holder: &LockHolder,
        token: Uuid,
    ) -> Result<bool, StoreError> {
        let taken = self
            .take_leader(owner, None, holder, token, self.lock_ttl)
            .await?;
        Ok(taken.is_some())
    }

    /// Replaces the lease whose token is `stale`, whatever its expiry, in one statement.
    pub(crate) async fn take_over_lease(
        &self,
        owner: Uuid,
        stale: Uuid,
        holder: &LockHolder,
        token: Uuid,
    ) -> Result<bool, StoreError> {
        let taken = self
            .take_leader(owner, Some(stale), holder, token, self.lock_ttl)
            .await?;
        Ok(taken.is_some())
    }

    /// A statement that gives `owner`'s lease to `holder` for `ttl`, bound (the parameters of
    /// [`Backend::TAKE_LEASE`] and [`Backend::TAKE_OVER_LEASE`], `stale` for the latter).
    fn lease_taking(
        statement: &'static str,
        owner: Uuid,
        stale: Option<Uuid>,
        holder: &LockHolder,
        token: Uuid,
        ttl: Duration,
    ) -> sqlx::query::Query<'static, B, B::Arguments> {
        let mut query = sqlx::query(statement).bind(Self::own(owner));
        if let Some(stale) = stale {
            query = query.bind(Self::own(stale));
        }
        let query = query
            .bind(holder.host.clone())
            .bind(i64::from(holder.pid))
            .bind(holder.run_id.clone())
            .bind(Self::own(token))
            .bind(holder.pid_namespace().map(str::to_owned));
        B::bind_lease_clock(query, ttl, LeaseClock::Take)
    }

    /// Takes the lease `owner` (an owner's, or the leader lease) for `ttl` when it is free or
    /// expired (`stale` None), or replaces the lease whose token is `stale`; raises the row's
    /// epoch either way, in one statement. The new epoch, or None when the lease was not taken.
    pub(crate) async fn take_leader(
        &self,
        owner: Uuid,
        stale: Option<Uuid>,
        holder: &LockHolder,
        token: Uuid,
        ttl: Duration,
    ) -> Result<Option<i64>, StoreError> {
        let statement = match stale {
            None => B::TAKE_LEASE,
            Some(_) => B::TAKE_OVER_LEASE,
        };
        let query = Self::lease_taking(statement, owner, stale, holder, token, ttl);
        self.queries.tick();
        let row = query.fetch_optional(&self.pool).await?;
        Ok(match row {
            Some(row) => Some(row.try_get::<i64, _>(0)?),
            None => None,
        })
    }

    /// Extends the leader lease by `ttl` if the row still carries `token` and `epoch`; whether
    /// it did.
    pub(crate) async fn renew_leader(
        &self,
        owner: Uuid,
        token: Uuid,
        epoch: i64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.renew(owner, token, Some(epoch), ttl).await
    }

    /// Extends `owner`'s lease by `ttl` if the row still carries `token` (and `epoch`, when
    /// given); whether it did.
    async fn renew(
        &self,
        owner: Uuid,
        token: Uuid,
        epoch: Option<i64>,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let query = sqlx::query(B::RENEW_LEASE)
            .bind(Self::own(owner))
            .bind(Self::own(token))
            .bind(epoch);
        self.queries.tick();
        let done = B::bind_lease_clock(query, ttl, LeaseClock::Renew)
            .execute(&self.pool)
            .await?;
        Ok(B::rows_affected(&done) == 1)
    }

    /// Expires the leader lease now, keeping the row and its epoch, if the row still carries
    /// `token` and `epoch`; whether it did.
    pub(crate) async fn expire_leader(
        &self,
        owner: Uuid,
        token: Uuid,
        epoch: i64,
    ) -> Result<bool, StoreError> {
        self.queries.tick();
        let done = sqlx::query(sql::EXPIRE_LEADER)
            .bind(Self::own(owner))
            .bind(Self::own(token))
            .bind(epoch)
            .execute(&self.pool)
            .await?;
        Ok(B::rows_affected(&done) == 1)
    }

    /// Whether the leader row carries `token` and `epoch` and has not expired.
    pub(crate) async fn leader_is_live(
        &self,
        owner: Uuid,
        token: Uuid,
        epoch: i64,
    ) -> Result<bool, StoreError> {
        let query = sqlx::query(B::LEADER_IS_LIVE)
            .bind(Self::own(owner))
            .bind(Self::own(token))
            .bind(epoch);
        self.queries.tick();
        let row = B::bind_lease_clock(query, Duration::ZERO, LeaseClock::Now)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)? == 1)
    }

    pub(crate) async fn read_lease(&self, owner: Uuid) -> Result<Option<Lease>, StoreError> {
        self.queries.tick();
        let Some(row) = sqlx::query(sql::SELECT_LEASE)
            .bind(Self::own(owner))
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(Lease {
            host: row.try_get("holder_host")?,
            pid: row.try_get("holder_pid")?,
            run_id: row.try_get("run_id")?,
            acquired_at: B::read_time(&row, "vapictl_locks", "acquired_at")?,
            expires_at: B::read_time(&row, "vapictl_locks", "expires_at")?,
            token: B::read_uuid(&row, "vapictl_locks", "lease_token")?,
            pid_namespace: row.try_get("holder_pid_namespace")?,
        }))
    }

    pub(crate) async fn renew_lease(&self, owner: Uuid, token: Uuid) -> Result<bool, StoreError> {
        self.renew(owner, token, None, self.lock_ttl).await
    }

    pub(crate) async fn drop_lease(&self, owner: Uuid, token: Uuid) -> Result<bool, StoreError> {
        self.queries.tick();
        let done = sqlx::query(sql::DELETE_LEASE)
            .bind(Self::own(owner))
            .bind(Self::own(token))
            .execute(&self.pool)
            .await?;
        Ok(B::rows_affected(&done) == 1)
    }
}
