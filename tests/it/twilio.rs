//! The Twilio preflight and Twilio-side drift (issue 13), against the Twilio stand-in linked to
//! the Vapi stand-in: refusals before any write, warnings, one listing per account, drift.

use std::process::Output;

use standin::twilio::TwilioStandIn;
use vapictl::secrets::SecretValue;
use vapictl::twilio::{TwilioAuth, TwilioClient, TwilioConfig, TwilioError};

use crate::both_backends;
use crate::common::*;

const N1: &str = "+14155552001";
const N2: &str = "+14155552002";
const N3: &str = "+14155552003";
const FOREIGN: &str = "https://old-pbx.example.com/voice";

/// A world whose Twilio account holds the spec's token, with the Vapi stand-in importing
/// through it.
fn world() -> (World, TwilioStandIn) {
    let w = World::sqlite();
    let t = link(&w);
    (w, t)
}

/// A Twilio stand-in whose account holds the spec's token, linked to the world's Vapi.
fn link(w: &World) -> TwilioStandIn {
    let t = TwilioStandIn::start().unwrap();
    t.add_account(SID, TOKEN);
    w.vapi.link_twilio(&t);
    t
}

/// `vapictl` with the preflight on, reading the Twilio stand-in.
fn checked(w: &World, t: &TwilioStandIn, args: &[&str]) -> Output {
    let mut c = w.command();
    c.env("VAPICTL_TWILIO_CHECK", "on")
        .env("TWILIO_BASE_URL", t.base_url())
        .args(args);
    c.output().unwrap()
}

/// Two specs on one Twilio account: the world's owner with N1, another owner with N2.
fn two_owners(w: &World) -> (std::path::PathBuf, std::path::PathBuf) {
    let a = w.write(&w.spec().with(Entry::new(N1, "One")));
    let other = SpecFile::new(OTHER_USER, SID, &w.token_armored).with(Entry::new(N2, "Two"));
    let b = w.path("other.yaml");
    std::fs::write(&b, other.to_yaml()).unwrap();
    (a, b)
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", text(o)))
}

/// No output may hold the token, nor the basic-auth header built from it.
#[track_caller]
fn assert_no_secret(o: &Output) {
    use base64::Engine;
    let (out, err) = text(o);
    let header = base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"));
    for s in [&out, &err] {
        assert!(!s.contains(TOKEN), "token leaked:\n{s}");
        assert!(!s.contains(&header), "basic-auth header leaked:\n{s}");
        assert!(!s.contains("CANARY"), "canary leaked:\n{s}");
    }
}

#[test]
fn a_number_absent_from_the_account_is_refused_in_plan_before_any_vapi_write() {
    let (w, t) = world();
    t.add_number(SID, N1, true, true);
    let spec = w.write(
        &w.spec()
            .with(Entry::new(N1, "Main"))
            .with(Entry::new(N2, "Missing")),
    );
    let o = checked(&w, &t, &["plan", spec.to_str().unwrap()]);
    assert_code(&o, 1);
    let err = text(&o).1;
    assert!(
        err.contains("the number is not on Twilio account `AC…cdef`") && err.contains(N2),
        "{err}"
    );
    assert!(err.contains("spec.yaml:"), "points into the spec: {err}");
    assert!(err.contains("hint:"), "{err}");
    assert_eq!(w.vapi.mutating_calls(), 0);
    assert_no_secret(&o);

    // apply refuses it the same way: nothing written to Vapi or the database.
    let o = checked(&w, &t, &["apply", "--auto-approve", spec.to_str().unwrap()]);
    assert_code(&o, 1);
    assert_eq!(w.vapi.mutating_calls(), 0);
    assert!(w.recorded().rows.is_empty());
}

