//! The database: the application's `phone_numbers` and `assistants` tables, SQLite or PostgreSQL.
//!
//! [`Store::connect`] picks the backend from the URL (`postgres://` or `postgresql://` →
//! PostgreSQL; `sqlite://path` or `sqlite::memory:` → SQLite, the file created when missing),
//! migrates, and returns one [`Store`] whose methods behave the same on both. A single conformance
//! suite (`tests/it/store/`) holds both backends to that.
//!
//! # The app's schema, learned before anything changes
//! The application may have created `phone_numbers` and `assistants` long before vapictl, in its
//! own way. Every connect first reads them as they are (`pragma_table_xinfo` and `sqlite_master`
//! / `pg_attribute`, `pg_constraint`; no DDL, no write) together with vapictl's migration
//! bookkeeping, and decides (`schema::decide`, pure) how to write to them:
//!
//! - **Ids.** `phone_numbers.id` may be a UUID (PostgreSQL `uuid`, or text holding one), which
//!   vapictl chooses, or an integer the database assigns (SQLite `INTEGER PRIMARY KEY`,
//!   PostgreSQL identity, `serial` or any default), which vapictl reads back (`RETURNING id`).
//!   Integer ids travel through the rest of vapictl as UUIDs with zero high bits (see `ids`).
//!   `assistants.id` likewise; `assigned_assistant_id` must be of the same family. `user_id`
//!   must be a UUID (`uuid` or text): the spec's owner is one.
//! - **Timestamps** are written in the column's own representation: `timestamptz`/`timestamp`/
//!   `date` natively (PostgreSQL converts through the session's time zone, as the app's own
//!   `now()` does); integer (and numeric/real) columns as epoch seconds, or milliseconds when the
//!   newest existing value says so; text as the newest existing value or a
//!   `CURRENT_TIMESTAMP` default suggests (`YYYY-MM-DD HH:MM:SS`), else fixed-width RFC 3339.
//! - **Refusals**, all named at once and before any change (to the database or in Vapi) with
//!   [`StoreError::AppSchemaUnsupported`]: a column vapictl does not write that is `NOT NULL`
//!   without a default; a column vapictl may leave NULL (`notes`, `assigned_assistant_id`, …)
//!   that is `NOT NULL`; an integer id nobody assigns; an id or `user_id` of another type; a
//!   generated column vapictl would write. A table lacking a column vapictl needs but may not
//!   add is [`StoreError::AppSchemaMismatch`].
//! - `CHECK` constraints cannot be predicted: they are read (to quote their definition when a
//!   write fails) and the applier tries each row write, rolled back, before changing Vapi
//!   ([`Store::probe_row_write`]).
//!
//! PostgreSQL resolves the app's tables through the session's `search_path`, as every
//! unqualified statement does; a table of that name found only in another schema is never
//! shadowed by a new empty one ([`StoreError::AppTablesElsewhere`] names where it looked and how
//! to set `search_path` in the URL: `?options=-c%20search_path%3Dapp`).
//!
//! # Migrations
//! Only when something is missing, and only once the schema is known to be usable: the missing
//! app tables are created (with indexes on `user_id`; an existing table gets no index), only the
//! missing ones among `notes`, `vapictl_token_digest`, `vapictl_protected` and `vapictl_applied`
//! are added — each nullable or with a constant default, so no row is rewritten, and an
//! up-to-date table is not even locked — and vapictl's own tables (`vapictl_locks`, `vapictl_changes`,
//! `vapictl_applied_plans`, `vapictl_twilio_urls`) come from sqlx migrations, one set per backend
//! (`migrations/sqlite`, `migrations/postgres` beside this module, embedded at build time),
//! recorded in `vapictl_schema_migrations` so they cannot collide with an application that uses
//! sqlx's default `_sqlx_migrations`. All of it runs in one transaction, re-checked inside one mutual
//! exclusion (PostgreSQL: a session advisory lock; SQLite: `BEGIN IMMEDIATE`), so concurrent
//! first runs queue instead of failing and a refusal or failure leaves the schema as it was.
//! Nothing is ever renamed, dropped or rewritten.
//!
//! A database with nothing missing is only read, so vapictl runs with SELECT, INSERT, UPDATE and
//! DELETE alone (a read-only SQLite file can be planned against). A role that may not create
//! what is missing gets [`StoreError::InsufficientPrivilege`] with the exact statements the
//! database owner must run (DDL, bookkeeping rows, grants).
//!
//! # Errors keep their cause
//! A refused statement keeps what the database said ([`DbCause`]: message, SQLSTATE or SQLite
//! code, constraint, table, column), without PostgreSQL's DETAIL (which quotes the row) or its
//! source line; a refused row write is [`StoreError::RowRejected`] with what to do.
//!
//! # Types
//! vapictl's own tables store ids as `uuid` and times as `timestamptz` in PostgreSQL, and in
//! SQLite ids as lowercase hyphenated TEXT (never sqlx's default 16-byte BLOB) and times as
//! RFC 3339 UTC TEXT of fixed width, so text order is time order. An application that spells
//! SQLite `user_id`s otherwise (uppercase, BLOB) will not have its rows matched. A SQLite file is
//! switched to WAL journaling, which persists in the file and lets the application read while
//! vapictl writes.
//!
//! # Caveats
//! PostgreSQL behind a transaction-pooling proxy (PgBouncer's `transaction` mode) breaks the
//! session advisory lock that serializes migrations: point vapictl at the server or a
//! session-pooled port.
//!
//! # Messy application data
//! Rows load whatever their NULLs: a NULL `provider` reads as `""`, a NULL `user_id` as the nil
//! UUID (nobody's, hence never the owner's), a row without `phone_number` is skipped. Numbers are
//! plain strings; nothing here requires E.164.
//!
//! # Locking
//! See [`OwnerLock`]: a lease row per owner, taken by one atomic insert-or-take-over-if-expired
//! statement, renewed by a heartbeat; a lease whose holder ran on this host and pid namespace
//! and is gone is taken over at once, by a compare-and-swap on its token. It works the same
//! across processes on SQLite and across hosts on PostgreSQL (where the server's clock decides
//! expiry).
//!
//! # Query budget
//! Reads cost a constant number of statements whatever the number of rows ([`Store::load_recorded`]:
//! at most three; [`Store::load_recorded_snapshot`], every owner's at once: two), and
//! [`Store::queries_issued`] counts every statement issued after connecting,
//! for benchmarks.
//!
//! # Where things are
//! Each operation is written once (`pool.rs`, generic over the `Backend` trait of `backend.rs`,
//! which names what the two engines spell differently: vapictl's own times and UUIDs, list
//! parameters, the lease clock). `sqlite.rs` and `postgres.rs` hold only what truly differs:
//! connecting, reading the catalog, adopting the schema and classifying the engine's errors.
//! `sql.rs` lists a `phone_numbers` row's columns once (`PHONE_COLUMNS`): the statements, the
//! `CREATE TABLE`, the columns vapictl adds and the schema's expectations all follow from it;
//! a new column is one entry there plus its field in `RawPhoneRow`. `schema/` decides, purely,
//! how to write to the tables as found; `ids.rs` spells ids in the app's types; `lock.rs`,
//! `audit.rs`, `snapshot.rs` and `twilio.rs` are the leases (the owners' locks and `serve`'s
//! leader lease, whose statements are the backend's like the others'), the audit trail, the
//! fleet read and the record of Twilio's URLs (`vapictl_twilio_urls`, for `drift`).

