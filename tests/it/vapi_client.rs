//! The Vapi client against the stand-in: complete listings, retries, error mapping.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use standin::vapi::{FaultConfig, FaultScope, StandIn, StandInConfig};
use vapictl::secrets::SecretValue;
use vapictl::vapi::{RetryPolicy, VapiClient, VapiConfig, VapiError};

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_retry_after: Duration::from_secs(2),
    }
}

fn client(v: &StandIn, page: usize) -> VapiClient {
    let mut cfg = VapiConfig::new(v.base_url(), SecretValue::new(v.api_key()));
    cfg.page_limit = page;
    cfg.retry = fast_retries();
    cfg.timeout = Duration::from_secs(2);
    VapiClient::new(cfg).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn number(i: usize) -> String {
    format!("+1415555{:04}", i)
}

#[test]
fn listing_is_complete_when_many_numbers_share_one_created_at() {
    let v = StandIn::start_background(StandInConfig::default()).unwrap();
    for i in 0..7 {
        v.seed_twilio_number(&number(i), "before", None);
    }
    // 35 numbers in one millisecond: more than three pages of 10.
    v.freeze_clock(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    for i in 100..135 {
        v.seed_twilio_number(&number(i), "tied", None);
    }
    v.unfreeze_clock();
    for i in 200..205 {
        v.seed_twilio_number(&number(i), "after", None);
    }
    let c = client(&v, 10);
    let got = rt().block_on(c.list_phone_numbers()).unwrap();
    let mut numbers: Vec<String> = got.iter().filter_map(|o| o.number.clone()).collect();
    numbers.sort();
    numbers.dedup();
    assert_eq!(got.len(), 47, "no number missing, none twice");
    assert_eq!(numbers.len(), 47);
}

#[test]
fn ties_at_page_edges_are_not_skipped() {
    let v = StandIn::start_background(StandInConfig::default()).unwrap();
    // Groups of three numbers per instant, pages of 10: every page edge cuts a group.
    for g in 0..10 {
        v.freeze_clock(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, g).unwrap());
        for k in 0..3 {
            v.seed_twilio_number(&number(g as usize * 10 + k), "x", None);
        }
    }
    v.unfreeze_clock();
    let c = client(&v, 10);
    let got = rt().block_on(c.list_phone_numbers()).unwrap();
    assert_eq!(got.len(), 30);
    let pages = c
        .counters()
        .list_requests
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(pages <= 6, "O(pages) requests: {pages}");
}

#[test]
fn other_providers_and_unknown_fields_are_tolerated() {
    let v = StandIn::start_background(StandInConfig::default()).unwrap();
    v.seed_raw(serde_json::json!({"provider": "vonage", "number": "+14155550001", "credentialId": "c1", "brandNewField": {"x": 1}}))
        .unwrap();
    v.seed_raw(serde_json::json!({"provider": "vapi", "sipUri": "sip:x@y"}))
        .unwrap();
    v.seed_twilio_number("+14155550002", "t", None);
    let got = rt()
        .block_on(client(&v, 1000).list_phone_numbers())
        .unwrap();
    let mut providers: Vec<&str> = got.iter().map(|o| o.provider.as_str()).collect();
    providers.sort();
    assert_eq!(providers, vec!["twilio", "vapi", "vonage"]);
}

#[test]
fn reads_are_retried_through_5xx_and_429() {
    let v = StandIn::start_background(StandInConfig::default()).unwrap();
    v.seed_twilio_number("+14155550002", "t", None);
    // The first page of numbers comes from the numbered endpoint.
    v.fail_next("GET", "/v2/phone-number", 503, 2);
    v.fail_next("GET", "/assistant", 429, 1);
    let c = client(&v, 1000);
    let got = rt().block_on(c.observe()).unwrap();
    assert_eq!(got.numbers.len(), 1);
    assert!(
        c.counters()
            .retries
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );
}

#[test]
fn retry_after_is_honoured() {
    let v = StandIn::start_background(StandInConfig::default()).unwrap();
    v.set_faults(FaultConfig {
        seed: 1,
        p_rate_limit: 1.0,
        retry_after_secs: 1,
        scope: FaultScope::All,
        ..FaultConfig::default()
    });
    let c = client(&v, 1000);
    let start = std::time::Instant::now();
    let err = rt().block_on(c.list_assistants()).unwrap_err();
    assert!(
        matches!(
            err,
            VapiError::Unavailable {
                status: 429,
                attempts: 5,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        start.elapsed() >= Duration::from_secs(4),
        "waited Retry-After between attempts"
    );
}

#[test]
fn a_create_that_fails_with_5xx_is_reported_as_unknown_not_retried() {
    let v = StandIn::start_background(StandInConfig::default()).unwrap();
    v.fail_next("POST", "/phone-number", 502, 1);
    let c = client(&v, 1000);
    let create = vapictl::plan::VapiCreate {
        squad_id: None,
        number: "+14155550002".into(),
        name: "x".into(),
        assistant_id: None,
        server: None,
        sms_enabled: true,
        fallback_destination: None,
        hooks: None,
        account_sid: "AC0123456789abcdef0123456789abcdef".into(),
        token: vapictl::state::EncryptedToken {
            armored: String::new(),
            plaintext: None,
        },
        api_key: None,
    };
    let err = rt()
        .block_on(c.create_phone_number(&create, &SecretValue::new("t".repeat(32))))
        .unwrap_err();
    assert!(matches!(err, VapiError::OutcomeUnknown { .. }), "{err}");
    assert_eq!(v.calls("POST"), 1);
}

#[test]
fn bad_key_and_bad_request_are_mapped() {
    let v = StandIn::start_background(StandInConfig::default()).unwrap();
    let mut cfg = VapiConfig::new(v.base_url(), SecretValue::new("nope"));
    cfg.retry = fast_retries();
    let err = rt()
        .block_on(VapiClient::new(cfg).unwrap().list_assistants())
        .unwrap_err();
    assert!(matches!(err, VapiError::Unauthorized { .. }), "{err}");

    let c = client(&v, 1000);
    let create = vapictl::plan::VapiCreate {
        squad_id: None,
        number: "+14155550002".into(),
        name: "n".repeat(41),
        assistant_id: None,
        server: None,
        sms_enabled: true,
        fallback_destination: None,
        hooks: None,
        account_sid: "AC0123456789abcdef0123456789abcdef".into(),
        token: vapictl::state::EncryptedToken {
            armored: String::new(),
            plaintext: None,
        },
        api_key: None,
    };
    let secret = "SECRETtoken0123456789abcdef012345";
    let err = rt()
        .block_on(c.create_phone_number(&create, &SecretValue::new(secret)))
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, VapiError::BadRequest { .. }), "{text}");
    assert!(
        text.contains("name must be shorter than or equal to 40 characters"),
        "{text}"
    );
    assert!(!text.contains(secret));
}

#[test]
fn unreachable_vapi_is_named_with_a_hint() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut cfg = VapiConfig::new(format!("http://{addr}"), SecretValue::new("k"));
    cfg.retry = fast_retries();
    let err = rt()
        .block_on(VapiClient::new(cfg).unwrap().list_assistants())
        .unwrap_err();
    assert!(matches!(err, VapiError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("VAPI_BASE_URL"));
}

#[test]
fn the_first_page_carries_the_total_so_no_separate_count_is_needed() {
    let v = StandIn::start_background(StandInConfig::default()).unwrap();
    for i in 0..25 {
        v.seed_twilio_number(&number(i), "x", None);
    }
    let c = client(&v, 10);
    let got = rt().block_on(c.list_phone_numbers()).unwrap();
    assert_eq!(got.len(), 25);
    let paths: Vec<String> = v.request_log().into_iter().map(|r| r.path).collect();
    // 10 new, then 9 new past the inclusive edge, then the last 6.
    assert_eq!(
        paths,
        ["/v2/phone-number", "/phone-number", "/phone-number"],
        "one numbered page with the total, then createdAt pages"
    );
}

#[test]
fn without_v2_the_listing_falls_back_to_plain_pages() {
    let v = StandIn::start_background(StandInConfig::default()).unwrap();
    for i in 0..25 {
        v.seed_twilio_number(&number(i), "x", None);
    }
    v.fail_next("GET", "/v2/phone-number", 404, 1);
    let c = client(&v, 10);
    let got = rt().block_on(c.list_phone_numbers()).unwrap();
    let mut numbers: Vec<String> = got.iter().filter_map(|o| o.number.clone()).collect();
    numbers.sort();
    numbers.dedup();
    assert_eq!(numbers.len(), 25, "complete without the numbered endpoint");
    assert_eq!(v.calls("GET"), 1 + 3);
}

#[test]
fn a_401_a_403_and_a_409_are_told_apart_each_with_vapis_message_and_a_hint() {
    let v = StandIn::start_background(StandInConfig::default()).unwrap();
    let mut cfg = VapiConfig::new(v.base_url(), SecretValue::new("not-the-key"));
    cfg.retry = fast_retries();
    let wrong_key = rt()
        .block_on(VapiClient::new(cfg).unwrap().list_assistants())
        .unwrap_err();
    let text = wrong_key.to_string();
    assert!(
        matches!(wrong_key, VapiError::Unauthorized { .. }),
        "{text}"
    );
    assert!(text.contains("rejected the API key (401)"), "{text}");
    assert!(text.contains("Invalid Key"), "Vapi's message: {text}");
    assert!(text.contains("hint: set `VAPI_API_KEY`"), "{text}");

    // A valid key that may not manage phone numbers.
    v.fail_next("GET", "/assistant", 403, 1);
    let c = client(&v, 1000);
    let forbidden = rt().block_on(c.list_assistants()).unwrap_err();
    let text = forbidden.to_string();
    assert!(matches!(forbidden, VapiError::Forbidden { .. }), "{text}");
    assert!(!text.contains("rejected the API key"), "{text}");
    assert!(
        text.contains("(403)") && text.contains("GET /assistant"),
        "{text}"
    );
    assert!(
        text.contains("Forbidden resource"),
        "Vapi's message: {text}"
    );
    assert!(
        text.contains("hint:") && text.contains("right to manage phone numbers"),
        "{text}"
    );
    assert!(!forbidden.is_transient());

    v.fail_next("POST", "/phone-number", 409, 1);
    let create = vapictl::plan::VapiCreate {
        squad_id: None,
        number: "+14155550002".into(),
        name: "x".into(),
        assistant_id: None,
        server: None,
        sms_enabled: true,
        fallback_destination: None,
        hooks: None,
        account_sid: "AC0123456789abcdef0123456789abcdef".into(),
        token: vapictl::state::EncryptedToken {
            armored: String::new(),
            plaintext: None,
        },
        api_key: None,
    };
    let conflict = rt()
        .block_on(c.create_phone_number(&create, &SecretValue::new("t".repeat(32))))
        .unwrap_err();
    let text = conflict.to_string();
    assert!(matches!(conflict, VapiError::Conflict { .. }), "{text}");
    assert!(text.contains("(409)"), "{text}");
    assert!(
        text.contains("being changed by another request"),
        "Vapi's message: {text}"
    );
    assert!(
        text.contains("hint:") && text.contains("vapictl plan"),
        "{text}"
    );
    assert!(
        !text.contains("+14155550002"),
        "the number is masked: {text}"
    );
    assert_eq!(v.calls("POST"), 1, "a 409 is not retried");
}

/// A loopback port nothing listens on.
fn dead_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

#[test]
fn a_vapi_url_with_user_and_password_never_shows_the_password() {
    let addr = dead_port();
    let url = format!("http://alice:s3cretpw@{addr}");
    let mut cfg = VapiConfig::new(url.clone(), SecretValue::new("k"));
    cfg.retry = fast_retries();
    assert!(!format!("{cfg:?}").contains("s3cretpw"), "{cfg:?}");
    let client = VapiClient::new(cfg).unwrap();
    assert!(!format!("{client:?}").contains("s3cretpw"));
    let err = rt().block_on(client.list_assistants()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, VapiError::Unreachable { .. }), "{text}");
    assert!(!text.contains("s3cretpw"), "{text}");
    assert!(text.contains(&format!("alice:***@{addr}")), "{text}");
    for bad in [
        "ftp://alice:s3cretpw@example.com",
        "http://alice:s3cretpw@exa mple.com",
    ] {
        let err = VapiClient::new(VapiConfig::new(bad, SecretValue::new("k"))).unwrap_err();
        assert!(matches!(err, VapiError::Config(_)), "{err}");
        assert!(!err.to_string().contains("s3cretpw"), "{err}");
    }
}

