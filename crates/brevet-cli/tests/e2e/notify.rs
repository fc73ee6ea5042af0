//! Notifications end to end, with the real `brevet` binary: approvals in Slack (against a local
//! stand-in that holds Brevet to Slack's Web API contract), signed interactions and every way
//! of forging them, signed webhooks with retries and visible delivery state, and email to
//! approvers through a real SMTP server (aiosmtpd).

use std::time::{Duration, Instant};

use crate::common::*;
use crate::notify_support::*;
use serde_json::Value;
use tokio::runtime::Runtime;

const SLACK_TOKEN: &str = "xoxb-test-bot-token";
const SLACK_SIGNING: &str = "test-signing-secret-0123456789abcdef";
const HOOK_SECRET: &str = "whsec-test-0123456789abcdef";

/// Adds config lines to one principal of the shared test config.
fn link(world: &mut World, id: &str, lines: &str) {
    let principals = world
        .config
        .get("principals")
        .and_then(toml::Value::as_array)
        .expect("principals");
    let n = principals
        .iter()
        .position(|p| p.get("id").and_then(toml::Value::as_str) == Some(id))
        .unwrap_or_else(|| panic!("no principal {id}"));
    let fields: toml::Table = lines.parse().expect("TOML lines");
    for (k, v) in fields {
        world.config = world.config.clone().set(&format!("principals.{n}.{k}"), v);
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// POSTs an interaction body with the given Slack headers; returns the HTTP status.
fn post_interaction(
    rt: &Runtime,
    server: &Server,
    headers: Option<(String, String)>,
    body: &str,
) -> u16 {
    rt.block_on(async {
        let mut req = reqwest::Client::new()
            .post(format!("{}/slack/interactions", server.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned());
        if let Some((ts, sig)) = headers {
            req = req
                .header("X-Slack-Request-Timestamp", ts)
                .header("X-Slack-Signature", sig);
        }
        req.send().await.unwrap().status().as_u16()
    })
}

/// A click signed as Slack signs it, now.
fn click(
    rt: &Runtime,
    server: &Server,
    slack: &FakeSlack,
    user: &str,
    action: &str,
    id: &str,
    reply: &str,
) -> u16 {
    let body = slack.click_body(user, action, id, reply);
    let ts = now_secs();
    let sig = FakeSlack::sign(SLACK_SIGNING, ts, &body);
    post_interaction(rt, server, Some((ts.to_string(), sig)), &body)
}

fn approvals_of(server: &Server, id: &str) -> (String, Vec<String>) {
    let v = server.show(ADMIN, id);
    let names = v["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    (v["state"].as_str().unwrap().to_owned(), names)
}

/// Asks for 5 minutes of `ask` on `postgres:orders`; answers the pending request's id.
fn request(server: &Server, token: &str, ask: Ask) -> String {
    let v = server.request(token, &ask.lasting("5m"));
    assert_eq!(v["state"], "pending", "{v}");
    v["id"].as_str().unwrap().to_owned()
}

fn reply_text(slack: &FakeSlack, id: &str) -> String {
    wait_until(Duration::from_secs(15), &format!("reply {id}"), || {
        slack
            .replies()
            .into_iter()
            .find(|(r, _)| r == id)
            .map(|(_, v)| v["text"].as_str().unwrap().to_owned())
    })
}

fn has_actions(blocks: &Value) -> bool {
    blocks
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["type"] == "actions")
}

fn slack_world(store: StoreKind, slack: &FakeSlack, server_extra: &str, extra: &str) -> World {
    let notify = format!(
        r#"
[notify]
retry_base = "200ms"
poll_every = "100ms"
attempt_timeout = "2s"
expiry_warning = "299s"

[notify.slack]
bot_token = {{ env = "BREVET_TEST_SLACK_TOKEN" }}
signing_secret = {{ env = "BREVET_TEST_SLACK_SIGNING" }}
approver_channel = "C0APPROVERS"
api_base = "{}"
{extra}
"#,
        slack.api_base()
    );
    World::new(store).server(server_extra).with(&notify).env(&[
        ("BREVET_TEST_SLACK_TOKEN", SLACK_TOKEN),
        ("BREVET_TEST_SLACK_SIGNING", SLACK_SIGNING),
    ])
}

#[test]
fn slack_approvals_go_through_policy_and_update_the_message() {
    let rt = Runtime::new().unwrap();
    let slack = FakeSlack::start(&rt, SLACK_TOKEN);
    let mut world = slack_world(StoreKind::Sqlite, &slack, "", "team_id = \"T0TEST\"");
    link(&mut world, "alice", "slack_user = \"UALICE\"");
    link(&mut world, "bob", "slack_user = \"UBOB\"");
    link(&mut world, "carol", "slack_user = \"UCAROL\"");
    let server = world.start();

    // A pending request is posted to the approvers' channel with Block Kit and both buttons.
    let id = request(
        &server,
        ALICE,
        Ask::new("db.write", "postgres:orders")
            .reason("rotate <!channel> keys")
            .ticket("OPS-7"),
    );
    let post = slack.wait_call("the approval message", |c| {
        c.method == "chat.postMessage" && c.body["channel"] == "C0APPROVERS"
    });
    let (channel, ts) = (
        post.answer["channel"].as_str().unwrap().to_owned(),
        post.answer["ts"].as_str().unwrap().to_owned(),
    );
    assert!(post.body["text"]
        .as_str()
        .unwrap()
        .contains("0 of 2 approvals"));
    let blocks = post.body["blocks"].to_string();
    assert!(blocks.contains("alice") && blocks.contains("db.write") && blocks.contains("OPS-7"));
    assert!(
        blocks.contains("&lt;!channel&gt;"),
        "reason is escaped: {blocks}"
    );
    let actions = post.body["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .unwrap()
        .clone();
    assert_eq!(actions["elements"][0]["action_id"], "brevet_approve");
    assert_eq!(actions["elements"][0]["style"], "primary");
    assert_eq!(actions["elements"][0]["value"], id.as_str());
    assert_eq!(actions["elements"][1]["action_id"], "brevet_deny");
    assert_eq!(actions["elements"][1]["style"], "danger");

    // Refused signatures: 401, and nothing changes.
    let body = slack.click_body("UBOB", "brevet_approve", &id, "forged");
    let ts_now = now_secs();
    let forged = FakeSlack::sign("not-the-signing-secret", ts_now, &body);
    assert_eq!(
        post_interaction(&rt, &server, Some((ts_now.to_string(), forged)), &body),
        401
    );
    let stale_ts = ts_now - 6 * 60;
    let stale = FakeSlack::sign(SLACK_SIGNING, stale_ts, &body);
    assert_eq!(
        post_interaction(&rt, &server, Some((stale_ts.to_string(), stale)), &body),
        401,
        "a correctly signed but replayed (stale) request is refused"
    );
    assert_eq!(post_interaction(&rt, &server, None, &body), 401);
    let signed_other = FakeSlack::sign(
        SLACK_SIGNING,
        ts_now,
        &slack.click_body("UBOB", "brevet_deny", &id, "forged"),
    );
    assert_eq!(
        post_interaction(
            &rt,
            &server,
            Some((ts_now.to_string(), signed_other)),
            &body
        ),
        401,
        "a signature over another body is refused"
    );
    assert_eq!(approvals_of(&server, &id), ("pending".into(), vec![]));

    // Signed by the app, but from another workspace (where `UBOB` may be anyone): refused.
    let body = slack.click_body_in("T0OTHER", "UBOB", "brevet_approve", &id, "other-team");
    let at = now_secs();
    let sig = FakeSlack::sign(SLACK_SIGNING, at, &body);
    assert_eq!(
        post_interaction(&rt, &server, Some((at.to_string(), sig)), &body),
        200
    );
    assert!(reply_text(&slack, "other-team").contains("not the one Brevet takes approvals from"));
    assert_eq!(approvals_of(&server, &id), ("pending".into(), vec![]));

    // Signed, but by people who may not decide: refused with an ephemeral reply saying why.
    assert_eq!(
        click(
            &rt,
            &server,
            &slack,
            "UNOBODY",
            "brevet_approve",
            &id,
            "unknown"
        ),
        200
    );
    assert!(reply_text(&slack, "unknown").contains("not linked"));
    assert_eq!(
        click(
            &rt,
            &server,
            &slack,
            "UALICE",
            "brevet_approve",
            &id,
            "requester"
        ),
        200
    );
    assert!(reply_text(&slack, "requester").contains("not an approver"));
    assert_eq!(approvals_of(&server, &id), ("pending".into(), vec![]));

    // Self-approval is refused in Slack exactly as in the API.
    let own = request(
        &server,
        BOB,
        Ask::new("db.read", "postgres:orders").reason("mine"),
    );
    slack.wait_call("bob's approval message", |c| {
        c.method == "chat.postMessage" && c.body["blocks"].to_string().contains(&own)
    });
    assert_eq!(
        click(&rt, &server, &slack, "UBOB", "brevet_approve", &own, "self"),
        200
    );
    assert!(reply_text(&slack, "self").contains("self-approval"));
    assert_eq!(approvals_of(&server, &own), ("pending".into(), vec![]));

    // N-of-M: the first approval updates the message to "1 of 2", buttons still there.
    let bob1 = slack.click_body("UBOB", "brevet_approve", &id, "bob1");
    let bob1_ts = now_secs();
    let bob1_sig = FakeSlack::sign(SLACK_SIGNING, bob1_ts, &bob1);
    let signed = Some((bob1_ts.to_string(), bob1_sig));
    assert_eq!(post_interaction(&rt, &server, signed.clone(), &bob1), 200);
    assert_eq!(
        approvals_of(&server, &id),
        ("pending".into(), vec!["bob".to_string()])
    );
    // The very same signed request, sent again inside the five-minute window: refused.
    assert_eq!(
        post_interaction(&rt, &server, signed, &bob1),
        401,
        "a replayed interaction is refused"
    );
    assert_eq!(
        approvals_of(&server, &id),
        ("pending".into(), vec!["bob".to_string()])
    );
    let update = slack.wait_call("the 1-of-2 update", |c| {
        c.method == "chat.update"
            && c.body["ts"] == ts.as_str()
            && c.body["blocks"]
                .to_string()
                .contains("1 of 2 approvals: bob")
    });
    assert_eq!(update.body["channel"], channel.as_str());
    assert!(has_actions(&update.body["blocks"]));
    assert_eq!(
        click(&rt, &server, &slack, "UBOB", "brevet_approve", &id, "bob2"),
        200
    );
    assert!(reply_text(&slack, "bob2").contains("already"));

    // The second approval decides: final message without buttons, and the requester's DM.
    assert_eq!(
        click(
            &rt,
            &server,
            &slack,
            "UCAROL",
            "brevet_approve",
            &id,
            "carol"
        ),
        200
    );
    assert_eq!(approvals_of(&server, &id).0, "approved");
    let done = slack.wait_call("the final update", |c| {
        c.method == "chat.update"
            && c.body["ts"] == ts.as_str()
            && c.body["blocks"]
                .to_string()
                .contains("Approved by bob, carol")
    });
    assert!(!has_actions(&done.body["blocks"]));
    let dm = slack.wait_call("alice's DM", |c| {
        c.method == "chat.postMessage" && c.body["channel"] == "UALICE"
    });
    assert!(
        dm.body["text"].as_str().unwrap().contains("approved"),
        "{dm:?}"
    );

    // A denial from Slack: message says so, requester told.
    assert_eq!(
        click(&rt, &server, &slack, "UCAROL", "brevet_deny", &own, "deny"),
        200
    );
    assert_eq!(approvals_of(&server, &own).0, "denied");
    slack.wait_call("the denial update", |c| {
        c.method == "chat.update" && c.body["blocks"].to_string().contains("Denied by carol")
    });
    slack.wait_call("bob's DM", |c| {
        c.method == "chat.postMessage"
            && c.body["channel"] == "UBOB"
            && c.body["text"].as_str().unwrap().contains("denied")
    });

    // Active grant: "expiring soon" once (the warning window is 299 s of a 300 s grant), then
    // revocation.
    let active = server.activate(ALICE, &id);
    assert_eq!(active["grant"]["state"], "active", "{active}");
    slack.wait_call("the expiring-soon DM", |c| {
        c.method == "chat.postMessage"
            && c.body["channel"] == "UALICE"
            && c.body["text"].as_str().unwrap().contains("ends at")
    });
    server.json(ALICE, Cmd::revoke(&id).reason("done"));
    slack.wait_call("the access-ended DM", |c| {
        c.method == "chat.postMessage"
            && c.body["channel"] == "UALICE"
            && c.body["text"].as_str().unwrap().contains("has ended")
    });
    std::thread::sleep(Duration::from_millis(500));
    let expiring = slack
        .calls()
        .iter()
        .filter(|c| {
            c.body["text"]
                .as_str()
                .is_some_and(|t| t.contains("ends at"))
        })
        .count();
    assert_eq!(expiring, 1, "the expiring notice is sent once");

    // Every call Brevet made was one Slack accepts, and every delivery is recorded as delivered.
    for c in slack.calls() {
        assert_eq!(c.answer["ok"], true, "Slack refused a call: {c:?}");
        assert!(
            c.answer.get("response_metadata").is_none(),
            "warning: {c:?}"
        );
    }
    let deliveries = server.json(ADMIN, Cmd::deliveries());
    let rows = deliveries.as_array().unwrap();
    assert!(rows.len() >= 8, "{deliveries:#}");
    assert!(
        rows.iter().all(|d| d["state"] == "delivered"),
        "{deliveries:#}"
    );
}

#[test]
fn webhooks_are_signed_retried_visible_and_never_block_a_decision() {
    let rt = Runtime::new().unwrap();
    let siem = WebhookReceiver::start(&rt, HOOK_SECRET, 0);
    let flaky = WebhookReceiver::start(&rt, HOOK_SECRET, 2);
    let notify = format!(
        r#"
[notify]
retry_base = "200ms"
max_attempts = 4
poll_every = "100ms"
attempt_timeout = "1s"

[[notify.webhooks]]
name = "siem"
url = "{}"
events = ["*"]
secret = {{ env = "BREVET_TEST_HOOK_SECRET" }}

[[notify.webhooks]]
name = "flaky"
url = "{}"
events = ["request.created"]
secret = {{ env = "BREVET_TEST_HOOK_SECRET" }}

[[notify.webhooks]]
name = "down"
url = "{}"
events = ["request.approved", "request.denied"]
secret = {{ env = "BREVET_TEST_HOOK_SECRET" }}
"#,
        siem.url,
        flaky.url,
        dead_url()
    );
    let world = World::new(StoreKind::Postgres)
        .with(&notify)
        .env(&[("BREVET_TEST_HOOK_SECRET", HOOK_SECRET)]);
    let server = world.start();

    let id = request(
        &server,
        ALICE,
        Ask::new("db.read", "postgres:orders").reason("report"),
    );

    // Signed with the shared secret; the body is the audit event plus the delivery id.
    let created = wait_until(Duration::from_secs(15), "request.created at siem", || {
        siem.received()
            .into_iter()
            .find(|r| r.event == "request.created")
    });
    assert!(created.verified, "signature verifies: {created:?}");
    assert_eq!(created.body["request_id"], id.as_str());
    assert_eq!(created.body["kind"], "request_created");
    assert_eq!(created.body["data"]["requester"], "alice");
    assert_eq!(created.body["delivery_id"], created.delivery.as_str());
    assert!(created.body["hash"].as_str().is_some_and(|h| h.len() == 64));

    // 503, 503, then 200: retried with growing, jittered waits (base 200 ms).
    let tries = wait_until(Duration::from_secs(15), "three attempts at flaky", || {
        let r = flaky.received();
        (r.len() >= 3).then_some(r)
    });
    assert_eq!(
        tries.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![503, 503, 200]
    );
    assert!(tries
        .iter()
        .all(|r| r.verified && r.delivery == tries[0].delivery));
    let gap1 = tries[1].at - tries[0].at;
    let gap2 = tries[2].at - tries[1].at;
    assert!(
        gap1 >= Duration::from_millis(100),
        "first retry after {gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_millis(200),
        "second retry after {gap2:?}"
    );
    let flaky_rows = wait_until(Duration::from_secs(10), "flaky delivered", || {
        let v = server.json(ADMIN, Cmd::deliveries().subscriber("webhook:flaky"));
        (v[0]["state"] == "delivered").then_some(v)
    });
    assert_eq!(flaky_rows[0]["attempts"], 3);
    assert!(flaky_rows[0]["last_error"]
        .as_str()
        .unwrap()
        .contains("HTTP 503"));

    // The decision succeeds at once although one subscriber is down.
    let started = Instant::now();
    let approved = server.approve(BOB, &id);
    assert_eq!(approved["state"], "approved");
    assert!(started.elapsed() < Duration::from_secs(5));

    // The failing delivery is visible while retried, and given up after max_attempts.
    let down = wait_until(
        Duration::from_secs(15),
        "the down webhook to be tried",
        || {
            let v = server.json(ADMIN, Cmd::deliveries().subscriber("webhook:down"));
            (v[0]["attempts"].as_i64().unwrap_or(0) >= 1).then_some(v)
        },
    );
    assert_eq!(down[0]["event_type"], "request.approved");
    assert!(down[0]["last_error"].as_str().unwrap().contains("connect"));
    let failed = wait_until(Duration::from_secs(20), "the down webhook to fail", || {
        let v = server.json(ADMIN, Cmd::deliveries().state("failed"));
        (v.as_array().unwrap().len() == 1).then_some(v)
    });
    assert_eq!(failed[0]["subscriber"], "webhook:down");
    assert_eq!(failed[0]["attempts"], 4);

    // The approval itself reached the SIEM; the human table shows all three subscribers.
    wait_until(Duration::from_secs(15), "request.approved at siem", || {
        siem.received()
            .into_iter()
            .find(|r| r.event == "request.approved" && r.verified)
    });
    let table = stdout(&server.run(ADMIN, Cmd::deliveries()));
    for s in [
        "webhook:siem",
        "webhook:flaky",
        "webhook:down",
        "delivered",
        "failed",
    ] {
        assert!(table.contains(s), "{s} missing from:\n{table}");
    }
    let refused = server.run(ALICE, Cmd::deliveries());
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("admin"), "{}", stderr(&refused));
}

#[test]
fn approvers_without_slack_get_pending_requests_by_email() {
    let rt = Runtime::new().unwrap();
    let smtp = SmtpServer::start();
    let slack = FakeSlack::start(&rt, SLACK_TOKEN);
    let email = format!(
        "\n[notify.email]\nsmtp_url = \"smtp://127.0.0.1:{}\"\nfrom = \"Brevet <brevet@example.com>\"\n",
        smtp.port
    );
    let mut world = slack_world(
        StoreKind::Sqlite,
        &slack,
        "public_url = \"https://brevet.example.com\"",
        &email,
    );
    link(&mut world, "alice", "email = \"alice@example.com\"");
    link(
        &mut world,
        "bob",
        "slack_user = \"UBOB\"\nemail = \"bob@example.com\"",
    );
    link(&mut world, "carol", "email = \"carol@example.com\"");
    link(&mut world, "admin", "email = \"admin@example.com\"");
    let server = world.start();

    let id = request(
        &server,
        ALICE,
        Ask::new("db.read", "postgres:orders").reason("quarterly report"),
    );
    let mail = wait_until(Duration::from_secs(20), "the approver email", || {
        smtp.messages().into_iter().next()
    });
    // Undo quoted-printable soft line breaks before looking at the text.
    let mail = mail
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let to: String = mail
        .lines()
        .skip_while(|l| !l.starts_with("To:"))
        .take_while(|l| l.starts_with("To:") || l.starts_with(' '))
        .collect();
    assert!(to.contains("carol@example.com"), "{mail}");
    assert!(
        !to.contains("admin@example.com"),
        "no approve policy names the admin, so the admin is not asked: {mail}"
    );
    assert!(
        !to.contains("bob@example.com"),
        "bob approves in Slack: {mail}"
    );
    assert!(
        !to.contains("alice@example.com"),
        "the requester is not an approver: {mail}"
    );
    assert!(
        mail.contains("Subject: [Brevet] Approval needed: alice asks for db.read"),
        "{mail}"
    );
    assert!(
        mail.contains(&format!("https://brevet.example.com/requests/{id}")),
        "{mail}"
    );
    assert!(mail.contains(&format!("brevet approve {id}")), "{mail}");
    assert!(mail.contains("quarterly report"));

    let rows = wait_until(Duration::from_secs(10), "email delivered", || {
        let v = server.json(ADMIN, Cmd::deliveries().subscriber("email"));
        (v[0]["state"] == "delivered").then_some(v)
    });
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["attempts"], 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        smtp.messages().len(),
        1,
        "one email for one pending request"
    );
}
