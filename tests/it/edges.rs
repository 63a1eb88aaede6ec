//! The edges of issue 9: tokens from the standard `age` tool, rows the application wrote without
//! a token digest, saved plans (deletion gate, keyless plans, other directories, damaged files),
//! every structural spec problem at once, and the Vapi id in the audit trail.

use std::process::Command;

use crate::both_backends;
use crate::common::*;

const N1: &str = "+14155551234";
const N2: &str = "+14155551235";

#[track_caller]
fn assert_converged(w: &World, spec: &std::path::Path) {
    let o = w.plan(spec);
    assert_code(&o, 0);
    assert!(text(&o).0.contains("No changes"), "{}", text(&o).0);
}

fn vapi_id(w: &World, number: &str) -> String {
    w.vapi.find_by_number(number)[0]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `plaintext` encrypted by the `age` tool itself (`… | age -a -r RECIPIENT`), or None when the
/// tool is not installed (CI installs it: there, its absence fails the test).
fn age_tool_encrypt(w: &World, plaintext: &str) -> Option<String> {
    if Command::new("age").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").is_err(),
            "the `age` tool is required in CI"
        );
        return None;
    }
    let mut child = Command::new("age")
        .args(["-a", "-r", &w.recipient])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(plaintext.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    Some(String::from_utf8(out.stdout).unwrap())
}

fn keyless(w: &World, args: &[&str]) -> std::process::Output {
    w.vapictl()
        .env_remove("VAPICTL_AGE_IDENTITY_FILE")
        .args(args)
        .output()
        .unwrap()
}

// Defect 4 -------------------------------------------------------------------------------------

both_backends!(
    age_tool_tokens_reach_vapi_without_their_line_ending,
    |w: World| {
        // `echo "$T" | age -a -r …` on Unix, and the same with a Windows line ending.
        let (Some(lf), Some(crlf)) = (
            age_tool_encrypt(&w, &format!("{TOKEN}\n")),
            age_tool_encrypt(&w, &format!("{TOKEN2}\r\n")),
        ) else {
            return;
        };
        let mut spec = w.spec().with(Entry::new(N1, "Main")).with(Entry {
            token: Some(crlf),
            ..Entry::new(N2, "Support")
        });
        spec.token = lf;
        let path = w.write(&spec);
        assert_code(&w.apply(&path), 0);
        assert_eq!(w.vapi.token_of(&vapi_id(&w, N1)).as_deref(), Some(TOKEN));
        assert_eq!(w.vapi.token_of(&vapi_id(&w, N2)).as_deref(), Some(TOKEN2));
        assert_converged(&w, &path);

        // The same tokens encrypted without a line ending are the same tokens: re-encrypted.
        let spec = w.spec().with(Entry::new(N1, "Main")).with(Entry {
            token: Some(w.encrypt(TOKEN2)),
            ..Entry::new(N2, "Support")
        });
        let path = w.write(&spec);
        let o = w.plan(&path);
        assert_code(&o, 2);
        let out = text(&o).0;
        assert_eq!(
            out.matches("re-encrypted, value unchanged").count(),
            2,
            "{out}"
        );
        assert!(!out.contains("sensitive value changed"), "{out}");
        w.vapi.reset_log();
        assert_code(&w.apply(&path), 0);
        assert_eq!(w.vapi.calls("PATCH"), 0, "no token is sent again");
        assert_converged(&w, &path);
    }
);

// Defect 7 -------------------------------------------------------------------------------------

both_backends!(
    re_encrypting_a_row_without_digest_changes_the_row_only,
    |w: World| {
        let path = w.write(
            &w.spec()
                .with(Entry::new(N1, "Main"))
                .with(Entry::new(N2, "Support")),
        );
        assert_code(&w.apply(&path), 0);
        // Rows as the application writes them: no digest; N2's row holds an older token.
        w.exec_sql("UPDATE phone_numbers SET vapictl_token_digest = NULL");
        w.exec_sql(&format!(
            "UPDATE phone_numbers SET twilio_auth_token = '{}' WHERE phone_number = '{N2}'",
            w.encrypt(TOKEN2)
        ));

        // `import --recipient` re-encrypts every token: the same TOKEN, new ciphertext.
        let mut spec = w
            .spec()
            .with(Entry::new(N1, "Main"))
            .with(Entry::new(N2, "Support"));
        spec.token = w.encrypt(TOKEN);
        let path = w.write(&spec);
        let o = w.run(&[
            "-vvv",
            "plan",
            "--detailed-exitcode",
            path.to_str().unwrap(),
        ]);
        assert_code(&o, 2);
        let (out, err) = text(&o);
        assert_eq!(
            out.matches("re-encrypted, value unchanged").count(),
            1,
            "{out}"
        );
        assert_eq!(out.matches("sensitive value changed").count(), 1, "{out}");

        w.vapi.reset_log();
        let applied = w.run(&["-vvv", "apply", "--auto-approve", path.to_str().unwrap()]);
        assert_code(&applied, 0);
        let (applied_out, applied_err) = text(&applied);
        for secret in [TOKEN, TOKEN2] {
            for output in [&out, &err, &applied_out, &applied_err] {
                assert!(!output.contains(secret), "a decrypted row token leaked");
            }
        }
        assert_eq!(w.vapi.calls("PATCH"), 1, "only the rotated token is sent");
        assert_eq!(w.vapi.token_of(&vapi_id(&w, N2)).as_deref(), Some(TOKEN));
        let rows = w.recorded().rows;
        assert!(
            rows[N1].token_digest.is_some(),
            "the digest is filled in for the unchanged token"
        );
        assert!(rows[N2].token_digest.is_some());
        assert_converged(&w, &path);
        assert!(!w.dump_db().contains(TOKEN), "no plaintext in any row");
    }
);

