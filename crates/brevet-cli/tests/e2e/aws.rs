//! AWS against the moto emulator (a real AWS API emulator, started per test on a loopback port),
//! through the official AWS SDK for Rust in Brevet and the real AWS CLI on the test side.
//! Every test asserts on the exact documents Brevet writes; one also runs moto with its IAM
//! access control on, so the grant's role is exercised: the profile's actions work, others are
//! denied, only the requester can assume it. moto's access control ignores session policies and
//! date conditions (`aws:CurrentTime`, `aws:TokenIssueTime`), so those stay document assertions.

use std::time::Duration;

use crate::common::*;

struct AwsWorld {
    world: World,
    server: Server,
    moto: Moto,
}

fn aws_world(server_env: &[(&str, &str)]) -> AwsWorld {
    let moto = Moto::start();
    let world = World::new(StoreKind::Sqlite)
        .with(&aws_config(&moto.url))
        .env(&AWS_ENV);
    let server = world.start_with(server_env);
    AwsWorld {
        world,
        server,
        moto,
    }
}

fn role_policy(moto: &Moto, role: &str, policy: &str) -> serde_json::Value {
    let v = moto.aws_json(&[
        "iam",
        "get-role-policy",
        "--role-name",
        role,
        "--policy-name",
        policy,
    ]);
    v["PolicyDocument"].clone()
}

/// The shared base role that session-mode profiles assume (`brevet-base`, trusting the account).
fn create_base_role(moto: &Moto) {
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"sts:AssumeRole"}]}"#;
    moto.aws_json(&[
        "iam",
        "create-role",
        "--role-name",
        "brevet-base",
        "--assume-role-policy-document",
        trust,
    ]);
}

/// An inline policy on the base role, put there as someone (or an earlier revocation) left it.
fn put_base_role_policy(moto: &Moto, name: &str, doc: &str) {
    moto.aws_json(&[
        "iam",
        "put-role-policy",
        "--role-name",
        "brevet-base",
        "--policy-name",
        name,
        "--policy-document",
        doc,
    ]);
}

/// Dave asks for 30 minutes of `profile` on aws:bucket (granted without approval); its id.
fn request_aws(w: &AwsWorld, profile: &str) -> String {
    let r = w.server.request(
        DAVE,
        &Ask::new(profile, "aws:bucket").lasting("30m").reason("x"),
    );
    r["id"].as_str().unwrap().to_owned()
}

#[test]
fn role_per_grant_is_exact_expires_and_is_verified_gone() {
    let w = aws_world(&[]);
    let r = w.server.request(
        DAVE,
        &Ask::new("aws.s3-read", "aws:bucket")
            .lasting("6s")
            .reason("read a report"),
    );
    let id = r["id"].as_str().unwrap().to_owned();
    let a = w.server.activate(DAVE, &id);
    assert_eq!(a["credential"]["kind"], "aws_role");
    let arn = a["credential"]["details"]["role_arn"]
        .as_str()
        .unwrap()
        .to_owned();
    let role = arn.rsplit('/').next().unwrap().to_owned();
    assert!(
        arn.starts_with("arn:aws:iam::123456789012:role/brevet/brevet-"),
        "{arn}"
    );

    let got = w.moto.aws_json(&["iam", "get-role", "--role-name", &role]);
    let trust = &got["Role"]["AssumeRolePolicyDocument"];
    assert_eq!(
        trust["Statement"][0]["Principal"]["AWS"],
        "arn:aws:iam::123456789012:user/dave"
    );
    assert_eq!(trust["Statement"][0]["Action"], "sts:AssumeRole");
    assert_eq!(got["Role"]["MaxSessionDuration"], 3600);
    let tags = got["Role"]["Tags"].as_array().cloned().unwrap_or_default();
    assert!(
        tags.iter()
            .any(|t| t["Key"] == "brevet:requester" && t["Value"] == "dave"),
        "{tags:?}"
    );

    let doc = role_policy(&w.moto, &role, "brevet-grant");
    let st = &doc["Statement"][0];
    assert_eq!(st["Effect"], "Allow");
    assert_eq!(
        st["Action"],
        serde_json::json!(["s3:GetObject", "s3:ListBucket"])
    );
    assert_eq!(
        st["Resource"],
        serde_json::json!(["arn:aws:s3:::data-bucket", "arn:aws:s3:::data-bucket/*"])
    );
    let until = st["Condition"]["DateLessThan"]["aws:CurrentTime"]
        .as_str()
        .unwrap();
    let expires = a["grant"]["expires_at"].as_str().unwrap();
    assert_eq!(
        &until[..19],
        &expires[..19],
        "the policy stops working at the grant's expiry by itself"
    );

    let g = w.server.wait_for(DAVE, &id, Duration::from_secs(40), |v| {
        v["state"] == "revoked"
    });
    assert_eq!(g["evidence"]["observation"]["result"], "NoSuchEntity");
    let (ok, text) = w.moto.aws(&["iam", "get-role", "--role-name", &role]);
    assert!(!ok && text.contains("NoSuchEntity"), "{text}");

    // Every AWS call is in the audit log with its request id.
    let export = w.server.audit_export(ADMIN);
    let revoked = export
        .lines()
        .find(|l| l.contains("\"kind\":\"grant_revoked\""))
        .unwrap();
    let e: serde_json::Value = serde_json::from_str(revoked).unwrap();
    let data: serde_json::Value = serde_json::from_str(e["data"].as_str().unwrap()).unwrap();
    let calls = data["provider_calls"].as_array().unwrap();
    assert!(
        calls.iter().any(|c| c["call"] == "DeleteRole"
            && c["target"] == role.as_str()
            && c["outcome"] == "ok"
            && c["request_id"].is_string()
            && c["duration_ms"].is_u64()),
        "{calls:?}"
    );
    let deny = calls
        .iter()
        .position(|c| {
            c["call"] == "PutRolePolicy"
                && c["target"] == format!("{role}/brevet-revoke-sessions").as_str()
                && c["outcome"] == "ok"
                && c["request_id"].is_string()
        })
        .unwrap_or_else(|| panic!("no session deny before deletion: {calls:?}"));
    let delete = calls
        .iter()
        .position(|c| c["call"] == "DeleteRole")
        .unwrap();
    // The broker's own record of the provider call that made them, in the same event.
    assert!(
        calls
            .iter()
            .any(|c| c["call"] == "provider.revoke" && c["outcome"] == "ok"),
        "{calls:?}"
    );
    assert!(deny < delete, "the deny comes first: {calls:?}");
    assert_eq!(
        g["evidence"]["observation"]["sessions_denied_before_deletion"],
        true
    );
    drop(w.world);
}

