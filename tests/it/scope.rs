//! End to end for issue 9's plan-truth defects: what vapictl never touches (other providers,
//! other users' numbers in any form), what the deletion gate counts, rows the application wrote
//! in its own way, re-pointed rows, causes, and refusals that point at the field.

use serde_json::{Value, json};

use crate::both_backends;
use crate::common::*;

const N1: &str = "+14155551234";
const N2: &str = "+14155551235";
const N3: &str = "+14155551236";
const N4: &str = "+14155551237";

const OTHER_PROVIDERS: [&str; 4] = ["vonage", "telnyx", "vapi", "byo-phone-number"];

fn plan_json(w: &World, spec: &std::path::Path) -> Value {
    let o = w.run(&["plan", "--format", "json", spec.to_str().unwrap()]);
    assert_code(&o, 0);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o).0))
}

#[track_caller]
fn assert_converged(w: &World, spec: &std::path::Path) {
    let o = w.plan(spec);
    assert_code(&o, 0);
    assert!(text(&o).0.contains("No changes"), "{}", text(&o).0);
}

/// A row as the application would write it, for `user`.
fn app_row(w: &World, user: &str, number: &str, provider: &str, vapi_id: Option<&str>) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let vapi = vapi_id.map_or("NULL".to_string(), |v| format!("'{v}'"));
    w.exec_sql(&format!(
        "INSERT INTO phone_numbers (id, user_id, phone_number, friendly_name, provider, vapi_phone_id, twilio_account_sid, twilio_auth_token) \
         VALUES ('{id}', '{user}', '{number}', 'Main', '{provider}', {vapi}, '{SID}', '{}')",
        w.token_armored
    ));
    id
}

