//! Typed reads of the attributes of the kernel's replies and
//! notifications.
//!
//! Reads go through neli's typed payload accessors, after checking the
//! payload's size against the type: neli reads an integer's leading bytes
//! whatever the payload's length, and its `String` reader takes the last
//! byte for the NUL (and panics on an empty payload).

use std::any::type_name;
use std::fmt::Debug;
use std::io::Cursor;
use std::net::IpAddr;

use neli::attr::{AttrHandle, Attribute};
use neli::consts::genl::NlAttrType;
use neli::err::DeError;
use neli::genl::{GenlAttrHandle, Genlmsghdr, Nlattr};
use neli::types::{Buffer, GenlBuffer};
use neli::{FromBytes, FromBytesWithInput, ToBytes};

use crate::error::{Error, Result};
use crate::uapi::Cmd;

/// A payload type of the spec.
pub trait Payload: Sized {
    fn decode<T: NlAttrType>(attr: &Nlattr<T, Buffer>) -> Result<Self, DeError>;
}

/// A fixed-size integer: the payload must be exactly its size.
fn exact<R: FromBytes, T: NlAttrType>(attr: &Nlattr<T, Buffer>) -> Result<R, DeError> {
    let want = std::mem::size_of::<R>();
    match attr.nla_payload().len() {
        n if n == want => attr.get_payload_as::<R>(),
        n => Err(DeError::new(format!("{} of {n} bytes", type_name::<R>()))),
    }
}

impl Payload for u8 {
    fn decode<T: NlAttrType>(attr: &Nlattr<T, Buffer>) -> Result<Self, DeError> {
        exact(attr)
    }
}

impl Payload for u16 {
    fn decode<T: NlAttrType>(attr: &Nlattr<T, Buffer>) -> Result<Self, DeError> {
        exact(attr)
    }
}

impl Payload for u32 {
    fn decode<T: NlAttrType>(attr: &Nlattr<T, Buffer>) -> Result<Self, DeError> {
        exact(attr)
    }
}

/// A netlink `uint`: 4 or 8 bytes, as the value needs.  (The spec has no
/// fixed 64-bit attribute.)
impl Payload for u64 {
    fn decode<T: NlAttrType>(attr: &Nlattr<T, Buffer>) -> Result<Self, DeError> {
        match attr.nla_payload().len() {
            4 => attr.get_payload_as::<u32>().map(u64::from),
            8 => attr.get_payload_as::<u64>(),
            n => Err(DeError::new(format!("uint of {n} bytes"))),
        }
    }
}

/// A NUL-terminated string.
impl Payload for String {
    fn decode<T: NlAttrType>(attr: &Nlattr<T, Buffer>) -> Result<Self, DeError> {
        match attr.nla_payload().as_ref().last() {
            Some(0) => attr.get_payload_as_with_len::<String>(),
            _ => Err(DeError::new("string without its NUL")),
        }
    }
}

/// An IPv4 or IPv6 address, by its length.
impl Payload for IpAddr {
    fn decode<T: NlAttrType>(attr: &Nlattr<T, Buffer>) -> Result<Self, DeError> {
        match attr.nla_payload().len() {
            4 => attr.get_payload_as::<[u8; 4]>().map(IpAddr::from),
            16 => attr.get_payload_as::<[u8; 16]>().map(IpAddr::from),
            n => Err(DeError::new(format!("address of {n} bytes"))),
        }
    }
}

/// The attributes of one message, of attribute set `T`.
pub struct Attrs<'a, T: NlAttrType> {
    handle: GenlAttrHandle<'a, T>,
    /// What the message holds ("mapping", "rule", ...), for errors.
    what: &'static str,
}

impl<'a, T: NlAttrType + Debug> Attrs<'a, T> {
    /// The attributes of a reply.
    pub fn of(what: &'static str, msg: &'a Genlmsghdr<Cmd, T>) -> Self {
        Self {
            handle: msg.attrs().get_attr_handle(),
            what,
        }
    }

    pub fn new(what: &'static str, attrs: GenlBuffer<T, Buffer>) -> Self {
        Self {
            handle: AttrHandle::new(attrs),
            what,
        }
    }

    /// Attribute `ty`, if the message has it.
    pub fn get<R: Payload>(&self, ty: T) -> Result<Option<R>> {
        let Some(attr) = self.handle.get_attribute(ty) else {
            return Ok(None);
        };
        R::decode(attr).map(Some).map_err(|e| {
            Error::Protocol(format!(
                "{} attribute {:?}: {e}",
                self.what,
                attr.nla_type().nla_type()
            ))
        })
    }

