//! `brevet catalog` and `brevet profile` as a user runs them: offline from the built-in catalog,
//! offline from a config (for CI), and through a running server — the same answers each way.

use crate::common::*;

/// Runs a command with no server and no token in its environment.
fn offline(cmd: Cmd) -> std::process::Output {
    cmd.command()
        .env_remove("BREVET_URL")
        .env_remove("BREVET_TOKEN")
        .output()
        .unwrap()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

const PROD_LOGS: [&str; 2] = ["arn:aws:s3:::prod-logs", "arn:aws:s3:::prod-logs/*"];

#[test]
fn catalog_and_profiles_offline_and_through_the_server() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let quickstart = examples.join("quickstart.toml");

    // With no server and no config: the built-in catalog.
    let hits = json(&offline(
        Cmd::catalog_search("storag objcts get")
            .cloud("gcp")
            .offline()
            .json_output(),
    ));
    assert_eq!(hits[0]["name"], "storage.objects.get", "{hits:#}");
    let text = stdout(&offline(Cmd::catalog_show("iam:PassRole").offline()));
    assert!(
        text.contains("sensitive: privilege-escalation") && text.contains("held by"),
        "{text}"
    );
    let out = offline(Cmd::catalog_show("s3:GetObjekt").offline());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("brevet catalog search"),
        "{}",
        stderr(&out)
    );
    let out = offline(Cmd::profile_explain("storage.read").offline());
    assert!(
        !out.status.success() && stderr(&out).contains("pass --config"),
        "{}",
        stderr(&out)
    );

    // From the quickstart config (its templates): compile, and explain.
    let aws = json(&offline(
        Cmd::profile_compile("storage.read", &PROD_LOGS)
            .config(&quickstart)
            .json_output(),
    ));
    assert_eq!(aws["document"]["Version"], "2012-10-17", "{aws:#}");
    let perms: Vec<&str> = aws["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(perms.contains(&"s3:GetObject") && !perms.iter().any(|p| p.starts_with("s3:Put")));
    let out = offline(
        Cmd::profile_compile(
            "storage.read",
            &["/providers/Microsoft.Management/managementGroups/finance"],
        )
        .config(&quickstart),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is a data action"),
        "{}",
        stderr(&out)
    );
    let explained = stdout(&offline(
        Cmd::profile_explain("vm.restart").config(&quickstart),
    ));
    assert!(
        explained.contains("compute.instances.reset")
            && explained.contains("the smallest precut role that covers it"),
        "{explained}"
    );

    // Through a server whose config loads the same templates: the same compiled document.
    let world = World::new(StoreKind::Sqlite).set(
        "catalog.profiles",
        toml::Value::Array(vec![examples
            .join("access-profiles.toml")
            .to_str()
            .unwrap()
            .into()]),
    );
    let server = world.start();
    let through = server.json(ALICE, Cmd::profile_compile("storage.read", &PROD_LOGS));
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
