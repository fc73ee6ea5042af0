//! The provider-neutral access-profile language: a profile as written in config (TOML, the
//! `[access."NAME"]` table under `profile`), parsed (`Profile::parse`) and compiled for every
//! cloud against the embedded catalog — at the example resource of its kind, and at the targets
//! the input names (`targets`, read as `brevet profile explain --target` reads them), with the
//! `[catalog] forbid` tags the input lists. Whatever compiles must name only catalog permissions
//! of the cloud it was compiled for, none with a forbidden tag.
#![no_main]

use brevet_catalog::compile::{compile, example_target, Target};
use brevet_catalog::profile::{Forbidden, Profile, ProfileSpec};
use brevet_catalog::{Catalog, Cloud, Tags};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    profile: ProfileSpec,
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    forbid: Vec<String>,
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(input) = toml::from_str::<Input>(text) else {
        return;
    };
    let catalog = Catalog::embedded().expect("the built-in catalog decodes");
    let mut forbid = Tags::default();
    for t in &input.forbid {
        if let Some(tag) = Tags::parse(t) {
            forbid.insert(tag);
        }
    }
    let forbidden = Forbidden(forbid);
    let Ok(profile) = Profile::parse("fuzz", &input.profile) else {
        return;
    };
    let mut targets: Vec<Target> = Cloud::ALL
        .iter()
        .map(|c| example_target(&catalog, &profile, *c))
        .collect();
    if let Ok(t) = brevet_server::access::parse_target(&input.targets) {
        targets.push(t);
    }
    for target in &targets {
        let Ok(compiled) = compile(&catalog, &profile, target, forbidden) else {
            continue;
        };
        assert_eq!(compiled.cloud, target.cloud());
        assert!(!compiled.permissions.is_empty(), "compiled to nothing");
        for &i in &compiled.permissions {
            let p = &catalog.permissions()[i as usize];
            assert_eq!(p.cloud, target.cloud(), "`{}` is of another cloud", p.name);
            assert!(
                forbid.is_empty() || !p.tags.names().iter().any(|t| forbid.names().contains(t)),
                "`{}` holds a forbidden tag",
                p.name
            );
        }
        let _ = compiled.names(&catalog);
        let _ = compiled.document.to_string();
    }
});
