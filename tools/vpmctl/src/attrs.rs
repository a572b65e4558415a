//! Decoding attribute payloads of the kernel's replies.

use crate::error::{Error, Result};

/// A NUL-terminated string.
pub fn string(p: &[u8]) -> Result<String> {
    let end = p.iter().position(|&b| b == 0).unwrap_or(p.len());
    String::from_utf8(p[..end].to_vec()).map_err(|_| Error::Protocol("string is not UTF-8".into()))
}

/// A host-order `u16`.
pub fn u16(p: &[u8]) -> Result<u16> {
    let b: [u8; 2] = p
        .try_into()
        .map_err(|_| Error::Protocol(format!("u16 attribute of {} bytes", p.len())))?;
    Ok(u16::from_ne_bytes(b))
}

/// A host-order `u32`.
pub fn u32(p: &[u8]) -> Result<u32> {
    let b: [u8; 4] = p
        .try_into()
        .map_err(|_| Error::Protocol(format!("u32 attribute of {} bytes", p.len())))?;
    Ok(u32::from_ne_bytes(b))
}

/// A netlink `uint`: 4 or 8 bytes, host order.
pub fn uint(p: &[u8]) -> Result<u64> {
    match p.len() {
        4 => u32(p).map(u64::from),
        8 => Ok(u64::from_ne_bytes(p.try_into().expect("length checked"))),
        n => Err(Error::Protocol(format!("uint attribute of {n} bytes"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked() {
        assert_eq!(u16(&7u16.to_ne_bytes()).unwrap(), 7);
        assert!(u16(&[1]).is_err());
        assert!(u32(&[1, 2]).is_err());
        assert_eq!(uint(&(1u64 << 40).to_ne_bytes()).unwrap(), 1 << 40);
        assert!(uint(&[0; 3]).is_err());
        assert_eq!(string(b"ab\0").unwrap(), "ab");
    }
}
