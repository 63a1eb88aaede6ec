//! The audit trail: history order, filters and masked numbers.

use super::*;

both_backends!(async:
    history_is_newest_first_and_filters_by_number,
    audit_trail_stores_numbers_masked,
);

async fn history_is_newest_first_and_filters_by_number(db: &TestDb) {
    let store = db.connect().await;
    let (me, other) = (owner(), owner());
    store
        .record_change(&change(me, "+15551230001", "create", 1))
        .await
        .unwrap();
    store
        .record_change(&change(me, "+15551230002", "create", 2))
        .await
        .unwrap();
    store
        .record_change(&change(me, "+15551230001", "update", 3))
        .await
        .unwrap();
    store
        .record_change(&change(other, "+15551230001", "delete", 4))
        .await
        .unwrap();

    let all = store.history(me, None, 10).await.unwrap();
    let runs: Vec<_> = all.iter().map(|c| c.run_id.as_str()).collect();
    assert_eq!(runs, ["run-3", "run-2", "run-1"]);
    assert_eq!(
        all[0],
        change(me, "+15551230001", "update", 3),
        "round trip"
    );

    let one = store.history(me, Some("+15551230001"), 10).await.unwrap();
    let runs: Vec<_> = one.iter().map(|c| c.run_id.as_str()).collect();
    assert_eq!(runs, ["run-3", "run-1"]);

    let latest = store.history(me, None, 1).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].run_id, "run-3");

    // A create has no `before`, a delete no `after`.
    let mut created = change(me, "+15551230005", "create", 5);
    created.before = None;
    created.outcome = "failed".to_owned();
    created.error = Some("vapi said 400".to_owned());
    store.record_change(&created).await.unwrap();
    let got = store.history(me, Some("+15551230005"), 1).await.unwrap();
    assert_eq!(got, [created]);
}

async fn audit_trail_stores_numbers_masked(db: &TestDb) {
    let store = db.connect().await;
    let me = owner();
    let mut careless = change(me, "+15551230001", "create", 1);
    careless.number_masked = "+15551230001".to_owned(); // a caller that forgot to mask
    store.record_change(&careless).await.unwrap();

    let stored = db
        .strings("SELECT number_masked FROM vapictl_changes")
        .await;
    assert_eq!(stored, [[Some("…0001".to_owned())]]);
    let got = store.history(me, Some("+15551230001"), 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].number_masked, "…0001");
}
