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

// ---------------------------------------------------------------------------------------------
// Waiting for the lock (issue 9, defect 10)
// ---------------------------------------------------------------------------------------------

/// Spawns `vapictl apply` on `spec` with stderr piped and returns it with a channel of its
/// stderr lines, so a test can watch it while it runs.
fn spawn_apply(
    w: &World,
    spec: &std::path::Path,
    lock_timeout: &str,
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<String>,
    std::thread::JoinHandle<String>,
) {
    use std::io::BufRead;
    let mut child = w
        .command()
        .args([
            "apply",
            "--auto-approve",
            "--lock-timeout",
            lock_timeout,
            spec.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            all.push_str(&line);
            all.push('\n');
            let _ = tx.send(line);
        }
        all
    });
    (child, rx, reader)
}

/// Waits (at most `within`) for a stderr line containing `needle`.
#[track_caller]
fn expect_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str, within: Duration) -> String {
    let deadline = std::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no stderr line with {needle:?} within {within:?}: {e}"),
        }
    }
}

/// Waits (at most `within`) for the child to exit.
#[track_caller]
fn exits_within(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            panic!("vapictl did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send_signal(child: &std::process::Child, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The owner's lease as stored: (holder pid, holder pid namespace).
fn lease_row(w: &World) -> Option<(i64, Option<String>)> {
    // Each world has its own database, and these tests lock one owner only.
    w.strings("SELECT CAST(holder_pid AS TEXT), holder_pid_namespace FROM vapictl_locks")
        .into_iter()
        .next()
        .map(|r| {
            let pid = r[0].as_deref().expect("holder_pid").parse().unwrap();
            (pid, r[1].clone())
        })
}

fn a_signal_while_waiting_for_the_lock_exits_at_once(w: World, signal: &str) {
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    let store = w.store();
    // A live holder: this test process, on this host.
    let holder = vapictl::store::LockHolder::this_process("holding-run");
    let lock = w
        .block_on(store.acquire_lock(w.owner, &holder, Duration::ZERO))
        .unwrap();
    let (mut child, lines, reader) = spawn_apply(&w, &spec, "120");
    // Said at once, with who holds it, since when and until when.
    let busy = expect_line(
        &lines,
        "is locked by another vapictl run",
        Duration::from_secs(20),
    );
    for part in [
        format!("host `{}`", holder.host),
        format!("pid {}", std::process::id()),
        "run `holding-run`".into(),
        "since ".into(),
        "expires at ".into(),
        "Ctrl-C".into(),
    ] {
        assert!(busy.contains(&part), "{part:?} missing from {busy:?}");
    }
    assert!(child.try_wait().unwrap().is_none(), "still waiting");
    let signalled = std::time::Instant::now();
    send_signal(&child, signal);
    let status = exits_within(&mut child, Duration::from_secs(5));
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "prompt exit: {:?}",
        signalled.elapsed()
    );
    assert_eq!(status.code(), Some(1));
    let err = reader.join().unwrap();
    assert!(
        err.contains("interrupted while waiting for the lock")
            && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(w.vapi.mutating_calls(), 0, "nothing changed in Vapi");
    assert!(
        w.recorded().rows.is_empty(),
        "nothing changed in the database"
    );
    // The holder's lease was left alone.
    lock.ensure_held().unwrap();
    w.block_on(lock.release()).unwrap();
    assert_code(&w.apply(&spec), 0);
    assert_code(&w.plan(&spec), 0);
}

both_backends!(
    ctrl_c_while_waiting_for_the_lock_exits_at_once,
    |w: World| {
        a_signal_while_waiting_for_the_lock_exits_at_once(w, "-INT");
    }
);

both_backends!(
    sigterm_while_waiting_for_the_lock_exits_at_once,
    |w: World| {
        a_signal_while_waiting_for_the_lock_exits_at_once(w, "-TERM");
    }
);

both_backends!(
    a_lock_wait_reports_the_holder_at_once_then_progress,
    |w: World| {
        let holder = vapictl::store::LockHolder {
            host: "ci-runner-7".into(),
            pid: 4242,
            run_id: "other-run".into(),
        };
        let held = w
            .block_on(w.store().acquire_lock(w.owner, &holder, Duration::ZERO))
            .unwrap();
        let events = std::sync::Mutex::new(Vec::new());
        let wait = vapictl::store::LockWait::new(Duration::from_millis(1300))
            .progress_every(Duration::from_millis(300))
            .reporting(|e| events.lock().unwrap().push(e.clone()));
        let me = vapictl::store::LockHolder::this_process("waiting-run");
        let err = w
            .block_on(w.store().acquire_lock_with(w.owner, &me, wait))
            .unwrap_err();
        assert!(
            matches!(err, vapictl::store::StoreError::LockHeld { .. }),
            "{err}"
        );
        let events = events.into_inner().unwrap();
        match events.first() {
            Some(vapictl::store::LockWaitEvent::Busy { holder: h, .. }) => {
                assert_eq!((h.host.as_str(), h.pid), ("ci-runner-7", 4242));
            }
            other => panic!("the first event names the holder: {other:?}"),
        }
        let waited: Vec<Duration> = events[1..]
            .iter()
            .map(|e| match e {
                vapictl::store::LockWaitEvent::StillWaiting { waited, .. } => *waited,
                other => panic!("then progress only: {other:?}"),
            })
            .collect();
        assert!(waited.len() >= 2, "{events:?}");
        assert!(waited.windows(2).all(|p| p[0] < p[1]), "{waited:?}");
        assert!(events[0].to_string().contains("ci-runner-7"));
        w.block_on(held.release()).unwrap();
    }
);

both_backends!(
    an_interrupted_lock_wait_gives_up_and_leaves_the_lease_alone,
    |w: World| {
        let holder = vapictl::store::LockHolder::this_process("holding-run");
        let held = w
            .block_on(w.store().acquire_lock(w.owner, &holder, Duration::ZERO))
            .unwrap();
        let started = std::time::Instant::now();
        let wait = vapictl::store::LockWait::new(Duration::from_secs(60))
            .interrupted_by(async { tokio::time::sleep(Duration::from_millis(300)).await });
        let me = vapictl::store::LockHolder::this_process("waiting-run");
        let err = w
            .block_on(w.store().acquire_lock_with(w.owner, &me, wait))
            .unwrap_err();
        assert!(
            matches!(err, vapictl::store::StoreError::LockWaitInterrupted { .. }),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        held.ensure_held().unwrap();
        w.block_on(held.release()).unwrap();
    }
);

both_backends!(
    a_live_holder_on_this_host_is_waited_for_not_taken_over,
    |w: World| {
        let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
        let holder = vapictl::store::LockHolder::this_process("holding-run");
        let held = w
            .block_on(w.store().acquire_lock(w.owner, &holder, Duration::ZERO))
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
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(!err.contains("took over"), "{err}");
        assert_eq!(w.vapi.mutating_calls(), 0);
        held.ensure_held().unwrap();
        w.block_on(held.release()).unwrap();
    }
);

both_backends!(
    a_dead_holder_on_this_host_is_taken_over_at_once,
    |w: World| {
        let numbers: Vec<String> = (0..8).map(|i| format!("+1415555{:04}", 4100 + i)).collect();
        let mut s = w.spec();
        for n in &numbers {
            s = s.with(Entry::new(n, "Line"));
        }
        let spec = w.write(&s);
        // A slow Vapi keeps the first apply busy under the lock; SIGKILL leaves its lease behind
        // (lease TTL 30 s, just renewed).
        w.vapi.set_faults(standin::vapi::FaultConfig {
            latency_ms: 300,
            ..Default::default()
        });
        let mut child = w
            .command()
            .args(["apply", "--auto-approve", "--parallelism", "1"])
            .arg(&spec)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = i64::from(child.id());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let namespace = loop {
            if let Some((holder, ns)) = lease_row(&w)
                && holder == pid
            {
                break ns.expect("the holder's pid namespace is recorded");
            }
            assert!(std::time::Instant::now() < deadline, "child never locked");
            std::thread::sleep(Duration::from_millis(50));
        };
        child.kill().unwrap();
        child.wait().unwrap();
        w.vapi.set_faults(standin::vapi::FaultConfig::default());

        // Recorded by another pid namespace (or machine): never judged from here, so it waits.
        w.exec_sql(
            "UPDATE vapictl_locks SET holder_pid_namespace = 'another-boot/pid:[4026531836]'",
        );
        let o = w.run(&[
            "apply",
            "--auto-approve",
            "--lock-timeout",
            "1",
            spec.to_str().unwrap(),
        ]);
        assert_code(&o, 1);
        assert!(text(&o).1.contains(&format!("pid {pid}")), "{}", text(&o).1);

        // Recorded here: the dead process's lease is taken over at once.
        w.exec_sql(&format!(
            "UPDATE vapictl_locks SET holder_pid_namespace = '{namespace}'"
        ));
        // A lock timeout well below the 30 s lease: waiting for the TTL would fail the apply,
        // so success means the lease was taken over at once (no wall-clock assertion).
        let o = w.run(&[
            "apply",
            "--auto-approve",
            "--lock-timeout",
            "10",
            spec.to_str().unwrap(),
        ]);
        assert_code(&o, 0);
        let err = text(&o).1;
        assert!(
            err.contains("took over the lock") && err.contains(&format!("pid {pid}")),
            "{err}"
        );
        for n in &numbers {
            assert_eq!(w.vapi.find_by_number(n).len(), 1, "{n} once in Vapi");
        }
        assert_code(&w.plan(&spec), 0);
    }
);
