//! The snapshot built into brevet is what `catalog refresh` makes of the published dumps in
//! `../shared/data` (so nobody can hand-edit it, and a change of the builder shows up here), and
//! it holds what those dumps say.

use std::path::{Path, PathBuf};

use brevet_catalog::refresh::{build, Sources};
use brevet_catalog::{Access, Catalog, Cloud, Plane, Query, SharedCatalog, Tags, Verb};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data")
}

fn sources() -> Sources {
    let d = data();
    Sources {
        aws: Some(d.join("aws")),
        gcp: Some(d.join("gcp")),
        azure: Some(d.join("azure/built-in-roles-raw.json")),
        azure_operations: Some(d.join("azure/rest-api-to-operation-map.2026-06-14.json")),
        okta: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("sources/okta.json")),
    }
}

fn names(c: &Catalog, permissions: &[u32]) -> Vec<String> {
    permissions
        .iter()
        .map(|&i| c.permissions()[i as usize].name.clone())
        .collect()
}

#[test]
fn the_embedded_snapshot_is_rebuilt_exactly_from_the_dumps() {
    let built = build(&sources()).expect("../shared/data holds the dumps (see its MANIFEST.md)");
    let embedded = Catalog::embedded().unwrap();
    let e = embedded.snapshot();
    assert_eq!(built.sources, e.sources);
    assert_eq!(built.resource_types, e.resource_types);
    assert_eq!(built.permissions.len(), e.permissions.len());
    for (a, b) in built.permissions.iter().zip(&e.permissions) {
        assert_eq!(
            a, b,
            "run scripts/catalog-snapshot: the embedded snapshot is stale"
        );
    }
    assert_eq!(built.roles, e.roles, "run scripts/catalog-snapshot");
    // What the binary carries is byte for byte what refresh writes.
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/catalog.bin");
    assert!(
        std::fs::read(file).unwrap() == built.encode(),
        "run scripts/catalog-snapshot: data/catalog.bin differs from what refresh writes"
    );
}

