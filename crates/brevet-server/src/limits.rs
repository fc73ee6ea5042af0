//! One rate-limiting mechanism for the server: fixed one-minute windows with a count per key
//! (a client address, a principal) and one in all. Used for sign-in starts (no credentials
//! needed, so bounded per client address) and request creation (every attempt, allowed or
//! refused, is written to the append-only audit log and may notify approvers, so it is bounded
//! per principal). A keyed fixed-window counter is a few lines; it does not justify a
//! rate-limiting dependency.

use std::{
    collections::HashMap,
    hash::Hash,
    time::{Duration, Instant},
};

/// Limits per key and in all, per one-minute window.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_key_per_minute: u32,
    pub total_per_minute: u32,
    /// Keys one window tracks; beyond that, new keys wait for the next window (bounded memory).
    pub tracked_keys: usize,
}

pub struct WindowLimiter<K> {
    limits: Limits,
    window: std::sync::Mutex<Window<K>>,
}

struct Window<K> {
    started: Option<Instant>,
    total: u32,
    per_key: HashMap<K, u32>,
}

impl<K> Default for Window<K> {
    fn default() -> Self {
        Self {
            started: None,
            total: 0,
            per_key: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq> WindowLimiter<K> {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            window: std::sync::Mutex::new(Window::default()),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Counts one attempt by `key`; `false` when it is over a limit (and then it is not counted).
    pub fn admit(&self, key: K) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if w.started
            .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(60))
        {
            *w = Window {
                started: Some(now),
                ..Window::default()
            };
        }
        if w.total >= self.limits.total_per_minute {
            return false;
        }
        let tracked = w.per_key.len();
        let count = match w.per_key.get_mut(&key) {
            Some(c) => c,
            None if tracked >= self.limits.tracked_keys => return false,
            None => w.per_key.entry(key).or_insert(0),
        };
        if *count >= self.limits.per_key_per_minute {
            return false;
        }
        *count += 1;
        w.total += 1;
        true
    }

    /// Starts a new window now (tests).
    #[cfg(test)]
    pub fn expire_window(&self) {
        self.window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .started = Some(Instant::now() - Duration::from_secs(61));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_per_key_and_in_all_and_per_window() {
        let l = WindowLimiter::new(Limits {
            per_key_per_minute: 3,
            total_per_minute: 7,
            tracked_keys: 100,
        });
        for _ in 0..3 {
            assert!(l.admit("noisy"));
        }
        assert!(!l.admit("noisy"), "one key is bounded");
        assert!(l.admit("other"), "and does not lock anyone else out");
        l.expire_window();
        assert!(l.admit("noisy"), "a new window admits again");
        let mut admitted = 1;
        for k in ["a", "b", "c", "d"] {
            for _ in 0..3 {
                admitted += u32::from(l.admit(k));
            }
        }
        assert_eq!(admitted, 7, "the total bound holds across keys");
    }

    #[test]
    fn tracked_keys_are_bounded() {
        let l = WindowLimiter::new(Limits {
            per_key_per_minute: 5,
            total_per_minute: 1000,
            tracked_keys: 2,
        });
        assert!(l.admit(1));
        assert!(l.admit(2));
        assert!(!l.admit(3), "a third key waits for the next window");
        assert!(l.admit(1), "known keys go on");
    }
}
