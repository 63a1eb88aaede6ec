//! Squads as a number's routing target (issue 12): `squad:` in an entry or in `defaults`, the
//! same ownership rules as assistants, Vapi getting `squadId` with `assistantId: null` (or the
//! reverse), the row recording it, dashboard routing shown with its cause, import, and the fleet
//! path — through the binary and the stand-in, on both backends.

use serde_json::{Value, json};

use crate::both_backends;
use crate::common::*;

const N1: &str = "+14155551234";
const N2: &str = "+14155551235";

fn in_vapi(w: &World, number: &str) -> Value {
    let found = w.vapi.find_by_number(number);
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

/// Vapi's routing of `number`: (assistantId, squadId), absent or null read as `None`.
fn routing(w: &World, number: &str) -> (Option<String>, Option<String>) {
    let n = in_vapi(w, number);
    let get = |k: &str| n.get(k).and_then(Value::as_str).map(str::to_string);
    (get("assistantId"), get("squadId"))
}

/// The row's (assigned_assistant_id, vapictl_squad_id), as text.
fn row_routing(w: &World, number: &str) -> Vec<Option<String>> {
    let rows = w.strings(&format!(
        "SELECT CAST(assigned_assistant_id AS TEXT), CAST(vapictl_squad_id AS TEXT) \
         FROM phone_numbers WHERE phone_number = '{number}'"
    ));
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows[0].clone()
}

fn plan_json(w: &World, spec: &std::path::Path) -> Value {
    let o = w.run(&["plan", "--format", "json", spec.to_str().unwrap()]);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o).1))
}

