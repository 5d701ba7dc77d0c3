//! Sealed cookies: AES-256-GCM with a rotating key ring.
//!
//! A sealed value is `base64url(key_id || nonce || ciphertext+tag)`, with the
//! cookie's name as associated data, so a value cannot be moved from one
//! cookie to another. Cookies of citizens' logins ([`CookieKeys::seal_for`])
//! also bind the host that issued them: a value sealed on one host does not
//! open on another, even when both are served by the same gateway with the
//! same key (it fails like a changed value). The key file holds one or more
//! keys, one per line as base64 of 32 random bytes; the **first** line
//! seals, every line opens.
//! Rotation: put a new key on the first line, keep the old ones below until
//! every session sealed with them has expired, then remove them.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file is missing, unreadable or too open (the one rule of
    /// `stadttor_hsm::secret_file`).
    #[error(transparent)]
    Secret(#[from] stadttor_hsm::secret_file::SecretFileError),
    /// The file is not UTF-8 text.
    #[error("{path}: not text (one base64 key per line)")]
    NotText {
        /// The file.
        path: String,
    },
    /// A line is not base64 of 32 bytes.
    #[error("{path}: line {line}: not a key (base64 of 32 random bytes; make one with `stadttor keys session-key`)")]
    Malformed {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
    },
    /// No key in the file.
    #[error("{path}: no key in the file (make one with `stadttor keys session-key`)")]
    Empty {
        /// The file.
        path: String,
    },
}

/// The key ring for sealing cookies.
pub struct CookieKeys {
    keys: Vec<(u8, LessSafeKey)>,
    rng: SystemRandom,
}

impl std::fmt::Debug for CookieKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CookieKeys({} keys)", self.keys.len())
    }
}

impl CookieKeys {
    /// Loads the key file.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let p = path.display().to_string();
        let bytes = stadttor_hsm::secret_file::read(path)?;
        let text =
            std::str::from_utf8(&bytes).map_err(|_| KeyFileError::NotText { path: p.clone() })?;
        let mut raw = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bytes = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(line)
                    .map_err(|_| KeyFileError::Malformed {
                        path: p.clone(),
                        line: i + 1,
                    })?,
            );
            if bytes.len() != 32 {
                return Err(KeyFileError::Malformed {
                    path: p,
                    line: i + 1,
                });
            }
            raw.push(bytes);
        }
        if raw.is_empty() {
            return Err(KeyFileError::Empty { path: p });
        }
        Ok(Self::from_raw(&raw))
    }

    /// Builds a ring from raw 32-byte keys, the first sealing.
    pub fn from_raw(raw: &[impl AsRef<[u8]>]) -> Self {
        let keys = raw
            .iter()
            .filter_map(|k| {
                let id = key_id(k.as_ref());
                UnboundKey::new(&AES_256_GCM, k.as_ref())
                    .ok()
                    .map(|u| (id, LessSafeKey::new(u)))
            })
            .collect();
        Self {
            keys,
            rng: SystemRandom::new(),
        }
    }

    /// A new random key, base64, for a key file.
    pub fn generate() -> Option<String> {
        let mut k = Zeroizing::new([0u8; 32]);
        SystemRandom::new().fill(&mut k[..]).ok()?;
        Some(base64::engine::general_purpose::STANDARD.encode(&k[..]))
    }

    /// Seals `plain` for the cookie `name`.
    pub fn seal(&self, name: &str, plain: &[u8]) -> Option<String> {
        self.seal_aad(name.as_bytes(), plain)
    }

    /// Seals `plain` for the cookie `name` on `host` (see
    /// [`crate::http::credentials::request_host`]).
    pub fn seal_for(&self, name: &str, host: &str, plain: &[u8]) -> Option<String> {
        self.seal_aad(&host_aad(name, host), plain)
    }

    /// Opens a value sealed by [`Self::seal_for`] for `name` on `host`.
    pub fn open_for(&self, name: &str, host: &str, sealed: &str) -> Option<Vec<u8>> {
        self.open_aad(&host_aad(name, host), sealed)
    }

    fn seal_aad(&self, aad: &[u8], plain: &[u8]) -> Option<String> {
        let (id, key) = self.keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut buf = Vec::with_capacity(1 + NONCE_LEN + plain.len() + 16);
        buf.push(*id);
        buf.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )
        .ok()?;
        buf.extend_from_slice(&body);
        Some(URL_SAFE_NO_PAD.encode(buf))
    }

    /// Opens a value sealed for the cookie `name`; `None` if it was not
    /// sealed by one of our keys for that name, or was changed.
    pub fn open(&self, name: &str, sealed: &str) -> Option<Vec<u8>> {
        self.open_aad(name.as_bytes(), sealed)
    }

    fn open_aad(&self, aad: &[u8], sealed: &str) -> Option<Vec<u8>> {
        if sealed.len() > 8192 {
            return None;
        }
        let mut buf = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if buf.len() < 1 + NONCE_LEN + 16 {
            return None;
        }
        let id = buf[0];
        let nonce: [u8; NONCE_LEN] = buf[1..1 + NONCE_LEN].try_into().ok()?;
        let body = &mut buf[1 + NONCE_LEN..];
        for (kid, key) in self.keys.iter().filter(|(k, _)| *k == id) {
            let _ = kid;
            let mut attempt = body.to_vec();
            if let Ok(plain) = key.open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut attempt,
            ) {
                return Some(plain.to_vec());
            }
        }
        None
    }
}

