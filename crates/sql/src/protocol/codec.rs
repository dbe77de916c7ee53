//! Bounds-checked decoding and encoding of the protocol's basic types:
//! fixed-width little-endian integers, length-encoded integers and strings,
//! NUL-terminated strings.
//!
//! Every read on client input goes through [`Reader`], which never panics:
//! running past the end is [`Malformed`], and the caller turns that into
//! ERR 1835 or a closed connection.

/// A payload ended early or held an impossible value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed packet: {}", self.0)
    }
}

/// A cursor over one payload.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.remaining() {
            return Err(Malformed("field runs past the end of the packet"));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.bytes(1)?[0])
    }

    /// Two bytes, little-endian.
    pub fn u16(&mut self) -> Result<u16, Malformed> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// Three bytes, little-endian.
    pub fn u24(&mut self) -> Result<u32, Malformed> {
        let b = self.bytes(3)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], 0]))
    }

    /// Four bytes, little-endian.
    pub fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Eight bytes, little-endian.
    pub fn u64(&mut self) -> Result<u64, Malformed> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A length-encoded integer (`0xfb` is NULL only in rows; an error here).
    pub fn lenenc_int(&mut self) -> Result<u64, Malformed> {
        match self.u8()? {
            n @ 0..=0xfa => Ok(u64::from(n)),
            0xfc => Ok(u64::from(self.u16()?)),
            0xfd => Ok(u64::from(self.u24()?)),
            0xfe => self.u64(),
            _ => Err(Malformed("invalid length-encoded integer")),
        }
    }

    /// A length-encoded string.
    pub fn lenenc_bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.lenenc_int()?;
        let n = usize::try_from(n).map_err(|_| Malformed("length does not fit in memory"))?;
        self.bytes(n)
    }

    /// A NUL-terminated string (the NUL is consumed, not returned).
    pub fn null_str(&mut self) -> Result<&'a [u8], Malformed> {
        let rest = &self.buf[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(Malformed("string is not NUL-terminated"))?;
        self.pos += end + 1;
        Ok(&rest[..end])
    }

    /// A NUL-terminated string, or the rest of the packet if no NUL follows
    /// (some clients omit the last terminator).
    pub fn null_str_or_rest(&mut self) -> &'a [u8] {
        match self.null_str() {
            Ok(s) => s,
            Err(_) => self.rest(),
        }
    }
}

/// Appends a length-encoded integer.
pub fn put_lenenc_int(out: &mut Vec<u8>, n: u64) {
    if n < 251 {
        out.push(n as u8);
    } else if n < 1 << 16 {
        out.push(0xfc);
        out.extend_from_slice(&(n as u16).to_le_bytes());
    } else if n < 1 << 24 {
        out.push(0xfd);
        out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
    } else {
        out.push(0xfe);
        out.extend_from_slice(&n.to_le_bytes());
    }
}

/// Appends a length-encoded string.
pub fn put_lenenc_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_lenenc_int(out, b.len() as u64);
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenenc_roundtrips_at_every_width() {
        for n in [
            0u64,
            250,
            251,
            65535,
            65536,
            (1 << 24) - 1,
            1 << 24,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_lenenc_int(&mut out, n);
            assert_eq!(Reader::new(&out).lenenc_int(), Ok(n));
        }
    }

    #[test]
    fn reads_past_the_end_are_errors_not_panics() {
        let mut r = Reader::new(&[0xfe, 1, 2]);
        assert!(r.lenenc_int().is_err());
        let mut r = Reader::new(&[0xfc, 0xff, 0xff, 1]);
        assert!(r.lenenc_bytes().is_err());
        let mut r = Reader::new(b"abc");
        assert!(r.null_str().is_err());
        assert_eq!(r.null_str_or_rest(), b"abc");
        let mut r = Reader::new(&[0xff]);
        assert!(r.lenenc_int().is_err());
    }
}
