//! The cooperative protocol's messages on the wire (docs/COOPERATIVE.md):
//! one fixed-size layout for requests and answers, encoded and decoded
//! without I/O, so that every byte of it is tested on the host.
//!
//! Decoding checks the layout only (sizes, reserved bits, the AID's
//! characters); whether the sender may say it is [`super::auth`]'s and
//! the server's business.

use std::net::{IpAddr, Ipv6Addr};

use crate::aid::Aid;

/// The protocol version this agent speaks.
pub const VERSION: u8 = 1;

/// Bytes before the MAC (what the MAC covers).
pub const BODY_LEN: usize = 100;
/// The HMAC-SHA-256 tag.
pub const MAC_LEN: usize = 32;
/// Every message, request or answer.
pub const MSG_LEN: usize = BODY_LEN + MAC_LEN;

/// The longest AID on the wire (as the kernel's, 31 characters).
const AID_MAX: usize = 31;
/// The AID's field: up to [`AID_MAX`] bytes, zero-padded.
const AID_FIELD: usize = 32;
// Every AID vpmctl accepts fits the field.
const _: () = assert!(crate::uapi::AID_MAX_LEN <= AID_MAX);

/// Bit 7 of the opcode byte: an answer.
const ANSWER_BIT: u8 = 0x80;

/// What a message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// Create, renew (lifetime > 0) or delete (lifetime 0) a mapping.
    Map = 1,
}

/// Result codes (the answer's `result` byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultCode {
    Success = 0,
    /// The version byte is not one this agent speaks; the answer carries
    /// the version it does speak.
    UnsuppVersion = 1,
    /// Not on the allow-list, unknown key, bad MAC, replay, outside the
    /// time window, or the mapping is another peer's.
    NotAuthorized = 2,
    /// The message is not a well-formed request.
    MalformedRequest = 3,
    /// The opcode is not one this agent knows.
    UnsuppOpcode = 4,
    /// The server does not export this fixed port (for this AID and
    /// protocol) to the peer.
    NoSuchPort = 5,
    /// The anonymous range or the namespace's entry limit is exhausted.
    NoResources = 6,
    /// The client address in the request is not the datagram's source
    /// (a NAT between the hosts, or a forged request).
    AddressMismatch = 7,
}

impl ResultCode {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Success,
            1 => Self::UnsuppVersion,
            2 => Self::NotAuthorized,
            3 => Self::MalformedRequest,
            4 => Self::UnsuppOpcode,
            5 => Self::NoSuchPort,
            6 => Self::NoResources,
            7 => Self::AddressMismatch,
            _ => return None,
        })
    }

    /// The name the logs, the state file and the docs use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::UnsuppVersion => "unsupported-version",
            Self::NotAuthorized => "not-authorized",
            Self::MalformedRequest => "malformed-request",
            Self::UnsuppOpcode => "unsupported-opcode",
            Self::NoSuchPort => "no-such-port",
            Self::NoResources => "no-resources",
            Self::AddressMismatch => "address-mismatch",
        }
    }
}

/// One message, request or answer (docs/COOPERATIVE.md, "Layout").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub answer: bool,
    pub opcode: Opcode,
    /// [`ResultCode::Success`] in requests.
    pub result: ResultCode,
    /// Which of the peers' shared keys made the MAC.
    pub key_id: u32,
    /// The sender's epoch: changes when its mapping state was lost.
    pub epoch: u32,
    /// The sender's sequence number towards this peer.
    pub seq: u64,
    /// The sender's wall clock, ms since the Unix epoch.
    pub time_ms: u64,
    /// A request's nonce; an answer echoes its request's.
    pub nonce: [u8; 12],
    /// Seconds: requested (0 deletes), or granted.
    pub lifetime: u32,
    /// The fixed port the applications use.
    pub port: u16,
    /// The negotiated (server's anonymous) port; 0 in requests and in
    /// answers that are not a success.
    pub negotiated: u16,
    /// Protocol bits: 1 TCP, 2 UDP.
    pub protos: u8,
    pub aid: Aid,
    /// The client's address as the client sees it (IPv4 mapped into
    /// IPv6); the server compares it with the datagram's source.
    pub client: Ipv6Addr,
}

