//! The GitOps surfaces: plan formats, drift reports, exit codes and deletion gates.

use crate::common::*;

const N1: &str = "+14155551234";
const N2: &str = "+14155551235";

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o).0))
}

#[test]
fn json_plan_is_versioned_with_causes_and_no_secret() {
    let w = World::sqlite();
    w.vapi.seed_twilio_number(N2, "Dashboard", None);
    let spec = w.write(
        &w.spec()
            .with(Entry::new(N1, "Main"))
            .with(Entry::new(N2, "Adopted")),
    );
    let o = w.run(&["plan", "--format", "json", spec.to_str().unwrap()]);
    assert_code(&o, 0);
    let v = json(&o);
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["summary"]["create"], 1);
    assert_eq!(v["summary"]["adopt"], 1);
    let causes: Vec<&str> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cause"].as_str().unwrap())
        .collect();
    assert_eq!(causes, vec!["new_in_spec", "adopt_unmanaged"]);
    assert!(
        v["changes"][0]["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let raw = String::from_utf8(o.stdout).unwrap();
    assert!(
        !raw.contains(TOKEN) && !raw.contains("BEGIN AGE"),
        "no secret and no ciphertext"
    );
}

#[test]
fn markdown_plan_is_a_sticky_comment_with_a_summary_table() {
    let w = World::sqlite();
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    let o = w.run(&["plan", "--format", "markdown", spec.to_str().unwrap()]);
    assert_code(&o, 0);
    let md = text(&o).0;
    assert!(md.starts_with("<!-- vapictl-plan -->"));
    assert!(
        md.contains("| create | adopt | update | delete |") && md.contains("| 1 | 0 | 0 | 0 |"),
        "{md}"
    );
    assert!(md.contains("<details>"));
}

#[test]
fn color_follows_the_flag_and_no_color() {
    let w = World::sqlite();
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    let o = w.run(&["--color", "always", "plan", spec.to_str().unwrap()]);
    assert!(text(&o).0.contains("\x1b["));
    let o = w.run(&["plan", spec.to_str().unwrap()]);
    assert!(!text(&o).0.contains("\x1b["), "not a terminal: plain");
    let o = w
        .vapictl()
        .env("NO_COLOR", "1")
        .args(["--color", "auto", "plan", spec.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!text(&o).0.contains("\x1b["));
}

#[test]
fn drift_reports_out_of_band_edits_in_vapi_and_the_database() {
    let w = World::sqlite();
    let spec = w.write(
        &w.spec()
            .with(Entry::new(N1, "Main"))
            .with(Entry::new(N2, "Support")),
    );
    assert_code(&w.apply(&spec), 0);
    let o = w.run(&["drift", spec.to_str().unwrap()]);
    assert_code(&o, 0);
    assert!(text(&o).0.contains("In sync"));

    let id = w.vapi.find_by_number(N1)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    w.vapi
        .patch_number(&id, serde_json::json!({"name": "Dashboard edit"}));
    w.exec_sql(&format!(
        "DELETE FROM phone_numbers WHERE phone_number = '{N2}'"
    ));
    let before_calls = w.vapi.mutating_calls();
    let o = w.run(&["drift", "--format", "json", spec.to_str().unwrap()]);
    assert_code(&o, 2);
    let v = json(&o);
    let findings = v["changes"].as_array().unwrap();
    let by_number = |n: &str| findings.iter().find(|c| c["number"] == n).unwrap().clone();
    assert_eq!(by_number(N1)["cause"], "vapi_edited_out_of_band");
    assert_eq!(
        by_number(N2)["cause"],
        "adopt_unmanaged",
        "a row deleted by hand: Vapi's number is re-adopted"
    );
    assert_eq!(
        w.vapi.mutating_calls(),
        before_calls,
        "drift changes nothing"
    );

    // Fingerprints are stable across runs, so a scheduled job can alert on new findings only.
    let again = json(&w.run(&["drift", "--format", "json", spec.to_str().unwrap()]));
    let prints = |v: &serde_json::Value| -> Vec<String> {
        v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["fingerprint"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(prints(&v), prints(&again));
}

#[test]
fn plan_exit_codes() {
    let w = World::sqlite();
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    assert_code(&w.run(&["plan", spec.to_str().unwrap()]), 0);
    assert_code(
        &w.run(&["plan", "--detailed-exitcode", spec.to_str().unwrap()]),
        2,
    );
    assert_code(&w.apply(&spec), 0);
    assert_code(
        &w.run(&["plan", "--detailed-exitcode", spec.to_str().unwrap()]),
        0,
    );
    assert_code(&w.run(&["plan", "--detailed-exitcode", "missing.yaml"]), 1);
}

#[test]
fn implicit_mass_delete_needs_the_exact_count() {
    let w = World::sqlite();
    let numbers: Vec<String> = (0..8).map(|i| format!("+1415555{:04}", 1200 + i)).collect();
    let mut s = w.spec();
    for n in &numbers {
        s = s.with(Entry::new(n, "Line"));
    }
    let spec = w.write(&s);
    assert_code(&w.apply(&spec), 0);

    // An empty list against 8 numbers.
    let empty = w.write(&w.spec());
    let o = w.run(&["plan", empty.to_str().unwrap()]);
    assert!(text(&o).1.contains("apply will refuse"), "{}", text(&o).1);
    let o = w.apply(&empty);
    assert_code(&o, 3);
    assert!(text(&o).1.contains("--allow-deletes 8"), "{}", text(&o).1);
    let o = w.run(&[
        "apply",
        "--auto-approve",
        "--allow-deletes",
        "7",
        empty.to_str().unwrap(),
    ]);
    assert_code(&o, 3);
    assert!(text(&o).1.contains("does not match"), "{}", text(&o).1);
    assert_eq!(w.vapi.numbers().len(), 8, "nothing was deleted");

    // One of 8 (12.5%) passes without confirmation; `absent: true` never needs it.
    let s7 = {
        let mut s = w.spec();
        for n in &numbers[1..] {
            s = s.with(Entry::new(n, "Line"));
        }
        s
    };
    assert_code(&w.apply(&w.write(&s7)), 0);
    assert_eq!(w.vapi.numbers().len(), 7);
    let mut s = w.spec();
    for (i, n) in numbers[1..].iter().enumerate() {
        s = s.with(Entry {
            absent: i < 6,
            ..Entry::new(n, "Line")
        });
    }
    assert_code(&w.apply(&w.write(&s)), 0);
    assert_eq!(w.vapi.numbers().len(), 1);

    let empty = w.write(&w.spec());
    let o = w.run(&[
        "apply",
        "--auto-approve",
        "--allow-deletes",
        "1",
        empty.to_str().unwrap(),
    ]);
    assert_code(&o, 0);
    assert!(w.vapi.numbers().is_empty());
}

#[test]
fn saved_plan_is_applied_exactly_once() {
    let w = World::sqlite();
    let spec = w.write(
        &w.spec()
            .with(Entry::new(N1, "Main"))
            .with(Entry::new(N2, "Support")),
    );
    let o = w.run(&["plan", "--out", "plan.json", spec.to_str().unwrap()]);
    assert_code(&o, 0);
    let file = std::fs::read_to_string(w.path("plan.json")).unwrap();
    assert!(
        !file.contains(TOKEN) && !file.contains("BEGIN AGE"),
        "no secret, no ciphertext"
    );
    assert_eq!(w.vapi.mutating_calls(), 0);

    let o = w.run(&["apply", "plan.json"]);
    assert_code(&o, 0);
    assert_eq!(w.vapi.numbers().len(), 2);
    let o = w.run(&["apply", "plan.json"]);
    assert_code(&o, 3);
    assert!(text(&o).1.contains("applied before"), "{}", text(&o).1);
}

#[test]
fn stale_saved_plan_is_refused_naming_what_changed() {
    let w = World::sqlite();
    let spec = w.write(
        &w.spec()
            .with(Entry::new(N1, "Main"))
            .with(Entry::new(N2, "Support")),
    );
    assert_code(&w.apply(&spec), 0);
    let spec = w.write(
        &w.spec()
            .with(Entry::new(N1, "Renamed"))
            .with(Entry::new(N2, "Support")),
    );
    assert_code(
        &w.run(&["plan", "--out", "plan.json", spec.to_str().unwrap()]),
        0,
    );

    // Someone edits the number in the dashboard after the plan was made.
    let id = w.vapi.find_by_number(N1)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    w.vapi
        .patch_number(&id, serde_json::json!({"smsEnabled": false}));
    let before = w.vapi.mutating_calls();
    let o = w.run(&["apply", "plan.json"]);
    assert_code(&o, 3);
    let err = text(&o).1;
    assert!(
        err.contains("stale") && err.contains(N1) && err.contains("changed in Vapi"),
        "{err}"
    );
    assert_eq!(w.vapi.mutating_calls(), before, "nothing applied");

    // A spec edit after the plan is refused as well.
    assert_code(
        &w.run(&["plan", "--out", "plan2.json", spec.to_str().unwrap()]),
        0,
    );
    w.write(
        &w.spec()
            .with(Entry::new(N1, "Other"))
            .with(Entry::new(N2, "Support")),
    );
    let o = w.run(&["apply", "plan2.json"]);
    assert_code(&o, 3);
    assert!(
        text(&o).1.contains("changed since the plan"),
        "{}",
        text(&o).1
    );

    // A new database edit on the other number too.
    w.write(
        &w.spec()
            .with(Entry::new(N1, "Renamed"))
            .with(Entry::new(N2, "Support")),
    );
    assert_code(
        &w.run(&["plan", "--out", "plan3.json", spec.to_str().unwrap()]),
        0,
    );
    w.exec_sql(&format!(
        "UPDATE phone_numbers SET notes = 'by hand' WHERE phone_number = '{N2}'"
    ));
    let o = w.run(&["apply", "plan3.json"]);
    assert_code(&o, 3);
    assert!(text(&o).1.contains(N2), "{}", text(&o).1);
}

#[test]
fn import_round_trips_to_an_empty_plan() {
    let w = World::sqlite();
    w.assistant("sales-bot", OWNER);
    let spec = w.write(
        &w.spec()
            .with(Entry {
                notes: Some("front desk".into()),
                protected: true,
                ..Entry::new(N1, "Main").assistant("sales-bot")
            })
            .with(Entry {
                server_url: Some("https://hooks.example.com/v".into()),
                sms_enabled: Some(false),
                ..Entry::new(N2, "Support")
            }),
    );
    assert_code(&w.apply(&spec), 0);
    w.vapi.seed_twilio_number("+14155550077", "Nobody's", None);
    let o = w.run(&["import", "--owner", OWNER]);
    assert_code(&o, 0);
    let (yaml, err) = text(&o);
    assert!(
        err.contains("+14155550077") && err.contains("--adopt"),
        "{err}"
    );
    assert!(!yaml.contains("+14155550077"));
    let imported = w.path("imported.yaml");
    std::fs::write(&imported, &yaml).unwrap();
    let o = w.plan(&imported);
    assert_code(&o, 0);
    assert!(text(&o).0.contains("No changes"), "{yaml}\n{}", text(&o).0);
    // Stable: importing twice gives the same file.
    assert_eq!(text(&w.run(&["import", "--owner", OWNER])).0, yaml);
}

#[test]
fn import_re_encrypts_to_new_recipients_and_adopt_leaves_placeholders() {
    let w = World::sqlite();
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    assert_code(&w.apply(&spec), 0);
    w.vapi.seed_twilio_number(N2, "Dashboard", None);
    let new_key = age::x25519::Identity::generate();
    let o = w.run(&[
        "import",
        "--owner",
        OWNER,
        "--adopt",
        "--recipient",
        &new_key.to_public().to_string(),
    ]);
    assert_code(&o, 0);
    let yaml = text(&o).0;
    assert!(!yaml.contains(&w.token_armored), "re-encrypted");
    assert!(yaml.contains(N2) && yaml.contains(vapictl::import::TOKEN_PLACEHOLDER));
    let imported = w.path("imported.yaml");
    std::fs::write(&imported, &yaml).unwrap();
    use age::secrecy::ExposeSecret;
    let o = w
        .vapictl()
        .env_remove("VAPICTL_AGE_IDENTITY_FILE")
        .env("VAPICTL_AGE_IDENTITY", new_key.to_string().expose_secret())
        .args(["validate", imported.to_str().unwrap()])
        .output()
        .unwrap();
    assert_code(&o, 1);
    let err = text(&o).1;
    assert!(
        err.contains("1 problem") && err.contains("placeholder left by `vapictl import`"),
        "{err}"
    );
}

#[test]
fn drift_exit_codes_and_keyless_drift() {
    let w = World::sqlite();
    assert_code(&w.run(&["drift", "missing.yaml"]), 1);
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    assert_code(&w.apply(&spec), 0);
    // Without the key (an untrusted pull request), drift still compares every other field.
    let keyless = |w: &World| {
        w.vapictl()
            .env_remove("VAPICTL_AGE_IDENTITY_FILE")
            .args(["drift", spec.to_str().unwrap()])
            .output()
            .unwrap()
    };
    assert_code(&keyless(&w), 0);
    let id = w.vapi.find_by_number(N1)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    w.vapi
        .patch_number(&id, serde_json::json!({"name": "Edited"}));
    let o = keyless(&w);
    assert_code(&o, 2);
    assert!(
        text(&o).0.contains("changed in Vapi outside vapictl"),
        "{}",
        text(&o).0
    );
}

#[test]
fn another_users_assistant_is_refused_by_name() {
    let w = World::sqlite();
    w.assistant("their-bot", OTHER_USER);
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main").assistant("their-bot")));
    let o = w.apply(&spec);
    assert_code(&o, 1);
    let err = text(&o).1;
    assert!(
        err.contains(N1) && err.contains("belongs to another user"),
        "{err}"
    );
    assert_eq!(w.vapi.mutating_calls(), 0);
}
