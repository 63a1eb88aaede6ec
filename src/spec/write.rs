//! Writing a spec as YAML: the one writer, fed by serializing [`Spec`], so a field added to the
//! spec types is written (and quoted) like every other without touching this module.
//!
//! `import`, the tests and the bench all write their specs here. serde's own YAML emitter is not
//! used for the text because it cannot be told how to lay it out; the layout is the one a person
//! would write and review in a pull request:
//! - nested mappings and sequence items indented by two spaces (`  - number: …`);
//! - every string double-quoted (a JSON string is a valid YAML double-quoted scalar), so a
//!   name like `yes`, `null` or `+1 415` can never be read back as something else — except the
//!   top-level `owner` when it is a UUID, which is written plain as the file's heading;
//! - a multi-line string (an age-armored token) as a literal block (`|`, or `|-` without a final
//!   newline) when a block can carry it exactly, else double-quoted with escapes.

use std::fmt::Write as _;

use serde_yaml::Value;

use super::Spec;

/// The spec as YAML text, fields in the order of the spec types; fields at their default are
/// left out as the types' `skip_serializing_if` say. Reading the text back yields an equal spec.
pub fn to_yaml(spec: &Spec) -> String {
    let value = serde_yaml::to_value(spec).expect("a spec serializes to YAML");
    let mut out = String::new();
    match &value {
        Value::Mapping(map) => {
            for (key, v) in map {
                let key = key_text(key);
                if key == "owner"
                    && let Value::String(owner) = v
                    && uuid::Uuid::parse_str(owner).is_ok()
                {
                    let _ = writeln!(out, "owner: {owner}");
                    continue;
                }
                entry(&mut out, 0, &key, v);
            }
        }
        other => unreachable!("a spec serializes to a mapping, not {other:?}"),
    }
    out
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => unreachable!("spec keys are strings, not {other:?}"),
    }
}

/// `key: value` at `indent`, the value inline when it is a scalar or empty, else below.
fn entry(out: &mut String, indent: usize, key: &str, v: &Value) {
    let pad = " ".repeat(indent);
    match v {
        Value::Mapping(m) if !m.is_empty() => {
            let _ = writeln!(out, "{pad}{key}:");
            mapping(out, indent + 2, m);
        }
        Value::Sequence(s) if !s.is_empty() => {
            let _ = writeln!(out, "{pad}{key}:");
            sequence(out, indent + 2, s);
        }
        Value::String(s) if block_fits(s) => {
            let chomp = if s.ends_with('\n') { "" } else { "-" };
            let _ = writeln!(out, "{pad}{key}: |{chomp}");
            for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
                if line.is_empty() {
                    out.push('\n');
                } else {
                    let _ = writeln!(out, "{pad}  {line}");
                }
            }
        }
        scalar => {
            let _ = writeln!(out, "{pad}{key}: {}", inline(scalar));
        }
    }
}

fn mapping(out: &mut String, indent: usize, m: &serde_yaml::Mapping) {
    for (k, v) in m {
        entry(out, indent, &key_text(k), v);
    }
}

/// Sequence items: a mapping item's first field shares the `- ` line, the rest align under it.
fn sequence(out: &mut String, indent: usize, s: &[Value]) {
    let pad = " ".repeat(indent);
    for item in s {
        match item {
            Value::Mapping(m) if !m.is_empty() => {
                let mut item_text = String::new();
                mapping(&mut item_text, indent + 2, m);
                // The first line's indentation becomes the dash.
                let _ = write!(out, "{pad}- {}", &item_text[indent + 2..]);
            }
            Value::Sequence(inner) if !inner.is_empty() => {
                let _ = writeln!(out, "{pad}-");
                sequence(out, indent + 2, inner);
            }
            scalar => {
                let _ = writeln!(out, "{pad}- {}", inline(scalar));
            }
        }
    }
}

/// A value on one line.
fn inline(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => serde_json::to_string(s).expect("strings serialize"),
        Value::Sequence(s) if s.is_empty() => "[]".to_owned(),
        Value::Mapping(m) if m.is_empty() => "{}".to_owned(),
        Value::Tagged(t) => inline(&t.value),
        other => unreachable!("only empty collections are written inline, not {other:?}"),
    }
}

