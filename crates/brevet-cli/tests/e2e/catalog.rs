//! `brevet catalog` and `brevet profile` as a user runs them: offline from the built-in catalog,
//! offline from a config (for CI), and through a running server — the same answers each way.

use crate::common::*;

fn offline(args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .env_remove("BREVET_URL")
        .env_remove("BREVET_TOKEN")
        .output()
        .unwrap()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

#[test]
fn catalog_and_profiles_offline_and_through_the_server() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let quickstart = examples.join("quickstart.toml");
    let quickstart = quickstart.to_str().unwrap();

    // With no server and no config: the built-in catalog.
    let hits = json(&offline(&[
        "--json",
        "catalog",
        "search",
        "storag",
        "objcts",
        "get",
        "--cloud",
        "gcp",
        "--offline",
    ]));
    assert_eq!(hits[0]["name"], "storage.objects.get", "{hits:#}");
    let text = stdout(&offline(&["catalog", "show", "iam:PassRole", "--offline"]));
    assert!(
        text.contains("sensitive: privilege-escalation") && text.contains("held by"),
        "{text}"
    );
    let out = offline(&["catalog", "show", "s3:GetObjekt", "--offline"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("brevet catalog search"),
        "{}",
        stderr(&out)
    );
    let out = offline(&["profile", "explain", "storage.read", "--offline"]);
    assert!(
        !out.status.success() && stderr(&out).contains("pass --config"),
        "{}",
        stderr(&out)
    );

    // From the quickstart config (its templates): compile for each cloud, and explain.
    let aws = json(&offline(&[
        "--json",
        "profile",
        "compile",
        "storage.read",
        "--config",
        quickstart,
        "--resource",
        "arn:aws:s3:::prod-logs",
        "--resource",
        "arn:aws:s3:::prod-logs/*",
    ]));
    assert_eq!(aws["document"]["Version"], "2012-10-17", "{aws:#}");
    let perms: Vec<&str> = aws["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(perms.contains(&"s3:GetObject") && !perms.iter().any(|p| p.starts_with("s3:Put")));
    let out = offline(&[
        "profile",
        "compile",
        "storage.read",
        "--config",
        quickstart,
        "--resource",
        "/providers/Microsoft.Management/managementGroups/finance",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is a data action"),
        "{}",
        stderr(&out)
    );
    let explained = stdout(&offline(&[
        "profile",
        "explain",
        "vm.restart",
        "--config",
        quickstart,
    ]));
    assert!(
        explained.contains("compute.instances.reset")
            && explained.contains("the smallest precut role that covers it"),
        "{explained}"
    );

    // Through a server whose config loads the same templates: the same compiled document.
    let world = World::new(StoreKind::Sqlite).with(&format!(
        "[catalog]\nprofiles = [{:?}]\n",
        examples.join("access-profiles.toml")
    ));
    let server = world.start();
    let through = server.json(
        ALICE,
        Cmd::profile_compile(
            "storage.read",
            &["arn:aws:s3:::prod-logs", "arn:aws:s3:::prod-logs/*"],
        ),
    );
    assert_eq!(through["document"], aws["document"]);
    let hits = server.json(ALICE, Cmd::catalog_search("blob read").cloud("azure"));
    assert!(
        hits.as_array()
            .unwrap()
            .iter()
            .any(|h| h["name"]
                == "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"),
        "{hits:#}"
    );
    let out = server.run(ALICE, Cmd::profile_explain("nope"));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown access profile `nope`"),
        "{}",
        stderr(&out)
    );
}
