//! The deterministic delay of SPEC 3.7, re-implemented independently of the engine's.

use sha2::{Digest, Sha256};

/// Delay bounds used when the lead or its campaign is unknown, or a bound is NULL.
pub const DEFAULT_DELAY_MIN_SECONDS: i32 = 180;
pub const DEFAULT_DELAY_MAX_SECONDS: i32 = 420;

/// `chosen_delay(message_id, min, max)`: `min` when `max <= min`; else
/// `min + u64(first 8 bytes big-endian of SHA-256(message_id)) mod (max - min + 1)`.
pub fn chosen_delay(message_id: &str, min: i32, max: i32) -> i32 {
    if max <= min {
        return min;
    }
    let digest = Sha256::digest(message_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let hash = u64::from_be_bytes(first);
    // At most 2^32 values: the span and the offset fit in i64 without overflow.
    let span = (i64::from(max) - i64::from(min) + 1) as u64;
    let offset = (hash % span) as i64;
    i32::try_from(i64::from(min) + offset).expect("min + offset <= max fits in i32")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_delay_matches_the_spec_vectors() {
        assert_eq!(chosen_delay("msg_1", 180, 420), 314);
        assert_eq!(chosen_delay("hello", 180, 420), 209);
        assert_eq!(chosen_delay("lead-Ω-42", 180, 420), 412);
        assert_eq!(chosen_delay("", 180, 420), 344);
        assert_eq!(chosen_delay("msg_a6e9", 180, 480), 303);
        assert_eq!(chosen_delay("hello", 0, 2147483647), 1605411598);
    }

    #[test]
    fn chosen_delay_is_min_when_max_is_not_above_min() {
        assert_eq!(chosen_delay("msg_1", 300, 300), 300);
        assert_eq!(chosen_delay("msg_1", 420, 180), 420);
        assert_eq!(chosen_delay("msg_1", -5, -10), -5);
    }

    #[test]
    fn chosen_delay_stays_within_extreme_bounds() {
        let d = chosen_delay("msg_1", i32::MIN, i32::MAX);
        assert!((i32::MIN..=i32::MAX).contains(&d));
        let d = chosen_delay("hello", -10, 10);
        assert!((-10..=10).contains(&d));
    }
}
