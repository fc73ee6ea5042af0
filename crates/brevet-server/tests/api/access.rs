//! The access language: every task template in `examples/access-profiles.toml` compiled for
//! every cloud against a realistic resource, held to (1) what the task needs — a hand-written list
//! of the native permissions without which the task fails — being in the compiled set, (2) the
//! compiled set being inside the precut role an administrator would otherwise grant (where that
//! role covers the task), and (3) every emitted permission existing in the catalog; the sizes go
//! into a golden comparison table that `docs/access-language.md` shows. Then the answers of
//! `/v1/catalog` and `/v1/profiles` through the HTTP API, and the config errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use axum::http::{Method, StatusCode};
use brevet_catalog::compile::{compile, CompileError, Target};
use brevet_catalog::profile::{Forbidden, ProfileSpec};
use brevet_catalog::{Catalog, Cloud};
use brevet_server::access::{compare_with, AccessLanguage, RawCatalog};
use brevet_server::testing::{InMemoryProvider, TestApp, TestConfig, TestStore};

use crate::world::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn templates() -> AccessLanguage {
    let raw = RawCatalog {
        profiles: vec![repo().join("examples/access-profiles.toml")],
        ..Default::default()
    };
    AccessLanguage::load(&raw, &BTreeMap::new(), Path::new(".")).expect("the templates load")
}

/// One template on one cloud: the resource, what the task cannot do without, and the precut
/// role an administrator would otherwise grant.
struct Case {
    profile: &'static str,
    target: Target,
    needs: &'static [&'static str],
    precut: &'static str,
}

fn aws(
    profile: &'static str,
    arns: &[&str],
    needs: &'static [&'static str],
    precut: &'static str,
) -> Case {
    Case {
        profile,
        target: Target::Aws {
            arns: arns.iter().map(|a| a.to_string()).collect(),
        },
        needs,
        precut,
    }
}

fn gcp(profile: &'static str, needs: &'static [&'static str], precut: &'static str) -> Case {
    Case {
        profile,
        target: Target::Gcp {
            scope: "projects/orders-prod".into(),
            resource: None,
        },
        needs,
        precut,
    }
}

fn azure(
    profile: &'static str,
    scope: &str,
    needs: &'static [&'static str],
    precut: &'static str,
) -> Case {
    Case {
        profile,
        target: Target::Azure {
            scope: scope.into(),
        },
        needs,
        precut,
    }
}

const RG: &str = "/subscriptions/3f2c1b9e-0000-4000-8000-000000000001/resourceGroups/orders";