#[test]
fn a_wrong_token_is_refused_naming_the_masked_account_and_leaks_nothing() {
    let (w, t) = world();
    t.add_account(SID, "the-real-token-is-another-one-xx");
    t.add_number(SID, N1, true, true);
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    let o = checked(&w, &t, &["-vvv", "plan", spec.to_str().unwrap()]);
    assert_code(&o, 1);
    let err = text(&o).1;
    assert!(
        err.contains("Twilio rejected the credentials for account `AC…cdef` (401, error 20003)"),
        "{err}"
    );
    assert!(err.contains("re-encrypt the current auth token"), "{err}");
    assert_eq!(w.vapi.mutating_calls(), 0);
    assert_no_secret(&o);
}

#[test]
fn a_number_without_voice_capability_is_refused() {
    let (w, t) = world();
    t.add_number(SID, N1, false, true);
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    let o = checked(&w, &t, &["plan", spec.to_str().unwrap()]);
    assert_code(&o, 1);
    assert!(text(&o).1.contains("no voice capability"), "{:?}", text(&o));
}

#[test]
fn a_foreign_voice_url_is_warned_in_text_markdown_and_json() {
    let (w, t) = world();
    t.add_number(SID, N1, true, true);
    t.set_urls(N1, Some(FOREIGN), None);
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    let path = spec.to_str().unwrap();

    let o = checked(&w, &t, &["plan", path]);
    assert_code(&o, 0);
    let out = text(&o).0;
    assert!(
        out.contains("warning:") && out.contains("old-pbx.example.com"),
        "{out}"
    );
    assert!(
        out.contains("Twilio preflight: 1 number checked on 1 account (read only)."),
        "{out}"
    );

    let md = text(&checked(&w, &t, &["plan", "--format", "markdown", path])).0;
    assert!(
        md.contains("[!WARNING]") && md.contains("old-pbx.example.com"),
        "{md}"
    );

    let v = json(&checked(&w, &t, &["plan", "--format", "json", path]));
    assert_eq!(v["twilio"]["status"], "checked");
    assert_eq!(v["twilio"]["accounts"], 1);
    assert_eq!(v["twilio"]["warnings"][0]["field"], "voice_url");
    assert_eq!(v["twilio"]["warnings"][0]["host"], "old-pbx.example.com");
    assert!(v["warnings"][0].as_str().unwrap().contains("old-pbx"));
}

#[test]
fn twilio_sees_only_gets_one_paged_listing_per_account_and_none_per_number() {
    let (w, t) = world();
    // 2,100 numbers: three pages of 1,000.
    for i in 0..2100 {
        t.add_number(SID, &format!("+1415556{i:04}"), true, true);
    }
    for n in [N1, N2, N3] {
        t.add_number(SID, n, true, true);
    }
    let spec = w.write(
        &w.spec()
            .with(Entry::new(N1, "One"))
            .with(Entry::new(N2, "Two"))
            .with(Entry::new(N3, "Three")),
    );
    let o = checked(&w, &t, &["plan", spec.to_str().unwrap()]);
    assert_code(&o, 0);
    let log = t.requests();
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(log.iter().all(|r| r.method == "GET" && r.status == 200));
    let path = format!("/2010-04-01/Accounts/{SID}/IncomingPhoneNumbers.json");
    assert!(log.iter().all(|r| r.path == path), "{log:?}");
    assert!(
        log[0].query.as_deref().unwrap().contains("PageSize=1000"),
        "{log:?}"
    );
}

