//! Fleet runs: every owner's spec in one run — one Vapi read, one PR comment, owners isolated.

use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::both_backends;
use crate::common::*;

/// The `i`th owner of a fleet.
fn owner(i: usize) -> String {
    format!("3f1c2b7e-0000-4000-8000-{i:012}")
}

/// A distinct, valid US number for every `i` below 10,000.
fn number(i: usize) -> String {
    format!("+1415555{i:04}")
}

/// Owner `i`'s spec with `per` (at most 100) numbers of its own: owner 0 has numbers 0.., owner
/// 1 numbers 100.., and so on.
fn owner_spec(w: &World, i: usize, per: usize) -> SpecFile {
    (i * 100..i * 100 + per).fold(SpecFile::new(&owner(i), SID, &w.token_armored), |s, n| {
        s.with(Entry::new(&number(n), &format!("Line {n}")))
    })
}

/// Writes `spec` as `DIR/<name>.yaml` under the world and returns the directory.
fn write_in(w: &World, dir: &str, name: &str, spec: &SpecFile) -> PathBuf {
    let d = w.path(dir);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(format!("{name}.yaml")), spec.to_yaml()).unwrap();
    d
}

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o).0))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

trait RecordedFor {
    fn recorded_for(&self, owner: &str) -> usize;
}

impl RecordedFor for World {
    /// How many rows the database holds for `owner`.
    fn recorded_for(&self, owner: &str) -> usize {
        let store = self.store();
        self.block_on(store.load_recorded(Uuid::parse_str(owner).unwrap(), &[], &[]))
            .unwrap()
            .rows
            .len()
    }
}

both_backends!(
    forty_owners_one_listing_one_comment_and_isolated_failures,
    |w: World| {
        const OWNERS: usize = 40;
        const PER: usize = 75;
        const BAD: usize = 17;
        let mut dir = PathBuf::new();
        for i in 0..OWNERS {
            let mut spec = owner_spec(&w, i, PER);
            if i == BAD {
                spec = spec.with(Entry::new("+1 415 not a number", "Broken"));
            }
            dir = write_in(&w, "vapi", &format!("owner-{i:02}"), &spec);
        }
        let bad_file = dir.join(format!("owner-{BAD:02}.yaml"));

        // One markdown document under the limit, one marker, the bad owner marked failed.
        w.vapi.reset_log();
        let o = w.run(&[
            "plan",
            "--format",
            "markdown",
            "--detailed-exitcode",
            s(&dir),
        ]);
        assert_code(&o, 1);
        let md = text(&o).0;
        assert_eq!(md.matches("<!-- vapictl-plan -->").count(), 1, "{md}");
        assert!(md.starts_with("<!-- vapictl-plan -->"));
        assert!(md.chars().count() <= 65_536, "{} characters", md.len());
        assert!(
            md.contains("❌ failed") && md.contains(&format!("owner-{BAD:02}.yaml")),
            "{md}"
        );
        assert!(
            md.contains("Truncated"),
            "3,000 creates do not fit: {}",
            md.len()
        );
        assert!(md.contains("--format json"), "the cut points at the JSON");
        // One listing for the whole run: a page each of numbers, assistants and squads, not 40
        // of each.
        assert!(
            w.vapi.list_calls() <= 3,
            "{} list calls",
            w.vapi.list_calls()
        );
        assert_eq!(w.vapi.request_log().len(), w.vapi.list_calls());

        // JSON: the run object; each owner's plan holds only its own numbers.
        let o = w.run(&["plan", "--format", "json", s(&dir)]);
        assert_code(&o, 1);
        let v = json(&o);
        assert_eq!(v["kind"], "run");
        assert_eq!(v["format_version"], 1);
        assert_eq!(v["summary"]["owners"], OWNERS);
        assert_eq!(v["summary"]["failed"], 1);
        assert_eq!(v["summary"]["create"], (OWNERS - 1) * PER);
        assert_eq!(v["failed"][0]["spec"], s(&bad_file));
        assert_eq!(v["failed"][0]["owner"], owner(BAD));
        let plans = v["plans"].as_array().unwrap();
        assert_eq!(plans.len(), OWNERS - 1);
        for p in plans {
            let i = (0..OWNERS).find(|i| p["owner"] == owner(*i)).unwrap();
            assert!(
                p["spec"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("owner-{i:02}.yaml"))
            );
            assert_eq!(p["format_version"], 1);
            for c in p["changes"].as_array().unwrap() {
                let n: usize = c["number"].as_str().unwrap()[8..].parse().unwrap();
                assert_eq!(n / 100, i, "owner {i}'s plan shows {}", c["number"]);
            }
        }

        // Apply converges the 39 others and exits 1 for the bad one.
        let o = w.run(&["apply", "--auto-approve", "--parallelism", "16", s(&dir)]);
        assert_code(&o, 1);
        let (out, err) = text(&o);
        assert!(
            out.contains("39 applied, 0 unchanged, 1 failed, 0 refused"),
            "{out}"
        );
        assert!(
            err.contains(&format!("owner {}", owner(0))),
            "a progress line per owner: {err}"
        );
        assert_eq!(w.vapi.numbers().len(), (OWNERS - 1) * PER);
        assert_eq!(w.recorded_for(&owner(BAD)), 0);
        assert_eq!(w.recorded_for(&owner(0)), PER);

        // A new plan over them exits 0, again from one listing.
        std::fs::remove_file(&bad_file).unwrap();
        w.vapi.reset_log();
        let o = w.run(&["plan", "--detailed-exitcode", s(&dir)]);
        assert_code(&o, 0);
        assert!(
            text(&o).0.contains("0 with changes, 39 unchanged"),
            "{}",
            text(&o).0
        );
        assert!(
            w.vapi.list_calls() <= 5,
            "{} list calls",
            w.vapi.list_calls()
        );
    }
);