fn cases() -> Vec<Case> {
    vec![
        aws("storage.read", &["arn:aws:s3:::prod-logs", "arn:aws:s3:::prod-logs/*"], &["s3:GetObject", "s3:ListBucket"], "AmazonS3ReadOnlyAccess"),
        gcp("storage.read", &["storage.objects.get", "storage.objects.list"], "roles/storage.objectViewer"),
        azure("storage.read", &format!("{RG}/providers/Microsoft.Storage/storageAccounts/ordersdata/blobServices/default/containers/logs"), &["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"], "Storage Blob Data Reader"),
        aws("db.patch", &["arn:aws:rds:eu-west-1:123456789012:db:orders-prod"], &["rds:ApplyPendingMaintenanceAction", "rds:RebootDBInstance", "rds:DescribeDBInstances", "rds:DescribePendingMaintenanceActions"], "AmazonRDSFullAccess"),
        gcp("db.patch", &["cloudsql.instances.get", "cloudsql.instances.update", "cloudsql.instances.restart"], "roles/cloudsql.editor"),
        azure("db.patch", &format!("{RG}/providers/Microsoft.Sql/servers/orders/databases/orders"), &["Microsoft.Sql/servers/databases/read", "Microsoft.Sql/servers/databases/write"], "SQL DB Contributor"),
        aws("logs.read", &["arn:aws:logs:eu-west-1:123456789012:log-group:/app/orders", "arn:aws:logs:eu-west-1:123456789012:log-group:/app/orders:log-stream:*"], &["logs:FilterLogEvents", "logs:GetLogEvents"], "CloudWatchLogsReadOnlyAccess"),
        gcp("logs.read", &["logging.logEntries.list"], "roles/logging.admin"),
        azure("logs.read", &format!("{RG}/providers/Microsoft.OperationalInsights/workspaces/orders"), &["Microsoft.OperationalInsights/workspaces/query/read"], "Log Analytics Reader"),
        aws("vm.restart", &["arn:aws:ec2:eu-west-1:123456789012:instance/i-0abc1234def567890"], &["ec2:RebootInstances", "ec2:StartInstances", "ec2:StopInstances", "ec2:DescribeInstances"], "AmazonEC2FullAccess"),
        gcp("vm.restart", &["compute.instances.get", "compute.instances.reset", "compute.instances.start", "compute.instances.stop"], "roles/compute.instanceAdmin.v1"),
        azure("vm.restart", &format!("{RG}/providers/Microsoft.Compute/virtualMachines/orders-1"), &["Microsoft.Compute/virtualMachines/read", "Microsoft.Compute/virtualMachines/restart/action", "Microsoft.Compute/virtualMachines/start/action"], "Virtual Machine Contributor"),
        aws("secret.read", &["arn:aws:secretsmanager:eu-west-1:123456789012:secret:orders/db-AbCdEf"], &["secretsmanager:GetSecretValue"], "SecretsManagerReadWrite"),
        gcp("secret.read", &["secretmanager.versions.access"], "roles/secretmanager.secretAccessor"),
        azure("secret.read", &format!("{RG}/providers/Microsoft.KeyVault/vaults/orders/secrets/db"), &["Microsoft.KeyVault/vaults/secrets/getSecret/action"], "Key Vault Secrets User"),
        aws("secret.rotate", &["arn:aws:secretsmanager:eu-west-1:123456789012:secret:orders/db-AbCdEf"], &["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"], "SecretsManagerReadWrite"),
        gcp("secret.rotate", &["secretmanager.versions.access", "secretmanager.versions.add"], "roles/secretmanager.admin"),
        azure("secret.rotate", &format!("{RG}/providers/Microsoft.KeyVault/vaults/orders/secrets/db"), &["Microsoft.KeyVault/vaults/secrets/getSecret/action", "Microsoft.KeyVault/vaults/secrets/setSecret/action"], "Key Vault Secrets Officer"),
        aws("k8s.deploy", &["arn:aws:eks:eu-west-1:123456789012:cluster/prod"], &["eks:AccessKubernetesApi", "eks:DescribeCluster"], "AmazonEKSMCPReadOnlyAccess"),
        gcp("k8s.deploy", &["container.deployments.get", "container.deployments.update", "container.clusters.get"], "roles/container.developer"),
        azure("k8s.deploy", &format!("{RG}/providers/Microsoft.ContainerService/managedClusters/prod"), &["Microsoft.ContainerService/managedClusters/apps/deployments/read"], "Azure Kubernetes Service RBAC Writer"),
        Case {
            profile: "helpdesk.password-reset",
            target: Target::Okta {
                resources: vec!["groups/00g1seattle".into()],
            },
            needs: &["okta.users.credentials.resetPassword", "okta.users.read"],
            precut: "HELP_DESK_ADMIN",
        },
    ]
}

/// The names a native document grants, read back out of it (not from the compiler's list).
fn document_names(cloud: Cloud, doc: &serde_json::Value) -> Vec<String> {
    let strings = |v: &serde_json::Value| -> Vec<String> {
        match v {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    };
    match cloud {
        Cloud::Aws => doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| strings(&s["Action"]))
            .collect(),
        Cloud::Gcp => strings(&doc["role"]["includedPermissions"]),
        Cloud::Azure => [strings(&doc["Actions"]), strings(&doc["DataActions"])].concat(),
        Cloud::Okta => strings(&doc["role"]["permissions"]),
    }
}

