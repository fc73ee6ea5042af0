//! The identity analyzer on arbitrary input: every export format of every cloud, the activity
//! files and the exclusions file, then every renderer on whatever report comes out. An error is
//! fine; a panic, a hang or unbounded memory is a finding.
#![no_main]

use brevet_analyzer::render::{render, Format};
use brevet_analyzer::{aws, azure, gcp, Exclusions, Input, Options};
use brevet_catalog::Catalog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let catalog = Catalog::embedded().expect("the built-in catalog decodes");
    // A small limit keeps each run fast and exercises the too-large path.
    let opts = Options {
        max_input: 64 * 1024,
        ..Options::default()
    };
    let report = match which % 6 {
        0 => aws::analyze(
            &catalog,
            aws::AwsInputs {
                exports: vec![Input::from_bytes("x", rest)],
                ..Default::default()
            },
            &opts,
        ),
        1 => {
            // An export plus the same bytes as CloudTrail and Access Advisor data.
            let fixture = br#"{"UserDetailList":[{"UserName":"u","Arn":"arn:aws:iam::111111111111:user/u","UserPolicyList":[{"PolicyName":"p","PolicyDocument":{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}}]}]}"#;
            aws::analyze(
                &catalog,
                aws::AwsInputs {
                    exports: vec![Input::from_bytes("x", fixture)],
                    cloudtrail: vec![Input::from_bytes("t", rest)],
                    last_accessed: vec![(
                        "arn:aws:iam::111111111111:user/u".into(),
                        Input::from_bytes("a", rest),
                    )],
                    unused_days: u32::from(which),
                },
                &opts,
            )
        }
        2 => gcp::analyze(
            &catalog,
            vec![gcp::GcpInput {
                resource: Some("projects/p".into()),
                input: Input::from_bytes("x", rest),
            }],
            &opts,
        ),
        3 => gcp::analyze(
            &catalog,
            vec![gcp::GcpInput {
                resource: None,
                input: Input::from_bytes("x", rest),
            }],
            &opts,
        ),
        4 => azure::analyze(&catalog, vec![Input::from_bytes("x", rest)], &opts),
        _ => {
            let _ = Exclusions::parse("x.toml", &String::from_utf8_lossy(rest));
            return;
        }
    };
    if let Ok(r) = report {
        for f in [Format::Text, Format::Json, Format::Sarif, Format::Html] {
            let _ = render(&r, f, &["x".to_string()]);
        }
    }
});
