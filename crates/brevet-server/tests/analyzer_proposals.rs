//! The identity analyzer's proposed replacements are "ready to paste": for each cloud's
//! fixture, every proposed profile, identity, resource and Cedar policy, added to a config that
//! has the provider tables and the principals, loads with the server's own config loader and
//! policy validation — the same check `brevet server` makes at start.

use std::path::{Path, PathBuf};

use brevet_analyzer::{aws, azure, gcp, Input, Options, Report};
use brevet_catalog::Catalog;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../brevet-analyzer/tests/fixtures")
}

fn input(path: &Path) -> Input<'static> {
    Input::new(
        path.display().to_string(),
        std::fs::File::open(path).unwrap(),
    )
}

/// The Brevet principal ids the proposal's identity tables name.
fn identities(config: &str) -> Vec<String> {
    let v: toml::Value = toml::from_str(config)
        .unwrap_or_else(|e| panic!("proposed config is not TOML: {e}\n{config}"));
    let mut out = Vec::new();
    for (_, p) in v
        .get("providers")
        .and_then(|p| p.as_table())
        .into_iter()
        .flatten()
    {
        for (id, _) in p
            .get("identities")
            .and_then(|i| i.as_table())
            .into_iter()
            .flatten()
        {
            out.push(id.clone());
        }
    }
    out
}

fn loads(report: &Report, provider: &str) {
    assert!(!report.proposed_config.is_empty(), "no proposals to check");
    let live_profiles = report
        .proposed_config
        .lines()
        .filter(|l| l.starts_with("[providers.") && l.contains(".profiles."))
        .count();
    assert!(
        live_profiles >= 2,
        "too few profiles outside comments:\n{}",
        report.proposed_config
    );
    assert!(
        report.proposed_cedar.matches("permit (").count() >= 2,
        "{}",
        report.proposed_cedar
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jit.cedar"), &report.proposed_cedar).unwrap();
    let mut text = format!("[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\nurl = \"sqlite://{}\"\n\n[policy]\nfiles = [\"jit.cedar\"]\n\n", dir.path().join("s.db").display());
    for id in identities(&report.proposed_config) {
        text.push_str(&format!(
            "[[principals]]\nid = {id:?}\nroles = [\"requester\"]\n\n"
        ));
    }
    text.push_str(provider);
    text.push('\n');
    text.push_str(&report.proposed_config);
    let path = dir.path().join("brevet.toml");
    std::fs::write(&path, &text).unwrap();
    if let Err(e) = brevet_server::Config::load(&path) {
        panic!("the proposals do not load: {e}\n---\n{text}");
    }
}

#[test]
fn aws_proposals_load() {
    let catalog = Catalog::embedded().unwrap();
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/fixtures/aws-authz/cloudsplaining-example.json");
    let r = aws::analyze(
        &catalog,
        aws::AwsInputs {
            exports: vec![input(&file)],
            ..Default::default()
        },
        &Options::default(),
    )
    .unwrap();
    assert!(r.standing.iter().filter(|s| s.proposal.is_some()).count() > 10);
    loads(
        &r,
        "[providers.aws]\nkind = \"aws\"\nregion = \"us-east-1\"\nallow_wildcards = true\n",
    );
}

#[test]
fn gcp_proposals_load() {
    let catalog = Catalog::embedded().unwrap();
    let f = fixtures().join("gcp");
    let inputs = vec![
        gcp::GcpInput {
            resource: None,
            input: input(&f.join("acme-prod.ancestors.json")),
        },
        gcp::GcpInput {
            resource: Some("buckets/acme-public-assets".into()),
            input: input(&f.join("public-assets.policy.json")),
        },
        gcp::GcpInput {
            resource: None,
            input: input(&f.join("roles.json")),
        },
    ];
    let r = gcp::analyze(&catalog, inputs, &Options::default()).unwrap();
    loads(
        &r,
        "[providers.gcp]\nkind = \"gcp\"\norganization = \"999999999999\"\n",
    );
}

#[test]
fn azure_proposals_load() {
    let catalog = Catalog::embedded().unwrap();
    let f = fixtures().join("azure");
    let inputs = [
        "role-assignments.json",
        "role-definitions.json",
        "identities.json",
    ]
    .iter()
    .map(|n| input(&f.join(n)))
    .collect();
    let r = azure::analyze(&catalog, inputs, &Options::default()).unwrap();
    loads(&r, "[providers.azure]\nkind = \"azure\"\ntenant_id = \"11111111-1111-4111-8111-111111111111\"\ncredentials = { access_token = \"unused-in-this-test\" }\n");
}
