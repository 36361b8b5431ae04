//! Shamir secret sharing over GF(2^8) (the AES field, polynomial x^8 + x^4 + x^3 + x + 1),
//! byte by byte: a secret is split into `n` shares of which any `k` rebuild it and fewer
//! reveal nothing about it. Used to split the key broker's master key into recovery shares.
//!
//! Each byte of the secret is the constant term of its own random polynomial of degree
//! `k - 1`; share `i` (x = 1..=n) holds the polynomials' values at x. Rebuilding is Lagrange
//! interpolation at x = 0. Field arithmetic runs without secret-dependent branches or table
//! lookups. Whether the rebuilt secret is the right one is for the caller to check (the key
//! broker opens a value sealed under the master key).

use zeroize::{Zeroize as _, Zeroizing};

use crate::{CryptoError, random};

/// Multiplication in GF(2^8), constant time.
fn mul(mut a: u8, mut b: u8) -> u8 {
    let mut product = 0u8;
    for _ in 0..8 {
        product ^= a & 0u8.wrapping_sub(b & 1);
        let carry = 0u8.wrapping_sub(a >> 7);
        a = (a << 1) ^ (carry & 0x1b);
        b >>= 1;
    }
    product
}

/// The multiplicative inverse (a^254), constant time; 0 for 0.
fn inv(a: u8) -> u8 {
    let mut result = 1u8;
    let mut base = a;
    let mut e = 254u8;
    for _ in 0..8 {
        let m = mul(result, base);
        let take = 0u8.wrapping_sub(e & 1);
        result = (m & take) | (result & !take);
        base = mul(base, base);
        e >>= 1;
    }
    result
}

/// One share: its x coordinate (1..=255) and the polynomials' values there.
#[derive(Clone)]
pub struct Share {
    /// The x coordinate, never 0.
    pub x: u8,
    /// One value per secret byte.
    pub y: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Share {{ x: {}, y: [{} bytes] }}", self.x, self.y.len())
    }
}

/// Splits `secret` into `n` shares, any `k` of which rebuild it (1 <= k <= n <= 255).
pub fn split(secret: &[u8], k: u8, n: u8) -> Result<Vec<Share>, CryptoError> {
    if k == 0 || n == 0 || k > n {
        return Err(CryptoError::Shares {
            what: "the threshold must be between 1 and the number of shares",
        });
    }
    let mut shares: Vec<Share> = (1..=n)
        .map(|x| Share {
            x,
            y: Zeroizing::new(vec![0; secret.len()]),
        })
        .collect();
    let mut coefficients = Zeroizing::new(vec![0u8; usize::from(k)]);
    for (i, &byte) in secret.iter().enumerate() {
        coefficients[0] = byte;
        random::fill(&mut coefficients[1..])?;
        for share in &mut shares {
            // Horner's rule from the highest coefficient.
            let mut y = 0u8;
            for &c in coefficients.iter().rev() {
                y = mul(y, share.x) ^ c;
            }
            share.y[i] = y;
        }
    }
    coefficients.zeroize();
    Ok(shares)
}

/// Rebuilds the secret from shares (at least the threshold's number, distinct x, same length).
/// Given fewer than the threshold, the result is a wrong secret, not an error: the caller
/// checks it.
pub fn combine(shares: &[Share]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let first = shares.first().ok_or(CryptoError::Shares {
        what: "no shares given",
    })?;
    let len = first.y.len();
    for (i, s) in shares.iter().enumerate() {
        if s.x == 0 {
            return Err(CryptoError::Shares {
                what: "a share has x = 0",
            });
        }
        if s.y.len() != len {
            return Err(CryptoError::Shares {
                what: "the shares have different lengths",
            });
        }
        if shares[..i].iter().any(|t| t.x == s.x) {
            return Err(CryptoError::Shares {
                what: "the same share was given twice",
            });
        }
    }
    // Lagrange basis at 0: l_j = prod_{m != j} x_m / (x_m - x_j); subtraction is xor.
    let basis: Vec<u8> = shares
        .iter()
        .map(|sj| {
            shares
                .iter()
                .filter(|sm| sm.x != sj.x)
                .fold(1u8, |acc, sm| mul(acc, mul(sm.x, inv(sm.x ^ sj.x))))
        })
        .collect();
    let mut secret = Zeroizing::new(vec![0u8; len]);
    for (s, &l) in shares.iter().zip(&basis) {
        for (out, &y) in secret.iter_mut().zip(s.y.iter()) {
            *out ^= mul(y, l);
        }
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_arithmetic_matches_fips197() {
        // FIPS 197 §4.2: {57} • {83} = {c1}, {57} • {13} = {fe}.
        assert_eq!(mul(0x57, 0x83), 0xc1);
        assert_eq!(mul(0x57, 0x13), 0xfe);
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a)), 1, "{a}");
        }
    }

    #[test]
    fn any_k_of_n_rebuild_the_secret_and_fewer_do_not() {
        let secret = random::array::<32>().unwrap();
        for (k, n) in [(1u8, 1u8), (2, 3), (3, 5), (5, 5)] {
            let shares = split(&secret, k, n).unwrap();
            assert_eq!(shares.len(), usize::from(n));
            // Every subset of size k.
            for mask in 0u32..(1 << n) {
                if mask.count_ones() != u32::from(k) {
                    continue;
                }
                let subset: Vec<Share> = shares
                    .iter()
                    .filter(|s| mask & (1 << (s.x - 1)) != 0)
                    .cloned()
                    .collect();
                assert_eq!(&combine(&subset).unwrap()[..], &secret[..], "k={k} n={n}");
            }
            if k > 1 {
                let fewer = &shares[..usize::from(k) - 1];
                assert_ne!(&combine(fewer).unwrap()[..], &secret[..]);
            }
        }
    }

    #[test]
    fn refuses_bad_parameters_and_shares() {
        assert!(split(b"s", 0, 3).is_err());
        assert!(split(b"s", 4, 3).is_err());
        let shares = split(b"secret", 2, 3).unwrap();
        assert!(combine(&[]).is_err());
        assert!(combine(&[shares[0].clone(), shares[0].clone()]).is_err());
        let mut short = shares[1].clone();
        short.y.pop();
        assert!(combine(&[shares[0].clone(), short]).is_err());
    }
}
