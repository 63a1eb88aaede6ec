//! Reads: the owner's rows, other users' claims and the assistants.

use super::*;

both_backends!(async:
    load_recorded_returns_own_rows_foreign_claims_and_assistants,
);

async fn load_recorded_returns_own_rows_foreign_claims_and_assistants(db: &TestDb) {
    create_app_schema(db).await;
    let store = db.connect().await;
    let me = Uuid::from_str(ME).unwrap();
    let other = Uuid::from_str(OTHER).unwrap();

    let numbers = [
        "+15551230001", // mine
        "+15551230003", // another user's
        "+15551230004", // a row with no user
        "+15559999999", // nobody's
    ]
    .map(str::to_owned);
    let other_assistant = Uuid::from_str(OTHER_ASSISTANT).unwrap();
    let state = store
        .load_recorded(
            me,
            &numbers,
            &[other_assistant.to_string(), Uuid::new_v4().to_string()],
        )
        .await
        .unwrap();

    assert_eq!(
        state.rows.keys().collect::<Vec<_>>(),
        ["(555) 123-0002", "+15551230001"]
    );
    assert!(state.rows.values().all(|r| r.user_id == me));
    assert_eq!(
        state.foreign,
        BTreeMap::from([
            ("+15551230003".to_owned(), other),
            ("+15551230004".to_owned(), Uuid::nil()),
        ])
    );
    let assistants: Vec<_> = state
        .assistants
        .iter()
        .map(|a| (a.id, a.user_id, a.name.as_deref()))
        .collect();
    assert_eq!(
        assistants,
        [
            (
                Uuid::from_str(MY_ASSISTANT).unwrap(),
                me,
                Some("Receptionist")
            ),
            (other_assistant, other, Some("Their bot")),
        ],
        "the owner's assistants plus the named one of another user, nothing else"
    );
}
