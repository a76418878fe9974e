//! Small helpers shared by the simulator's handlers: randomness, Dfns-style ids, base64url and
//! ISO-8601 dates. Kept here so handlers read as protocol logic only.

use base64::Engine;
use std::time::{SystemTime, UNIX_EPOCH};

/// `n` bytes from the operating system's CSPRNG.
pub(crate) fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    // The OS RNG failing means the machine cannot run anything secure; nothing to recover.
    getrandom::fill(&mut buf).expect("operating system random number generator failed");
    buf
}

/// A random `u64` (for seeding the fault generator when no seed is given).
pub(crate) fn random_u64() -> u64 {
    let b = random_bytes(8);
    u64::from_le_bytes(b.try_into().expect("8 bytes"))
}

/// Whether `s` is a non-empty base64url string (what Dfns credential ids are).
pub(crate) fn is_b64url(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// base64url without padding, as Dfns uses everywhere.
pub(crate) fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Strict base64url decoding: no padding, no standard-alphabet characters.
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
}

/// A lowercase base-36 string of `len` random characters.
fn random_base36(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    random_bytes(len)
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// An id shaped like Dfns' (`wa-5pfuu-9euek-8a7c9d2e1f0b3c4d`): prefix, two 5-character groups
/// and a 16-character group.
pub(crate) fn dfns_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}-{}",
        random_base36(5),
        random_base36(5),
        random_base36(16)
    )
}

/// A numeric error id like the ones in Dfns' error bodies.
pub(crate) fn error_id() -> String {
    let b = random_bytes(8);
    let n =
        u64::from_le_bytes(b.try_into().expect("8 bytes")) % 9_000_000_000_000 + 1_000_000_000_000;
    n.to_string()
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The current time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn now_iso() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    iso_from_unix(now.as_secs(), now.subsec_millis())
}

/// Formats a Unix time as ISO-8601 UTC (civil-from-days, Howard Hinnant's algorithm).
pub(crate) fn iso_from_unix(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3_600,
        (rem % 3_600) / 60,
        rem % 60
    )
}

/// Decodes `%XX` escapes in one path segment (for looking up ids; binding checks use the raw
/// path). Returns `None` on a malformed escape or non-UTF-8 result.
pub(crate) fn percent_decode(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates_match_known_instants() {
        assert_eq!(iso_from_unix(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_from_unix(1_700_000_000, 5), "2023-11-14T22:13:20.005Z");
        assert_eq!(iso_from_unix(951_782_400, 0), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn ids_have_the_dfns_shape() {
        let id = dfns_id("wa");
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(
            (parts[0], parts[1].len(), parts[2].len(), parts[3].len()),
            ("wa", 5, 5, 16)
        );
        assert_ne!(id, dfns_id("wa"));
    }

    #[test]
    fn base64url_is_strict() {
        assert_eq!(b64url(b"\xfb\xff"), "-_8");
        assert_eq!(b64url_decode("-_8"), Some(b"\xfb\xff".to_vec()));
        assert_eq!(b64url_decode("-_8="), None, "padding is refused");
        assert_eq!(b64url_decode("+/8"), None, "standard alphabet is refused");
    }
}
