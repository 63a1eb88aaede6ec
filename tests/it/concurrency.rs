//! Concurrent applies, the owner lock, the audit trail, and running on the app's own schema.

use std::time::Duration;

use crate::both_backends;
use crate::common::*;

const N1: &str = "+14155551234";

both_backends!(four_applies_at_once_create_each_number_once, |w: World| {
    let mut s = w.spec();
    let numbers: Vec<String> = (0..6).map(|i| format!("+1415555{:04}", 4000 + i)).collect();
    for n in &numbers {
        s = s.with(Entry::new(n, "Line"));
    }
    let spec = w.write(&s);
    let children: Vec<_> = (0..4)
        .map(|_| {
            let mut c = w.command();
            c.args(["apply", "--auto-approve", spec.to_str().unwrap()])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for child in children {
        let o = child.wait_with_output().unwrap();
        assert_code(&o, 0);
    }
    assert_eq!(
        w.vapi.calls("POST"),
        numbers.len(),
        "each number created once"
    );
    for n in &numbers {
        assert_eq!(
            w.vapi.find_by_number(n).len(),
            1,
            "{n} exactly once in Vapi"
        );
    }
    assert_eq!(
        w.recorded().rows.len(),
        numbers.len(),
        "each number recorded once"
    );
    let o = w.plan(&spec);
    assert_code(&o, 0);
});

both_backends!(
    a_held_lock_makes_apply_wait_then_name_the_holder,
    |w: World| {
        let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
        let store = w.store();
        let holder = vapictl::store::LockHolder {
            host: "ci-runner-7".into(),
            pid: 4242,
            run_id: "other-run".into(),
        };
        let lock = w
            .block_on(store.acquire_lock(w.owner, &holder, Duration::from_secs(5)))
            .unwrap();
        let o = w.run(&[
            "apply",
            "--auto-approve",
            "--lock-timeout",
            "1",
            spec.to_str().unwrap(),
        ]);
        assert_code(&o, 1);
        let err = text(&o).1;
        assert!(err.contains("ci-runner-7") && err.contains("4242"), "{err}");
        assert_eq!(w.vapi.mutating_calls(), 0);
        w.block_on(lock.release()).unwrap();
        assert_code(&w.apply(&spec), 0);
    }
);

both_backends!(different_owners_do_not_block_each_other, |w: World| {
    let store = w.store();
    let other = uuid::Uuid::parse_str(OTHER_USER).unwrap();
    let _held = w
        .block_on(store.acquire_lock(
            other,
            &vapictl::store::LockHolder::this_process("x"),
            Duration::from_secs(5),
        ))
        .unwrap();
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    let o = w.run(&[
        "apply",
        "--auto-approve",
        "--lock-timeout",
        "1",
        spec.to_str().unwrap(),
    ]);
    assert_code(&o, 0);
});

both_backends!(every_applied_change_is_in_the_audit_trail, |w: World| {
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    let o = w
        .vapictl()
        .env("GITHUB_RUN_ID", "777")
        .env("GITHUB_SHA", "abc123")
        .args(["apply", "--auto-approve", spec.to_str().unwrap()])
        .output()
        .unwrap();
    assert_code(&o, 0);
    let spec = w.write(&w.spec().with(Entry::new(N1, "Renamed")));
    assert_code(&w.apply(&spec), 0);
    let o = w.run(&["history", "--spec", spec.to_str().unwrap()]);
    assert_code(&o, 0);
    let out = text(&o).0;
    let update = out.find("update").expect("update recorded");
    let create = out.find("create").expect("create recorded");
    assert!(update < create, "newest first:\n{out}");
    assert!(
        out.contains("…1234") && !out.contains(N1),
        "numbers are masked:\n{out}"
    );
    assert!(
        out.contains("ci 777") && out.contains("commit abc123"),
        "{out}"
    );
    let o = w.run(&["history", "--owner", OWNER, "5555"]);
    assert!(text(&o).0.contains("No recorded changes"), "{}", text(&o).0);
    let dump = w.dump_db();
    assert!(
        dump.contains("Renamed"),
        "before/after of non-secret fields are kept"
    );
    assert!(!dump.contains(TOKEN));
});

both_backends!(
    works_on_the_apps_existing_schema_and_leaves_other_users_alone,
    |w: World| {
        // A database the application made: no `notes`, no vapictl columns, other users' rows.
        let (uuid, ts) = if w.backend == Backend::Postgres {
            ("uuid", "timestamptz NOT NULL DEFAULT now()")
        } else {
            ("TEXT", "TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP")
        };
        let w2 = w;
        w2.exec_sql("DROP TABLE phone_numbers");
        w2.exec_sql("DROP TABLE assistants");
        w2.exec_sql(&format!(
        "CREATE TABLE phone_numbers (id {uuid} PRIMARY KEY, user_id {uuid}, phone_number text UNIQUE, friendly_name text, provider text DEFAULT 'twilio', vapi_phone_id text, vapi_credential_id text, twilio_account_sid text, twilio_auth_token text, assigned_assistant_id {uuid} NULL, created_at {ts}, updated_at {ts})"
    ));
        w2.exec_sql(&format!(
        "CREATE TABLE assistants (id {uuid} PRIMARY KEY, user_id {uuid}, name text, vapi_assistant_id text)"
    ));
        w2.exec_sql(&format!(
        "INSERT INTO phone_numbers (id, user_id, phone_number, friendly_name, twilio_auth_token) VALUES ('{}', '{OTHER_USER}', '+14155559999', 'Theirs', 'app-encrypted-blob')",
        uuid::Uuid::new_v4()
    ));
        w2.assistant("sales-bot", OWNER);
        let spec = w2.write(&w2.spec().with(Entry {
            notes: Some("front desk".into()),
            ..Entry::new(N1, "Main").assistant("sales-bot")
        }));
        assert_code(&w2.apply(&spec), 0);
        let rec = w2.recorded();
        assert_eq!(rec.rows[N1].notes.as_deref(), Some("front desk"));
        let dump = w2.dump_db();
        assert!(
            dump.contains("Theirs") && dump.contains("app-encrypted-blob"),
            "other users' rows untouched"
        );
        assert_code(&w2.plan(&spec), 0);
        assert_code(&w2.apply(&spec), 0);
    }
);
