//! Connection errors (no database needed, or a deliberately wrong one): named, and never showing the password.

use super::*;

const CANARY: &str = "s3cret-canary";

fn quick() -> StoreOptions {
    StoreOptions {
        connect_timeout: Duration::from_secs(3),
        ..StoreOptions::default()
    }
}

fn assert_no_canary(err: &StoreError) {
    let mut text = format!("{err}\n{err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(&format!("\n{cause}"));
        source = cause.source();
    }
    assert!(!text.contains(CANARY), "password leaked: {text}");
}

#[tokio::test]
async fn unsupported_scheme_is_refused_without_the_password() {
    let err = Store::connect(&format!("mysql://app:{CANARY}@db/prod"), &quick())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl { .. }), "{err:?}");
    assert!(err.to_string().contains("hint:"), "{err}");
    assert_no_canary(&err);
}

#[tokio::test]
async fn unreachable_postgres_is_named_without_the_password() {
    // Port 1 on localhost: nothing listens there.
    let err = Store::connect(
        &format!("postgres://app:{CANARY}@127.0.0.1:1/prod"),
        &quick(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Unreachable { .. } | StoreError::ConnectTimedOut { .. }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    assert_no_canary(&err);
}

#[tokio::test]
async fn malformed_postgres_url_is_refused_without_the_password() {
    let err = Store::connect(
        &format!("postgres://app:{CANARY}@host:notaport/db"),
        &quick(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err:?}");
    assert_no_canary(&err);
}

#[tokio::test]
async fn sqlite_in_a_missing_directory_cannot_be_opened() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/no/such/dir/app.db", dir.path().display());
    let err = Store::connect(&url, &quick()).await.unwrap_err();
    assert!(matches!(err, StoreError::CannotOpenFile { .. }), "{err:?}");
    assert!(err.to_string().contains("hint:"), "{err}");
}

#[tokio::test]
async fn read_only_sqlite_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    std::fs::write(&path, b"").unwrap(); // an empty file is an empty database
    let err = Store::connect(&format!("sqlite://{}?mode=ro", path.display()), &quick())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ReadOnly { .. }), "{err:?}");
}

#[tokio::test]
async fn in_memory_sqlite_works_across_pooled_uses() {
    let store = Store::connect("sqlite::memory:", &StoreOptions::default())
        .await
        .unwrap();
    let me = owner();
    store.insert_row(me, &write("+15551230001")).await.unwrap();
    let lock = store
        .acquire_lock(me, &holder("a"), Duration::ZERO)
        .await
        .unwrap();
    let state = store.load_recorded(me, &[], &[]).await.unwrap();
    assert_eq!(state.rows.len(), 1);
    lock.release().await.unwrap();
}

/// A PostgreSQL server's refusals (unknown role, unknown database) name the condition, and
/// neither they nor a connected store's `Debug` repeat the password.
#[tokio::test]
async fn postgres_refusals_and_debug_output_never_show_the_password() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let (server, name) = db.postgres_server_and_name().unwrap();
    let (scheme_and_user, rest) = server.split_once('@').unwrap();
    let scheme = scheme_and_user.split("://").next().unwrap();

    let unknown_role = format!("{scheme}://no_such_role:{CANARY}@{rest}");
    let err = Store::connect(&unknown_role, &quick()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    assert_no_canary(&err);

    let user = scheme_and_user.split("://").nth(1).unwrap();
    let user = user.split(':').next().unwrap();
    let unknown_db = with_database(
        &format!("{scheme}://{user}:{CANARY}@{rest}"),
        "vapictl_no_such_database",
    );
    let err = Store::connect(&unknown_db, &quick()).await.unwrap_err();
    assert!(matches!(err, StoreError::DatabaseMissing { .. }), "{err:?}");
    assert_no_canary(&err);

    // The test server trusts any password, so this one connects.
    let with_password = with_database(&format!("{scheme}://{user}:{CANARY}@{rest}"), name);
    let store = Store::connect(&with_password, &quick()).await.unwrap();
    let debug = format!("{store:?}");
    assert!(!debug.contains(CANARY), "{debug}");
}

/// Every store future can be spawned on a multi-threaded runtime (the applier does).
#[tokio::test]
async fn store_futures_are_send() {
    fn spawnable<F: std::future::Future + Send>(_: F) {}
    let store = Store::connect("sqlite::memory:", &StoreOptions::default())
        .await
        .unwrap();
    let (me, row) = (owner(), write("+15551230001"));
    spawnable(Store::connect("sqlite::memory:", &StoreOptions::default()));
    spawnable(store.load_recorded(me, &[], &[]));
    spawnable(store.insert_row(me, &row));
    spawnable(store.update_row(me, me, &row));
    spawnable(store.probe_row_write(me, Some(me), &row));
    spawnable(store.delete_row(me, me));
    spawnable(store.acquire_lock(me, &holder("a"), Duration::ZERO));
    spawnable(store.record_change(&change(me, "+15551230001", "create", 1)));
    spawnable(store.history(me, None, 1));
    let lock = store
        .acquire_lock(me, &holder("a"), Duration::ZERO)
        .await
        .unwrap();
    spawnable(lock.release());
}
