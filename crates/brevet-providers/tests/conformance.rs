//! Every provider against the one conformance suite (`brevet_providers::testing::conformance`),
//! each against its real target, seen through a client of the target's own (psql, OpenSSH's
//! `ssh-keygen`, the AWS CLI) rather than through the provider:
//! - PostgreSQL: a real cluster (`BREVET_TEST_PG_URL`, which `scripts/test` provides), Brevet
//!   running as a `NOSUPERUSER CREATEROLE` login with the documented grants;
//! - SSH: certificates checked against the KRL by `ssh-keygen -Q` and read by `ssh-keygen -L`;
//! - AWS: the moto emulator (`BREVET_TEST_MOTO_SERVER`), read back with the real AWS CLI, in the
//!   role-per-grant and Identity Center modes;
//! - the in-memory provider runs the suite in the crate's own unit tests.

use std::{collections::BTreeMap, path::PathBuf, process::Command, sync::Arc};

use async_trait::async_trait;
use brevet_core::{Binding, PrincipalId, ProfileName, ResourceId};
use brevet_providers::{
    testing::conformance::{run, Fixture, Inspector, Report},
    Credential, CredentialInput, SecretText,
};
use chrono::{DateTime, TimeZone, Utc};

fn binding(who: &str, resource: &str, profile: &str) -> Binding {
    Binding {
        principal: PrincipalId::parse(who).unwrap(),
        resource: ResourceId::parse(resource).unwrap(),
        profile: ProfileName::parse(profile).unwrap(),
    }
}

mod postgres {
    use brevet_providers::postgres::{
        OnRevokeObjects, PgResource, PostgresConfig, PostgresProvider,
    };
    use brevet_testkit::{pg_admin_url, psql, random_suffix, PgAdminLogin, TestDb};

    use super::*;

    /// Reads `pg_roles` as the cluster's superuser: a grant role is found by Brevet's documented
    /// marker, the `brevet binding <binding>` comment, not by the provider's naming.
    struct Catalog {
        cluster: String,
        prefix: String,
    }

    impl Catalog {
        fn role_of(&self, b: &Binding) -> Option<(String, Option<i64>)> {
            let row = psql(
                &self.cluster,
                &format!(
                    "SELECT rolname || ' ' || coalesce(extract(epoch FROM rolvaliduntil)::bigint::text, '-') \
                     FROM pg_roles WHERE starts_with(rolname, '{}') \
                       AND shobj_description(oid, 'pg_authid') = 'brevet binding {}'",
                    self.prefix,
                    b.key()
                ),
            )
            .unwrap();
            let (name, until) = row.split_once(' ')?;
            Some((name.to_owned(), until.parse().ok()))
        }
    }

    #[async_trait]
    impl Inspector for Catalog {
        async fn present(&self, b: &Binding, _: Option<&Credential>) -> bool {
            self.role_of(b).is_some()
        }
        async fn enforced_expiry(
            &self,
            b: &Binding,
            _: Option<&Credential>,
        ) -> Option<DateTime<Utc>> {
            let (_, until) = self.role_of(b)?;
            Utc.timestamp_opt(until?, 0).single()
        }
        async fn credential_works(&self, c: &Credential) -> Option<bool> {
            // A cluster that trusts every local login (as a developer's often does) accepts any
            // password: then this inspector cannot tell, and says so.
            let url = c.secret.expose();
            let (head, tail) = url.rsplit_once('@')?;
            let (user_part, _) = head.rsplit_once(':')?;
            if psql(&format!("{user_part}:not-the-password@{tail}"), "SELECT 1").is_ok() {
                return None;
            }
            Some(psql(url, "SELECT 1").is_ok())
        }
        async fn plant_lookalike(&self) -> String {
            // Brevet's name shape, but no marker: a DBA's role, or a leftover of someone else.
            let name = format!("{}0123456789abcdef0123", self.prefix);
            psql(&self.cluster, &format!("CREATE ROLE {name} NOLOGIN")).unwrap();
            name
        }
        async fn lookalike_present(&self, name: &str) -> bool {
            psql(
                &self.cluster,
                &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{name}'"),
            )
            .unwrap()
                == "1"
        }
    }

    /// On the main test cluster (PostgreSQL 15; it may trust local logins, so passwords are not
    /// checked there).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_passes_the_conformance_suite() {
        let report = postgres_conformance(&pg_admin_url()).await;
        assert!(report.expiry_checked);
    }

    /// On the PostgreSQL 16 cluster `scripts/test` starts with SCRAM password authentication for
    /// host logins, so the inspector also checks which credentials work.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_16_with_passwords_passes_the_conformance_suite() {
        let Ok(cluster) = std::env::var("BREVET_TEST_PG16_URL") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "BREVET_TEST_PG16_URL is not set under CI: scripts/test starts that cluster"
            );
            eprintln!(
                "\n!!! SKIPPED: BREVET_TEST_PG16_URL is not set (scripts/test sets it) !!!\n"
            );
            return;
        };
        let report = postgres_conformance(&cluster).await;
        assert!(
            report.credentials_checked,
            "on a cluster that checks passwords the credential checks must run: {report:?}"
        );
    }

    async fn postgres_conformance(cluster: &str) -> Report {
        let cluster = cluster.to_owned();
        let target = TestDb::create_on(&cluster, "brevet_conformance");
        psql(
            &target.url,
            "CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders VALUES (1)",
        )
        .unwrap();
        let admin = PgAdminLogin::create(&cluster, &[(&target.name, &["public"])]);
        assert!(!admin.is_superuser());
        let prefix = format!("brvc_{}_", random_suffix());
        let config = PostgresConfig {
            admin_url: SecretText::new(admin.url.clone()),
            role_prefix: prefix.clone(),
            connect_host: None,
            connect_port: None,
            profiles: PostgresConfig::default_profiles(),
            resources: BTreeMap::from([(
                "orders".to_string(),
                PgResource {
                    database: target.name.clone(),
                    schemas: vec!["public".into()],
                },
            )]),
            connection_limit: 5,
            on_revoke_objects: OnRevokeObjects::default(),
            inert_owner: None,
        };
        let provider = PostgresProvider::new("pg", config).unwrap();
        let catalog = Arc::new(Catalog {
            cluster: cluster.clone(),
            prefix: prefix.clone(),
        });
        let report = run(
            Arc::new(provider),
            catalog.clone(),
            Fixture {
                binding: binding("alice", "pg:orders", "db.read"),
                other: binding("bob", "pg:orders", "db.write"),
                input: CredentialInput::default(),
                enforces_expiry: true,
                access_is_credential: false,
                lists_access: true,
            },
        )
        .await;
        let _ = psql(
            &cluster,
            &format!("DROP ROLE IF EXISTS {prefix}0123456789abcdef0123"),
        );
        drop(admin);
        report
    }
}

mod ssh {
    use brevet_providers::{
        ssh::{
            CertificateLedger, IssuedCertificate, SshConfig, SshHost, SshProfile, SshProvider,
            StateLedger,
        },
        testing::{MemoryLedger, MemoryState},
    };
    use ssh_key::{Algorithm, PrivateKey};

    use super::*;

    /// Looks at certificates with OpenSSH's own `ssh-keygen`: `-Q` against the KRL file the
    /// provider writes for sshd (`RevokedKeys`), `-L` for the validity sshd enforces. The
    /// look-alike is a certificate record of another SSH provider instance in the same ledger.
    struct OpenSsh {
        dir: tempfile::TempDir,
        krl: PathBuf,
        /// Where the look-alike is planted: the ledger of another SSH provider instance.
        other_ledger: Arc<dyn CertificateLedger>,
        /// How to read back the look-alike.
        lookalike_live: Box<dyn Fn(u64) -> bool + Send + Sync>,
    }

