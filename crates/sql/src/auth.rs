//! Password storage and the two authentication plugins' arithmetic.
//!
//! Stored forms (the `authentication_string` of a user):
//!
//! | plugin                  | stored                                      |
//! |-------------------------|---------------------------------------------|
//! | `mysql_native_password` | `*` + hex(SHA1(SHA1(password))), as MySQL   |
//! | `caching_sha2_password` | `$tiox$pbkdf2-sha256$<iter>$<salt>$<hash>`  |
//!
//! The caching_sha2 form is tiox's documented equivalent of MySQL's
//! `$A$005$` SHA-256-crypt string: a salted, iterated SHA-256 (PBKDF2,
//! from ring). It is only ever compared against a password received in
//! full over TLS; the per-login fast path uses [`Sha2Cache`], which holds
//! SHA256(SHA256(password)) in memory after one successful full login, as
//! MySQL's server does.
//!
//! Wire checks:
//! * native: the client sends `SHA1(pw) XOR SHA1(salt + SHA1(SHA1(pw)))`.
//! * caching_sha2 fast path: `SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + salt)`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;

use ring::digest::{digest, Context, SHA1_FOR_LEGACY_USE_ONLY as SHA1, SHA256};
use ring::rand::{SecureRandom, SystemRandom};

/// PBKDF2 iterations for caching_sha2 stored passwords.
const PBKDF2_ITERATIONS: u32 = 10_000;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `n` random bytes from the system's secure generator.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    // The system RNG failing is not recoverable; ring documents it as rare.
    if SystemRandom::new().fill(&mut out).is_err() {
        panic!("the system random number generator failed");
    }
    out
}

/// A fresh 20-byte scramble. MySQL clients treat the scramble as a C string
/// in places, so bytes are kept printable and free of NUL, `$` and `\0`.
pub fn new_scramble() -> [u8; 20] {
    let raw = random_bytes(20);
    let mut out = [0u8; 20];
    for (o, r) in out.iter_mut().zip(raw) {
        // 0x21..=0x7e without '$' (0x24): 93 values.
        let mut c = 0x21 + (r % 93);
        if c >= 0x24 {
            c += 1;
        }
        *o = c.min(0x7e);
    }
    out
}

/// A random password for `--initialize-secure`: 20 characters from a
/// 64-letter alphabet (120 bits).
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789+-.:_=!";
    random_bytes(20)
        .into_iter()
        .map(|b| ALPHABET[(b as usize) % ALPHABET.len()] as char)
        .collect()
}

fn sha1(parts: &[&[u8]]) -> Vec<u8> {
    let mut c = Context::new(&SHA1);
    for p in parts {
        c.update(p);
    }
    c.finish().as_ref().to_vec()
}

/// SHA-256 of the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut c = Context::new(&SHA256);
    for p in parts {
        c.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(c.finish().as_ref());
    out
}

/// The stored form of a `mysql_native_password` password (`""` for none).
pub fn native_hash(password: &str) -> String {
    if password.is_empty() {
        return String::new();
    }
    let stage1 = digest(&SHA1, password.as_bytes());
    format!("*{}", hex(&sha1(&[stage1.as_ref()])))
}

/// Checks a native-password scramble response against the stored hash.
pub fn native_verify(stored: &str, salt: &[u8], response: &[u8]) -> bool {
    if stored.is_empty() {
        return response.is_empty();
    }
    let Some(stage2) = stored.strip_prefix('*').and_then(unhex) else {
        return false;
    };
    if response.len() != 20 || stage2.len() != 20 {
        return false;
    }
    let mask = sha1(&[salt, &stage2]);
    let stage1: Vec<u8> = response.iter().zip(&mask).map(|(a, b)| a ^ b).collect();
    constant_eq(&sha1(&[&stage1]), &stage2)
}

/// Computes a native-password scramble response (a client; tests use it).
pub fn native_scramble(password: &str, salt: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = sha1(&[password.as_bytes()]);
    let stage2 = sha1(&[&stage1]);
    let mask = sha1(&[salt, &stage2]);
    stage1.iter().zip(&mask).map(|(a, b)| a ^ b).collect()
}

/// The stored form of a `caching_sha2_password` password (`""` for none).
pub fn sha2_hash(password: &str) -> String {
    if password.is_empty() {
        return String::new();
    }
    let salt = random_bytes(16);
    let mut out = [0u8; 32];
    let iterations = NonZeroU32::new(PBKDF2_ITERATIONS).unwrap_or(NonZeroU32::MIN);
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        password.as_bytes(),
        &mut out,
    );
    format!(
        "$tiox$pbkdf2-sha256${PBKDF2_ITERATIONS}${}${}",
        hex(&salt),
        hex(&out)
    )
}

