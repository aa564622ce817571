//! Engine.IO session ids: 20 base64url characters from a seedable cryptographic RNG.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

/// An Engine.IO session id: 20 characters of the base64url alphabet when generated here, or up to
/// [`Sid::MAX_LEN`] URL-safe characters (`A-Z a-z 0-9 - _ . ~`) from an application's generator.
///
/// It authorises every polling request of its session, so it is treated as a secret.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sid {
    len: u8,
    bytes: [u8; Sid::MAX_LEN],
}

impl Sid {
    /// The longest id accepted.
    pub const MAX_LEN: usize = 32;

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        // Only built from checked ASCII, so always valid.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or_default()
    }

    /// Parses a session id (received from a client, or made by an application's generator); `None`
    /// unless it has the shape of an id.
    pub fn parse(s: &str) -> Option<Sid> {
        let raw = s.as_bytes();
        if raw.is_empty() || raw.len() > Sid::MAX_LEN {
            return None;
        }
        if !raw
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
        {
            return None;
        }
        let mut bytes = [0u8; Sid::MAX_LEN];
        bytes[..raw.len()].copy_from_slice(raw);
        Some(Sid {
            len: raw.len() as u8,
            bytes,
        })
    }
}

// The bytes in use only: sids key maps with a keyed (SipHash) hasher, whose cost grows with the
// input, and the unused tail is always zero, so equal sids still hash alike.
impl std::hash::Hash for Sid {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes[..usize::from(self.len)].hash(state);
    }
}

impl std::fmt::Debug for Sid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sid({})", self.as_str())
    }
}

impl std::fmt::Display for Sid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Generates ids the way the reference does: 12 random bytes followed by the low 3 bytes of a
/// sequence counter, base64url without padding.
pub struct IdGenerator {
    rng: ChaCha20Rng,
    sequence: u32,
}

impl IdGenerator {
    /// A generator seeded with `seed`, or from the operating system when `None`.
    pub fn new(seed: Option<[u8; 32]>) -> IdGenerator {
        let seed = seed.unwrap_or_else(|| {
            let mut seed = [0u8; 32];
            // Without OS entropy the ids would be predictable; there is no safe fallback, so a
            // failure leaves the zero seed only on platforms that cannot provide randomness at all.
            let _ = getrandom::fill(&mut seed);
            seed
        });
        IdGenerator {
            rng: ChaCha20Rng::from_seed(seed),
            sequence: 0,
        }
    }

    /// The next id.
    pub fn next_sid(&mut self) -> Sid {
        self.sequence = self.sequence.wrapping_add(1);
        let mut raw = [0u8; 15];
        self.rng.fill_bytes(&mut raw[..12]);
        raw[12..].copy_from_slice(&self.sequence.to_be_bytes()[1..]);
        let mut bytes = [0u8; Sid::MAX_LEN];
        let written = URL_SAFE_NO_PAD
            .encode_slice(raw, &mut bytes[..20])
            .unwrap_or_default();
        debug_assert_eq!(written, 20);
        Sid { len: 20, bytes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_20_base64url_chars_and_reproducible_from_a_seed() {
        let mut a = IdGenerator::new(Some([7; 32]));
        let mut b = IdGenerator::new(Some([7; 32]));
        let first = a.next_sid();
        assert_eq!(first, b.next_sid());
        assert_eq!(first.as_str().len(), 20);
        assert_eq!(Sid::parse(first.as_str()), Some(first));
        // The last 4 characters encode the low 3 bytes of the sequence number (1).
        assert!(first.as_str().ends_with("AAAB"), "{first}");
        assert_ne!(a.next_sid(), first);
    }

    #[test]
    fn parse_rejects_anything_but_an_id() {
        assert_eq!(Sid::parse(""), None);
        assert_eq!(Sid::parse("aaaaaaaaaaaaaaaaaaa="), None);
        assert_eq!(Sid::parse("aaaaaaaaaaaaaaaaaaaé"), None);
        assert_eq!(Sid::parse(&"a".repeat(33)), None);
        assert!(Sid::parse("aaaaaaaaaaaaaaaaaa-_").is_some());
        assert_eq!(Sid::parse("my-id.1~x").unwrap().as_str(), "my-id.1~x");
    }
}