mod audit;
mod backend;
mod error;
pub(crate) mod ids;
mod leader;
mod lock;
mod pool;
mod postgres;
mod schema;
mod snapshot;
mod sql;
mod sqlite;
mod twilio;
mod url;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use uuid::Uuid;

pub use audit::ChangeRecord;
pub use error::{DbCause, SchemaProblem, StoreError};
pub use leader::{LEADER_LEASE_OWNER, LeaderAttempt, LeaderLease};
pub use lock::{LOCK_PROGRESS_EVERY, LeaseHolder, LockHolder, LockWait, LockWaitEvent, OwnerLock};
pub use pool::BackendStore;
pub use postgres::PgStore;
pub use snapshot::RecordedSnapshot;
pub use sqlite::SqliteStore;
pub use twilio::RecordedTwilioUrls;
pub use url::redact_url;

use crate::state::{RecordedState, RowWrite, mask_number};

/// What [`Store::load_recorded_for`] looks up besides the owner's own rows and assistants.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lookup<'a> {
    /// Numbers (as written, usually E.164) whose rows of other users are claims.
    pub numbers: &'a [String],
    /// Vapi ids whose rows of other users are claims.
    pub vapi_ids: &'a [String],
    /// Assistant references (`id`, `name` or `vapi_assistant_id`) of other users to load.
    pub assistant_refs: &'a [String],
    /// Squad references (`id`, `name` or `vapi_squad_id`) of other users to load.
    pub squad_refs: &'a [String],
    /// Also load every row of another user whose number is not written in E.164.
    pub non_canonical: bool,
}

