//! The catalog's speed and size: loading the embedded snapshot (and the resident memory it
//! takes), search latency per query (p50/p99 over a mix of exact, partial and misspelt queries,
//! across all three clouds), and compiling a profile for one cloud.
//! `cargo bench -p brevet-catalog --bench catalog`.

use std::time::{Duration, Instant};

use brevet_catalog::compile::{compile, Target};
use brevet_catalog::profile::{Forbidden, Profile, ProfileSpec};
use brevet_catalog::{Catalog, Query};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn main() {
    // Memory first, in a process that has loaded nothing yet (freed memory would be reused).
    let before = rss_kib();
    let t = Instant::now();
    let catalog = Catalog::embedded().expect("embedded snapshot");
    let first_load = t.elapsed();
    let loaded = rss_kib();
    let t = Instant::now();
    let first = catalog.search(&Query::new("s3 getobject"));
    let first_search = t.elapsed();
    assert!(!first.is_empty());
    let after_search = rss_kib();
    let mut loads = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let c = Catalog::decode_embedded().expect("embedded snapshot");
        loads.push(t.elapsed());
        drop(c);
    }
    loads.sort();
    println!(
        "catalog: {} permissions, {} roles, {} AWS resource types",
        catalog.permissions().len(),
        catalog.roles().len(),
        catalog.resource_types().len()
    );
    println!(
        "load (decompress + decode; name lookups are built on first use): first {:.1} ms; over 10 more: median {:.1} ms, max {:.1} ms",
        first_load.as_secs_f64() * 1e3,
        percentile(&loads, 0.5).as_secs_f64() * 1e3,
        loads.last().unwrap().as_secs_f64() * 1e3
    );
    println!(
        "first search after load: {:.2} ms",
        first_search.as_secs_f64() * 1e3
    );
    println!(
        "resident memory: {:.1} MiB for the four catalogs with their search index (process before: {:.1} MiB; after the first search: +{:.1} MiB)",
        loaded.saturating_sub(before) as f64 / 1024.0,
        before as f64 / 1024.0,
        after_search.saturating_sub(loaded) as f64 / 1024.0,
    );

    let queries = [
        "s3 getobject",
        "s3:GetObject",
        "storage objects get",
        "blob read",
        "secret",
        "getsecretvalue",
        "kms decrypt",
        "compute instances reset",
        "virtualMachines restart",
        "iam passrole",
        "storag objcts",
        "secretmanager versions access",
        "AmazonS3ReadOnlyAccess",
        "storage object viewer",
        "key vault secrets user",
        "logs filterlogevents",
        "pubsub subscriptions consume",
        "ec2 describe",
        "dynamodb query",
        "roleassignments write",
    ];
    let mut times = Vec::new();
    let mut per_query = vec![Vec::new(); queries.len()];
    let mut found = 0usize;
    for round in 0..50 {
        for (k, text) in queries.iter().enumerate() {
            let q = Query::new(text);
            let t = Instant::now();
            let hits = catalog.search(&q);
            let e = t.elapsed();
            if round > 0 {
                times.push(e);
                per_query[k].push(e);
            }
            found += hits.len();
        }
    }
    let slowest = per_query
        .iter_mut()
        .enumerate()
        .map(|(k, t)| {
            t.sort();
            (percentile(t, 0.5), queries[k])
        })
        .max()
        .unwrap();
    times.sort();
    println!(
        "search: {} queries, p50 {:.0} us, p99 {:.0} us, max {:.0} us ({} hits in all)",
        times.len(),
        percentile(&times, 0.5).as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6,
        times.last().unwrap().as_secs_f64() * 1e6,
        found
    );
    println!(
        "slowest query: `{}` (median {:.0} us)",
        slowest.1,
        slowest.0.as_secs_f64() * 1e6
    );

    let spec: ProfileSpec = toml_like_spec();
    let profile = Profile::parse("storage.read", &spec).expect("profile");
    let targets = [
        Target::Aws {
            arns: vec!["arn:aws:s3:::logs".into(), "arn:aws:s3:::logs/*".into()],
        },
        Target::Gcp {
            scope: "projects/p".into(),
            resource: Some("projects/_/buckets/logs".into()),
        },
        Target::Azure {
            scope: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a/blobServices/default/containers/logs".into(),
        },
    ];
    // The first compile builds the name and service lookups once per process; time it apart.
    let t = Instant::now();
    compile(&catalog, &profile, &targets[0], Forbidden::default()).expect("compiles");
    println!(
        "first compile (builds the name lookups): {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    for target in &targets {
        let mut times = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            let c = compile(&catalog, &profile, target, Forbidden::default()).expect("compiles");
            times.push(t.elapsed());
            std::hint::black_box(c);
        }
        times.sort();
        println!(
            "compile storage.read for {}: p50 {:.0} us, p99 {:.0} us",
            target.cloud(),
            percentile(&times, 0.5).as_secs_f64() * 1e6,
            percentile(&times, 0.99).as_secs_f64() * 1e6
        );
    }
}

fn toml_like_spec() -> ProfileSpec {
    ProfileSpec {
        description: "Read one bucket's objects".into(),
        kind: "object-storage".into(),
        verbs: vec!["read".into(), "list".into()],
        plane: Some("data".into()),
        ..Default::default()
    }
}
