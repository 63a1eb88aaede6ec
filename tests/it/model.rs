//! Vapi's whole phone-number model (issue 12): fallback destinations, hooks, the full `server`
//! object (headers with encrypted values, backoff plan, sub-fields vapictl does not model) and
//! `status`, end to end through the binary and the stand-in.

use serde_json::{Value, json};

use crate::common::*;

const N1: &str = "+14155551234";
/// A canary header secret: no output, log, plan file or row may contain it.
const HEADER_SECRET: &str = "Bearer CANARYhdr0123456789abcdef";
const HEADER_SECRET2: &str = "Bearer CANARYhd2-rotated-0123456";

fn only_number(w: &World) -> Value {
    let found = w.vapi.find_by_number(N1);
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

fn id_of(w: &World) -> String {
    only_number(w)["id"].as_str().unwrap().to_string()
}

#[track_caller]
fn assert_converged(w: &World, spec: &std::path::Path) {
    let o = w.plan(spec);
    assert_code(&o, 0);
    assert!(text(&o).0.contains("No changes"), "{}", text(&o).0);
}

fn plan_json(w: &World, spec: &std::path::Path) -> Value {
    let o = w.run(&["plan", "--format", "json", spec.to_str().unwrap()]);
    serde_json::from_slice(&o.stdout).unwrap()
}

fn fields_of(plan: &Value) -> Vec<(String, String)> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["fields"].as_array().unwrap().clone())
        .map(|f| {
            (
                f["field"].as_str().unwrap().to_string(),
                f["cause"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn fallback_number_and_sip_are_created_changed_and_removed() {
    let w = World::sqlite();
    let number = "fallbackDestination:\n  type: number\n  number: \"+14155550199\"\n  extension: \"12\"\n  message: Connecting you\n  callerId: \"+14155551234\"";
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main").yaml(number)));
    assert_code(&w.apply(&spec), 0);
    let fb = &only_number(&w)["fallbackDestination"];
    assert_eq!(fb["type"], "number");
    assert_eq!(fb["number"], "+14155550199");
    assert_eq!(fb["extension"], "12");
    assert_converged(&w, &spec);

    // Changed to a SIP URI: one field-level change, a spec edit.
    let sip = "fallbackDestination:\n  type: sip\n  sipUri: \"sip:desk@pbx.example.com\"\n  description: front desk";
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main").yaml(sip)));
    let plan = plan_json(&w, &spec);
    assert_eq!(
        fields_of(&plan),
        vec![("fallbackDestination".to_string(), "spec_edit".to_string())]
    );
    assert_code(&w.apply(&spec), 0);
    let fb = &only_number(&w)["fallbackDestination"];
    assert_eq!(fb["type"], "sip");
    assert_eq!(fb["sipUri"], "sip:desk@pbx.example.com");
    assert!(fb.get("number").is_none(), "replaced as a whole: {fb}");
    assert_converged(&w, &spec);

    // Removed from the spec: vapictl set it, so it is removed — as a visible line.
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    let o = w.plan(&spec);
    assert_code(&o, 2);
    assert!(text(&o).0.contains("fallbackDestination"), "{}", text(&o).0);
    let plan = plan_json(&w, &spec);
    let f = &plan["changes"][0]["fields"][0];
    assert_eq!(f["field"], "fallbackDestination");
    assert!(f["after"].is_null() && f["before"].as_str().unwrap().contains("sip:desk"));
    assert_code(&w.apply(&spec), 0);
    assert!(only_number(&w).get("fallbackDestination").is_none());
    assert_converged(&w, &spec);
}

#[test]
fn a_fallback_set_in_the_dashboard_is_left_alone_when_the_spec_does_not_declare_one() {
    let w = World::sqlite();
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    assert_code(&w.apply(&spec), 0);
    w.vapi.patch_number(
        &id_of(&w),
        json!({"fallbackDestination": {"type": "number", "number": "+14155550100"}}),
    );
    assert_converged(&w, &spec);
}

#[test]
fn fallback_and_hook_values_are_validated_before_anything_is_read() {
    let w = World::sqlite();
    let bad = "fallbackDestination: { type: number, number: \"4155550199\" }\nhooks:\n  - on: call.ringing\n    filters: [{ type: startsWith, key: number, startsWith: [\"+1415\"] }]\n    do: []";
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main").yaml(bad)));
    let o = w.run(&["validate", spec.to_str().unwrap()]);
    assert_code(&o, 1);
    let err = text(&o).1;
    for needle in [
        "phoneNumbers[0].fallbackDestination.number",
        "+14155550199",
        "phoneNumbers[0].hooks[0].do",
        "phoneNumbers[0].hooks[0].filters[0].startsWith",
    ] {
        assert!(err.contains(needle), "{needle} missing:\n{err}");
    }
    let o = w.apply(&spec);
    assert_code(&o, 1);
    assert_eq!(w.vapi.mutating_calls(), 0);
}

const HOOKS: &str = r#"hooks:
  - on: call.ringing
    filters:
      - type: startsWith
        key: number
        startsWith: ["1415", "1650"]
    do:
      - type: say
        exact: Thanks for calling, one moment.
  - on: call.ending
    filters:
      - type: oneOf
        key: call.endedReason
        oneOf: [assistant-request-failed, assistant-request-returned-error]
    do:
      type: transfer
      destination: { type: number, number: "+14155550199" }"#;

#[test]
fn hooks_round_trip_through_apply_and_import() {
    let w = World::sqlite();
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main").yaml(HOOKS)));
    assert_code(&w.apply(&spec), 0);
    let hooks = only_number(&w)["hooks"].clone();
    assert_eq!(hooks.as_array().unwrap().len(), 2);
    assert_eq!(hooks[0]["on"], "call.ringing");
    assert_eq!(hooks[1]["do"]["destination"]["number"], "+14155550199");
    assert_converged(&w, &spec);

    let o = w.run(&["import", "--owner", OWNER]);
    assert_code(&o, 0);
    let yaml = text(&o).0;
    assert!(yaml.contains("call.ringing"), "{yaml}");
    let imported = w.path("imported.yaml");
    std::fs::write(&imported, &yaml).unwrap();
    assert_converged(&w, &imported);

    // A hook edited in the dashboard shows as drift with its cause, and is put back.
    w.vapi.patch_number(&id_of(&w), json!({"hooks": []}));
    let o = w.run(&["drift", "--format", "json", spec.to_str().unwrap()]);
    assert_code(&o, 2);
    let drift: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        fields_of(&drift),
        vec![("hooks".to_string(), "vapi_edited_out_of_band".to_string())]
    );
    assert_code(&w.apply(&spec), 0);
    assert_eq!(only_number(&w)["hooks"], hooks);
    assert_converged(&w, &spec);
}

#[test]
fn dashboard_server_sub_fields_are_kept_by_an_unrelated_patch() {
    let w = World::sqlite();
    let spec = w.write(
        &w.spec()
            .with(Entry::new(N1, "Main").yaml("server:\n  url: https://hooks.example.com/a")),
    );
    assert_code(&w.apply(&spec), 0);
    // Set in the dashboard: headers and a backoff plan the spec does not declare, and a
    // sub-field vapictl does not model at all.
    w.vapi.patch_number(
        &id_of(&w),
        json!({"server": {
            "url": "https://hooks.example.com/a",
            "headers": {"X-Env": "prod", "X-Auth": HEADER_SECRET, "Authorization": HEADER_SECRET2},
            "backoffPlan": {"type": "exponential", "maxRetries": 3, "baseDelaySeconds": 1},
            "futureField": {"kept": true}
        }}),
    );
    assert_converged(&w, &spec);
    // Visible all the same: `drift` and `plan` name what Vapi has and the spec does not own,
    // with the values (never a secret one), and it is not drift.
    let o = w.run(&["drift", "--format", "json", spec.to_str().unwrap()]);
    assert_code(&o, 0);
    let drift: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        drift["not_owned"],
        json!([
            {"number": N1, "field": "server.headers",
             "value": "{Authorization: (not shown), X-Auth: (not shown), X-Env: (not shown)}"},
            {"number": N1, "field": "server.backoffPlan",
             "value": "{\"baseDelaySeconds\":1,\"maxRetries\":3,\"type\":\"exponential\"}"},
            {"number": N1, "field": "server.futureField", "value": null},
        ]),
        "{drift:#}"
    );
    let o = w.run(&["drift", spec.to_str().unwrap()]);
    let out = text(&o).0;
    assert!(
        out.contains("server.headers = {Authorization: (not shown), X-Auth: (not shown)")
            && out.contains("set in Vapi, not declared in the spec: kept as it is"),
        "{out}"
    );
    let mut all = format!("{out}{}{}", text(&o).1, String::from_utf8_lossy(&o.stdout));
    for args in [
        vec!["plan", "--format", "markdown"],
        vec!["plan", "--format", "json"],
        vec!["plan"],
        vec!["drift", "--format", "json"],
    ] {
        let o = w.run(&[args, vec![spec.to_str().unwrap()]].concat());
        all.push_str(&format!("{}{}", text(&o).0, text(&o).1));
    }
    assert!(
        all.contains("Set in Vapi, not declared in the spec"),
        "{all}"
    );
    // The fleet comment shows it for an owner with changes too.
    let dir = w.path("fleet");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("owner.yaml"),
        w.spec()
            .with(Entry::new(N1, "Renamed").yaml("server:\n  url: https://hooks.example.com/a"))
            .to_yaml(),
    )
    .unwrap();
    let o = w.run(&["plan", "--format", "markdown", dir.to_str().unwrap()]);
    let comment = text(&o).0;
    assert!(
        comment.contains("Set in Vapi, not declared in the spec")
            && comment.contains("`server.backoffPlan`"),
        "{comment}"
    );
    all.push_str(&comment);
    // Dashboard secrets under any header name never leak into plans or drift reports.
    for secret in [HEADER_SECRET, HEADER_SECRET2] {
        assert!(!all.contains(secret), "a header secret leaked");
    }

    // The spec changes the name and the server's timeout: the PATCH starts from Vapi's object.
    let spec = w.write(
        &w.spec().with(
            Entry::new(N1, "Main line")
                .yaml("server:\n  url: https://hooks.example.com/a\n  timeoutSeconds: 30"),
        ),
    );
    let plan = plan_json(&w, &spec);
    assert_eq!(
        fields_of(&plan),
        vec![
            ("name".to_string(), "spec_edit".to_string()),
            ("server.timeoutSeconds".to_string(), "spec_edit".to_string())
        ]
    );
    assert_code(&w.apply(&spec), 0);
    let server = only_number(&w)["server"].clone();
    assert_eq!(server["timeoutSeconds"], 30);
    assert_eq!(
        server["headers"],
        json!({"X-Env": "prod", "X-Auth": HEADER_SECRET, "Authorization": HEADER_SECRET2})
    );
    assert_eq!(server["backoffPlan"]["maxRetries"], 3);
    assert_eq!(server["futureField"], json!({"kept": true}));
    assert_converged(&w, &spec);
}

#[test]
fn declared_headers_and_backoff_changed_in_the_dashboard_are_drift() {
    let w = World::sqlite();
    let server = "server:\n  url: https://hooks.example.com/a\n  headers:\n    X-Env: prod\n  backoffPlan: { type: fixed, maxRetries: 2, baseDelaySeconds: 1.5, excludedStatusCodes: [400] }\n  staticIpAddressesEnabled: true\n  encryptedPaths: [message.call.customer.number]";
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main").yaml(server)));
    assert_code(&w.apply(&spec), 0);
    let s = only_number(&w)["server"].clone();
    assert_eq!(s["backoffPlan"]["baseDelaySeconds"], 1.5);
    assert_eq!(s["staticIpAddressesEnabled"], true);
    assert_converged(&w, &spec);

    let mut edited = s.clone();
    edited["headers"] = json!({"X-Env": "staging"});
    edited["backoffPlan"]["maxRetries"] = json!(5);
    w.vapi.patch_number(&id_of(&w), json!({ "server": edited }));
    let o = w.run(&["drift", "--format", "json", spec.to_str().unwrap()]);
    assert_code(&o, 2);
    let drift: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        fields_of(&drift),
        vec![
            (
                "server.headers".to_string(),
                "vapi_edited_out_of_band".to_string()
            ),
            (
                "server.backoffPlan".to_string(),
                "vapi_edited_out_of_band".to_string()
            )
        ]
    );
    let o = w.run(&["drift", spec.to_str().unwrap()]);
    assert!(text(&o).0.contains("X-Env: staging"), "{}", text(&o).0);
    assert_code(&w.apply(&spec), 0);
    assert_eq!(
        only_number(&w)["server"]["headers"],
        json!({"X-Env": "prod"})
    );
    assert_converged(&w, &spec);

    // Dropping `headers` from the spec removes them, visibly (vapictl set them).
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main").yaml(
        "server:\n  url: https://hooks.example.com/a\n  backoffPlan: { type: fixed, maxRetries: 2, baseDelaySeconds: 1.5, excludedStatusCodes: [400] }\n  staticIpAddressesEnabled: true\n  encryptedPaths: [message.call.customer.number]",
    )));
    let plan = plan_json(&w, &spec);
    assert_eq!(
        fields_of(&plan),
        vec![("server.headers".to_string(), "spec_edit".to_string())]
    );
    assert_code(&w.apply(&spec), 0);
    assert!(only_number(&w)["server"].get("headers").is_none());
    assert_converged(&w, &spec);
}