#[test]
fn every_template_compiles_to_less_than_the_precut_role_and_enough_for_the_task() {
    let lang = templates();
    let held = lang.catalog.get();
    let catalog: &Catalog = &held;
    let mut table = String::from(
        "| template | cloud | compiled | precut role | precut size | ratio | compiled ⊆ precut |\n|---|---|---:|---|---:|---:|---|\n",
    );
    let mut failures = Vec::new();
    for case in cases() {
        let profile = lang.profile(case.profile).expect("a template");
        let cloud = case.target.cloud();
        let compiled = compile(catalog, profile, &case.target, Forbidden::default())
            .unwrap_or_else(|e| panic!("{} for {cloud}: {e}", case.profile));
        let names = compiled.names(catalog);
        // Every emitted permission is in the catalog, as the document spells it.
        for n in document_names(cloud, &compiled.document) {
            if catalog.permission(cloud, &n).is_none() {
                failures.push(format!(
                    "{} {cloud}: `{n}` is not in the catalog",
                    case.profile
                ));
            }
        }
        for need in case.needs {
            assert!(
                catalog.permission(cloud, need).is_some(),
                "the test's own list names `{need}`, which the {cloud} catalog lacks"
            );
            if !names.iter().any(|n| n.eq_ignore_ascii_case(need)) {
                failures.push(format!(
                    "{} {cloud}: misses `{need}` the task needs (has {names:?})",
                    case.profile
                ));
            }
        }
        let cmp = compare_with(catalog, cloud, case.precut, &compiled.permissions)
            .unwrap_or_else(|| panic!("no precut role `{}` in the {cloud} catalog", case.precut));
        // Azure's catalog holds only the data actions some built-in role names (see
        // docs/access-language.md), so the Kubernetes writer's `deployments/*` cannot be checked
        // for write here; everywhere else the precut role must hold all of the compiled set.
        if !cmp.covers {
            let outside: Vec<&str> = compiled
                .permissions
                .iter()
                .filter(|p| {
                    catalog
                        .role(cloud, case.precut)
                        .unwrap()
                        .permissions
                        .binary_search(p)
                        .is_err()
                })
                .map(|&p| catalog.permissions()[p as usize].name.as_str())
                .collect();
            failures.push(format!(
                "{} {cloud}: not inside {}: {outside:?}",
                case.profile, case.precut
            ));
        }
        table += &format!(
            "| {} | {cloud} | {} | {} | {} | {:.1}x | {} |\n",
            case.profile,
            cmp.compiled_size,
            // AWS: the policy's name; GCP: `roles/…`; Azure: the role's name.
            if cloud == Cloud::Aws {
                &cmp.title
            } else {
                &cmp.role
            },
            cmp.role_size,
            cmp.role_size as f64 / cmp.compiled_size as f64,
            if cmp.covers { "yes" } else { "no" },
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let golden =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/golden/access-comparison.md");
    if std::env::var_os("BREVET_BLESS").is_some() {
        std::fs::write(&golden, &table).unwrap();
    }
    let want =
        std::fs::read_to_string(&golden).expect("the golden table (BREVET_BLESS=1 writes it)");
    assert_eq!(
        table, want,
        "the comparison changed; check it, then BREVET_BLESS=1 to accept"
    );
    let docs = std::fs::read_to_string(repo().join("docs/access-language.md")).unwrap();
    assert!(
        docs.contains(&want),
        "docs/access-language.md must show the golden table as it is"
    );
}

fn spec(text: &str) -> BTreeMap<String, ProfileSpec> {
    #[derive(serde::Deserialize)]
    struct File {
        access: BTreeMap<String, ProfileSpec>,
    }
    toml::from_str::<File>(text).expect("test TOML").access
}

fn load_error(text: &str, raw: RawCatalog) -> String {
    AccessLanguage::load(&raw, &spec(text), Path::new("."))
        .expect_err("the config is refused")
        .to_string()
}

#[test]
fn bad_profiles_are_refused_with_the_name_and_the_fix() {
    let cases = [
        (
            "[access.x]\nkind = \"objet-storage\"\nverbs = [\"read\"]",
            ["access.\"x\"", "unknown resource kind `objet-storage`", "object-storage"].as_slice(),
        ),
        (
            "[access.x]\nkind = \"object-storage\"\nverbs = [\"read\"]\nplane = \"data\"\naws.add = [\"s3:GetObjekt\"]",
            &["access.\"x\".aws.add[0]", "`s3:GetObjekt` is not in the aws permission catalog", "did you mean `s3:GetObject`"],
        ),
        (
            "[access.x]\nkind = \"object-storage\"\nverbs = [\"read\"]\nplane = \"data\"\ngcp.remove = [\"storage.objects.frobnicate*\"]",
            &["access.\"x\".gcp.remove[0]", "wildcard `storage.objects.frobnicate*` matches no gcp permission"],
        ),
        (
            "[access.x]\nkind = \"object-storage\"\nverbs = [\"raed\"]",
            &["unknown verb `raed`", "list, read, write, delete, tag, admin"],
        ),
        (
            "[access.x]\nkind = \"object-storage\"\nverbs = [\"read\"]",
            &["has a data plane", "plane = \"data\""],
        ),
        (
            "[access.x]\nkind = \"secret\"\nverbs = [\"read\"]\nplane = \"data\"\nazure.add = [\"Microsoft.KeyVault/vaults/secrets/getSecret/actoin\"]",
            &["access.\"x\".azure.add[0]", "getSecret/actoin"],
        ),
    ];
    for (text, wanted) in cases {
        let err = load_error(text, RawCatalog::default());
        for w in wanted {
            assert!(err.contains(w), "expected `{w}` in: {err}");
        }
    }
    // Azure refuses data actions in a role definition assignable at a management group: a
    // profile that says it will be assignable there is refused at start.
    let err = load_error(
        "[access.x]\nkind = \"object-storage\"\nverbs = [\"read\"]\nplane = \"data\"\nazure.assignable_scopes = [\"/providers/Microsoft.Management/managementGroups/finance\"]",
        RawCatalog::default(),
    );
    assert!(
        err.contains("access.\"x\".azure.assignable_scopes")
            && err.contains("is a data action")
            && err.contains("managementGroups/finance"),
        "{err}"
    );
    let err = load_error(
        "[access.x]\nkind = \"object-storage\"\nverbs = [\"read\"]\nplane = \"data\"\naws.assignable_scopes = [\"/\"]",
        RawCatalog::default(),
    );
    assert!(err.contains("`aws.assignable_scopes` is Azure's"), "{err}");
    // The same scope is fine for a control-plane profile, and the role definition lists it.
    let lang = AccessLanguage::load(
        &RawCatalog::default(),
        &spec("[access.ops]\nkind = \"compute-instance\"\nverbs = [\"read\"]\nplane = \"control\"\nazure.assignable_scopes = [\"/providers/Microsoft.Management/managementGroups/finance\"]"),
        Path::new("."),
    )
    .unwrap();
    let c = lang
        .compile(
            "ops",
            &[format!(
                "{RG}/providers/Microsoft.Compute/virtualMachines/vm1"
            )],
        )
        .unwrap();
    assert_eq!(
        c.document["AssignableScopes"][1],
        "/providers/Microsoft.Management/managementGroups/finance"
    );

    // A deployment that forbids escalation refuses a profile that would hand it out.
    let err = load_error(
        "[access.x]\nkind = \"compute-instance\"\nverbs = [\"read\"]\nplane = \"control\"\naws.add = [\"iam:PassRole\"]",
        RawCatalog {
            forbid: vec!["privilege-escalation".into()],
            ..Default::default()
        },
    );
    assert!(
        err.contains("`iam:PassRole` is tagged privilege-escalation"),
        "{err}"
    );
    let err = load_error(
        "[access.x]\nkind = \"secret\"\nverbs = [\"read\"]\nplane = \"data\"",
        RawCatalog {
            forbid: vec!["privilege-escalaton".into()],
            ..Default::default()
        },
    );
    assert!(
        err.contains("catalog.forbid[0]") && err.contains("unknown tag"),
        "{err}"
    );
}

/// `brevet profile … --config` in CI reads only `[catalog]` and `[access]`: a deployment's
/// config whose secrets and policy files are not there still answers.
#[test]
fn the_access_language_loads_from_a_config_without_its_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("examples/access-profiles.toml"),
        dir.path().join("access-profiles.toml"),
    )
    .unwrap();
    let config = dir.path().join("brevet.toml");
    std::fs::write(
        &config,
        "[store]\nurl = { env = \"BREVET_NOT_SET_IN_CI\" }\n[policy]\nfiles = [\"missing.cedar\"]\n\
         [catalog]\nprofiles = [\"access-profiles.toml\"]\n\
         [access.extra]\nkind = \"secret\"\nverbs = [\"read\"]\nplane = \"data\"\n",
    )
    .unwrap();
    let lang = AccessLanguage::from_config_file(&config).unwrap();
    assert!(lang.profile("storage.read").is_ok() && lang.profile("extra").is_ok());
    std::fs::write(&config, "[access.x]\nkind = \"nope\"\n").unwrap();
    let err = AccessLanguage::from_config_file(&config)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown resource kind `nope`"), "{err}");
}

