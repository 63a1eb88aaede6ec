//! End to end: the real binary against the stand-in and a real database, through the decision
//! table. Every apply test ends by checking that a new plan is empty.

use crate::both_backends;
use crate::common::*;

const N1: &str = "+14155551234";
const N2: &str = "+14155551235";
const N3: &str = "+14155551236";

fn vapi_numbers(w: &World, number: &str) -> Vec<serde_json::Value> {
    w.vapi.find_by_number(number)
}

#[track_caller]
fn assert_converged(w: &World, spec: &std::path::Path) {
    let o = w.plan(spec);
    assert_code(&o, 0);
    assert!(text(&o).0.contains("No changes"), "{}", text(&o).0);
}

both_backends!(create_apply_then_nothing_to_do, |w: World| {
    w.assistant("sales-bot", OWNER);
    let spec = w.write(
        &w.spec()
            .with(Entry::new(N1, "Main Sales Line").assistant("sales-bot"))
            .with(Entry::new(N2, "Support")),
    );

    let o = w.plan(&spec);
    assert_code(&o, 2);
    let (out, _) = text(&o);
    assert!(
        out.contains("+ create") && out.contains(N1) && out.contains(N2),
        "{out}"
    );
    assert!(
        out.contains("Plan: 2 to create, 0 to adopt, 0 to update, 0 to delete."),
        "{out}"
    );
    insta::assert_snapshot!("plan_of_two_creates", w.seen(&out));
    assert_eq!(w.vapi.mutating_calls(), 0, "plan changes nothing");

    assert_code(&w.apply(&spec), 0);
    let made = vapi_numbers(&w, N1);
    assert_eq!(made.len(), 1);
    assert_eq!(made[0]["name"], "Main Sales Line");
    let id = made[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        w.vapi.token_of(&id).as_deref(),
        Some(TOKEN),
        "the token reached Vapi"
    );

    let rec = w.recorded();
    let row = &rec.rows[N1];
    assert_eq!(row.vapi_phone_id.as_deref(), Some(id.as_str()));
    assert_eq!(row.friendly_name.as_deref(), Some("Main Sales Line"));
    assert!(row.assigned_assistant_id.is_some());
    assert!(
        row.twilio_auth_token
            .as_deref()
            .unwrap()
            .starts_with("-----BEGIN AGE")
    );
    assert!(row.token_digest.is_some());

    assert_converged(&w, &spec);
    w.vapi.reset_log();
    let before = w.vapi.mutating_calls();
    let o = w.apply(&spec);
    assert_code(&o, 0);
    assert_eq!(
        w.vapi.mutating_calls(),
        before,
        "applying twice makes zero mutating calls"
    );
});

both_backends!(spec_edit_patches_only_what_changed, |w: World| {
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    assert_code(&w.apply(&spec), 0);
    let spec = w.write(&w.spec().with(Entry {
        sms_enabled: Some(false),
        ..Entry::new(N1, "Renamed")
    }));
    let o = w.plan(&spec);
    assert_code(&o, 2);
    let out = text(&o).0;
    assert!(
        out.contains("~ update") && out.contains("(spec edit)"),
        "{out}"
    );
    assert!(out.contains("\"Main\" → \"Renamed\""), "{out}");
    insta::assert_snapshot!("plan_of_a_spec_edit", w.seen(&out));
    w.vapi.reset_log();
    assert_code(&w.apply(&spec), 0);
    let patches: Vec<_> = w
        .vapi
        .request_log()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 1);
    let body = patches[0].body.as_ref().unwrap();
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec!["name", "smsEnabled"],
        "only the changed fields are sent"
    );
    assert_eq!(
        w.recorded().rows[N1].friendly_name.as_deref(),
        Some("Renamed")
    );
    assert_converged(&w, &spec);
});

