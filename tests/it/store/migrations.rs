//! Migrations: vapictl's own tables, and the app's tables created or completed.

use super::*;

both_backends!(async:
    a_saved_plan_is_claimed_once,
    fresh_database_is_migrated_and_round_trips_every_column,
    connecting_twice_migrates_once,
    concurrent_first_connects_all_succeed,
    existing_app_schema_gains_only_missing_columns_and_keeps_its_rows,
    app_table_without_a_needed_column_is_refused_by_name,
);

async fn fresh_database_is_migrated_and_round_trips_every_column(db: &TestDb) {
    let store = db.connect().await;
    let me = owner();
    let assistant = Uuid::new_v4();
    db.execute(&format!(
        "INSERT INTO assistants (id, user_id, name, vapi_assistant_id) \
         VALUES ('{assistant}', '{me}', 'Receptionist', 'asst-1')"
    ))
    .await;

    // The squads table comes from the migrations (issue 12) and a number's squad is recorded
    // in vapictl's own column.
    let squad = Uuid::new_v4();
    db.execute(&format!(
        "INSERT INTO squads (id, user_id, name, vapi_squad_id) \
         VALUES ('{squad}', '{me}', 'Front desk', 'squad-1')"
    ))
    .await;

    let mut row = write("+15551230001");
    row.assigned_assistant_id = Some(assistant);
    row.assigned_squad_id = Some(squad);
    row.notes = Some("front desk".to_owned());
    row.protected = true;
    let id = store.insert_row(me, &row).await.unwrap();

    let state = store
        .load_recorded(me, &["+15551230001".to_owned()], &[])
        .await
        .unwrap();
    let got = &state.rows["+15551230001"];
    assert_eq!(got.id, id);
    assert_eq!(got.user_id, me);
    assert_eq!(got.friendly_name.as_deref(), Some("Line +15551230001"));
    assert_eq!(got.provider, "twilio");
    assert_eq!(got.vapi_phone_id.as_deref(), Some("vapi-+15551230001"));
    assert_eq!(got.vapi_credential_id.as_deref(), Some("cred-1"));
    assert_eq!(got.twilio_account_sid.as_deref(), Some("AC0000"));
    assert_eq!(
        got.twilio_auth_token.as_deref(),
        Some(row.twilio_auth_token.as_str())
    );
    assert_eq!(
        got.api_key.as_deref(),
        row.api_key.as_deref(),
        "the API key SID round-trips in `vapictl_twilio_api_key`"
    );
    assert_eq!(got.token_digest.as_deref(), Some("digest-1"));
    assert_eq!(got.assigned_assistant_id, Some(assistant));
    assert_eq!(got.assigned_squad_id, Some(squad));
    assert_eq!(got.notes.as_deref(), Some("front desk"));
    assert!(got.protected);
    assert!(state.foreign.is_empty());
    assert_eq!(state.assistants.len(), 1);
    assert_eq!(state.assistants[0].name.as_deref(), Some("Receptionist"));

    // Ids are stored as lowercase hyphenated text in SQLite (never a BLOB), `uuid` in PostgreSQL.
    let stored_id = db
        .string("SELECT CAST(id AS TEXT) FROM phone_numbers")
        .await
        .unwrap();
    assert_eq!(stored_id, id.hyphenated().to_string());
}

async fn a_saved_plan_is_claimed_once(db: &TestDb) {
    let store = db.connect().await;
    assert!(!store.plan_claimed("p1").await.unwrap());
    let claims = (0..4).map(|i| {
        let store = store.clone();
        async move { store.claim_plan("p1", owner(), &format!("run{i}")).await }
    });
    let won: Vec<bool> = futures_join_all(claims)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(
        won.iter().filter(|w| **w).count(),
        1,
        "exactly one run claims it"
    );
    assert!(store.plan_claimed("p1").await.unwrap());
    assert!(!store.plan_claimed("p2").await.unwrap());
}

async fn connecting_twice_migrates_once(db: &TestDb) {
    let first = db.connect().await;
    let me = owner();
    first.insert_row(me, &write("+15551230001")).await.unwrap();
    first.close().await;

    let second = db.connect().await;
    let state = second.load_recorded(me, &[], &[]).await.unwrap();
    assert_eq!(state.rows.len(), 1);
    let applied = db
        .string("SELECT CAST(COUNT(*) AS TEXT) FROM vapictl_schema_migrations")
        .await;
    assert_eq!(applied.as_deref(), Some(MIGRATIONS.as_str()));
    // The application's default migrations table is left alone.
    let sqlx_default = db
        .string(db.pick(
            "SELECT CAST(COUNT(*) AS TEXT) FROM pg_tables WHERE tablename = '_sqlx_migrations'",
            "SELECT CAST(COUNT(*) AS TEXT) FROM sqlite_master WHERE name = '_sqlx_migrations'",
        ))
        .await;
    assert_eq!(sqlx_default.as_deref(), Some("0"));
}