both_backends!(conflicting_specs_are_refused_before_any_read, |w: World| {
    let a = owner_spec(&w, 0, 2);
    write_in(&w, "dup", "a", &a);
    let dir = write_in(
        &w,
        "dup",
        "b",
        &a.clone().with(Entry::new(&number(50), "Other")),
    );
    let o = w.run(&["plan", s(&dir)]);
    assert_code(&o, 1);
    let err = text(&o).1;
    assert!(
        err.contains(&owner(0)) && err.contains("a.yaml") && err.contains("b.yaml"),
        "{err}"
    );

    // One number in two owners' specs.
    let b = SpecFile::new(&owner(1), SID, &w.token_armored).with(Entry::new(&number(1), "Shared"));
    write_in(&w, "shared", "a", &a);
    let dir = write_in(&w, "shared", "b", &b);
    let o = w.run(&["apply", "--auto-approve", s(&dir)]);
    assert_code(&o, 1);
    let err = text(&o).1;
    assert!(
        err.contains(&number(1)) && err.contains("a.yaml") && err.contains("b.yaml"),
        "{err}"
    );
    assert!(w.vapi.request_log().is_empty(), "nothing read from Vapi");
    assert_eq!(w.recorded_for(&owner(0)), 0);
});

both_backends!(
    a_gate_tripped_owner_is_untouched_while_the_others_apply,
    |w: World| {
        let dir = write_in(&w, "vapi", "a", &owner_spec(&w, 0, 8));
        write_in(&w, "vapi", "b", &owner_spec(&w, 1, 2));
        assert_code(&w.run(&["apply", "--auto-approve", s(&dir)]), 0);
        assert_eq!(w.vapi.numbers().len(), 10);

        // Owner a empties its list (8 implicit deletes); owner b adds a number.
        write_in(
            &w,
            "vapi",
            "a",
            &SpecFile::new(&owner(0), SID, &w.token_armored),
        );
        write_in(
            &w,
            "vapi",
            "b",
            &owner_spec(&w, 1, 2).with(Entry::new(&number(199), "New")),
        );
        let o = w.run(&["apply", "--auto-approve", s(&dir)]);
        assert_code(&o, 3);
        assert!(text(&o).0.contains("--allow-deletes 8"), "{}", text(&o).0);
        assert_eq!(w.recorded_for(&owner(0)), 8, "owner a untouched");
        assert_eq!(w.recorded_for(&owner(1)), 3, "owner b applied");
        assert_eq!(w.vapi.numbers().len(), 11);

        // The confirmation is the exact total of the tripped owners' deletes.
        let o = w.run(&["apply", "--auto-approve", "--allow-deletes", "7", s(&dir)]);
        assert_code(&o, 3);
        let o = w.run(&["apply", "--auto-approve", "--allow-deletes", "8", s(&dir)]);
        assert_code(&o, 0);
        assert_eq!(w.recorded_for(&owner(0)), 0);
        assert_eq!(w.vapi.numbers().len(), 3);
        assert_code(&w.run(&["plan", "--detailed-exitcode", s(&dir)]), 0);

        // Drift over the run: 0 in sync, 2 when any owner drifted.
        assert_code(&w.run(&["drift", s(&dir)]), 0);
        let id = w.vapi.find_by_number(&number(100))[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        w.vapi
            .patch_number(&id, serde_json::json!({"name": "Dashboard edit"}));
        let o = w.run(&["drift", "--format", "json", s(&dir)]);
        assert_code(&o, 2);
        let v = json(&o);
        assert_eq!(v["kind"], "run");
        assert_eq!(v["summary"]["with_changes"], 1);
    }
);

both_backends!(
    import_all_round_trips_and_orphans_are_reported,
    |w: World| {
        let dir = write_in(&w, "vapi", "a", &owner_spec(&w, 0, 3));
        write_in(&w, "vapi", "b", &owner_spec(&w, 1, 2));
        write_in(&w, "vapi", "c", &owner_spec(&w, 2, 1));
        assert_code(&w.run(&["apply", "--auto-approve", s(&dir)]), 0);
        w.vapi.seed_twilio_number(&number(500), "Nobody's", None);

        let out = w.path("imported");
        let o = w.run(&["import", "--all", "--out-dir", s(&out)]);
        assert_code(&o, 0);
        for i in 0..3 {
            assert!(out.join(format!("{}.yaml", owner(i))).exists());
        }
        let o = w.run(&["plan", "--detailed-exitcode", s(&out)]);
        assert_code(&o, 0);
        // Never overwritten.
        let o = w.run(&["import", "--all", "--out-dir", s(&out)]);
        assert_code(&o, 1);
        assert!(
            text(&o).1.contains("refusing to overwrite"),
            "{}",
            text(&o).1
        );

        // An owner without a spec in the run is reported and never touched.
        std::fs::remove_file(out.join(format!("{}.yaml", owner(2)))).unwrap();
        let o = w.run(&["plan", "--format", "json", "--detailed-exitcode", s(&out)]);
        assert_code(&o, 0);
        let v = json(&o);
        assert_eq!(v["orphaned"][0]["owner"], owner(2));
        assert_eq!(v["orphaned"][0]["rows"], 1);
        assert_eq!(v["unmanaged"].as_array().unwrap().len(), 1);
        assert_eq!(v["unmanaged"][0]["number"], number(500));
        assert_code(&w.run(&["apply", "--auto-approve", s(&out)]), 0);
        assert_eq!(w.recorded_for(&owner(2)), 1);
    }
);

both_backends!(
    a_fleet_saved_plan_applies_the_valid_owners_and_refuses_the_stale_one,
    |w: World| {
        let dir = write_in(&w, "vapi", "a", &owner_spec(&w, 0, 2));
        write_in(&w, "vapi", "b", &owner_spec(&w, 1, 2));
        assert_code(&w.run(&["apply", "--auto-approve", s(&dir)]), 0);
        let renamed = |w: &World, i: usize| {
            let mut spec = owner_spec(w, i, 2);
            spec.entries[0].name = "Renamed".into();
            spec
        };
        write_in(&w, "vapi", "a", &renamed(&w, 0));
        write_in(&w, "vapi", "b", &renamed(&w, 1));
        let o = w.run(&["plan", "--out", "run.json", s(&dir)]);
        assert_code(&o, 0);

        // Owner b's number is edited in the dashboard after the plan.
        let id = w.vapi.find_by_number(&number(100))[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        w.vapi
            .patch_number(&id, serde_json::json!({"smsEnabled": false}));
        let o = w.run(&["apply", "run.json"]);
        assert_code(&o, 3);
        let out = text(&o).0;
        assert!(
            out.contains("stale") && out.contains(&owner(1)) && out.contains(&number(100)),
            "{out}"
        );
        assert_eq!(w.vapi.find_by_number(&number(0))[0]["name"], "Renamed");
        assert_eq!(w.vapi.find_by_number(&number(100))[0]["name"], "Line 100");

        // Owner a's part is used up; owner b's can be made again.
        let o = w.run(&["apply", "run.json"]);
        assert_code(&o, 3);
        assert!(text(&o).0.contains("applied before"), "{}", text(&o).0);
    }
);

both_backends!(
    the_snapshot_gives_each_owner_what_load_recorded_gives_it,
    |w: World| {
        let (_, their_vapi) = w.assistant("their-bot", OTHER_USER);
        let (mine, _) = w.assistant("sales-bot", OWNER);
        let (_, their_squad_vapi) = w.squad("their-squad", OTHER_USER);
        let (my_squad, _) = w.squad("my-squad", OWNER);
        let dir = write_in(
            &w,
            "vapi",
            "mine",
            &w.spec().with(Entry::new(&number(1), "Mine")),
        );
        let theirs =
            SpecFile::new(OTHER_USER, SID, &w.token_armored).with(Entry::new(&number(2), "Theirs"));
        write_in(&w, "vapi", "theirs", &theirs);
        assert_code(&w.run(&["apply", "--auto-approve", s(&dir)]), 0);
        // Other users' rows as the application writes them: a national form, and a number that
        // only its Vapi id ties to the listing.
        for (n, (user, stored, vapi_id)) in [
            (OTHER_USER, "(415) 555-0003", "NULL"),
            (OTHER_USER, "+14155559999", "'vapi-only-by-id'"),
            (
                "0000aaaa-0000-4000-8000-000000000003",
                "4155550004",
                "'vapi-national'",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            w.exec_sql(&format!(
                "INSERT INTO phone_numbers (id, user_id, phone_number, friendly_name, provider, vapi_phone_id) \
                 VALUES ('{}', '{user}', '{stored}', 'App {n}', 'twilio', {vapi_id})",
                Uuid::new_v4()
            ));
        }
        let store = w.store();
        let snapshot = w.block_on(store.load_recorded_snapshot()).unwrap();
        let me = Uuid::parse_str(OWNER).unwrap();
        let numbers = vec![number(1), number(2), number(3)];
        let ids = vec!["vapi-only-by-id".to_string(), "missing".to_string()];
        for refs in [
            vec![],
            vec!["their-bot".to_string(), "their-squad".to_string()],
            vec![their_vapi.clone(), mine.to_string().to_uppercase()],
            vec![
                their_squad_vapi.clone(),
                my_squad.to_string().to_uppercase(),
            ],
        ] {
            let direct = w
                .block_on(store.load_recorded(me, &numbers, &refs))
                .unwrap();
            let lookup = vapictl::store::Lookup {
                numbers: &numbers,
                assistant_refs: &refs,
                ..Default::default()
            };
            let split = snapshot.for_owner(me, &lookup);
            assert_eq!(format!("{direct:?}"), format!("{split:?}"), "refs {refs:?}");
            assert!(split.squads.iter().any(|q| q.id == my_squad), "{split:?}");
            for (vapi_ids, non_canonical) in [(&ids[..], false), (&[][..], true), (&ids[..], true)]
            {
                let lookup = vapictl::store::Lookup {
                    numbers: &numbers,
                    vapi_ids,
                    assistant_refs: &refs,
                    squad_refs: &refs,
                    non_canonical,
                };
                let direct = w.block_on(store.load_recorded_for(me, &lookup)).unwrap();
                let split = snapshot.for_owner(me, &lookup);
                assert_eq!(
                    format!("{direct:?}"),
                    format!("{split:?}"),
                    "refs {refs:?}, {lookup:?}"
                );
            }
        }
        // And the claims are there: by national form and by Vapi id.
        let lookup = vapictl::store::Lookup {
            numbers: &numbers,
            vapi_ids: &ids,
            non_canonical: true,
            ..Default::default()
        };
        let split = snapshot.for_owner(me, &lookup);
        assert!(split.foreign.contains_key("(415) 555-0003"), "{split:?}");
        assert!(split.foreign.contains_key("4155550004"), "{split:?}");
        assert!(
            split.foreign_vapi_ids.contains_key("vapi-only-by-id"),
            "{split:?}"
        );
    }
);