/// Associated data binding a value to its cookie name and host. A label
/// keeps it apart from name-only values (sealed before hosts were bound:
/// those no longer open, and the citizen logs in again); lengths keep name
/// and host apart from each other.
fn host_aad(name: &str, host: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(32 + name.len() + host.len());
    aad.extend_from_slice(b"stadttor-cookie-host/1\0");
    for part in [name, host] {
        aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

/// One byte naming a key, so opening tries the right key first.
fn key_id(k: &[u8]) -> u8 {
    ring::digest::digest(&ring::digest::SHA256, k).as_ref()[0]
}

/// The value of cookie `name` in the request's `Cookie` headers; `None`
/// when it is sent more than once (see [`crate::http::credentials::cookie`]).
pub fn get<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    crate::http::credentials::cookie(headers, name)
}

/// Names of cookies in the request starting with `prefix`.
pub fn names_with_prefix<'a>(headers: &'a http::HeaderMap, prefix: &str) -> Vec<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('=').map(|(n, _)| n))
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// A `Set-Cookie` value sent back on a cross-site POST (`SameSite=None`):
/// the SAML login transaction, which returns by the IdP's form post. The
/// `__Host-` rules hold (Secure, Path=/, no Domain); what it carries is
/// sealed for the host and useless without the single-use request ID.
pub fn set_cross_site(name: &str, value: &str, max_age: u64) -> String {
    format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=None; Max-Age={max_age}")
}

/// A `Set-Cookie` value (`Secure`, `HttpOnly`, `SameSite=Lax`).
pub fn set(name: &str, value: &str, max_age: Option<u64>) -> String {
    let mut s = format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax");
    if let Some(a) = max_age {
        s.push_str(&format!("; Max-Age={a}"));
    }
    s
}

/// A `Set-Cookie` value that removes the cookie.
pub fn clear(name: &str) -> String {
    format!("{name}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_rotation() {
        let old = CookieKeys::from_raw(&[[1u8; 32]]);
        let v = old.seal("__Host-a", b"hello").unwrap();
        assert_eq!(old.open("__Host-a", &v).unwrap(), b"hello");
        // Bound to the cookie name.
        assert!(old.open("__Host-b", &v).is_none());
        // A new first key still opens values sealed with the old one.
        let rotated = CookieKeys::from_raw(&[[2u8; 32], [1u8; 32]]);
        assert_eq!(rotated.open("__Host-a", &v).unwrap(), b"hello");
        let v2 = rotated.seal("__Host-a", b"x").unwrap();
        assert!(old.open("__Host-a", &v2).is_none());
        // Tampering is detected.
        let mut raw = URL_SAFE_NO_PAD.decode(&v).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(old.open("__Host-a", &URL_SAFE_NO_PAD.encode(raw)).is_none());
        assert!(old.open("__Host-a", "not base64 !").is_none());
    }

    #[test]
    fn host_bound_values_open_only_on_their_host_and_name() {
        let k = CookieKeys::from_raw(&[[1u8; 32]]);
        let v = k.seal_for("__Host-a", "a.example", b"s").unwrap();
        assert_eq!(k.open_for("__Host-a", "a.example", &v).unwrap(), b"s");
        assert!(k.open_for("__Host-a", "b.example", &v).is_none());
        assert!(k.open_for("__Host-b", "a.example", &v).is_none());
        assert!(k.open("__Host-a", &v).is_none());
        // Name-only values (older cookies) fail closed.
        let old = k.seal("__Host-a", b"s").unwrap();
        assert!(k.open_for("__Host-a", "", &old).is_none());
        // Moving bytes between name and host changes the data.
        let v = k.seal_for("__Host-ab", "c", b"s").unwrap();
        assert!(k.open_for("__Host-a", "bc", &v).is_none());
    }

    #[test]
    fn cookie_header_parsing() {
        let mut h = http::HeaderMap::new();
        h.append(http::header::COOKIE, "a=1; __Host-s=xyz".parse().unwrap());
        h.append(http::header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(get(&h, "__Host-s"), Some("xyz"));
        assert_eq!(get(&h, "b"), Some("2"));
        assert_eq!(get(&h, "c"), None);
        assert_eq!(names_with_prefix(&h, "__Host-"), vec!["__Host-s"]);
    }
}
