//! Real local counterparts for the notification tests: a Slack Web API stand-in, webhook
//! receivers that verify Brevet's signatures, and an SMTP server (aiosmtpd) writing a maildir.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    net::TcpListener as StdListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::post,
    Json, Router,
};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::runtime::Runtime;

fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    m.update(msg);
    hex::encode(m.finalize().into_bytes())
}

fn serve(rt: &Runtime, app: Router) -> String {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// Polls `f` until it returns something or `timeout` passes.
pub fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// Slack
// ---------------------------------------------------------------------------------------------

/// One Web API call as the stand-in saw it, and what it answered.
#[derive(Debug, Clone)]
pub struct SlackCall {
    pub method: String,
    pub body: Value,
    pub answer: Value,
}

#[derive(Default)]
struct SlackState {
    token: String,
    calls: Vec<SlackCall>,
    /// (channel, ts) → the message's current blocks.
    messages: HashMap<(String, String), Value>,
    next_ts: u64,
    replies: Vec<(String, Value)>,
}

/// A local stand-in for Slack that follows Slack's published Web API contract for the calls
/// Brevet makes: `POST /api/chat.postMessage` and `/api/chat.update` need
/// `Authorization: Bearer <bot token>` (else `not_authed` / `invalid_auth`) and a JSON body
/// (`application/json`; without `charset=utf-8` Slack adds the `missing_charset` warning);
/// `chat.postMessage` needs a `channel` and `text` or `blocks` (`channel_not_found`, `no_text`);
/// `chat.update` needs the `channel` and `ts` of a message it posted (`message_not_found`);
/// blocks must be valid Block Kit (`invalid_blocks`): known block types with only their own
/// fields, text objects of type `plain_text`/`mrkdwn` within length limits, `header` text
/// plain_text ≤ 150, at most 10 section fields, actions elements that are buttons with a unique
/// `action_id`, `plain_text` text ≤ 75 and a `style` of `primary`/`danger`. Answers are HTTP 200
/// with `{"ok": true, "channel", "ts", "message"}` or `{"ok": false, "error"}`, as Slack's are.
/// Posting to a user id (`U…`) opens the DM channel `D…`. `POST /response/{n}` stands in for an
/// interaction's `response_url` (JSON with `text`, answered `{"ok": true}`).
pub struct FakeSlack {
    pub base: String,
    state: Arc<Mutex<SlackState>>,
}

fn text_object(v: &Value, max: usize, plain_only: bool) -> Result<(), String> {
    let o = v.as_object().ok_or("text object is not an object")?;
    let kind = o
        .get("type")
        .and_then(Value::as_str)
        .ok_or("text object has no type")?;
    match kind {
        "plain_text" => {}
        "mrkdwn" if !plain_only => {}
        other => return Err(format!("text object type `{other}` not allowed here")),
    }
    for k in o.keys() {
        let ok = match k.as_str() {
            "type" | "text" => true,
            "emoji" => kind == "plain_text",
            "verbatim" => kind == "mrkdwn",
            _ => false,
        };
        if !ok {
            return Err(format!("unknown text object field `{k}`"));
        }
    }
    let t = o
        .get("text")
        .and_then(Value::as_str)
        .ok_or("text object has no text")?;
    if t.is_empty() || t.chars().count() > max {
        return Err(format!(
            "text length {} outside 1..={max}",
            t.chars().count()
        ));
    }
    Ok(())
}

fn only_keys(o: &serde_json::Map<String, Value>, allowed: &[&str]) -> Result<(), String> {
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("unknown field `{k}`")),
        None => Ok(()),
    }
}