    impl OpenSsh {
        fn cert_file(&self, c: &Credential) -> PathBuf {
            let path = self.dir.path().join(format!(
                "{}-cert.pub",
                c.details["serial"].as_str().unwrap()
            ));
            std::fs::write(&path, c.secret.expose()).unwrap();
            path
        }

        fn revoked(&self, c: &Credential) -> bool {
            let out = Command::new("ssh-keygen")
                .arg("-Q")
                .arg("-f")
                .arg(&self.krl)
                .arg(self.cert_file(c))
                .output()
                .expect("ssh-keygen (scripts/test installs openssh-client)");
            String::from_utf8_lossy(&out.stdout).contains("REVOKED")
        }

        fn valid_before(&self, c: &Credential) -> Option<DateTime<Utc>> {
            let out = Command::new("ssh-keygen")
                .arg("-L")
                .arg("-f")
                .arg(self.cert_file(c))
                .env("TZ", "UTC")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let valid = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("Valid: "))?;
            let to = valid.rsplit(" to ").next()?;
            chrono::NaiveDateTime::parse_from_str(to.trim(), "%Y-%m-%dT%H:%M:%S")
                .ok()
                .map(|t| t.and_utc())
        }
    }

    #[async_trait]
    impl Inspector for OpenSsh {
        async fn present(&self, _: &Binding, c: Option<&Credential>) -> bool {
            c.is_some_and(|c| {
                !self.revoked(c) && self.valid_before(c).is_some_and(|t| t > Utc::now())
            })
        }
        async fn enforced_expiry(
            &self,
            _: &Binding,
            c: Option<&Credential>,
        ) -> Option<DateTime<Utc>> {
            // The certificate's end, as OpenSSH reads it.
            self.valid_before(c?)
        }
        async fn credential_works(&self, c: &Credential) -> Option<bool> {
            Some(!self.revoked(c))
        }
        async fn plant_lookalike(&self) -> String {
            let serial: u64 = 4_242_424_242;
            self.other_ledger
                .record(&IssuedCertificate {
                    provider: "other-ssh".into(),
                    serial,
                    binding_key: "alice|other-ssh:box|ssh.login".into(),
                    grant_id: "g".into(),
                    key_id: "k".into(),
                    valid_before: Utc::now() + chrono::Duration::hours(1),
                    revoked_at: None,
                })
                .await
                .unwrap();
            serial.to_string()
        }
        async fn lookalike_present(&self, serial: &str) -> bool {
            serial.parse().is_ok_and(|s| (self.lookalike_live)(s))
        }
    }

    fn config(dir: &std::path::Path) -> SshConfig {
        let profile = SshProfile {
            principals: vec!["ops".into()],
            permit_pty: true,
            port_forwarding: false,
            agent_forwarding: false,
            x11_forwarding: false,
            force_command: None,
            source_address: None,
        };
        SshConfig {
            ca_key_file: dir.join("ca"),
            krl_file: Some(dir.join("revoked.krl")),
            backdate: std::time::Duration::from_secs(60),
            krl_margin: std::time::Duration::from_secs(600),
            profiles: BTreeMap::from([
                (ProfileName::parse("ssh.login").unwrap(), profile.clone()),
                (ProfileName::parse("ssh.dev").unwrap(), profile),
            ]),
            resources: BTreeMap::from([(
                "box".to_string(),
                SshHost {
                    host: "127.0.0.1".into(),
                    port: 22,
                },
            )]),
        }
    }

    async fn ssh_conformance(
        ledger: Arc<dyn CertificateLedger>,
        inspector: OpenSsh,
        dir: &std::path::Path,
    ) {
        let ca = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap();
        let provider = SshProvider::new("ssh", config(dir), ca, ledger);
        // sshd refuses every key while its RevokedKeys file is missing: the server's start-up
        // hook writes it, so does this test.
        use brevet_providers::Provider;
        provider.on_start().await.unwrap();
        let key = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap();
        let report = run(
            Arc::new(provider),
            Arc::new(inspector),
            Fixture {
                binding: binding("alice", "ssh:box", "ssh.login"),
                other: binding("bob", "ssh:box", "ssh.dev"),
                input: CredentialInput {
                    grant_id: "g1".into(),
                    public_key: Some(key.public_key().to_openssh().unwrap()),
                },
                enforces_expiry: true,
                access_is_credential: true,
                lists_access: true,
            },
        )
        .await;
        assert_eq!(
            report,
            Report {
                credentials_checked: true,
                expiry_checked: true
            }
        );
    }

    /// One ledger shared by two instances (as the old table was): the other instance's record
    /// must be invisible to this one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ssh_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Arc::new(MemoryLedger::default());
        let seen = ledger.clone();
        let inspector = OpenSsh {
            dir: tempfile::tempdir().unwrap(),
            krl: dir.path().join("revoked.krl"),
            other_ledger: ledger.clone(),
            lookalike_live: Box::new(move |serial| {
                seen.records()
                    .iter()
                    .any(|r| r.serial == serial && r.revoked_at.is_none())
            }),
        };
        ssh_conformance(ledger, inspector, dir.path()).await;
    }

    /// The ledger as the server keeps it: in the provider's own scope of state.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ssh_on_provider_state_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let mine = Arc::new(StateLedger(Arc::new(MemoryState::default())));
        let others = Arc::new(MemoryState::default());
        let seen = others.clone();
        let inspector = OpenSsh {
            dir: tempfile::tempdir().unwrap(),
            krl: dir.path().join("revoked.krl"),
            other_ledger: Arc::new(StateLedger(others)),
            lookalike_live: Box::new(move |serial| {
                let state = seen.clone();
                let key = format!("cert/{serial:020}");
                std::thread::spawn(move || {
                    tokio::runtime::Runtime::new().unwrap().block_on(async {
                        use brevet_providers::state::ProviderState;
                        state
                            .get(&key)
                            .await
                            .unwrap()
                            .is_some_and(|s| s.value["revoked_at"].is_null())
                    })
                })
                .join()
                .unwrap()
            }),
        };
        ssh_conformance(mine, inspector, dir.path()).await;
    }
}

mod aws {
    use brevet_providers::aws::{
        Arn, AwsConfig, AwsIdentity, AwsMode, AwsProfile, AwsProvider, AwsResource, IamAction,
    };
    use brevet_testkit::Moto;
    use serde_json::Value;

    use super::*;

    const ACCOUNT: &str = "123456789012";

    fn config(moto: &Moto, profiles: BTreeMap<ProfileName, AwsProfile>) -> AwsConfig {
        let identity = |who: &str| AwsIdentity {
            arn: Some(Arn::parse(&format!("arn:aws:iam::{ACCOUNT}:user/{who}")).unwrap()),
            identity_center_user_id: Some(format!("idc-user-{who}")),
        };
        AwsConfig {
            region: "us-east-1".into(),
            endpoint_url: Some(moto.url.clone()),
            role_prefix: "brevet-".into(),
            role_path: "/brevet/".into(),
            max_session_duration: std::time::Duration::from_secs(3600),
            profiles,
            resources: BTreeMap::from([(
                "bucket".to_string(),
                AwsResource {
                    account: ACCOUNT.into(),
                    arns: vec![
                        Arn::parse("arn:aws:s3:::data-bucket").unwrap(),
                        Arn::parse("arn:aws:s3:::data-bucket/*").unwrap(),
                    ],
                },
            )]),
            identities: BTreeMap::from([
                ("alice".to_string(), identity("alice")),
                ("bob".to_string(), identity("bob")),
            ]),
        }
    }

