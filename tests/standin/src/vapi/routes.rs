//! The HTTP face of the Vapi stand-in: the Vapi routes and the front door (log, latency, auth,
//! faults) every request passes first. Connections are served by [`crate::conn`].

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::dto;
use super::faults::{Faults, InjectedFault};
use super::model::{Model, SECRET_FIELDS, SortOrder, format_ts};
use crate::conn::ConnCtl;

/// Bodies above this are refused; Vapi's own limit is unknown and nothing legitimate comes near.
const MAX_BODY: usize = 2 * 1024 * 1024;

const INVALID_KEY: &str = "Invalid Key. Hot tip, you may be using the private key instead of the public key, or vice versa.";

/// One request as the stand-in received it.
///
/// Bodies may hold Twilio tokens: they stay in memory (no `Serialize` on purpose), and `Debug`
/// masks them.
#[derive(Clone, PartialEq)]
pub struct LoggedRequest {
    /// Arrival order, from 0 (continues across `reset_log`).
    pub seq: usize,
    pub method: String,
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// The body as JSON (a JSON string holding the raw text if it did not parse); `None` if empty.
    pub body: Option<Value>,
    /// The status the stand-in answered (or, for a lost response, would have answered);
    /// `None` while the request is still in progress.
    pub status: Option<u16>,
    pub fault: Option<InjectedFault>,
}

impl std::fmt::Debug for LoggedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = self.body.as_ref().map(|b| {
            let mut b = b.clone();
            if let Some(obj) = b.as_object_mut() {
                for field in SECRET_FIELDS {
                    if let Some(v) = obj.get_mut(field) {
                        *v = Value::String("<redacted>".into());
                    }
                }
            }
            b
        });
        f.debug_struct("LoggedRequest")
            .field("seq", &self.seq)
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("body", &body)
            .field("status", &self.status)
            .field("fault", &self.fault)
            .finish()
    }
}

/// Everything the handlers and the test API share.
pub(crate) struct Shared {
    pub api_key: String,
    pub model: Mutex<Model>,
    pub faults: Mutex<Faults>,
    log: Mutex<Log>,
    mutating: AtomicUsize,
    lists: AtomicUsize,
    pub state_file: Option<PathBuf>,
    /// The Twilio stand-in an import sets the number's URLs in, and this server's base URL.
    pub twilio: Mutex<Option<(crate::twilio::TwilioLink, String)>>,
}

#[derive(Default)]
struct Log {
    next_seq: usize,
    entries: Vec<LoggedRequest>,
}

/// Locks a mutex, ignoring poisoning: a panicking test thread must not take the server down.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(api_key: String, model: Model, faults: Faults, state_file: Option<PathBuf>) -> Self {
        Shared {
            api_key,
            model: Mutex::new(model),
            faults: Mutex::new(faults),
            log: Mutex::new(Log::default()),
            mutating: AtomicUsize::new(0),
            lists: AtomicUsize::new(0),
            state_file,
            twilio: Mutex::new(None),
        }
    }

    pub fn request_log(&self) -> Vec<LoggedRequest> {
        lock(&self.log).entries.clone()
    }

    pub fn reset_log(&self) {
        lock(&self.log).entries.clear();
        self.mutating.store(0, Ordering::SeqCst);
        self.lists.store(0, Ordering::SeqCst);
    }

    pub fn mutating_calls(&self) -> usize {
        self.mutating.load(Ordering::SeqCst)
    }

    pub fn list_calls(&self) -> usize {
        self.lists.load(Ordering::SeqCst)
    }

    fn log_start(&self, entry: LoggedRequest) -> usize {
        let mut log = lock(&self.log);
        let seq = log.next_seq;
        log.next_seq += 1;
        log.entries.push(LoggedRequest { seq, ..entry });
        seq
    }

    fn log_end(&self, seq: usize, status: u16, fault: Option<InjectedFault>) {
        let mut log = lock(&self.log);
        // Entries are in seq order, but `reset_log` may have removed this one meanwhile.
        if let Some(e) = log.entries.iter_mut().rev().find(|e| e.seq == seq) {
            e.status = Some(status);
            e.fault = fault;
        }
    }

    /// Writes the model to the state file, if there is one (temp file + rename, so a reader
    /// never sees half a file).
    pub fn persist(&self, model: &Model) -> io::Result<()> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        let bytes = serde_json::to_vec_pretty(&model.snapshot()).map_err(io::Error::other)?;
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    }

    /// Bookkeeping after an HTTP mutation changed the model.
    fn committed(&self, model: &Model) -> Result<(), ApiError> {
        self.mutating.fetch_add(1, Ordering::SeqCst);
        self.persist(model).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!(format!("stand-in could not save its state file: {e}")),
            )
        })
    }
}