/// (number, field, cause) of every field change.
fn fields_of(plan: &Value) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| {
            let n = c["number"].as_str().unwrap().to_string();
            c["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |f| {
                    (
                        n.clone(),
                        f["field"].as_str().unwrap().to_string(),
                        f["cause"].as_str().unwrap().to_string(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    out
}

#[track_caller]
fn assert_converged(w: &World, spec: &std::path::Path) {
    let o = w.plan(spec);
    assert_code(&o, 0);
    assert!(text(&o).0.contains("No changes"), "{}", text(&o).0);
}

/// The bodies of the requests `method` `path…` that reached the stand-in since the last reset.
fn bodies(w: &World, method: &str, path_prefix: &str) -> Vec<Value> {
    w.vapi
        .request_log()
        .into_iter()
        .filter(|r| r.method == method && r.path.starts_with(path_prefix))
        .filter_map(|r| r.body)
        .collect()
}

both_backends!(
    a_squad_routes_the_number_and_switching_targets_sends_both_fields,
    |w: World| {
        let (bot_row, bot) = w.assistant("sales-bot", OWNER);
        let (squad_row, squad) = w.squad("night-shift", OWNER);
        let spec = w.write(
            &w.spec()
                .with(Entry::new(N1, "Main").squad("night-shift"))
                .with(Entry::new(N2, "Second").assistant("sales-bot")),
        );
        w.vapi.reset_log();
        assert_code(&w.apply(&spec), 0);
        assert_eq!(routing(&w, N1), (None, Some(squad.clone())));
        assert_eq!(routing(&w, N2), (Some(bot.clone()), None));
        // The create carried the squad and no assistant.
        let posts = bodies(&w, "POST", "/phone-number");
        let squad_post = posts.iter().find(|b| b["number"] == N1).unwrap();
        assert_eq!(squad_post["squadId"], squad.as_str());
        assert!(squad_post.get("assistantId").is_none(), "{squad_post}");
        // The rows record the assignment: the squad in vapictl's column.
        assert_eq!(row_routing(&w, N1), vec![None, Some(squad_row.to_string())]);
        assert_eq!(row_routing(&w, N2), vec![Some(bot_row.to_string()), None]);
        assert_converged(&w, &spec);

        // Swap the targets: each number's PATCH names both fields.
        let spec = w.write(
            &w.spec()
                .with(Entry::new(N1, "Main").assistant("sales-bot"))
                .with(Entry::new(N2, "Second").squad("night-shift")),
        );
        let plan = plan_json(&w, &spec);
        assert_eq!(
            fields_of(&plan),
            vec![
                (N1.into(), "assistantId".into(), "spec_edit".into()),
                (N1.into(), "squadId".into(), "spec_edit".into()),
                (N2.into(), "assistantId".into(), "spec_edit".into()),
                (N2.into(), "squadId".into(), "spec_edit".into()),
            ],
            "{plan:#}"
        );
        w.vapi.reset_log();
        assert_code(&w.apply(&spec), 0);
        let patches = bodies(&w, "PATCH", "/phone-number/");
        assert_eq!(patches.len(), 2, "{patches:?}");
        for p in &patches {
            let routed_to_squad = p["squadId"].is_string();
            assert_eq!(
                p["assistantId"].is_null(),
                routed_to_squad,
                "one target, the other null: {p}"
            );
            assert!(
                p.get("squadId").is_some() && p.get("assistantId").is_some(),
                "{p}"
            );
        }
        assert_eq!(routing(&w, N1), (Some(bot.clone()), None));
        assert_eq!(routing(&w, N2), (None, Some(squad.clone())));
        assert_eq!(row_routing(&w, N1), vec![Some(bot_row.to_string()), None]);
        assert_eq!(row_routing(&w, N2), vec![None, Some(squad_row.to_string())]);
        assert_converged(&w, &spec);

        // Neither: both cleared, in Vapi and in the row.
        let spec = w.write(
            &w.spec()
                .with(Entry::new(N1, "Main"))
                .with(Entry::new(N2, "Second")),
        );
        assert_code(&w.apply(&spec), 0);
        assert_eq!(routing(&w, N1), (None, None));
        assert_eq!(routing(&w, N2), (None, None));
        assert_eq!(row_routing(&w, N2), vec![None, None]);
        assert_converged(&w, &spec);
    }
);

both_backends!(
    defaults_give_a_squad_and_an_entry_names_its_own_target,
    |w: World| {
        let (_, bot) = w.assistant("sales-bot", OWNER);
        let (_, squad) = w.squad("night-shift", OWNER);
        const N3: &str = "+14155551236";
        let yaml = w
            .spec()
            .with(Entry::new(N1, "Main"))
            .with(Entry::new(N2, "Second").assistant("sales-bot"))
            .with(Entry::new(N3, "Third"))
            .to_yaml()
            .replacen("defaults:\n", "defaults:\n  squad: night-shift\n", 1)
            // `null` opts out of the default: no target at all.
            .replacen(
                "name: \"Third\"\n",
                "name: \"Third\"\n    assistant: null\n",
                1,
            );
        assert!(yaml.contains("assistant: null"), "{yaml}");
        let spec = w.path("spec.yaml");
        std::fs::write(&spec, yaml).unwrap();
        assert_code(&w.apply(&spec), 0);
        assert_eq!(routing(&w, N1), (None, Some(squad)));
        assert_eq!(routing(&w, N2), (Some(bot), None));
        assert_eq!(routing(&w, N3), (None, None));
        assert_converged(&w, &spec);
    }
);

both_backends!(
    another_users_squad_an_unknown_one_and_a_missing_one_are_refused_by_name,
    |w: World| {
        w.squad("their-squad", OTHER_USER);
        w.squad("night-shift", OWNER);
        let spec = w.write(&w.spec().with(Entry::new(N1, "Main").squad("their-squad")));
        let o = w.apply(&spec);
        assert_code(&o, 1);
        let err = text(&o).1;
        assert!(
            err.contains("`phoneNumbers[0].squad`")
                && err.contains("squad `their-squad` belongs to another user"),
            "{err}"
        );
        assert!(
            err.contains("one of its owner's squads"),
            "the hint speaks of squads: {err}"
        );

        let spec = w.write(&w.spec().with(Entry::new(N1, "Main").squad("day-shift")));
        let o = w.plan(&spec);
        assert_code(&o, 1);
        let err = text(&o).1;
        assert!(
            err.contains("unknown squad `day-shift`") && err.contains("night-shift"),
            "{err}"
        );

        // From `defaults`, the refusal points there.
        let yaml = w.spec().with(Entry::new(N1, "Main")).to_yaml().replacen(
            "defaults:\n",
            "defaults:\n  squad: their-squad\n",
            1,
        );
        let line = yaml
            .lines()
            .position(|l| l.contains("squad: their-squad"))
            .unwrap()
            + 1;
        std::fs::write(&spec, yaml).unwrap();
        let o = w.plan(&spec);
        assert_code(&o, 1);
        let err = text(&o).1;
        assert!(
            err.contains(&format!("spec.yaml:{line}:"))
                && err.contains("`defaults.squad`")
                && err.contains("belongs to another user"),
            "{err}"
        );

        // A row whose Vapi squad is gone.
        w.exec_sql(&format!(
            "INSERT INTO squads (id, user_id, name, vapi_squad_id) VALUES \
             ('{}', '{OWNER}', 'ghost', 'no-such-squad')",
            uuid::Uuid::new_v4()
        ));
        let spec = w.write(&w.spec().with(Entry::new(N1, "Main").squad("ghost")));
        let o = w.plan(&spec);
        assert_code(&o, 1);
        assert!(
            text(&o).1.contains("points at Vapi squad `no-such-squad`"),
            "{}",
            text(&o).1
        );
        assert_eq!(w.vapi.mutating_calls(), 0, "nothing was written");
        assert!(w.recorded().rows.is_empty());
    }
);

#[test]
fn both_targets_in_one_entry_or_in_defaults_are_a_validation_error() {
    let w = World::sqlite();
    let spec = w.write(
        &w.spec().with(
            Entry::new(N1, "Main")
                .assistant("sales-bot")
                .squad("night-shift"),
        ),
    );
    let o = w.run(&["validate", spec.to_str().unwrap()]);
    assert_code(&o, 1);
    let err = text(&o).1;
    assert!(
        err.contains("phoneNumbers[0].squad") && err.contains("both `assistant` and `squad`"),
        "{err}"
    );
    assert!(err.contains("hint: keep one"), "{err}");
    // With its line and column.
    assert!(err.contains("spec.yaml:"), "{err}");

    let yaml = w.spec().with(Entry::new(N1, "Main")).to_yaml().replacen(
        "defaults:\n",
        "defaults:\n  assistant: sales-bot\n  squad: \"\"\n",
        1,
    );
    std::fs::write(&spec, yaml).unwrap();
    let o = w.run(&["validate", spec.to_str().unwrap()]);
    assert_code(&o, 1);
    let err = text(&o).1;
    assert!(
        err.contains("defaults.squad") && err.contains("squad is empty"),
        "{err}"
    );
    assert!(err.contains("both `assistant` and `squad`"), "{err}");
    assert_eq!(w.vapi.request_log().len(), 0, "nothing was read");
}

both_backends!(
    routing_set_in_the_dashboard_shows_with_its_cause,
    |w: World| {
        let (_, bot) = w.assistant("sales-bot", OWNER);
        let (_, squad) = w.squad("night-shift", OWNER);
        let (_, other_squad) = w.squad("day-shift", OWNER);
        let spec = w.write(
            &w.spec()
                .with(Entry::new(N1, "Main").squad("night-shift"))
                .with(Entry::new(N2, "Second")),
        );
        assert_code(&w.apply(&spec), 0);
        // The dashboard re-routes N1 to another squad and gives N2 (no target in the spec) an
        // assistant.
        let id = |n: &str| in_vapi(&w, n)["id"].as_str().unwrap().to_string();
        w.vapi
            .patch_number(&id(N1), json!({"squadId": other_squad}));
        w.vapi.patch_number(&id(N2), json!({"assistantId": bot}));
        let o = w.run(&["drift", "--format", "json", spec.to_str().unwrap()]);
        assert_code(&o, 2);
        let drift: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            fields_of(&drift),
            vec![
                (
                    N1.into(),
                    "squadId".into(),
                    "vapi_edited_out_of_band".into()
                ),
                (
                    N2.into(),
                    "assistantId".into(),
                    "vapi_edited_out_of_band".into()
                ),
            ]
        );
        let n1 = drift["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["number"] == N1)
            .unwrap();
        assert_eq!(n1["fields"][0]["before"], other_squad.as_str());
        assert_eq!(n1["fields"][0]["after"], squad.as_str());
        assert_code(&w.apply(&spec), 0);
        assert_eq!(routing(&w, N1), (None, Some(squad)));
        assert_eq!(routing(&w, N2), (None, None));
        assert_converged(&w, &spec);
    }
);

both_backends!(
    import_writes_the_squad_and_the_round_trip_is_empty,
    |w: World| {
        w.assistant("sales-bot", OWNER);
        w.squad("night-shift", OWNER);
        let spec = w.write(
            &w.spec()
                .with(Entry::new(N1, "Main").squad("night-shift"))
                .with(Entry::new(N2, "Second").assistant("sales-bot")),
        );
        assert_code(&w.apply(&spec), 0);
        let o = w.run(&["import", "--owner", OWNER]);
        assert_code(&o, 0);
        let yaml = text(&o).0;
        assert!(yaml.contains("squad: \"night-shift\""), "{yaml}");
        assert!(yaml.contains("assistant: \"sales-bot\""), "{yaml}");
        let imported = w.path("imported.yaml");
        std::fs::write(&imported, &yaml).unwrap();
        assert_converged(&w, &imported);

        // Moved to the squad in the dashboard: the row still records the assistant, but Vapi's
        // routing is what answers calls, and the import keeps it (no assistant brought back).
        let id = in_vapi(&w, N2)["id"].as_str().unwrap().to_string();
        let squad = in_vapi(&w, N1)["squadId"].as_str().unwrap().to_string();
        w.vapi
            .patch_number(&id, json!({"assistantId": null, "squadId": squad}));
        let o = w.run(&["import", "--owner", OWNER]);
        assert_code(&o, 0);
        let (yaml, err) = text(&o);
        assert!(!yaml.contains("sales-bot"), "{yaml}");
        assert!(!err.contains("both an assistant and a squad"), "{err}");
        std::fs::write(&imported, &yaml).unwrap();
        // Nothing changes in Vapi: only the row catches up with it.
        let plan = plan_json(&w, &imported);
        for (n, field, _) in fields_of(&plan) {
            assert!(
                n == N2 && ["assignedAssistantId", "vapictlSquadId"].contains(&field.as_str()),
                "{plan:#}"
            );
        }
        let before = w.vapi.mutating_calls();
        assert_code(&w.apply(&imported), 0);
        assert_eq!(
            w.vapi.mutating_calls(),
            before,
            "Vapi already routes as the spec says"
        );
        assert_eq!(routing(&w, N2), (None, Some(squad)));
        assert_converged(&w, &imported);
    }
);

#[test]
fn a_fleet_run_routes_each_owner_to_its_own_squads() {
    let w = World::sqlite();
    let (_, mine) = w.squad("night-shift", OWNER);
    let (_, theirs) = w.squad("night-shift", OTHER_USER);
    let dir = w.path("fleet");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("mine.yaml"),
        w.spec()
            .with(Entry::new(N1, "Mine").squad("night-shift"))
            .to_yaml(),
    )
    .unwrap();
    std::fs::write(
        dir.join("theirs.yaml"),
        SpecFile::new(OTHER_USER, SID, &w.token_armored)
            .with(Entry::new(N2, "Theirs").squad("night-shift"))
            .to_yaml(),
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    assert_code(&w.run(&["apply", "--auto-approve", d]), 0);
    assert_eq!(routing(&w, N1), (None, Some(mine)));
    assert_eq!(routing(&w, N2), (None, Some(theirs)));
    let o = w.run(&["plan", "--detailed-exitcode", d]);
    assert_code(&o, 0);
    // One squad listing for the whole run.
    w.vapi.reset_log();
    w.run(&["plan", d]);
    let squad_lists = w
        .vapi
        .request_log()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/squad")
        .count();
    assert_eq!(squad_lists, 1);
}
