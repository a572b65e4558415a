//! Authentication of cooperative messages: the HMAC-SHA-256 tag with a
//! per-peer pre-shared key, and replay protection (docs/COOPERATIVE.md,
//! "Authentication").
//!
//! A message is accepted from a peer only if, in this order: its MAC
//! verifies under the peer's key with the key id it names; its
//! timestamp is within [`TIME_WINDOW_MS`] of this host's clock; its
//! sequence number is new in the peer's anti-replay window (a 64-entry
//! bitmap behind the highest number seen, as IPsec's); and, for an
//! answer, its nonce is that of a request still waiting.  Nothing about
//! a peer's state changes before all of that holds, so neither forged
//! nor reflected messages move the window.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::wire::{Msg, BODY_LEN, MAC_LEN, MSG_LEN};

type HmacSha256 = Hmac<Sha256>;

/// How far a message's timestamp may be from this host's clock.  The
/// hosts' clocks must agree within this (NTP does far better).
pub const TIME_WINDOW_MS: u64 = 30_000;

/// Sequence numbers behind the highest seen that are still accepted once
/// (reordering on the way).
const REPLAY_WINDOW: u64 = 64;

/// The shortest key accepted (bytes): 128 bits.
pub const MIN_KEY_LEN: usize = 16;

/// A pre-shared key and its id.
#[derive(Clone)]
pub struct Key {
    pub id: u32,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret: configurations end up in logs.
        write!(f, "Key {{ id: {}, .. }}", self.id)
    }
}

impl Key {
    /// A key from its secret; refuses one shorter than [`MIN_KEY_LEN`].
    pub fn new(id: u32, secret: Vec<u8>) -> Result<Self, String> {
        if secret.len() < MIN_KEY_LEN {
            return Err(format!(
                "key {id} has {} bytes; use at least {MIN_KEY_LEN} random bytes (e.g. 32 from /dev/urandom, hex-encoded)",
                secret.len()
            ));
        }
        Ok(Self { id, secret })
    }

    /// A key from hex text (whitespace around it ignored).
    pub fn from_hex(id: u32, hex: &str) -> Result<Self, String> {
        let hex = hex.trim();
        if !hex.len().is_multiple_of(2) || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "key {id} is not hex: give an even number of 0-9 a-f characters"
            ));
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        Self::new(id, bytes)
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.secret).expect("HMAC takes keys of any length")
    }

    /// The message, signed with this key (its key id set to this key's).
    pub fn seal(&self, msg: &Msg) -> [u8; MSG_LEN] {
        let mut msg = msg.clone();
        msg.key_id = self.id;
        let mut mac = self.mac();
        mac.update(&msg.body());
        let tag: [u8; MAC_LEN] = mac.finalize().into_bytes().into();
        msg.encode(&tag)
    }

    /// Whether both are the same key (id and secret).
    pub fn same_as(&self, other: &Key) -> bool {
        self.id == other.id && self.secret == other.secret
    }

    /// Whether `tag` is the MAC of `body` under this key (in constant time).
    pub fn verify(&self, body: &[u8; BODY_LEN], tag: &[u8; MAC_LEN]) -> bool {
        let mut mac = self.mac();
        mac.update(body);
        mac.verify_slice(tag).is_ok()
    }
}

/// Why an authenticated-looking message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The key id is not the peer's.
    KeyId,
    /// The MAC does not verify.
    Mac,
    /// The timestamp is outside the window.
    Time,
    /// The sequence number was seen, or is behind the window.
    Replay,
}

impl Refusal {
    pub fn name(self) -> &'static str {
        match self {
            Self::KeyId => "unknown-key-id",
            Self::Mac => "bad-mac",
            Self::Time => "outside-time-window",
            Self::Replay => "replayed",
        }
    }
}

/// A peer's anti-replay window over its sequence numbers.
#[derive(Debug, Default, Clone)]
pub struct ReplayWindow {
    /// The highest sequence number accepted (0: none yet).
    top: u64,
    /// Bit i: `top - i` was accepted.
    seen: u64,
}

impl ReplayWindow {
    /// A window that refuses every number up to `top` (a restart's: what
    /// was accepted before it is not known one by one).
    pub fn after(top: u64) -> Self {
        Self {
            top,
            seen: u64::MAX,
        }
    }

    /// The highest number accepted.
    pub fn top(&self) -> u64 {
        self.top
    }

    /// Whether `seq` would be accepted (nothing changes).
    pub fn fresh(&self, seq: u64) -> bool {
        if seq > self.top {
            return true;
        }
        let behind = self.top - seq;
        behind < REPLAY_WINDOW && self.seen & (1 << behind) == 0 && !(self.top == 0 && seq == 0)
    }

    /// Records `seq` as accepted; call only after [`Self::fresh`] said so.
    pub fn accept(&mut self, seq: u64) {
        if seq > self.top {
            let shift = seq - self.top;
            self.seen = if shift >= REPLAY_WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.top = seq;
        } else {
            self.seen |= 1 << (self.top - seq);
        }
    }
}