both_backends!(
    import_with_a_recipient_then_apply_sends_no_token,
    |w: World| {
        let path = w.write(
            &w.spec()
                .with(Entry::new(N1, "Main"))
                .with(Entry::new(N2, "Support")),
        );
        assert_code(&w.apply(&path), 0);
        w.exec_sql("UPDATE phone_numbers SET vapictl_token_digest = NULL");
        let o = w.run(&["import", "--owner", OWNER, "--recipient", &w.recipient]);
        assert_code(&o, 0);
        let imported = w.path("imported.yaml");
        std::fs::write(&imported, text(&o).0).unwrap();
        let o = w.plan(&imported);
        assert_code(&o, 2);
        let out = text(&o).0;
        assert_eq!(
            out.matches("re-encrypted, value unchanged").count(),
            2,
            "{out}"
        );
        w.vapi.reset_log();
        assert_code(&w.apply(&imported), 0);
        assert_eq!(w.vapi.calls("PATCH"), 0, "no token is sent again");
        assert!(w.recorded().rows.values().all(|r| r.token_digest.is_some()));
        assert_converged(&w, &imported);
    }
);

// Defect 8 -------------------------------------------------------------------------------------

both_backends!(
    a_saved_plan_refused_by_the_deletion_gate_is_applied_once_confirmed,
    |w: World| {
        let path = w.write(
            &w.spec()
                .with(Entry::new(N1, "Main"))
                .with(Entry::new(N2, "Support")),
        );
        assert_code(&w.apply(&path), 0);
        let empty = w.write(&w.spec());
        assert_code(
            &w.run(&["plan", "--out", "plan.json", empty.to_str().unwrap()]),
            0,
        );
        let o = w.run(&["apply", "plan.json"]);
        assert_code(&o, 3);
        assert!(text(&o).1.contains("--allow-deletes 2"), "{}", text(&o).1);
        assert_eq!(w.vapi.numbers().len(), 2, "nothing deleted");

        let o = w.run(&["apply", "--allow-deletes", "2", "plan.json"]);
        assert_code(&o, 0);
        assert!(w.vapi.numbers().is_empty());
        assert!(w.recorded().rows.is_empty());
        let o = w.run(&["apply", "--allow-deletes", "2", "plan.json"]);
        assert_code(&o, 3);
        assert!(text(&o).1.contains("applied before"), "{}", text(&o).1);
        assert_converged(&w, &empty);
    }
);

// Defect 13 ------------------------------------------------------------------------------------

both_backends!(
    a_saved_plan_made_without_a_key_applies_a_re_encrypted_token,
    |w: World| {
        let path = w.write(
            &w.spec()
                .with(Entry::new(N1, "Main"))
                .with(Entry::new(N2, "Support")),
        );
        assert_code(&w.apply(&path), 0);
        // N2's row as the application writes it: no digest.
        w.exec_sql(&format!(
            "UPDATE phone_numbers SET vapictl_token_digest = NULL WHERE phone_number = '{N2}'"
        ));
        let mut spec = w
            .spec()
            .with(Entry::new(N1, "Main"))
            .with(Entry::new(N2, "Support"));
        spec.token = w.encrypt(TOKEN);
        let path = w.write(&spec);
        // A pull-request job has no key; the apply job has it.
        let o = keyless(&w, &["plan", "--out", "plan.json", path.to_str().unwrap()]);
        assert_code(&o, 0);
        assert!(
            text(&o).0.contains("cannot verify without key"),
            "{}",
            text(&o).0
        );
        w.vapi.reset_log();
        let o = w.run(&["apply", "plan.json"]);
        assert_code(&o, 0);
        assert_eq!(w.vapi.calls("PATCH"), 0, "the unchanged token is not sent");
        assert_converged(&w, &path);
    }
);