/// Checks a cleartext password (received over TLS) against a caching_sha2
/// stored form.
pub fn sha2_verify_cleartext(stored: &str, password: &[u8]) -> bool {
    if stored.is_empty() {
        return password.is_empty();
    }
    let parts: Vec<&str> = stored.split('$').collect();
    let ["", "tiox", "pbkdf2-sha256", iter, salt, hash] = parts.as_slice() else {
        return false;
    };
    let (Ok(iter), Some(salt), Some(hash)) = (iter.parse::<u32>(), unhex(salt), unhex(hash)) else {
        return false;
    };
    let Some(iter) = NonZeroU32::new(iter) else {
        return false;
    };
    ring::pbkdf2::verify(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iter,
        &salt,
        password,
        &hash,
    )
    .is_ok()
}

/// Whether a stored string is a well-formed hash for `plugin` (for
/// `IDENTIFIED WITH plugin AS 'hash'`).
pub fn valid_stored(plugin: &str, stored: &str) -> bool {
    if stored.is_empty() {
        return true;
    }
    match plugin {
        crate::protocol::consts::NATIVE_PASSWORD => {
            stored.len() == 41 && stored.strip_prefix('*').and_then(unhex).is_some()
        }
        crate::protocol::consts::CACHING_SHA2_PASSWORD => {
            stored.starts_with("$tiox$pbkdf2-sha256$") && stored.split('$').count() == 6
        }
        _ => false,
    }
}

/// Checks a caching_sha2 fast-path response against the cached
/// SHA256(SHA256(password)).
pub fn sha2_fast_verify(cached: &[u8; 32], salt: &[u8], response: &[u8]) -> bool {
    if response.len() != 32 {
        return false;
    }
    let mask = sha256(&[cached, salt]);
    let stage1: Vec<u8> = response
        .iter()
        .zip(mask.iter())
        .map(|(a, b)| a ^ b)
        .collect();
    constant_eq(&sha256(&[&stage1]), cached)
}

/// Computes a caching_sha2 fast-path response (a client; tests use it).
pub fn sha2_scramble(password: &str, salt: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = sha256(&[password.as_bytes()]);
    let stage2 = sha256(&[&stage1]);
    let mask = sha256(&[&stage2, salt]);
    stage1.iter().zip(mask.iter()).map(|(a, b)| a ^ b).collect()
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The caching_sha2 fast-path cache: `user@host` account to
/// SHA256(SHA256(password)), filled by a successful full authentication
/// and cleared for an account when its password changes or it is dropped.
#[derive(Debug, Default)]
pub struct Sha2Cache {
    entries: Mutex<HashMap<(String, String), [u8; 32]>>,
}

impl Sha2Cache {
    /// The cached digest for an account.
    pub fn get(&self, user: &str, host: &str) -> Option<[u8; 32]> {
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(user.to_string(), host.to_string())).copied()
    }

    /// Remembers an account's digest after a full authentication.
    pub fn put(&self, user: &str, host: &str, password: &[u8]) {
        let stage2 = sha256(&[&sha256(&[password])]);
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.insert((user.to_string(), host.to_string()), stage2);
    }

    /// Forgets an account (password changed, user dropped).
    pub fn remove(&self, user: &str, host: &str) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&(user.to_string(), host.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_hash_matches_mysql() {
        // SELECT PASSWORD('secret') on MySQL 5.7.
        assert_eq!(
            native_hash("secret"),
            "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"
        );
        assert_eq!(native_hash(""), "");
    }

    #[test]
    fn native_scramble_verifies_only_with_the_right_password() {
        let salt = new_scramble();
        let stored = native_hash("pw");
        assert!(native_verify(&stored, &salt, &native_scramble("pw", &salt)));
        assert!(!native_verify(
            &stored,
            &salt,
            &native_scramble("px", &salt)
        ));
        assert!(!native_verify(&stored, &salt, b"short"));
        assert!(!native_verify(&stored, &salt, b""));
        assert!(native_verify("", &salt, b""));
    }

    #[test]
    fn sha2_full_and_fast_paths_verify() {
        let stored = sha2_hash("pw");
        assert!(valid_stored(
            crate::protocol::consts::CACHING_SHA2_PASSWORD,
            &stored
        ));
        assert!(sha2_verify_cleartext(&stored, b"pw"));
        assert!(!sha2_verify_cleartext(&stored, b"px"));
        let cache = Sha2Cache::default();
        cache.put("u", "%", b"pw");
        let salt = new_scramble();
        let cached = cache.get("u", "%").unwrap();
        assert!(sha2_fast_verify(
            &cached,
            &salt,
            &sha2_scramble("pw", &salt)
        ));
        assert!(!sha2_fast_verify(
            &cached,
            &salt,
            &sha2_scramble("px", &salt)
        ));
    }

    #[test]
    fn scrambles_are_fresh_and_printable() {
        let a = new_scramble();
        let b = new_scramble();
        assert_ne!(a, b);
        assert!(a.iter().all(|&c| (0x21..=0x7e).contains(&c) && c != b'$'));
    }
}