#[test]
fn two_owners_on_one_account_are_listed_once_for_the_whole_run() {
    let (w, t) = world();
    t.add_number(SID, N1, true, true);
    t.add_number(SID, N2, true, true);
    let (a, b) = two_owners(&w);
    let o = checked(&w, &t, &["plan", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_code(&o, 0);
    assert_eq!(t.requests().len(), 1, "{:?}", t.requests());
}

#[test]
fn a_keyless_plan_skips_the_preflight_with_a_note() {
    let (w, t) = world();
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    let mut c = w.command();
    c.env_remove("VAPICTL_AGE_IDENTITY_FILE")
        .env("VAPICTL_TWILIO_CHECK", "on")
        .env("TWILIO_BASE_URL", t.base_url())
        .args(["plan", "--format", "json", spec.to_str().unwrap()]);
    let o = c.output().unwrap();
    assert_code(&o, 0);
    let v = json(&o);
    assert_eq!(v["twilio"]["status"], "skipped_keyless");
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap()
            .contains("Twilio preflight skipped"),
        "{v}"
    );
    assert!(t.requests().is_empty());
}

#[test]
fn twilio_check_off_makes_no_twilio_request() {
    let (w, t) = world();
    // Not on the account: with the check on, this would be refused.
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    let o = checked(
        &w,
        &t,
        &[
            "--twilio-check",
            "off",
            "plan",
            "--format",
            "json",
            spec.to_str().unwrap(),
        ],
    );
    assert_code(&o, 0);
    assert_eq!(json(&o)["twilio"]["status"], "off");
    assert!(t.requests().is_empty());
}

#[test]
fn rate_limited_reads_are_retried_after_retry_after() {
    let (w, t) = world();
    t.add_number(SID, N1, true, true);
    t.fail_next(429, 2, 0);
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    let o = checked(&w, &t, &["plan", spec.to_str().unwrap()]);
    assert_code(&o, 0);
    let statuses: Vec<u16> = t.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 429, 200]);
}

#[test]
fn an_unreachable_twilio_is_an_error_with_a_hint_to_switch_the_check_off() {
    let (w, _t) = world();
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    let mut c = w.command();
    c.env("VAPICTL_TWILIO_CHECK", "on")
        .env("TWILIO_BASE_URL", "http://127.0.0.1:9")
        .args(["plan", spec.to_str().unwrap()]);
    let o = c.output().unwrap();
    assert_code(&o, 1);
    let err = text(&o).1;
    assert!(
        err.contains("cannot reach Twilio") && err.contains("--twilio-check off"),
        "{err}"
    );
    assert_eq!(w.vapi.mutating_calls(), 0);
}

