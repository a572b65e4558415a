//! Properties of the checksum arithmetic, over random packets.

use proptest::prelude::*;

use crate::vpm_csum::{checksum, fold, replace2, replace2_udp, sum_bytes};

/// Whether `data` (checksum field included) plus `pseudo` verifies.
fn verifies(data: &[u8], pseudo: u64) -> bool {
    fold(sum_bytes(data, pseudo)) == 0xffff
}

/// Maps one's complement negative zero (0xffff) to positive zero.
fn ones_zero_norm(x: u16) -> u16 {
    if x == 0xffff {
        0
    } else {
        x
    }
}

fn word(data: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([data[at], data[at + 1]])
}

/// A packet of 8..=1500 bytes (odd lengths included), a checksum field and
/// a different 16-bit field to rewrite, both at even offsets.
fn packet() -> impl Strategy<Value = (Vec<u8>, usize, usize, u16, u64)> {
    (8usize..=1500)
        .prop_flat_map(|len| {
            (
                proptest::collection::vec(any::<u8>(), len),
                0..len / 2,
                0..len / 2,
                any::<u16>(),
                any::<u32>(),
            )
        })
        .prop_filter("distinct fields", |(_, c, f, _, _)| c != f)
        .prop_map(|(data, c, f, new, pseudo)| (data, 2 * c, 2 * f, new, u64::from(pseudo)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// A computed checksum makes the data verify.
    #[test]
    fn checksum_verifies((mut data, c, _f, _new, pseudo) in packet()) {
        data[c] = 0;
        data[c + 1] = 0;
        let sum = checksum(&data, pseudo);
        data[c..c + 2].copy_from_slice(&sum.to_be_bytes());
        prop_assert!(verifies(&data, pseudo));
    }

    /// Incremental update equals full recomputation, and still verifies.
    #[test]
    fn replace2_equals_recompute((mut data, c, f, new, pseudo) in packet()) {
        data[c] = 0;
        data[c + 1] = 0;
        let before = checksum(&data, pseudo);
        data[c..c + 2].copy_from_slice(&before.to_be_bytes());
        let old = word(&data, f);

        data[f..f + 2].copy_from_slice(&new.to_be_bytes());
        let updated = replace2(before, old, new);
        data[c..c + 2].copy_from_slice(&updated.to_be_bytes());
        prop_assert!(verifies(&data, pseudo));

        // Recompute from scratch over the same bytes, field zeroed.
        let mut zeroed = data.clone();
        zeroed[c] = 0;
        zeroed[c + 1] = 0;
        let full = checksum(&zeroed, pseudo);
        // One's complement has two zeros.  The two results can only differ
        // in that representation, when everything covered sums to zero.
        prop_assert_eq!(ones_zero_norm(updated), ones_zero_norm(full));
    }

    /// Rewriting a field there and back restores the original checksum,
    /// up to the two representations of zero (0x0000 and 0xffff).
    #[test]
    fn replace2_round_trips(check in any::<u16>(), old in any::<u16>(), new in any::<u16>()) {
        let back = replace2(replace2(check, old, new), new, old);
        prop_assert_eq!(ones_zero_norm(back), ones_zero_norm(check));
    }

    /// UDP over IPv4: zero stays zero; nothing else ever becomes zero.
    #[test]
    fn udp4_never_invents_or_emits_zero(check in any::<u16>(), old in any::<u16>(), new in any::<u16>()) {
        let out = replace2_udp(check, old, new);
        if check == 0 {
            prop_assert_eq!(out, 0);
        } else {
            prop_assert_ne!(out, 0);
        }
    }
}

#[test]
fn fold_known_values() {
    assert_eq!(fold(0), 0);
    assert_eq!(fold(0xffff), 0xffff);
    assert_eq!(fold(0x1_0000), 1);
    assert_eq!(fold(0xffff_ffff_ffff), 0xffff);
}

#[test]
fn rfc1071_example() {
    // RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
    let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
    assert_eq!(fold(sum_bytes(&data, 0)), 0xddf2);
    assert_eq!(checksum(&data, 0), !0xddf2);
}

#[test]
fn replace2_round_trip_through_negative_zero() {
    // Found by proptest: 0xffff -> 0x0000 -> 0x0000 is a round trip of zero.
    assert_eq!(ones_zero_norm(replace2(replace2(0xffff, 0, 0), 0, 0)), 0);
}
