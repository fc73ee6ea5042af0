//! The server's config file (`Config::parse`) on arbitrary text, then the Cedar policies of a
//! config that loads. The config is read as if it were in examples/, so relative names such as
//! `files = ["quickstart.cedar"]` and `profiles = ["access-profiles.toml"]` resolve and parsing
//! goes on past the policy files into principals, access profiles, providers, resources,
//! notifications, OIDC, audit and the analyzer. An error is fine; a panic is a finding.
#![no_main]

use std::path::Path;

use brevet_server::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Not a real file: only its directory is used, to resolve the paths in the config.
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/fuzz-config.toml"
    ));
    if let Ok(config) = Config::parse(text, path) {
        let _ = brevet_server::load_policy(&config);
    }
});