#[test]
fn a_failed_lookup_by_number_never_shows_the_number() {
    let v = StandIn::start_background(StandInConfig::default()).unwrap();
    // The lookup's every attempt is answered by a dropped connection: reqwest's error then
    // quotes the request URL, whose query carries the number.
    v.lose_next("GET", "/v2/phone-number", 20);
    let c = client(&v, 1000);
    let err = rt().block_on(c.find_by_number("+14155550002")).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, VapiError::Unreachable { .. }), "{text}");
    assert!(
        !text.contains("4155550002") && !text.contains("%2B1415"),
        "the number is masked: {text}"
    );
    assert!(text.contains("GET /v2/phone-number"), "{text}");
}

/// A create of `number` with what Vapi requires.
fn create_of(number: &str) -> vapictl::plan::VapiCreate {
    vapictl::plan::VapiCreate {
        squad_id: None,
        number: number.into(),
        name: "x".into(),
        assistant_id: None,
        server: None,
        sms_enabled: true,
        fallback_destination: None,
        hooks: None,
        account_sid: "AC0123456789abcdef0123456789abcdef".into(),
        token: vapictl::state::EncryptedToken {
            armored: String::new(),
            plaintext: None,
        },
        api_key: None,
    }
}

#[test]
fn a_create_is_sent_again_only_after_a_429_while_updates_and_deletes_retry_through_any_failure() {
    use std::sync::atomic::Ordering::Relaxed;
    let v = StandIn::start_background(StandInConfig::default()).unwrap();
    let c = client(&v, 1000);
    let token = SecretValue::new("t".repeat(32));
    let rt = rt();

    // A 429 proves the create was not carried out: it is sent again.
    v.fail_next("POST", "/phone-number", 429, 2);
    let created = rt
        .block_on(c.create_phone_number(&create_of("+14155550002"), &token))
        .unwrap();
    assert_eq!(v.calls("POST"), 3);

    // A lost answer may hide a create that happened: it is never sent again.
    v.lose_next("POST", "/phone-number", 1);
    let err = rt
        .block_on(c.create_phone_number(&create_of("+14155550003"), &token))
        .unwrap_err();
    assert!(matches!(err, VapiError::OutcomeUnknown { .. }), "{err}");
    assert_eq!(v.calls("POST"), 4);

    // The same failures on an update or a delete are retried: repeating them is safe.
    let patch = vapictl::plan::VapiPatch {
        name: Some("Renamed".into()),
        ..Default::default()
    };
    v.fail_next("PATCH", "/phone-number/", 503, 1);
    v.lose_next("PATCH", "/phone-number/", 1);
    let got = rt
        .block_on(c.update_phone_number(&created.id, "+14155550002", &patch, None))
        .unwrap();
    assert_eq!(got.name.as_deref(), Some("Renamed"));
    assert_eq!(v.calls("PATCH"), 3);
    v.fail_next("DELETE", "/phone-number/", 502, 1);
    rt.block_on(c.delete_phone_number(&created.id, "+14155550002"))
        .unwrap();
    assert_eq!(v.calls("DELETE"), 2);
    assert!(v.find_by_number("+14155550002").is_empty());

    // Each call counts once; its repeats count as retries.
    assert_eq!(c.counters().mutating_requests.load(Relaxed), 4);
    assert_eq!(c.counters().retries.load(Relaxed), 2 + 2 + 1);
}

#[test]
fn squads_are_listed_completely_with_their_names() {
    let v = StandIn::start_background(StandInConfig::default()).unwrap();
    let ids: Vec<String> = (0..25)
        .map(|i| v.seed_squad(&format!("Squad {i}")))
        .collect();
    let c = client(&v, 10);
    let observed = rt().block_on(c.observe()).unwrap();
    assert_eq!(observed.squads.len(), 25, "every squad, across pages");
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            observed.squads[id].name.as_deref(),
            Some(format!("Squad {i}").as_str())
        );
    }
}