/// Checks a decoded message from a peer with key `key`, received at
/// `now_ms`, against the peer's `window`.  Changes nothing: the caller
/// records the sequence number ([`ReplayWindow::accept`]) only once the
/// message is also bound to its direction, because both directions share
/// the key: a request's client address must be its source, an answer's
/// must be this host's and its nonce a waiting request's.  So a message
/// reflected back to its sender moves no window.
pub fn verify(
    key: &Key,
    window: &ReplayWindow,
    msg: &Msg,
    tag: &[u8; MAC_LEN],
    now_ms: u64,
) -> Result<(), Refusal> {
    if msg.key_id != key.id {
        return Err(Refusal::KeyId);
    }
    if !key.verify(&msg.body(), tag) {
        return Err(Refusal::Mac);
    }
    if msg.time_ms.abs_diff(now_ms) > TIME_WINDOW_MS {
        return Err(Refusal::Time);
    }
    if !window.fresh(msg.seq) {
        return Err(Refusal::Replay);
    }
    Ok(())
}

/// A sender's sequence numbers towards one peer: they start at the
/// clock in microseconds, so that a restarted sender (which keeps no
/// state) starts above everything it sent before, and grow by one.
#[derive(Debug, Clone)]
pub struct SeqCounter(u64);

impl SeqCounter {
    pub fn new(now_us: u64) -> Self {
        Self(now_us)
    }

    /// The next number: above the last one and not below the clock.
    pub fn next(&mut self, now_us: u64) -> u64 {
        self.0 = (self.0 + 1).max(now_us);
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coop::wire::tests::sample;

    fn key() -> Key {
        Key::from_hex(7, "00112233445566778899aabbccddeeff").unwrap()
    }

    #[test]
    fn keys_are_checked() {
        assert!(Key::from_hex(1, "0011")
            .unwrap_err()
            .contains("at least 16"));
        assert!(Key::from_hex(1, "xyz").unwrap_err().contains("not hex"));
        assert!(!format!("{:?}", key()).contains("0011"));
    }

    #[test]
    fn seal_and_check() {
        let k = key();
        let mut w = ReplayWindow::default();
        let m = sample();
        let b = k.seal(&m);
        let (d, tag) = Msg::decode(&b).unwrap();
        assert_eq!(verify(&k, &w, &d, &tag, m.time_ms), Ok(()));
        // Verifying changes nothing; once accepted, it is a replay.
        assert_eq!(verify(&k, &w, &d, &tag, m.time_ms), Ok(()));
        w.accept(d.seq);
        assert_eq!(verify(&k, &w, &d, &tag, m.time_ms), Err(Refusal::Replay));
    }

    #[test]
    fn wrong_key_id_and_secret_and_any_flipped_bit() {
        let m = sample();
        let b = key().seal(&m);
        let (d, tag) = Msg::decode(&b).unwrap();
        let other = Key::from_hex(7, "ffeeddccbbaa99887766554433221100").unwrap();
        let w = ReplayWindow::default();
        assert_eq!(verify(&other, &w, &d, &tag, m.time_ms), Err(Refusal::Mac));
        let other_id = Key::from_hex(8, "00112233445566778899aabbccddeeff").unwrap();
        assert_eq!(
            verify(&other_id, &w, &d, &tag, m.time_ms),
            Err(Refusal::KeyId)
        );
        for bit in 0..MSG_LEN * 8 {
            let mut f = b;
            f[bit / 8] ^= 1 << (bit % 8);
            if let Ok((d, tag)) = Msg::decode(&f) {
                let r = verify(&key(), &w, &d, &tag, m.time_ms);
                assert!(r.is_err(), "bit {bit} flipped was accepted");
            }
        }
        // The window did not move for any of them.
        assert!(w.fresh(m.seq));
    }

    #[test]
    fn time_window() {
        let m = sample();
        let k = key();
        let (d, tag) = Msg::decode(&k.seal(&m)).unwrap();
        let w = ReplayWindow::default();
        let t = m.time_ms;
        assert_eq!(
            verify(&k, &w, &d, &tag, t + TIME_WINDOW_MS + 1),
            Err(Refusal::Time)
        );
        assert_eq!(
            verify(&k, &w, &d, &tag, t - TIME_WINDOW_MS - 1),
            Err(Refusal::Time)
        );
        assert_eq!(verify(&k, &w, &d, &tag, t + TIME_WINDOW_MS), Ok(()));
    }

    #[test]
    fn replay_window_takes_reordering_once() {
        let mut w = ReplayWindow::default();
        assert!(!w.fresh(0));
        for s in [100, 98, 99, 101, 40] {
            assert!(w.fresh(s), "{s}");
            w.accept(s);
        }
        for s in [100, 98, 99, 101, 40, 37] {
            assert!(!w.fresh(s), "{s} again, or behind the window");
        }
        assert!(w.fresh(97));
        w.accept(1000);
        assert!(!w.fresh(936));
        assert!(w.fresh(937));
        // After a restart: nothing up to the saved top, anything above.
        let r = ReplayWindow::after(w.top());
        assert!(!r.fresh(1000) && !r.fresh(999) && !r.fresh(937));
        assert!(r.fresh(1001));
    }

    #[test]
    fn seq_counter_survives_a_restart() {
        let mut s = SeqCounter::new(1_000);
        assert_eq!(s.next(1_000), 1_001);
        assert_eq!(s.next(500), 1_002);
        assert_eq!(s.next(5_000), 5_000);
        // A restart a moment later starts above what was sent.
        let mut r = SeqCounter::new(5_001);
        assert!(r.next(5_001) > 5_000);
    }
}