/// Why bytes are not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter or longer than [`MSG_LEN`].
    Length(usize),
    /// A version this agent does not speak (the byte is given).
    Version(u8),
    /// An opcode this agent does not know (the byte is given).
    Opcode(u8),
    /// A field holds a value the layout forbids (its name is given).
    Field(&'static str),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Length(n) => write!(f, "{n} bytes, not {MSG_LEN}"),
            Self::Version(v) => write!(f, "version {v}, not {VERSION}"),
            Self::Opcode(o) => write!(f, "unknown opcode {o}"),
            Self::Field(name) => write!(f, "invalid {name}"),
        }
    }
}

impl DecodeError {
    /// The result code an answer to it carries.
    pub fn result(self) -> ResultCode {
        match self {
            Self::Version(_) => ResultCode::UnsuppVersion,
            Self::Opcode(_) => ResultCode::UnsuppOpcode,
            Self::Length(_) | Self::Field(_) => ResultCode::MalformedRequest,
        }
    }
}

/// The protocol bits a message may carry.
pub const PROTO_TCP: u8 = 1;
pub const PROTO_UDP: u8 = 2;

/// The protocols of a message's bits (None: neither).
pub fn proto_of(protos: u8) -> Option<crate::proto::Proto> {
    use crate::proto::Proto;
    match (protos & PROTO_TCP != 0, protos & PROTO_UDP != 0) {
        (true, true) => Some(Proto::Both),
        (true, false) => Some(Proto::Tcp),
        (false, true) => Some(Proto::Udp),
        (false, false) => None,
    }
}

/// A message's bits for these protocols.
pub fn protos_of(p: crate::proto::Proto) -> u8 {
    use crate::proto::Proto;
    match p {
        Proto::Tcp => PROTO_TCP,
        Proto::Udp => PROTO_UDP,
        Proto::Both => PROTO_TCP | PROTO_UDP,
    }
}

/// Maps an address into the message's IPv6 form.
pub fn to_wire_addr(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// The message's address as the socket API gives it.
pub fn from_wire_addr(a: Ipv6Addr) -> IpAddr {
    match a.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(a),
    }
}

impl Msg {
    /// The body (the MAC's input) followed by `mac`.
    pub fn encode(&self, mac: &[u8; MAC_LEN]) -> [u8; MSG_LEN] {
        let mut b = [0u8; MSG_LEN];
        b[..BODY_LEN].copy_from_slice(&self.body());
        b[BODY_LEN..].copy_from_slice(mac);
        b
    }

    /// The bytes the MAC covers.
    pub fn body(&self) -> [u8; BODY_LEN] {
        let mut b = [0u8; BODY_LEN];
        b[0] = VERSION;
        b[1] = self.opcode as u8 | if self.answer { ANSWER_BIT } else { 0 };
        b[2] = self.result as u8;
        // b[3]: reserved, zero.
        b[4..8].copy_from_slice(&self.key_id.to_be_bytes());
        b[8..12].copy_from_slice(&self.epoch.to_be_bytes());
        b[12..20].copy_from_slice(&self.seq.to_be_bytes());
        b[20..28].copy_from_slice(&self.time_ms.to_be_bytes());
        b[28..40].copy_from_slice(&self.nonce);
        b[40..44].copy_from_slice(&self.lifetime.to_be_bytes());
        b[44..46].copy_from_slice(&self.port.to_be_bytes());
        b[46..48].copy_from_slice(&self.negotiated.to_be_bytes());
        b[48] = self.protos;
        let aid = self.aid.as_str().as_bytes();
        b[49] = aid.len() as u8;
        b[50..50 + aid.len()].copy_from_slice(aid);
        b[82..98].copy_from_slice(&self.client.octets());
        // b[98..100]: reserved, zero.
        b
    }

