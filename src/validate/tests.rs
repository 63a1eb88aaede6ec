//! One test per validation rule.

use super::*;
use crate::secrets::{Identities, SecretValue, encrypt, parse_recipients};
use crate::spec::load_str;
use std::path::Path;

struct Key {
    identities: Identities,
    recipient: String,
}

fn key() -> Key {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let mut identities = Identities::none();
    identities
        .add_text("test", &SecretValue::new(id.to_string().expose_secret()))
        .unwrap();
    Key {
        identities,
        recipient: id.to_public().to_string(),
    }
}

fn armor(k: &Key, plain: &str) -> String {
    encrypt(
        &parse_recipients(std::slice::from_ref(&k.recipient)).unwrap(),
        &SecretValue::new(plain),
    )
    .unwrap()
}

fn indent(s: &str, n: usize) -> String {
    s.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(n)))
        .collect()
}

/// A spec with one entry whose body lines are given (indented under `- `).
fn spec_with(k: &Key, entry: &str) -> String {
    format!(
        "version: 1\nowner: 3f1c2b7e-0000-4000-8000-000000000001\ndefaults:\n  twilio:\n    accountSid: AC0123456789abcdef0123456789abcdef\n    authToken: |\n{}phoneNumbers:\n  - {entry}\n",
        indent(&armor(k, &"t".repeat(32)), 6)
    )
}

fn run(k: &Key, src: &str) -> Result<DesiredState, Problems> {
    let loaded = load_str(Path::new("spec.yaml"), src).expect("parses");
    validate(&loaded, &k.identities, SecretMode::Required)
}

/// The 1-based line of the first line containing `needle`.
fn line_of(src: &str, needle: &str) -> usize {
    src.lines()
        .position(|l| l.contains(needle))
        .expect("needle present")
        + 1
}

fn problems(k: &Key, src: &str) -> Vec<Problem> {
    run(k, src).expect_err("should be invalid").items
}

#[test]
fn a_good_entry_validates_with_defaults_applied() {
    let k = key();
    let src = spec_with(&k, "number: \"+14155551234\"\n    name: Main Sales Line");
    let d = run(&k, &src).unwrap();
    let n = d.numbers.values().next().unwrap();
    assert_eq!(n.number.as_str(), "+14155551234");
    assert!(n.sms_enabled, "Vapi's default");
    assert_eq!(
        n.twilio.auth_token.plaintext.as_ref().unwrap().expose(),
        "t".repeat(32)
    );
    assert_eq!(n.line, line_of(&src, "+14155551234"));
}

#[test]
fn number_without_plus_is_refused_with_the_canonical_form() {
    let k = key();
    let src = spec_with(&k, "number: \"4155551234\"\n    name: x");
    let p = problems(&k, &src);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].field, "phoneNumbers[0].number");
    assert_eq!(p[0].location.line, line_of(&src, "4155551234"));
    assert!(
        p[0].hint.as_deref().unwrap().contains("+14155551234"),
        "{:?}",
        p[0]
    );
}

#[test]
fn number_with_spaces_is_refused_with_the_canonical_form() {
    let k = key();
    let p = problems(
        &k,
        &spec_with(&k, "number: \"+1 415 555 1234\"\n    name: x"),
    );
    assert!(p[0].message.contains("not written in E.164"));
    assert!(p[0].hint.as_deref().unwrap().contains("`+14155551234`"));
}

#[test]
fn invalid_number_is_refused() {
    let k = key();
    let p = problems(&k, &spec_with(&k, "number: \"+1999\"\n    name: x"));
    assert!(p[0].message.contains("not a valid phone number"));
}

#[test]
fn name_over_forty_characters_is_refused_not_truncated() {
    let k = key();
    let p = problems(
        &k,
        &spec_with(
            &k,
            &format!("number: \"+14155551234\"\n    name: {}", "n".repeat(41)),
        ),
    );
    assert_eq!(p[0].field, "phoneNumbers[0].name");
    assert!(p[0].message.contains("41 characters"));
}

#[test]
fn name_length_is_counted_as_vapi_counts_it() {
    let k = key();
    // 21 emoji: 21 characters, 42 UTF-16 units, which Vapi refuses.
    let p = problems(
        &k,
        &spec_with(
            &k,
            &format!(
                "number: \"+14155551234\"\n    name: \"{}\"",
                "🎉".repeat(21)
            ),
        ),
    );
    assert_eq!(p[0].field, "phoneNumbers[0].name");
    assert!(
        p[0].message.contains("42 characters as Vapi counts them"),
        "{}",
        p[0].message
    );
    run(
        &k,
        &spec_with(
            &k,
            &format!(
                "number: \"+14155551234\"\n    name: \"{}\"",
                "🎉".repeat(20)
            ),
        ),
    )
    .unwrap();
}

#[test]
fn forty_characters_is_fine() {
    let k = key();
    run(
        &k,
        &spec_with(
            &k,
            &format!("number: \"+14155551234\"\n    name: {}", "é".repeat(40)),
        ),
    )
    .unwrap();
}

#[test]
fn empty_name_is_refused() {
    let k = key();
    let p = problems(
        &k,
        &spec_with(&k, "number: \"+14155551234\"\n    name: \"\""),
    );
    assert!(p[0].message.contains("empty"));
}

#[test]
fn bad_account_sid_is_refused() {
    let k = key();
    let src = spec_with(&k, "number: \"+14155551234\"\n    name: x")
        .replace("AC0123456789abcdef0123456789abcdef", "AC123");
    let p = problems(&k, &src);
    assert_eq!(p[0].field, "defaults.twilio.accountSid");
    assert_eq!(p[0].location.line, 5);
}

