//! Anchoring the audit chain outside the database. The chain's head (`audit_head`) sits in the
//! same database as the events, so someone who can write to that database can delete the last
//! events and set the head back, or rewrite the tail and recompute every hash, and the chain
//! still verifies. Here the server signs the head with a key that is not in the database
//! (Ed25519, see `brevet_audit::Checkpoint`), at start, every `audit.checkpoint_every` and when
//! an admin asks, and publishes each checkpoint where the database writer cannot reach it: the
//! log output, webhooks (`audit.checkpoint`), a file next to the store, and this process's memory.
//! Verification then holds the chain to the latest checkpoint, and a new checkpoint is only
//! signed for a chain that extends the previous one, so a truncation is never blessed later.

mod settings;

pub use settings::{AuditSettings, KeySource, RawAudit};

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use brevet_audit::{Checkpoint, CheckpointKey, Problem, PublicKey, Verifier, VerifyReport};
use brevet_store::{Store, StoreError};
use rand::RngCore;
use tokio::sync::watch;

use crate::notify::Outbox;

#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("audit signing key {path}: {message}")]
    Key { path: String, message: String },
    #[error("audit checkpoint file {path}: {message}")]
    File { path: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("not signing a checkpoint: {0}")]
    Broken(String),
}

const PAGE: i64 = 1000;

pub struct AuditAnchor {
    store: Store,
    key: Arc<CheckpointKey>,
    public_key: PublicKey,
    file: PathBuf,
    every: Duration,
    /// The latest checkpoint this process signed or loaded: survives the file being deleted.
    latest: Mutex<Option<Checkpoint>>,
    /// One signing at a time in this process, so checkpoints only move forward.
    signing: tokio::sync::Mutex<()>,
    outbox: Option<Arc<Outbox>>,
}

