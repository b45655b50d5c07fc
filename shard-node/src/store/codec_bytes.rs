//! Value formats of the store's trees. Every value ends in a CRC-32 of the bytes before it, so
//! a flipped bit is reported (with its key) instead of served.

use crate::{Error, Result};

pub fn seal(mut bytes: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&bytes);
    bytes.extend(crc.to_le_bytes());
    bytes
}

/// The payload of a sealed value, if its checksum holds.
pub fn open<'a>(bytes: &'a [u8], what: &str, path: &str) -> Result<&'a [u8]> {
    let corrupt = || Error::Corrupt { path: path.to_string(), reason: format!("{what}: checksum mismatch") };
    if bytes.len() < 4 {
        return Err(corrupt());
    }
    let (payload, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(payload).to_le_bytes() != crc {
        return Err(corrupt());
    }
    Ok(payload)
}

/// Reads little-endian fields off the front of a payload.
pub struct Reader<'a> {
    bytes: &'a [u8],
    what: String,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8], what: impl Into<String>) -> Reader<'a> {
        Reader { bytes, what: what.into() }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(Error::BadInput(format!("{}: truncated", self.what)));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    pub fn string(&mut self) -> Result<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| Error::BadInput(format!("{}: not UTF-8", self.what)))
    }

    pub fn rest(self) -> &'a [u8] {
        self.bytes
    }
}

pub fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u32).to_le_bytes());
    out.extend(s.as_bytes());
}
