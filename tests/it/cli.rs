//! The command line itself: validation messages, schema, examples, encryption and age interop.

use std::path::PathBuf;
use std::process::Command;

use crate::common::*;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn committed_schema_is_current() {
    let committed = std::fs::read_to_string(repo("schema/vapictl.schema.json")).unwrap();
    assert!(
        committed == vapictl::spec::json_schema(),
        "schema/vapictl.schema.json is stale; regenerate it with:\n  cargo run -q -- schema > schema/vapictl.schema.json"
    );
}

#[test]
fn schema_command_prints_the_schema_with_descriptions() {
    let w = World::sqlite();
    let o = w.run(&["schema"]);
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // Every property of every object has a description (editors show them).
    fn walk(v: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
        if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
            for (k, p) in props {
                if p.get("description").is_none() {
                    missing.push(format!("{path}.{k}"));
                }
            }
        }
        if let Some(defs) = v.get("$defs").and_then(|d| d.as_object()) {
            for (k, d) in defs {
                walk(d, k, missing);
            }
        }
    }
    let mut missing = vec![];
    walk(&v, "", &mut missing);
    assert!(
        missing.is_empty(),
        "fields without description: {missing:?}"
    );
}

#[test]
fn example_spec_is_valid_and_decrypts_with_the_demo_key() {
    let w = World::sqlite();
    let example = repo("examples/acme.yaml");
    let text_of = std::fs::read_to_string(&example).unwrap();
    assert!(text_of.starts_with("# yaml-language-server: $schema="));
    let o = w
        .vapictl()
        .env(
            "VAPICTL_AGE_IDENTITY_FILE",
            repo("examples/demo-identity.txt"),
        )
        .args(["validate", example.to_str().unwrap()])
        .output()
        .unwrap();
    assert_code(&o, 0);
    assert!(text(&o).0.contains("valid (5 numbers)"));
    assert!(
        !text(&o).1.contains("not decrypted"),
        "the demo key decrypts every token"
    );
}

#[test]
fn validation_lists_every_problem_with_file_line_and_hint() {
    let w = World::sqlite();
    let path = w.path("bad.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 1\nowner: nope\nphoneNumbers:\n  - number: \"+1 415 555 1234\"\n    name: {}\n    twilio:\n      accountSid: AC1\n      authToken: plaintext-token-is-refused-000000000\n",
            "x".repeat(41)
        ),
    )
    .unwrap();
    let o = w.run(&["validate", path.to_str().unwrap()]);
    assert_code(&o, 1);
    let err = text(&o).1;
    for expected in [
        "5 problems",
        "bad.yaml:2:8: `owner`",
        "bad.yaml:4:13: `phoneNumbers[0].number`",
        "hint: write it as `+14155551234`",
        "`phoneNumbers[0].name`: name is 41 characters",
        "`phoneNumbers[0].twilio.accountSid`",
        "`phoneNumbers[0].twilio.authToken`: authToken is not age-encrypted",
        "vapictl encrypt",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(
        !err.contains("plaintext-token-is-refused"),
        "a plaintext token is never echoed"
    );
    insta::assert_snapshot!(w.seen(&err));
}