impl AuditAnchor {
    /// Loads (or creates) the key and the checkpoint file. A checkpoint file that the key did
    /// not sign stops the start: either the key was replaced or the file was forged, and
    /// either way the operator must look before Brevet vouches for the log again.
    pub fn open(
        settings: &AuditSettings,
        store: Store,
        outbox: Option<Arc<Outbox>>,
    ) -> Result<Self, AnchorError> {
        let key = match &settings.signing_key {
            KeySource::Configured(k) => k.clone(),
            KeySource::Generated(path) => {
                if matches!(store.backend(), brevet_store::Backend::Postgres) {
                    // A PostgreSQL store is how replicas share a chain; each generating a key of
                    // its own would publish checkpoints no single public key verifies.
                    tracing::warn!(path = %path.display(), "audit.signing_key is not set: this server signs checkpoints with a key of its own; give every replica on this store the same key (docs/deployment.md)");
                }
                Arc::new(load_or_create_key(path)?)
            }
        };
        let public_key = key.public_key();
        let latest = read_checkpoint(&settings.checkpoint_file, &public_key)?;
        tracing::info!(public_key = %public_key, checkpoint_file = %settings.checkpoint_file.display(), latest_seq = latest.as_ref().map(|c| c.seq), "audit checkpoints signed with this key");
        Ok(Self {
            store,
            key,
            public_key,
            file: settings.checkpoint_file.clone(),
            every: settings.checkpoint_every,
            latest: Mutex::new(latest),
            signing: tokio::sync::Mutex::new(()),
            outbox,
        })
    }

    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    fn memory(&self) -> Option<Checkpoint> {
        // A poisoned lock only means a panic elsewhere while holding it; the value is still whole.
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The latest checkpoint: the later of this process's and the file's (another replica on
    /// the same host may have written a later one). A file the key did not sign is an error.
    pub fn latest(&self) -> Result<Option<Checkpoint>, AnchorError> {
        let on_disk = read_checkpoint(&self.file, &self.public_key)?;
        Ok(later(self.memory(), on_disk))
    }

    /// A verifier for the whole chain, held to the latest checkpoint (for the portal, which
    /// reads the events itself). A forged checkpoint file is logged and the memory used.
    pub fn verifier(&self) -> Verifier {
        let latest = self.latest().unwrap_or_else(|e| {
            tracing::error!(error = %e, "audit checkpoint file cannot be trusted");
            self.memory()
        });
        match latest {
            Some(cp) => Verifier::new().anchored(cp.anchor()),
            None => Verifier::new(),
        }
    }

    /// Verifies the stored chain against its head and against the latest signed checkpoint.
    pub async fn verify_log(&self) -> Result<VerifyReport, AnchorError> {
        // The checkpoint before the head: one signed in between would lie beyond the head read.
        let (latest, file_problem) = match self.latest() {
            Ok(l) => (l, None),
            Err(e) => (self.memory(), Some(e.to_string())),
        };
        let (head_seq, head_hash) = self.store.audit_head().await?;
        let mut v = Verifier::new();
        if let Some(cp) = &latest {
            v = v.anchored(cp.anchor());
        }
        self.read_into(&mut v, 0, head_seq).await?;
        let mut report = v.finish(Some((head_seq, &head_hash)));
        if let Some(what) = file_problem {
            report.ok = false;
            report.problems.push(Problem { seq: 0, what });
        }
        Ok(report)
    }

    /// Pushes the events `after < seq <= upto` into `v`. Events appended meanwhile lie beyond
    /// `upto` and are left for next time.
    async fn read_into(&self, v: &mut Verifier, after: i64, upto: i64) -> Result<(), StoreError> {
        let mut after = after;
        while after < upto {
            let page = self.store.audit_page(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            page.iter()
                .filter(|e| e.seq <= upto)
                .for_each(|e| v.push(e));
        }
        Ok(())
    }

    /// Signs the current head if it moved since the latest checkpoint, after checking that the
    /// chain up to it extends that checkpoint (from the beginning when there is none). Returns
    /// the latest checkpoint, `None` while the log is empty.
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>, AnchorError> {
        let _one_at_a_time = self.signing.lock().await;
        let previous = self.latest()?;
        let (seq, hash) = self.store.audit_head().await?;
        if seq == 0 {
            return Ok(previous);
        }
        if let Some(p) = &previous {
            if p.seq == seq && p.hash == hash {
                return Ok(previous);
            }
            if seq < p.seq {
                return Err(AnchorError::Broken(format!(
                    "the audit log's head is event {seq} but event {} was signed at {}: events were removed from the end and the head set back (run `brevet audit verify`)",
                    p.seq, p.signed_at
                )));
            }
        }
        // Only what follows the previous checkpoint needs reading: its hash already commits to
        // everything before it.
        let mut v = match &previous {
            Some(p) => Verifier::after(p.seq, &p.hash),
            None => Verifier::new(),
        };
        self.read_into(&mut v, previous.as_ref().map_or(0, |p| p.seq), seq)
            .await?;
        let report = v.finish(Some((seq, &hash)));
        if !report.ok {
            let problems: Vec<String> = report
                .problems
                .iter()
                .map(|p| format!("event {}: {}", p.seq, p.what))
                .collect();
            let since = previous.as_ref().map_or_else(
                || "the chain is broken".to_owned(),
                |p| {
                    format!(
                        "the chain does not extend the checkpoint of event {}",
                        p.seq
                    )
                },
            );
            return Err(AnchorError::Broken(format!(
                "{since} ({}); run `brevet audit verify`",
                problems.join("; ")
            )));
        }
        let cp = self.key.sign(seq, &hash, chrono::Utc::now());
        self.publish(&cp).await;
        Ok(Some(cp))
    }

    async fn publish(&self, cp: &Checkpoint) {
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(cp.clone());
        let json = serde_json::to_string(cp).unwrap_or_default();
        // The log line is a published copy: log shipping keeps it where the database writer
        // cannot edit it, and its `checkpoint` field is what `audit verify --checkpoint` reads.
        tracing::info!(seq = cp.seq, hash = %cp.hash, checkpoint = %json, "audit checkpoint");
        if let Err(e) = write_checkpoint(&self.file, cp, &self.public_key) {
            tracing::error!(error = %e, "cannot write the audit checkpoint file; the checkpoint is kept in memory and in the log");
        }
        if let Some(outbox) = &self.outbox {
            if let Err(e) = outbox.queue_checkpoint(cp).await {
                tracing::error!(error = %e, seq = cp.seq, "cannot queue the audit checkpoint for webhooks");
            }
        }
    }

    /// Signs at start and then every `audit.checkpoint_every`, until `shutdown` changes.
    pub fn spawn(
        self: &Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let anchor = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(anchor.every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = tick.tick() => {}
                }
                match anchor.checkpoint().await {
                    Ok(_) => {}
                    Err(AnchorError::Broken(m)) => {
                        tracing::error!(problem = %m, "AUDIT LOG TAMPERED: no checkpoint signed")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot sign an audit checkpoint; retrying")
                    }
                }
            }
        })
    }
}

