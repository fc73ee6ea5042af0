//! The catalog decoded only while something uses it.
//!
//! Decoded, the catalogs with their search index take about 25 MiB; the compressed snapshot they
//! come from is 4 MB, and decoding it again takes about 16 ms. A long-running server that holds
//! a [`SharedCatalog`] instead of the decoded [`Catalog`] can give that memory back when nothing
//! has used it for a while ([`SharedCatalog::release_idle`]) and decode it again on the next
//! use. Whoever is using it holds an `Arc<Catalog>`, so a release never pulls it from under a
//! compile or a search in progress.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::{Catalog, CatalogError, Snapshot, EMBEDDED};

/// A catalog that can be decoded again from where it came from; cloning shares it.
#[derive(Clone)]
pub struct SharedCatalog(Arc<Inner>);

struct Inner {
    source: Source,
    state: Mutex<State>,
}

enum Source {
    /// The snapshot built into the binary.
    Embedded,
    /// A snapshot file's bytes, read once: decoding again reads these, not the file, so a file
    /// changed on disk after start is not picked up half-way through a run.
    Bytes { bytes: Box<[u8]>, origin: String },
    /// Built in memory (tests, a catalog being refreshed): it cannot be decoded again, so it is
    /// never released.
    Fixed,
}

struct State {
    /// The decoded catalog, while anybody holds it.
    live: Weak<Catalog>,
    /// The reference that keeps it decoded between uses; dropped by [`SharedCatalog::release_idle`].
    kept: Option<Arc<Catalog>>,
    /// When it was last asked for.
    used: Instant,
    /// Whether a decoded catalog may still be alive (so its end is reported once).
    held: bool,
    /// How many times it was decoded.
    decodes: u64,
}

impl std::fmt::Debug for SharedCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let origin = match &self.0.source {
            Source::Embedded => "built into brevet",
            Source::Bytes { origin, .. } => origin,
            Source::Fixed => "in memory",
        };
        f.debug_struct("SharedCatalog")
            .field("origin", &origin)
            .finish()
    }
}

impl SharedCatalog {
    fn new(source: Source, first: Catalog) -> SharedCatalog {
        let first = Arc::new(first);
        SharedCatalog(Arc::new(Inner {
            source,
            state: Mutex::new(State {
                live: Arc::downgrade(&first),
                kept: Some(first),
                used: Instant::now(),
                held: true,
                decodes: 1,
            }),
        }))
    }

    /// The snapshot built into this binary: one handle per process, decoded (and so checked) at
    /// the first call.
    pub fn embedded() -> Result<SharedCatalog, CatalogError> {
        static SHARED: OnceLock<Result<SharedCatalog, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                Snapshot::decode(EMBEDDED, "built into brevet")
                    .map(|s| SharedCatalog::new(Source::Embedded, Catalog::new(s)))
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|reason| CatalogError::Embedded { reason })
    }

    /// A snapshot written by `brevet catalog refresh --out FILE`, read and decoded now.
    pub fn load_file(path: &std::path::Path) -> Result<SharedCatalog, CatalogError> {
        let bytes = std::fs::read(path).map_err(|e| CatalogError::Io {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let origin = path.display().to_string();
        let first = Catalog::new(Snapshot::decode(&bytes, &origin)?);
        Ok(SharedCatalog::new(
            Source::Bytes {
                bytes: bytes.into_boxed_slice(),
                origin,
            },
            first,
        ))
    }

    /// A catalog built in memory; it stays decoded for as long as the handle lives.
    pub fn fixed(catalog: Catalog) -> SharedCatalog {
        SharedCatalog::new(Source::Fixed, catalog)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is a few fields set together; a panic elsewhere cannot leave them torn.
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The decoded catalog: the one in memory, or decoded again (about 16 ms) if it was
    /// released. Concurrent callers after a release wait for one decode rather than each doing
    /// their own.
    pub fn get(&self) -> Arc<Catalog> {
        let mut s = self.state();
        s.used = Instant::now();
        if let Some(c) = &s.kept {
            return c.clone();
        }
        let c = match s.live.upgrade() {
            Some(c) => c,
            None => {
                let snap = match &self.0.source {
                    Source::Embedded => Snapshot::decode(EMBEDDED, "built into brevet"),
                    Source::Bytes { bytes, origin } => Snapshot::decode(bytes, origin),
                    Source::Fixed => unreachable!("a fixed catalog is never released"),
                };
                // These same bytes decoded when the handle was made; decoding is deterministic,
                // so only running out of memory could fail here, and that aborts anyway.
                let snap = snap.expect("a catalog snapshot that decoded once decodes again");
                s.decodes += 1;
                Arc::new(Catalog::new(snap))
            }
        };
        s.live = Arc::downgrade(&c);
        s.kept = Some(c.clone());
        s.held = true;
        c
    }

    /// Lets the decoded catalog go if nothing has asked for it for `idle`; it is freed once the
    /// last user in progress drops it. True when, at this call, a decoded catalog has been
    /// freed since the last call that returned true: the moment to give the heap back to the
    /// system (the caller's business: this crate does no such I/O).
    pub fn release_idle(&self, idle: Duration) -> bool {
        if matches!(self.0.source, Source::Fixed) {
            return false;
        }
        let mut s = self.state();
        if s.kept.is_some() && s.used.elapsed() >= idle {
            s.kept = None;
        }
        if s.held && s.kept.is_none() && s.live.strong_count() == 0 {
            s.held = false;
            return true;
        }
        false
    }

    /// Whether the catalog is decoded in memory now.
    pub fn is_decoded(&self) -> bool {
        self.state().live.strong_count() > 0
    }

    /// How many times it has been decoded since the handle was made (the first time included).
    pub fn decodes(&self) -> u64 {
        self.state().decodes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Catalog {
        Catalog::new(Snapshot::default())
    }

    #[test]
    fn an_idle_catalog_is_released_once_and_decoded_again_on_use() {
        // Other tests in this process share the process-wide handle; work on one of our own,
        // with nothing decoded yet.
        let shared = SharedCatalog(Arc::new(Inner {
            source: Source::Embedded,
            state: Mutex::new(State {
                live: Weak::new(),
                kept: None,
                used: Instant::now(),
                held: false,
                decodes: 0,
            }),
        }));
        let first = shared.get();
        assert_eq!(shared.decodes(), 1);
        assert!(
            !shared.release_idle(Duration::from_secs(3600)),
            "used just now"
        );
        // In use: let go of by the handle, but not freed while `first` holds it.
        assert!(!shared.release_idle(Duration::ZERO));
        assert!(shared.is_decoded());
        let same = shared.get();
        assert!(
            Arc::ptr_eq(&first, &same),
            "the live one is handed out again"
        );
        assert_eq!(shared.decodes(), 1);
        drop((first, same));
        assert!(shared.release_idle(Duration::ZERO), "freed: report it");
        assert!(!shared.is_decoded());
        assert!(!shared.release_idle(Duration::ZERO), "reported once");
        let again = shared.get();
        assert_eq!(shared.decodes(), 2);
        assert!(again.permissions().len() > 40_000);
        assert!(again
            .permission(crate::Cloud::Aws, "s3:GetObject")
            .is_some());
    }

    #[test]
    fn a_fixed_catalog_is_never_released() {
        let shared = SharedCatalog::fixed(small());
        let a = Arc::downgrade(&shared.get());
        assert!(!shared.release_idle(Duration::ZERO));
        assert!(a.upgrade().is_some());
    }
}