/// How many migrations vapictl ships (each backend has the same number).
static MIGRATIONS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/store/migrations/sqlite"
    ))
    .unwrap()
    .count()
    .to_string()
});

async fn concurrent_first_connects_all_succeed(db: &TestDb) {
    let connects = (0..4).map(|_| {
        let url = db.url.clone();
        async move { Store::connect(&url, &StoreOptions::default()).await }
    });
    for result in futures_join_all(connects).await {
        result.unwrap_or_else(|e| panic!("a concurrent first connect failed: {e}"));
    }
    let applied = db
        .string("SELECT CAST(COUNT(*) AS TEXT) FROM vapictl_schema_migrations")
        .await;
    assert_eq!(applied.as_deref(), Some(MIGRATIONS.as_str()));
}

/// Awaits all futures concurrently (as separate tasks, so they truly overlap).
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("task panicked"));
    }
    out
}

async fn existing_app_schema_gains_only_missing_columns_and_keeps_its_rows(db: &TestDb) {
    create_app_schema(db).await;
    let before = app_rows(db).await;

    let store = db.connect().await;
    let _again = db.connect().await;

    assert_eq!(app_rows(db).await, before, "connecting changed app data");
    let added = db
        .strings(
            "SELECT CAST(notes AS TEXT), vapictl_token_digest, CAST(vapictl_protected AS TEXT) \
             FROM phone_numbers",
        )
        .await;
    assert_eq!(added.len(), 4);
    for row in added {
        assert_eq!(row[0], None);
        assert_eq!(row[1], None);
        assert!(matches!(row[2].as_deref(), Some("false" | "0")), "{row:?}");
    }
    // An existing table gets no index from vapictl.
    let indexes = db
        .string(db.pick(
            "SELECT CAST(COUNT(*) AS TEXT) FROM pg_indexes \
             WHERE tablename = 'phone_numbers' AND indexname = 'phone_numbers_user_id'",
            "SELECT CAST(COUNT(*) AS TEXT) FROM sqlite_master \
             WHERE type = 'index' AND name = 'phone_numbers_user_id'",
        ))
        .await;
    assert_eq!(indexes.as_deref(), Some("0"));

    // Messy rows load: a NULL provider and name, a number that is not E.164.
    let me = Uuid::from_str(ME).unwrap();
    let state = store.load_recorded(me, &[], &[]).await.unwrap();
    assert_eq!(state.rows.len(), 2);
    let messy = &state.rows["(555) 123-0002"];
    assert_eq!(messy.provider, "");
    assert_eq!(messy.friendly_name, None);
    assert!(!messy.protected);
    assert_eq!(
        state.rows["+15551230001"].assigned_assistant_id,
        Some(Uuid::from_str(MY_ASSISTANT).unwrap())
    );

    // vapictl's writes work on the app's table (its `timestamp` columns included).
    let id = store.insert_row(me, &write("+15551230009")).await.unwrap();
    store
        .update_row(me, id, &write("+15551230009"))
        .await
        .unwrap();
}

async fn app_table_without_a_needed_column_is_refused_by_name(db: &TestDb) {
    db.execute(
        "CREATE TABLE phone_numbers (id TEXT PRIMARY KEY, user_id TEXT, phone_number TEXT, \
         friendly_name TEXT, provider TEXT, vapi_phone_id TEXT, twilio_account_sid TEXT, \
         twilio_auth_token TEXT, assigned_assistant_id TEXT, created_at TEXT, updated_at TEXT)",
    )
    .await;
    let err = Store::connect(&db.url, &StoreOptions::default())
        .await
        .expect_err("a table without vapi_credential_id must be refused");
    assert!(
        matches!(&err, StoreError::AppSchemaMismatch { table: "phone_numbers", missing } if missing == &["vapi_credential_id"]),
        "{err:?}"
    );
    assert!(err.to_string().contains("`vapi_credential_id`"), "{err}");
    // And nothing was added to it on the way.
    let notes = db
        .string(db.pick(
            "SELECT CAST(COUNT(*) AS TEXT) FROM information_schema.columns \
             WHERE table_name = 'phone_numbers' AND column_name = 'notes'",
            "SELECT CAST(COUNT(*) AS TEXT) FROM pragma_table_info('phone_numbers') \
             WHERE name = 'notes'",
        ))
        .await;
    assert_eq!(notes.as_deref(), Some("0"));
}