fn later(a: Option<Checkpoint>, b: Option<Checkpoint>) -> Option<Checkpoint> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.seq > a.seq { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Loads the key file, or creates one (mode 0600) if it does not exist, as the SSH CA key is.
fn load_or_create_key(path: &Path) -> Result<CheckpointKey, AnchorError> {
    let err = |message: String| AnchorError::Key {
        path: path.display().to_string(),
        message,
    };
    if path.exists() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| err(e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(err(format!(
                    "is readable by group or others (mode {:o}); run `chmod 600 {}`",
                    mode & 0o777,
                    path.display()
                )));
            }
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        return CheckpointKey::from_hex(&text, "the key file").map_err(|e| err(e.to_string()));
    }
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let key = CheckpointKey::from_seed(seed);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(mut f) => {
            f.write_all(format!("{}\n", key.to_hex()).as_bytes())
                .map_err(|e| err(format!("cannot write: {e}")))?;
            tracing::warn!(path = %path.display(), public_key = %key.public_key(), "generated a new audit checkpoint signing key; keep it (losing it means old checkpoints can no longer be matched to new ones) and give verifiers the public key");
            Ok(key)
        }
        // Another replica on this host made it first.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create_key(path),
        Err(e) => Err(err(format!("cannot create: {e}"))),
    }
}

fn read_checkpoint(path: &Path, key: &PublicKey) -> Result<Option<Checkpoint>, AnchorError> {
    let err = |message: String| AnchorError::File {
        path: path.display().to_string(),
        message,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    let cp: Checkpoint = serde_json::from_str(&text).map_err(|e| {
        err(format!(
            "is not a checkpoint ({e}); it was damaged or replaced"
        ))
    })?;
    cp.verify(key).map_err(|e| {
        err(format!(
            "{e}. Either the signing key changed or the file was forged: find out which; to start afresh with this key, move the file away"
        ))
    })?;
    Ok(Some(cp))
}

/// Replaces the file atomically (write, then rename), unless it already holds a later
/// checkpoint (another replica on this host signed one meanwhile).
fn write_checkpoint(path: &Path, cp: &Checkpoint, key: &PublicKey) -> Result<(), AnchorError> {
    if let Ok(Some(on_disk)) = read_checkpoint(path, key) {
        if on_disk.seq > cp.seq {
            return Ok(());
        }
    }
    let err = |e: std::io::Error| AnchorError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", uuid::Uuid::new_v4()));
    let tmp = PathBuf::from(tmp);
    let body = serde_json::to_vec_pretty(cp).map_err(|e| err(std::io::Error::other(e)))?;
    std::fs::write(&tmp, body).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let a = load_or_create_key(&p).unwrap();
        let b = load_or_create_key(&p).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = load_or_create_key(&p).err().unwrap().to_string();
            assert!(e.contains("chmod 600"), "{e}");
        }
    }

    #[test]
    fn the_file_only_moves_forward_and_a_forged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cp.json");
        let key = CheckpointKey::from_seed([3; 32]);
        let pk = key.public_key();
        let hash = "ab".repeat(32);
        write_checkpoint(&p, &key.sign(5, &hash, chrono::Utc::now()), &pk).unwrap();
        write_checkpoint(&p, &key.sign(4, &hash, chrono::Utc::now()), &pk).unwrap();
        assert_eq!(read_checkpoint(&p, &pk).unwrap().unwrap().seq, 5);
        let mut forged = key.sign(9, &hash, chrono::Utc::now());
        forged.seq = 10;
        std::fs::write(&p, serde_json::to_vec(&forged).unwrap()).unwrap();
        let e = read_checkpoint(&p, &pk).unwrap_err().to_string();
        assert!(e.contains("invalid signature"), "{e}");
    }
}