#[test]
fn placement_rules_of_each_cloud_are_enforced() {
    let lang = AccessLanguage::load(
        &RawCatalog::default(),
        &spec(
            "[access.blob]\nkind = \"object-storage\"\nverbs = [\"read\"]\nplane = \"data\"\n\
             [access.org]\nkind = \"object-storage\"\nverbs = [\"read\"]\nplane = \"data\"\ngcp.add = [\"resourcemanager.organizations.get\"]",
        ),
        Path::new("."),
    )
    .unwrap();
    // Azure forbids data actions in a role assignable at a management group.
    let err = lang
        .compile(
            "blob",
            &["/providers/Microsoft.Management/managementGroups/finance".into()],
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is a data action") && err.contains("managementGroups/finance"),
        "{err}"
    );
    // The same profile is fine at a subscription.
    let ok = lang
        .compile(
            "blob",
            &[format!(
                "{RG}/providers/Microsoft.Storage/storageAccounts/a"
            )],
        )
        .unwrap();
    assert_eq!(
        ok.document["DataActions"][0],
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"
    );
    // An organization-level permission cannot go into a project's custom role …
    let err = lang
        .compile("org", &["projects/p".into()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "`resourcemanager.organizations.get` can only be granted at the organization level"
        ),
        "{err}"
    );
    // … but can into the organization's.
    assert!(lang.compile("org", &["organizations/123".into()]).is_ok());
    // A GCP binding limited to one bucket does not reach a bucket whose name starts the same.
    let c = lang
        .compile(
            "blob",
            &["projects/p".into(), "projects/_/buckets/logs".into()],
        )
        .unwrap();
    assert_eq!(
        c.document["binding"]["condition"]["expression"],
        "resource.name == \"projects/_/buckets/logs\" || resource.name.startsWith(\"projects/_/buckets/logs/\")"
    );
    // An Okta role must be bound to named groups or users, never the whole org.
    let helpdesk = templates();
    for bad in ["okta:users", "okta:*", "okta:", "okta:groups/"] {
        let err = helpdesk
            .compile("helpdesk.password-reset", &[bad.into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("okta:groups/ID or okta:users/ID"),
            "{bad}: {err}"
        );
    }
    assert!(helpdesk
        .compile(
            "helpdesk.password-reset",
            &["okta:groups/00g1seattle".into()]
        )
        .is_ok());
    // GCP keeps custom roles in projects and organizations only.
    let err = lang
        .compile("blob", &["folders/123".into()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`folders/123`") && err.contains("projects/ID"),
        "{err}"
    );
    // An action whose resource type none of the ARNs is of.
    let lang = AccessLanguage::load(
        &RawCatalog::default(),
        &spec("[access.put]\nkind = \"object-storage\"\nverbs = [\"list\"]\nplane = \"data\"\naws.add = [\"s3:PutObject\"]"),
        Path::new("."),
    )
    .unwrap();
    let err = lang
        .compile("put", &["arn:aws:s3:::logs".into()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`s3:PutObject` acts on")
            && err.contains("`object` (arn:${Partition}:s3:::${BucketName}/${ObjectName})")
            && err.contains("(arn:aws:s3:::logs)"),
        "{err}"
    );
    // With the object ARN it compiles, the write scoped to objects and the listing to the bucket.
    let c = lang
        .compile(
            "put",
            &["arn:aws:s3:::logs".into(), "arn:aws:s3:::logs/*".into()],
        )
        .unwrap();
    let statements = c.document["Statement"].as_array().unwrap();
    let on = |action: &str| {
        statements
            .iter()
            .find(|s| s["Action"].as_array().unwrap().iter().any(|a| a == action))
            .map(|s| s["Resource"].clone())
            .unwrap()
    };
    assert_eq!(
        on("s3:PutObject"),
        serde_json::json!(["arn:aws:s3:::logs/*"])
    );
    assert_eq!(
        on("s3:ListBucket"),
        serde_json::json!(["arn:aws:s3:::logs"])
    );
    // A resource that names no cloud.
    let err = lang
        .compile("put", &["s3://logs".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("names no cloud resource"), "{err}");
    assert!(matches!(
        compile(
            &lang.catalog.get(),
            lang.profile("put").unwrap(),
            &Target::Gcp {
                scope: "buckets/x".into(),
                resource: None
            },
            Forbidden::default()
        ),
        Err(CompileError::BadScope { .. })
    ));
}

#[test]
fn search_ranks_the_name_first_and_forgives_typos() {
    let lang = templates();
    let first =
        |q: &str, cloud: Option<&str>| lang.search(q, cloud, None, 5).unwrap()[0].name.clone();
    assert_eq!(first("s3:GetObject", None), "s3:GetObject");
    assert_eq!(first("s3 getobject", None), "s3:GetObject");
    assert_eq!(
        first("storage objects get", Some("gcp")),
        "storage.objects.get"
    );
    assert_eq!(
        first("storag objcts get", Some("gcp")),
        "storage.objects.get"
    );
    assert_eq!(
        first("secretsmanager getsecretvalue", None),
        "secretsmanager:GetSecretValue"
    );
    assert_eq!(
        first("storage object viewer", Some("gcp")),
        "roles/storage.objectViewer"
    );
    let hits = lang.search("iam passrole", Some("aws"), None, 3).unwrap();
    assert_eq!(hits[0].name, "iam:PassRole");
    assert!(
        hits[0].tags.contains(&"privilege-escalation".to_string()),
        "{:?}",
        hits[0]
    );
    // The access filter keeps only that level.
    let reads = lang
        .search("s3 object", Some("aws"), Some("write"), 20)
        .unwrap();
    assert!(
        !reads.is_empty() && reads.iter().all(|h| h.detail == "Write"),
        "{reads:?}"
    );
    assert!(lang.search("s3", Some("mars"), None, 5).is_err());
    assert!(lang.search("s3", None, Some("sometimes"), 5).is_err());
    assert!(lang.search("zzzqqqxxx", None, None, 5).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_catalog_and_profile_questions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("examples/access-profiles.toml"),
        dir.path().join("access-profiles.toml"),
    )
    .unwrap();
    let config = TestConfig::new(POLICY)
        .principal("alice", &["dba"], &["requester"], ALICE)
        .provider(
            "mem",
            std::sync::Arc::new(InMemoryProvider::with_profiles(&["db.read"])),
        )
        .resource(ORDERS)
        .toml(&format!(
            "[catalog]\nprofiles = [{:?}]\n",
            dir.path().join("access-profiles.toml")
        ));
    let app = TestApp::start(config, TestStore::Sqlite).await.unwrap();
    let (status, body) = app
        .call(
            Method::GET,
            "/v1/catalog/search?q=blob%20read&cloud=azure&limit=3",
            Some(ALICE),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hits: Vec<brevet_wire::CatalogHit> = serde_json::from_str(&body).unwrap();
    assert!(
        hits.iter()
            .any(|h| h.name
                == "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"),
        "{hits:?}"
    );
    let (status, body) = app
        .call(
            Method::GET,
            "/v1/catalog/entries/roles%2Fstorage.objectViewer",
            Some(ALICE),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let entry: brevet_wire::CatalogEntry = serde_json::from_str(&body).unwrap();
    assert!(
        matches!(entry, brevet_wire::CatalogEntry::Role(ref r) if r.size == 8),
        "{entry:?}"
    );
    let (status, body) = app
        .call(
            Method::GET,
            "/v1/catalog/entries/s3:GetObjekt",
            Some(ALICE),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("brevet catalog search"), "{body}");
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/profiles/storage.read/compile",
            Some(ALICE),
            r#"{"resource":["arn:aws:s3:::prod-logs","arn:aws:s3:::prod-logs/*"]}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let c: brevet_wire::CompiledProfile = serde_json::from_str(&body).unwrap();
    assert!(
        c.permissions.contains(&"s3:GetObject".to_string())
            && c.document["Version"] == "2012-10-17"
    );
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/profiles/storage.read/compile",
            Some(ALICE),
            r#"{"resource":["/providers/Microsoft.Management/managementGroups/x"]}"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("is a data action"), "{body}");
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/profiles/storage.read/compile",
            Some(ALICE),
            r#"{"resource":[],"extra":1}"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = app
        .call(Method::GET, "/v1/profiles/nope/explain", Some(ALICE), "")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body.contains("storage.read"),
        "the known profiles are named: {body}"
    );
    let (status, body) = app
        .call(
            Method::GET,
            "/v1/profiles/secret.read/explain",
            Some(ALICE),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let e: brevet_wire::ProfileExplanation = serde_json::from_str(&body).unwrap();
    assert_eq!(e.clouds.len(), 3, "{e:?}");
    assert!(e.clouds.iter().all(|c| c.compiled.is_some()), "{e:?}");
}

/// The server gives the decoded catalog back when nothing uses it (at once after start, then
/// after `[catalog] unload_after`), never from under a user, and decodes it again on the next
/// search. On a snapshot file, so the handle is this test's own (the built-in one is shared by
/// every test in this binary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unused_catalog_is_released_and_decoded_again_on_use() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("catalog.bin");
    std::fs::write(&file, Catalog::embedded().unwrap().snapshot().encode()).unwrap();
    let raw = RawCatalog {
        file: Some(file),
        profiles: vec![repo().join("examples/access-profiles.toml")],
        ..Default::default()
    };
    let lang = AccessLanguage::load(&raw, &BTreeMap::new(), Path::new(".")).unwrap();
    assert_eq!(lang.unload_after, Some(std::time::Duration::from_secs(60)));
    assert!(
        lang.catalog.is_decoded(),
        "decoded at load, to check the profiles"
    );
    let after = std::time::Duration::from_millis(2500);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = brevet_server::access::spawn_release(lang.catalog.clone(), after, stop);
    let wait_until = |what: &'static str, want: bool, within: std::time::Duration| {
        let catalog = lang.catalog.clone();
        async move {
            let deadline = tokio::time::Instant::now() + within;
            while catalog.is_decoded() != want {
                assert!(tokio::time::Instant::now() < deadline, "{what}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    // At once: well before `unload_after` has passed.
    wait_until(
        "released at once after start",
        false,
        std::time::Duration::from_millis(1500),
    )
    .await;
    assert_eq!(lang.catalog.decodes(), 1);

    // A search decodes it again and answers as before.
    let hits = lang.search("s3 get object", None, None, 5).unwrap();
    assert!(hits.iter().any(|h| h.name == "s3:GetObject"), "{hits:?}");
    assert_eq!(lang.catalog.decodes(), 2);
    assert!(lang.catalog.is_decoded());

    // Held by a user past `unload_after`: the handle lets go, the user keeps a whole catalog.
    let held = lang.catalog.get();
    tokio::time::sleep(after + std::time::Duration::from_millis(1500)).await;
    // The handle has let go by now, but the one in use is handed out again, not decoded anew.
    let again = lang.catalog.get();
    assert!(
        std::sync::Arc::ptr_eq(&held, &again),
        "a second copy was decoded while the first was in use"
    );
    assert_eq!(lang.catalog.decodes(), 2);
    drop((held, again));
    // Not asked for again, so the release task lets go of it after `unload_after`.
    wait_until(
        "released once its last user is done",
        false,
        std::time::Duration::from_secs(10),
    )
    .await;
    let compiled = lang
        .compile("storage.read", &["arn:aws:s3:::logs".into()])
        .unwrap();
    assert!(!compiled.permissions.is_empty());
    assert_eq!(lang.catalog.decodes(), 3);

    stop_tx.send(true).unwrap();
    task.await.unwrap();
}

#[test]
fn a_bad_unload_after_is_refused_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    for (value, says) in [("\"soon\"", "soon"), ("\"0s\"", "\"off\"")] {
        let path = dir.path().join("brevet.toml");
        std::fs::write(&path, format!("[catalog]\nunload_after = {value}\n")).unwrap();
        let err = AccessLanguage::from_config_file(&path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unload_after") && err.contains(says),
            "{value}: {err}"
        );
    }
    let path = dir.path().join("off.toml");
    std::fs::write(&path, "[catalog]\nunload_after = \"off\"\n").unwrap();
    let lang = AccessLanguage::from_config_file(&path).unwrap();
    assert_eq!(lang.unload_after, None);
}
