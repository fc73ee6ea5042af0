//! The Azure authorization stand-in (`brevet_testkit::azure::FakeAzure`) as a process, for a shell:
//!
//! `fake-azure --port N [--management-group mg1[@PARENT]] [--subscription SUBID[@mg1]]
//! [--resource-group SUBID/rg1] [--principal OBJID@User] [--app CLIENT_ID:SECRET@OBJID]` (each
//! may repeat; applied in the order given). It prints its URL and serves until killed.
//! Controls: `/_fake/…` (see the module documentation).

use brevet_testkit::azure::FakeAzure;

const USAGE: &str = "usage: fake-azure --port N [--management-group ID[@PARENT]] [--subscription SUBID[@MG]] \
[--resource-group SUBID/NAME] [--principal OBJID@User|Group|ServicePrincipal] [--app CLIENT_ID:SECRET@OBJID]";

fn main() {
    if let Err(e) = run() {
        eprintln!("fake-azure: {e}\n{USAGE}");
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
    let mut setup = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => port = value.parse().map_err(|_| format!("bad port {value}"))?,
            "--management-group" | "--subscription" | "--resource-group" | "--principal"
            | "--app" => setup.push((flag.clone(), value.clone())),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    let fake = FakeAzure::start_on(([127, 0, 0, 1], port).into()).map_err(|e| e.to_string())?;
    for (flag, value) in setup {
        let (id, after) = match value.split_once('@') {
            Some((id, p)) => (id.to_owned(), Some(p.to_owned())),
            None => (value.clone(), None),
        };
        // The FakeAzure methods panic on bad input (they are test helpers); report it here instead.
        let added = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match (flag.as_str(), after.as_deref()) {
                ("--management-group", p) => fake.add_management_group(&id, p),
                ("--subscription", mg) => fake.add_subscription(&id, mg),
                ("--resource-group", None) => match value.split_once('/') {
                    Some((sub, rg)) => fake.add_resource_group(sub, rg),
                    None => panic!("--resource-group needs SUBID/NAME"),
                },
                ("--principal", Some(t)) => fake.add_principal(&id, t),
                ("--app", Some(object_id)) => match id.split_once(':') {
                    Some((client, secret)) => fake.add_app(client, secret, object_id),
                    None => panic!("--app needs CLIENT_ID:SECRET@OBJID"),
                },
                _ => panic!("{flag} {value} is malformed"),
            }
        }));
        if added.is_err() {
            return Err(format!("cannot apply {flag} {value}"));
        }
    }
    println!("{}", fake.url);
    loop {
        std::thread::park();
    }
}