    /// Decodes a message; its MAC is returned beside it, unchecked.
    pub fn decode(b: &[u8]) -> Result<(Self, [u8; MAC_LEN]), DecodeError> {
        // The version first, so that a later version's longer message is
        // answered "unsupported version", not "malformed".
        match b.first() {
            Some(&VERSION) => {}
            Some(&v) => return Err(DecodeError::Version(v)),
            None => return Err(DecodeError::Length(0)),
        }
        if b.len() != MSG_LEN {
            return Err(DecodeError::Length(b.len()));
        }
        let opcode = match b[1] & !ANSWER_BIT {
            1 => Opcode::Map,
            o => return Err(DecodeError::Opcode(o)),
        };
        let answer = b[1] & ANSWER_BIT != 0;
        let result = ResultCode::from_u8(b[2]).ok_or(DecodeError::Field("result"))?;
        if !answer && result != ResultCode::Success {
            return Err(DecodeError::Field("result"));
        }
        if b[3] != 0 || b[98..100] != [0, 0] {
            return Err(DecodeError::Field("reserved"));
        }
        let be32 = |at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
        let be64 = |at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap());
        let be16 = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
        let protos = b[48];
        if protos == 0 || protos & !(PROTO_TCP | PROTO_UDP) != 0 {
            return Err(DecodeError::Field("protocols"));
        }
        let port = be16(44);
        if port == 0 {
            return Err(DecodeError::Field("port"));
        }
        let negotiated = be16(46);
        if !answer && negotiated != 0 {
            return Err(DecodeError::Field("negotiated port"));
        }
        let aid_len = usize::from(b[49]);
        let field = &b[50..50 + AID_FIELD];
        if aid_len == 0 || aid_len > AID_MAX || field[aid_len..].iter().any(|&c| c != 0) {
            return Err(DecodeError::Field("AID"));
        }
        let aid = std::str::from_utf8(&field[..aid_len])
            .ok()
            .and_then(|s| s.parse::<Aid>().ok())
            .ok_or(DecodeError::Field("AID"))?;
        let client = Ipv6Addr::from(<[u8; 16]>::try_from(&b[82..98]).unwrap());
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&b[28..40]);
        let mut mac = [0u8; MAC_LEN];
        mac.copy_from_slice(&b[BODY_LEN..]);
        Ok((
            Msg {
                answer,
                opcode,
                result,
                key_id: be32(4),
                epoch: be32(8),
                seq: be64(12),
                time_ms: be64(20),
                nonce,
                lifetime: be32(40),
                port,
                negotiated,
                protos,
                aid,
                client,
            },
            mac,
        ))
    }
}

/// The version byte and result of an unauthenticated error answer to
/// bytes that did not decode: [`VERSION`], the MAP answer opcode, the
/// result; everything else zero, the MAC too.  A client cannot verify it
/// and treats it as a hint (docs/COOPERATIVE.md, "Errors").
pub fn error_answer(result: ResultCode) -> [u8; MSG_LEN] {
    let mut b = [0u8; MSG_LEN];
    b[0] = VERSION;
    b[1] = Opcode::Map as u8 | ANSWER_BIT;
    b[2] = result as u8;
    b
}

