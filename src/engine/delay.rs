//! `chosen_delay`: the deterministic auto-send delay of SPEC 3.7, reproduced so that
//! each anchor can be compared with the delay the application chose.

use sha2::{Digest, Sha256};

/// Delay bounds when a job's lead or campaign is unknown (SPEC 3.6).
pub(crate) const DEFAULT_DELAY_MIN_SECONDS: i32 = 180;
pub(crate) const DEFAULT_DELAY_MAX_SECONDS: i32 = 420;

/// If `max <= min`, `min`; else `min + u64(first 8 bytes of SHA-256(id), BE) mod (max - min + 1)`.
pub fn chosen_delay(message_id: &str, min: i32, max: i32) -> i32 {
    if max <= min {
        return min;
    }
    let digest = Sha256::digest(message_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let span = (i64::from(max) - i64::from(min) + 1) as u64;
    let offset = u64::from_be_bytes(first) % span;
    (i64::from(min) + offset as i64) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_delay_matches_the_spec_test_vectors() {
        assert_eq!(chosen_delay("msg_1", 180, 420), 314);
        assert_eq!(chosen_delay("hello", 180, 420), 209);
        assert_eq!(chosen_delay("lead-Ω-42", 180, 420), 412);
        assert_eq!(chosen_delay("", 180, 420), 344);
        assert_eq!(chosen_delay("msg_a6e9", 180, 480), 303);
        assert_eq!(chosen_delay("hello", 0, 2147483647), 1605411598);
    }

    #[test]
    fn chosen_delay_is_min_when_max_not_above_min() {
        assert_eq!(chosen_delay("msg_1", 300, 300), 300);
        assert_eq!(chosen_delay("msg_1", 300, 200), 300);
    }

    #[test]
    fn chosen_delay_handles_the_full_int_range() {
        let d = chosen_delay("x", i32::MIN, i32::MAX);
        assert!((i32::MIN..=i32::MAX).contains(&d));
    }
}