#[test]
fn an_encrypted_header_reaches_vapi_and_never_leaks() {
    let w = World::sqlite();
    let header = |secret: &str| {
        let armored = w.encrypt(secret);
        let indented: String = armored.lines().map(|l| format!("      {l}\n")).collect();
        format!(
            "server:\n  url: https://hooks.example.com/a\n  headers:\n    X-Env: prod\n    Authorization: |\n{indented}"
        )
    };
    let spec = w.write(
        &w.spec()
            .with(Entry::new(N1, "Main").yaml(&header(HEADER_SECRET))),
    );
    let mut all = String::new();
    let run = |args: &[&str], all: &mut String| {
        let o = w.run(args);
        all.push_str(&text(&o).0);
        all.push_str(&text(&o).1);
        o
    };
    let s = spec.to_str().unwrap();
    run(&["-vvv", "plan", "--format", "json", s], &mut all);
    run(
        &[
            "-vvv",
            "plan",
            "--format",
            "markdown",
            "--out",
            "plan.json",
            s,
        ],
        &mut all,
    );
    assert_code(
        &run(
            &["-vvv", "--log-format", "json", "apply", "--auto-approve", s],
            &mut all,
        ),
        0,
    );
    assert_eq!(
        only_number(&w)["server"]["headers"]["Authorization"],
        HEADER_SECRET,
        "Vapi receives the decrypted value"
    );
    assert_code(&run(&["-vvv", "plan", s], &mut all), 0);

    // Rotated: shown as a change of `server.headers`, the value never.
    let spec = w.write(
        &w.spec()
            .with(Entry::new(N1, "Main").yaml(&header(HEADER_SECRET2))),
    );
    let s = spec.to_str().unwrap();
    let o = run(&["-vvv", "plan", "--detailed-exitcode", s], &mut all);
    assert_code(&o, 2);
    let out = text(&o).0;
    assert!(
        out.contains("Authorization: (sensitive)") && out.contains("sensitive value changed"),
        "{out}"
    );
    // Without a key the change is still seen (the ciphertext differs from the applied one).
    let keyless = w
        .vapictl()
        .env_remove("VAPICTL_AGE_IDENTITY_FILE")
        .args(["plan", "--detailed-exitcode", s])
        .output()
        .unwrap();
    assert_code(&keyless, 2);
    all.push_str(&text(&keyless).0);
    assert_code(&run(&["-vvv", "apply", "--auto-approve", s], &mut all), 0);
    assert_eq!(
        only_number(&w)["server"]["headers"]["Authorization"],
        HEADER_SECRET2
    );
    run(&["-vvv", "drift", "--format", "json", s], &mut all);
    run(&["import", "--owner", OWNER], &mut all);
    let o = run(&["import", "--owner", OWNER, "-r", &w.recipient], &mut all);
    // Imported with a recipient: the header is encrypted again and compares equal (only the
    // re-encrypted token is a row change, as for any `import --recipient`).
    let imported = w.path("imported.yaml");
    std::fs::write(&imported, text(&o).0).unwrap();
    let o = run(&["plan", imported.to_str().unwrap()], &mut all);
    assert!(!text(&o).0.contains("server"), "{}", text(&o).0);
    all.push_str(&std::fs::read_to_string(w.path("plan.json")).unwrap());
    all.push_str(&w.dump_db());
    for secret in [HEADER_SECRET, HEADER_SECRET2, "CANARYhd"] {
        assert!(!all.contains(secret), "a header secret leaked");
    }
}