/// Whether bytes are an unauthenticated error answer (see
/// [`error_answer`]), and its result.
pub fn unauthenticated_error(b: &[u8]) -> Option<ResultCode> {
    if b.len() != MSG_LEN || b[0] != VERSION || b[1] != Opcode::Map as u8 | ANSWER_BIT {
        return None;
    }
    if b[3..].iter().any(|&c| c != 0) {
        return None;
    }
    ResultCode::from_u8(b[2]).filter(|r| *r != ResultCode::Success)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample() -> Msg {
        Msg {
            answer: false,
            opcode: Opcode::Map,
            result: ResultCode::Success,
            key_id: 7,
            epoch: 0x0102_0304,
            seq: 42,
            time_ms: 1_700_000_000_000,
            nonce: [9; 12],
            lifetime: 120,
            port: 9000,
            negotiated: 0,
            protos: PROTO_TCP | PROTO_UDP,
            aid: "a".parse().unwrap(),
            client: to_wire_addr("10.0.0.1".parse().unwrap()),
        }
    }

    #[test]
    fn layout_matches_the_spec() {
        let b = sample().encode(&[0xee; MAC_LEN]);
        assert_eq!(b.len(), 132);
        assert_eq!(&b[..4], &[1, 1, 0, 0]);
        assert_eq!(&b[4..8], &7u32.to_be_bytes());
        assert_eq!(&b[44..46], &9000u16.to_be_bytes());
        assert_eq!(b[48], 3);
        assert_eq!(b[49], 1);
        assert_eq!(b[50], b'a');
        assert_eq!(
            &b[82..98],
            &"::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(&b[100..], &[0xee; 32]);
    }

    #[test]
    fn version_is_checked_before_length() {
        assert_eq!(Msg::decode(&[2, 0, 0]), Err(DecodeError::Version(2)));
        assert_eq!(
            Msg::decode(&[2]).unwrap_err().result(),
            ResultCode::UnsuppVersion
        );
        assert_eq!(Msg::decode(&[]), Err(DecodeError::Length(0)));
    }

    #[test]
    fn requests_carry_no_result_or_negotiated_port() {
        let mut b = sample().encode(&[0; MAC_LEN]);
        b[2] = 2;
        assert_eq!(Msg::decode(&b), Err(DecodeError::Field("result")));
        let mut b = sample().encode(&[0; MAC_LEN]);
        b[47] = 1;
        assert_eq!(Msg::decode(&b), Err(DecodeError::Field("negotiated port")));
    }

    #[test]
    fn error_answers_are_recognised() {
        let b = error_answer(ResultCode::NotAuthorized);
        assert_eq!(unauthenticated_error(&b), Some(ResultCode::NotAuthorized));
        // It does not decode as a message (no AID, no port).
        assert!(Msg::decode(&b).is_err());
        // A real answer is not one.
        let mut m = sample();
        m.answer = true;
        assert_eq!(unauthenticated_error(&m.encode(&[0; MAC_LEN])), None);
    }

    fn arb_aid() -> impl Strategy<Value = Aid> {
        "[A-Za-z0-9._-]{1,31}".prop_map(|s| s.parse().unwrap())
    }

    prop_compose! {
        fn arb_msg()(answer in any::<bool>(), result in 0u8..8, key_id in any::<u32>(),
                     epoch in any::<u32>(), seq in any::<u64>(), time_ms in any::<u64>(),
                     nonce in any::<[u8; 12]>(), lifetime in any::<u32>(), port in 1u16..,
                     negotiated in any::<u16>(), protos in 1u8..4, aid in arb_aid(),
                     client in any::<[u8; 16]>()) -> Msg {
            Msg {
                answer,
                opcode: Opcode::Map,
                result: if answer { ResultCode::from_u8(result).unwrap() } else { ResultCode::Success },
                key_id, epoch, seq, time_ms, nonce, lifetime, port,
                negotiated: if answer { negotiated } else { 0 },
                protos, aid, client: Ipv6Addr::from(client),
            }
        }
    }

    proptest! {
        #[test]
        fn round_trip(m in arb_msg(), mac in any::<[u8; 32]>()) {
            let b = m.encode(&mac);
            prop_assert_eq!(Msg::decode(&b), Ok((m, mac)));
        }

        #[test]
        fn every_truncation_and_extension_is_refused(m in arb_msg(), extra in 1usize..64) {
            let b = m.encode(&[0; MAC_LEN]);
            for n in 0..MSG_LEN {
                let e = Msg::decode(&b[..n]).unwrap_err();
                prop_assert_eq!(e.result(), ResultCode::MalformedRequest);
            }
            let mut long = b.to_vec();
            long.extend(std::iter::repeat_n(0, extra));
            prop_assert_eq!(Msg::decode(&long), Err(DecodeError::Length(MSG_LEN + extra)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Msg::decode(&b);
            let _ = unauthenticated_error(&b);
        }

        #[test]
        fn one_flipped_byte_decodes_or_is_refused(m in arb_msg(), at in 0usize..BODY_LEN, x in 1u8..) {
            let mut b = m.encode(&[0; MAC_LEN]);
            b[at] ^= x;
            if let Ok((d, _)) = Msg::decode(&b) {
                // What decodes re-encodes to the same bytes: no field is
                // read loosely.
                prop_assert_eq!(&d.encode(&[0; MAC_LEN])[..], &b[..]);
            }
        }
    }
}