/// How to connect. [`Default`] suits the CLI.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Pool size. vapictl runs a handful of statements at a time; keep it small so as not to
    /// crowd the application's connection limit.
    pub max_connections: u32,
    /// Bound on establishing a connection (and on waiting for a pooled one).
    pub connect_timeout: Duration,
    /// PostgreSQL `statement_timeout`: no statement runs longer.
    pub statement_timeout: Duration,
    /// SQLite `busy_timeout`: how long a write waits for another connection's write lock.
    pub busy_timeout: Duration,
    /// How long a lock outlives its holder's last heartbeat.
    pub lock_ttl: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 4,
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
            busy_timeout: Duration::from_secs(5),
            lock_ttl: Duration::from_secs(30),
        }
    }
}

/// A migrated connection pool on the application's database.
///
/// Cheap to clone: clones share the pool and the query counter.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Runs `$body` with `$s` bound to whichever backend `$self` is.
macro_rules! dispatch {
    ($self:expr, $s:ident => $body:expr) => {
        match $self {
            Store::Sqlite($s) => $body,
            Store::Postgres($s) => $body,
        }
    };
}

impl Store {
    /// Connects to the database at `url` and brings its schema up to date (see the module docs).
    ///
    /// # Errors
    /// [`StoreError::UnsupportedUrl`] for another scheme; otherwise a variant naming the failure
    /// (unreachable, timed out, bad credentials, missing database, unopenable or read-only file,
    /// failed migration, missing privilege, app tables in another schema, an application table
    /// vapictl cannot write to). No error repeats the URL's password.
    ///
    /// # Guarantees
    /// Application rows are never changed by connecting; at most, missing tables and columns
    /// are added, and only after the whole schema was found usable, in one transaction. A
    /// database with nothing missing is only read. Several processes may connect for the first
    /// time at once.
    pub async fn connect(url: &str, opts: &StoreOptions) -> Result<Store, StoreError> {
        let scheme = url.split_once(':').map(|(scheme, _)| scheme);
        match scheme {
            Some("postgres" | "postgresql") => {
                Ok(Store::Postgres(PgStore::connect(url, opts).await?))
            }
            Some("sqlite") => Ok(Store::Sqlite(SqliteStore::connect(url, opts).await?)),
            _ => Err(StoreError::UnsupportedUrl {
                url: redact_url(url),
            }),
        }
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Statements issued through this store (and its clones) since it connected, migrations not
    /// included.
    pub fn queries_issued(&self) -> u64 {
        dispatch!(self, s => s.queries().get())
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }

    /// Reads what the database records for `owner`, in at most four statements whatever the
    /// number of rows: all of the owner's `phone_numbers` rows (`rows`), which other users' rows
    /// hold any of `numbers` (`foreign`), the owner's assistants plus those of other users
    /// whose id, name or `vapi_assistant_id` is in `assistant_refs` (so that a spec naming
    /// someone else's assistant can be refused by name), and the owner's squads.
    ///
    /// # Errors
    /// [`StoreError::QueryFailed`] when a statement fails.
    ///
    /// # Caveats
    /// The statements do not share one snapshot: a write landing between them may show in one
    /// part and not another. vapictl's own writes cannot (they take the owner's lock first); the
    /// application's can, and the next plan sees them.
    pub async fn load_recorded(
        &self,
        owner: Uuid,
        numbers: &[String],
        assistant_refs: &[String],
    ) -> Result<RecordedState, StoreError> {
        let lookup = Lookup {
            numbers,
            assistant_refs,
            ..Lookup::default()
        };
        self.load_recorded_for(owner, &lookup).await
    }

    /// [`load_recorded`](Store::load_recorded) for a plan: besides the exact `numbers`, the claims
    /// of other users (`foreign`, `foreign_vapi_ids`) include every row of another user whose
    /// `vapi_phone_id` is one of `lookup.vapi_ids`, and, with `lookup.non_canonical`, every row of
    /// another user whose `phone_number` is not written in E.164 (`4155557002`,
    /// `+1 415-555-7002`): the diff canonicalizes those itself; squads of other users named in
    /// `lookup.squad_refs` as for assistants. Still at most four statements.
    ///
    /// # Errors
    /// [`StoreError::QueryFailed`] when a statement fails.
    ///
    /// # Caveats
    /// As for [`load_recorded`](Store::load_recorded). Non-canonical rows of other users are
    /// read whatever their number: an application that stores every number in a national form
    /// makes this read grow with the table (it stays one statement).
    pub async fn load_recorded_for(
        &self,
        owner: Uuid,
        lookup: &Lookup<'_>,
    ) -> Result<RecordedState, StoreError> {
        dispatch!(self, s => s.load_recorded(owner, lookup).await)
    }

    /// Inserts a row for `owner` with a new id, `provider` `twilio`, and both timestamps now.
    ///
    /// # Errors
    /// [`StoreError::NumberAlreadyRecorded`] when a row (anyone's) already holds the number.
    ///
    /// # Guarantees
    /// One statement: the row exists completely or not at all.
    pub async fn insert_row(&self, owner: Uuid, row: &RowWrite) -> Result<Uuid, StoreError> {
        dispatch!(self, s => s.insert_row(owner, row).await)
    }

    /// Tries the row write that will follow a change in Vapi — an insert when `row_id` is `None`,
    /// else an update of that row — and rolls it back, so that a row the app's schema rejects
    /// (a `CHECK`, a column too narrow, a trigger) is refused before Vapi is touched.
    ///
    /// # Errors
    /// As [`insert_row`](Store::insert_row) and [`update_row`](Store::update_row), chiefly
    /// [`StoreError::RowRejected`] naming the constraint and column.
    ///
    /// # Guarantees
    /// Nothing is kept: the statement runs in a transaction that is rolled back.
    ///
    /// # Caveats
    /// Values only Vapi can give (a new number's id) are placeholders here, so a constraint on
    /// them is not predicted. An integer id's sequence may advance. The real write can still
    /// fail if the database changes in between.
    pub async fn probe_row_write(
        &self,
        owner: Uuid,
        row_id: Option<Uuid>,
        row: &RowWrite,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.probe_row_write(owner, row_id, row).await)
    }