/// Whether a literal block reads back as exactly `s`: more than one line, no control characters
/// but newlines, a first line that sets the indentation (not empty, no leading space), and at
/// most one final newline (`|` keeps one, `|-` none).
fn block_fits(s: &str) -> bool {
    let body = s.strip_suffix('\n').unwrap_or(s);
    body.contains('\n')
        && !body.ends_with('\n')
        && !s.chars().any(|c| c.is_control() && c != '\n')
        && body
            .split('\n')
            .next()
            .is_some_and(|first| !first.is_empty() && !first.starts_with([' ', '\t']))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Defaults, PhoneNumberSpec, ServerSpec, TwilioSpec, load_str};

    const ARMORED: &str = "-----BEGIN AGE ENCRYPTED FILE-----\nYWdlLWVuY3J5cHRpb24\n-----END AGE ENCRYPTED FILE-----\n";

    fn entry(number: &str, name: &str) -> PhoneNumberSpec {
        PhoneNumberSpec {
            number: number.into(),
            name: name.into(),
            ..PhoneNumberSpec::default()
        }
    }

    fn spec(entries: Vec<PhoneNumberSpec>) -> Spec {
        Spec {
            version: 1,
            owner: "3f1c2b7e-0000-4000-8000-000000000001".into(),
            defaults: Some(Defaults {
                twilio: Some(TwilioSpec {
                    account_sid: "AC0123456789abcdef0123456789abcdef".into(),
                    auth_token: Some(ARMORED.into()),
                    api_key: None,
                    api_secret: None,
                }),
                ..Defaults::default()
            }),
            phone_numbers: entries,
        }
    }

    fn round_trip(s: &Spec) -> Spec {
        let text = to_yaml(s);
        load_str(std::path::Path::new("t.yaml"), &text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
            .spec
    }

    #[test]
    fn a_spec_is_laid_out_as_a_person_would_write_it() {
        let mut e = entry("+14155551234", "Main");
        e.assistant = Some("sales-bot".into());
        e.server = Some(ServerSpec {
            url: "https://hooks.example.com/vapi".into(),
            timeout_seconds: Some(20),
            ..ServerSpec::default()
        });
        e.sms_enabled = Some(false);
        e.protected = true;
        assert_eq!(
            to_yaml(&spec(vec![e])),
            "version: 1
owner: 3f1c2b7e-0000-4000-8000-000000000001
defaults:
  twilio:
    accountSid: \"AC0123456789abcdef0123456789abcdef\"
    authToken: |
      -----BEGIN AGE ENCRYPTED FILE-----
      YWdlLWVuY3J5cHRpb24
      -----END AGE ENCRYPTED FILE-----
phoneNumbers:
  - number: \"+14155551234\"
    name: \"Main\"
    assistant: \"sales-bot\"
    server:
      url: \"https://hooks.example.com/vapi\"
      timeoutSeconds: 20
    smsEnabled: false
    protected: true
"
        );
    }

    #[test]
    fn no_entries_is_an_empty_list() {
        let mut s = spec(vec![]);
        s.defaults = None;
        assert_eq!(
            to_yaml(&s),
            "version: 1\nowner: 3f1c2b7e-0000-4000-8000-000000000001\nphoneNumbers: []\n"
        );
    }

    #[test]
    fn text_that_yaml_would_read_as_something_else_reads_back_unchanged() {
        let names = [
            "yes",
            "null",
            "~",
            "123",
            "1e3",
            "0x1F",
            "- x",
            "a: b",
            "# c",
            "'q'",
            "\"dq\"",
            " lead",
            "trail ",
            "tab\there",
            "ünïcödé 📞",
            "{x}",
            "[y]",
            "&a",
            "*b",
            "!t",
            "%p",
            "@at",
            "`bt`",
        ];
        let entries: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let mut e = entry(&format!("+1415555{i:04}"), n);
                e.notes = Some(format!("{n}\nsecond line\n"));
                e
            })
            .collect();
        let s = spec(entries);
        let back = round_trip(&s);
        for (a, b) in s.phone_numbers.iter().zip(&back.phone_numbers) {
            assert_eq!(a.name, b.name);
            assert_eq!(a.notes, b.notes);
        }
    }

    #[test]
    fn multi_line_text_is_a_block_only_when_the_block_reads_back_exactly() {
        for (text, block) in [
            (ARMORED, true),
            (ARMORED.trim_end(), true),
            ("one line", false),
            ("two\nlines\n\n", false),
            (" indented\nfirst line", false),
            ("\nleading newline", false),
            ("carriage\r\nreturn", false),
            ("inner\n\nblank line", true),
        ] {
            assert_eq!(block_fits(text), block, "{text:?}");
            let mut e = entry("+14155551234", "Main");
            e.notes = Some(text.to_owned());
            let back = round_trip(&spec(vec![e]));
            assert_eq!(back.phone_numbers[0].notes.as_deref(), Some(text));
        }
    }
}