fn seed(w: &World, number: &str, provider: &str) -> String {
    let mut doc = json!({"provider": provider, "number": number, "name": "Main"});
    if provider == "twilio" {
        doc["twilioAccountSid"] = json!(SID);
        doc["twilioAuthToken"] = json!(TOKEN);
    }
    w.vapi.seed_raw(doc).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Defect 1: numbers of other providers are out of scope on every path
// ---------------------------------------------------------------------------------------------

both_backends!(
    other_provider_numbers_are_never_deleted_imported_or_adopted,
    |w: World| {
        let numbers = [N1, N2, N3, N4];
        let mut ids = Vec::new();
        for (n, p) in numbers.iter().zip(OTHER_PROVIDERS) {
            let id = seed(&w, n, p);
            // Half the rows say Twilio (or nothing): Vapi's provider decides then.
            let row_provider = if *n == N2 { "twilio" } else { p };
            app_row(&w, OWNER, n, row_provider, Some(&id));
            ids.push(id);
        }
        // A row of another provider whose number is not in Vapi at all.
        app_row(&w, OWNER, "+14155551238", "vonage", None);

        let spec = w.write(&w.spec());
        let v = plan_json(&w, &spec);
        assert_eq!(v["changes"], json!([]), "{v:#}");
        assert_eq!(v["out_of_scope"].as_array().unwrap().len(), 5, "{v:#}");
        assert_eq!(v["unmanaged"], json!([]), "{v:#}");

        assert_code(&w.apply(&spec), 0);
        assert_code(&w.run(&["drift", spec.to_str().unwrap()]), 0);
        for id in &ids {
            assert!(
                w.vapi.numbers().iter().any(|n| n["id"] == id.as_str()),
                "{id} is still in Vapi"
            );
        }
        assert_eq!(w.recorded().rows.len(), 5, "no row was deleted");
        assert_eq!(w.vapi.mutating_calls(), 0);

        let o = w.run(&["import", "--owner", OWNER, "--adopt"]);
        assert_code(&o, 0);
        let (yaml, err) = text(&o);
        for n in numbers {
            assert!(
                !yaml.contains(n),
                "{n} is not written as a Twilio entry:\n{yaml}"
            );
        }
        assert!(err.contains("`vonage` number"), "{err}");
        assert!(yaml.contains("phoneNumbers: []"), "{yaml}");
    }
);

both_backends!(
    a_spec_entry_for_another_providers_number_is_refused_with_a_safe_hint,
    |w: World| {
        seed(&w, N1, "vonage");
        let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
        let o = w.plan(&spec);
        assert_code(&o, 1);
        let err = text(&o).1;
        assert!(
            err.contains("vapictl leaves `vonage` numbers alone"),
            "{err}"
        );
        assert_eq!(w.vapi.mutating_calls(), 0);
    }
);

// ---------------------------------------------------------------------------------------------
// Defect 2: the deletion gate
// ---------------------------------------------------------------------------------------------

both_backends!(
    an_empty_list_needs_confirmation_whatever_is_protected_or_stale,
    |w: World| {
        let protect = |n: &str| Entry {
            protected: true,
            ..Entry::new(n, "Kept")
        };
        let spec = w.write(
            &w.spec()
                .with(protect(N1))
                .with(protect(N2))
                .with(Entry::new(N3, "Goes"))
                .with(Entry::new(N4, "Stale")),
        );
        assert_code(&w.apply(&spec), 0);
        let stale = w.vapi.find_by_number(N4)[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        w.vapi.delete_number(&stale);

        let empty = w.write(&w.spec());
        let o = w.apply(&empty);
        assert_code(&o, 3);
        assert!(text(&o).1.contains("--allow-deletes 1"), "{}", text(&o).1);
        assert_eq!(w.vapi.find_by_number(N3).len(), 1, "nothing was released");
        assert_eq!(w.recorded().rows.len(), 4, "no row was deleted");

        let o = w.run(&[
            "apply",
            "--auto-approve",
            "--allow-deletes",
            "1",
            empty.to_str().unwrap(),
        ]);
        assert_code(&o, 0);
        assert!(w.vapi.find_by_number(N3).is_empty());
        assert_eq!(w.vapi.find_by_number(N1).len(), 1, "protected");
        assert_converged(&w, &empty);
    }
);

// ---------------------------------------------------------------------------------------------
// Defect 3: rows the application wrote in its own form
// ---------------------------------------------------------------------------------------------

/// A number, and the form the application stored it in.
const FORMS: [(&str, &str); 5] = [
    ("+14155557002", "4155557002"),
    ("+14155557003", "+1 415-555-7003"),
    ("+14155557004", "(415) 555-7004"),
    ("+14155557005", "0014155557005"),
    ("+14155557006", "1-415-555-7006"),
];

both_backends!(
    another_users_row_in_any_form_or_by_vapi_id_is_theirs,
    |w: World| {
        for (number, stored) in FORMS {
            seed(&w, number, "twilio");
            app_row(&w, OTHER_USER, stored, "twilio", None);
        }
        // A row of another user that records the Vapi id, whatever its number says.
        let id = seed(&w, N1, "twilio");
        app_row(&w, OTHER_USER, "see notes", "twilio", Some(&id));

        for number in FORMS.iter().map(|(n, _)| *n).chain([N1]) {
            let spec = w.write(&w.spec().with(Entry::new(number, "Mine")));
            let o = w.apply(&spec);
            assert_code(&o, 1);
            let err = text(&o).1;
            assert!(err.contains(number) && err.contains(OTHER_USER), "{err}");
        }
        assert_eq!(w.vapi.mutating_calls(), 0, "no PATCH");
        assert!(w.recorded().rows.is_empty(), "no insert");

        // The owner's plan does not show them either.
        let v = plan_json(&w, &w.write(&w.spec()));
        assert_eq!(v["other_users_count"], 6, "{v:#}");
        assert_eq!(v["unmanaged"], json!([]), "{v:#}");
    }
);

both_backends!(
    owners_row_in_another_form_is_updated_in_place,
    |w: World| {
        let mut spec = w.spec();
        let mut rows = Vec::new();
        for (number, stored) in FORMS {
            let id = seed(&w, number, "twilio");
            rows.push((app_row(&w, OWNER, stored, "twilio", Some(&id)), number));
            spec = spec.with(Entry::new(number, "Main"));
        }
        let spec = w.write(&spec);
        let v = plan_json(&w, &spec);
        let changes = v["changes"].as_array().unwrap();
        assert_eq!(changes.len(), FORMS.len(), "{v:#}");
        for c in changes {
            assert_eq!(c["action"], "update", "{c:#}");
            let f = &c["fields"][0];
            assert_eq!(f["field"], "phoneNumber", "{c:#}");
            assert_eq!(f["after"], c["number"]);
            assert_eq!(f["cause"], "database_edited_out_of_band");
        }
        assert_code(&w.apply(&spec), 0);
        let rec = w.recorded();
        for (row_id, number) in rows {
            assert_eq!(rec.rows[number].id.to_string(), row_id, "the same row");
        }
        assert_eq!(rec.rows.len(), FORMS.len());
        assert_eq!(w.vapi.numbers().len(), FORMS.len(), "nothing created");
        assert_converged(&w, &spec);
    }
);

// ---------------------------------------------------------------------------------------------
// Defect 5: a row re-pointed to another Vapi copy
// ---------------------------------------------------------------------------------------------

both_backends!(
    the_copy_in_use_gets_the_token_when_the_recorded_one_is_gone,
    |w: World| {
        let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
        assert_code(&w.apply(&spec), 0);
        let first = w.vapi.find_by_number(N1)[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let second = w
            .vapi
            .seed_raw(json!({"provider": "twilio", "number": N1, "name": "Main", "twilioAccountSid": SID}))
            .unwrap();
        w.vapi.delete_number(&first);

        let o = w.plan(&spec);
        assert_code(&o, 2);
        let out = text(&o).0;
        assert!(
            out.contains(&format!("`{first}` no longer exists")),
            "{out}"
        );
        assert_code(&w.apply(&spec), 0);
        assert_eq!(w.vapi.token_of(&second).as_deref(), Some(TOKEN));
        assert_eq!(
            w.recorded().rows[N1].vapi_phone_id.as_deref(),
            Some(second.as_str())
        );
        assert_converged(&w, &spec);
    }
);

// ---------------------------------------------------------------------------------------------
// Defect 6: import --adopt keeps an assistant that has no row
// ---------------------------------------------------------------------------------------------

#[test]
fn import_adopt_keeps_an_assistant_without_a_row_and_warns() {
    let w = World::sqlite();
    let vid = w.vapi.seed_assistant("dashboard-bot");
    w.vapi.seed_twilio_number(N1, "Dashboard", Some(&vid));
    let o = w.run(&["import", "--owner", OWNER, "--adopt"]);
    assert_code(&o, 0);
    let (yaml, err) = text(&o);
    assert!(yaml.contains(&format!("assistant: \"{vid}\"")), "{yaml}");
    assert!(
        err.contains("has no row in `assistants`") && err.contains(&vid),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Defect 9: causes
// ---------------------------------------------------------------------------------------------

both_backends!(causes_follow_where_the_change_was_made, |w: World| {
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    assert_code(&w.apply(&spec), 0);
    w.exec_sql(&format!(
        "UPDATE phone_numbers SET friendly_name = 'Edited in the app' WHERE phone_number = '{N1}'"
    ));
    let o = w.run(&["drift", "--format", "json", spec.to_str().unwrap()]);
    assert_code(&o, 2);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["changes"][0]["cause"], "database_edited_out_of_band",
        "{v:#}"
    );
    assert_code(&w.apply(&spec), 0);

    let spec = w.write(&w.spec().with(Entry {
        server_url: Some("https://hooks.example.com/vapi".into()),
        sms_enabled: Some(false),
        ..Entry::new(N1, "Main")
    }));
    let o = w.run(&["drift", "--format", "json", spec.to_str().unwrap()]);
    assert_code(&o, 2);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    for f in v["changes"][0]["fields"].as_array().unwrap() {
        assert_eq!(f["cause"], "spec_edit", "{v:#}");
    }
    assert_code(&w.apply(&spec), 0);

    // What vapictl applied is remembered: a changed URL in the spec is a spec edit, one in the
    // dashboard is an edit in Vapi.
    let drift_cause = |spec: &std::path::Path| {
        let o = w.run(&["drift", "--format", "json", spec.to_str().unwrap()]);
        assert_code(&o, 2);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["changes"][0]["cause"].as_str().unwrap().to_string()
    };
    let moved = w.write(&w.spec().with(Entry {
        server_url: Some("https://hooks.example.com/v2".into()),
        sms_enabled: Some(false),
        ..Entry::new(N1, "Main")
    }));
    assert_eq!(drift_cause(&moved), "spec_edit");
    let spec = w.write(&w.spec().with(Entry {
        server_url: Some("https://hooks.example.com/vapi".into()),
        sms_enabled: Some(false),
        ..Entry::new(N1, "Main")
    }));
    let id = w.vapi.find_by_number(N1)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    w.vapi.patch_number(
        &id,
        json!({"server": {"url": "https://elsewhere.example.com"}}),
    );
    assert_eq!(drift_cause(&spec), "vapi_edited_out_of_band");
    assert_code(&w.apply(&spec), 0);
    assert_converged(&w, &spec);
});

// ---------------------------------------------------------------------------------------------
// Defect 11: refusals point at the field
// ---------------------------------------------------------------------------------------------

#[test]
fn assistant_refusals_give_the_fields_position() {
    let w = World::sqlite();
    w.assistant("their-bot", OTHER_USER);
    for reference in ["their-bot", "nobody"] {
        let spec = w.write(
            &w.spec()
                .with(Entry::new(N2, "Other"))
                .with(Entry::new(N1, "Main").assistant(reference)),
        );
        let source = std::fs::read_to_string(&spec).unwrap();
        let line = source
            .lines()
            .position(|l| l.trim_start().starts_with("assistant:"))
            .unwrap()
            + 1;
        let o = w.plan(&spec);
        assert_code(&o, 1);
        let err = text(&o).1;
        let at = format!(
            "{}:{line}:16: `phoneNumbers[1].assistant`: `{N1}`: ",
            spec.display()
        );
        assert!(err.contains(&at), "{at}\n{err}");
        assert!(err.contains("\n  hint: "), "{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Defect 12: other users' numbers are counted, never shown
// ---------------------------------------------------------------------------------------------

both_backends!(other_users_numbers_never_appear_in_a_plan, |w: World| {
    let theirs = seed(&w, N2, "twilio");
    app_row(&w, OTHER_USER, "4155551235", "twilio", None);
    let also_theirs = seed(&w, N3, "twilio");
    app_row(&w, OTHER_USER, N3, "twilio", Some(&also_theirs));
    let nobodys = seed(&w, N4, "twilio");
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    for format in ["text", "markdown", "json"] {
        let o = w.run(&["plan", "--format", format, spec.to_str().unwrap()]);
        assert_code(&o, 0);
        let out = text(&o).0;
        for hidden in [N2, N3, theirs.as_str(), also_theirs.as_str()] {
            assert!(!out.contains(hidden), "{format} shows {hidden}:\n{out}");
        }
        if format != "markdown" {
            assert!(
                out.contains(N4),
                "{format}: nobody's number is listed:\n{out}"
            );
        }
    }
    let v = plan_json(&w, &spec);
    assert_eq!(v["other_users_count"], 2);
    assert_eq!(v["unmanaged"][0]["id"], nobodys.as_str());
    let o = w.run(&["plan", spec.to_str().unwrap()]);
    assert!(
        text(&o)
            .0
            .contains("2 numbers in Vapi belong to other users")
    );
});

// ---------------------------------------------------------------------------------------------
// Defect 3 in a fleet run: the run's one observation is narrowed per owner; rows in another
// form, and Vapi ids recorded for another user, must read exactly as in one spec's plan.
// ---------------------------------------------------------------------------------------------

/// Writes `spec` beside a second, unrelated owner's spec in a directory, for a fleet run.
fn fleet_dir(w: &World, spec: &SpecFile) -> std::path::PathBuf {
    let dir = w.path("fleet");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("owner.yaml"), spec.to_yaml()).unwrap();
    std::fs::write(
        dir.join("bystander.yaml"),
        SpecFile::new(
            "3f1c2b7e-0000-4000-8000-00000000b0b0",
            SID,
            &w.token_armored,
        )
        .with(Entry::new("+14155559999", "Bystander"))
        .to_yaml(),
    )
    .unwrap();
    dir
}

both_backends!(
    fleet_another_users_row_in_any_form_or_by_vapi_id_is_theirs,
    |w: World| {
        for (number, stored) in FORMS {
            seed(&w, number, "twilio");
            app_row(&w, OTHER_USER, stored, "twilio", None);
        }
        let id = seed(&w, N1, "twilio");
        app_row(&w, OTHER_USER, "see notes", "twilio", Some(&id));

        let mut spec = w.spec();
        for number in FORMS.iter().map(|(n, _)| *n).chain([N1]) {
            spec = spec.with(Entry::new(number, "Mine"));
        }
        let dir = fleet_dir(&w, &spec);
        let o = w.run(&["apply", "--auto-approve", dir.to_str().unwrap()]);
        assert_code(&o, 1);
        let (out, err) = text(&o);
        let all = format!("{out}{err}");
        for number in FORMS.iter().map(|(n, _)| *n).chain([N1]) {
            assert!(all.contains(number), "{number} is refused by name:\n{all}");
        }
        assert!(all.contains(OTHER_USER), "{all}");
        // The owner was refused as a whole; the bystander was applied.
        let rec = w.recorded();
        assert!(rec.rows.is_empty(), "no insert for the owner");
        assert_eq!(w.vapi.find_by_number("+14155559999").len(), 1);
        let patched = w
            .vapi
            .request_log()
            .into_iter()
            .filter(|r| r.method == "PATCH")
            .count();
        assert_eq!(patched, 0, "no other user's number was PATCHed");
    }
);

both_backends!(
    fleet_owners_row_in_another_form_is_updated_in_place,
    |w: World| {
        let mut spec = w.spec();
        let mut rows = Vec::new();
        for (number, stored) in FORMS {
            let id = seed(&w, number, "twilio");
            rows.push((app_row(&w, OWNER, stored, "twilio", Some(&id)), number));
            spec = spec.with(Entry::new(number, "Main"));
        }
        let dir = fleet_dir(&w, &spec);
        let o = w.run(&["plan", "--format", "json", dir.to_str().unwrap()]);
        assert_code(&o, 0);
        let run: Value = serde_json::from_slice(&o.stdout).unwrap();
        let mine = run["plans"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["owner"] == OWNER)
            .unwrap_or_else(|| panic!("{run:#}"))
            .clone();
        let changes = mine["changes"].as_array().unwrap();
        assert_eq!(changes.len(), FORMS.len(), "{mine:#}");
        for c in changes {
            assert_eq!(c["action"], "update", "{c:#}");
            assert_eq!(c["fields"][0]["field"], "phoneNumber", "{c:#}");
            assert_eq!(c["fields"][0]["after"], c["number"]);
        }
        assert_code(
            &w.run(&["apply", "--auto-approve", dir.to_str().unwrap()]),
            0,
        );
        let rec = w.recorded();
        for (row_id, number) in rows {
            assert_eq!(rec.rows[number].id.to_string(), row_id, "the same row");
        }
        assert_eq!(
            w.vapi.numbers().len(),
            FORMS.len() + 1,
            "only the bystander created"
        );
    }
);