    /// A role with a per-grant role's name shape and path but without Brevet's description:
    /// never the provider's.
    fn plant_role_lookalike(moto: &Moto) -> String {
        let name = "brevet-0123456789abcdef0123";
        moto.aws_json(&[
            "iam",
            "create-role",
            "--role-name",
            name,
            "--path",
            "/brevet/",
            "--assume-role-policy-document",
            r#"{"Version":"2012-10-17","Statement":[]}"#,
        ]);
        name.to_owned()
    }

    fn role_present(moto: &Moto, name: &str) -> bool {
        moto.aws(&["iam", "get-role", "--role-name", name]).0
    }

    fn emulator_credentials() {
        // The SDK reads these from the environment; they are the emulator's, never real ones.
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    }

    /// IAM as the AWS CLI sees it: a grant's role is found by Brevet's documented marker (the
    /// `brevet binding <binding>` description under the role path), its enforced end in the
    /// `aws:CurrentTime` condition of its inline policy.
    struct Iam {
        moto: Moto,
    }

    impl Iam {
        fn role_of(&self, b: &Binding) -> Option<String> {
            let roles = self
                .moto
                .aws_json(&["iam", "list-roles", "--path-prefix", "/brevet/"]);
            roles["Roles"].as_array()?.iter().find_map(|r| {
                let name = r["RoleName"].as_str()?;
                let got = self
                    .moto
                    .aws_json(&["iam", "get-role", "--role-name", name]);
                (got["Role"]["Description"].as_str()? == format!("brevet binding {}", b.key()))
                    .then(|| name.to_owned())
            })
        }
    }

    fn find_date(v: &Value) -> Option<String> {
        match v {
            Value::Object(m) => m.iter().find_map(|(k, v)| {
                if k == "aws:CurrentTime" {
                    v.as_str().map(str::to_owned)
                } else {
                    find_date(v)
                }
            }),
            Value::Array(a) => a.iter().find_map(find_date),
            _ => None,
        }
    }

