//! Reconnect delays.

use std::time::Duration;

/// The delay before reconnect attempt `attempt` (0-based): exponential from
/// `min`, capped at `max`, with "equal jitter" (uniform in `[d/2, d]`) so
/// that the nodes of a cluster that lost a peer at the same instant do not
/// redial it in lockstep.
pub(crate) fn reconnect_delay(
    attempt: u32,
    min: Duration,
    max: Duration,
    rng: &mut fastrand::Rng,
) -> Duration {
    let exponential = min.saturating_mul(1u32 << attempt.min(20)).min(max);
    let half = exponential / 2;
    let jitter_ns = rng.u64(0..=half.as_nanos().min(u128::from(u64::MAX)) as u64);
    half + Duration::from_nanos(jitter_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_stay_within_jitter_bounds() {
        let (min, max) = (Duration::from_millis(10), Duration::from_millis(500));
        let mut rng = fastrand::Rng::with_seed(7);
        for attempt in 0..40 {
            let full = min.saturating_mul(1 << attempt.min(20)).min(max);
            let delay = reconnect_delay(attempt, min, max, &mut rng);
            assert!(
                delay >= full / 2 && delay <= full,
                "attempt {attempt}: {delay:?} vs {full:?}"
            );
        }
        let late: Vec<_> = (0..20)
            .map(|_| reconnect_delay(30, min, max, &mut rng))
            .collect();
        assert!(
            late.iter().any(|d| *d != late[0]),
            "jitter varies the delay"
        );
    }
}