#[test]
fn aws_cli_gets_session_credentials_through_credential_process() {
    let w = aws_world(&[]);
    create_base_role(&w.moto);
    let id = request_aws(&w, "aws.s3-session");
    let a = w.server.activate(DAVE, &id);
    assert_eq!(a["credential"]["kind"], "aws_credential_process");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    let brevet = |cmd: Cmd| {
        cmd.command()
            .env("BREVET_URL", &w.server.url)
            .env("BREVET_TOKEN", DAVE)
            .env("AWS_CONFIG_FILE", &config)
            .output()
            .unwrap()
    };
    let out = brevet(Cmd::aws_configure("dv", "aws:bucket", "aws.s3-session").region("us-east-1"));
    assert!(out.status.success(), "{}", stderr(&out));
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(
        written.contains("credential_process = ")
            && written.contains("aws credential-process --profile dv"),
        "{written}"
    );

    // The real AWS CLI runs Brevet's credential_process and calls the emulator with the result.
    let out = aws_cli()
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none"))
        .env("BREVET_URL", &w.server.url)
        .env("BREVET_TOKEN", DAVE)
        .args([
            "--profile",
            "dv",
            "--endpoint-url",
            &w.moto.url,
            "sts",
            "get-caller-identity",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let who: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        who["Arn"]
            .as_str()
            .unwrap()
            .contains("assumed-role/brevet-base/brevet-dave-"),
        "{who}"
    );

    // The credential_process JSON itself.
    let out = brevet(Cmd::aws_credential_process("dv"));
    let cp: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cp["Version"], 1);
    for k in [
        "AccessKeyId",
        "SecretAccessKey",
        "SessionToken",
        "Expiration",
    ] {
        assert!(cp[k].is_string(), "{k} in {cp}");
    }

    // `aws exec` puts them in a command's environment.
    let out = brevet(Cmd::aws_exec(
        "dv",
        &[
            "sh",
            "-c",
            "test -n \"$AWS_SESSION_TOKEN\" && echo has-session",
        ],
    ));
    assert_eq!(stdout(&out).trim(), "has-session", "{}", stderr(&out));

    // Denies left on the shared base role by earlier revocations: one whose sessions have all
    // expired (issued before two days ago), one still needed (an hour ago), and a policy that is
    // not Brevet's. Only the first is pruned when this grant is revoked.
    let deny = |age_hours: i64| {
        let t =
            (chrono::Utc::now() - chrono::Duration::hours(age_hours)).format("%Y-%m-%dT%H:%M:%SZ");
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"BrevetRevokeSessions","Effect":"Deny","Action":"*","Resource":"*","Condition":{{"DateLessThan":{{"aws:TokenIssueTime":"{t}"}},"StringLike":{{"aws:userid":"*:brevet-old"}}}}}}]}}"#
        )
    };
    for (name, doc) in [
        ("brevet-revoke-sessions-obsolete", deny(48)),
        ("brevet-revoke-sessions-recent", deny(1)),
        ("someone-elses-policy", deny(48)),
    ] {
        put_base_role_policy(&w.moto, name, &doc);
    }

    // Early revocation denies this grant's sessions on the shared base role.
    let revoked = w.server.revoke(DAVE, &id);
    assert_eq!(revoked["state"], "revoked");
    let doc = &revoked["evidence"]["observation"]["document"]["Statement"][0];
    assert_eq!(doc["Effect"], "Deny");
    assert!(doc["Condition"]["DateLessThan"]["aws:TokenIssueTime"].is_string());
    assert!(doc["Condition"]["StringLike"]["aws:userid"]
        .as_str()
        .unwrap()
        .starts_with("*:brevet-dave-"));
    let names = w
        .moto
        .aws_json(&["iam", "list-role-policies", "--role-name", "brevet-base"]);
    let names: Vec<&str> = names["PolicyNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"brevet-revoke-sessions-obsolete"),
        "{names:?}"
    );
    assert!(
        names.contains(&"brevet-revoke-sessions-recent"),
        "{names:?}"
    );
    assert!(names.contains(&"someone-elses-policy"), "{names:?}");
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("brevet-revoke-sessions-"))
            .count(),
        2,
        "the recent deny and this grant's: {names:?}"
    );
    let out = brevet(Cmd::aws_credential_process("dv"));
    assert!(stderr(&out).contains("no active grant"), "{}", stderr(&out));
    drop(w.world);
}

