//! The identity analyzer as a user runs it: `brevet analyze` on the fixture exports (text,
//! SARIF, HTML, exit codes, bad input), and the portal's analyzer pages in Chromium (graph
//! rendered, a finding opened, a proposed profile copied).

use std::path::PathBuf;
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

fn aws_fixture() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/fixtures/aws-authz/cloudsplaining-example-authz-details.json")
        .display()
        .to_string()
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../brevet-analyzer/tests/fixtures")
}

fn offline(cmd: Cmd) -> std::process::Output {
    cmd.command()
        .env_remove("BREVET_URL")
        .env_remove("BREVET_TOKEN")
        .output()
        .unwrap()
}

#[test]
fn analyze_commands_as_a_user_runs_them() {
    let aws = aws_fixture();
    // Text: the admins, the path, the proposals.
    let out = offline(Cmd::analyze("aws", &[&aws]));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for expected in [
        "Admin-equivalent principals (2):",
        "role/OverprivilegedEC2 —[iam:CreateAccessKey]→ user/",
        "[providers.aws.profiles.",
        "permit (principal == User::\"obama\"",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // SARIF for code-scanning tools.
    let out = offline(Cmd::analyze("aws", &[&aws]).format("sarif"));
    let sarif: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert!(results
        .iter()
        .any(|r| r["ruleId"] == "admin_equivalent" && r["level"] == "error"));
    assert!(results
        .iter()
        .all(|r| r["partialFingerprints"]["brevetFindingId/v1"].is_string()));
    // A self-contained HTML report: no script, nothing fetched.
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    assert!(offline(
        Cmd::analyze(
            "gcp",
            &[&fixtures()
                .join("gcp/acme-prod.ancestors.json")
                .display()
                .to_string()]
        )
        .format("html")
        .output_to(&html)
    )
    .status
    .success());
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<svg")
            && page.contains("class=\"graph\"")
            && !page.contains("<script")
            // Nothing fetched: no src, no link out (the SVG namespace URI is not a fetch).
            && !page.contains("src=")
            && !page.contains("href=\"http"),
        "{}",
        &page[..400]
    );
    // CI: exit 4 when a finding reaches the threshold, 0 when none does.
    let azure: Vec<String> = [
        "role-assignments.json",
        "role-definitions.json",
        "identities.json",
    ]
    .iter()
    .map(|f| fixtures().join("azure").join(f).display().to_string())
    .collect();
    let azure: Vec<&str> = azure.iter().map(String::as_str).collect();
    assert_eq!(
        offline(Cmd::analyze("azure", &azure).fail_on("critical"))
            .status
            .code(),
        Some(4)
    );
    let exclusions = dir.path().join("x.toml");
    std::fs::write(
        &exclusions,
        "policies = [\"Owner\", \"User Access Administrator\"]\n",
    )
    .unwrap();
    let out = offline(
        Cmd::analyze("azure", &azure)
            .fail_on("critical")
            .exclusions(&exclusions),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // Bad input: named, located, nothing written.
    let truncated = dir.path().join("cut.json");
    let full = std::fs::read_to_string(&aws).unwrap();
    std::fs::write(&truncated, &full[..full.len() / 3]).unwrap();
    let out = offline(
        Cmd::analyze("aws", &[&truncated.display().to_string()])
            .format("json")
            .output_to(&dir.path().join("never.json")),
    );
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("cut.json") && e.contains("line") && e.contains("cut short"),
        "{e}"
    );
    assert!(!dir.path().join("never.json").exists());
    let out = offline(Cmd::analyze("aws", &[&aws]).last_accessed("not-an-arn=x.json"));
    assert!(
        !out.status.success() && stderr(&out).contains("is not an ARN"),
        "{}",
        stderr(&out)
    );
    let out = offline(Cmd::analyze("aws", &[&aws]).format("pdf"));
    assert!(stderr(&out).contains("--format pdf"), "{}", stderr(&out));
}

#[test]
fn analyzer_pages_in_chromium() {
    let aws = aws_fixture();
    let azure: Vec<String> = [
        "role-assignments.json",
        "role-definitions.json",
        "identities.json",
    ]
    .iter()
    .map(|f| fixtures().join("azure").join(f).display().to_string())
    .collect();
    let world = World::new(StoreKind::Sqlite)
        .set("analyzer.aws", vec![aws])
        .set("analyzer.azure", azure);
    let server = world.start();
    let out = run_browser_script(
        "analyzer.mjs",
        &[
            ("BREVET_URL", &server.url),
            ("BREVET_TOKEN", ADMIN),
            ("BREVET_NOT_ADMIN", ALICE),
            (
                "BREVET_UPLOAD_GCP",
                &[
                    fixtures().join("gcp/acme-prod.ancestors.json"),
                    fixtures().join("gcp/roles.json"),
                ]
                .map(|p| p.display().to_string())
                .join("\n"),
            ),
        ],
        Duration::from_secs(180),
    );
    let result: Value = serde_json::from_str(out.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("the browser script printed no result ({e}): {out}"));
    assert!(result["graph_nodes"].as_u64().unwrap() >= 2, "{result}");
    assert!(result["bars"].as_u64().unwrap() >= 5, "{result}");
    assert!(
        result["copied"].as_str().unwrap().contains("[providers."),
        "{result}"
    );
    assert_eq!(result["not_admin_status"], 403, "{result}");
    assert!(
        result["uploaded_findings"].as_u64().unwrap() >= 1,
        "{result}"
    );
    assert!(result["lit_edges"].as_u64().unwrap() >= 1, "{result}");
    assert!(result["zoomed"].as_f64().unwrap() > 1.2, "{result}");
    assert!(
        result["clicked"]
            .as_str()
            .is_some_and(|p| p.starts_with("arn:aws:iam::")),
        "{result}"
    );
}