#[test]
fn a_plaintext_secret_header_is_refused() {
    let w = World::sqlite();
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main").yaml(
        "server:\n  url: https://hooks.example.com/a\n  headers:\n    Authorization: Bearer plain",
    )));
    let o = w.run(&["validate", spec.to_str().unwrap()]);
    assert_code(&o, 1);
    let err = text(&o).1;
    assert!(
        err.contains("server.headers.Authorization") && err.contains("vapictl encrypt"),
        "{err}"
    );
    assert!(!err.contains("Bearer plain"), "{err}");
}

#[test]
fn a_blocked_number_is_a_drift_finding_and_a_warning() {
    let w = World::sqlite();
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    assert_code(&w.apply(&spec), 0);
    assert_eq!(only_number(&w)["status"], "active");
    w.vapi
        .patch_number(&id_of(&w), json!({"status": "blocked"}));

    let o = w.run(&["drift", "--format", "json", spec.to_str().unwrap()]);
    assert_code(&o, 2);
    let drift: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(drift["blocked"][0]["number"], N1);
    assert_eq!(drift["blocked"][0]["cause"], "blocked_in_vapi");
    assert!(
        drift["blocked"][0]["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(drift["warnings"][0].as_str().unwrap().contains("blocked"));

    // The plan has nothing to change, and says so with the warning.
    let o = w.run(&["plan", spec.to_str().unwrap()]);
    assert_code(&o, 0);
    let (out, err) = text(&o);
    assert!(
        format!("{out}{err}").contains("is blocked in Vapi"),
        "{out}\n{err}"
    );
    let o = w.run(&["drift", spec.to_str().unwrap()]);
    assert_code(&o, 2);
}

#[test]
fn a_squad_set_in_the_dashboard_is_drift_with_its_cause_and_is_cleared() {
    let w = World::sqlite();
    w.assistant("sales-bot", OWNER);
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main").assistant("sales-bot")));
    assert_code(&w.apply(&spec), 0);
    let assistant = only_number(&w)["assistantId"].clone();
    // Routed to a squad in the dashboard, beside the assistant.
    w.vapi.patch_number(
        &id_of(&w),
        json!({"squadId": "5d1e0c2a-0000-4000-8000-00000000aaaa"}),
    );
    let o = w.run(&["drift", "--format", "json", spec.to_str().unwrap()]);
    assert_code(&o, 2);
    let drift: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        fields_of(&drift),
        vec![("squadId".to_string(), "vapi_edited_out_of_band".to_string())]
    );
    assert_eq!(
        drift["changes"][0]["fields"][0]["before"],
        "5d1e0c2a-0000-4000-8000-00000000aaaa"
    );
    assert_code(&w.apply(&spec), 0);
    let n = only_number(&w);
    assert!(n.get("squadId").is_none(), "{n}");
    assert_eq!(n["assistantId"], assistant);
    assert_converged(&w, &spec);
}

#[test]
fn the_fleet_path_sees_the_whole_model_too() {
    let w = World::sqlite();
    let dir = w.path("vapi");
    std::fs::create_dir_all(&dir).unwrap();
    let spec = w.spec().with(Entry::new(N1, "Main").yaml(HOOKS));
    std::fs::write(dir.join("owner.yaml"), spec.to_yaml()).unwrap();
    let d = dir.to_str().unwrap();
    assert_code(&w.run(&["apply", "--auto-approve", d]), 0);
    assert_eq!(only_number(&w)["hooks"].as_array().unwrap().len(), 2);

    w.vapi
        .patch_number(&id_of(&w), json!({"hooks": [], "status": "blocked"}));
    let o = w.run(&["drift", "--format", "json", d]);
    assert_code(&o, 2);
    let run: Value = serde_json::from_slice(&o.stdout).unwrap();
    let plan = &run["plans"][0];
    assert_eq!(
        fields_of(plan),
        vec![("hooks".to_string(), "vapi_edited_out_of_band".to_string())]
    );
    assert_eq!(plan["blocked"][0]["number"], N1);
    assert_code(&w.run(&["apply", "--auto-approve", d]), 0);
    // Only the block is left: no change, still a drift finding.
    let o = w.run(&["plan", "--detailed-exitcode", d]);
    assert_code(&o, 0);
    assert_code(&w.run(&["drift", d]), 2);
}

const API_KEY: &str = "SK0123456789abcdef0123456789abcdef";
/// Canary API secrets (32 characters, as Twilio issues them).
const API_SECRET: &str = "CANARYsec0123456789abcdef0123456";
const API_SECRET2: &str = "CANARYsc2rotated0123456789abcdef";

/// An entry on the API-key form, its secret encrypted as given.
fn api_key_entry(armored_secret: &str) -> Entry {
    let indented: String = armored_secret
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    Entry::new(N1, "Main").yaml(&format!(
        "twilio:\n  accountSid: {SID}\n  apiKey: {API_KEY}\n  apiSecret: |\n{indented}"
    ))
}

#[test]
fn api_key_numbers_are_created_rotated_and_re_encrypted() {
    let w = World::sqlite();
    let secret = w.encrypt(API_SECRET);
    let spec = w.write(&w.spec().with(api_key_entry(&secret)));
    let mut all = String::new();
    let o = w.run(&["-vvv", "apply", "--auto-approve", spec.to_str().unwrap()]);
    assert_code(&o, 0);
    all.push_str(&format!("{}{}", text(&o).0, text(&o).1));
    let id = id_of(&w);
    let secrets = w.vapi.secrets_of(&id).unwrap();
    assert_eq!(secrets.api_key.as_deref(), Some(API_KEY));
    assert_eq!(secrets.api_secret.as_deref(), Some(API_SECRET));
    assert_eq!(secrets.auth_token, None, "one form only");
    let row = &w.recorded().rows[N1];
    assert_eq!(row.api_key.as_deref(), Some(API_KEY));
    // vapictl's own column holds the secret's ciphertext; the app's column the same, never
    // plaintext.
    assert_eq!(row.api_secret.as_deref(), Some(secret.as_str()));
    assert_eq!(row.twilio_auth_token.as_deref(), Some(secret.as_str()));
    assert_converged(&w, &spec);

    // A row written before vapictl's column existed is read from the app's column: the same
    // secret, nothing to do.
    w.exec_sql("UPDATE phone_numbers SET vapictl_twilio_api_secret = NULL");
    assert_converged(&w, &spec);

    // Re-encrypted to the same value: the row only (both columns), nothing sent to Vapi.
    let again = w.encrypt(API_SECRET);
    let spec = w.write(&w.spec().with(api_key_entry(&again)));
    let before = w.vapi.mutating_calls();
    let o = w.run(&["apply", "--auto-approve", spec.to_str().unwrap()]);
    assert_code(&o, 0);
    assert!(text(&o).0.contains("re-encrypted"), "{}", text(&o).0);
    assert_eq!(w.vapi.mutating_calls(), before, "nothing sent to Vapi");
    assert_eq!(
        w.recorded().rows[N1].api_secret.as_deref(),
        Some(again.as_str())
    );
    assert_converged(&w, &spec);

    // Rotated: a PATCH with the key and the new secret.
    let rotated = w.encrypt(API_SECRET2);
    let spec = w.write(&w.spec().with(api_key_entry(&rotated)));
    let o = w.run(&["plan", spec.to_str().unwrap()]);
    assert!(text(&o).0.contains("twilioApiSecret"), "{}", text(&o).0);
    all.push_str(&text(&o).0);
    assert_code(&w.apply(&spec), 0);
    let secrets = w.vapi.secrets_of(&id).unwrap();
    assert_eq!(secrets.api_secret.as_deref(), Some(API_SECRET2));
    assert_eq!(secrets.api_key.as_deref(), Some(API_KEY));
    assert_converged(&w, &spec);

    // Import writes the API-key form back, and the plan stays empty.
    let o = w.run(&["import", "--owner", OWNER]);
    assert_code(&o, 0);
    let yaml = text(&o).0;
    assert!(
        yaml.contains("apiKey") && !yaml.contains("authToken"),
        "{yaml}"
    );
    let imported = w.path("imported.yaml");
    std::fs::write(&imported, &yaml).unwrap();
    assert_converged(&w, &imported);

    // Back to the auth token: the API key is cleared in Vapi and in the row.
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    assert_code(&w.apply(&spec), 0);
    let secrets = w.vapi.secrets_of(&id).unwrap();
    assert_eq!(secrets.auth_token.as_deref(), Some(TOKEN));
    assert_eq!(secrets.api_key, None);
    assert_eq!(secrets.api_secret, None);
    assert_eq!(w.recorded().rows[N1].api_key, None);
    assert_eq!(w.recorded().rows[N1].api_secret, None);
    assert_converged(&w, &spec);

    all.push_str(&w.dump_db());
    for s in [API_SECRET, API_SECRET2] {
        assert!(!all.contains(s), "an API secret leaked");
    }
}

#[test]
fn both_auth_forms_in_one_entry_are_refused() {
    let w = World::sqlite();
    let secret = w.encrypt(API_SECRET);
    let indented: String = secret.lines().map(|l| format!("    {l}\n")).collect();
    let token: String = w
        .token_armored
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main").yaml(&format!(
        "twilio:\n  accountSid: {SID}\n  authToken: |\n{token}  apiKey: {API_KEY}\n  apiSecret: |\n{indented}"
    ))));
    let o = w.run(&["validate", spec.to_str().unwrap()]);
    assert_code(&o, 1);
    let err = text(&o).1;
    assert!(
        err.contains("phoneNumbers[0].twilio")
            && err.contains("both an `authToken` and an API key"),
        "{err}"
    );
    assert!(err.contains("hint: keep one form"), "{err}");
    // A key without its secret.
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main").yaml(&format!(
        "twilio:\n  accountSid: {SID}\n  apiKey: {API_KEY}"
    ))));
    let o = w.run(&["validate", spec.to_str().unwrap()]);
    assert_code(&o, 1);
    assert!(
        text(&o).1.contains("needs its `apiSecret`"),
        "{}",
        text(&o).1
    );
}