both_backends!(
    a_url_changed_on_twilio_after_apply_is_drift_with_a_stable_fingerprint,
    |w: World| {
        let t = link(&w);
        t.add_number(SID, N1, true, true);
        let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
        let path = spec.to_str().unwrap();
        let o = checked(&w, &t, &["apply", "--auto-approve", path]);
        assert_code(&o, 0);
        // The import pointed the number at Vapi, as the real one does.
        let imported = t.number(N1).unwrap();
        let vapi_voice = format!("{}/twilio/inbound_call", w.vapi.base_url());
        assert_eq!(imported.voice_url.as_deref(), Some(vapi_voice.as_str()));

        assert_code(&checked(&w, &t, &["drift", path]), 0);

        t.set_urls(N1, Some(FOREIGN), imported.sms_url.as_deref());
        t.reset_log();
        let first = checked(&w, &t, &["drift", "--format", "json", path]);
        assert_code(&first, 2);
        assert!(t.requests().iter().all(|r| r.method == "GET"));
        let v = json(&first);
        let finding = &v["twilio_drift"][0];
        assert_eq!(finding["cause"], "voice_url_changed_in_twilio");
        assert_eq!(finding["after"], FOREIGN);
        let again = json(&checked(&w, &t, &["drift", "--format", "json", path]));
        assert_eq!(
            again["twilio_drift"][0]["fingerprint"],
            finding["fingerprint"]
        );

        let o = checked(&w, &t, &["drift", path]);
        assert_code(&o, 2);
        let out = text(&o).0;
        assert!(
            out.contains("voice URL was changed outside vapictl")
                && out.contains("old-pbx.example.com"),
            "{out}"
        );
        assert!(out.contains("does not change Twilio"), "{out}");

        // apply does not "fix" Twilio: nothing to do in Vapi or the database.
        let o = checked(&w, &t, &["apply", "--auto-approve", path]);
        assert_code(&o, 0);
        assert_eq!(t.number(N1).unwrap().voice_url.as_deref(), Some(FOREIGN));

        // The documented fix: delete it in Vapi, and apply re-creates it, which re-imports it.
        let id = w.vapi.find_by_number(N1)[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        w.vapi.delete_number(&id);
        assert_code(&checked(&w, &t, &["apply", "--auto-approve", path]), 0);
        assert_eq!(
            t.number(N1).unwrap().voice_url.as_deref(),
            Some(vapi_voice.as_str())
        );
        assert_code(&checked(&w, &t, &["drift", path]), 0);

        // Without a key, Twilio-side drift is not checked, and drift says so.
        let mut c = w.command();
        c.env_remove("VAPICTL_AGE_IDENTITY_FILE")
            .env("VAPICTL_TWILIO_CHECK", "on")
            .env("TWILIO_BASE_URL", t.base_url())
            .args(["drift", "--format", "json", path]);
        let v = json(&c.output().unwrap());
        assert!(
            v["warnings"]
                .to_string()
                .contains("Twilio-side drift not checked"),
            "{v}"
        );

        t.remove_number(N1);
        let v = json(&checked(&w, &t, &["drift", "--format", "json", path]));
        assert_eq!(v["twilio_drift"][0]["cause"], "left_twilio_account");
        assert_no_secret(&first);
    }
);

#[test]
fn the_vapi_import_fails_like_vapis_when_twilio_does_not_know_the_number() {
    let (w, t) = world();
    let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
    // With the check off, the import reaches Vapi, which fails it.
    let o = checked(
        &w,
        &t,
        &[
            "--twilio-check",
            "off",
            "apply",
            "--auto-approve",
            spec.to_str().unwrap(),
        ],
    );
    assert_code(&o, 1);
    assert!(w.vapi.numbers().is_empty());
}

both_backends!(
    a_deleted_number_is_forgotten_by_the_twilio_record,
    |w: World| {
        let t = link(&w);
        t.add_number(SID, N1, true, true);
        let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
        assert_code(
            &checked(&w, &t, &["apply", "--auto-approve", spec.to_str().unwrap()]),
            0,
        );
        let store = w.store();
        let recorded = w.block_on(store.twilio_urls(w.owner)).unwrap();
        assert_eq!(
            recorded[N1].voice_url,
            Some(format!("{}/twilio/inbound_call", w.vapi.base_url()))
        );
        assert_eq!(recorded[N1].account_sid, SID);

        let mut gone = Entry::new(N1, "Main");
        gone.absent = true;
        let spec = w.write(&w.spec().with(gone));
        assert_code(
            &checked(&w, &t, &["apply", "--auto-approve", spec.to_str().unwrap()]),
            0,
        );
        assert!(w.block_on(store.twilio_urls(w.owner)).unwrap().is_empty());
    }
);

#[tokio::test]
async fn an_api_key_reads_the_account_and_twilio_conditions_are_named() {
    let t = TwilioStandIn::start().unwrap();
    t.add_account(SID, TOKEN);
    t.add_api_key(SID, "SK0123456789abcdef0123456789abcdef", "CANARYsecret");
    t.add_number(SID, N1, true, false);
    let mut cfg = TwilioConfig::new(t.base_url());
    cfg.page_size = 1;
    let client = TwilioClient::new(cfg).unwrap();
    let key = |secret: &str| TwilioAuth::ApiKey {
        account_sid: SID.into(),
        key_sid: "SK0123456789abcdef0123456789abcdef".into(),
        secret: SecretValue::new(secret),
    };
    let listing = client.list_numbers(&key("CANARYsecret")).await.unwrap();
    assert_eq!(listing.numbers.len(), 1);
    assert!(listing.numbers[0].voice && !listing.numbers[0].sms);

    let err = client.list_numbers(&key("wrong")).await.unwrap_err();
    assert!(
        matches!(err, TwilioError::CredentialsRejected { .. }),
        "{err}"
    );
    t.set_suspended(SID, true);
    let err = client.list_numbers(&key("CANARYsecret")).await.unwrap_err();
    assert!(matches!(err, TwilioError::AccountNotActive { .. }), "{err}");
    assert!(!format!("{err} {err:?}").contains("CANARY"));
    t.set_suspended(SID, false);

    // Three numbers, pages of one: three GETs following `next_page_uri`.
    t.add_number(SID, N2, true, true);
    t.add_number(SID, N3, true, true);
    t.reset_log();
    assert_eq!(
        client
            .list_numbers(&key("CANARYsecret"))
            .await
            .unwrap()
            .numbers
            .len(),
        3
    );
    assert_eq!(t.requests().len(), 3);

    // A 5xx is retried; a 4xx other than 429 is not.
    t.reset_log();
    t.fail_next(503, 1, 0);
    assert!(client.list_numbers(&key("CANARYsecret")).await.is_ok());
    assert_eq!(t.requests()[0].status, 503);
    t.reset_log();
    t.fail_next(400, 1, 0);
    let err = client.list_numbers(&key("CANARYsecret")).await.unwrap_err();
    assert!(
        matches!(err, TwilioError::Status { status: 400, .. }),
        "{err}"
    );
    assert_eq!(t.requests().len(), 1);
}

#[test]
fn a_fleet_apply_reads_each_account_once_to_check_and_once_to_record() {
    let (w, t) = world();
    t.add_number(SID, N1, true, true);
    t.add_number(SID, N2, true, true);
    let (a, b) = two_owners(&w);
    let o = checked(
        &w,
        &t,
        &[
            "apply",
            "--auto-approve",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ],
    );
    assert_code(&o, 0);
    assert_eq!(t.requests().len(), 2, "{:?}", t.requests());
    assert!(t.requests().iter().all(|r| r.method == "GET"));
    let store = w.store();
    let other_owner = uuid::Uuid::parse_str(OTHER_USER).unwrap();
    assert!(
        w.block_on(store.twilio_urls(other_owner))
            .unwrap()
            .contains_key(N2)
    );
}

/// An entry on the API-key form is checked with the key and its secret (basic auth `SK…:secret`),
/// and a secret Twilio rejects refuses the plan like a wrong token.
#[test]
fn an_api_key_entry_is_checked_with_the_key_and_its_secret() {
    const API_KEY: &str = "SK0123456789abcdef0123456789abcdef";
    const API_SECRET: &str = "CANARYsec0123456789abcdef0123456";
    let (w, t) = world();
    t.add_number(SID, N1, true, true);
    let entry = |secret: &str| {
        let indented: String = w
            .encrypt(secret)
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect();
        Entry::new(N1, "Main").yaml(&format!(
            "twilio:\n  accountSid: {SID}\n  apiKey: {API_KEY}\n  apiSecret: |\n{indented}"
        ))
    };

    // Twilio does not know the key yet: refused, naming the masked account.
    let spec = w.write(&w.spec().with(entry(API_SECRET)));
    let o = checked(&w, &t, &["plan", spec.to_str().unwrap()]);
    assert_code(&o, 1);
    let (out, err) = text(&o);
    assert!(err.contains("AC…cdef"), "{err}");
    for s in [&out, &err] {
        assert!(!s.contains(API_SECRET) && !s.contains("CANARY"), "{s}");
    }

    t.add_api_key(SID, API_KEY, API_SECRET);
    let o = checked(
        &w,
        &t,
        &["plan", "--detailed-exitcode", spec.to_str().unwrap()],
    );
    assert_code(&o, 2);
    let (out, err) = text(&o);
    assert!(out.contains("Twilio preflight: 1 number"), "{out}\n{err}");
    assert_eq!(w.vapi.mutating_calls(), 0);
}
