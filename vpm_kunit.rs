// SPDX-License-Identifier: GPL-2.0

//! In-kernel KUnit tests: the pure logic again, built by the kernel's own
//! compiler flags (overflow checks, debug assertions) and run at insmod.
//! `make check` collects the results from the kernel log.

use kernel::prelude::*;

#[kunit_tests(vpm_csum)]
mod csum {
    use crate::vpm_csum::{checksum, fold, replace2, replace2_udp, sum_bytes};

    /// The UDP header of RFC 1071's worked example style: ports 9000 -> 40000.
    const HDR: [u8; 8] = [0x23, 0x28, 0x9c, 0x40, 0x00, 0x08, 0x00, 0x00];

    #[test]
    fn fold_carries_around() {
        assert_eq!(fold(0x0001_fffe), 0xffff);
        assert_eq!(fold(0x0002_ffff), 0x0002);
        assert_eq!(fold(0), 0);
    }

    #[test]
    fn checksum_verifies() {
        let c = checksum(&HDR, 0);
        let mut h = HDR;
        h[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(fold(sum_bytes(&h, 0)), 0xffff);
    }

    #[test]
    fn replace2_matches_recomputation() {
        let old = u16::from_be_bytes([HDR[2], HDR[3]]);
        let new: u16 = 23456;
        let mut h = HDR;
        h[2..4].copy_from_slice(&new.to_be_bytes());
        assert_eq!(replace2(checksum(&HDR, 0), old, new), checksum(&h, 0));
    }

    #[test]
    fn udp4_zero_rules() {
        assert_eq!(replace2_udp(0, 9000, 40000), 0);
        // A result of zero is sent as 0xffff: 0xffff ~ +0 in one's complement.
        let check = replace2(0x0000, 0x0000, 0xffff);
        assert_eq!(check, 0);
        assert_eq!(replace2_udp(0xffff, 0x0000, 0xffff), 0xffff);
    }
}

#[kunit_tests(vpm_alloc)]
mod alloc {
    use crate::vpm_alloc::{AllocError, PortAllocator, WORDS};
    use kernel::prelude::*;

    fn storage() -> KVec<u64> {
        KVec::from_elem(0u64, WORDS, GFP_KERNEL).expect("8 KiB for the bitmap")
    }

    #[test]
    fn exhausts_then_reuses() {
        let mut a = PortAllocator::new(storage(), 20000, 20003).unwrap();
        for want in 20000..=20003u16 {
            assert_eq!(a.alloc(), Ok(want));
        }
        assert_eq!(a.alloc(), Err(AllocError::Exhausted));
        assert!(a.release(20002));
        assert_eq!(a.alloc(), Ok(20002));
        assert_eq!(a.in_use(), 4);
    }

    #[test]
    fn reserve_and_range_rules() {
        let mut a = PortAllocator::new(storage(), 100, 163).unwrap();
        assert_eq!(a.reserve(163), Ok(()));
        assert_eq!(a.reserve(163), Err(AllocError::Taken));
        assert_eq!(a.reserve(164), Err(AllocError::OutOfRange));
        assert_eq!(a.set_range(100, 162), Err(AllocError::InUseOutside));
        assert_eq!(a.set_range(150, 200), Ok(()));
        assert_eq!(a.range(), (150, 200));
    }
}

#[kunit_tests(vpm_rules)]
mod rules {
    use crate::vpm_rules::{select, sort, Family, Match, RuleError, Source};

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut out = [0; 16];
        out[..4].copy_from_slice(&a);
        out
    }

    #[test]
    fn longest_prefix_then_port_then_default() {
        let mut rules = [
            (Match::ANY, 0u8),
            (Match::new(Family::V4, v4([10, 0, 0, 0]), 8, 0).unwrap(), 1),
            (Match::new(Family::V4, v4([10, 1, 0, 0]), 16, 0).unwrap(), 2),
            (
                Match::new(Family::V4, v4([10, 1, 0, 0]), 16, 5000).unwrap(),
                3,
            ),
        ];
        sort(&mut rules);
        let src = |a, port| Source {
            family: Family::V4,
            addr: v4(a),
            port,
        };
        assert_eq!(
            select(&rules, &src([10, 1, 2, 3], 5000), |_| true),
            Some(&3)
        );
        assert_eq!(select(&rules, &src([10, 1, 2, 3], 1), |_| true), Some(&2));
        assert_eq!(select(&rules, &src([10, 9, 2, 3], 1), |_| true), Some(&1));
        assert_eq!(select(&rules, &src([11, 0, 0, 1], 1), |_| true), Some(&0));
        assert_eq!(
            Match::new(Family::V4, v4([10, 1, 2, 3]), 16, 0),
            Err(RuleError::HostBits)
        );
    }
}

