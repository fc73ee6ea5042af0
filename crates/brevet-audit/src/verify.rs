use serde::Serialize;

use crate::{AuditEvent, GENESIS_HASH};

/// One break in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Sequence number of the event where the break was found.
    pub seq: i64,
    pub what: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VerifyReport {
    pub ok: bool,
    pub events: u64,
    pub last_seq: i64,
    pub last_hash: String,
    pub problems: Vec<Problem>,
}

/// Checks a chain incrementally, so exports of any size verify in constant memory.
#[derive(Debug)]
pub struct Verifier {
    expected_seq: i64,
    prev_hash: String,
    events: u64,
    problems: Vec<Problem>,
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
        }
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
        VerifyReport {
            ok: self.problems.is_empty(),
            events: self.events,
            last_seq,
            last_hash: self.prev_hash,
            problems: self.problems,
        }
    }
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
}
