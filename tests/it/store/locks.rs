//! The owner's lock: leases, heartbeats, takeovers and contention.

use super::*;

both_backends!(async:
    second_acquire_times_out_naming_the_holder,
    released_lock_is_free_at_once,
    held_lock_outlives_its_ttl_while_the_heartbeat_runs,
    abandoned_lease_is_taken_over_once_expired,
    locks_on_different_owners_are_independent,
    four_contending_tasks_take_turns,
);

async fn second_acquire_times_out_naming_the_holder(db: &TestDb) {
    let first = db.connect().await;
    let second = db.connect().await;
    let me = owner();
    let held = first
        .acquire_lock(me, &holder("a"), Duration::ZERO)
        .await
        .unwrap();

    let started = std::time::Instant::now();
    let err = second
        .acquire_lock(me, &holder("b"), Duration::from_millis(400))
        .await
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(400));
    match &err {
        StoreError::LockHeld {
            owner,
            host,
            pid,
            run_id,
            ..
        } => {
            assert_eq!(
                (*owner, host.as_str(), *pid, run_id.as_str()),
                (me, "host-a", 4242, "run-a")
            );
        }
        other => panic!("expected LockHeld, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("host-a") && message.contains("4242") && message.contains("run-a"),
        "{message}"
    );
    held.release().await.unwrap();
}

async fn released_lock_is_free_at_once(db: &TestDb) {
    let store = db.connect().await;
    let me = owner();
    let lock = store
        .acquire_lock(me, &holder("a"), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(lock.owner(), me);
    lock.ensure_held().unwrap();
    lock.release().await.unwrap();
    store
        .acquire_lock(me, &holder("b"), Duration::ZERO)
        .await
        .expect("a released lock is free without waiting")
        .release()
        .await
        .unwrap();
}

async fn held_lock_outlives_its_ttl_while_the_heartbeat_runs(db: &TestDb) {
    let store = db.connect_with(&short_ttl(600)).await;
    let me = owner();
    let lock = store
        .acquire_lock(me, &holder("a"), Duration::ZERO)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let err = store
        .acquire_lock(me, &holder("b"), Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LockHeld { .. }), "{err:?}");
    lock.ensure_held().unwrap();
    lock.release().await.unwrap();
}

async fn abandoned_lease_is_taken_over_once_expired(db: &TestDb) {
    let crashed = db.connect_with(&short_ttl(800)).await;
    let me = owner();
    let lock = crashed
        .acquire_lock(me, &holder("crashed"), Duration::ZERO)
        .await
        .unwrap();
    drop(lock); // as if the process died: no release, no more heartbeats

    let next = db.connect().await;
    let err = next
        .acquire_lock(me, &holder("next"), Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LockHeld { .. }), "{err:?}");

    let started = std::time::Instant::now();
    let lock = next
        .acquire_lock(me, &holder("next"), Duration::from_secs(10))
        .await
        .expect("an expired lease is taken over");
    assert!(started.elapsed() < Duration::from_secs(5));
    lock.release().await.unwrap();
}

async fn locks_on_different_owners_are_independent(db: &TestDb) {
    let store = db.connect().await;
    let a = store
        .acquire_lock(owner(), &holder("a"), Duration::ZERO)
        .await
        .unwrap();
    let b = store
        .acquire_lock(owner(), &holder("b"), Duration::ZERO)
        .await
        .expect("another owner's lock does not wait");
    a.release().await.unwrap();
    b.release().await.unwrap();
}

async fn four_contending_tasks_take_turns(db: &TestDb) {
    const ROUNDS: usize = 3;
    let me = owner();
    let inside = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for task in 0..4 {
        // One store per task: as separate processes would.
        let store = db.connect().await;
        let (inside, completed) = (inside.clone(), completed.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                let lock = store
                    .acquire_lock(
                        me,
                        &holder(&format!("{task}-{round}")),
                        Duration::from_secs(30),
                    )
                    .await
                    .unwrap();
                assert_eq!(
                    inside.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two holders at once"
                );
                tokio::time::sleep(Duration::from_millis(30)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                lock.release().await.unwrap();
                completed.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(completed.load(Ordering::SeqCst), 4 * ROUNDS);
}
