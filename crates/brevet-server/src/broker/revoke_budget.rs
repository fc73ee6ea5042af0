//! The scheduler's revocation budget per provider instance (`revoke_rate`, `revoke_burst`): a
//! token bucket per rate-limited provider, which the scheduler asks how many revocations it may
//! start *now* before it claims any, and charges for those it then claimed.
//!
//! Not `governor`: its limiters answer yes or no for a given number of cells and spend them when
//! they say yes. They cannot tell how many cells are free without spending them, nor take back
//! cells that were not used — and the scheduler needs both. It must claim only as many due
//! revocations as the budget allows (so nothing it claims waits for the budget while its lease
//! runs), and a pass that finds fewer due than it was allowed must not lose the rest of the
//! burst. What is left is a few lines of arithmetic, tested below.

use std::{
    collections::BTreeMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use brevet_config::RevokeRate;
use brevet_core::ProviderName;

/// A token bucket: `burst` tokens at most, refilled at `per_second`; one token per revocation.
#[derive(Debug, Clone)]
struct Bucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Full: after a quiet spell (a start is one) a whole burst may go at once.
    fn new(rate: RevokeRate, now: Instant) -> Self {
        Self {
            per_second: rate.per_second(),
            burst: f64::from(rate.burst()),
            tokens: f64::from(rate.burst()),
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.at = self.at.max(now);
    }

    /// Whole tokens there are now.
    fn available(&mut self, now: Instant) -> u32 {
        self.refill(now);
        self.tokens.floor() as u32
    }

    fn spend(&mut self, n: u32, now: Instant) {
        self.refill(now);
        self.tokens -= f64::from(n);
    }

    /// How long until `n` whole tokens (at most a burst) are there.
    fn wait_for(&mut self, n: u32, now: Instant) -> Duration {
        self.refill(now);
        let missing = f64::from(n).min(self.burst) - self.tokens;
        if missing <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(missing / self.per_second)
    }
}

#[derive(Debug)]
struct Lane {
    bucket: Bucket,
    /// Its last claim took all it was allowed, so more of its work is (probably) due.
    backlog: bool,
}

/// The budgets of the rate-limited providers; a provider without one is not limited.
#[derive(Debug, Default)]
pub(crate) struct RevokeBudgets {
    lanes: BTreeMap<ProviderName, Mutex<Lane>>,
}

impl RevokeBudgets {
    pub(crate) fn new(rates: BTreeMap<ProviderName, RevokeRate>, now: Instant) -> Self {
        Self {
            lanes: rates
                .into_iter()
                .map(|(name, rate)| {
                    let lane = Lane {
                        bucket: Bucket::new(rate, now),
                        backlog: false,
                    };
                    (name, Mutex::new(lane))
                })
                .collect(),
        }
    }

    fn lane(&self, provider: &ProviderName) -> Option<std::sync::MutexGuard<'_, Lane>> {
        self.lanes
            .get(provider)
            .map(|l| l.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// How many of `provider`'s due requests one pass may claim now: `batch` for a provider
    /// without a limit, else what its budget allows, at most `batch`.
    pub(crate) fn quota(&self, provider: &ProviderName, batch: u32, now: Instant) -> u32 {
        match self.lane(provider) {
            None => batch,
            Some(mut lane) => lane.bucket.available(now).min(batch),
        }
    }

    /// Records what a pass claimed for `provider` with quota `quota`: `claimed` requests, of
    /// which `revocations` start a provider's revocation work (the rest — a deadline passing,
    /// an interrupted activation — costs nothing).
    pub(crate) fn claimed(
        &self,
        provider: &ProviderName,
        quota: u32,
        claimed: u32,
        revocations: u32,
        now: Instant,
    ) {
        let Some(mut lane) = self.lane(provider) else {
            return;
        };
        lane.bucket.spend(revocations, now);
        // A lane that was not looked at (no budget) keeps what it knew.
        if quota > 0 {
            lane.backlog = claimed >= quota;
        }
    }

    /// How long until some rate-limited provider that has due work waiting can start `batch` of
    /// it (at most a burst): `None` if none has work waiting.
    pub(crate) fn throttled_for(&self, batch: u32, now: Instant) -> Option<Duration> {
        self.lanes
            .values()
            .filter_map(|l| {
                let mut lane = l.lock().unwrap_or_else(|p| p.into_inner());
                lane.backlog.then(|| lane.bucket.wait_for(batch, now))
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budgets(per_second: f64, burst: u32, at: Instant) -> (RevokeBudgets, ProviderName) {
        let name = ProviderName::parse("pg").unwrap();
        let rate = RevokeRate::new(per_second, Some(burst)).unwrap();
        (RevokeBudgets::new([(name.clone(), rate)].into(), at), name)
    }

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let (b, pg) = budgets(10.0, 5, t0);
        assert_eq!(b.quota(&pg, 64, t0), 5, "a full burst at first");
        b.claimed(&pg, 5, 5, 5, t0);
        assert_eq!(b.quota(&pg, 64, t0), 0);
        let ms = Duration::from_millis;
        assert_eq!(b.quota(&pg, 64, t0 + ms(99)), 0);
        assert_eq!(b.quota(&pg, 64, t0 + ms(100)), 1, "one every 100 ms");
        assert_eq!(b.quota(&pg, 64, t0 + ms(350)), 3);
        assert_eq!(
            b.quota(&pg, 64, t0 + ms(60_000)),
            5,
            "never more than a burst"
        );
        assert_eq!(
            b.quota(&pg, 2, t0 + ms(60_000)),
            2,
            "never more than a batch"
        );
        let other = ProviderName::parse("ssh").unwrap();
        assert_eq!(b.quota(&other, 64, t0), 64, "an unlimited provider");
    }

    #[test]
    fn only_what_was_claimed_is_spent() {
        let t0 = Instant::now();
        let (b, pg) = budgets(1.0, 10, t0);
        // Allowed 10, found 3 due, of which 2 revocations (the third a deadline passing).
        b.claimed(&pg, 10, 3, 2, t0);
        assert_eq!(b.quota(&pg, 64, t0), 8, "the rest of the burst is kept");
        assert_eq!(b.throttled_for(64, t0), None, "it found all that was due");
    }

    #[test]
    fn a_provider_with_work_waiting_says_when_it_can_go_on() {
        let t0 = Instant::now();
        let (b, pg) = budgets(20.0, 8, t0);
        b.claimed(&pg, 8, 8, 8, t0);
        let about = |d: Option<Duration>, ms: u64| {
            d.is_some_and(|d| d.abs_diff(Duration::from_millis(ms)) < Duration::from_micros(10))
        };
        // Waiting for a batch of 64 means waiting for a full burst: 8 tokens at 20/s.
        assert!(about(b.throttled_for(64, t0), 400));
        assert!(about(b.throttled_for(4, t0), 200));
        let later = t0 + Duration::from_millis(500);
        assert_eq!(b.throttled_for(64, later), Some(Duration::ZERO));
        // Not looked at (no budget): still known to have work waiting.
        b.claimed(&pg, 0, 0, 0, t0);
        assert!(b.throttled_for(64, t0).is_some());
        // Looked at and found less than allowed: nothing waits.
        b.claimed(&pg, 8, 2, 2, later);
        assert_eq!(b.throttled_for(64, later), None);
    }
}
