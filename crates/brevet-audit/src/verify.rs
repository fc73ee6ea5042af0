use serde::{Deserialize, Serialize};

use crate::{AuditEvent, GENESIS_HASH};

/// One break in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// Sequence number of the event where the break was found.
    pub seq: i64,
    pub what: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerifyReport {
    pub ok: bool,
    pub events: u64,
    pub last_seq: i64,
    pub last_hash: String,
    /// The sequence number of the anchor (signed checkpoint, or expected head) the chain was held
    /// to, if any.
    pub anchored_at: Option<i64>,
    pub problems: Vec<Problem>,
}

/// A point the chain must pass through, vouched for outside the database: event `seq` exists and
/// has `hash`. A signed checkpoint is one; so is a head written down earlier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub seq: i64,
    pub hash: String,
    /// Says where the anchor comes from, in problem messages ("the checkpoint signed at …").
    pub source: String,
}

/// Checks a chain incrementally, so exports of any size verify in constant memory.
#[derive(Debug)]
pub struct Verifier {
    expected_seq: i64,
    prev_hash: String,
    events: u64,
    problems: Vec<Problem>,
    anchor: Option<Anchor>,
    anchor_seen: bool,
}

const MAX_PROBLEMS: usize = 50;

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    pub fn new() -> Self {
        Self {
            expected_seq: 1,
            prev_hash: GENESIS_HASH.to_owned(),
            events: 0,
            problems: Vec::new(),
            anchor: None,
            anchor_seen: false,
        }
    }

    /// Checks only the events after `seq`, whose hash is already known to be `hash` (for
    /// example from a verified checkpoint): the first event pushed must be `seq + 1` and link to
    /// `hash`.
    pub fn after(seq: i64, hash: &str) -> Self {
        Self {
            expected_seq: seq + 1,
            prev_hash: hash.to_owned(),
            ..Self::new()
        }
    }

    /// Holds the chain to `anchor`: verification fails unless event `anchor.seq` is present
    /// with `anchor.hash`. This is what catches a log cut short with its head set back, which the
    /// chain alone cannot: the head sits in the same database as the events.
    pub fn anchored(mut self, anchor: Anchor) -> Self {
        // An anchor at or before the starting point is already behind us.
        if anchor.seq >= self.expected_seq {
            self.anchor = Some(anchor);
        }
        self
    }

    fn problem(&mut self, seq: i64, what: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(Problem { seq, what });
        }
    }

    pub fn push(&mut self, e: &AuditEvent) {
        self.events += 1;
        if e.seq != self.expected_seq {
            let what = if e.seq > self.expected_seq {
                format!(
                    "events {}..{} are missing (deleted?)",
                    self.expected_seq,
                    e.seq - 1
                )
            } else {
                format!(
                    "event {} appears out of order (expected {})",
                    e.seq, self.expected_seq
                )
            };
            self.problem(e.seq, what);
        }
        if e.prev_hash != self.prev_hash {
            self.problem(
                e.seq,
                "prev_hash does not match the hash of the event before it (an event was deleted, inserted or reordered)".into(),
            );
        }
        if e.compute_hash() != e.hash {
            self.problem(
                e.seq,
                "content does not match its hash (the event was edited)".into(),
            );
        }
        if let Some(a) = self.anchor.as_ref().filter(|a| a.seq == e.seq) {
            let what = (a.hash != e.hash).then(|| {
                format!(
                    "event {} differs from {} (hash {}…, expected {}…): the log was rewritten from here on",
                    e.seq,
                    a.source,
                    short(&e.hash),
                    short(&a.hash)
                )
            });
            self.anchor_seen = true;
            if let Some(what) = what {
                self.problem(e.seq, what);
            }
        }
        self.expected_seq = e.seq + 1;
        self.prev_hash = e.hash.clone();
    }

    /// Finishes, comparing the end of the chain with the recorded head when there is one.
    pub fn finish(mut self, head: Option<(i64, &str)>) -> VerifyReport {
        let last_seq = self.expected_seq - 1;
        if let Some((seq, hash)) = head {
            if seq != last_seq || hash != self.prev_hash {
                self.problem(
                    last_seq,
                    format!("the log ends at event {last_seq} but the recorded head is event {seq} (events were removed from the end, or the head was altered)"),
                );
            }
        }
        let anchored_at = self.anchor.as_ref().map(|a| a.seq);
        if let Some(a) = self.anchor.take().filter(|_| !self.anchor_seen) {
            let what = if last_seq < a.seq {
                format!("the log ends at event {last_seq} but {} is for event {} (hash {}…): events {}..{} were removed from the end, and the head set back", a.source, a.seq, short(&a.hash), last_seq + 1, a.seq)
            } else {
                format!(
                    "event {}, which {} vouches for, is missing",
                    a.seq, a.source
                )
            };
            self.problem(last_seq, what);
        }
        VerifyReport {
            ok: self.problems.is_empty(),
            events: self.events,
            last_seq,
            last_hash: self.prev_hash,
            anchored_at,
            problems: self.problems,
        }
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuditDraft, EventKind};
    use chrono::Utc;

    fn chain(n: i64) -> Vec<AuditEvent> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let e = AuditDraft::new(
                    EventKind::RequestCreated,
                    "alice",
                    Some(format!("r{seq}")),
                    serde_json::json!({"n": seq}),
                )
                .seal(seq, Utc::now(), &prev);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    fn verify(events: &[AuditEvent], head: Option<(i64, &str)>) -> VerifyReport {
        let mut v = Verifier::new();
        events.iter().for_each(|e| v.push(e));
        v.finish(head)
    }

    #[test]
    fn intact_chain_verifies() {
        let c = chain(5);
        let r = verify(&c, Some((5, &c[4].hash)));
        assert!(r.ok, "{:?}", r.problems);
        assert_eq!(r.events, 5);
    }

    #[test]
    fn edit_delete_reorder_and_truncation_are_detected() {
        let c = chain(5);
        let head = (5, c[4].hash.as_str());

        let mut edited = c.clone();
        edited[2].actor = "mallory".into();
        let r = verify(&edited, Some(head));
        assert!(
            !r.ok && r.problems[0].seq == 3 && r.problems[0].what.contains("edited"),
            "{r:?}"
        );

        let mut deleted = c.clone();
        deleted.remove(1);
        let r = verify(&deleted, Some(head));
        assert!(!r.ok && r.problems[0].what.contains("missing"), "{r:?}");

        let mut reordered = c.clone();
        reordered.swap(1, 2);
        assert!(!verify(&reordered, Some(head)).ok);

        // Renumbering after a swap still breaks the hash links.
        let mut renumbered = c.clone();
        renumbered.swap(1, 2);
        renumbered[1].seq = 2;
        renumbered[2].seq = 3;
        assert!(!verify(&renumbered, Some(head)).ok);

        let truncated = &c[..4];
        let r = verify(truncated, Some(head));
        assert!(!r.ok && r.problems[0].what.contains("end"), "{r:?}");
    }

    fn anchored(events: &[AuditEvent], seq: i64, hash: &str) -> VerifyReport {
        let mut v = Verifier::new().anchored(Anchor {
            seq,
            hash: hash.to_owned(),
            source: "the checkpoint signed at T".into(),
        });
        events.iter().for_each(|e| v.push(e));
        v.finish(None)
    }

    /// Fails on 879dbb0 because there was no anchor: a chain cut short whose (same-database) head
    /// was set back verified as intact.
    #[test]
    fn an_anchor_catches_truncation_and_rewrites_behind_a_moved_head() {
        let c = chain(5);
        let r = anchored(&c, 5, &c[4].hash);
        assert!(r.ok && r.anchored_at == Some(5), "{r:?}");
        // Longer than the anchor is fine: events appended since.
        assert!(anchored(&c, 3, &c[2].hash).ok);

        let r = anchored(&c[..4], 5, &c[4].hash);
        assert!(!r.ok, "{r:?}");
        assert!(
            r.problems[0].what.contains("ends at event 4")
                && r.problems[0]
                    .what
                    .contains("checkpoint signed at T is for event 5"),
            "{r:?}"
        );

        // A consistent rewrite from event 3 on (every hash recomputed) still differs at the anchor.
        let mut rewritten: Vec<AuditEvent> = c[..2].to_vec();
        let mut prev = c[1].hash.clone();
        for seq in 3..=5 {
            let e = AuditDraft::new(
                EventKind::RequestCreated,
                "mallory",
                None,
                serde_json::json!({}),
            )
            .seal(seq, Utc::now(), &prev);
            prev = e.hash.clone();
            rewritten.push(e);
        }
        let plain = verify(&rewritten, Some((5, &prev)));
        assert!(plain.ok, "the chain alone cannot tell: {plain:?}");
        let r = anchored(&rewritten, 4, &c[3].hash);
        assert!(!r.ok && r.problems[0].what.contains("rewritten"), "{r:?}");
    }

    #[test]
    fn after_checks_only_what_follows_a_known_point() {
        let c = chain(5);
        let mut v = Verifier::after(3, &c[2].hash);
        c[3..].iter().for_each(|e| v.push(e));
        assert!(v.finish(Some((5, &c[4].hash))).ok);
        let mut v = Verifier::after(3, &c[1].hash);
        c[3..].iter().for_each(|e| v.push(e));
        assert!(!v.finish(None).ok);
    }
}
