//! Black-box tests of the Vapi stand-in over real loopback HTTP.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use standin::vapi::{FaultConfig, FaultScope, InjectedFault, StandIn, StandInConfig};

fn client_with_timeout(timeout: Duration) -> reqwest::Client {
    // reqwest is built without a default crypto provider; another test may have installed it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("client")
}

fn client() -> reqwest::Client {
    client_with_timeout(Duration::from_secs(5))
}

async fn start() -> StandIn {
    StandIn::start(StandInConfig::default())
        .await
        .expect("stand-in starts")
}

/// Sends one authenticated request and returns status, headers and the JSON body (`Null` when
/// the body is not JSON).
async fn call(
    vapi: &StandIn,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    try_call(&client(), vapi, method, path, body)
        .await
        .expect("request completes")
}

async fn try_call(
    http: &reqwest::Client,
    vapi: &StandIn,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Result<(StatusCode, reqwest::header::HeaderMap, Value)> {
    let mut req = http
        .request(method, format!("{}{path}", vapi.base_url()))
        .bearer_auth(vapi.api_key());
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await?;
    Ok((
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    ))
}

fn twilio_body(number: &str) -> Value {
    json!({
        "provider": "twilio",
        "number": number,
        "twilioAccountSid": "AC11111111111111111111111111111111",
        "twilioAuthToken": "super-secret-token",
        "name": "Front desk",
    })
}

fn messages(body: &Value) -> Vec<String> {
    match &body["message"] {
        Value::Array(a) => a
            .iter()
            .map(|m| m.as_str().unwrap_or_default().to_owned())
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => vec![],
    }
}

fn ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("array")
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn every_route_needs_the_bearer_key() {
    let vapi = start().await;
    let http = client();
    for (auth, path) in [
        (None, "/phone-number"),
        (Some("Bearer wrong"), "/phone-number"),
        (Some(vapi.api_key()), "/phone-number"),
        (Some("Bearer wrong"), "/assistant"),
        (None, "/no-such-route"),
    ] {
        let mut req = http.get(format!("{}{path}", vapi.base_url()));
        if let Some(a) = &auth {
            req = req.header("Authorization", *a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{auth:?} {path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "Unauthorized");
        assert_eq!(body["statusCode"], 401);
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("Invalid Key.")
        );
    }
    let (status, _, _) = call(&vapi, Method::GET, "/phone-number", None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn create_returns_201_without_secrets() {
    let vapi = start().await;
    let assistant = vapi.seed_assistant("Reception");
    let mut body = twilio_body("+14155550100");
    body["assistantId"] = json!(assistant);
    body["twilioApiKey"] = json!("SK-key");
    body["twilioApiSecret"] = json!("api-secret");
    let (status, _, created) = call(&vapi, Method::POST, "/phone-number", Some(body)).await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
    assert_eq!(created["orgId"], vapi.org_id());
    assert_eq!(created["assistantId"], json!(assistant));
    assert_eq!(created["createdAt"], created["updatedAt"]);
    let created_at = created["createdAt"].as_str().unwrap();
    assert_eq!(created_at.len(), "2026-11-25T10:00:00.000Z".len());
    assert!(created_at.ends_with('Z'));
    // Vapi's default is implied, not written.
    assert!(created.get("smsEnabled").is_none());

    let (_, _, fetched) = call(&vapi, Method::GET, &format!("/phone-number/{id}"), None).await;
    let (_, _, listed) = call(&vapi, Method::GET, "/phone-number", None).await;
    for text in [
        created.to_string(),
        fetched.to_string(),
        listed.to_string(),
        serde_json::to_string(&vapi.numbers()).unwrap(),
    ] {
        for secret in [
            "super-secret-token",
            "SK-key",
            "api-secret",
            "twilioAuthToken",
        ] {
            assert!(!text.contains(secret), "{secret} leaked");
        }
    }
    assert_eq!(vapi.token_of(id).as_deref(), Some("super-secret-token"));
    let secrets = vapi.secrets_of(id).unwrap();
    assert_eq!(secrets.api_secret.as_deref(), Some("api-secret"));
    assert!(!format!("{secrets:?}").contains("api-secret"));
    assert_eq!(vapi.mutating_calls(), 1);
    // The log keeps the body as sent (tokens included) but its Debug form masks them.
    let post = &vapi.request_log()[0];
    assert_eq!(
        post.body.as_ref().unwrap()["twilioAuthToken"],
        "super-secret-token"
    );
    assert!(!format!("{post:?}").contains("super-secret-token"));
}

#[tokio::test]
async fn create_validates_like_vapi() {
    let vapi = start().await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"provider": "twilio", "number": "+14155550100", "twilioAccountSid": "AC1", "name": "x".repeat(41)}),
            "name must be shorter than or equal to 40 characters",
        ),
        (
            json!({"provider": "twilio", "number": "+14155550100", "twilioAccountSid": "AC1", "credentialId": "c"}),
            "property credentialId should not exist",
        ),
        (
            json!({"provider": "twilio", "twilioAccountSid": "AC1"}),
            "number must be a string",
        ),
        (
            json!({"provider": "twilio", "number": "+14155550100"}),
            "twilioAccountSid must be a string",
        ),
        (
            json!({"provider": "twilio", "number": "4155550100", "twilioAccountSid": "AC1"}),
            "number must be a valid phone number in E.164 format",
        ),
        (
            json!({"provider": "twilio", "number": "+14155550100", "twilioAccountSid": "AC1", "server": {"url": "https://x", "timeoutSeconds": 0}}),
            "server.timeoutSeconds must not be less than 1",
        ),
        (
            json!({"provider": "twilio", "number": "+14155550100", "twilioAccountSid": "AC1", "server": {"timeoutSeconds": 301}}),
            "server.timeoutSeconds must not be greater than 300",
        ),
        (
            json!({"number": "+14155550100", "twilioAccountSid": "AC1"}),
            "provider must be one of the following values: byo-phone-number, twilio, vonage, vapi, telnyx",
        ),
    ];
    for (body, want) in cases {
        let (status, _, resp) = call(&vapi, Method::POST, "/phone-number", Some(body)).await;
        assert_eq!(status, 400, "{want}");
        assert_eq!(resp["error"], "Bad Request");
        assert_eq!(resp["statusCode"], 400);
        assert!(resp["message"].is_array());
        assert!(
            messages(&resp).iter().any(|m| m == want),
            "{want} not in {resp}"
        );
    }
    let (status, _, _) = call(
        &vapi,
        Method::POST,
        "/phone-number",
        Some(json!({"provider": "vonage", "number": "+14155550100", "credentialId": "c"})),
    )
    .await;
    assert_eq!(status, 400);

    // Malformed JSON.
    let resp = client()
        .post(format!("{}/phone-number", vapi.base_url()))
        .bearer_auth(vapi.api_key())
        .header("Content-Type", "application/json")
        .body("{\"provider\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "Bad Request");

    assert!(vapi.numbers().is_empty());
    assert_eq!(vapi.mutating_calls(), 0);
}

#[tokio::test]
async fn duplicate_numbers_are_created_not_refused() {
    let vapi = start().await;
    for _ in 0..2 {
        let (status, _, _) = call(
            &vapi,
            Method::POST,
            "/phone-number",
            Some(twilio_body("+14155550100")),
        )
        .await;
        assert_eq!(status, 201);
    }
    let found = vapi.find_by_number("+14155550100");
    assert_eq!(found.len(), 2);
    assert_ne!(found[0]["id"], found[1]["id"]);
}

#[tokio::test]
async fn v1_list_is_a_plain_array_newest_first_with_limits() {
    let vapi = start().await;
    for i in 0..150 {
        vapi.seed_twilio_number(&format!("+1415555{i:04}"), &format!("n{i}"), None);
    }
    vapi.seed_raw(json!({"provider": "vonage", "number": "+4930123456", "credentialId": "cred", "mystery": {"a": 1}}))
        .unwrap();

    let (status, _, list) = call(&vapi, Method::GET, "/phone-number", None).await;
    assert_eq!(status, 200);
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 100, "default limit");
    assert_eq!(list[0]["provider"], "vonage");
    assert_eq!(list[0]["mystery"], json!({"a": 1}));
    let times: Vec<DateTime<Utc>> = list
        .iter()
        .map(|n| ts(n["createdAt"].as_str().unwrap()))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] > w[1]),
        "strictly newest first"
    );

    let (_, _, all) = call(&vapi, Method::GET, "/phone-number?limit=1000", None).await;
    assert_eq!(all.as_array().unwrap().len(), 151);
    let (_, _, none) = call(&vapi, Method::GET, "/phone-number?limit=0", None).await;
    assert_eq!(none, json!([]));

    for (query, want) in [
        ("limit=1001", "limit must not be greater than 1000"),
        (
            "limit=ten",
            "limit must be a number conforming to the specified constraints",
        ),
        ("page=2", "property page should not exist"),
        (
            "createdAtLt=yesterday",
            "createdAtLt must be a valid ISO 8601 date string",
        ),
    ] {
        let (status, _, body) =
            call(&vapi, Method::GET, &format!("/phone-number?{query}"), None).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(messages(&body), vec![want.to_owned()]);
    }

    // Date filters, as a client pages by hand: everything strictly older than the 100th.
    let oldest_seen = list[99]["createdAt"].as_str().unwrap();
    let (_, _, older) = call(
        &vapi,
        Method::GET,
        &format!("/phone-number?limit=1000&createdAtLt={oldest_seen}"),
        None,
    )
    .await;
    let older = ids(&older);
    assert_eq!(older.len(), 51);
    assert!(
        older
            .iter()
            .all(|id| !ids(&Value::Array(list.clone())).contains(id))
    );
    let (_, _, le) = call(
        &vapi,
        Method::GET,
        &format!("/phone-number?limit=1000&createdAtLe={oldest_seen}"),
        None,
    )
    .await;
    assert_eq!(le.as_array().unwrap().len(), 52);
    let (_, _, ge) = call(
        &vapi,
        Method::GET,
        &format!("/phone-number?limit=1000&createdAtGe={oldest_seen}"),
        None,
    )
    .await;
    assert_eq!(ge.as_array().unwrap().len(), 100);
    // Six lists answered; the four refused ones do not count.
    assert_eq!(vapi.list_calls(), 6);
}

