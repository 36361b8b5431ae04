//! A minimal DER reader for the vendor-specific certificate extensions (AMD's TCB values,
//! Intel's SGX extension), which X.509 libraries hand over as opaque bytes.

use crate::AttestError;

pub(crate) const TAG_INTEGER: u8 = 0x02;
pub(crate) const TAG_BIT_STRING: u8 = 0x03;
pub(crate) const TAG_OCTET_STRING: u8 = 0x04;
pub(crate) const TAG_OID: u8 = 0x06;
pub(crate) const TAG_SEQUENCE: u8 = 0x30;

/// One tag-length-value element.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    pub(crate) tag: u8,
    pub(crate) value: &'a [u8],
}

/// Reads consecutive DER elements from a byte slice.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next element. Only single-byte tags and definite lengths up to 2^32 are DER here.
    pub(crate) fn next(&mut self) -> Result<Tlv<'a>, AttestError> {
        let bad = || AttestError::malformed("DER element in a certificate extension");
        let (&tag, rest) = self.rest.split_first().ok_or_else(bad)?;
        if tag & 0x1f == 0x1f {
            return Err(bad());
        }
        let (&first, mut rest) = rest.split_first().ok_or_else(bad)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err(bad());
            }
            let mut len = 0usize;
            for &b in &rest[..n] {
                len = (len << 8) | usize::from(b);
            }
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return Err(bad());
        }
        let (value, rest) = rest.split_at(len);
        self.rest = rest;
        Ok(Tlv { tag, value })
    }

    /// The next element's whole encoding (tag, length and value) and its tag.
    pub(crate) fn next_raw(&mut self) -> Result<(u8, &'a [u8]), AttestError> {
        let before = self.rest;
        let tlv = self.next()?;
        Ok((tlv.tag, &before[..before.len() - self.rest.len()]))
    }

    /// The next element, which must carry `tag`.
    pub(crate) fn expect(&mut self, tag: u8, what: &str) -> Result<&'a [u8], AttestError> {
        let tlv = self.next()?;
        if tlv.tag != tag {
            return Err(AttestError::malformed(format!(
                "{what}: expected DER tag {tag:#04x}, found {:#04x}",
                tlv.tag
            )));
        }
        Ok(tlv.value)
    }
}

/// DER of `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017),
/// from the unsigned big-endian modulus and exponent a JWK carries.
pub(crate) fn rsa_public_key(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn tlv(tag: u8, value: &[u8], out: &mut Vec<u8>) {
        out.push(tag);
        let len = value.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|&b| b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend_from_slice(&bytes);
        }
        out.extend_from_slice(value);
    }
    fn integer(magnitude: &[u8], out: &mut Vec<u8>) {
        let start = magnitude
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(magnitude.len());
        let mut value = Vec::with_capacity(magnitude.len() + 1);
        if magnitude.get(start).is_none_or(|&b| b & 0x80 != 0) {
            value.push(0);
        }
        value.extend_from_slice(&magnitude[start..]);
        tlv(TAG_INTEGER, &value, out);
    }
    let mut body = Vec::new();
    integer(n, &mut body);
    integer(e, &mut body);
    let mut out = Vec::new();
    tlv(TAG_SEQUENCE, &body, &mut out);
    out
}

/// A non-negative INTEGER (or ENUMERATED) value that fits in 64 bits.
pub(crate) fn unsigned(value: &[u8], what: &str) -> Result<u64, AttestError> {
    let bad = || AttestError::malformed(format!("{what}: not a small non-negative integer"));
    let digits = match value {
        [] => return Err(bad()),
        [first, ..] if first & 0x80 != 0 => return Err(bad()),
        [0, rest @ ..] if !rest.is_empty() => rest,
        all => all,
    };
    if digits.len() > 8 {
        return Err(bad());
    }
    Ok(digits
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// The dotted form of an OBJECT IDENTIFIER's content bytes.
pub(crate) fn oid_string(value: &[u8]) -> Result<String, AttestError> {
    let bad = || AttestError::malformed("object identifier");
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for (i, &b) in value.iter().enumerate() {
        if acc > (u64::MAX >> 7) {
            return Err(bad());
        }
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        } else if i + 1 == value.len() {
            return Err(bad());
        }
    }
    if arcs.is_empty() {
        return Err(bad());
    }
    Ok(arcs
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_elements_and_values() {
        // SEQUENCE { OID 1.2.840.113741.1.13.1.2.17, INTEGER 11 }
        let der = [
            0x30, 0x10, 0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01, 0x02,
            0x11, 0x02, 0x01, 0x0b,
        ];
        let mut outer = Reader::new(&der);
        let mut seq = Reader::new(outer.expect(TAG_SEQUENCE, "test").unwrap());
        assert!(outer.is_empty());
        let oid = seq.expect(TAG_OID, "test").unwrap();
        assert_eq!(oid_string(oid).unwrap(), "1.2.840.113741.1.13.1.2.17");
        assert_eq!(
            unsigned(seq.expect(TAG_INTEGER, "t").unwrap(), "t").unwrap(),
            11
        );
        assert!(seq.next().is_err());
    }

    #[test]
    fn encodes_rsa_public_keys() {
        // n = 0x80 needs a leading zero; e = 65537.
        assert_eq!(
            rsa_public_key(&[0x80], &[0x01, 0x00, 0x01]),
            [
                0x30, 0x09, 0x02, 0x02, 0x00, 0x80, 0x02, 0x03, 0x01, 0x00, 0x01
            ]
        );
        let long = rsa_public_key(&[0x7f; 256], &[3]);
        assert_eq!(&long[..4], &[0x30, 0x82, 0x01, 0x07]); // 4 + 256 + 3 bytes
        let mut r = Reader::new(&long);
        let mut seq = Reader::new(r.expect(TAG_SEQUENCE, "t").unwrap());
        assert_eq!(seq.expect(TAG_INTEGER, "t").unwrap().len(), 256);
    }

    #[test]
    fn refuses_negative_and_truncated() {
        assert!(unsigned(&[0x80], "t").is_err());
        assert_eq!(unsigned(&[0x00, 0x80], "t").unwrap(), 128);
        assert!(Reader::new(&[0x30, 0x05, 0x00]).next().is_err());
        assert!(
            Reader::new(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff])
                .next()
                .is_err()
        );
        assert!(oid_string(&[0x2a, 0x86]).is_err());
    }
}
