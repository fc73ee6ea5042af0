//! The GCP IAM stand-in (`brevet_testkit::gcp::FakeGcp`) as a process, for a shell:
//!
//! `fake-gcp --port N [--organization 1] [--folder 10@organizations/1] [--project p1@folders/10]
//! [--bucket b1@p1]` (each may repeat; resources are created in the order given). It prints its
//! URL and serves until killed. Controls: `/_fake/…` (see the module documentation).

use brevet_testkit::gcp::FakeGcp;

const USAGE: &str = "usage: fake-gcp --port N [--organization ID] [--folder ID@PARENT] [--project ID[@PARENT]] [--bucket NAME@PROJECT]";

fn main() {
    if let Err(e) = run() {
        eprintln!("fake-gcp: {e}\n{USAGE}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let mut port = 0u16;
    let mut resources = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => port = value.parse().map_err(|_| format!("bad port {value}"))?,
            "--organization" | "--folder" | "--project" | "--bucket" => {
                resources.push((flag.clone(), value.clone()))
            }
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    let fake = FakeGcp::start_on(([127, 0, 0, 1], port).into()).map_err(|e| e.to_string())?;
    for (flag, value) in resources {
        let (id, parent) = match value.split_once('@') {
            Some((id, parent)) => (id.to_owned(), Some(parent.to_owned())),
            None => (value.clone(), None),
        };
        // The FakeGcp methods panic on a bad hierarchy (they are test helpers); report it here instead.
        let added = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match (flag.as_str(), parent.as_deref()) {
                ("--organization", _) => fake.add_organization(&id),
                ("--folder", Some(p)) => fake.add_folder(&id, p),
                ("--project", p) => fake.add_project(&id, p),
                ("--bucket", Some(p)) => fake.add_bucket(&id, p),
                _ => panic!("{flag} {value} needs @PARENT"),
            }
        }));
        if added.is_err() {
            return Err(format!("cannot add {flag} {value}"));
        }
    }
    println!("{}", fake.url);
    loop {
        std::thread::park();
    }
}
