//! RFC 3339 timestamps as the wire contract writes them
//! (`YYYY-MM-DDTHH:MM:SS.mmmZ`), on the routing hot path: every offer and
//! event carries one or more.

use chrono::{DateTime, SecondsFormat, Utc};
use std::cell::Cell;

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, as chrono's `to_rfc3339_opts(Millis, true)`
/// writes it, without the formatting machinery: every offer and event
/// carries one or more of these, and this is several times faster.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    match rfc3339_bytes(t) {
        Some(b) => b.iter().map(|c| *c as char).collect(),
        None => t.to_rfc3339_opts(SecondsFormat::Millis, true),
    }
}

/// The common case of [`rfc3339`] on the stack; `None` outside four-digit
/// years or on a leap second, where chrono's own form is used.
pub(crate) fn rfc3339_bytes(t: DateTime<Utc>) -> Option<[u8; 24]> {
    // The outputs of one input carry its time again and again.
    let key = (t.timestamp(), t.timestamp_subsec_nanos() / 1_000_000);
    let (last, text) = LAST.get();
    if last == key {
        return Some(text);
    }
    let text = write(t)?;
    LAST.set((key, text));
    Some(text)
}

thread_local! {
    /// The last time written (seconds, milliseconds) and its text; the
    /// initial key is no time's (milliseconds are below 1 000 there, or a
    /// leap second's, which is never kept).
    static LAST: Cell<((i64, u32), [u8; 24])> = const { Cell::new(((0, u32::MAX), [0; 24])) };
}

fn write(t: DateTime<Utc>) -> Option<[u8; 24]> {
    use chrono::{Datelike, Timelike};
    // The naive form: `DateTime`'s accessors each add the (zero) offset again.
    let t = t.naive_utc();
    let ms = t.nanosecond() / 1_000_000;
    if !(0..=9999).contains(&t.year()) || ms >= 1000 {
        return None;
    }
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: u32, mut n: u32| {
        for i in (0..width as usize).rev() {
            b[at + i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, t.year() as u32);
    put(5, 2, t.month());
    put(8, 2, t.day());
    put(11, 2, t.hour());
    put(14, 2, t.minute());
    put(17, 2, t.second());
    put(20, 3, ms);
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_exactly_as_chrono_writes_them() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        // Years -300..12000 in nanoseconds, plus the edges of four-digit years.
        let mut cases: Vec<i64> = vec![0, -1, 253_402_300_799_999, 253_402_300_800_000, -62_167_219_200_000];
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cases.push((x % 388_000_000_000_000) as i64 - 72_000_000_000_000);
        }
        for ms in cases {
            let t = DateTime::<Utc>::from_timestamp_millis(ms).expect("in range")
                + chrono::Duration::nanoseconds((ms.rem_euclid(997) * 1_003) % 1_000_000);
            // Twice: the second from the memo of the last time written.
            for _ in 0..2 {
                assert_eq!(rfc3339(t), t.to_rfc3339_opts(SecondsFormat::Millis, true), "{ms}");
            }
        }
    }
}