    /// Overwrites the vapictl-managed columns of the owner's row `row_id` and bumps `updated_at`.
    ///
    /// # Errors
    /// [`StoreError::RowNotFound`] when no row has that id; [`StoreError::RowOwnedByAnotherUser`]
    /// when it is not the owner's; [`StoreError::NumberAlreadyRecorded`] when the new number is
    /// another row's.
    ///
    /// # Guarantees
    /// One statement that matches only `id = row_id AND user_id = owner`: another user's row is
    /// never changed. `provider`, `user_id` and `created_at` are never touched.
    pub async fn update_row(
        &self,
        owner: Uuid,
        row_id: Uuid,
        row: &RowWrite,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.update_row(owner, row_id, row).await)
    }

    /// Deletes the owner's row `row_id`.
    ///
    /// # Errors
    /// [`StoreError::RowNotFound`] or [`StoreError::RowOwnedByAnotherUser`], as for
    /// [`update_row`](Store::update_row).
    ///
    /// # Guarantees
    /// One statement that matches only the owner's row.
    pub async fn delete_row(&self, owner: Uuid, row_id: Uuid) -> Result<(), StoreError> {
        dispatch!(self, s => s.delete_row(owner, row_id).await)
    }

    /// Takes the lock on `owner`, waiting up to `timeout` for another holder to release it or for
    /// its lease to expire. Locks on different owners never wait for each other.
    ///
    /// # Errors
    /// [`StoreError::LockHeld`], naming the holder, when `timeout` passes first.
    ///
    /// # Guarantees
    /// See [`OwnerLock`]. A zero `timeout` makes exactly one attempt.
    pub async fn acquire_lock(
        &self,
        owner: Uuid,
        holder: &LockHolder,
        timeout: Duration,
    ) -> Result<OwnerLock, StoreError> {
        lock::acquire(self, owner, holder, LockWait::new(timeout)).await
    }

    /// Takes the lock on `owner` as [`acquire_lock`](Store::acquire_lock) does, reporting the
    /// wait through `wait`'s observer ([`LockWaitEvent`]: who holds it, at once; how long it has
    /// waited, every few seconds) and giving up when `wait`'s interruption completes.
    ///
    /// # Errors
    /// [`StoreError::LockHeld`], naming the holder, when the timeout passes first;
    /// [`StoreError::LockWaitInterrupted`] when interrupted first (the lease is not left taken).
    ///
    /// # Guarantees
    /// See [`OwnerLock`], including when a dead holder's lease is taken over before it expires.
    pub async fn acquire_lock_with(
        &self,
        owner: Uuid,
        holder: &LockHolder,
        wait: LockWait<'_>,
    ) -> Result<OwnerLock, StoreError> {
        lock::acquire(self, owner, holder, wait).await
    }

    /// Appends `change` to the audit trail.
    ///
    /// Callers pass non-secret fields only (see [`ChangeRecord`]).
    ///
    /// # Errors
    /// [`StoreError::QueryFailed`] when the row cannot be written.
    ///
    /// # Guarantees
    /// The number is stored masked, even if the caller passed it whole.
    pub async fn record_change(&self, change: &ChangeRecord) -> Result<(), StoreError> {
        dispatch!(self, s => s.record_change(change).await)
    }

    /// Whether the saved plan `plan_id` was applied before.
    ///
    /// # Errors
    /// [`StoreError::QueryFailed`].
    pub async fn plan_claimed(&self, plan_id: &str) -> Result<bool, StoreError> {
        dispatch!(self, s => s.plan_claimed(plan_id).await)
    }

    /// Marks the saved plan `plan_id` as applied by `run_id`.
    ///
    /// # Guarantees
    /// Atomic: of several runs claiming one plan, exactly one gets `true`.
    ///
    /// # Errors
    /// [`StoreError::QueryFailed`].
    pub async fn claim_plan(
        &self,
        plan_id: &str,
        owner: Uuid,
        run_id: &str,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.claim_plan(plan_id, owner, run_id).await)
    }

    /// The owner's most recent changes, newest first, at most `limit` of them; only those of
    /// `number` when given (compared by its masked form: the trail keeps nothing else, so two
    /// numbers with the same last four digits share a history).
    ///
    /// # Errors
    /// [`StoreError::QueryFailed`], or [`StoreError::UnreadableValue`] for a corrupt record.
    pub async fn history(
        &self,
        owner: Uuid,
        number: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ChangeRecord>, StoreError> {
        let masked = number.map(mask_number);
        dispatch!(self, s => s.history(owner, masked, i64::from(limit)).await)
    }

    /// Records (or replaces) what Twilio shows for the owner's number.
    ///
    /// # Errors
    /// [`StoreError::QueryFailed`].
    pub async fn record_twilio_urls(
        &self,
        owner: Uuid,
        urls: &RecordedTwilioUrls,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.record_twilio_urls(owner, urls).await)
    }

    /// Forgets the owner's number (it was deleted, or re-imported and recorded anew).
    ///
    /// # Errors
    /// [`StoreError::QueryFailed`].
    pub async fn forget_twilio_urls(&self, owner: Uuid, number: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.forget_twilio_urls(owner, number).await)
    }

    /// Everything recorded for the owner, by number.
    ///
    /// # Errors
    /// [`StoreError::QueryFailed`].
    pub async fn twilio_urls(
        &self,
        owner: Uuid,
    ) -> Result<BTreeMap<String, RecordedTwilioUrls>, StoreError> {
        dispatch!(self, s => s.twilio_urls(owner).await)
    }

    pub(crate) fn lock_ttl(&self) -> Duration {
        dispatch!(self, s => s.lock_ttl())
    }

    /// Every `phone_numbers`, `assistants` and `squads` row as stored, in three statements.
    pub(crate) async fn load_everything(&self) -> Result<sql::Everything, StoreError> {
        dispatch!(self, s => s.load_everything().await)
    }

    pub(crate) async fn take_lease(
        &self,
        owner: Uuid,
        holder: &LockHolder,
        token: Uuid,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.take_lease(owner, holder, token).await)
    }

    /// Replaces the lease whose token is `stale` (a dead holder's) with `holder`'s, in one
    /// statement; false when the lease changed in between.
    pub(crate) async fn take_over_lease(
        &self,
        owner: Uuid,
        stale: Uuid,
        holder: &LockHolder,
        token: Uuid,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.take_over_lease(owner, stale, holder, token).await)
    }

    pub(crate) async fn read_lease(&self, owner: Uuid) -> Result<Option<lock::Lease>, StoreError> {
        dispatch!(self, s => s.read_lease(owner).await)
    }

    pub(crate) async fn renew_lease(&self, owner: Uuid, token: Uuid) -> Result<bool, StoreError> {
        dispatch!(self, s => s.renew_lease(owner, token).await)
    }

    pub(crate) async fn drop_lease(&self, owner: Uuid, token: Uuid) -> Result<bool, StoreError> {
        dispatch!(self, s => s.drop_lease(owner, token).await)
    }

    /// Takes the leader lease (see [`LeaderLease`]): when free or expired (`stale` None), or from
    /// the dead holder whose token is `stale`; the new epoch, or None when not taken.
    pub(crate) async fn take_leader(
        &self,
        stale: Option<Uuid>,
        holder: &LockHolder,
        token: Uuid,
        ttl: Duration,
    ) -> Result<Option<i64>, StoreError> {
        dispatch!(self, s => s.take_leader(LEADER_LEASE_OWNER, stale, holder, token, ttl).await)
    }

    /// Extends the leader lease if it still carries `token` and `epoch`; whether it did.
    pub(crate) async fn renew_leader(
        &self,
        token: Uuid,
        epoch: i64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.renew_leader(LEADER_LEASE_OWNER, token, epoch, ttl).await)
    }

    /// Expires the leader lease (keeping its epoch) if it still carries `token` and `epoch`.
    pub(crate) async fn expire_leader(&self, token: Uuid, epoch: i64) -> Result<bool, StoreError> {
        dispatch!(self, s => s.expire_leader(LEADER_LEASE_OWNER, token, epoch).await)
    }

    /// Whether the leader lease carries `token` and `epoch` and has not expired.
    pub(crate) async fn leader_is_live(&self, token: Uuid, epoch: i64) -> Result<bool, StoreError> {
        dispatch!(self, s => s.leader_is_live(LEADER_LEASE_OWNER, token, epoch).await)
    }
}

/// Counts statements for [`Store::queries_issued`]; shared by a store's clones.
#[derive(Debug, Clone, Default)]
pub(crate) struct QueryCounter(Arc<AtomicU64>);

impl QueryCounter {
    pub(crate) fn tick(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