#[kunit_tests(vpm_parse)]
mod parse {
    use crate::vpm_parse::{ipv4, ipv6, Parsed, IPPROTO_UDP};

    /// IPv4 + UDP 9000 -> 40000, 4 bytes of payload.
    const V4: [u8; 32] = [
        0x45,
        0,
        0,
        32,
        0,
        0,
        0x40,
        0,
        64,
        IPPROTO_UDP,
        0,
        0,
        192,
        0,
        2,
        1,
        198,
        51,
        100,
        2, //
        0x23,
        0x28,
        0x9c,
        0x40,
        0,
        12,
        0x12,
        0x34,
        1,
        2,
        3,
        4,
    ];

    #[test]
    fn finds_ports_and_rejects_truncation() {
        let Parsed::Flow(f) = ipv4(&V4[..]) else {
            panic!("not a flow");
        };
        assert_eq!((f.sport, f.dport, f.check, f.l4), (9000, 40000, 0x1234, 20));
        assert_eq!(ipv4(&V4[..25]), Parsed::Malformed);
        assert_eq!(ipv6(&V4[..]), Parsed::Malformed);
    }
}

#[kunit_tests(vpm_flow)]
mod flow {
    use crate::vpm_flow::{
        FlowKey, FlowTable, Pin, PinState, Seen, Slot, TCP_ACK, TCP_RST, TCP_SYN,
    };
    use crate::vpm_rules::Family;
    use kernel::prelude::*;

    #[test]
    fn confirms_and_ends() {
        let mut slots = KVVec::new();
        for _ in 0..64 {
            slots
                .push(Slot::default(), GFP_KERNEL)
                .expect("1 KiB of slots");
        }
        let t = FlowTable::new(slots, [7, 8]).unwrap();
        let k = FlowKey {
            proto: 6,
            family: Family::V4,
            fixed: 9000,
            port: 40000,
            addr: [0; 16],
        };
        let pin = Pin {
            anon: 20000,
            id: 1 << 40,
        };
        let from = |flags, established| Seen::Instance {
            tcp: true,
            flags,
            pin,
            established,
        };
        t.insert(&k, pin, None, 100, true);
        assert_eq!(t.lookup_state(&k, 129), Some((pin, PinState::Unconfirmed)));
        // Neither the SYN-ACK nor a listener's ACK confirms; a connected
        // socket's ACK does.
        t.touch(&k, 101, from(TCP_SYN | TCP_ACK, false));
        t.touch(&k, 101, from(TCP_ACK, false));
        assert_eq!(t.lookup_state(&k, 101), Some((pin, PinState::Unconfirmed)));
        t.touch(&k, 102, from(TCP_ACK, true));
        assert_eq!(t.lookup_state(&k, 7000), Some((pin, PinState::Confirmed)));
        // A client RST does not end a confirmed pin; the instance's does.
        t.touch(
            &k,
            103,
            Seen::Client {
                tcp: true,
                flags: TCP_RST,
            },
        );
        assert_eq!(t.lookup(&k, 103), Some(pin));
        assert!(t.touch(&k, 104, from(TCP_RST, true)));
        assert_eq!(t.lookup(&k, 104), None);
    }
}

#[kunit_tests(vpm_error)]
mod error {
    use crate::vpm_error::TableError::{self, *};
    use crate::vpm_keys::Aid;
    use core::fmt::{self, Write};

    /// Counts what is written.
    struct Len(usize);

    impl Write for Len {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0 += s.len();
            Ok(())
        }
    }

    /// The extended ack holds 79 bytes and a NUL: every message, with its
    /// numbers and AID at their longest, must fit, or users read half of it.
    #[test]
    fn messages_fit_the_extended_ack() {
        let aid = Aid::new(b"a123456789012345678901234567890").expect("a 31-byte AID");
        let (n, p) = (u32::MAX, u16::MAX);
        let all: [TableError; 19] = [
            RangeExhausted {
                in_use: n,
                lo: p,
                hi: p,
            },
            TooManyEntries { max: n },
            RangeBound {
                in_use: n,
                lo: p,
                hi: p,
            },
            PortOutOfRange { lo: p, hi: p },
            PortTaken,
            OtherAnonPort { anon: p },
            NotFound,
            RangeInUse,
            BadRange,
            LimitBelowUse { entries: n },
            RuleWithoutMapping,
            RuleExists { aid },
            RuleNotFound,
            TooManyRules { max: n },
            PortFullOfRules,
            PortFullOfCgroups,
            TooManyPeers { max: n },
            PeerNotFound,
            NoMemory,
        ];
        for e in all {
            let mut len = Len(0);
            write!(len, "{e}").expect("formats");
            assert!(len.0 <= 79);
        }
    }
}