// ---- responses --------------------------------------------------------------------------------

/// A NestJS-style error body: `{message, error, statusCode}`.
fn nest(status: StatusCode, message: Value) -> Response {
    let error = status.canonical_reason().unwrap_or("Error");
    (
        status,
        axum::Json(json!({"message": message, "error": error, "statusCode": status.as_u16()})),
    )
        .into_response()
}

/// An error answer on its way out of a handler.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: Value,
}

impl ApiError {
    fn new(status: StatusCode, message: Value) -> Self {
        ApiError { status, message }
    }

    fn bad_request(messages: Vec<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, json!(messages))
    }

    fn not_found(what: &str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, json!(format!("{what} not found")))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        nest(self.status, self.message)
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok(status: StatusCode, v: Value) -> ApiResult {
    Ok((status, axum::Json(v)).into_response())
}

/// The answer for an injected error status. 502 looks like a proxy's HTML page, because that is
/// what clients get from a load balancer in front of the API; the rest are NestJS JSON.
fn injected(status: u16, retry_after_secs: u64) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    match status {
        StatusCode::BAD_GATEWAY => (
            status,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>\n",
        )
            .into_response(),
        StatusCode::TOO_MANY_REQUESTS => {
            let mut r = nest(status, json!("ThrottlerException: Too Many Requests"));
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            r
        }
        // NestJS's words when a guard refuses a valid key (Vapi documents no 403 body).
        StatusCode::FORBIDDEN => nest(status, json!("Forbidden resource")),
        // Vapi documents no 409 for phone numbers; a message a client should pass on.
        StatusCode::CONFLICT => nest(
            status,
            json!("The phone number is being changed by another request"),
        ),
        _ => nest(
            status,
            json!(status.canonical_reason().unwrap_or("Injected failure")),
        ),
    }
}

/// Parses a request body as a JSON object; an empty body counts as `{}` (Express leaves the
/// body empty and validation then reports the missing fields).
fn json_object(bytes: &Bytes) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request(vec![
            "request body must be a JSON object".into(),
        ])),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            json!(format!(
                "Unexpected token in JSON at line {} column {}",
                e.line(),
                e.column()
            )),
        )),
    }
}

/// Checks a path id the way NestJS's ParseUUIDPipe does, and normalises it to lower case.
fn parse_id(id: &str) -> Result<String, ApiError> {
    match Uuid::try_parse(id) {
        Ok(u) if id.len() == 36 => Ok(u.hyphenated().to_string()),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            json!("Validation failed (uuid is expected)"),
        )),
    }
}

fn authorized(headers: &HeaderMap, key: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, token)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer") && token.trim() == key
}

// ---- front door -------------------------------------------------------------------------------