#[test]
fn the_catalogs_hold_what_the_dumps_say() {
    let c = Catalog::embedded().unwrap();
    let count = |cloud| c.permissions().iter().filter(|p| p.cloud == cloud).count();
    // MANIFEST.md: 22,091 AWS actions; 13,790 unique GCP permissions; 928 Azure built-in roles.
    assert_eq!(count(Cloud::Aws), 22_091);
    assert_eq!(count(Cloud::Gcp), 13_790);
    let roles = |cloud| c.roles().iter().filter(|r| r.cloud == cloud).count();
    assert_eq!(roles(Cloud::Azure), 928);
    assert_eq!(roles(Cloud::Gcp), 2_461);
    assert_eq!(count(Cloud::Okta), 55);
    let help_desk = c.role(Cloud::Okta, "HELP_DESK_ADMIN").unwrap();
    assert_eq!(
        names(&c, &help_desk.permissions),
        [
            "okta.groups.read",
            "okta.users.credentials.resetFactors",
            "okta.users.credentials.resetPassword",
            "okta.users.lifecycle.clearSessions",
            "okta.users.lifecycle.unlock",
            "okta.users.read",
        ]
    );
    let reset = c
        .permission(Cloud::Okta, "okta.users.credentials.resetPassword")
        .unwrap();
    assert!(reset.tags.contains(Tags::PRIV_ESC));
    assert!(c
        .permission(Cloud::Okta, "okta.users.credentials.resetpassword")
        .is_none());

    let get = c
        .permission(Cloud::Aws, "s3:getobject")
        .expect("case-insensitive");
    assert_eq!(
        (get.name.as_str(), get.access, get.verb),
        ("s3:GetObject", Access::Read, Verb::Read)
    );
    assert!(get.tags.contains(Tags::DATA_ACCESS));
    let pass_role = c.permission(Cloud::Aws, "iam:PassRole").unwrap();
    assert!(pass_role.tags.contains(Tags::PRIV_ESC));
    let policy = c.permission(Cloud::Aws, "s3:PutBucketPolicy").unwrap();
    assert_eq!(policy.access, Access::PermissionsManagement);
    assert_eq!(policy.verb, Verb::Admin);
    assert_eq!(
        c.permission(Cloud::Aws, "s3:DeleteObject").unwrap().verb,
        Verb::Delete
    );
    // GCP names are case-sensitive.
    assert!(c.permission(Cloud::Gcp, "storage.objects.get").is_some());
    assert!(c.permission(Cloud::Gcp, "storage.objects.Get").is_none());
    let viewer = c.role(Cloud::Gcp, "roles/storage.objectViewer").unwrap();
    let v = names(&c, &viewer.permissions);
    assert!(
        v.contains(&"storage.objects.get".into()) && v.contains(&"storage.objects.list".into()),
        "{v:?}"
    );
    // Azure: a role's wildcards expanded, its notActions taken out; data actions on the data
    // plane.
    let reader = c.role(Cloud::Azure, "Storage Blob Data Reader").unwrap();
    let r = names(&c, &reader.permissions);
    assert!(
        r.contains(&"Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read".into()),
        "{r:?}"
    );
    let blob = c
        .permission(
            Cloud::Azure,
            "microsoft.storage/storageaccounts/blobservices/containers/blobs/read",
        )
        .unwrap();
    assert_eq!(blob.plane, Plane::Data);
    let owner = c.role(Cloud::Azure, "Owner").unwrap();
    let contributor = c.role(Cloud::Azure, "Contributor").unwrap();
    let assign = c
        .permission_index(
            Cloud::Azure,
            "Microsoft.Authorization/roleAssignments/write",
        )
        .unwrap();
    assert!(owner.permissions.binary_search(&assign).is_ok());
    assert!(
        contributor.permissions.binary_search(&assign).is_err(),
        "Contributor's notActions exclude role assignments"
    );
    assert!(c.permissions()[assign as usize]
        .tags
        .contains(Tags::PRIV_ESC));
    // Running code on a VM or acting as the data's superuser is escalation, warned or forbidden.
    for op in [
        "Microsoft.Compute/virtualMachines/runCommand/action",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/runAsSuperUser/action",
    ] {
        let p = c
            .permission(Cloud::Azure, op)
            .unwrap_or_else(|| panic!("{op}"));
        assert!(p.tags.contains(Tags::PRIV_ESC), "{op}");
    }
    // AWS managed policies: `s3:Get*` and `s3:List*` expanded.
    let ro = c.role(Cloud::Aws, "AmazonS3ReadOnlyAccess").unwrap();
    let get_i = c.permission_index(Cloud::Aws, "s3:GetObject").unwrap();
    let put_i = c.permission_index(Cloud::Aws, "s3:PutObject").unwrap();
    assert!(ro.permissions.binary_search(&get_i).is_ok());
    assert!(ro.permissions.binary_search(&put_i).is_err());
    // Wildcards expand from the catalog; a typo matches nothing.
    assert!(c.expand(Cloud::Aws, "s3:Get*").len() > 50);
    assert!(c.expand(Cloud::Aws, "s3:Gett*").is_empty());
    assert_eq!(
        c.expand(Cloud::Azure, "Microsoft.KeyVault/vaults/secrets/*/action")
            .len(),
        3
    );
}

#[test]
fn a_snapshot_written_by_refresh_loads_and_a_foreign_file_is_refused() {
    let dir = std::env::temp_dir().join(format!("brevet-catalog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let gcp_only = build(&Sources {
        gcp: Some(data().join("gcp")),
        ..Default::default()
    })
    .unwrap();
    let file = dir.join("gcp.bin.gz");
    std::fs::write(&file, gcp_only.encode()).unwrap();
    let c = SharedCatalog::load_file(&file).unwrap().get();
    assert_eq!(c.clouds(), vec![Cloud::Gcp]);
    assert!(!c.search(&Query::new("storage objects get")).is_empty());
    std::fs::write(&file, b"not a snapshot").unwrap();
    let err = SharedCatalog::load_file(&file).unwrap_err().to_string();
    assert!(
        err.contains("gcp.bin.gz")
            && err.contains("not a compressed snapshot")
            && err.contains("brevet catalog refresh"),
        "{err}"
    );
    let err = build(&Sources::default()).unwrap_err().to_string();
    assert!(err.contains("--aws DIR"), "{err}");
    let err = build(&Sources {
        gcp: Some(dir.join("missing")),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("missing"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
