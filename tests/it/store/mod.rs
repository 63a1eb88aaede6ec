//! The store's conformance suite: the tests marked `both_backends!(async: …)` run once on SQLite
//! and once on PostgreSQL, each on a fresh database (see `common::db` for the setup and when
//! PostgreSQL tests skip), one module per area of the store.

mod audit;
mod connection_errors;
mod locks;
mod migrations;
mod query_budget;
mod reads;
mod real_schemas;
mod writes;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use sqlx::Connection;
use uuid::Uuid;
use vapictl::state::RowWrite;
use vapictl::store::{
    ChangeRecord, LEADER_LEASE_OWNER, LeaderAttempt, LockHolder, Store, StoreError, StoreOptions,
};

use crate::both_backends;
use crate::common::TestDb;
use crate::common::db::with_database;

fn owner() -> Uuid {
    Uuid::new_v4()
}

fn write(number: &str) -> RowWrite {
    RowWrite {
        phone_number: number.to_owned(),
        friendly_name: format!("Line {number}"),
        vapi_phone_id: Some(format!("vapi-{number}")),
        vapi_credential_id: Some("cred-1".to_owned()),
        twilio_account_sid: "AC0000".to_owned(),
        twilio_auth_token:
            "-----BEGIN AGE ENCRYPTED FILE-----\nciphertext\n-----END AGE ENCRYPTED FILE-----"
                .to_owned(),
        api_key: Some("SK0123456789abcdef0123456789abcdef".to_owned()),
        api_secret: Some(
            "-----BEGIN AGE ENCRYPTED FILE-----\nciphertext\n-----END AGE ENCRYPTED FILE-----"
                .to_owned(),
        ),
        token_digest: Some("digest-1".to_owned()),
        assigned_assistant_id: None,
        assigned_squad_id: None,
        notes: None,
        protected: false,
        applied: None,
    }
}

fn holder(name: &str) -> LockHolder {
    LockHolder {
        host: format!("host-{name}"),
        pid: 4242,
        run_id: format!("run-{name}"),
    }
}

fn short_ttl(ttl_ms: u64) -> StoreOptions {
    StoreOptions {
        lock_ttl: Duration::from_millis(ttl_ms),
        ..StoreOptions::default()
    }
}

fn change(owner: Uuid, number: &str, action: &str, minute: u32) -> ChangeRecord {
    ChangeRecord {
        run_id: format!("run-{minute}"),
        at: Utc.with_ymd_and_hms(2025, 1, 31, 12, minute, 0).unwrap(),
        owner,
        number_masked: vapictl::state::mask_number(number),
        action: action.to_owned(),
        fields: vec!["name".to_owned()],
        before: Some(
            serde_json::json!({"name": "old"})
                .as_object()
                .unwrap()
                .clone(),
        ),
        after: Some(
            serde_json::json!({"name": "new"})
                .as_object()
                .unwrap()
                .clone(),
        ),
        vapi_phone_id: Some("vapi-1".to_owned()),
        outcome: "applied".to_owned(),
        error: None,
        ci_run_id: Some("ci-7".to_owned()),
        commit_sha: Some("abc123".to_owned()),
    }
}

/// Every column the application owns, per row, in id order: what vapictl must never alter.
async fn app_rows(db: &TestDb) -> Vec<Vec<Option<String>>> {
    db.strings(
        "SELECT CAST(id AS TEXT), CAST(user_id AS TEXT), phone_number, friendly_name, provider, \
         vapi_phone_id, vapi_credential_id, twilio_account_sid, twilio_auth_token, \
         CAST(assigned_assistant_id AS TEXT), CAST(created_at AS TEXT), CAST(updated_at AS TEXT), \
         legacy_flag FROM phone_numbers ORDER BY CAST(id AS TEXT)",
    )
    .await
}

const APP_SCHEMA_POSTGRES: &str = "
CREATE TABLE assistants (
    id uuid PRIMARY KEY,
    user_id uuid,
    name text,
    vapi_assistant_id text,
    created_at timestamptz DEFAULT now()
);
CREATE TABLE phone_numbers (
    id uuid PRIMARY KEY,
    user_id uuid,
    phone_number varchar(32) UNIQUE,
    friendly_name text,
    provider text DEFAULT 'twilio',
    vapi_phone_id text,
    vapi_credential_id text,
    twilio_account_sid text,
    twilio_auth_token text,
    assigned_assistant_id uuid REFERENCES assistants (id),
    created_at timestamp DEFAULT now(),
    updated_at timestamp DEFAULT now(),
    legacy_flag text
);";

const APP_SCHEMA_SQLITE: &str = "
CREATE TABLE assistants (
    id TEXT PRIMARY KEY,
    user_id TEXT,
    name TEXT,
    vapi_assistant_id TEXT,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE phone_numbers (
    id TEXT PRIMARY KEY,
    user_id TEXT,
    phone_number TEXT UNIQUE,
    friendly_name TEXT,
    provider TEXT DEFAULT 'twilio',
    vapi_phone_id TEXT,
    vapi_credential_id TEXT,
    twilio_account_sid TEXT,
    twilio_auth_token TEXT,
    assigned_assistant_id TEXT REFERENCES assistants (id),
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT DEFAULT CURRENT_TIMESTAMP,
    legacy_flag TEXT
);";

const ME: &str = "11111111-1111-4111-8111-111111111111";
const OTHER: &str = "22222222-2222-4222-8222-222222222222";
const MY_ASSISTANT: &str = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";
const OTHER_ASSISTANT: &str = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb";
const THIRD_ASSISTANT: &str = "cccccccc-cccc-4ccc-8ccc-cccccccccccc";

/// The application's own schema and data, as the web app would have left them.
async fn create_app_schema(db: &TestDb) {
    db.execute(db.pick(APP_SCHEMA_POSTGRES, APP_SCHEMA_SQLITE))
        .await;
    db.execute(&format!(
        "INSERT INTO assistants (id, user_id, name, vapi_assistant_id) VALUES
           ('{MY_ASSISTANT}', '{ME}', 'Receptionist', 'asst-mine'),
           ('{OTHER_ASSISTANT}', '{OTHER}', 'Their bot', 'asst-theirs'),
           ('{THIRD_ASSISTANT}', '{OTHER}', NULL, NULL);
         INSERT INTO phone_numbers (id, user_id, phone_number, friendly_name, provider,
             vapi_phone_id, twilio_account_sid, twilio_auth_token, assigned_assistant_id,
             legacy_flag, created_at, updated_at) VALUES
           ('00000000-0000-4000-8000-000000000001', '{ME}', '+15551230001', 'Main', 'twilio',
             'vapi-1', 'AC1', 'armored-1', '{MY_ASSISTANT}', 'keep-me',
             '2024-01-01 10:00:00', '2024-01-02 10:00:00'),
           ('00000000-0000-4000-8000-000000000002', '{ME}', '(555) 123-0002', NULL, NULL,
             NULL, NULL, NULL, NULL, NULL, '2024-01-01 10:00:00', '2024-01-01 10:00:00'),
           ('00000000-0000-4000-8000-000000000003', '{OTHER}', '+15551230003', 'Theirs',
             'vonage', 'vapi-3', NULL, NULL, '{OTHER_ASSISTANT}', 'x',
             '2024-01-01 10:00:00', '2024-01-01 10:00:00'),
           ('00000000-0000-4000-8000-000000000004', NULL, '+15551230004', 'Orphan', 'twilio',
             NULL, NULL, NULL, NULL, NULL, '2024-01-01 10:00:00', '2024-01-01 10:00:00');"
    ))
    .await;
}