    /// Every attribute `ty` (a multi-attr), in order.
    pub fn get_all<R: Payload>(&self, ty: T) -> Result<Vec<R>> {
        self.handle
            .iter()
            .filter(|a| *a.nla_type().nla_type() == ty)
            .map(|a| {
                R::decode(a)
                    .map_err(|e| Error::Protocol(format!("{} attribute {ty:?}: {e}", self.what)))
            })
            .collect()
    }

    /// Attribute `ty`, which the message must have.
    pub fn require<R: Payload>(&self, ty: T) -> Result<R> {
        let missing = || Error::Protocol(format!("{} without attribute {ty:?}", self.what));
        self.get(ty)?.ok_or_else(missing)
    }
}

impl<T: NlAttrType + Debug> Attrs<'static, T> {
    /// A notification's attributes, read as set `T`.  Notifications of
    /// every set arrive on one socket, so they are received with untyped
    /// (u16) attributes and typed here, once their command says which set
    /// they belong to.
    pub fn retyped(what: &'static str, raw: &GenlBuffer<u16, Buffer>) -> Result<Self> {
        let bad = |e: &dyn std::fmt::Display| Error::Protocol(format!("{what}: {e}"));
        let mut bytes = Cursor::new(Vec::new());
        raw.to_bytes(&mut bytes).map_err(|e| bad(&e))?;
        let len = bytes.get_ref().len();
        let attrs = GenlBuffer::from_bytes_with_input(&mut Cursor::new(bytes.into_inner()), len)
            .map_err(|e| bad(&e))?;
        Ok(Self::new(what, attrs))
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::connection::attr;
    use crate::uapi::StatusAttr;

    /// Attributes as a test writes them: (type, payload bytes).
    pub fn attrs<T: NlAttrType + Debug, P: AsRef<[u8]>>(
        what: &'static str,
        list: &[(T, P)],
    ) -> Attrs<'static, T> {
        let mut buf = GenlBuffer::new();
        for (ty, payload) in list {
            buf.push(attr(*ty, payload.as_ref().to_vec()).unwrap());
        }
        Attrs::new(what, buf)
    }

    #[test]
    fn sizes_are_checked() {
        let a = attrs::<_, &[u8]>(
            "status",
            &[
                (StatusAttr::Hooks, &7u16.to_ne_bytes()),
                (StatusAttr::PktsSeen, &(1u64 << 40).to_ne_bytes()),
                (StatusAttr::PktsXlatIn, &5u32.to_ne_bytes()),
                (StatusAttr::PktsNoAid, &[0; 3]),
                (StatusAttr::Version, b"ab\0"),
                (StatusAttr::PktsDropped, b""),
                (StatusAttr::PktsForeign, b"ab"),
            ],
        );
        assert_eq!(a.require::<u16>(StatusAttr::Hooks).unwrap(), 7);
        assert!(a.get::<u32>(StatusAttr::Hooks).is_err());
        assert!(a.get::<u8>(StatusAttr::Hooks).is_err());
        assert_eq!(a.require::<u64>(StatusAttr::PktsSeen).unwrap(), 1 << 40);
        assert_eq!(a.require::<u64>(StatusAttr::PktsXlatIn).unwrap(), 5);
        assert!(a.get::<u64>(StatusAttr::PktsNoAid).is_err());
        assert_eq!(a.require::<String>(StatusAttr::Version).unwrap(), "ab");
        assert!(a.get::<String>(StatusAttr::PktsDropped).is_err());
        assert!(a.get::<String>(StatusAttr::PktsForeign).is_err());
        assert_eq!(a.get::<u32>(StatusAttr::FlowsNew).unwrap(), None);
        let e = a.require::<u32>(StatusAttr::FlowsNew).unwrap_err();
        assert!(
            e.to_string().contains("status without attribute FlowsNew"),
            "{e}"
        );
    }

    #[test]
    fn addresses_by_length() {
        use crate::uapi::RuleAttr;
        let v6 = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let a = attrs::<_, &[u8]>(
            "rule",
            &[
                (RuleAttr::Addr, &[10, 0, 0, 1]),
                (RuleAttr::Port, &v6),
                (RuleAttr::Aid, &[1, 2]),
            ],
        );
        assert_eq!(
            a.require::<IpAddr>(RuleAttr::Addr).unwrap().to_string(),
            "10.0.0.1"
        );
        assert_eq!(
            a.require::<IpAddr>(RuleAttr::Port).unwrap().to_string(),
            "2001:db8::1"
        );
        assert!(a.get::<IpAddr>(RuleAttr::Aid).is_err());
    }

    #[test]
    fn notifications_are_typed_by_their_set() {
        let mut raw = GenlBuffer::<u16, Buffer>::new();
        raw.push(attr(u16::from(StatusAttr::Hooks), 4u32).unwrap());
        let a = Attrs::<StatusAttr>::retyped("status", &raw).unwrap();
        assert_eq!(a.require::<u32>(StatusAttr::Hooks).unwrap(), 4);
    }
}