#[test]
fn unknown_field_is_named_with_its_position() {
    let w = World::sqlite();
    let path = w.path("typo.yaml");
    std::fs::write(
        &path,
        "version: 1\nowner: x\nphoneNumbers:\n  - number: \"+14155551234\"\n    nmae: Main\n",
    )
    .unwrap();
    let o = w.run(&["validate", path.to_str().unwrap()]);
    assert_code(&o, 1);
    let err = text(&o).1;
    assert!(
        err.contains("typo.yaml:5:5") && err.contains("unknown field `nmae`"),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
    insta::assert_snapshot!(w.seen(&err));
}

#[test]
fn hostile_yaml_fails_fast_and_cleanly() {
    let w = World::sqlite();
    let bomb = w.path("bomb.yaml");
    let mut y = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for i in 1..10 {
        y.push_str(&format!(
            "{}: &{} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n",
            (b'a' + i) as char,
            (b'a' + i) as char,
            p = (b'a' + i - 1) as char
        ));
    }
    std::fs::write(&bomb, y).unwrap();
    let start = std::time::Instant::now();
    let o = w.run(&["validate", bomb.to_str().unwrap()]);
    assert_code(&o, 1);
    assert!(start.elapsed().as_secs() < 20);

    let big = w.path("big.yaml");
    std::fs::write(&big, vec![b'#'; 9 * 1024 * 1024]).unwrap();
    let o = w.run(&["validate", big.to_str().unwrap()]);
    assert_code(&o, 1);
    assert!(
        text(&o).1.contains("over the 8388608-byte limit"),
        "{}",
        text(&o).1
    );

    let garbage = w.path("garbage.yaml");
    std::fs::write(&garbage, [0xff, 0xfe, 0x00, 0x12, 0x80]).unwrap();
    let o = w.run(&["validate", garbage.to_str().unwrap()]);
    assert_code(&o, 1);
    assert!(text(&o).1.contains("not UTF-8"), "{}", text(&o).1);
}

fn have_age() -> bool {
    Command::new("age").arg("--version").output().is_ok()
}

#[test]
fn our_ciphertext_decrypts_with_the_age_tool() {
    if !have_age() {
        // CI installs age; see .ci/run.
        assert!(
            std::env::var("CI").is_err(),
            "the `age` tool is required in CI"
        );
        return;
    }
    let w = World::sqlite();
    let o = w
        .vapictl()
        .args(["encrypt", "--recipient", &w.recipient])
        .write_stdin(format!("{TOKEN}\n"))
        .output()
        .unwrap();
    assert_code(&o, 0);
    let armored = String::from_utf8(o.stdout.clone()).unwrap();
    assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    assert!(!armored.contains(TOKEN));
    let file = w.path("t.age");
    std::fs::write(&file, &armored).unwrap();
    let d = Command::new("age")
        .args(["-d", "-i"])
        .arg(&w.identity_file)
        .arg(&file)
        .output()
        .unwrap();
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    assert_eq!(
        String::from_utf8(d.stdout).unwrap(),
        TOKEN,
        "trailing newline stripped"
    );
}

#[test]
fn age_tool_ciphertext_is_accepted_in_a_spec() {
    if !have_age() {
        assert!(
            std::env::var("CI").is_err(),
            "the `age` tool is required in CI"
        );
        return;
    }
    let w = World::sqlite();
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
        .write_all(TOKEN.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let armored = String::from_utf8(out.stdout).unwrap();
    let mut spec = w.spec().with(Entry::new("+14155551234", "Main"));
    spec.token = armored;
    let path = w.write(&spec);
    assert_code(&w.apply(&path), 0);
    let id = w.vapi.find_by_number("+14155551234")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(w.vapi.token_of(&id).as_deref(), Some(TOKEN));
}

#[test]
fn identity_from_environment_text_works_and_wrong_key_is_named() {
    let w = World::sqlite();
    let spec = w.write(&w.spec().with(Entry::new("+14155551234", "Main")));
    let o = w
        .vapictl()
        .env_remove("VAPICTL_AGE_IDENTITY_FILE")
        .env("VAPICTL_AGE_IDENTITY", &w.identity_text)
        .args(["validate", spec.to_str().unwrap()])
        .output()
        .unwrap();
    assert_code(&o, 0);
    let other = age::x25519::Identity::generate();
    use age::secrecy::ExposeSecret;
    let o = w
        .vapictl()
        .env_remove("VAPICTL_AGE_IDENTITY_FILE")
        .env("VAPICTL_AGE_IDENTITY", other.to_string().expose_secret())
        .args(["validate", spec.to_str().unwrap()])
        .output()
        .unwrap();
    assert_code(&o, 1);
    assert!(
        text(&o)
            .1
            .contains("none of the age identities can decrypt"),
        "{}",
        text(&o).1
    );
}

#[test]
fn keyless_plan_works_and_keyless_apply_is_refused() {
    let w = World::sqlite();
    let spec = w.write(&w.spec().with(Entry::new("+14155551234", "Main")));
    let o = w
        .vapictl()
        .env_remove("VAPICTL_AGE_IDENTITY_FILE")
        .args(["plan", spec.to_str().unwrap()])
        .output()
        .unwrap();
    assert_code(&o, 0);
    assert!(text(&o).0.contains("+ create"));
    let o = w
        .vapictl()
        .env_remove("VAPICTL_AGE_IDENTITY_FILE")
        .args(["apply", "--auto-approve", spec.to_str().unwrap()])
        .output()
        .unwrap();
    assert_code(&o, 1);
    assert!(text(&o).1.contains("no age identity"), "{}", text(&o).1);
    assert_eq!(w.vapi.mutating_calls(), 0);
}

#[test]
fn missing_api_key_is_a_clear_error_before_any_write() {
    let w = World::sqlite();
    let spec = w.write(&w.spec().with(Entry::new("+14155551234", "Main")));
    let o = w
        .vapictl()
        .env_remove("VAPI_API_KEY")
        .args(["plan", spec.to_str().unwrap()])
        .output()
        .unwrap();
    assert_code(&o, 1);
    assert!(text(&o).1.contains("VAPI_API_KEY"), "{}", text(&o).1);
    let o = w
        .vapictl()
        .env("VAPI_API_KEY", "wrong-key")
        .args(["plan", spec.to_str().unwrap()])
        .output()
        .unwrap();
    assert_code(&o, 1);
    let err = text(&o).1;
    assert!(err.contains("rejected the API key"), "{err}");
    assert!(!err.contains("wrong-key"));
}

#[test]
fn vapi_token_is_accepted_as_the_key_name_too() {
    let w = World::sqlite();
    let spec = w.write(&w.spec().with(Entry::new("+14155551234", "Main")));
    let o = w
        .vapictl()
        .env_remove("VAPI_API_KEY")
        .env("VAPI_TOKEN", w.vapi.api_key())
        .args(["plan", spec.to_str().unwrap()])
        .output()
        .unwrap();
    assert_code(&o, 0);
}

/// Every string under a `run` or `script` key, anywhere in a YAML document.
fn scripts(v: &serde_yaml::Value, out: &mut Vec<String>) {
    match v {
        serde_yaml::Value::Mapping(m) => {
            for (k, val) in m {
                let key = k.as_str().unwrap_or_default();
                if key == "run" || key == "script" || key == "before_script" {
                    match val {
                        serde_yaml::Value::String(s) => out.push(s.clone()),
                        serde_yaml::Value::Sequence(items) => {
                            out.extend(items.iter().filter_map(|i| i.as_str().map(String::from)))
                        }
                        _ => {}
                    }
                }
                scripts(val, out);
            }
        }
        serde_yaml::Value::Sequence(items) => items.iter().for_each(|i| scripts(i, out)),
        _ => {}
    }
}

#[test]
fn ci_examples_are_valid_yaml_and_call_real_commands_and_flags() {
    let w = World::sqlite();
    for file in [
        "examples/ci/github-actions.yml",
        "examples/ci/gitlab-ci.yml",
    ] {
        let text_of = std::fs::read_to_string(repo(file)).unwrap();
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&text_of).unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut runs = vec![];
        scripts(&doc, &mut runs);
        let mut calls = 0;
        let mut per_command = std::collections::BTreeMap::new();
        for line in runs.iter().flat_map(|r| r.lines()) {
            let Some(i) = line.find("vapictl ") else {
                continue;
            };
            let words: Vec<&str> = line[i..].split_whitespace().collect();
            if words
                .get(1)
                .is_none_or(|w| w.starts_with('-') || *w == "--locked")
                || words[0] != "vapictl"
            {
                continue;
            }
            let sub = words[1];
            let help = w.run(&[sub, "--help"]);
            assert_code(&help, 0);
            let help = text(&help).0;
            for flag in words.iter().filter(|w| w.starts_with("--")) {
                assert!(help.contains(flag), "{file}: `vapictl {sub}` has no {flag}");
            }
            if ["validate", "plan", "apply", "drift"].contains(&sub) {
                assert!(
                    words.contains(&"vapi/"),
                    "{file}: `vapictl {sub}` runs over every owner's spec at once (`vapi/`): {line}"
                );
                *per_command.entry(sub.to_string()).or_insert(0) += 1;
            }
            calls += 1;
        }
        assert!(
            calls >= 4,
            "{file}: expected plan, apply, drift and validate calls, found {calls}"
        );
        // One vapictl call per job: no loop over the files (one failed owner would stop the rest,
        // and every owner would list the whole organization again).
        assert!(
            !text_of.contains("for spec in"),
            "{file} loops over the specs"
        );
        for sub in ["validate", "plan", "apply", "drift"] {
            assert_eq!(
                per_command.get(sub),
                Some(&1),
                "{file}: exactly one `vapictl {sub}` call"
            );
        }
        assert!(
            text_of.contains("--comment-limit"),
            "{file} sets the forge's comment limit"
        );
        for needed in [
            "vapictl plan",
            "vapictl apply",
            "vapictl drift",
            "<!-- vapictl-plan -->",
        ] {
            assert!(text_of.contains(needed), "{file} lacks {needed}");
        }
    }
}