    #[async_trait]
    impl Inspector for Iam {
        async fn present(&self, b: &Binding, _: Option<&Credential>) -> bool {
            self.role_of(b).is_some()
        }
        async fn enforced_expiry(
            &self,
            b: &Binding,
            _: Option<&Credential>,
        ) -> Option<DateTime<Utc>> {
            let role = self.role_of(b)?;
            let names = self
                .moto
                .aws_json(&["iam", "list-role-policies", "--role-name", &role]);
            names["PolicyNames"].as_array()?.iter().find_map(|n| {
                let doc = self.moto.aws_json(&[
                    "iam",
                    "get-role-policy",
                    "--role-name",
                    &role,
                    "--policy-name",
                    n.as_str()?,
                ]);
                let at = find_date(&doc["PolicyDocument"])?;
                DateTime::parse_from_rfc3339(&at)
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
            })
        }
        async fn credential_works(&self, _: &Credential) -> Option<bool> {
            // Assuming the role needs the requester's own identity; the e2e tests do that with
            // the emulator's IAM enforcement on.
            None
        }
        async fn plant_lookalike(&self) -> String {
            plant_role_lookalike(&self.moto)
        }
        async fn lookalike_present(&self, name: &str) -> bool {
            role_present(&self.moto, name)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn aws_role_per_grant_passes_the_conformance_suite() {
        emulator_credentials();
        let moto = Moto::start();
        let profile = AwsProfile {
            mode: AwsMode::Role,
            actions: vec![
                IamAction::parse("s3:GetObject").unwrap(),
                IamAction::parse("s3:ListBucket").unwrap(),
            ],
            compiled: None,
        };
        let config = config(
            &moto,
            BTreeMap::from([
                (ProfileName::parse("aws.read").unwrap(), profile.clone()),
                (ProfileName::parse("aws.other").unwrap(), profile),
            ]),
        );
        let provider = AwsProvider::new("aws", config).await;
        run(
            Arc::new(provider),
            Arc::new(Iam { moto }),
            Fixture {
                binding: binding("alice", "aws:bucket", "aws.read"),
                other: binding("bob", "aws:bucket", "aws.other"),
                input: CredentialInput::default(),
                enforces_expiry: true,
                access_is_credential: false,
                lists_access: true,
            },
        )
        .await;
    }

    /// Identity Center as the AWS CLI sees it: the permission set's USER assignments in the
    /// account. Identity Center keeps no expiry of its own (Brevet removes the assignment).
    struct IdentityCenter {
        moto: Moto,
        instance: String,
        permission_set: String,
    }

    impl IdentityCenter {
        fn assigned(&self, user: &str) -> bool {
            let v = self.moto.aws_json(&[
                "sso-admin",
                "list-account-assignments",
                "--instance-arn",
                &self.instance,
                "--account-id",
                ACCOUNT,
                "--permission-set-arn",
                &self.permission_set,
            ]);
            v["AccountAssignments"].as_array().is_some_and(|all| {
                all.iter()
                    .any(|a| a["PrincipalType"] == "USER" && a["PrincipalId"] == user)
            })
        }
    }

    #[async_trait]
    impl Inspector for IdentityCenter {
        async fn present(&self, b: &Binding, _: Option<&Credential>) -> bool {
            self.assigned(&format!("idc-user-{}", b.principal))
        }
        async fn enforced_expiry(
            &self,
            _: &Binding,
            _: Option<&Credential>,
        ) -> Option<DateTime<Utc>> {
            None
        }
        async fn credential_works(&self, _: &Credential) -> Option<bool> {
            None
        }
        async fn plant_lookalike(&self) -> String {
            // The same permission set, in the same account, for a user no principal is.
            self.moto.aws_json(&[
                "sso-admin",
                "create-account-assignment",
                "--instance-arn",
                &self.instance,
                "--target-id",
                ACCOUNT,
                "--target-type",
                "AWS_ACCOUNT",
                "--permission-set-arn",
                &self.permission_set,
                "--principal-type",
                "USER",
                "--principal-id",
                "idc-user-zed",
            ]);
            format!(
                "identity-center-assignment:{}|{ACCOUNT}|{}|idc-user-zed",
                self.instance, self.permission_set
            )
        }
        async fn lookalike_present(&self, _: &str) -> bool {
            self.assigned("idc-user-zed")
        }
    }

    /// Session mode as the AWS CLI sees it. The access is an STS session of the shared base role
    /// `brevet-base`; revoking it is an inline deny on that role for the session's name
    /// (`aws:userid` `*:SESSION`) and sessions issued before an instant (`aws:TokenIssueTime`).
    /// moto evaluates neither condition, so the inspector reads the base role's documents: a
    /// credential is present while no deny there covers its session name and its issue time —
    /// bounded above by when the inspector first saw the credential.
    struct Sessions {
        moto: Moto,
        first_seen: std::sync::Mutex<BTreeMap<String, DateTime<Utc>>>,
    }

    impl Sessions {
        fn seen(&self, c: &Credential) -> (String, DateTime<Utc>) {
            let key = c.details["access_key_id"].as_str().unwrap().to_owned();
            let session = c.details["session_name"].as_str().unwrap().to_owned();
            let at = *self
                .first_seen
                .lock()
                .unwrap()
                .entry(key)
                .or_insert_with(Utc::now);
            (session, at)
        }

        /// Whether a deny on the base role covers sessions named `session` issued at `at`.
        fn denied(&self, session: &str, at: DateTime<Utc>) -> bool {
            let names =
                self.moto
                    .aws_json(&["iam", "list-role-policies", "--role-name", BASE_ROLE]);
            names["PolicyNames"].as_array().unwrap().iter().any(|n| {
                let doc = self.moto.aws_json(&[
                    "iam",
                    "get-role-policy",
                    "--role-name",
                    BASE_ROLE,
                    "--policy-name",
                    n.as_str().unwrap(),
                ]);
                doc["PolicyDocument"]["Statement"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|st| {
                        let c = &st["Condition"];
                        let before = c["DateLessThan"]["aws:TokenIssueTime"]
                            .as_str()
                            .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
                        let who = c["StringLike"]["aws:userid"].as_str();
                        st["Effect"] == "Deny"
                            && st["Action"] == "*"
                            && before.is_some_and(|b| b > at)
                            && who.is_none_or(|w| w == format!("*:{session}"))
                    })
            })
        }
    }

    const BASE_ROLE: &str = "brevet-base";

    #[async_trait]
    impl Inspector for Sessions {
        async fn present(&self, _: &Binding, c: Option<&Credential>) -> bool {
            let Some(c) = c else { return false };
            let (session, at) = self.seen(c);
            !self.denied(&session, at)
        }
        async fn enforced_expiry(
            &self,
            _: &Binding,
            _: Option<&Credential>,
        ) -> Option<DateTime<Utc>> {
            // The session policy's end is passed with AssumeRole; the target keeps no copy.
            None
        }
        async fn credential_works(&self, _: &Credential) -> Option<bool> {
            // moto ignores the deny's conditions, so it cannot tell.
            None
        }
        async fn plant_lookalike(&self) -> String {
            plant_role_lookalike(&self.moto)
        }
        async fn lookalike_present(&self, name: &str) -> bool {
            role_present(&self.moto, name)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn aws_session_mode_passes_the_conformance_suite() {
        emulator_credentials();
        let moto = Moto::start();
        let trust = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:root"}},"Action":"sts:AssumeRole"}}]}}"#
        );
        moto.aws_json(&[
            "iam",
            "create-role",
            "--role-name",
            BASE_ROLE,
            "--assume-role-policy-document",
            &trust,
        ]);
        let profile = AwsProfile {
            mode: AwsMode::Session {
                base_role_arn: Arn::parse(&format!("arn:aws:iam::{ACCOUNT}:role/{BASE_ROLE}"))
                    .unwrap(),
            },
            actions: vec![IamAction::parse("s3:GetObject").unwrap()],
            compiled: None,
        };
        let config = config(
            &moto,
            BTreeMap::from([(ProfileName::parse("aws.session").unwrap(), profile)]),
        );
        let provider = AwsProvider::new("aws", config).await;
        run(
            Arc::new(provider),
            Arc::new(Sessions {
                moto,
                first_seen: Default::default(),
            }),
            Fixture {
                binding: binding("alice", "aws:bucket", "aws.session"),
                other: binding("bob", "aws:bucket", "aws.session"),
                input: CredentialInput::default(),
                enforces_expiry: false,
                access_is_credential: true,
                lists_access: false,
            },
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn aws_identity_center_passes_the_conformance_suite() {
        emulator_credentials();
        let moto = Moto::start();
        let instance = moto.aws_json(&["sso-admin", "list-instances"])["Instances"][0]
            ["InstanceArn"]
            .as_str()
            .unwrap()
            .to_owned();
        let set = |name: &str| {
            let created = moto.aws_json(&[
                "sso-admin",
                "create-permission-set",
                "--instance-arn",
                &instance,
                "--name",
                name,
                "--session-duration",
                "PT1H",
            ]);
            created["PermissionSet"]["PermissionSetArn"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let (admin, ops) = (set("Admin"), set("Ops"));
        let profile = |permission_set: &str| AwsProfile {
            mode: AwsMode::IdentityCenter {
                instance_arn: instance.clone(),
                permission_set_arn: permission_set.to_owned(),
            },
            actions: vec![],
            compiled: None,
        };
        let config = config(
            &moto,
            BTreeMap::from([
                (ProfileName::parse("aws.admin").unwrap(), profile(&admin)),
                (ProfileName::parse("aws.ops").unwrap(), profile(&ops)),
            ]),
        );
        config.check_identity_center_unambiguous("aws").unwrap();
        let provider = AwsProvider::new("aws", config).await;
        run(
            Arc::new(provider),
            Arc::new(IdentityCenter {
                moto,
                instance,
                permission_set: admin,
            }),
            Fixture {
                binding: binding("alice", "aws:bucket", "aws.admin"),
                // Another principal on the same permission set: revoking alice leaves bob.
                other: binding("bob", "aws:bucket", "aws.admin"),
                input: CredentialInput::default(),
                enforces_expiry: false,
                access_is_credential: false,
                lists_access: true,
            },
        )
        .await;
    }
}

mod gcp {
    //! GCP against the stand-in (`brevet_testkit::gcp::FakeGcp`: no GCP IAM emulator exists),
    //! which the stand-in's own tests check with gcloud and Google's Python client. The
    //! inspector asks the stand-in's IAM engine — what Google would answer to
    //! testIamPermissions for the grantee — and moves its clock to see where Google would end
    //! the access.
    use std::collections::BTreeMap;

    use brevet_providers::{
        gcp::{Credentials, GcpConfig, GcpProfile, GcpProvider, GcpResource, Grantable},
        testing::MemoryState,
        Provider,
    };
    use brevet_testkit::gcp::FakeGcp;
    use serde_json::json;

    use super::*;

    pub struct Target {
        pub fake: FakeGcp,
        pub resource: String,
        /// Permissions the profile grants, which the inspector asks about.
        pub probe: Vec<String>,
        pub members: BTreeMap<String, String>,
    }

    impl Target {
        fn member(&self, b: &Binding) -> &str {
            &self.members[b.principal.as_str()]
        }
    }

    #[async_trait]
    impl Inspector for Target {
        async fn present(&self, b: &Binding, _: Option<&Credential>) -> bool {
            let probe: Vec<&str> = self.probe.iter().map(String::as_str).collect();
            let held = self
                .fake
                .test_permissions(self.member(b), &self.resource, &probe);
            assert!(
                held.is_empty() || held.len() == probe.len(),
                "{b} holds part of its profile: {held:?} of {probe:?}"
            );
            !held.is_empty()
        }
        async fn enforced_expiry(
            &self,
            b: &Binding,
            _: Option<&Credential>,
        ) -> Option<DateTime<Utc>> {
            // The expiry written in the member's conditional binding, confirmed by Google's
            // semantics: access holds a second before it and not a second after.
            let policy = self.fake.policy(&self.resource);
            let member = self.member(b);
            let expiry = policy["bindings"]
                .as_array()?
                .iter()
                .filter(|x| {
                    x["members"]
                        .as_array()
                        .is_some_and(|m| m.iter().any(|m| m == member))
                })
                .filter_map(|x| {
                    let e = x["condition"]["expression"].as_str()?;
                    let ts = e.split("timestamp(\"").nth(1)?.split('"').next()?;
                    DateTime::parse_from_rfc3339(ts)
                        .ok()
                        .map(|t| t.with_timezone(&Utc))
                })
                .max()?;
            let now = self.fake.now();
            let probe = &[self.probe[0].as_str()];
            self.fake.set_now(expiry - chrono::Duration::seconds(1));
            let before = self.fake.test_permissions(member, &self.resource, probe);
            self.fake.set_now(expiry + chrono::Duration::seconds(1));
            let after = self.fake.test_permissions(member, &self.resource, probe);
            self.fake.set_now(now);
            (!before.is_empty() && after.is_empty()).then_some(expiry)
        }
        async fn credential_works(&self, _: &Credential) -> Option<bool> {
            None // the grantee's own Google identity; there is no credential to try
        }
        async fn plant_lookalike(&self) -> String {
            // Brevet's title shape on someone's hand-made binding, without Brevet's description.
            let mut policy = self.fake.policy(&self.resource);
            let title = "brevet:0123456789abcdef";
            policy["bindings"].as_array_mut().unwrap().push(json!({
                "role": "roles/storage.objectViewer",
                "members": ["user:carol@example.com"],
                "condition": {"title": title, "description": "made by hand", "expression": "request.time < timestamp(\"2099-01-01T00:00:00Z\")"},
            }));
            policy["version"] = json!(3);
            self.fake.set_policy(&self.resource, policy);
            format!("{}#{title}", self.resource)
        }
        async fn lookalike_present(&self, native_id: &str) -> bool {
            let title = native_id.split('#').nth(1).unwrap();
            self.fake.policy(&self.resource)["bindings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| {
                    b["condition"]["title"] == title && b["members"][0] == "user:carol@example.com"
                })
        }
    }

    pub fn config(
        fake: &FakeGcp,
        key: PathBuf,
        resources: BTreeMap<String, GcpResource>,
        profile: Grantable,
    ) -> GcpConfig {
        GcpConfig {
            credentials: Credentials::KeyFile(key),
            endpoint: Some(fake.url.clone()),
            organization: None,
            role_prefix: "brevet_".into(),
            role_idle: std::time::Duration::from_secs(3600),
            profiles: [(
                ProfileName::parse("gcp.read").unwrap(),
                GcpProfile { grants: profile },
            )]
            .into(),
            resources,
            identities: [
                ("alice".to_owned(), "user:alice@example.com".to_owned()),
                ("bob".to_owned(), "user:bob@example.com".to_owned()),
            ]
            .into(),
        }
    }

    async fn conformance(resource: GcpResource, profile: Grantable, probe: &[&str]) {
        let fake = FakeGcp::start();
        fake.add_organization("1");
        fake.add_project("p1", Some("organizations/1"));
        fake.add_bucket("logs", "p1");
        let dir = tempfile::tempdir().unwrap();
        let full = resource.full_name();
        let cfg = config(
            &fake,
            fake.write_key_file(dir.path()),
            [("r".to_owned(), resource)].into(),
            profile,
        );
        let members = cfg.identities.clone();
        let provider = GcpProvider::new("gcp", cfg, Arc::new(MemoryState::default()))
            .await
            .unwrap();
        let provider: Arc<dyn Provider> = Arc::new(provider);
        let target = Arc::new(Target {
            fake,
            resource: full,
            probe: probe.iter().map(|s| s.to_string()).collect(),
            members,
        });
        let report = run(
            provider,
            target.clone(),
            Fixture {
                binding: binding("alice", "gcp:r", "gcp.read"),
                other: binding("bob", "gcp:r", "gcp.read"),
                input: CredentialInput::default(),
                enforces_expiry: true,
                access_is_credential: false,
                lists_access: true,
            },
        )
        .await;
        assert!(report.expiry_checked);
        // Every write carried the etag it read, and Brevet's token (its own identity).
        for r in target.fake.requests() {
            if r.path.ends_with(":setIamPolicy") || r.path.ends_with("/iam") && r.method == "PUT" {
                let body = r.body.as_ref().unwrap();
                let policy = if body.get("policy").is_some() {
                    &body["policy"]
                } else {
                    body
                };
                assert!(
                    policy["etag"].as_str().is_some_and(|e| !e.is_empty()),
                    "a write without etag: {r:?}"
                );
                assert_eq!(policy["version"], 3, "{r:?}");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gcp_custom_role_on_a_project_passes_the_conformance_suite() {
        let perms = vec![
            "storage.objects.get".to_owned(),
            "storage.objects.list".to_owned(),
        ];
        conformance(
            GcpResource::Project("p1".into()),
            Grantable::Custom([("r".to_owned(), ("projects/p1".to_owned(), perms))].into()),
            &["storage.objects.get", "storage.objects.list"],
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gcp_predefined_role_on_a_bucket_passes_the_conformance_suite() {
        conformance(
            GcpResource::Bucket {
                name: "logs".into(),
                project: Some("p1".into()),
            },
            Grantable::Predefined("roles/storage.objectViewer".into()),
            &["storage.objects.get", "storage.objects.list"],
        )
        .await;
    }

    /// The permissions docs/gcp.md gives Brevet's own role, for a project.
    const BROKER_ROLE: [&str; 10] = [
        "resourcemanager.projects.getIamPolicy",
        "resourcemanager.projects.setIamPolicy",
        "iam.roles.create",
        "iam.roles.get",
        "iam.roles.list",
        "iam.roles.update",
        "iam.roles.delete",
        "iam.roles.undelete",
        "storage.buckets.getIamPolicy",
        "storage.buckets.setIamPolicy",
    ];

    /// With the stand-in checking every caller's permissions, Brevet runs the whole suite on
    /// exactly the role docs/gcp.md documents — and is refused, with nothing granted, without it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gcp_works_with_the_documented_least_privilege_role_and_not_without() {
        use brevet_testkit::gcp::BREVET_SERVICE_ACCOUNT;
        let fake = FakeGcp::start();
        fake.add_organization("1");
        fake.add_project("p1", Some("organizations/1"));
        let created = reqwest::Client::new()
            .post(format!("{}/v1/projects/p1/roles", fake.url))
            .json(&json!({"roleId": "brevetBroker", "role": {"title": "Brevet broker", "stage": "GA", "includedPermissions": BROKER_ROLE}}))
            .send()
            .await
            .unwrap();
        assert!(
            created.status().is_success(),
            "{}",
            created.text().await.unwrap()
        );
        fake.enforce_callers(true);
        let dir = tempfile::tempdir().unwrap();
        let perms = vec![
            "storage.objects.get".to_owned(),
            "storage.objects.list".to_owned(),
        ];
        let cfg = config(
            &fake,
            fake.write_key_file(dir.path()),
            [("r".to_owned(), GcpResource::Project("p1".into()))].into(),
            Grantable::Custom([("r".to_owned(), ("projects/p1".to_owned(), perms))].into()),
        );
        let members = cfg.identities.clone();
        let provider: Arc<dyn Provider> = Arc::new(
            GcpProvider::new("gcp", cfg, Arc::new(MemoryState::default()))
                .await
                .unwrap(),
        );
        // Without the role: refused, nothing made.
        let cx = brevet_providers::OpContext::other();
        let b = binding("alice", "gcp:r", "gcp.read");
        let until = Utc::now() + chrono::Duration::minutes(10);
        let e = provider.ensure(&cx, &b, until).await.unwrap_err();
        assert!(
            matches!(e, brevet_providers::ProviderError::Target(_)),
            "{e}"
        );
        assert!(e.to_string().contains("403"), "{e}");
        assert!(fake
            .roles("projects/p1")
            .iter()
            .all(|r| !r["name"].as_str().unwrap().contains("brevet_")));
        // With it (bound the way docs/gcp.md's gcloud command binds it): the whole suite passes.
        let mut policy = fake.policy("projects/p1");
        policy["bindings"] = json!([{"role": "projects/p1/roles/brevetBroker", "members": [format!("serviceAccount:{BREVET_SERVICE_ACCOUNT}")]}]);
        fake.set_policy("projects/p1", policy);
        let target = Arc::new(Target {
            fake,
            resource: "projects/p1".into(),
            probe: vec!["storage.objects.get".into(), "storage.objects.list".into()],
            members,
        });
        run(
            provider,
            target,
            Fixture {
                binding: b,
                other: binding("bob", "gcp:r", "gcp.read"),
                input: CredentialInput::default(),
                enforces_expiry: true,
                access_is_credential: false,
                lists_access: true,
            },
        )
        .await;
    }

    /// A provider on a fresh stand-in with project p1, custom profile `gcp.read` (two storage
    /// permissions) on resource `r` = the project, and its stand-in.
    async fn custom_on_p1(state: Arc<MemoryState>) -> (FakeGcp, tempfile::TempDir, GcpProvider) {
        let fake = FakeGcp::start();
        fake.add_organization("1");
        fake.add_project("p1", Some("organizations/1"));
        let dir = tempfile::tempdir().unwrap();
        let perms = vec![
            "storage.objects.get".to_owned(),
            "storage.objects.list".to_owned(),
        ];
        let cfg = config(
            &fake,
            fake.write_key_file(dir.path()),
            [("r".to_owned(), GcpResource::Project("p1".into()))].into(),
            Grantable::Custom([("r".to_owned(), ("projects/p1".to_owned(), perms))].into()),
        );
        let p = GcpProvider::new("gcp", cfg, state).await.unwrap();
        (fake, dir, p)
    }

    fn brevet_bindings(fake: &FakeGcp) -> usize {
        fake.policy("projects/p1")["bindings"]
            .as_array()
            .map_or(0, |b| {
                b.iter()
                    .filter(|b| {
                        b["condition"]["title"]
                            .as_str()
                            .is_some_and(|t| t.starts_with("brevet:"))
                    })
                    .count()
            })
    }

    /// A full custom-role quota fails the activation with the quota named, and nothing bound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gcp_a_full_role_quota_is_a_clear_error_with_nothing_bound() {
        let (fake, _dir, p) = custom_on_p1(Arc::default()).await;
        fake.set_role_quota(0);
        let cx = brevet_providers::OpContext::other();
        let e = p
            .ensure(
                &cx,
                &binding("alice", "gcp:r", "gcp.read"),
                Utc::now() + chrono::Duration::minutes(5),
            )
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(e, brevet_providers::ProviderError::Target(_)),
            "{text}"
        );
        assert!(
            text.contains("custom-role quota of projects/p1 is full")
                && text.contains("Nothing was bound"),
            "{text}"
        );
        assert_eq!(brevet_bindings(&fake), 0);
        assert!(fake.roles("projects/p1").is_empty());
    }

    /// Google's deletion rules: a role deleted within 7 days is undeleted; one purged but still
    /// embargoed ("marked for deletion", days 7–37) is never made again under its id — the set
    /// moves to the next generation — even by a Brevet that lost its own record of the role.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gcp_deleted_roles_are_undeleted_or_replaced_by_a_new_generation() {
        let (fake, _dir, p) = custom_on_p1(Arc::default()).await;
        let cx = brevet_providers::OpContext::other();
        let alice = binding("alice", "gcp:r", "gcp.read");
        p.ensure(&cx, &alice, Utc::now() + chrono::Duration::hours(1))
            .await
            .unwrap();
        let roles = fake.roles("projects/p1");
        assert_eq!(roles.len(), 1);
        let first = roles[0]["name"].as_str().unwrap().to_owned();
        p.revoke(&cx, &alice).await.unwrap();
        // Someone deletes the role; the next grant undeletes it.
        let etag = roles[0]["etag"].as_str().unwrap().to_owned();
        let r = reqwest::Client::new()
            .delete(format!("{}/v1/{first}?etag={}", fake.url, etag))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        p.ensure(&cx, &alice, fake.now() + chrono::Duration::hours(1))
            .await
            .unwrap();
        let roles = fake.roles("projects/p1");
        assert_eq!(roles.len(), 1);
        assert_ne!(roles[0]["deleted"], true, "{roles:?}");
        p.revoke(&cx, &alice).await.unwrap();
        // Deleted again and purged (8 days later): the id is embargoed, so a new provider
        // (fresh state) makes generation 2 instead.
        let etag = roles[0]["etag"].as_str().unwrap().to_owned();
        reqwest::Client::new()
            .delete(format!("{}/v1/{first}?etag={}", fake.url, etag))
            .send()
            .await
            .unwrap();
        fake.advance(chrono::Duration::days(8));
        drop(p);
        let perms = vec![
            "storage.objects.get".to_owned(),
            "storage.objects.list".to_owned(),
        ];
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(
            &fake,
            fake.write_key_file(dir.path()),
            [("r".to_owned(), GcpResource::Project("p1".into()))].into(),
            Grantable::Custom([("r".to_owned(), ("projects/p1".to_owned(), perms))].into()),
        );
        let p = GcpProvider::new("gcp", cfg, Arc::new(MemoryState::default()))
            .await
            .unwrap();
        p.ensure(&cx, &alice, fake.now() + chrono::Duration::hours(1))
            .await
            .unwrap();
        let live: Vec<String> = fake
            .roles("projects/p1")
            .iter()
            .filter(|r| r["deleted"] != true)
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(live, vec![format!("{first}_2")]);
        let policy = fake.policy("projects/p1");
        assert!(
            policy["bindings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["role"] == format!("{first}_2").as_str()),
            "{policy}"
        );
        assert_eq!(
            fake.test_permissions(
                "user:alice@example.com",
                "projects/p1",
                &["storage.objects.get"]
            ),
            vec!["storage.objects.get".to_owned()]
        );
    }
}

mod azure {
    //! Azure against the stand-in (`brevet_testkit::azure::FakeAzure`: no ARM authorization
    //! emulator exists), which its own tests check with Microsoft's Python SDK
    //! (azure-mgmt-authorization). The inspector asks the stand-in's access rule — may the
    //! principal perform the operation at the scope — and, for PIM, moves its clock to see where
    //! Azure would end the assignment.
    use std::collections::BTreeMap;

    use brevet_providers::{
        azure::{
            AzureConfig, AzureCredentials, AzureIdentity, AzureMode, AzureProfile, AzureProvider,
            CustomSet, Grants,
        },
        OpContext, Provider, ProviderError, SecretText,
    };
    use brevet_testkit::azure::{FakeAzure, TENANT_ID};
    use serde_json::json;

    use super::*;

    pub const SUB: &str = "22222222-2222-4222-8222-222222222222";
    pub const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
    pub const BOB: &str = "b0b00000-0000-4000-8000-000000000002";
    pub const BREVET: &str = "b4e4e700-0000-4000-8000-0000000000b4";
    const READ: &str = "Microsoft.Storage/storageAccounts/read";
    const BLOB_READ: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read";

    pub fn rg(name: &str) -> String {
        format!("/subscriptions/{SUB}/resourceGroups/{name}")
    }

    pub fn fake() -> FakeAzure {
        let fake = FakeAzure::start();
        fake.add_management_group("mg1", None);
        fake.add_subscription(SUB, Some("mg1"));
        fake.add_resource_group(SUB, "rg1");
        fake.add_resource_group(SUB, "rg2");
        for id in [ALICE, BOB] {
            fake.add_principal(id, "User");
        }
        fake
    }

    pub fn config(fake: &FakeAzure, mode: AzureMode, grants: Grants) -> AzureConfig {
        AzureConfig {
            tenant_id: TENANT_ID.into(),
            credentials: AzureCredentials::AccessToken(SecretText::new(FakeAzure::token_for(
                BREVET,
            ))),
            endpoint: Some(fake.url.clone()),
            profiles: [(
                ProfileName::parse("az.read").unwrap(),
                AzureProfile { mode, grants },
            )]
            .into(),
            resources: [("r".to_owned(), rg("rg1"))].into(),
            identities: [("alice", ALICE), ("bob", BOB)]
                .into_iter()
                .map(|(w, id)| {
                    (
                        w.to_owned(),
                        AzureIdentity {
                            object_id: id.into(),
                            principal_type: "User".into(),
                        },
                    )
                })
                .collect(),
        }
    }

    pub fn custom() -> Grants {
        Grants::Custom(
            [(
                "r".to_owned(),
                CustomSet {
                    actions: vec![READ.into()],
                    data_actions: vec![BLOB_READ.into()],
                },
            )]
            .into(),
        )
    }

    struct Target {
        fake: FakeAzure,
        members: BTreeMap<String, String>,
        pim: bool,
    }

    impl Target {
        fn id(&self, b: &Binding) -> &str {
            &self.members[b.principal.as_str()]
        }
    }

    #[async_trait]
    impl Inspector for Target {
        async fn present(&self, b: &Binding, _: Option<&Credential>) -> bool {
            let (c, d) = (
                self.fake.check_access(self.id(b), READ, &rg("rg1")),
                self.fake.check_access(self.id(b), BLOB_READ, &rg("rg1")),
            );
            assert_eq!(c, d, "{b} holds part of its role");
            assert!(
                !self.fake.check_access(self.id(b), READ, &rg("rg2")),
                "{b} reaches the sibling resource group"
            );
            c
        }
        async fn enforced_expiry(
            &self,
            b: &Binding,
            _: Option<&Credential>,
        ) -> Option<DateTime<Utc>> {
            if !self.pim {
                return None;
            }
            // The end PIM keeps for the assignment, confirmed by the stand-in's clock.
            let url = format!(
                "{}{}/providers/Microsoft.Authorization/roleAssignmentScheduleInstances?api-version=2020-10-01",
                self.fake.url,
                rg("rg1")
            );
            let v: serde_json::Value = reqwest::Client::new()
                .get(url)
                .bearer_auth(FakeAzure::token_for(BREVET))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let end = v["value"]
                .as_array()?
                .iter()
                .filter(|i| i["properties"]["principalId"] == self.id(b))
                .filter_map(|i| i["properties"]["endDateTime"].as_str())
                .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
                .max()?;
            let now = self.fake.now();
            self.fake.set_now(end - chrono::Duration::seconds(1));
            let before = self.fake.check_access(self.id(b), READ, &rg("rg1"));
            self.fake.set_now(now);
            // (Moving the clock past the end would make PIM remove the assignment for good.)
            before.then_some(end)
        }
        async fn credential_works(&self, _: &Credential) -> Option<bool> {
            None // the grantee's own Entra identity
        }
        async fn plant_lookalike(&self) -> String {
            // Brevet's description on an assignment Brevet did not make (its name is not
            // Brevet's derived GUID).
            self.fake
                .add_principal("c4401000-0000-4000-8000-000000000003", "User");
            self.fake.put_assignment(
                &rg("rg1"),
                "c4401000-0000-4000-8000-000000000003",
                "/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7",
                Some("brevet binding bob|azure:r|az.read"),
            )
        }
        async fn lookalike_present(&self, id: &str) -> bool {
            self.fake
                .assignments()
                .iter()
                .any(|a| a["id"].as_str().is_some_and(|x| x.eq_ignore_ascii_case(id)))
        }
    }

    async fn conformance(mode: AzureMode, grants: Grants) {
        let fake = fake();
        // One item per page: every list Brevet reads (the reconciler's, PIM's) must follow nextLink.
        fake.set_page_size(1);
        let pim = mode == AzureMode::Pim;
        let cfg = config(&fake, mode, grants);
        let members = cfg
            .identities
            .iter()
            .map(|(k, v)| (k.clone(), v.object_id.clone()))
            .collect();
        let provider: Arc<dyn Provider> = Arc::new(AzureProvider::new("azure", cfg).await.unwrap());
        let report = run(
            provider,
            Arc::new(Target { fake, members, pim }),
            Fixture {
                binding: binding("alice", "azure:r", "az.read"),
                other: binding("bob", "azure:r", "az.read"),
                input: CredentialInput::default(),
                enforces_expiry: pim,
                access_is_credential: false,
                lists_access: !pim,
            },
        )
        .await;
        assert_eq!(report.expiry_checked, pim);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn azure_custom_role_assignment_passes_the_conformance_suite() {
        conformance(AzureMode::Assignment, custom()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn azure_pim_custom_role_passes_the_conformance_suite() {
        conformance(AzureMode::Pim, custom()).await;
    }

    /// A standing assignment of the same role to the same principal is never adopted, never
    /// removed; replication delay and throttling are waited out; the custom role goes with the
    /// last assignment that uses it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn azure_leaves_standing_assignments_alone_and_waits_out_replication_and_throttling() {
        let fake = fake();
        let cfg = config(
            &fake,
            AzureMode::Assignment,
            Grants::BuiltIn((
                "Reader".into(),
                "acdd72a7-3385-48ef-bd42-f606fba81ae7".into(),
            )),
        );
        let p = AzureProvider::new("azure", cfg).await.unwrap();
        let cx = OpContext::other();
        let until = Utc::now() + chrono::Duration::minutes(10);
        let standing = fake.put_assignment(
            &rg("rg1"),
            ALICE,
            &format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"),
            Some("granted by the platform team"),
        );
        let e = p
            .ensure(&cx, &binding("alice", "azure:r", "az.read"), until)
            .await
            .unwrap_err();
        assert!(
            matches!(e, ProviderError::Target(_))
                && e.to_string()
                    .contains("neither takes it over nor removes it"),
            "{e}"
        );
        p.revoke(&cx, &binding("alice", "azure:r", "az.read"))
            .await
            .unwrap();
        assert!(
            fake.assignments()
                .iter()
                .any(|a| a["id"] == standing.as_str()),
            "the standing assignment stays"
        );
        // Bob: the directory has not replicated him yet, and ARM throttles.
        fake.replication_delay(BOB, 2);
        fake.throttle(1);
        p.ensure(&cx, &binding("bob", "azure:r", "az.read"), until)
            .await
            .unwrap();
        assert!(fake.check_access(BOB, READ, &rg("rg1")));
        let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
        assert!(
            statuses.contains(&429) && statuses.iter().filter(|s| **s == 400).count() >= 2,
            "{statuses:?}"
        );
    }

    /// The custom role is deleted with the last assignment that used it, and kept before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn azure_custom_roles_are_shared_and_deleted_with_their_last_assignment() {
        let fake = fake();
        let p = AzureProvider::new("azure", config(&fake, AzureMode::Assignment, custom()))
            .await
            .unwrap();
        let cx = OpContext::other();
        let until = Utc::now() + chrono::Duration::minutes(10);
        let (a, b) = (
            binding("alice", "azure:r", "az.read"),
            binding("bob", "azure:r", "az.read"),
        );
        p.ensure(&cx, &a, until).await.unwrap();
        p.ensure(&cx, &b, until).await.unwrap();
        assert_eq!(fake.role_definitions().len(), 1, "one role for both grants");
        p.revoke(&cx, &a).await.unwrap();
        assert_eq!(
            fake.role_definitions().len(),
            1,
            "still used by bob's assignment"
        );
        assert!(
            fake.check_access(BOB, BLOB_READ, &rg("rg1"))
                && !fake.check_access(ALICE, BLOB_READ, &rg("rg1"))
        );
        p.revoke(&cx, &b).await.unwrap();
        assert!(
            fake.role_definitions().is_empty(),
            "{:?}",
            fake.role_definitions()
        );
    }

    /// PIM: Azure itself removes the assignment at its end; a grant longer than PIM's policy
    /// allows is refused with the rule named, and nothing assigned.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn azure_pim_assignments_end_without_brevet_and_policy_refusals_are_explained() {
        let fake = fake();
        let p = AzureProvider::new("azure", config(&fake, AzureMode::Pim, custom()))
            .await
            .unwrap();
        let cx = OpContext::other();
        let a = binding("alice", "azure:r", "az.read");
        p.ensure(&cx, &a, Utc::now() + chrono::Duration::minutes(30))
            .await
            .unwrap();
        assert!(fake.check_access(ALICE, READ, &rg("rg1")));
        drop(p); // Brevet is gone
        fake.advance(chrono::Duration::minutes(31));
        assert!(!fake.check_access(ALICE, READ, &rg("rg1")));
        let p = AzureProvider::new("azure", config(&fake, AzureMode::Pim, custom()))
            .await
            .unwrap();
        fake.set_pim_max_duration(&rg("rg1"), chrono::Duration::hours(1));
        let e = p
            .ensure(
                &cx,
                &binding("bob", "azure:r", "az.read"),
                fake.now() + chrono::Duration::hours(2),
            )
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("ExpirationRule") && e.to_string().contains("ask for less time"),
            "{e}"
        );
        assert!(!fake.check_access(BOB, READ, &rg("rg1")));
    }

    /// The actions of "Brevet broker", the role docs/azure.md gives Brevet's identity.
    const BROKER_ACTIONS: [&str; 9] = [
        "Microsoft.Authorization/roleAssignments/read",
        "Microsoft.Authorization/roleAssignments/write",
        "Microsoft.Authorization/roleAssignments/delete",
        "Microsoft.Authorization/roleDefinitions/read",
        "Microsoft.Authorization/roleDefinitions/write",
        "Microsoft.Authorization/roleDefinitions/delete",
        "Microsoft.Authorization/roleAssignmentScheduleRequests/write",
        "Microsoft.Authorization/roleAssignmentScheduleRequests/read",
        "Microsoft.Authorization/roleAssignmentScheduleInstances/read",
    ];

    /// With the stand-in checking every caller, Brevet runs the suite (both modes) on exactly the
    /// role docs/azure.md documents, and is refused, with nothing assigned, without it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn azure_works_with_the_documented_least_privilege_role_and_not_without() {
        for mode in [AzureMode::Assignment, AzureMode::Pim] {
            let fake = fake();
            fake.add_principal(BREVET, "ServicePrincipal");
            let guid = "b4b4b4b4-0000-4000-8000-00000000b4b4";
            let put = reqwest::Client::new()
                .put(format!(
                    "{}/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}?api-version=2022-04-01",
                    fake.url
                ))
                .bearer_auth(FakeAzure::token_for(BREVET))
                .json(&json!({"properties": {"roleName": "Brevet broker", "type": "CustomRole",
                    "permissions": [{"actions": BROKER_ACTIONS, "notActions": [], "dataActions": [], "notDataActions": []}],
                    "assignableScopes": [format!("/subscriptions/{SUB}")]}}))
                .send()
                .await
                .unwrap();
            assert!(put.status().is_success(), "{}", put.text().await.unwrap());
            fake.enforce_callers(true);
            let cfg = config(&fake, mode.clone(), custom());
            let members = cfg
                .identities
                .iter()
                .map(|(k, v)| (k.clone(), v.object_id.clone()))
                .collect();
            let provider: Arc<dyn Provider> =
                Arc::new(AzureProvider::new("azure", cfg).await.unwrap());
            let cx = OpContext::other();
            let e = provider
                .ensure(
                    &cx,
                    &binding("alice", "azure:r", "az.read"),
                    Utc::now() + chrono::Duration::minutes(5),
                )
                .await
                .unwrap_err();
            assert!(e.to_string().contains("AuthorizationFailed"), "{e}");
            assert!(!fake.check_access(ALICE, READ, &rg("rg1")));
            fake.put_assignment(
                &format!("/subscriptions/{SUB}"),
                BREVET,
                &format!(
                    "/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
                ),
                Some("Brevet's own role"),
            );
            let pim = mode == AzureMode::Pim;
            run(
                provider,
                Arc::new(Target { fake, members, pim }),
                Fixture {
                    binding: binding("alice", "azure:r", "az.read"),
                    other: binding("bob", "azure:r", "az.read"),
                    input: CredentialInput::default(),
                    enforces_expiry: pim,
                    access_is_credential: false,
                    lists_access: !pim,
                },
            )
            .await;
        }
    }

    /// A time-bound PIM assignment an administrator made (not Brevet's request) is not Brevet's:
    /// revoking the binding leaves it, read-back does not count it, and a grant does not take
    /// it over or move its end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn azure_pim_leaves_an_administrators_time_bound_assignment_alone() {
        let fake = fake();
        let reader = format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7");
        let end = (Utc::now() + chrono::Duration::days(180))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let put = reqwest::Client::new()
            .put(format!(
                "{}{}/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/0d0d0d0d-0000-4000-8000-00000000d0d0?api-version=2020-10-01",
                fake.url,
                rg("rg1")
            ))
            .bearer_auth(FakeAzure::token_for(BREVET))
            .json(&json!({"properties": {"principalId": ALICE, "roleDefinitionId": reader, "requestType": "AdminAssign",
                "justification": "six months for the audit", "scheduleInfo": {"expiration": {"type": "AfterDateTime", "endDateTime": end}}}}))
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success(), "{}", put.text().await.unwrap());
        let cfg = config(
            &fake,
            AzureMode::Pim,
            Grants::BuiltIn((
                "Reader".into(),
                "acdd72a7-3385-48ef-bd42-f606fba81ae7".into(),
            )),
        );
        let p = AzureProvider::new("azure", cfg).await.unwrap();
        let cx = OpContext::other();
        let a = binding("alice", "azure:r", "az.read");
        p.revoke(&cx, &a).await.unwrap();
        p.verify_revoked(&cx, &a).await.unwrap();
        assert!(
            fake.check_access(ALICE, READ, &rg("rg1")),
            "the administrator's assignment stays"
        );
        let e = p
            .ensure(&cx, &a, Utc::now() + chrono::Duration::minutes(10))
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("neither takes it over nor removes it"),
            "{e}"
        );
        assert!(!fake.requests().iter().any(|r| r
            .body
            .as_ref()
            .is_some_and(|b| b["properties"]["requestType"] == "AdminUpdate"
                || b["properties"]["requestType"] == "AdminRemove")));
    }
}
