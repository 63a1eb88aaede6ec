//! The bad-input corpus: hostile or broken specs and environments. Each one exits 1 with one
//! clear message naming the problem, and changes nothing: no mutating Vapi call, no row change.

use crate::common::*;

/// A valid spec's text, to break in one place.
fn good(w: &World) -> String {
    w.spec().with(Entry::new("+14155551234", "Main")).to_yaml()
}

enum Setup {
    /// The spec file's text.
    Spec(String),
    /// Raw bytes for the spec file.
    Bytes(Vec<u8>),
    /// A valid spec, run with these environment changes (`None` removes the variable).
    Env(Vec<(&'static str, Option<String>)>),
    /// A valid spec, run with these extra arguments before the command.
    Args(Vec<String>),
    /// A valid spec named by this path instead.
    Path(String),
}

struct Case {
    name: &'static str,
    setup: Setup,
    /// Text the error must contain.
    says: &'static str,
}

fn case(name: &'static str, setup: Setup, says: &'static str) -> Case {
    Case { name, setup, says }
}

fn replace(w: &World, from: &str, to: &str) -> Setup {
    let g = good(w);
    assert!(g.contains(from), "{from} not in the good spec");
    Setup::Spec(g.replacen(from, to, 1))
}

fn entry_extra(w: &World, extra: &str) -> Setup {
    Setup::Spec(good(w).replace(
        "    name: \"Main\"\n",
        &format!("    name: \"Main\"\n{extra}"),
    ))
}

fn corpus(w: &World) -> Vec<Case> {
    let armored = w.token_armored.clone();
    let cut = armored[..armored.len() / 2].to_string();
    let other = {
        let id = age::x25519::Identity::generate();
        vapictl::secrets::encrypt(
            &[id.to_public()],
            &vapictl::secrets::SecretValue::new(TOKEN),
        )
        .unwrap()
    };
    let short = w.encrypt("short");
    let indent = |s: &str| {
        s.lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>()
    };
    let token_block = indent(&armored);
    let mut bomb = String::from("a: &a [x,x,x,x,x,x,x,x,x]\n");
    for i in 1..12u8 {
        let (c, p) = ((b'a' + i) as char, (b'a' + i - 1) as char);
        bomb.push_str(&format!(
            "{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        ));
    }
    // File permissions do not bind root (CI runs as root), so open a migrated copy read-only.
    let ro_db = w.path("readonly.db");
    std::fs::copy(w.path("app.db"), &ro_db).unwrap();
    let ro_dir = w.path("ro");
    std::fs::create_dir(&ro_dir).unwrap();
    let garbage_key = w.path("garbage-key.txt");
    std::fs::write(&garbage_key, "this is not a key\n").unwrap();

    vec![
        case(
            "malformed yaml",
            Setup::Spec("version: 1\nowner: [unclosed\n".into()),
            "spec.yaml:",
        ),
        case(
            "tab indentation",
            Setup::Spec("version: 1\n\towner: x\n".into()),
            "spec.yaml:2",
        ),
        case("empty file", Setup::Spec(String::new()), "spec.yaml"),
        case(
            "only a comment",
            Setup::Spec("# nothing here\n".into()),
            "spec.yaml",
        ),
        case(
            "top-level list",
            Setup::Spec("- a\n- b\n".into()),
            "invalid type",
        ),
        case(
            "version is text",
            replace(w, "version: 1", "version: one"),
            "version",
        ),
        case(
            "version 2",
            replace(w, "version: 1", "version: 2"),
            "unsupported spec version `2`",
        ),
        case(
            "missing version",
            replace(w, "version: 1\n", ""),
            "missing field `version`",
        ),
        case(
            "missing owner",
            Setup::Spec(good(w).replace(&format!("owner: {OWNER}\n"), "")),
            "missing field `owner`",
        ),
        case(
            "owner not a uuid",
            replace(w, OWNER, "alice"),
            "`alice` is not a UUID",
        ),
        case(
            "missing phoneNumbers",
            Setup::Spec(format!("version: 1\nowner: {OWNER}\n")),
            "missing field `phoneNumbers`",
        ),
        case(
            "phoneNumbers is a map",
            Setup::Spec(format!(
                "version: 1\nowner: {OWNER}\nphoneNumbers: {{a: 1}}\n"
            )),
            "invalid type",
        ),
        case(
            "number without plus",
            replace(w, "\"+14155551234\"", "\"4155551234\""),
            "+14155551234",
        ),
        case(
            "number with spaces",
            replace(w, "\"+14155551234\"", "\"+1 415 555 1234\""),
            "not written in E.164",
        ),
        case(
            "number with extension",
            replace(w, "\"+14155551234\"", "\"+1 415-555-1234 ext. 12\""),
            "extension",
        ),
        case(
            "number invalid",
            replace(w, "\"+14155551234\"", "\"+10000000000\""),
            "not a valid phone number",
        ),
        case(
            "number unquoted digits",
            replace(w, "\"+14155551234\"", "14155551234"),
            "phoneNumbers",
        ),
        case(
            "duplicate numbers",
            Setup::Spec(good(w) + "  - number: \"+14155551234\"\n    name: Twin\n"),
            "listed twice",
        ),
        case(
            "empty name",
            replace(w, "name: \"Main\"", "name: \"\""),
            "name is empty",
        ),
        case(
            "name over 40",
            replace(w, "name: \"Main\"", &format!("name: {}", "n".repeat(41))),
            "over Vapi's limit of 40",
        ),
        case(
            "missing name",
            replace(w, "    name: \"Main\"\n", ""),
            "missing field `name`",
        ),
        case(
            "unknown entry field",
            entry_extra(w, "    assistnat: x\n"),
            "unknown field `assistnat`",
        ),
        case(
            "unknown top field",
            Setup::Spec(good(w) + "extra: 1\n"),
            "unknown field `extra`",
        ),
        case(
            "unknown twilio field",
            replace(w, "    accountSid:", "    acountSid:"),
            "unknown field `acountSid`",
        ),
        case(
            "bad account sid",
            replace(w, SID, "AC12"),
            "is not a Twilio Account SID",
        ),
        case(
            "plaintext token",
            Setup::Spec(good(w).replace(&token_block, &format!("      {TOKEN}\n"))),
            "plaintext tokens are refused",
        ),
        case(
            "truncated armor",
            Setup::Spec(good(w).replace(&token_block, &indent(&cut))),
            "damaged or truncated",
        ),
        case(
            "token for another recipient",
            Setup::Spec(good(w).replace(&token_block, &indent(&other))),
            "none of the age identities",
        ),
        case(
            "short token",
            Setup::Spec(good(w).replace(&token_block, &indent(&short))),
            "shorter than 32",
        ),
        case(
            "no twilio anywhere",
            Setup::Spec(format!(
                "version: 1\nowner: {OWNER}\nphoneNumbers:\n  - number: \"+14155551234\"\n    name: x\n"
            )),
            "no Twilio account",
        ),
        case(
            "server over http",
            entry_extra(w, "    server:\n      url: http://example.com/hook\n"),
            "is not an https URL",
        ),
        case(
            "server url garbage",
            entry_extra(w, "    server:\n      url: not a url\n"),
            "is not a URL",
        ),
        case(
            "timeout zero",
            entry_extra(
                w,
                "    server:\n      url: https://example.com/h\n      timeoutSeconds: 0\n",
            ),
            "outside 1 to 300",
        ),
        case(
            "protected and absent",
            entry_extra(w, "    protected: true\n    absent: true\n"),
            "both `protected` and `absent`",
        ),
        case(
            "smsEnabled wrong type",
            entry_extra(w, "    smsEnabled: maybe\n"),
            "invalid type",
        ),
        case("anchor bomb", Setup::Spec(bomb), "spec.yaml"),
        case(
            "binary garbage",
            Setup::Bytes(vec![0x00, 0xff, 0x13, 0x37, 0xfe, 0x00]),
            "not UTF-8",
        ),
        case(
            "over the size limit",
            Setup::Bytes(vec![b'#'; 8 * 1024 * 1024 + 1]),
            "over the 8388608-byte limit",
        ),
        case(
            "duplicate key",
            replace(
                w,
                "    name: \"Main\"\n",
                "    name: \"Main\"\n    name: \"Again\"\n",
            ),
            "appears twice",
        ),
        case(
            "two documents",
            Setup::Spec(good(w) + "---\nversion: 1\n"),
            "more than one document",
        ),
        case(
            "assistant unknown",
            entry_extra(w, "    assistant: ghost-bot\n"),
            "unknown assistant `ghost-bot`",
        ),
        case(
            "missing API key",
            Setup::Env(vec![("VAPI_API_KEY", None)]),
            "VAPI_API_KEY",
        ),
        case(
            "rejected API key",
            Setup::Env(vec![("VAPI_API_KEY", Some("wrong".into()))]),
            "rejected the API key",
        ),
        case(
            "unreachable Vapi",
            Setup::Env(vec![("VAPI_BASE_URL", Some("http://127.0.0.1:9".into()))]),
            "cannot reach Vapi",
        ),
        case(
            "Vapi URL not http",
            Setup::Env(vec![("VAPI_BASE_URL", Some("ftp://example.com".into()))]),
            "not an http(s) URL",
        ),
        case(
            "unreachable database",
            Setup::Env(vec![(
                "DATABASE_URL",
                Some("postgres://vapictl:s3cretpw@127.0.0.1:9/app".into()),
            )]),
            "127.0.0.1:9",
        ),
        case(
            "database URL scheme",
            Setup::Env(vec![("DATABASE_URL", Some("mysql://localhost/app".into()))]),
            "mysql",
        ),
        case(
            "read-only database file",
            Setup::Env(vec![(
                "DATABASE_URL",
                Some(format!("sqlite://{}?mode=ro", ro_db.display())),
            )]),
            "read",
        ),
        case(
            "database in unwritable place",
            Setup::Env(vec![(
                "DATABASE_URL",
                Some("sqlite:///proc/nope/app.db".into()),
            )]),
            "/proc/nope/app.db",
        ),
        case(
            "identity file missing",
            Setup::Env(vec![(
                "VAPICTL_AGE_IDENTITY_FILE",
                Some("/nonexistent/key.txt".into()),
            )]),
            "cannot read age identity file",
        ),
        case(
            "identity file garbage",
            Setup::Env(vec![(
                "VAPICTL_AGE_IDENTITY_FILE",
                Some(garbage_key.display().to_string()),
            )]),
            "holds no usable age identity",
        ),
        case(
            "identity env garbage",
            Setup::Env(vec![(
                "VAPICTL_AGE_IDENTITY",
                Some("AGE-SECRET-KEY-1BROKEN".into()),
            )]),
            "VAPICTL_AGE_IDENTITY",
        ),
        case(
            "no identity for apply",
            Setup::Env(vec![("VAPICTL_AGE_IDENTITY_FILE", None)]),
            "no age identity",
        ),
        case(
            "spec file missing",
            Setup::Path("missing.yaml".into()),
            "cannot read spec `missing.yaml`",
        ),
        case(
            "spec is a directory",
            Setup::Path(ro_dir.display().to_string()),
            "it is a directory",
        ),
        case(
            "parallelism zero",
            Setup::Args(vec!["--parallelism".into(), "0".into()]),
            "parallelism",
        ),
        case(
            "bad color value",
            Setup::Args(vec!["--color".into(), "purple".into()]),
            "purple",
        ),
    ]
}

#[test]
fn every_bad_input_exits_1_with_one_clear_message_and_changes_nothing() {
    let w = World::sqlite();
    // Rows that must survive untouched.
    let spec = w.write(&w.spec().with(Entry::new("+14155550001", "Existing")));
    assert_code(&w.apply(&spec), 0);
    let db_before = w.dump_db();
    let vapi_before = w.vapi.numbers();
    let cases = corpus(&w);
    assert!(cases.len() >= 40, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        w.vapi.reset_log();
        let path = w.path("spec.yaml");
        let mut cmd = w.vapictl();
        let mut spec_arg = path.display().to_string();
        let mut extra: Vec<String> = vec![];
        match &c.setup {
            Setup::Spec(text) => std::fs::write(&path, text).unwrap(),
            Setup::Bytes(b) => std::fs::write(&path, b).unwrap(),
            Setup::Env(vars) => {
                std::fs::write(&path, good(&w)).unwrap();
                for (k, v) in vars {
                    match v {
                        Some(v) => cmd.env(k, v),
                        None => cmd.env_remove(k),
                    };
                }
            }
            Setup::Args(a) => {
                std::fs::write(&path, good(&w)).unwrap();
                extra = a.clone();
            }
            Setup::Path(p) => spec_arg = p.clone(),
        }
        let mut args = vec!["apply".to_string(), "--auto-approve".to_string()];
        args.extend(extra);
        args.push(spec_arg);
        let o = cmd.args(&args).output().unwrap();
        let (out, err) = text(&o);
        let problem = if o.status.code() != Some(1) {
            Some(format!("exit {:?}", o.status.code()))
        } else if !err.contains(c.says) {
            Some(format!("message lacks {:?}", c.says))
        } else if err.matches("error:").count() != 1 {
            Some("not exactly one `error:`".to_string())
        } else if w.vapi.mutating_calls() != 0 {
            Some("a mutating Vapi call was made".to_string())
        } else if err.contains("s3cretpw") || err.contains(TOKEN) || out.contains(TOKEN) {
            Some("a secret was echoed".to_string())
        } else {
            None
        };
        if let Some(p) = problem {
            failures.push(format!("[{}] {p}\n--- stderr\n{err}", c.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!(w.dump_db(), db_before, "no row changed");
    assert_eq!(w.vapi.numbers(), vapi_before, "Vapi unchanged");
}