/// IAM caps a role's inline policies at 10,240 characters in all. When the shared base role has
/// no room for one more per-grant deny, Brevet collapses its denies into one role-wide deny under
/// the revoked grant's name (covering every earlier one), and never removes a deny before its
/// replacement is in place. moto does not enforce the limit, so the test fills the role to just
/// under it and asserts on what Brevet left there.
#[test]
fn session_denies_collapse_into_one_when_the_base_role_is_full() {
    let w = aws_world(&[]);
    create_base_role(&w.moto);
    let an_hour_ago =
        (chrono::Utc::now() - chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ");
    let deny = |who: &str| serde_json::json!({"Version":"2012-10-17","Statement":[{"Sid":"BrevetRevokeSessions","Effect":"Deny","Action":"*","Resource":"*","Condition":{"DateLessThan":{"aws:TokenIssueTime":an_hour_ago.to_string()},"StringLike":{"aws:userid":format!("*:brevet-{who}-0123456789ab")}}}]});
    // Someone else's policy sized so that it and two recent denies leave no room for a third
    // (10,240 − 600 characters), but leave room for two role-wide ones.
    let mut resources = Vec::new();
    let mut theirs = serde_json::Value::Null;
    for i in 0.. {
        resources.push(format!("arn:aws:s3:::bucket-{i:06}/*"));
        let doc = serde_json::json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":resources}]});
        if doc.to_string().len() > 10_240 - 600 {
            break;
        }
        theirs = doc;
    }
    for (name, doc) in [
        ("someone-elses-policy", theirs.clone()),
        ("brevet-revoke-sessions-erin", deny("erin")),
        ("brevet-revoke-sessions-frank", deny("frank")),
    ] {
        put_base_role_policy(&w.moto, name, &doc.to_string());
    }

    let id = request_aws(&w, "aws.s3-session");
    w.server.activate(DAVE, &id);
    let revoked = w.server.revoke(DAVE, &id);
    assert_eq!(revoked["state"], "revoked", "{revoked}");

    let names = w
        .moto
        .aws_json(&["iam", "list-role-policies", "--role-name", "brevet-base"]);
    let mut names: Vec<String> = names["PolicyNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(names[1], "someone-elses-policy", "never touched: {names:?}");
    let ours = &names[0];
    assert!(ours.starts_with("brevet-revoke-sessions-"), "{names:?}");
    assert!(
        !ours.ends_with("erin") && !ours.ends_with("frank"),
        "{names:?}"
    );
    let doc = role_policy(&w.moto, "brevet-base", ours);
    let st = &doc["Statement"][0];
    assert_eq!(st["Effect"], "Deny");
    assert_eq!(st["Action"], "*");
    assert!(
        st["Condition"].get("StringLike").is_none(),
        "role-wide: it covers erin's, frank's and dave's sessions: {doc}"
    );
    let at = chrono::DateTime::parse_from_rfc3339(
        st["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert!(
        at > chrono::Utc::now() - chrono::Duration::minutes(5),
        "{doc}"
    );
    assert_eq!(
        role_policy(&w.moto, "brevet-base", "someone-elses-policy"),
        theirs
    );
    // The evidence is the deny that covers this grant's sessions.
    assert!(
        revoked["evidence"]["observation"]["document"]["Statement"][0]["Condition"]
            .get("StringLike")
            .is_none(),
        "{revoked}"
    );
    drop(w.world);
}

/// An AWS world whose `aws.admin` profile uses a permission set created in moto's Identity Center
/// instance (so its inline policy can carry session denies); also returns the instance and
/// permission set ARNs.
fn identity_center_world() -> (AwsWorld, String, String) {
    let moto = Moto::start();
    let (config, instance, permission_set) = identity_center_config(&moto, &moto.url);
    let world = World::new(StoreKind::Sqlite).with(&config).env(&AWS_ENV);
    let server = world.start();
    (
        AwsWorld {
            world,
            server,
            moto,
        },
        instance,
        permission_set,
    )
}

/// The USER and GROUP assignments of `permission_set` in `account`, as (type, principal id).
fn assignments(
    moto: &Moto,
    instance: &str,
    permission_set: &str,
    account: &str,
) -> Vec<(String, String)> {
    moto.aws_json(&[
        "sso-admin",
        "list-account-assignments",
        "--instance-arn",
        instance,
        "--account-id",
        account,
        "--permission-set-arn",
        permission_set,
    ])["AccountAssignments"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| {
            (
                a["PrincipalType"].as_str().unwrap().to_owned(),
                a["PrincipalId"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// An assignment made outside Brevet, as an administrator would.
fn assign(moto: &Moto, instance: &str, permission_set: &str, account: &str, kind: &str, who: &str) {
    moto.aws_json(&[
        "sso-admin",
        "create-account-assignment",
        "--instance-arn",
        instance,
        "--target-id",
        account,
        "--target-type",
        "AWS_ACCOUNT",
        "--permission-set-arn",
        permission_set,
        "--principal-type",
        kind,
        "--principal-id",
        who,
    ]);
}

/// The permission set's inline policy, parsed.
fn inline_policy(moto: &Moto, instance: &str, permission_set: &str) -> serde_json::Value {
    let v = moto.aws_json(&[
        "sso-admin",
        "get-inline-policy-for-permission-set",
        "--instance-arn",
        instance,
        "--permission-set-arn",
        permission_set,
    ]);
    serde_json::from_str(v["InlinePolicy"].as_str().unwrap()).unwrap()
}

/// Brevet's deny statements in a permission set's inline policy that name `user`.
fn denies_for(doc: &serde_json::Value, user: &str) -> Vec<serde_json::Value> {
    doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|st| {
            st["Sid"]
                .as_str()
                .is_some_and(|s| s.starts_with("BrevetRevokeSessions"))
                && st["Condition"]["StringEquals"]["identitystore:UserId"] == user
        })
        .cloned()
        .collect()
}

#[test]
fn identity_center_assignment_is_created_and_removed() {
    let (w, instance, permission_set) = identity_center_world();
    let r = w.server.request(
        DAVE,
        &Ask::new("aws.admin", "aws:bucket")
            .lasting("8s")
            .reason("incident"),
    );
    let id = r["id"].as_str().unwrap().to_owned();
    let a = w.server.activate(DAVE, &id);
    assert_eq!(a["credential"]["kind"], "aws_identity_center");
    let list = |moto: &Moto| assignments(moto, &instance, &permission_set, "123456789012");
    let assigned = list(&w.moto);
    assert_eq!(assigned, [("USER".to_owned(), "idc-user-dave".to_owned())]);
    // At expiry the assignment is deleted and read back as gone.
    let revoked = w.server.wait_for(DAVE, &id, Duration::from_secs(40), |v| {
        v["state"] == "revoked"
    });
    assert_eq!(revoked["evidence"]["observation"]["assigned"], false);
    assert!(list(&w.moto).is_empty());
    drop(w.world);
}

/// `CreateAccountAssignment` is asynchronous and can take longer than `provider_timeout` (2 s in
/// the test config): a proxy holds it for 5 s before passing it to the emulator, so the
/// activation gives up and rolls back before the assignment exists, and then it is created.
/// Within one reconcile pass (`reconcile_every` = 2 s, plus the pass's own calls) after it
/// appears it is gone again, the grant is being revoked (an undo that cannot be read back is
/// retried, never dropped), the removal is audited, and the user's sessions are denied in the
/// permission set.
///
/// Fails on 879dbb0 because the rollback found nothing to delete yet and the reconciler listed
/// only IAM roles: the assignment stayed, with no grant covering it, forever.
#[test]
fn identity_center_assignment_landing_after_the_activation_gave_up_is_removed() {
    let moto = Moto::start();
    let proxy = HoldingProxy::start(
        &moto.url,
        "SWBExternalService.CreateAccountAssignment",
        Duration::from_secs(5),
    );
    let (config, instance, permission_set) = identity_center_config(&moto, &proxy.url);
    let world = World::new(StoreKind::Sqlite).with(&config).env(&AWS_ENV);
    let server = world.start();
    let r = server.request(
        DAVE,
        &Ask::new("aws.admin", "aws:bucket")
            .lasting("30m")
            .reason("incident"),
    );
    let id = r["id"].as_str().unwrap().to_owned();
    let out = server.run(DAVE, Cmd::activate(&id));
    assert!(
        !out.status.success(),
        "the activation cannot finish while the creation is held: {}",
        stdout(&out)
    );
    assert!(
        proxy.forwarded().is_empty(),
        "the activation gave up before the assignment existed"
    );

    let waiting = std::time::Instant::now() + Duration::from_secs(20);
    let landed = loop {
        if let Some(t) = proxy.forwarded().first() {
            break *t;
        }
        assert!(
            std::time::Instant::now() < waiting,
            "the held creation never reached the emulator"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let one_pass = landed + Duration::from_secs(2) + Duration::from_secs(3);
    let list = || assignments(&moto, &instance, &permission_set, "123456789012");
    loop {
        let assigned = list();
        if assigned.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < one_pass,
            "still assigned {:?} after it appeared, with no grant covering it: {assigned:?}\n{}",
            landed.elapsed(),
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The activation's undo could not be confirmed (the creation's answer never came), so the
    // grant was not handed back as `approved`: it ends like a revocation, retried until the
    // creation can no longer land.
    let g = server.show(DAVE, &id);
    assert!(
        ["revoking", "revoke_failed", "revoked"].contains(&g["state"].as_str().unwrap()),
        "{g:#}"
    );

    // Removed by the retried revocation or by the reconciler, whichever ran first; audited once
    // that step has finished (it goes on to deny sessions after the deletion).
    let audited = |export: &str| {
        export.lines().any(|l| {
            (l.contains("drift_detected")
                && l.contains("identity-center-assignment:")
                && l.contains("removed"))
                || (l.contains(&id) && l.contains("DeleteAccountAssignment"))
        })
    };
    let until = std::time::Instant::now() + Duration::from_secs(15);
    let mut export = server.audit_export(ADMIN);
    while !audited(&export) && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(250));
        export = server.audit_export(ADMIN);
    }
    assert!(audited(&export), "{export}");
    // The user may have signed in during the moments it existed: those sessions are denied.
    let doc = inline_policy(&moto, &instance, &permission_set);
    assert_eq!(denies_for(&doc, "idc-user-dave").len(), 1, "{doc}");
    // And it stays gone.
    std::thread::sleep(Duration::from_secs(5));
    assert!(list().is_empty());
    assert!(["revoking", "revoke_failed", "revoked"]
        .contains(&server.show(DAVE, &id)["state"].as_str().unwrap()));
}

/// The reconciler removes an assignment of a Brevet-managed permission set, in a configured
/// account, to a configured user, that no grant covers (a standing assignment made outside
/// Brevet, as docs/aws.md warns), and keeps one a grant covers. It never touches assignments to
/// anyone else: an unconfigured user, a group, another permission set or another account.
///
/// Fails on 879dbb0 because assignments were never reconciled: dave's standing assignment stayed.
#[test]
fn reconciler_removes_uncovered_assignments_of_configured_users_only() {
    let (w, instance, permission_set) = identity_center_world();
    let other = w.moto.aws_json(&[
        "sso-admin",
        "create-permission-set",
        "--instance-arn",
        &instance,
        "--name",
        "NotBrevets",
    ])["PermissionSet"]["PermissionSetArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let acct = "123456789012";
    assign(
        &w.moto,
        &instance,
        &permission_set,
        acct,
        "USER",
        "idc-user-erin",
    );
    assign(
        &w.moto,
        &instance,
        &permission_set,
        acct,
        "GROUP",
        "idc-user-dave",
    );
    assign(&w.moto, &instance, &other, acct, "USER", "idc-user-dave");
    assign(
        &w.moto,
        &instance,
        &permission_set,
        "210987654321",
        "USER",
        "idc-user-dave",
    );
    let others = |moto: &Moto| {
        (
            assignments(moto, &instance, &permission_set, acct),
            assignments(moto, &instance, &other, acct),
            assignments(moto, &instance, &permission_set, "210987654321"),
        )
    };
    let before = others(&w.moto);

    // Covered by an active grant: kept.
    let id = request_aws(&w, "aws.admin");
    w.server.activate(DAVE, &id);
    let report = w.server.reconcile(ADMIN);
    assert!(
        report["orphans_removed"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    assert!(assignments(&w.moto, &instance, &permission_set, acct)
        .contains(&("USER".into(), "idc-user-dave".into())));
    let revoked = w.server.revoke(DAVE, &id);
    assert_eq!(revoked["state"], "revoked", "{revoked:#}");

    // A standing assignment to dave that no grant covers: removed.
    assign(
        &w.moto,
        &instance,
        &permission_set,
        acct,
        "USER",
        "idc-user-dave",
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while assignments(&w.moto, &instance, &permission_set, acct)
        .contains(&("USER".into(), "idc-user-dave".into()))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "dave's standing assignment was not reconciled"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Everyone else's, after several more passes and one on demand: untouched.
    std::thread::sleep(Duration::from_secs(4));
    let report = w.server.reconcile(ADMIN);
    assert!(
        report["errors"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    assert_eq!(others(&w.moto), before);
    assert!(before.0.contains(&("USER".into(), "idc-user-erin".into())));
    assert!(before.0.contains(&("GROUP".into(), "idc-user-dave".into())));
    drop(w.world);
}

/// Deleting an assignment does not end role sessions already issued from the permission set, so
/// revocation adds AWS's documented deny to the permission set's inline policy (every action,
/// for this Identity Center user, for sessions issued before the revocation) and provisions it to
/// the account. The permission set's own statements stay, Brevet's denies older than its session
/// duration (1 h here) are pruned, recent ones for other users stay.
///
/// Fails on 879dbb0 because revocation only deleted the assignment: sessions issued from it
/// stayed valid for the permission set's session duration.
#[test]
fn identity_center_revocation_denies_sessions_issued_before_it() {
    let (w, instance, permission_set) = identity_center_world();
    let deny = |user: &str, sid: &str, age: chrono::Duration| {
        let t = (chrono::Utc::now() - age).format("%Y-%m-%dT%H:%M:%SZ");
        serde_json::json!({"Sid": sid, "Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"StringEquals": {"identitystore:UserId": user}, "DateLessThan": {"aws:TokenIssueTime": t.to_string()}}})
    };
    let own: serde_json::Value = serde_json::from_str(PERMISSION_SET_OWN_POLICY).unwrap();
    let erins = deny(
        "idc-user-erin",
        "BrevetRevokeSessionsErin",
        chrono::Duration::minutes(10),
    );
    let existing = serde_json::json!({"Version": "2012-10-17", "Statement": [
        own["Statement"][0].clone(),
        deny("idc-user-old", "BrevetRevokeSessionsOld", chrono::Duration::hours(3)),
        erins.clone(),
    ]});
    w.moto.aws_json(&[
        "sso-admin",
        "put-inline-policy-to-permission-set",
        "--instance-arn",
        &instance,
        "--permission-set-arn",
        &permission_set,
        "--inline-policy",
        &existing.to_string(),
    ]);

    let id = request_aws(&w, "aws.admin");
    w.server.activate(DAVE, &id);
    let activated = chrono::Utc::now();
    let revoked = w.server.revoke(DAVE, &id);
    assert_eq!(revoked["state"], "revoked", "{revoked:#}");

    let doc = inline_policy(&w.moto, &instance, &permission_set);
    let statements = doc["Statement"].as_array().unwrap();
    assert_eq!(
        statements[0], own["Statement"][0],
        "its own statement: {doc}"
    );
    assert!(statements.contains(&erins), "a recent deny stays: {doc}");
    assert!(
        denies_for(&doc, "idc-user-old").is_empty(),
        "expired: {doc}"
    );
    assert_eq!(statements.len(), 3, "{doc}");
    let mine = denies_for(&doc, "idc-user-dave");
    assert_eq!(mine.len(), 1, "{doc}");
    let st = &mine[0];
    assert_eq!(st["Effect"], "Deny");
    assert_eq!(st["Action"], "*");
    assert_eq!(st["Resource"], "*");
    let until = chrono::DateTime::parse_from_rfc3339(
        st["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert!(
        until >= activated - chrono::Duration::seconds(1)
            && until <= chrono::Utc::now() + chrono::Duration::seconds(1),
        "sessions issued up to the revocation are denied: {st}"
    );
    assert_eq!(revoked["evidence"]["observation"]["session_deny"], *st);

    // The deny was written after the deletion (no session could be issued in between) and
    // provisioned to the account's role.
    let export = w.server.audit_export(ADMIN);
    let line = export
        .lines()
        .find(|l| l.contains("\"kind\":\"grant_revoked\""))
        .unwrap();
    let e: serde_json::Value = serde_json::from_str(line).unwrap();
    let data: serde_json::Value = serde_json::from_str(e["data"].as_str().unwrap()).unwrap();
    let calls = data["provider_calls"].as_array().unwrap();
    let at = |op: &str| {
        calls
            .iter()
            .position(|c| c["call"] == op && c["outcome"] == "ok")
            .unwrap_or_else(|| panic!("no {op}: {calls:?}"))
    };
    assert!(at("DeleteAccountAssignment") < at("PutInlinePolicyToPermissionSet"));
    assert!(at("PutInlinePolicyToPermissionSet") < at("ProvisionPermissionSet"));
    drop(w.world);
}

#[test]
fn kill_switch_denies_live_sessions_and_removes_roles() {
    let w = aws_world(&[]);
    create_base_role(&w.moto);
    let mut roles = Vec::new();
    for profile in ["aws.s3-read", "aws.s3-session"] {
        let id = request_aws(&w, profile);
        let a = w.server.activate(DAVE, &id);
        roles.push(
            a["credential"]["details"]["role_arn"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned(),
        );
    }
    let report = w.server.kill(ADMIN, "dave", "keys leaked");
    assert_eq!(report["revoked"], 2, "{report:#}");
    // The per-grant role is gone…
    let (ok, text) = w.moto.aws(&["iam", "get-role", "--role-name", &roles[0]]);
    assert!(!ok && text.contains("NoSuchEntity"), "{text}");
    // …and sessions already issued from the shared base role are denied by TokenIssueTime.
    let names = w
        .moto
        .aws_json(&["iam", "list-role-policies", "--role-name", "brevet-base"]);
    let name = names["PolicyNames"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|n| {
            n.as_str()
                .filter(|n| n.starts_with("brevet-revoke-sessions-"))
        })
        .expect("deny policy in place")
        .to_owned();
    let doc = role_policy(&w.moto, "brevet-base", &name);
    assert!(
        doc["Statement"][0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"].is_string(),
        "{doc}"
    );
    let export = w.server.audit_export(ADMIN);
    assert!(export.contains("\"kind\":\"kill_switch\"") && export.contains("NoSuchEntity"));
    drop(w.world);
}

#[test]
fn crash_after_role_creation_leaves_no_role_without_a_grant() {
    let w = aws_world(&[("BREVET_FAILPOINT", "after-provider-grant")]);
    let mut server = w.server;
    let r = server.request(
        DAVE,
        &Ask::new("aws.s3-read", "aws:bucket")
            .lasting("5s")
            .reason("x"),
    );
    let id = r["id"].as_str().unwrap().to_owned();
    let mut activating = server.spawn(DAVE, Cmd::activate(&id));
    let brevet_roles = |moto: &Moto| {
        moto.aws_json(&["iam", "list-roles", "--path-prefix", "/brevet/"])["Roles"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .len()
    };
    for _ in 0..100 {
        if brevet_roles(&w.moto) == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(brevet_roles(&w.moto), 1, "the role exists before the crash");
    server.kill9();
    let _ = activating.kill();
    let _ = activating.wait();
    let mut env = w.world.env_refs();
    env.retain(|(k, _)| *k != "BREVET_FAILPOINT");
    server.restart(&env);
    server.wait_for(DAVE, &id, Duration::from_secs(60), |v| {
        v["state"] == "revoked"
    });
    assert_eq!(
        brevet_roles(&w.moto),
        0,
        "no role tagged by Brevet survives without an active grant"
    );

    // A role with Brevet's prefix that no grant covers is removed by the reconciler.
    let trust = r#"{"Version":"2012-10-17","Statement":[]}"#;
    w.moto.aws_json(&[
        "iam",
        "create-role",
        "--role-name",
        "brevet-0123456789abcdef0123",
        "--path",
        "/brevet/",
        "--assume-role-policy-document",
        trust,
        "--description",
        "brevet binding dave|aws:bucket|aws.s3-read",
    ]);
    // This pass, or the background one (every 2 s) if it came first, removes it; either way
    // the removal is audited as drift.
    let report = server.reconcile(ADMIN);
    assert_eq!(brevet_roles(&w.moto), 0, "{report:#}");
    let export = server.audit_export(ADMIN);
    assert!(
        export
            .lines()
            .any(|l| l.contains("drift_detected") && l.contains("brevet-0123456789abcdef0123")),
        "{report:#}\n{export}"
    );
}

#[test]
fn bad_aws_input_is_refused_and_nothing_is_created() {
    let moto = Moto::start();
    let base = aws_config(&moto.url);
    let world = World::new(StoreKind::Sqlite).with(&base).env(&AWS_ENV);
    let read_actions = |actions: &[&str]| {
        world.config.clone().set(
            "providers.aws.profiles.\"aws.s3-read\".actions",
            toml::Value::Array(actions.iter().map(|a| (*a).into()).collect()),
        )
    };
    let cases = [
        (
            read_actions(&["s3:GetObjekt"]),
            "`s3:GetObjekt` is not in the aws permission catalog (did you mean `s3:GetObject`?)",
        ),
        (read_actions(&["s3:*"]), "`s3:*` is a wildcard"),
        (read_actions(&["s3GetObject"]), "is not an IAM action"),
        (
            world.config.clone().set(
                "resources.\"aws:bucket\".arns",
                toml::Value::Array(vec![
                    "arn:aws:s3:::data-bucket".into(),
                    "arn:aws:s3:data-bucket".into(),
                ]),
            ),
            "is not an ARN",
        ),
    ];
    for (config, expected) in cases {
        let out = world.refused_start(&config);
        assert!(
            stderr(&out).contains(expected),
            "expected `{expected}` in: {}",
            stderr(&out)
        );
    }
    drop(world);
    // Privilege-escalation actions are allowed but called out when the server starts.
    let world = World::new(StoreKind::Sqlite)
        .with(&base)
        .set(
            "providers.aws.profiles.\"aws.s3-read\".actions",
            toml::Value::Array(vec!["s3:GetObject".into(), "iam:PassRole".into()]),
        )
        .env(&AWS_ENV);
    let server = world.start();
    assert!(
        server
            .log_text()
            .contains("`iam:PassRole` can escalate privileges"),
        "{}",
        server.log_text()
    );
    drop(server);

    // Longer than the roles' maximum session duration (policy allows 4h, the role 1h).
    let world = World::new(StoreKind::Sqlite).with(&base).env(&AWS_ENV);
    let server = world.start();
    let out = server.run(
        DAVE,
        Cmd::request(
            &Ask::new("aws.s3-read", "aws:bucket")
                .lasting("2h")
                .reason("x"),
        ),
    );
    assert!(
        stderr(&out).contains("2h is longer than `aws:bucket` can grant `aws.s3-read` for (1h)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        server.json(DAVE, Cmd::requests()).as_array().unwrap().len(),
        0
    );
    let roles = moto.aws_json(&["iam", "list-roles"]);
    assert!(
        roles["Roles"].as_array().unwrap().is_empty(),
        "nothing created: {roles}"
    );
}

/// Creates an IAM user in the emulator with an inline policy and an access key; returns
/// [key id, secret]. Three requests.
fn iam_user(moto: &Moto, name: &str, policy: &str) -> [String; 2] {
    moto.aws_json(&["iam", "create-user", "--user-name", name]);
    moto.aws_json(&[
        "iam",
        "put-user-policy",
        "--user-name",
        name,
        "--policy-name",
        "p",
        "--policy-document",
        policy,
    ]);
    let k = moto.aws_json(&["iam", "create-access-key", "--user-name", name]);
    [
        k["AccessKey"]["AccessKeyId"].as_str().unwrap().to_owned(),
        k["AccessKey"]["SecretAccessKey"]
            .as_str()
            .unwrap()
            .to_owned(),
    ]
}

/// With the emulator enforcing IAM (moto's access control: identity policies' actions and
/// resources, and role trust policies), the role Brevet creates for a grant lets the requester —
/// and only the requester — read the bucket and nothing more, and stops working once revoked.
/// Brevet itself runs with an IAM user's key, as in a real account.
#[test]
fn role_per_grant_allows_exactly_the_profile_where_the_emulator_enforces_iam() {
    // The setup below makes exactly this many unauthenticated requests; after them, moto
    // checks every request's signature and policies.
    let moto = Moto::start_enforcing(11);
    let admin =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
    let may_assume = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"*"}]}"#;
    let brevet = iam_user(&moto, "brevet", admin);
    let dave = iam_user(&moto, "dave", may_assume);
    let eve = iam_user(&moto, "eve", may_assume);
    moto.aws_json(&["s3api", "create-bucket", "--bucket", "data-bucket"]);
    let report = std::env::temp_dir().join(format!("brevet-report-{}", std::process::id()));
    std::fs::write(&report, "quarterly numbers").unwrap();
    moto.aws_json(&[
        "s3api",
        "put-object",
        "--bucket",
        "data-bucket",
        "--key",
        "report.txt",
        "--body",
        report.to_str().unwrap(),
    ]);
    // Enforcement is on: the emulator's default test key is now refused.
    let (ok, text) = moto.aws(&["s3api", "list-buckets"]);
    assert!(!ok, "moto must be enforcing IAM now: {text}");

    let env = [
        ("AWS_ACCESS_KEY_ID", brevet[0].as_str()),
        ("AWS_SECRET_ACCESS_KEY", brevet[1].as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let world = World::new(StoreKind::Sqlite)
        .with(&aws_config(&moto.url))
        .env(&env);
    let server = world.start();
    // Before asking, the requester sees what each profile grants in IAM's own terms: in the
    // portal's request form and from /v1/eligible.
    let (status, body) = api_call(&server, DAVE, "GET", "/v1/eligible", None);
    assert_eq!(status, 200, "{body}");
    let eligible: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let grants = |profile: &str| -> Vec<String> {
        let e = eligible
            .iter()
            .find(|e| e["profile"] == profile)
            .unwrap_or_else(|| panic!("{profile} not eligible: {body}"));
        serde_json::from_value(e["grants"].clone()).unwrap()
    };
    assert_eq!(
        grants("aws.s3-read"),
        ["s3:GetObject, s3:ListBucket on arn:aws:s3:::data-bucket, arn:aws:s3:::data-bucket/*"]
    );
    let neutral = grants("aws.s3-neutral");
    assert!(
        neutral
            .iter()
            .any(|g| g.contains("s3:GetObject") && g.ends_with("on arn:aws:s3:::data-bucket/*"))
            && neutral
                .iter()
                .any(|g| g.contains("s3:ListBucket") && g.ends_with("on arn:aws:s3:::data-bucket")),
        "{neutral:?}"
    );
    let portal = Portal::new(&server.url);
    let (session, _) = portal.sign_in(DAVE);
    let form = portal.get(&session, "/request").text().unwrap();
    assert!(
        form.contains("what it grants, natively")
            && form.contains("s3:GetObject, s3:ListBucket on arn:aws:s3:::data-bucket, arn:aws:s3:::data-bucket/*"),
        "{form}"
    );

    // The explicit action list, and the neutral `storage.read` compiled through the catalog
    // (each action scoped to the ARNs of its own type): both exactly the task, as IAM enforces.
    for profile in ["aws.s3-read", "aws.s3-neutral"] {
        grant_allows_exactly_the_task(&moto, &server, profile, &brevet, &dave, &eve, &report);
    }
    let _ = std::fs::remove_file(&report);
    drop(world);
}

fn grant_allows_exactly_the_task(
    moto: &Moto,
    server: &Server,
    profile: &str,
    brevet: &[String; 2],
    dave: &[String; 2],
    eve: &[String; 2],
    report: &std::path::Path,
) {
    let r = server.request(
        DAVE,
        &Ask::new(profile, "aws:bucket")
            .lasting("10m")
            .reason("read the report"),
    );
    let id = r["id"].as_str().unwrap().to_owned();
    let a = server.activate(DAVE, &id);
    let role_arn = a["credential"]["details"]["role_arn"]
        .as_str()
        .unwrap()
        .to_owned();

    let assume = |who: &[String; 2]| {
        moto.aws_as(
            &[&who[0], &who[1]],
            &[
                "sts",
                "assume-role",
                "--role-arn",
                &role_arn,
                "--role-session-name",
                "brevet-test",
            ],
        )
    };
    // Only the requester may assume the grant's role.
    let (ok, text) = assume(eve);
    assert!(
        !ok && text.contains("AccessDenied"),
        "eve assumed it: {text}"
    );
    let (ok, text) = assume(dave);
    assert!(
        ok,
        "{profile}: dave could not assume his grant's role: {text}"
    );
    let c: serde_json::Value = serde_json::from_str(&text).unwrap();
    let session = [
        c["Credentials"]["AccessKeyId"].as_str().unwrap().to_owned(),
        c["Credentials"]["SecretAccessKey"]
            .as_str()
            .unwrap()
            .to_owned(),
        c["Credentials"]["SessionToken"]
            .as_str()
            .unwrap()
            .to_owned(),
    ];
    let as_grant = |args: &[&str]| moto.aws_as(&[&session[0], &session[1], &session[2]], args);

    // The profile's actions on the grant's resource work…
    let out = std::env::temp_dir().join(format!("brevet-report-out-{}", std::process::id()));
    let (ok, text) = as_grant(&[
        "s3api",
        "get-object",
        "--bucket",
        "data-bucket",
        "--key",
        "report.txt",
        out.to_str().unwrap(),
    ]);
    assert!(
        ok,
        "{profile}: s3:GetObject on the bucket was refused: {text}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "quarterly numbers");
    let (ok, text) = as_grant(&["s3api", "list-objects-v2", "--bucket", "data-bucket"]);
    assert!(ok && text.contains("report.txt"), "{text}");
    // …and nothing else: writing, deleting, other buckets, IAM.
    for args in [
        vec![
            "s3api",
            "put-object",
            "--bucket",
            "data-bucket",
            "--key",
            "x.txt",
            "--body",
            report.to_str().unwrap(),
        ],
        vec![
            "s3api",
            "delete-object",
            "--bucket",
            "data-bucket",
            "--key",
            "report.txt",
        ],
        vec!["s3api", "create-bucket", "--bucket", "other-bucket"],
        vec!["iam", "list-users"],
    ] {
        let (ok, text) = as_grant(&args);
        assert!(
            !ok && text.contains("AccessDenied"),
            "{profile}: {args:?} should be denied: {text}"
        );
    }

    // Revoked: the role is gone and the session credentials no longer read the bucket.
    server.revoke(DAVE, &id);
    let g = server.show(DAVE, &id);
    assert_eq!(g["state"], "revoked", "{g:#}");
    let (ok, text) = as_grant(&[
        "s3api",
        "get-object",
        "--bucket",
        "data-bucket",
        "--key",
        "report.txt",
        out.to_str().unwrap(),
    ]);
    assert!(!ok, "revoked credentials still read the bucket: {text}");
    // (moto's AssumeRole hands out keys even for a role that does not exist, so the check that
    // matters is that the role is gone, read back with Brevet's own key.)
    let role = role_arn.rsplit('/').next().unwrap();
    let (ok, text) = moto.aws_as(
        &[&brevet[0], &brevet[1]],
        &["iam", "get-role", "--role-name", role],
    );
    assert!(!ok && text.contains("NoSuchEntity"), "{text}");
    let _ = std::fs::remove_file(&out);
}
