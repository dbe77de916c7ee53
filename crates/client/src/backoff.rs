//! Bounded, jittered exponential backoff. Deterministic given its seed, so
//! retry logic is testable without clocks.

use std::time::Duration;

/// A backoff schedule.
#[derive(Clone, Debug)]
pub struct Backoff {
    base_ms: u64,
    cap_ms: u64,
    attempt: u32,
    max_attempts: u32,
    seed: u64,
}

impl Backoff {
    /// `max_attempts` delays, from `base_ms` doubling up to `cap_ms`, with
    /// "equal jitter" (half fixed, half random) from `seed`.
    pub fn new(base_ms: u64, cap_ms: u64, max_attempts: u32, seed: u64) -> Backoff {
        Backoff {
            base_ms: base_ms.max(1),
            cap_ms: cap_ms.max(base_ms),
            attempt: 0,
            max_attempts,
            seed: seed | 1,
        }
    }

    /// For region errors and unreachable stores: 2 ms .. 500 ms, 20 tries.
    pub fn region() -> Backoff {
        Backoff::new(2, 500, 20, seed())
    }

    /// For locks held by live transactions: 10 ms .. 1 s, 40 tries.
    pub fn lock() -> Backoff {
        Backoff::new(10, 1000, 40, seed())
    }

    /// Waiting for another transaction's pessimistic lock: short sleeps
    /// (locks of short transactions go within milliseconds); the caller's
    /// deadline bounds the total.
    pub fn lock_wait() -> Backoff {
        Backoff::new(1, 20, u32::MAX, seed())
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*
        self.seed ^= self.seed >> 12;
        self.seed ^= self.seed << 25;
        self.seed ^= self.seed >> 27;
        self.seed.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The next delay, or None when the attempts are used up.
    pub fn next_delay(&mut self) -> Option<Duration> {
        if self.attempt >= self.max_attempts {
            return None;
        }
        let exp = self
            .base_ms
            .saturating_mul(1u64 << self.attempt.min(30))
            .min(self.cap_ms);
        self.attempt += 1;
        let half = exp / 2;
        let jitter = if half == 0 {
            0
        } else {
            self.next_rand() % (half + 1)
        };
        Some(Duration::from_millis(half + jitter))
    }

    /// Attempts used so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Sleeps for the next delay; false when the attempts are used up.
    pub async fn wait(&mut self) -> bool {
        match self.next_delay() {
            Some(d) => {
                tokio::time::sleep(d).await;
                true
            }
            None => false,
        }
    }
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_bounded_jitter_and_stops() {
        let mut b = Backoff::new(10, 80, 6, 42);
        let delays: Vec<u64> = std::iter::from_fn(|| b.next_delay())
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(delays.len(), 6, "exactly max_attempts delays");
        let ceilings = [10, 20, 40, 80, 80, 80];
        for (d, c) in delays.iter().zip(ceilings) {
            assert!(*d >= c / 2 && *d <= c, "{d} outside [{}, {c}]", c / 2);
        }
        assert!(b.next_delay().is_none());
    }

    #[test]
    fn backoff_is_deterministic_for_a_seed() {
        let a: Vec<_> = {
            let mut b = Backoff::new(5, 1000, 10, 9);
            std::iter::from_fn(move || b.next_delay()).collect()
        };
        let b: Vec<_> = {
            let mut b = Backoff::new(5, 1000, 10, 9);
            std::iter::from_fn(move || b.next_delay()).collect()
        };
        assert_eq!(a, b);
    }
}
