//! The query budget: a load costs the same number of queries whatever the row count.

use super::*;

both_backends!(async:
    load_costs_the_same_queries_for_2000_rows_as_for_2,
);

async fn load_costs_the_same_queries_for_2000_rows_as_for_2(db: &TestDb) {
    let store = db.connect().await;
    let (small, large) = (owner(), owner());
    let mut large_numbers = Vec::new();
    for i in 0..2000 {
        let number = format!("+1555{i:07}");
        store.insert_row(large, &write(&number)).await.unwrap();
        large_numbers.push(number);
    }
    let small_numbers: Vec<String> = (0..2).map(|i| format!("+1666{i:07}")).collect();
    for number in &small_numbers {
        store.insert_row(small, &write(number)).await.unwrap();
    }

    let cost = |owner: Uuid, numbers: Vec<String>| {
        let store = store.clone();
        async move {
            let before = store.queries_issued();
            let state = store.load_recorded(owner, &numbers, &[]).await.unwrap();
            (store.queries_issued() - before, state.rows.len())
        }
    };
    let (small_cost, small_rows) = cost(small, small_numbers).await;
    let (large_cost, large_rows) = cost(large, large_numbers).await;
    assert_eq!((small_rows, large_rows), (2, 2000));
    assert_eq!(small_cost, large_cost);
    assert!(large_cost <= 5, "{large_cost} queries");
}