both_backends!(
    dashboard_edit_shows_as_out_of_band_and_is_reverted,
    |w: World| {
        let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
        assert_code(&w.apply(&spec), 0);
        let id = vapi_numbers(&w, N1)[0]["id"].as_str().unwrap().to_string();
        w.vapi
            .patch_number(&id, serde_json::json!({"name": "Edited by hand"}));
        let o = w.plan(&spec);
        assert_code(&o, 2);
        assert!(
            text(&o).0.contains("changed in Vapi outside vapictl"),
            "{}",
            text(&o).0
        );
        assert_code(&w.apply(&spec), 0);
        assert_eq!(vapi_numbers(&w, N1)[0]["name"], "Main");
        assert_converged(&w, &spec);
    }
);

both_backends!(
    deleted_by_hand_is_recreated_and_row_repointed,
    |w: World| {
        let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
        assert_code(&w.apply(&spec), 0);
        let old = vapi_numbers(&w, N1)[0]["id"].as_str().unwrap().to_string();
        w.vapi.delete_number(&old);
        let o = w.plan(&spec);
        assert_code(&o, 2);
        assert!(text(&o).0.contains("re-create"), "{}", text(&o).0);
        assert_code(&w.apply(&spec), 0);
        let now = vapi_numbers(&w, N1);
        assert_eq!(now.len(), 1);
        assert_ne!(now[0]["id"].as_str().unwrap(), old);
        assert_eq!(
            w.recorded().rows[N1].vapi_phone_id.as_deref(),
            now[0]["id"].as_str()
        );
        assert_converged(&w, &spec);
    }
);

both_backends!(
    removed_entry_is_released_and_row_deleted_but_protected_stays,
    |w: World| {
        let spec = w.write(
            &w.spec()
                .with(Entry::new(N1, "Goes"))
                .with(Entry {
                    protected: true,
                    ..Entry::new(N2, "Stays")
                })
                .with(Entry::new(N3, "Kept in spec")),
        );
        assert_code(&w.apply(&spec), 0);
        let spec = w.write(&w.spec().with(Entry::new(N3, "Kept in spec")));
        let o = w.plan(&spec);
        assert_code(&o, 2);
        let out = text(&o).0;
        assert!(out.contains("- delete") && out.contains(N1), "{out}");
        assert!(
            out.contains("keep") && out.contains(N2) && out.contains("protected"),
            "{out}"
        );
        insta::assert_snapshot!("plan_of_a_delete_and_a_protected_keep", w.seen(&out));
        // 1 of 3 managed numbers is over 25%: the gate asks for the exact count.
        assert_code(&w.apply(&spec), 3);
        let o = w.run(&[
            "apply",
            "--auto-approve",
            "--allow-deletes",
            "1",
            spec.to_str().unwrap(),
        ]);
        assert_code(&o, 0);
        assert!(vapi_numbers(&w, N1).is_empty());
        assert_eq!(vapi_numbers(&w, N2).len(), 1);
        let rec = w.recorded();
        assert!(!rec.rows.contains_key(N1));
        assert!(rec.rows.contains_key(N2));
        assert_converged(&w, &spec);
    }
);

both_backends!(
    unrecorded_vapi_number_is_adopted_without_a_post,
    |w: World| {
        w.vapi.seed_twilio_number(N1, "Made in the dashboard", None);
        w.vapi.seed_twilio_number(N2, "Someone else's", None);
        let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
        let o = w.plan(&spec);
        assert_code(&o, 2);
        let out = text(&o).0;
        assert!(
            out.contains("& adopt") && out.contains("1 to adopt"),
            "{out}"
        );
        assert!(out.contains("not managed by this spec"), "{out}");
        insta::assert_snapshot!("plan_of_an_adopt_beside_an_unmanaged_number", w.seen(&out));
        w.vapi.reset_log();
        assert_code(&w.apply(&spec), 0);
        assert_eq!(w.vapi.calls("POST"), 0, "adopting never POSTs");
        let found = vapi_numbers(&w, N1);
        assert_eq!(found.len(), 1);
        assert_eq!(
            w.vapi.token_of(found[0]["id"].as_str().unwrap()).as_deref(),
            Some(TOKEN)
        );
        assert_eq!(
            vapi_numbers(&w, N2)[0]["name"],
            "Someone else's",
            "unmanaged is untouched"
        );
        assert_converged(&w, &spec);
    }
);