/// Block Kit validation for the block types Brevet uses.
pub fn validate_blocks(blocks: &Value) -> Result<(), String> {
    let blocks = blocks.as_array().ok_or("blocks is not an array")?;
    if blocks.is_empty() || blocks.len() > 50 {
        return Err("1 to 50 blocks".into());
    }
    let mut action_ids = std::collections::HashSet::new();
    for b in blocks {
        let o = b.as_object().ok_or("block is not an object")?;
        if let Some(id) = o.get("block_id") {
            let id = id.as_str().ok_or("block_id is not a string")?;
            if id.is_empty() || id.len() > 255 {
                return Err("block_id length".into());
            }
        }
        match o.get("type").and_then(Value::as_str) {
            Some("header") => {
                only_keys(o, &["type", "block_id", "text"])?;
                text_object(&o["text"], 150, true)?;
            }
            Some("section") => {
                only_keys(o, &["type", "block_id", "text", "fields", "accessory"])?;
                if o.get("text").is_none() && o.get("fields").is_none() {
                    return Err("section needs text or fields".into());
                }
                if let Some(t) = o.get("text") {
                    text_object(t, 3000, false)?;
                }
                if let Some(f) = o.get("fields") {
                    let f = f.as_array().ok_or("fields is not an array")?;
                    if f.is_empty() || f.len() > 10 {
                        return Err("1 to 10 fields".into());
                    }
                    for t in f {
                        text_object(t, 2000, false)?;
                    }
                }
            }
            Some("context") => {
                only_keys(o, &["type", "block_id", "elements"])?;
                let e = o["elements"].as_array().ok_or("context elements")?;
                if e.is_empty() || e.len() > 10 {
                    return Err("1 to 10 context elements".into());
                }
                for t in e {
                    text_object(t, 3000, false)?;
                }
            }
            Some("divider") => only_keys(o, &["type", "block_id"])?,
            Some("actions") => {
                only_keys(o, &["type", "block_id", "elements"])?;
                let e = o["elements"].as_array().ok_or("actions elements")?;
                if e.is_empty() || e.len() > 25 {
                    return Err("1 to 25 action elements".into());
                }
                for el in e {
                    let el = el.as_object().ok_or("element is not an object")?;
                    if el.get("type").and_then(Value::as_str) != Some("button") {
                        return Err("only buttons are expected".into());
                    }
                    only_keys(
                        el,
                        &[
                            "type",
                            "action_id",
                            "text",
                            "value",
                            "style",
                            "url",
                            "confirm",
                            "accessibility_label",
                        ],
                    )?;
                    let id = el
                        .get("action_id")
                        .and_then(Value::as_str)
                        .ok_or("button without action_id")?;
                    if id.is_empty() || id.len() > 255 || !action_ids.insert(id.to_owned()) {
                        return Err(format!("action_id `{id}` empty, too long or repeated"));
                    }
                    text_object(&el["text"], 75, true)?;
                    if let Some(v) = el.get("value") {
                        let v = v.as_str().ok_or("value is not a string")?;
                        if v.len() > 2000 {
                            return Err("value too long".into());
                        }
                    }
                    if let Some(s) = el.get("style") {
                        if !matches!(s.as_str(), Some("primary" | "danger")) {
                            return Err("style must be primary or danger".into());
                        }
                    }
                }
            }
            other => return Err(format!("unexpected block type {other:?}")),
        }
    }
    Ok(())
}

