//! Integers as SQL keeps them: SQLite and PostgreSQL have signed 64-bit integers only, and
//! two kinds of number cross that line in opposite ways.

/// A size or a count (bytes, files): one past `i64::MAX` (never reached) stays at the most.
pub fn count_to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A size or a count read back: a negative one (never written) reads as none.
pub fn count_from_sql(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// An id or a nonce: the same 64 bits, whatever sign SQL reads in them.
#[allow(clippy::cast_possible_wrap)]
pub fn bits_to_sql(value: u64) -> i64 {
    value as i64
}

/// An id or a nonce read back: the same 64 bits.
#[allow(clippy::cast_sign_loss)]
pub fn bits_from_sql(value: i64) -> u64 {
    value as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_saturate_and_bits_round_trip() {
        assert_eq!(count_to_sql(5), 5);
        assert_eq!(count_to_sql(u64::MAX), i64::MAX);
        assert_eq!(count_from_sql(-1), 0);
        assert_eq!(count_from_sql(7), 7);
        for value in [0, 1, u64::MAX, 1 << 63] {
            assert_eq!(bits_from_sql(bits_to_sql(value)), value);
        }
        assert_eq!(bits_to_sql(u64::MAX), -1);
    }
}