both_backends!(
    number_of_another_user_is_refused_and_nothing_changes,
    |w: World| {
        w.exec_sql(&format!(
        "INSERT INTO phone_numbers (id, user_id, phone_number, friendly_name, provider) VALUES ('{}', '{OTHER_USER}', '{N1}', 'Theirs', 'twilio')",
        uuid::Uuid::new_v4()
    ));
        let spec = w.write(
            &w.spec()
                .with(Entry::new(N1, "Mine"))
                .with(Entry::new(N2, "Fine")),
        );
        let o = w.apply(&spec);
        assert_code(&o, 1);
        let err = text(&o).1;
        assert!(err.contains(N1) && err.contains("another user"), "{err}");
        assert_eq!(w.vapi.mutating_calls(), 0);
        assert!(w.recorded().rows.is_empty());
    }
);

both_backends!(rotated_token_is_sent_and_never_shown, |w: World| {
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    assert_code(&w.apply(&spec), 0);
    let mut s = w.spec().with(Entry::new(N1, "Main"));
    s.token = w.encrypt(TOKEN2);
    let spec = w.write(&s);
    let o = w.plan(&spec);
    assert_code(&o, 2);
    assert!(
        text(&o)
            .0
            .contains("twilioAuthToken: (sensitive value changed)"),
        "{}",
        text(&o).0
    );
    assert_code(&w.apply(&spec), 0);
    let id = vapi_numbers(&w, N1)[0]["id"].as_str().unwrap().to_string();
    assert_eq!(w.vapi.token_of(&id).as_deref(), Some(TOKEN2));
    assert_converged(&w, &spec);

    // Re-encrypting the same token (e.g. to add a recipient) changes the row only.
    let mut s = w.spec().with(Entry::new(N1, "Main"));
    s.token = w.encrypt(TOKEN2);
    let spec = w.write(&s);
    let o = w.plan(&spec);
    assert!(
        text(&o).0.contains("re-encrypted, value unchanged"),
        "{}",
        text(&o).0
    );
    w.vapi.reset_log();
    assert_code(&w.apply(&spec), 0);
    assert_eq!(w.vapi.mutating_calls(), 0);
    assert_converged(&w, &spec);
});

both_backends!(assistant_reassignment_and_removal_reach_vapi, |w: World| {
    let (_, a) = w.assistant("sales-bot", OWNER);
    let (_, b) = w.assistant("support-bot", OWNER);
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main").assistant("sales-bot")));
    assert_code(&w.apply(&spec), 0);
    assert_eq!(vapi_numbers(&w, N1)[0]["assistantId"], a.as_str());
    let spec = w.write(
        &w.spec()
            .with(Entry::new(N1, "Main").assistant("support-bot")),
    );
    assert_code(&w.apply(&spec), 0);
    assert_eq!(vapi_numbers(&w, N1)[0]["assistantId"], b.as_str());
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    assert_code(&w.apply(&spec), 0);
    assert!(
        vapi_numbers(&w, N1)[0]
            .get("assistantId")
            .is_none_or(|v| v.is_null())
    );
    assert!(w.recorded().rows[N1].assigned_assistant_id.is_none());
    assert_converged(&w, &spec);
});