fn slack_answer(state: &mut SlackState, method: &str, headers: &HeaderMap, body: &[u8]) -> Value {
    let fail = |e: &str| json!({"ok": false, "error": e});
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        None => return fail("not_authed"),
        Some(a) if a != format!("Bearer {}", state.token) => return fail("invalid_auth"),
        _ => {}
    }
    let ctype = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype.starts_with("application/json") {
        return fail("invalid_form_data");
    }
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return fail("invalid_json");
    };
    let mut warnings = vec![];
    if !ctype
        .replace(' ', "")
        .to_lowercase()
        .contains("charset=utf-8")
    {
        warnings.push("missing_charset");
    }
    let channel = req["channel"].as_str().unwrap_or("").to_owned();
    if let Some(blocks) = req.get("blocks") {
        if let Err(e) = validate_blocks(blocks) {
            eprintln!("fake slack: invalid_blocks: {e}");
            return json!({"ok": false, "error": "invalid_blocks", "response_metadata": {"messages": [e]}});
        }
    }
    let mut answer = match method {
        "chat.postMessage" => {
            if channel.is_empty() {
                return fail("channel_not_found");
            }
            if req
                .get("text")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
                && req.get("blocks").is_none()
            {
                return fail("no_text");
            }
            let channel = match channel.strip_prefix('U') {
                Some(rest) => format!("D{rest}"),
                None => channel,
            };
            state.next_ts += 1;
            let ts = format!("1700000000.{:06}", state.next_ts);
            let blocks = req.get("blocks").cloned().unwrap_or(Value::Null);
            state
                .messages
                .insert((channel.clone(), ts.clone()), blocks.clone());
            json!({"ok": true, "channel": channel, "ts": ts,
                   "message": {"type": "message", "text": req["text"], "blocks": blocks, "ts": ts}})
        }
        "chat.update" => {
            let ts = req["ts"].as_str().unwrap_or("").to_owned();
            if channel.is_empty() || ts.is_empty() {
                return fail("cant_update_message");
            }
            let key = (channel.clone(), ts.clone());
            if !state.messages.contains_key(&key) {
                return fail("message_not_found");
            }
            state
                .messages
                .insert(key, req.get("blocks").cloned().unwrap_or(Value::Null));
            json!({"ok": true, "channel": channel, "ts": ts, "text": req["text"]})
        }
        _ => return fail("unknown_method"),
    };
    if !warnings.is_empty() {
        answer["response_metadata"] = json!({"warnings": warnings});
    }
    answer
}

type Shared = Arc<Mutex<SlackState>>;