#[test]
fn a_saved_plan_applies_from_another_directory() {
    let w = World::sqlite();
    w.write(&w.spec().with(Entry::new(N1, "Main")));
    let o = w.run(&["plan", "--out", "plan.json", "spec.yaml"]);
    assert_code(&o, 0);
    let elsewhere = w.path("ci/job");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let o = w
        .vapictl()
        .current_dir(&elsewhere)
        .args(["apply", "../../plan.json"])
        .output()
        .unwrap();
    assert_code(&o, 0);
    assert_eq!(w.vapi.numbers().len(), 1);
}

#[test]
fn a_truncated_plan_file_is_named_as_a_damaged_plan() {
    let w = World::sqlite();
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    assert_code(
        &w.run(&["plan", "--out", "plan.json", spec.to_str().unwrap()]),
        0,
    );
    let file = std::fs::read(w.path("plan.json")).unwrap();
    for cut in [file.len() / 2, 20, 3] {
        std::fs::write(w.path("cut.json"), &file[..cut]).unwrap();
        let o = w.run(&["apply", "cut.json"]);
        assert_code(&o, 1);
        let err = text(&o).1;
        assert!(
            err.contains("truncated or corrupt") && err.contains("hint: make a new plan"),
            "{cut}: {err}"
        );
        assert!(!err.contains("unknown field"), "{err}");
    }
    // A saved plan named where a spec belongs says what it is.
    let o = w.run(&["validate", "plan.json"]);
    assert_code(&o, 1);
    assert!(
        text(&o).1.contains("this is a saved plan"),
        "{}",
        text(&o).1
    );
    assert_eq!(w.vapi.mutating_calls(), 0);
}

#[test]
fn every_structural_problem_is_reported_at_once() {
    let w = World::sqlite();
    let yaml = w
        .spec()
        .with(Entry::new(N1, "Main"))
        .with(Entry::new(N2, "Support"))
        .to_yaml()
        .replacen("    name: \"Main\"\n", "    nmae: \"Main\"\n", 1)
        .replacen(
            "    name: \"Support\"\n",
            "    name: \"Support\"\n    smsEnabled: maybe\n    colour: blue\n",
            1,
        )
        + "extra: 1\n";
    let path = w.path("broken.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let o = w.run(&["validate", path.to_str().unwrap()]);
    assert_code(&o, 1);
    let err = text(&o).1;
    for says in [
        "unknown field `nmae`",
        "missing field `name`",
        "smsEnabled",
        "unknown field `colour`",
        "unknown field `extra`",
    ] {
        assert!(err.contains(says), "{says}:\n{err}");
    }
    assert!(err.contains("5 problems"), "{err}");
    assert!(err.contains("broken.yaml:"), "{err}");
}

both_backends!(audit_records_of_creates_carry_the_vapi_id, |w: World| {
    let path = w.write(&w.spec().with(Entry::new(N1, "Main")));
    assert_code(&w.apply(&path), 0);
    let store = w.store();
    let history = |number: &str| {
        w.block_on(store.history(w.owner, Some(number), 10))
            .unwrap()
    };
    let records = history(N1);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].action, "create");
    assert_eq!(
        records[0].vapi_phone_id.as_deref(),
        Some(vapi_id(&w, N1).as_str())
    );

    // The application refuses N2's row after Vapi created the number.
    match w.backend {
        Backend::Sqlite => w.exec_sql(&format!(
            "CREATE TRIGGER refuse_n2 BEFORE INSERT ON phone_numbers WHEN NEW.phone_number = '{N2}' \
             BEGIN SELECT RAISE(ABORT, 'refused by the app'); END"
        )),
        Backend::Postgres => w.exec_sql(&format!(
            "CREATE FUNCTION refuse_n2() RETURNS trigger AS $$ BEGIN \
               IF NEW.phone_number = '{N2}' THEN RAISE EXCEPTION 'refused by the app'; END IF; \
               RETURN NEW; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER refuse_n2 BEFORE INSERT ON phone_numbers \
               FOR EACH ROW EXECUTE FUNCTION refuse_n2()"
        )),
    }
    let path = w.write(
        &w.spec()
            .with(Entry::new(N1, "Main"))
            .with(Entry::new(N2, "Support")),
    );
    assert_code(&w.apply(&path), 1);
    let records = history(N2);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, "failed");
    assert_eq!(
        records[0].vapi_phone_id.as_deref(),
        Some(vapi_id(&w, N2).as_str()),
        "the failed create's record names the number that now exists in Vapi"
    );
    match w.backend {
        Backend::Sqlite => w.exec_sql("DROP TRIGGER refuse_n2"),
        Backend::Postgres => w.exec_sql("DROP TRIGGER refuse_n2 ON phone_numbers"),
    }
    assert_code(&w.apply(&path), 0);
    assert_eq!(
        w.vapi.find_by_number(N2).len(),
        1,
        "adopted, never created twice"
    );
    assert_converged(&w, &path);
});