/// Runs in front of every route: log, latency, auth, faults.
async fn front_door(State(sh): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return nest(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!("request entity too large"),
            );
        }
    };
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let logged_body = if bytes.is_empty() {
        None
    } else {
        Some(
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())),
        )
    };
    let seq = sh.log_start(LoggedRequest {
        seq: 0,
        method: method.clone(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_owned),
        body: logged_body,
        status: None,
        fault: None,
    });

    let (latency, hang, retry_after) = {
        let f = lock(&sh.faults);
        let c = f.config();
        (c.latency_ms, c.hang_ms, c.retry_after_secs)
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }

    if !authorized(&parts.headers, &sh.api_key) {
        sh.log_end(seq, 401, None);
        return nest(StatusCode::UNAUTHORIZED, json!(INVALID_KEY));
    }

    let fault = lock(&sh.faults).decide(&method, &path);
    let conn = parts.extensions.get::<Arc<ConnCtl>>().cloned();
    let response = match fault {
        Some(InjectedFault::Status(s)) => injected(s, retry_after),
        Some(InjectedFault::RateLimited) => injected(429, retry_after),
        Some(InjectedFault::EchoBody) => nest(
            StatusCode::BAD_REQUEST,
            json!([format!(
                "request body could not be processed: {}",
                String::from_utf8_lossy(&bytes)
            )]),
        ),
        Some(InjectedFault::Hang) => {
            tokio::time::sleep(Duration::from_millis(hang)).await;
            injected(504, retry_after)
        }
        Some(InjectedFault::LostResponse) => {
            let r = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            // The handler has committed; now make sure not one byte of its answer goes out.
            if let Some(conn) = conn {
                conn.kill();
            }
            r
        }
        None => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    };
    sh.log_end(seq, response.status().as_u16(), fault);
    response
}

// ---- handlers ---------------------------------------------------------------------------------

type Pairs = Query<Vec<(String, String)>>;

async fn create_number(State(sh): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let body = json_object(&body)?;
    dto::create_phone_number(&body).map_err(ApiError::bad_request)?;
    if let Some((link, base)) = lock(&sh.twilio).as_ref() {
        crate::twilio::import(link, base, &body).map_err(|m| ApiError::bad_request(vec![m]))?;
    }
    let mut model = lock(&sh.model);
    let out = model.create_number(body);
    sh.committed(&model)?;
    ok(StatusCode::CREATED, out)
}

async fn list_numbers(State(sh): State<Arc<Shared>>, Query(pairs): Pairs) -> ApiResult {
    let q = dto::list_query(&pairs).map_err(ApiError::bad_request)?;
    let page = lock(&sh.model).page_numbers(&q.filter, SortOrder::Desc, 0, q.limit, &|_| true);
    sh.lists.fetch_add(1, Ordering::SeqCst);
    ok(StatusCode::OK, Value::Array(page.items))
}

async fn list_numbers_v2(State(sh): State<Arc<Shared>>, Query(pairs): Pairs) -> ApiResult {
    let q = dto::page_query(&pairs).map_err(ApiError::bad_request)?;
    let search = q.search.clone().filter(|s| !s.is_empty());
    let blind = lock(&sh.faults).config().blind_search;
    let offset = (q.page - 1).saturating_mul(q.limit);
    let page = lock(&sh.model).page_numbers(&q.filter, q.order, offset, q.limit, &|doc| {
        search
            .as_deref()
            .is_none_or(|s| !blind && dto::search_matches(doc, s))
    });
    sh.lists.fetch_add(1, Ordering::SeqCst);
    let skew = lock(&sh.faults).config().total_items_skew;
    let reported_total = (page.total as i64 + skew).max(0);
    let total_pages = if q.limit == 0 {
        0
    } else {
        page.total.div_ceil(q.limit)
    };
    let mut metadata = json!({
        "itemsPerPage": q.limit,
        "totalItems": reported_total,
        "currentPage": q.page,
        "totalPages": total_pages,
        "hasNextPage": q.page < total_pages,
        "sortOrder": match q.order { SortOrder::Asc => "ASC", SortOrder::Desc => "DESC" },
    });
    if let Some(t) = q.filter.created_le {
        metadata["createdAtLe"] = json!(format_ts(t));
    }
    if let Some(t) = q.filter.created_ge {
        metadata["createdAtGe"] = json!(format_ts(t));
    }
    ok(
        StatusCode::OK,
        json!({"results": page.items, "metadata": metadata}),
    )
}

async fn get_number(State(sh): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    let found = lock(&sh.model).get_number(&id);
    ok(
        StatusCode::OK,
        found.ok_or_else(|| ApiError::not_found("Phone number"))?,
    )
}