#[test]
fn plaintext_token_is_refused_with_encrypt_hint() {
    let k = key();
    let src = "version: 1\nowner: 3f1c2b7e-0000-4000-8000-000000000001\nphoneNumbers:\n  - number: \"+14155551234\"\n    name: x\n    twilio:\n      accountSid: AC0123456789abcdef0123456789abcdef\n      authToken: 0123456789abcdef0123456789abcdef\n";
    let p = problems(&k, src);
    assert_eq!(p[0].field, "phoneNumbers[0].twilio.authToken");
    assert!(p[0].hint.as_deref().unwrap().contains("vapictl encrypt"));
    let shown = format!("{p:?}");
    assert!(
        !shown.contains("0123456789abcdef0123456789abcdef"),
        "the plaintext is not echoed"
    );
}

#[test]
fn short_token_is_refused_after_decryption() {
    let k = key();
    let src = format!(
        "version: 1\nowner: 3f1c2b7e-0000-4000-8000-000000000001\nphoneNumbers:\n  - number: \"+14155551234\"\n    name: x\n    twilio:\n      accountSid: AC0123456789abcdef0123456789abcdef\n      authToken: |\n{}",
        indent(&armor(&k, "short"), 8)
    );
    let p = problems(&k, &src);
    assert!(p[0].message.contains("shorter than 32"));
}

#[test]
fn token_for_another_recipient_is_refused() {
    let k = key();
    let other = key();
    let src = spec_with(&other, "number: \"+14155551234\"\n    name: x");
    let p = problems(&k, &src);
    assert!(
        p[0].message.contains("none of the age identities"),
        "{:?}",
        p[0]
    );
}

#[test]
fn keyless_optional_mode_keeps_ciphertext_only() {
    let k = key();
    let loaded = load_str(
        Path::new("s.yaml"),
        &spec_with(&k, "number: \"+14155551234\"\n    name: x"),
    )
    .unwrap();
    let d = validate(&loaded, &Identities::none(), SecretMode::Optional).unwrap();
    assert!(
        d.numbers
            .values()
            .next()
            .unwrap()
            .twilio
            .auth_token
            .plaintext
            .is_none()
    );
    let err = validate(&loaded, &Identities::none(), SecretMode::Required).unwrap_err();
    assert!(err.items[0].message.contains("no age identity"));
}

#[test]
fn duplicate_numbers_name_both_places() {
    let k = key();
    let src = spec_with(
        &k,
        "number: \"+14155551234\"\n    name: a\n  - number: \"+14155551234\"\n    name: b",
    );
    let p = problems(&k, &src);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].location.line, line_of(&src, "name: a") + 1);
    assert!(
        p[0].message
            .contains(&format!("line {}", line_of(&src, "+14155551234")))
    );
}

#[test]
fn wrong_version_is_refused() {
    let k = key();
    let p = problems(
        &k,
        &spec_with(&k, "number: \"+14155551234\"\n    name: x").replace("version: 1", "version: 2"),
    );
    assert_eq!(p[0].field, "version");
}

#[test]
fn owner_must_be_a_uuid() {
    let k = key();
    let p = problems(
        &k,
        &spec_with(&k, "number: \"+14155551234\"\n    name: x")
            .replace("3f1c2b7e-0000-4000-8000-000000000001", "alice"),
    );
    assert_eq!(p[0].field, "owner");
    assert_eq!(p[0].location.line, 2);
}

#[test]
fn missing_twilio_everywhere_is_refused() {
    let k = key();
    let src = "version: 1\nowner: 3f1c2b7e-0000-4000-8000-000000000001\nphoneNumbers:\n  - number: \"+14155551234\"\n    name: x\n";
    let p = problems(&k, src);
    assert!(p[0].message.contains("no Twilio account"));
}

#[test]
fn server_rules() {
    let k = key();
    let p = problems(
        &k,
        &spec_with(
            &k,
            "number: \"+14155551234\"\n    name: x\n    server: { url: \"http://example.com\", timeoutSeconds: 301 }",
        ),
    );
    let fields: Vec<&str> = p.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "phoneNumbers[0].server.url",
            "phoneNumbers[0].server.timeoutSeconds"
        ]
    );
}

#[test]
fn protected_and_absent_conflict() {
    let k = key();
    let p = problems(
        &k,
        &spec_with(
            &k,
            "number: \"+14155551234\"\n    name: x\n    protected: true\n    absent: true",
        ),
    );
    assert!(p[0].message.contains("both"));
}

#[test]
fn duplicate_keys_are_reported_with_location() {
    let k = key();
    let src = spec_with(&k, "number: \"+14155551234\"\n    name: x\n    name: y");
    match load_str(Path::new("spec.yaml"), &src).unwrap_err() {
        crate::spec::SpecError::Yaml { line, message, .. } => {
            assert_eq!(line, line_of(&src, "name: y"));
            assert!(
                message.contains("`phoneNumbers[0].name` appears twice"),
                "{message}"
            );
        }
        other => panic!("{other}"),
    }
}

#[test]
fn all_problems_are_collected_in_file_order() {
    let k = key();
    let src = spec_with(&k, "number: \"123\"\n    name: \"\"").replace("version: 1", "version: 3");
    let p = problems(&k, &src);
    assert_eq!(p.len(), 3);
    assert!(p.windows(2).all(|w| w[0].location <= w[1].location));
}