#[tokio::test]
async fn updated_at_filters_see_patches() {
    let vapi = start().await;
    let a = vapi.seed_twilio_number("+14155550100", "a", None);
    let b = vapi.seed_twilio_number("+14155550101", "b", None);
    let mark = vapi.number(&b).unwrap()["updatedAt"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _, _) = call(
        &vapi,
        Method::PATCH,
        &format!("/phone-number/{a}"),
        Some(json!({"name": "a2"})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, _, list) = call(
        &vapi,
        Method::GET,
        &format!("/phone-number?updatedAtGt={mark}"),
        None,
    )
    .await;
    assert_eq!(ids(&list), vec![a]);
}

#[tokio::test]
async fn many_numbers_sharing_one_created_at_are_reachable_through_v2_pages() {
    let vapi = start().await;
    let frozen = ts("2026-11-25T10:00:00Z");
    vapi.freeze_clock(frozen);
    for i in 0..1498 {
        vapi.seed_twilio_number(&format!("+1415{i:07}"), "bulk", None);
    }
    // HTTP creates share the frozen instant too.
    for n in ["+14169990000", "+14169990001"] {
        let (_, _, created) =
            call(&vapi, Method::POST, "/phone-number", Some(twilio_body(n))).await;
        assert_eq!(created["createdAt"], "2026-11-25T10:00:00.000Z");
    }

    // v1 cannot get past the first 1000: every number has the same createdAt.
    let (_, _, first) = call(&vapi, Method::GET, "/phone-number?limit=1000", None).await;
    assert_eq!(first.as_array().unwrap().len(), 1000);
    let (_, _, stuck) = call(
        &vapi,
        Method::GET,
        "/phone-number?limit=1000&createdAtLt=2026-11-25T10:00:00.000Z",
        None,
    )
    .await;
    assert_eq!(stuck, json!([]));

    // v2 offset pages over the (createdAt, id) order are stable and complete.
    let mut seen = BTreeSet::new();
    let mut page = 1;
    loop {
        let (status, _, body) = call(
            &vapi,
            Method::GET,
            &format!("/v2/phone-number?limit=1000&page={page}"),
            None,
        )
        .await;
        assert_eq!(status, 200);
        let meta = &body["metadata"];
        assert_eq!(meta["totalItems"], 1500);
        assert_eq!(meta["totalPages"], 2);
        assert_eq!(meta["itemsPerPage"], 1000);
        assert_eq!(meta["currentPage"], page);
        assert_eq!(meta["sortOrder"], "DESC");
        seen.extend(ids(&body["results"]));
        if !meta["hasNextPage"].as_bool().unwrap() {
            break;
        }
        page += 1;
    }
    assert_eq!(page, 2);
    assert_eq!(seen.len(), 1500);

    // The same order is returned every time (ties by id).
    let (_, _, again) = call(&vapi, Method::GET, "/phone-number?limit=1000", None).await;
    assert_eq!(ids(&first), ids(&again));

    vapi.unfreeze_clock();
    let later = vapi.seed_twilio_number("+14169990002", "later", None);
    assert!(ts(vapi.number(&later).unwrap()["createdAt"].as_str().unwrap()) > frozen);
}

#[tokio::test]
async fn v2_search_sort_and_validation() {
    let vapi = start().await;
    vapi.seed_twilio_number("+14155550100", "Front Desk", None);
    vapi.seed_twilio_number("+14155550101", "Sales", None);
    vapi.seed_twilio_number("+442071234567", "London", None);

    let get = |q: &str| {
        let path = format!("/v2/phone-number?{q}");
        let vapi = &vapi;
        async move { call(vapi, Method::GET, &path, None).await }
    };
    let names = |body: &Value| -> Vec<String> {
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_owned())
            .collect()
    };

    let (_, _, body) = get("search=front").await;
    assert_eq!(names(&body), vec!["Front Desk"]);
    let (_, _, body) = get("search=%28415%29%20555-0101").await;
    assert_eq!(names(&body), vec!["Sales"]);
    let (_, _, body) = get("search=%2B44").await;
    assert_eq!(names(&body), vec!["London"]);
    let (_, _, body) = get("sortOrder=ASC&sortBy=createdAt").await;
    assert_eq!(names(&body), vec!["Front Desk", "Sales", "London"]);
    assert_eq!(body["metadata"]["sortOrder"], "ASC");
    let (_, _, body) = get("limit=2&page=2").await;
    assert_eq!(names(&body), vec!["Front Desk"]);
    assert_eq!(body["metadata"]["hasNextPage"], false);

    for q in [
        "sortOrder=up",
        "page=0",
        "limit=5000",
        "cursor=abc",
        &format!("search={}", "x".repeat(101)),
    ] {
        let (status, _, body) = get(q).await;
        assert_eq!(status, 400, "{q}");
        assert_eq!(body["error"], "Bad Request");
    }
}