async fn update_number(
    State(sh): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let id = parse_id(&id)?;
    let body = json_object(&body)?;
    let checked = dto::update_phone_number(&body);
    let mut model = lock(&sh.model);
    let current = match (model.get_number(&id), checked) {
        (None, Err(errs)) => return Err(ApiError::bad_request(errs)),
        (None, Ok(())) => return Err(ApiError::not_found("Phone number")),
        (Some(current), checked) => {
            checked
                .or_else(|errs| dto::known_to_vapi(errs, &current))
                .map_err(ApiError::bad_request)?;
            current
        }
    };
    // The update DTO is picked by provider; the stand-in only knows the Twilio one, and a client
    // that patches a number it does not manage should hear about it.
    if current.get("provider").and_then(Value::as_str) != Some("twilio") {
        return Err(ApiError::bad_request(vec![
            "the stand-in only updates twilio numbers over HTTP".into(),
        ]));
    }
    let out = model
        .update_number(&id, body)
        .ok_or_else(|| ApiError::not_found("Phone number"))?;
    sh.committed(&model)?;
    ok(StatusCode::OK, out)
}

async fn delete_number(State(sh): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    let mut model = lock(&sh.model);
    let out = model
        .delete_number(&id)
        .ok_or_else(|| ApiError::not_found("Phone number"))?;
    sh.committed(&model)?;
    ok(StatusCode::OK, out)
}

async fn create_assistant(State(sh): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let body = json_object(&body)?;
    dto::create_assistant(&body).map_err(ApiError::bad_request)?;
    let mut model = lock(&sh.model);
    let out = model.create_assistant(body);
    sh.committed(&model)?;
    ok(StatusCode::CREATED, out)
}

async fn list_assistants(State(sh): State<Arc<Shared>>, Query(pairs): Pairs) -> ApiResult {
    let q = dto::list_query(&pairs).map_err(ApiError::bad_request)?;
    let page = lock(&sh.model).page_assistants(&q.filter, SortOrder::Desc, 0, q.limit);
    sh.lists.fetch_add(1, Ordering::SeqCst);
    ok(StatusCode::OK, Value::Array(page.items))
}

async fn get_assistant(State(sh): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    let found = lock(&sh.model).get_assistant(&id);
    ok(
        StatusCode::OK,
        found.ok_or_else(|| ApiError::not_found("Assistant"))?,
    )
}

async fn create_squad(State(sh): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let body = json_object(&body)?;
    if !body.get("members").is_some_and(Value::is_array) {
        return Err(ApiError::bad_request(vec![
            "members must be an array".into(),
        ]));
    }
    let mut model = lock(&sh.model);
    let out = model.create_squad(body);
    sh.committed(&model)?;
    ok(StatusCode::CREATED, out)
}

async fn list_squads(State(sh): State<Arc<Shared>>, Query(pairs): Pairs) -> ApiResult {
    let q = dto::list_query(&pairs).map_err(ApiError::bad_request)?;
    let page = lock(&sh.model).page_squads(&q.filter, SortOrder::Desc, 0, q.limit);
    sh.lists.fetch_add(1, Ordering::SeqCst);
    ok(StatusCode::OK, Value::Array(page.items))
}

async fn get_squad(State(sh): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    let found = lock(&sh.model).get_squad(&id);
    ok(
        StatusCode::OK,
        found.ok_or_else(|| ApiError::not_found("Squad"))?,
    )
}

/// Express's answer for a route that does not exist (NestJS does not send 405).
async fn no_route(method: Method, uri: Uri) -> Response {
    nest(
        StatusCode::NOT_FOUND,
        json!(format!("Cannot {method} {}", uri.path())),
    )
}

pub(crate) fn router(sh: Arc<Shared>) -> Router {
    Router::new()
        .route("/phone-number", get(list_numbers).post(create_number))
        .route("/v2/phone-number", get(list_numbers_v2))
        .route(
            "/phone-number/{id}",
            get(get_number).patch(update_number).delete(delete_number),
        )
        .route("/assistant", get(list_assistants).post(create_assistant))
        .route("/assistant/{id}", get(get_assistant))
        .route("/squad", get(list_squads).post(create_squad))
        .route("/squad/{id}", get(get_squad))
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .layer(middleware::from_fn_with_state(sh.clone(), front_door))
        .with_state(sh)
}
