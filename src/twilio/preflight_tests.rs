//! Tests of the preflight's judgements (`preflight.rs`).

use super::*;
use crate::plan::{Cause, Change, RowStep, VapiPatch};
use crate::secrets::SecretValue;
use crate::state::{DesiredTwilio, E164, EncryptedToken};
use crate::twilio::TwilioNumber;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "CANARYtok0123456789abcdef01234567";

fn entry(number: &str, plain: Option<&str>) -> DesiredNumber {
    DesiredNumber {
        number: E164::new_unchecked(number),
        name: "Main".into(),
        assistant: None,
        squad: None,
        notes: None,
        twilio: DesiredTwilio {
            account_sid: SID.into(),
            auth_token: EncryptedToken {
                armored: "-----BEGIN AGE ENCRYPTED FILE-----".into(),
                plaintext: plain.map(SecretValue::new),
            },
            api_key: None,
        },
        server: None,
        fallback_destination: None,
        hooks: None,
        sms_enabled: true,
        protected: false,
        absent: false,
        line: 7,
        path: "phoneNumbers[0]".into(),
        positions: Default::default(),
        from_defaults: Vec::new(),
    }
}

fn desired(entries: Vec<DesiredNumber>) -> DesiredState {
    DesiredState {
        owner: Uuid::nil(),
        numbers: entries.into_iter().map(|d| (d.number.clone(), d)).collect(),
        spec_digest: "d".into(),
        spec_path: "spec.yaml".into(),
    }
}

fn change(number: &str, action: Action, vapi: VapiStep) -> Change {
    Change {
        number: number.into(),
        action,
        cause: Cause::SpecEdit,
        fields: vec![],
        vapi,
        row: RowStep::None,
        observed: None,
        recorded: None,
    }
}

fn listing(
    numbers: Vec<TwilioNumber>,
) -> BTreeMap<ListingKey, Result<AccountListing, TwilioError>> {
    let auth = auth_of(&entry("+14155550000", Some(TOKEN))).unwrap();
    BTreeMap::from([(auth.listing_key(), Ok(AccountListing { numbers }))])
}

fn on_twilio(number: &str, voice_url: Option<&str>, voice: bool) -> TwilioNumber {
    TwilioNumber {
        phone_number: number.into(),
        sid: "PN1".into(),
        voice_url: voice_url.map(str::to_string),
        sms_url: None,
        voice,
        sms: true,
    }
}

#[test]
fn creates_adoptions_and_credential_changes_need_twilio_and_other_updates_do_not() {
    let d = desired(vec![
        entry("+14155550001", Some(TOKEN)),
        entry("+14155550002", Some(TOKEN)),
        entry("+14155550003", Some(TOKEN)),
        entry("+14155550004", None),
    ]);
    let renamed = VapiPatch {
        name: Some("New".into()),
        ..VapiPatch::default()
    };
    let rotated = VapiPatch {
        account_sid: Some(SID.into()),
        ..VapiPatch::default()
    };
    let plan = Plan {
        changes: vec![
            change("+14155550001", Action::Adopt, VapiStep::None),
            change(
                "+14155550002",
                Action::Update,
                VapiStep::Update {
                    id: "a".into(),
                    patch: Box::new(renamed),
                },
            ),
            change(
                "+14155550003",
                Action::Update,
                VapiStep::Update {
                    id: "b".into(),
                    patch: Box::new(rotated),
                },
            ),
            change("+14155550004", Action::Create, VapiStep::None),
        ],
        ..Plan::default()
    };
    let needed = needs(&d, &plan);
    let numbers: Vec<&str> = needed.iter().map(|n| n.entry.number.as_str()).collect();
    assert_eq!(numbers, ["+14155550001", "+14155550003", "+14155550004"]);
    assert!(
        needed[2].auth.is_none(),
        "keyless entries carry no credentials"
    );
}

#[test]
fn absent_and_voiceless_numbers_are_refused_and_foreign_urls_warned() {
    let d = desired(vec![
        entry("+14155550001", Some(TOKEN)),
        entry("+14155550002", Some(TOKEN)),
        entry("+14155550003", Some(TOKEN)),
    ]);
    let needed: Vec<Needed<'_>> = d
        .numbers
        .values()
        .map(|e| Needed {
            entry: e,
            auth: auth_of(e),
        })
        .collect();
    let listings = listing(vec![
        on_twilio("+14155550001", Some("https://pbx.example.com/v"), true),
        on_twilio("+14155550002", None, false),
    ]);
    let refusals = judge(&needed, &listings, "api.vapi.ai").unwrap_err();
    let reasons: Vec<(&str, &RefusalReason)> = refusals
        .iter()
        .map(|r| (r.number.as_str(), &r.reason))
        .collect();
    assert!(matches!(
        reasons[..],
        [
            ("+14155550002", RefusalReason::NoVoiceCapability { .. }),
            ("+14155550003", RefusalReason::NotOnTwilioAccount { .. })
        ]
    ));
    assert_eq!(
        refusals[1].at.as_ref().unwrap().path,
        "phoneNumbers[0].number"
    );

    let warnings = judge(&needed[..1], &listings, "api.vapi.ai").unwrap();
    assert_eq!(warnings[0].host, "pbx.example.com");
    let vapis = listing(vec![on_twilio(
        "+14155550001",
        Some("https://api.vapi.ai/twilio/inbound_call"),
        true,
    )]);
    assert!(
        judge(&needed[..1], &vapis, "api.vapi.ai")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn drift_compares_with_the_record_and_fingerprints_are_stable() {
    let d = desired(vec![entry("+14155550001", Some(TOKEN))]);
    let rec = BTreeMap::from([(
        "+14155550001".to_string(),
        RecordedTwilioUrls {
            phone_number: "+14155550001".into(),
            account_sid: SID.into(),
            voice_url: Some("https://api.vapi.ai/twilio/inbound_call".into()),
            sms_url: None,
        },
    )]);
    let same = listing(vec![on_twilio(
        "+14155550001",
        Some("https://api.vapi.ai/twilio/inbound_call"),
        true,
    )]);
    assert!(drift_findings(&d, &rec, &same).is_empty());
    let moved = listing(vec![on_twilio(
        "+14155550001",
        Some("https://x.example/v"),
        true,
    )]);
    let a = drift_findings(&d, &rec, &moved);
    let b = drift_findings(&d, &rec, &moved);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].cause(), "voice_url_changed_in_twilio");
    assert_eq!(a[0].fingerprint, b[0].fingerprint);
    let gone = drift_findings(&d, &rec, &listing(vec![]));
    assert_eq!(gone[0].cause(), "left_twilio_account");
    assert_ne!(gone[0].fingerprint, a[0].fingerprint);
}
