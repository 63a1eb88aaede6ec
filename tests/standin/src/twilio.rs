//! A local stand-in for the part of Twilio's API vapictl reads, for tests and the quickstart;
//! never part of `vapictl`. Self-contained: it shares nothing with the Vapi stand-in but the
//! connection loop (`conn`) and the [`TwilioLink`] that lets a Vapi import set a number's URLs
//! here, as the real import does ([`StandIn::link_twilio`](crate::vapi::StandIn::link_twilio)).
//!
//! It serves `GET /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json` with basic auth
//! (account SID + auth token, or API key SID + secret), `PageSize`/`Page` paging and
//! `next_page_uri`, Twilio's error bodies (20003, 10001, 20404), injected faults (any status,
//! 429 with `Retry-After`), and records every request.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One number on an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandInNumber {
    pub phone_number: String,
    pub sid: String,
    pub voice_url: Option<String>,
    pub sms_url: Option<String>,
    pub voice: bool,
    pub sms: bool,
}

#[derive(Debug, Default)]
struct Account {
    auth_token: String,
    /// API key SID → secret.
    api_keys: BTreeMap<String, String>,
    suspended: bool,
    numbers: Vec<StandInNumber>,
}

/// One request as received (no headers: they hold the credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
}

#[derive(Debug, Default)]
struct Model {
    accounts: BTreeMap<String, Account>,
    log: Vec<TwilioRequest>,
    /// (status, times left, Retry-After seconds) answered before handling.
    faults: Vec<(u16, usize, u64)>,
    next_sid: u64,
}

fn lock(m: &Mutex<Model>) -> MutexGuard<'_, Model> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The handle a Vapi stand-in keeps to set a number's URLs on import.
#[derive(Debug, Clone)]
pub struct TwilioLink {
    model: Arc<Mutex<Model>>,
}

impl TwilioLink {
    /// What the real import does on Twilio: with valid credentials for an account that holds
    /// the number, points its voice URL (and, with `sms_enabled`, its SMS URL) at `vapi_base`.
    ///
    /// # Errors
    /// The message Vapi answers with when Twilio refuses.
    pub fn import(
        &self,
        account_sid: &str,
        username: &str,
        secret: &str,
        number: &str,
        sms_enabled: bool,
        vapi_base: &str,
    ) -> Result<(), String> {
        let mut m = lock(&self.model);
        let account = m
            .accounts
            .get_mut(account_sid)
            .filter(|a| authenticates(a, account_sid, username, secret))
            .ok_or_else(|| "Twilio: authentication failed (20003)".to_string())?;
        let n = account
            .numbers
            .iter_mut()
            .find(|n| n.phone_number == number)
            .ok_or_else(|| format!("Twilio: number {number} not found on the account"))?;
        n.voice_url = Some(format!("{vapi_base}/twilio/inbound_call"));
        if sms_enabled {
            n.sms_url = Some(format!("{vapi_base}/twilio/sms"));
        }
        Ok(())
    }
}

/// A Vapi create's body carried over to Twilio: `provider: twilio` imports only.
pub(crate) fn import(
    link: &TwilioLink,
    vapi_base: &str,
    body: &serde_json::Map<String, Value>,
) -> Result<(), String> {
    let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
    if text("provider") != "twilio" {
        return Ok(());
    }
    let account = text("twilioAccountSid");
    let (user, secret) = if body.contains_key("twilioApiKey") {
        (text("twilioApiKey"), text("twilioApiSecret"))
    } else {
        (account, text("twilioAuthToken"))
    };
    let sms = body
        .get("smsEnabled")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    link.import(account, user, secret, text("number"), sms, vapi_base)
}

fn authenticates(a: &Account, account_sid: &str, username: &str, secret: &str) -> bool {
    (username == account_sid && a.auth_token == secret)
        || a.api_keys.get(username).is_some_and(|s| s == secret)
}

