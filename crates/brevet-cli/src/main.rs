//! `brevet`: the server (`brevet server`) and the client CLI for everything else.

mod analyze;
mod aws;
mod catalog;
mod client;
mod commands;
mod login;
mod output;
mod ssh;
mod telemetry;

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "brevet",
    version,
    about = "Just-in-time privileged access: ask, get approved, use, and lose it on time."
)]
pub struct Cli {
    /// Brevet server URL.
    #[arg(
        long,
        global = true,
        env = "BREVET_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// API token (prefer the environment variable, so it stays out of shell history).
    #[arg(long, global = true, env = "BREVET_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Brevet server.
    ///
    /// Logs go to stderr (`BREVET_LOG`, an env-filter, `info` by default). A build with the
    /// `otlp` feature exports traces over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT (or
    /// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set, with OTEL_SERVICE_NAME and
    /// OTEL_EXPORTER_OTLP_HEADERS (see docs/observability.md); a build without it refuses to
    /// start when they ask for export.
    Server {
        /// Path to the TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Sign in with single sign-on (OIDC device flow); the session is kept for later commands.
    Login {
        /// Give up after this long.
        #[arg(long, default_value = "10m")]
        timeout: humantime::Duration,
    },
    /// End the saved single sign-on session.
    Logout,
    /// Ask for an access profile on a resource.
    Request(RequestArgs),
    /// List your requests (approvers: --pending shows what waits for you).
    Requests {
        #[arg(long)]
        pending: bool,
        /// Everyone's requests (approvers and admins).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one request.
    Show { id: String },
    /// Approve someone else's request.
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Deny someone else's request.
    Deny {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Withdraw your request before it is activated.
    Cancel { id: String },
    /// Activate your approved request and print the one-time credential.
    Activate {
        id: String,
        /// Public key file to have signed (SSH grants), e.g. ~/.ssh/id_ed25519.pub.
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
    /// List your active grants (--all: ended ones too, and everyone's for admins).
    Grants {
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        page: PageArgs,
    },
    /// End a grant now.
    Revoke {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Ask for more time on an active grant.
    Extend {
        id: String,
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
    },
    /// Issue a fresh credential for your active grant.
    Credentials {
        id: String,
        /// Public key file to have signed (SSH grants).
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
    /// AWS CLI integration: credential_process, profiles, exec.
    #[command(subcommand)]
    Aws(aws::AwsCommand),
    /// SSH certificate authority tools.
    #[command(subcommand, name = "ssh-ca")]
    SshCa(SshCaCommand),
    /// Get a short-lived SSH certificate for a host (asking for access if needed) and print where
    /// the key and certificate are.
    SshCert(ssh::SshArgs),
    /// Get a short-lived SSH certificate for a host and run the system `ssh` with it.
    Ssh {
        #[command(flatten)]
        args: ssh::SshArgs,
        /// Extra `ssh -o` options, e.g. --ssh-option StrictHostKeyChecking=accept-new.
        #[arg(long = "ssh-option", value_name = "OPTION")]
        ssh_options: Vec<String>,
        /// Remote command (after `--`).
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Policy tools.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Audit log tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// API token tools.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Kill switch (admins): lock a principal, revoke all their access everywhere, report.
    Kill {
        /// The principal to cut off.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        principal: Option<String>,
        /// Cut off everyone but admins.
        #[arg(long)]
        all: bool,
        /// Why (recorded in the audit log and shown to the locked principal).
        #[arg(long)]
        reason: String,
    },
    /// Lift a kill-switch lock (admins); `*` lifts `kill --all`.
    Unlock { principal: String },
    /// List kill-switch locks (admins).
    Locks,
    /// Notification deliveries (admins): webhooks, Slack, email; with attempts and last error.
    Deliveries {
        /// Only this state: pending, delivered or failed.
        #[arg(long)]
        state: Option<String>,
        /// Only this subscriber, e.g. webhook:siem, slack:channel, email.
        #[arg(long)]
        subscriber: Option<String>,
        /// Only deliveries about this request.
        #[arg(long)]
        request: Option<String>,
        /// At most this many (newest first).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// The next page, as the previous run printed it.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Run a reconciliation pass now (admins).
    Reconcile,
    /// Search and read the permission catalogs of AWS, GCP and Azure.
    #[command(subcommand)]
    Catalog(catalog::CatalogCommand),
    /// Compile and explain the neutral access profiles of `[access."NAME"]`.
    #[command(subcommand)]
    Profile(catalog::ProfileCommand),
    /// Identity analyzer (offline): risky standing privilege, escalation paths and proposed
    /// just-in-time profiles from AWS, GCP or Azure IAM exports.
    #[command(subcommand)]
    Analyze(analyze::AnalyzeCommand),
    /// Show who the server thinks you are.
    Whoami,
}

#[derive(Args)]
pub struct RequestArgs {
    /// Access profile, e.g. db.read.
    profile: String,
    /// Resource, e.g. postgres:orders-prod.
    #[arg(long)]
    resource: String,
    /// How long you need access once it starts, e.g. 30m, 1h.
    #[arg(long = "for", value_name = "DURATION")]
    duration: String,
    /// Why you need it (recorded in the audit log).
    #[arg(long)]
    reason: Option<String>,
    /// Change or incident ticket.
    #[arg(long)]
    ticket: Option<String>,
    /// Wait for approval, activate, and print the credential. Exits non-zero on denial or expiry.
    #[arg(long)]
    wait: bool,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Evaluate a request against policy without creating it (dry run). With --config it runs
    /// offline against the config's policies, so it works in CI without a server.
    Test {
        /// Evaluate offline against this config's policies and resources.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Principal to evaluate as (default: you).
        #[arg(long)]
        principal: Option<String>,
        /// Groups (comma-separated; default: the principal's configured groups).
        #[arg(long, value_delimiter = ',')]
        groups: Option<Vec<String>>,
        profile: String,
        #[arg(long)]
        resource: String,
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        ticket: Option<String>,
        /// Exit 0 only if the outcome is this (allow or deny): for policy tests in CI.
        #[arg(long)]
        expect: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the hash chain: on the server (against its head and its latest signed
    /// checkpoint), or in an exported JSON-lines file.
    ///
    /// With --head or --checkpoint the log (the file, or else the server's export) must contain
    /// that event with that hash, so a log cut short or rewritten since is caught even when
    /// whoever did it also set the database's head back.
    Verify {
        /// Verify this `brevet audit export --format jsonl` file (`-` for stdin) instead of the
        /// server's log.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The log must contain event SEQ with hash HASH (a head written down earlier, e.g.
        /// from `brevet audit verify`).
        #[arg(long, value_name = "SEQ:HASH")]
        head: Option<String>,
        /// A signed checkpoint the log must reach: a file or the JSON itself, as printed by
        /// `brevet --json audit checkpoint`, sent to webhooks as `audit.checkpoint`, or logged.
        #[arg(long, value_name = "FILE|JSON")]
        checkpoint: Option<String>,
        /// The audit public key to check --checkpoint with (hex, or a file holding it). Pin it:
        /// without it the key is asked of the server.
        #[arg(long, value_name = "HEX|FILE", requires = "checkpoint")]
        public_key: Option<String>,
    },
    /// Sign the log's current head now (if it moved since the last checkpoint) and print the
    /// checkpoint and the public key that verifies it.
    Checkpoint {
        /// Only print the latest checkpoint; do not sign a new one.
        #[arg(long)]
        latest: bool,
    },
    /// Stream every audit event to stdout.
    Export {
        #[arg(long, default_value = "jsonl")]
        format: String,
    },
}

#[derive(Subcommand)]
enum SshCaCommand {
    /// Print the CA public key line for sshd's TrustedUserCAKeys.
    PublicKey {
        /// The SSH provider, when several are configured.
        #[arg(long)]
        provider: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Generate a new random API token and the SHA-256 to put in the config.
    New,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Which page of a list: lists are newest first; when there are more, the command says how to
/// get the next page (`--cursor`).
#[derive(Debug, clap::Args)]
pub struct PageArgs {
    /// At most this many (1 to 5000; the server's default is 500).
    #[arg(long)]
    pub limit: Option<u32>,
    /// The next page, as the previous run printed it.
    #[arg(long)]
    pub cursor: Option<String>,
}