async fn slack_api(
    State(state): State<Shared>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Json<Value> {
    let mut s = state.lock().unwrap();
    let answer = slack_answer(&mut s, &method, &headers, &body);
    s.calls.push(SlackCall {
        method,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        answer: answer.clone(),
    });
    Json(answer)
}

async fn slack_response(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let json_ok = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    match parsed {
        Some(v) if json_ok && v["text"].is_string() => {
            state.lock().unwrap().replies.push((id, v));
            (StatusCode::OK, Json(json!({"ok": true})))
        }
        _ => (
            StatusCode::BAD_REQUEST,
            Json(json!({"ok": false, "error": "invalid_payload"})),
        ),
    }
}

impl FakeSlack {
    pub fn start(rt: &Runtime, token: &str) -> Self {
        let state: Shared = Arc::new(Mutex::new(SlackState {
            token: token.to_owned(),
            ..Default::default()
        }));
        let app = Router::new()
            .route("/api/{method}", post(slack_api))
            .route("/response/{id}", post(slack_response))
            .with_state(state.clone());
        Self {
            base: serve(rt, app),
            state,
        }
    }

    pub fn api_base(&self) -> String {
        format!("{}/api", self.base)
    }

    pub fn response_url(&self, id: &str) -> String {
        format!("{}/response/{id}", self.base)
    }

    pub fn calls(&self) -> Vec<SlackCall> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Ephemeral replies received at `/response/{id}`: (id, body).
    pub fn replies(&self) -> Vec<(String, Value)> {
        self.state.lock().unwrap().replies.clone()
    }

    /// Waits for a successful call matching `pred`.
    pub fn wait_call(&self, what: &str, pred: impl Fn(&SlackCall) -> bool) -> SlackCall {
        wait_until(Duration::from_secs(20), what, || {
            self.calls()
                .into_iter()
                .find(|c| c.answer["ok"] == true && pred(c))
        })
    }

    /// Slack's request signature for an interaction body sent at `ts`.
    pub fn sign(signing_secret: &str, ts: i64, body: &str) -> String {
        format!(
            "v0={}",
            hmac_hex(
                signing_secret.as_bytes(),
                format!("v0:{ts}:{body}").as_bytes()
            )
        )
    }

    /// A `block_actions` interaction body (form-encoded `payload=`), as Slack sends for a click.
    pub fn click_body(
        &self,
        user: &str,
        action_id: &str,
        request_id: &str,
        response_id: &str,
    ) -> String {
        self.click_body_in("T0TEST", user, action_id, request_id, response_id)
    }

    /// [`Self::click_body`] from the workspace `team`.
    pub fn click_body_in(
        &self,
        team: &str,
        user: &str,
        action_id: &str,
        request_id: &str,
        response_id: &str,
    ) -> String {
        let payload = json!({
            "type": "block_actions",
            "user": {"id": user, "username": user.to_lowercase(), "team_id": team},
            "api_app_id": "A0TEST",
            "token": "deprecated-verification-token",
            "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": "C0APPROVERS", "is_ephemeral": false},
            "trigger_id": "1.2.3",
            "team": {"id": team, "domain": "test"},
            "channel": {"id": "C0APPROVERS", "name": "approvers"},
            "response_url": self.response_url(response_id),
            "actions": [{
                "action_id": action_id, "block_id": "brevet_decision", "type": "button",
                "text": {"type": "plain_text", "text": "Approve"}, "value": request_id,
                "action_ts": "1700000000.1"
            }]
        });
        serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Received {
    pub delivery: String,
    pub event: String,
    pub body: Value,
    /// Signature, timestamp (within 5 minutes) and headers all checked out.
    pub verified: bool,
    pub status: u16,
    pub at: Instant,
}

struct HookState {
    secret: String,
    fail_first: usize,
    received: Vec<Received>,
}

/// A webhook receiver that verifies `Brevet-Signature` as docs/notifications.md tells receivers
/// to, and answers 503 to its first `fail_first` requests.
pub struct WebhookReceiver {
    pub url: String,
    state: Arc<Mutex<HookState>>,
}

/// The documented verification: `t=<unix>,v1=<hex>`; v1 = HMAC-SHA256(secret, "<t>.<body>");
/// reject if |now - t| > 300 s.
pub fn verify_brevet_signature(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = x.parse::<i64>().ok(),
            Some(("v1", x)) => v1 = Some(x.to_owned()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - t).abs() > 300 {
        return false;
    }
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    hmac_hex(secret.as_bytes(), &signed) == v1
}

async fn hook(
    State(state): State<Arc<Mutex<HookState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut s = state.lock().unwrap();
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let verified = verify_brevet_signature(&s.secret, &h("brevet-signature"), &body)
        && h("content-type").starts_with("application/json")
        && parsed["delivery_id"] == h("brevet-delivery")
        && parsed["type"] == h("brevet-event");
    let status = if !verified {
        StatusCode::BAD_REQUEST
    } else if s.received.len() < s.fail_first {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    s.received.push(Received {
        delivery: h("brevet-delivery"),
        event: h("brevet-event"),
        body: parsed,
        verified,
        status: status.as_u16(),
        at: Instant::now(),
    });
    status
}

impl WebhookReceiver {
    pub fn start(rt: &Runtime, secret: &str, fail_first: usize) -> Self {
        let state = Arc::new(Mutex::new(HookState {
            secret: secret.to_owned(),
            fail_first,
            received: vec![],
        }));
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(state.clone());
        Self {
            url: format!("{}/hook", serve(rt, app)),
            state,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }
}

/// A URL where nothing listens (the port was free a moment ago).
pub fn dead_url() -> String {
    let l = StdListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}/hook")
}

// ---------------------------------------------------------------------------------------------
// SMTP
// ---------------------------------------------------------------------------------------------

/// aiosmtpd (from the test virtualenv scripts/test installs) storing mail in a maildir.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    maildir: tempfile::TempDir,
}

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("BREVET_TEST_PYTHON") {
        return p.into();
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.test-services/venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run the tests with `scripts/test`, which installs aiosmtpd there",
        p.display()
    );
    p
}

impl SmtpServer {
    pub fn start() -> Self {
        let maildir = tempfile::tempdir().unwrap();
        let port = {
            let l = StdListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new(python())
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("mail"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        wait_until(Duration::from_secs(20), "aiosmtpd to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Self {
            child,
            port,
            maildir,
        }
    }

    /// Raw RFC 5322 messages received so far.
    pub fn messages(&self) -> Vec<String> {
        let dir = self.maildir.path().join("mail").join("new");
        let Ok(entries) = std::fs::read_dir(dir) else {
            return vec![];
        };
        entries
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