#[tokio::test]
async fn patch_is_partial_replaces_objects_and_clears_with_null() {
    let vapi = start().await;
    let assistant = vapi.seed_assistant("Reception");
    let mut body = twilio_body("+14155550100");
    body["assistantId"] = json!(assistant);
    body["server"] =
        json!({"url": "https://hooks.example/a", "timeoutSeconds": 20, "headers": {"X-A": "1"}});
    body["smsEnabled"] = json!(false);
    let (_, _, created) = call(&vapi, Method::POST, "/phone-number", Some(body)).await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/phone-number/{id}");

    let (status, _, patched) = call(
        &vapi,
        Method::PATCH,
        &path,
        Some(json!({"server": {"url": "https://hooks.example/b"}, "name": "Renamed"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(patched["server"], json!({"url": "https://hooks.example/b"}));
    assert_eq!(patched["name"], "Renamed");
    assert_eq!(
        patched["assistantId"],
        json!(assistant),
        "untouched field kept"
    );
    assert_eq!(patched["smsEnabled"], false);
    assert_eq!(patched["createdAt"], created["createdAt"]);
    assert!(
        ts(patched["updatedAt"].as_str().unwrap()) > ts(created["updatedAt"].as_str().unwrap())
    );

    let (status, _, cleared) = call(
        &vapi,
        Method::PATCH,
        &path,
        Some(json!({"assistantId": null, "server": null, "provider": "twilio", "twilioAuthToken": "rotated"})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(cleared.get("assistantId").is_none());
    assert!(cleared.get("server").is_none());
    assert!(cleared.get("twilioAuthToken").is_none());
    assert_eq!(vapi.token_of(id).as_deref(), Some("rotated"));

    for (patch, want) in [
        (
            json!({"credentialId": "x"}),
            "property credentialId should not exist",
        ),
        (
            json!({"provider": "vonage"}),
            "provider must be one of the following values: twilio",
        ),
        (
            json!({"name": "y".repeat(41)}),
            "name must be shorter than or equal to 40 characters",
        ),
        (json!({"number": null}), "number must be a string"),
    ] {
        let (status, _, body) = call(&vapi, Method::PATCH, &path, Some(patch)).await;
        assert_eq!(status, 400);
        assert!(messages(&body).iter().any(|m| m == want), "{want}: {body}");
    }
    assert_eq!(vapi.mutating_calls(), 3);

    // Numbers of other providers are not patched over HTTP.
    let vonage = vapi
        .seed_raw(json!({"provider": "vonage", "number": "+4930123456", "credentialId": "c"}))
        .unwrap();
    let (status, _, _) = call(
        &vapi,
        Method::PATCH,
        &format!("/phone-number/{vonage}"),
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn unknown_and_malformed_ids() {
    let vapi = start().await;
    let missing = uuid::Uuid::new_v4();
    for method in [Method::GET, Method::PATCH, Method::DELETE] {
        let body = (method == Method::PATCH).then(|| json!({"name": "x"}));
        let (status, _, resp) = call(
            &vapi,
            method.clone(),
            &format!("/phone-number/{missing}"),
            body,
        )
        .await;
        assert_eq!(status, 404, "{method}");
        assert_eq!(
            resp,
            json!({"message": "Phone number not found", "error": "Not Found", "statusCode": 404})
        );
        let (status, _, resp) = call(&vapi, method, "/phone-number/not-a-uuid", None).await;
        assert_eq!(status, 400);
        assert_eq!(resp["error"], "Bad Request");
    }
    let (status, _, _) = call(&vapi, Method::GET, &format!("/assistant/{missing}"), None).await;
    assert_eq!(status, 404);
    let (status, _, resp) = call(&vapi, Method::PUT, "/phone-number", None).await;
    assert_eq!(status, 404);
    assert_eq!(resp["message"], "Cannot PUT /phone-number");
}

#[tokio::test]
async fn delete_returns_the_object_and_out_of_band_edits_show() {
    let vapi = start().await;
    let id = vapi.seed_twilio_number("+14155550100", "a", None);
    vapi.patch_number(
        &id,
        json!({"name": "edited in dashboard", "smsEnabled": false}),
    )
    .unwrap();
    let (_, _, got) = call(&vapi, Method::GET, &format!("/phone-number/{id}"), None).await;
    assert_eq!(got["name"], "edited in dashboard");

    let (status, _, deleted) =
        call(&vapi, Method::DELETE, &format!("/phone-number/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(deleted["id"], json!(id));
    assert_eq!(deleted["number"], "+14155550100");
    let (status, _, _) = call(&vapi, Method::GET, &format!("/phone-number/{id}"), None).await;
    assert_eq!(status, 404);

    let other = vapi.seed_twilio_number("+14155550101", "b", None);
    assert!(vapi.delete_number(&other).is_some());
    let (status, _, _) = call(
        &vapi,
        Method::DELETE,
        &format!("/phone-number/{other}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn assistants_list_and_get() {
    let vapi = start().await;
    let a = vapi.seed_assistant("Reception");
    let b = vapi.seed_assistant("Sales");
    let (status, _, list) = call(&vapi, Method::GET, "/assistant?limit=1", None).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&list), vec![b.clone()]);
    let (_, _, got) = call(&vapi, Method::GET, &format!("/assistant/{a}"), None).await;
    assert_eq!(got["name"], "Reception");
    assert_eq!(got["orgId"], vapi.org_id());
    let (status, _, created) = call(
        &vapi,
        Method::POST,
        "/assistant",
        Some(json!({"name": "Support"})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        vapi.ensure_assistant("Support"),
        created["id"].as_str().unwrap()
    );
    assert_eq!(vapi.ensure_assistant("Reception"), a);
    let (status, _, _) = call(&vapi, Method::GET, "/assistant?limit=1001", None).await;
    assert_eq!(status, 400);
}

/// Sends `n` creates and returns, per request, the status or `None` for a transport error.
async fn burst(vapi: &StandIn, n: usize) -> Vec<Option<u16>> {
    let http = client();
    let mut out = Vec::new();
    for i in 0..n {
        let r = try_call(
            &http,
            vapi,
            Method::POST,
            "/phone-number",
            Some(twilio_body(&format!("+1415666{i:04}"))),
        )
        .await;
        out.push(r.ok().map(|(s, _, _)| s.as_u16()));
    }
    out
}

#[tokio::test]
async fn random_faults_are_deterministic_by_seed() {
    let faults = FaultConfig {
        seed: 42,
        p_server_error: 0.25,
        p_rate_limit: 0.25,
        retry_after_secs: 0,
        p_lost_response: 0.2,
        scope: FaultScope::Mutating,
        ..FaultConfig::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let vapi = StandIn::start(StandInConfig {
            faults: faults.clone(),
            ..StandInConfig::default()
        })
        .await
        .unwrap();
        let statuses = burst(&vapi, 40).await;
        let log: Vec<Option<InjectedFault>> = vapi.request_log().iter().map(|r| r.fault).collect();
        // Reads are out of scope and never fail.
        let (status, _, _) = call(&vapi, Method::GET, "/phone-number", None).await;
        assert_eq!(status, 200);
        let created = statuses.iter().filter(|s| **s == Some(201)).count();
        let lost = statuses.iter().filter(|s| s.is_none()).count();
        assert!(created > 0 && lost > 0);
        assert!(statuses.contains(&Some(429)));
        assert!(statuses.iter().any(|s| matches!(s, Some(502 | 503))));
        // Lost responses were committed; failed ones were not.
        assert_eq!(vapi.numbers().len(), created + lost);
        assert_eq!(vapi.mutating_calls(), created + lost);
        runs.push((statuses, log));
    }
    assert_eq!(runs[0], runs[1]);

    // set_faults restarts the sequence from the seed.
    let vapi = start().await;
    vapi.set_faults(faults.clone());
    let first = burst(&vapi, 40).await;
    assert_eq!(first, runs[0].0);
}

#[tokio::test]
async fn rate_limit_sends_retry_after_and_one_shot_rules_apply() {
    let vapi = start().await;
    vapi.set_faults(FaultConfig {
        retry_after_secs: 1,
        ..FaultConfig::default()
    });
    vapi.fail_next("POST", "/phone-number", 429, 1);
    vapi.fail_next("*", "/phone-number", 503, 1);
    let body = Some(twilio_body("+14155550100"));
    let (status, headers, resp) = call(&vapi, Method::POST, "/phone-number", body.clone()).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(resp["statusCode"], 429);
    let (status, _, resp) = call(&vapi, Method::GET, "/phone-number", None).await;
    assert_eq!(status, 503);
    assert_eq!(resp["statusCode"], 503);
    let (status, _, _) = call(&vapi, Method::POST, "/phone-number", body).await;
    assert_eq!(status, 201);
    assert_eq!(vapi.numbers().len(), 1);
    assert_eq!(vapi.mutating_calls(), 1);
    let faults: Vec<_> = vapi.request_log().iter().map(|r| r.fault).collect();
    assert_eq!(
        faults,
        vec![
            Some(InjectedFault::RateLimited),
            Some(InjectedFault::Status(503)),
            None
        ]
    );

    // A 502 looks like a proxy's page, not JSON.
    vapi.fail_next("DELETE", "/phone-number/", 502, 1);
    let id = vapi.numbers()[0]["id"].as_str().unwrap().to_owned();
    let (status, headers, resp) =
        call(&vapi, Method::DELETE, &format!("/phone-number/{id}"), None).await;
    assert_eq!(status, 502);
    assert_eq!(headers["content-type"], "text/html");
    assert_eq!(resp, Value::Null);
    assert_eq!(vapi.numbers().len(), 1);
}

#[tokio::test]
async fn lost_response_commits_then_drops_the_connection() {
    let vapi = start().await;
    vapi.lose_next("POST", "/phone-number", 1);
    let http = client();
    let err = try_call(
        &http,
        &vapi,
        Method::POST,
        "/phone-number",
        Some(twilio_body("+14155550100")),
    )
    .await
    .expect_err("no response");
    assert!(!err.is_status());
    assert_eq!(vapi.find_by_number("+14155550100").len(), 1, "committed");
    assert_eq!(vapi.mutating_calls(), 1);
    let log = vapi.request_log();
    assert_eq!(log[0].fault, Some(InjectedFault::LostResponse));
    assert_eq!(log[0].status, Some(201));

    // The same client keeps working afterwards (on a fresh connection).
    let (status, _, list) = try_call(&http, &vapi, Method::GET, "/phone-number", None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Random lost responses on a delete.
    vapi.set_faults(FaultConfig {
        p_lost_response: 1.0,
        ..FaultConfig::default()
    });
    let id = list[0]["id"].as_str().unwrap();
    assert!(
        try_call(
            &http,
            &vapi,
            Method::DELETE,
            &format!("/phone-number/{id}"),
            None
        )
        .await
        .is_err()
    );
    assert!(vapi.numbers().is_empty());
}

#[tokio::test]
async fn hangs_outlast_the_client_timeout_and_latency_applies_to_all() {
    let vapi = start().await;
    vapi.set_faults(FaultConfig {
        p_hang: 1.0,
        hang_ms: 3_000,
        ..FaultConfig::default()
    });
    let impatient = client_with_timeout(Duration::from_millis(200));
    let err = try_call(
        &impatient,
        &vapi,
        Method::POST,
        "/phone-number",
        Some(twilio_body("+14155550100")),
    )
    .await
    .expect_err("times out");
    assert!(err.is_timeout());
    assert!(vapi.numbers().is_empty());

    vapi.set_faults(FaultConfig {
        latency_ms: 150,
        ..FaultConfig::default()
    });
    let started = Instant::now();
    let (status, _, _) = call(&vapi, Method::GET, "/phone-number", None).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn state_file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vapi.json");
    let config = StandInConfig {
        state_file: Some(path.clone()),
        ..StandInConfig::default()
    };
    let (org, id, assistant) = {
        let vapi = StandIn::start(config.clone()).await.unwrap();
        assert!(path.exists(), "written on start");
        let assistant = vapi.ensure_assistant("Reception");
        let (_, _, created) = call(
            &vapi,
            Method::POST,
            "/phone-number",
            Some(twilio_body("+14155550100")),
        )
        .await;
        (
            vapi.org_id(),
            created["id"].as_str().unwrap().to_owned(),
            assistant,
        )
    };
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("super-secret-token"), "no secrets on disk");

    let vapi = StandIn::start(config).await.unwrap();
    assert_eq!(vapi.org_id(), org);
    assert_eq!(vapi.ensure_assistant("Reception"), assistant);
    let (status, _, got) = call(&vapi, Method::GET, &format!("/phone-number/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(got["number"], "+14155550100");
    // New writes still sort after the loaded ones.
    let newer = vapi.seed_twilio_number("+14155550101", "b", None);
    assert_eq!(vapi.numbers()[0]["id"], json!(newer));
}

#[tokio::test]
async fn refuses_non_loopback_addresses() {
    let err = StandIn::start(StandInConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..StandInConfig::default()
    })
    .await
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

/// A minimal blocking HTTP/1.1 GET, so the synchronous test needs no runtime at all.
fn blocking_get(addr: std::net::SocketAddr, path: &str, key: &str) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn background_stand_in_serves_synchronous_tests_and_stops_on_drop() {
    let vapi = StandIn::start_background(StandInConfig::default()).unwrap();
    vapi.seed_twilio_number("+14155550100", "stops-on-drop-marker", None);
    let (addr, key) = (vapi.addr(), vapi.api_key().to_owned());
    let resp = blocking_get(addr, "/phone-number", &key).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("+14155550100"));
    drop(vapi);
    // Tests run in parallel: another test's stand-in may be given the freed port at once, so
    // "stopped" means this stand-in no longer answers, not that nothing listens there.
    match blocking_get(addr, "/phone-number", &key) {
        Err(_) => {}
        Ok(resp) => assert!(
            !resp.contains("stops-on-drop-marker"),
            "still serving: {resp}"
        ),
    }
}

/// Kills the child if the test fails half-way, so no stand-in outlives the test run.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn binary_prints_its_url_seeds_idempotently_and_refuses_public_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let ready = dir.path().join("ready.env");
    let bin = env!("CARGO_BIN_EXE_vapi-standin");

    let run_once = || -> (String, String) {
        let _ = std::fs::remove_file(&ready);
        let mut child = Reap(
            std::process::Command::new(bin)
                .args(["--api-key", "k-test", "--seed-assistant", "Front desk"])
                .arg("--state")
                .arg(&state)
                .arg("--ready-file")
                .arg(&ready)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut line = String::new();
        BufReader::new(child.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("VAPI_BASE_URL=")
            .unwrap()
            .to_owned();
        let ready_text = std::fs::read_to_string(&ready).unwrap();
        assert!(ready_text.contains(&format!("VAPI_BASE_URL={url}\n")));
        assert!(ready_text.contains("VAPI_API_KEY=k-test\n"));
        let addr = url.strip_prefix("http://").unwrap().parse().unwrap();
        let resp = blocking_get(addr, "/assistant", "k-test").unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        let assistant = ready_text
            .lines()
            .find_map(|l| l.strip_prefix("ASSISTANT_FRONT_DESK="))
            .unwrap()
            .to_owned();
        assert!(resp.contains(&assistant));
        // SIGTERM ends it cleanly.
        std::process::Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                assert!(status.success());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "stand-in did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        (url, assistant)
    };
    let (_, first) = run_once();
    let (_, second) = run_once();
    assert_eq!(first, second, "assistant reused from the state file");

    let out = std::process::Command::new(bin)
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}