both_backends!(
    lost_create_response_is_adopted_not_duplicated,
    |w: World| {
        w.vapi.lose_next("POST", "/phone-number", 1);
        let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
        assert_code(&w.apply(&spec), 0);
        assert_eq!(vapi_numbers(&w, N1).len(), 1, "exactly one number in Vapi");
        assert_eq!(w.vapi.calls("POST"), 1, "the POST was not re-sent");
        assert!(w.recorded().rows[N1].vapi_phone_id.is_some());
        assert_converged(&w, &spec);
    }
);

#[test]
fn invalid_spec_makes_no_call_and_no_row() {
    let w = World::sqlite();
    let spec = w.write(&w.spec().with(Entry::new("4155551234", "Main")));
    for args in [vec!["plan"], vec!["apply", "--auto-approve"]] {
        let mut a = args.clone();
        a.push(spec.to_str().unwrap());
        let o = w.run(&a);
        assert_code(&o, 1);
        let err = text(&o).1;
        assert!(
            err.contains("spec.yaml:") && err.contains("+14155551234"),
            "{err}"
        );
    }
    assert!(w.vapi.request_log().is_empty(), "no API call at all");
    assert!(w.recorded().rows.is_empty());
}

#[test]
fn apply_without_a_terminal_refuses_without_auto_approve() {
    let w = World::sqlite();
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    let o = w
        .vapictl()
        .args(["apply", spec.to_str().unwrap()])
        .write_stdin("yes\n")
        .output()
        .unwrap();
    assert_code(&o, 1);
    assert!(text(&o).1.contains("--auto-approve"));
    assert!(w.vapi.request_log().is_empty());
}

#[test]
fn secrets_never_appear_in_output_rows_or_logs() {
    let w = World::sqlite();
    w.assistant("sales-bot", OWNER);
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main").assistant("sales-bot")));
    let mut all = String::new();
    let mut stderr = String::new();
    for args in [
        vec!["-vvv", "validate"],
        vec!["-vvv", "plan"],
        vec!["-vvv", "plan", "--format", "json"],
        vec!["-vvv", "plan", "--format", "markdown", "--out", "plan.json"],
        vec!["-vvv", "--log-format", "json", "drift", "--format", "json"],
        vec!["-vvv", "--log-format", "json", "apply", "--auto-approve"],
        vec!["-vvv", "plan"],
        vec!["-vvv", "drift"],
    ] {
        let mut a = args.clone();
        a.push(spec.to_str().unwrap());
        let o = w.run(&a);
        let (out, err) = text(&o);
        all.push_str(&out);
        all.push_str(&err);
        stderr.push_str(&err);
    }
    let mut s = w.spec().with(Entry::new(N1, "Main").assistant("sales-bot"));
    s.token = w.encrypt(TOKEN2);
    let spec = w.write(&s);
    let o = w.run(&["-vvv", "apply", "--auto-approve", spec.to_str().unwrap()]);
    assert_code(&o, 0);
    all.push_str(&text(&o).0);
    all.push_str(&text(&o).1);
    stderr.push_str(&text(&o).1);
    for args in [
        vec!["-vvv", "history", "--owner", OWNER],
        vec!["-vvv", "import", "--owner", OWNER],
        vec![
            "-vvv",
            "--log-format",
            "json",
            "import",
            "--owner",
            OWNER,
            "-r",
            &w.recipient,
        ],
    ] {
        let o = w.run(&args);
        assert_code(&o, 0);
        all.push_str(&text(&o).0);
        all.push_str(&text(&o).1);
        stderr.push_str(&text(&o).1);
    }
    all.push_str(&std::fs::read_to_string(w.path("plan.json")).unwrap());
    all.push_str(&w.dump_db());
    for secret in [TOKEN, TOKEN2, w.vapi.api_key(), w.identity_text.as_str()] {
        assert!(!all.contains(secret), "a secret leaked");
    }
    assert!(
        stderr.contains("1234"),
        "logs name numbers by their last digits:\n{stderr}"
    );
    assert!(
        !stderr.contains("4155551234"),
        "full numbers never appear in logs:\n{stderr}"
    );
}
