//! Writes: row updates and deletes, refused for rows that are not the owner's.

use super::*;

both_backends!(async:
    update_overwrites_managed_columns_and_bumps_updated_at,
    delete_removes_only_that_row,
    writes_to_another_users_row_are_refused_and_change_nothing,
    writes_to_a_missing_row_are_refused,
    recording_a_taken_number_is_refused_with_the_number_masked,
);

async fn update_overwrites_managed_columns_and_bumps_updated_at(db: &TestDb) {
    let store = db.connect().await;
    let me = owner();
    let id = store.insert_row(me, &write("+15551230001")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let mut changed = write("+15551230001");
    changed.friendly_name = "Renamed".to_owned();
    changed.vapi_phone_id = None;
    changed.notes = Some("moved".to_owned());
    changed.token_digest = Some("digest-2".to_owned());
    changed.protected = true;
    store.update_row(me, id, &changed).await.unwrap();

    let state = store.load_recorded(me, &[], &[]).await.unwrap();
    let row = &state.rows["+15551230001"];
    assert_eq!(row.id, id);
    assert_eq!(row.friendly_name.as_deref(), Some("Renamed"));
    assert_eq!(row.vapi_phone_id, None);
    assert_eq!(row.notes.as_deref(), Some("moved"));
    assert_eq!(row.token_digest.as_deref(), Some("digest-2"));
    assert!(row.protected);
    assert_eq!(row.provider, "twilio");
    let bumped = db
        .string("SELECT CASE WHEN updated_at > created_at THEN 'bumped' ELSE 'same' END FROM phone_numbers")
        .await;
    assert_eq!(bumped.as_deref(), Some("bumped"));
}

async fn delete_removes_only_that_row(db: &TestDb) {
    let store = db.connect().await;
    let me = owner();
    let gone = store.insert_row(me, &write("+15551230001")).await.unwrap();
    store.insert_row(me, &write("+15551230002")).await.unwrap();

    store.delete_row(me, gone).await.unwrap();

    let state = store.load_recorded(me, &[], &[]).await.unwrap();
    assert_eq!(state.rows.keys().collect::<Vec<_>>(), ["+15551230002"]);
    let err = store.delete_row(me, gone).await.unwrap_err();
    assert!(
        matches!(err, StoreError::RowNotFound { row_id } if row_id == gone),
        "{err:?}"
    );
}

async fn writes_to_another_users_row_are_refused_and_change_nothing(db: &TestDb) {
    let store = db.connect().await;
    let (me, other) = (owner(), owner());
    let theirs = store
        .insert_row(other, &write("+15551230003"))
        .await
        .unwrap();

    let mut hijack = write("+15551230003");
    hijack.friendly_name = "Mine now".to_owned();
    let err = store.update_row(me, theirs, &hijack).await.unwrap_err();
    assert!(
        matches!(err, StoreError::RowOwnedByAnotherUser { row_id } if row_id == theirs),
        "{err:?}"
    );
    let err = store.delete_row(me, theirs).await.unwrap_err();
    assert!(
        matches!(err, StoreError::RowOwnedByAnotherUser { row_id } if row_id == theirs),
        "{err:?}"
    );

    let state = store.load_recorded(other, &[], &[]).await.unwrap();
    assert_eq!(
        state.rows["+15551230003"].friendly_name.as_deref(),
        Some("Line +15551230003")
    );
}

async fn writes_to_a_missing_row_are_refused(db: &TestDb) {
    let store = db.connect().await;
    let missing = Uuid::new_v4();
    let err = store
        .update_row(owner(), missing, &write("+15551230001"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::RowNotFound { row_id } if row_id == missing),
        "{err:?}"
    );
    let err = store.delete_row(owner(), missing).await.unwrap_err();
    assert!(matches!(err, StoreError::RowNotFound { .. }), "{err:?}");
}

async fn recording_a_taken_number_is_refused_with_the_number_masked(db: &TestDb) {
    let store = db.connect().await;
    let (me, other) = (owner(), owner());
    store
        .insert_row(other, &write("+15551231234"))
        .await
        .unwrap();

    for who in [me, other] {
        let err = store
            .insert_row(who, &write("+15551231234"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::NumberAlreadyRecorded { number } if number == "…1234"),
            "{err:?}"
        );
        assert!(!err.to_string().contains("+1555"), "{err}");
    }

    // Renaming a row onto a taken number is refused the same way.
    let mine = store.insert_row(me, &write("+15551230001")).await.unwrap();
    let err = store
        .update_row(me, mine, &write("+15551231234"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NumberAlreadyRecorded { .. }),
        "{err:?}"
    );
}