/// A running Twilio stand-in; dropping it stops the server and closes its open connections.
pub struct TwilioStandIn {
    model: Arc<Mutex<Model>>,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for TwilioStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioStandIn")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for TwilioStandIn {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl TwilioStandIn {
    /// Starts serving on a loopback port of its own, on a thread of its own.
    pub fn start_background(listen: SocketAddr) -> io::Result<TwilioStandIn> {
        if !listen.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the Twilio stand-in only listens on loopback addresses",
            ));
        }
        let model = Arc::new(Mutex::new(Model::default()));
        let std_listener = std::net::TcpListener::bind(listen)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = router(model.clone());
        let thread = std::thread::Builder::new()
            .name(format!("twilio-standin-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                        return;
                    };
                    crate::conn::accept_loop(listener, app, async {
                        let _ = stopped.await;
                    })
                    .await;
                });
            })?;
        Ok(TwilioStandIn {
            model,
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// On a free loopback port.
    pub fn start() -> io::Result<TwilioStandIn> {
        TwilioStandIn::start_background(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn link(&self) -> TwilioLink {
        TwilioLink {
            model: self.model.clone(),
        }
    }

    // ---- seeding -----------------------------------------------------------------------------

    /// Creates (or re-keys) an account with this auth token.
    pub fn add_account(&self, account_sid: &str, auth_token: &str) {
        lock(&self.model)
            .accounts
            .entry(account_sid.to_string())
            .or_default()
            .auth_token = auth_token.to_string();
    }

    /// Adds an API key (SID and secret) that can read the account.
    pub fn add_api_key(&self, account_sid: &str, key_sid: &str, secret: &str) {
        lock(&self.model)
            .accounts
            .entry(account_sid.to_string())
            .or_default()
            .api_keys
            .insert(key_sid.to_string(), secret.to_string());
    }

    /// Suspends (or reactivates) the account: reads answer 401 with error 10001.
    pub fn set_suspended(&self, account_sid: &str, suspended: bool) {
        if let Some(a) = lock(&self.model).accounts.get_mut(account_sid) {
            a.suspended = suspended;
        }
    }

    /// Puts a number on the account (voice and SMS capable unless said otherwise), no URLs.
    pub fn add_number(&self, account_sid: &str, number: &str, voice: bool, sms: bool) {
        let mut m = lock(&self.model);
        m.next_sid += 1;
        let sid = format!("PN{:032x}", m.next_sid);
        m.accounts
            .entry(account_sid.to_string())
            .or_default()
            .numbers
            .push(StandInNumber {
                phone_number: number.to_string(),
                sid,
                voice_url: None,
                sms_url: None,
                voice,
                sms,
            });
    }

    /// Removes the number from every account (released, or moved away).
    pub fn remove_number(&self, number: &str) {
        for a in lock(&self.model).accounts.values_mut() {
            a.numbers.retain(|n| n.phone_number != number);
        }
    }

    /// An edit in the Twilio console: sets the number's voice and SMS URLs.
    pub fn set_urls(&self, number: &str, voice_url: Option<&str>, sms_url: Option<&str>) {
        for a in lock(&self.model).accounts.values_mut() {
            for n in a.numbers.iter_mut().filter(|n| n.phone_number == number) {
                n.voice_url = voice_url.map(str::to_string);
                n.sms_url = sms_url.map(str::to_string);
            }
        }
    }

    /// The number as Twilio holds it now.
    pub fn number(&self, number: &str) -> Option<StandInNumber> {
        lock(&self.model)
            .accounts
            .values()
            .flat_map(|a| a.numbers.iter())
            .find(|n| n.phone_number == number)
            .cloned()
    }

    // ---- faults and observation --------------------------------------------------------------

    /// Answers the next `times` requests with `status` (a 429 carries `Retry-After:
    /// retry_after_secs`) and Twilio's error body, without handling them.
    pub fn fail_next(&self, status: u16, times: usize, retry_after_secs: u64) {
        lock(&self.model)
            .faults
            .push((status, times, retry_after_secs));
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<TwilioRequest> {
        lock(&self.model).log.clone()
    }

    pub fn reset_log(&self) {
        lock(&self.model).log.clear();
    }
}

type Shared = Arc<Mutex<Model>>;

fn router(model: Shared) -> Router {
    Router::new()
        .route(
            "/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json",
            axum::routing::any(list_numbers),
        )
        .fallback(no_route)
        .with_state(model)
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        })),
    )
        .into_response()
}

fn log(model: &mut Model, method: &Method, uri: &Uri, status: StatusCode) {
    model.log.push(TwilioRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        status: status.as_u16(),
    });
}

async fn no_route(State(model): State<Shared>, method: Method, uri: Uri) -> Response {
    log(&mut lock(&model), &method, &uri, StatusCode::NOT_FOUND);
    error(
        StatusCode::NOT_FOUND,
        20404,
        "The requested resource was not found",
    )
}

/// `Authorization: Basic base64(user:secret)`, decoded.
fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, secret) = text.split_once(':')?;
    Some((user.to_string(), secret.to_string()))
}

async fn list_numbers(
    State(model): State<Shared>,
    Path(sid): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut m = lock(&model);
    let answer = answer(&mut m, &sid, &query, &method, &headers);
    log(&mut m, &method, &uri, answer.status());
    answer
}

fn answer(
    m: &mut Model,
    sid: &str,
    query: &BTreeMap<String, String>,
    method: &Method,
    headers: &HeaderMap,
) -> Response {
    if let Some(f) = m.faults.iter_mut().find(|f| f.1 > 0) {
        f.1 -= 1;
        let (status, _, retry_after) = *f;
        m.faults.retain(|f| f.1 > 0);
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = error(status, 20500, "injected fault");
        if status == StatusCode::TOO_MANY_REQUESTS {
            resp = error(status, 20429, "Too Many Requests");
            if let Ok(v) = retry_after.to_string().parse() {
                resp.headers_mut().insert("retry-after", v);
            }
        }
        return resp;
    }
    let Some((user, secret)) = basic_auth(headers) else {
        return error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    };
    let Some(account) = m
        .accounts
        .get(sid)
        .filter(|a| authenticates(a, sid, &user, &secret))
    else {
        return error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    };
    if account.suspended {
        return error(StatusCode::UNAUTHORIZED, 10001, "Account is not active");
    }
    if method != Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            20004,
            "the stand-in only reads numbers",
        );
    }
    let size: usize = query
        .get("PageSize")
        .and_then(|s| s.parse().ok())
        .unwrap_or(50)
        .clamp(1, 1000);
    let page: usize = query.get("Page").and_then(|s| s.parse().ok()).unwrap_or(0);
    let all = &account.numbers;
    let items: Vec<Value> = all
        .iter()
        .skip(page * size)
        .take(size)
        .map(|n| {
            json!({
                "sid": n.sid,
                "account_sid": sid,
                "phone_number": n.phone_number,
                "voice_url": n.voice_url,
                "sms_url": n.sms_url,
                "capabilities": {"voice": n.voice, "sms": n.sms, "mms": false, "fax": false},
            })
        })
        .collect();
    let path = format!("/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json");
    let next = ((page + 1) * size < all.len()).then(|| {
        format!(
            "{path}?PageSize={size}&Page={}&PageToken=PT{}",
            page + 1,
            page + 1
        )
    });
    axum::Json(json!({
        "incoming_phone_numbers": items,
        "page": page,
        "page_size": size,
        "first_page_uri": format!("{path}?PageSize={size}&Page=0"),
        "next_page_uri": next,
        "uri": format!("{path}?PageSize={size}&Page={page}"),
    }))
    .into_response()
}
