//! The `pkcs11:` backend: keys on a PKCS#11 token (cargo feature `pkcs11`).
//!
//! # Key references
//!
//! RFC 7512 URIs that name one private key (see [`Pkcs11Uri::parse`]):
//!
//! ```text
//! pkcs11:token=stadttor;object=tls-key        by token label and key label
//! pkcs11:token=stadttor;id=%01                by token label and CKA_ID
//! pkcs11:serial=0123abcd;object=tls-key;id=%01
//! ```
//!
//! The module (`.so`) and the PIN file come from
//! [`KeyStoreConfig`]; a PIN never appears in a key
//! reference, a log line or a `Debug` output, and is zeroized after login.
//! The slot is found by token label (slot ids change when tokens are
//! initialised). A wrong PIN is reported once as [`Error::Login`] and never
//! retried, so stadttor cannot lock the token.
//!
//! # Signing
//!
//! Each key keeps a small pool of sessions (logged in once, at open),
//! [`KeyStoreConfig::pkcs11_sessions`] of them: at most that many signatures
//! of one key run at once. When all are in use, a signer waits at most
//! [`KeyStoreConfig::pkcs11_busy_wait`] (default 50 ms, never longer than the
//! request deadline) for one to come back, then gets [`Error::Busy`], just as
//! a full TPM queue refuses at once instead of letting requests pile up until
//! their deadline. The message is hashed on the host (SHA-256 / SHA-384) and signed with
//! `CKM_ECDSA`, the most portable mechanism (Debian's SoftHSM has no
//! `CKM_ECDSA_SHA256`); the raw `r || s` is returned as DER. RSA keys sign
//! with `CKM_RSA_PKCS_PSS` and decrypt with `CKM_RSA_PKCS_OAEP` through the
//! same pool (see `pkcs11/rsa.rs`).
//!
//! The PKCS#11 module is initialised once per process and shared by all key
//! stores, as the standard requires (`C_Initialize` is process-wide).

mod rsa;
mod uri;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use ring::digest;
use zeroize::Zeroizing;

pub use self::uri::Pkcs11Uri;
use crate::der::{self, Reader, OCTET_STRING, OID, OID_P256, OID_P384};
use crate::spki::tlv;
use crate::{
    Algorithm, DecryptingKey, Error, KeyStats, KeyStoreConfig, KeyType, Oaep, Protection,
    SigningKey,
};

/// A key on a PKCS#11 token, signing through a small session pool.
pub struct Pkcs11Key {
    reference: String,
    algorithm: Algorithm,
    spki: Vec<u8>,
    /// The modulus length in bytes, for RSA keys.
    rsa: Option<usize>,
    key: ObjectHandle,
    pool: Pool,
    /// How long a signer waits for a free session before [`Error::Busy`].
    busy_wait: Duration,
    stats: KeyStats,
}

impl std::fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("reference", &self.reference)
            .field("algorithm", &self.algorithm)
            .field("sessions", &self.pool.size)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Key {
    /// Finds the key `uri` names and opens its session pool.
    pub(crate) fn open(config: &KeyStoreConfig, uri: &Pkcs11Uri) -> Result<Self, Error> {
        let reference = uri.as_str().to_owned();
        let token = Token::open(config, uri)?;
        let first = token.login_session(false)?;
        let key = find_one(&first, &reference, ObjectClass::PRIVATE_KEY, uri)?;
        let public = find_one(&first, &reference, ObjectClass::PUBLIC_KEY, uri).map_err(|e| {
            match e {
                Error::NotFound { reference, reason } => Error::NotFound {
                    reference,
                    reason: format!(
                        "{reason}; stadttor needs the matching public key object to learn the public key"
                    ),
                },
                other => other,
            }
        })?;
        let (algorithm, spki, rsa) = read_public(&first, &reference, public)?;
        let size = config.pkcs11_sessions.max(1);
        let mut sessions = vec![first];
        for _ in 1..size {
            // Login state is per token and application: these are logged in too.
            sessions.push(
                token
                    .ctx
                    .open_ro_session(token.slot)
                    .map_err(|e| Error::device(&reference, "open session", e))?,
            );
        }
        Ok(Self {
            reference,
            algorithm,
            spki,
            rsa,
            key,
            pool: Pool::new(sessions),
            busy_wait: config.pkcs11_busy_wait.min(config.request_timeout),
            stats: KeyStats::default(),
        })
    }

    /// Generates a non-exportable key pair on the token, then opens it.
    pub(crate) fn generate(
        config: &KeyStoreConfig,
        uri: &Pkcs11Uri,
        key_type: KeyType,
    ) -> Result<Self, Error> {
        let reference = uri.as_str().to_owned();
        let (mechanism, mut public, mut private) = match key_type {
            KeyType::EcdsaP256 => ec_templates(OID_P256),
            KeyType::EcdsaP384 => ec_templates(OID_P384),
            other => match rsa::templates(other) {
                Some((public, private)) => (Mechanism::RsaPkcsKeyPairGen, public, private),
                None => {
                    return Err(Error::UnsupportedKey {
                        reference,
                        reason: format!(
                            "PKCS#11 generation supports ECDSA P-256 and P-384, RSA-3072 and \
                             RSA-4096, not {other}"
                        ),
                    })
                }
            },
        };
        let token = Token::open(config, uri)?;
        let session = token.login_session(true)?;
        let existing = session
            .find_objects(&key_template(ObjectClass::PRIVATE_KEY, uri))
            .map_err(|e| Error::device(&reference, "search token", e))?;
        if !existing.is_empty() {
            return Err(Error::AlreadyExists { reference });
        }
        for naming in [
            uri.object
                .as_ref()
                .map(|l| Attribute::Label(l.as_bytes().to_vec())),
            uri.id.as_ref().map(|id| Attribute::Id(id.clone())),
        ]
        .into_iter()
        .flatten()
        {
            public.push(naming.clone());
            private.push(naming);
        }
        session
            .generate_key_pair(&mechanism, &public, &private)
            .map_err(|e| Error::device(&reference, "generate key pair", e))?;
        drop(session);
        Self::open(config, uri)
    }

    fn sign_untracked(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        if self.rsa.is_some() {
            let session = self.pool.checkout(&self.reference, self.busy_wait)?;
            return rsa::sign(&session, &self.reference, self.key, message);
        }
        let alg = match self.algorithm {
            Algorithm::EcdsaP384Sha384 => &digest::SHA384,
            _ => &digest::SHA256,
        };
        let digest = digest::digest(alg, message);
        let session = self.pool.checkout(&self.reference, self.busy_wait)?;
        let raw = session
            .sign(&Mechanism::Ecdsa, self.key, digest.as_ref())
            .map_err(|e| Error::device(&self.reference, "sign", e))?;
        der::ecdsa_sig_from_raw(&raw).ok_or_else(|| Error::Signing {
            reference: self.reference.clone(),
            reason: format!("token returned a {}-byte ECDSA signature", raw.len()),
        })
    }
}

impl SigningKey for Pkcs11Key {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    fn public_key_spki(&self) -> &[u8] {
        &self.spki
    }

    fn protection(&self) -> Protection {
        Protection::Pkcs11
    }

    fn reference(&self) -> &str {
        &self.reference
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        self.stats.track(
            || self.sign_untracked(message),
            |e| matches!(e, Error::Busy { .. }),
        )
    }

    fn stats(&self) -> Option<&KeyStats> {
        Some(&self.stats)
    }
}

impl DecryptingKey for Pkcs11Key {
    fn modulus_bits(&self) -> usize {
        self.rsa.map_or(0, |len| len * 8)
    }

    fn decrypt_oaep(&self, oaep: Oaep, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let Some(modulus_len) = self.rsa else {
            return Err(Error::NotDecrypting {
                reference: self.reference.clone(),
                algorithm: self.algorithm,
            });
        };
        let session = self.pool.checkout(&self.reference, self.busy_wait)?;
        rsa::decrypt(
            &session,
            &self.reference,
            self.key,
            modulus_len,
            oaep,
            ciphertext,
        )
    }
}

/// Mechanism and templates of an EC key pair on the curve with OID `curve`.
fn ec_templates(curve: &[u8]) -> (Mechanism<'static>, Vec<Attribute>, Vec<Attribute>) {
    let public = vec![
        Attribute::Token(true),
        Attribute::Verify(true),
        Attribute::EcParams(tlv(OID, curve)),
    ];
    let private = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
    ];
    (Mechanism::EccKeyPairGen, public, private)
}

/// A fixed set of sessions; a signer borrows one and gives it back on drop.
/// Generic only so the unit tests can pool plain values.
struct Pool<S = Session> {
    idle: Mutex<Vec<S>>,
    ready: Condvar,
    size: usize,
}

struct Borrowed<'a, S> {
    pool: &'a Pool<S>,
    session: Option<S>,
}

impl<S> std::ops::Deref for Borrowed<'_, S> {
    type Target = S;

    fn deref(&self) -> &S {
        // Invariant: `session` is Some from checkout until drop.
        #[allow(clippy::expect_used)]
        self.session.as_ref().expect("session present until drop")
    }
}

impl<S> Drop for Borrowed<'_, S> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.pool.lock().push(session);
            self.pool.ready.notify_one();
        }
    }
}

impl<S> Pool<S> {
    fn new(sessions: Vec<S>) -> Self {
        Self {
            size: sessions.len(),
            idle: Mutex::new(sessions),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<S>> {
        // Poisoning cannot leave the Vec inconsistent (push/pop only).
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a free session, waiting at most `busy_wait` for one to come
    /// back; then the pool is exhausted and the caller gets [`Error::Busy`].
    fn checkout(&self, reference: &str, busy_wait: Duration) -> Result<Borrowed<'_, S>, Error> {
        let deadline = Instant::now() + busy_wait;
        let mut idle = self.lock();
        loop {
            if let Some(session) = idle.pop() {
                return Ok(Borrowed {
                    pool: self,
                    session: Some(session),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Busy {
                    reference: reference.to_owned(),
                    backend: "pkcs11",
                    capacity: self.size,
                });
            }
            idle = self
                .ready
                .wait_timeout(idle, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }
}

/// The token a URI names, in an initialised module.
struct Token {
    ctx: Pkcs11,
    slot: Slot,
    label: String,
    pin_file: PathBuf,
    reference: String,
}

impl Token {
    fn open(config: &KeyStoreConfig, uri: &Pkcs11Uri) -> Result<Self, Error> {
        let reference = uri.as_str().to_owned();
        let missing = |setting| Error::MissingSetting {
            reference: reference.clone(),
            setting,
        };
        let module = config
            .pkcs11_module
            .as_deref()
            .ok_or_else(|| missing("pkcs11_module"))?;
        let pin_file = config
            .pkcs11_pin_file
            .clone()
            .ok_or_else(|| missing("pkcs11_pin_file"))?;
        let ctx = module_context(module)?;
        let mut matches = Vec::new();
        let mut seen = Vec::new();
        let slots = ctx
            .get_slots_with_initialized_token()
            .map_err(|e| Error::device(&reference, "list slots", e))?;
        for slot in slots {
            let info = ctx
                .get_token_info(slot)
                .map_err(|e| Error::device(&reference, "read token info", e))?;
            let label = info.label().trim_end().to_owned();
            let serial = info.serial_number().trim_end().to_owned();
            let wanted = uri.token.as_deref().is_none_or(|t| t == label)
                && uri.serial.as_deref().is_none_or(|s| s == serial);
            if wanted {
                matches.push((slot, label.clone()));
            }
            seen.push(label);
        }
        match matches.len() {
            1 => {
                let (slot, label) = matches.remove(0);
                Ok(Self {
                    ctx,
                    slot,
                    label,
                    pin_file,
                    reference,
                })
            }
            0 => Err(Error::NotFound {
                reference,
                reason: format!(
                    "no token with that label/serial in {}; tokens present: {seen:?}",
                    module.display()
                ),
            }),
            _ => Err(Error::InvalidReference {
                reference,
                reason: "several tokens match; add `token=` or `serial=` to pick one".into(),
            }),
        }
    }

    /// Opens a session and logs the user in, reading the PIN file once.
    fn login_session(&self, read_write: bool) -> Result<Session, Error> {
        let session = if read_write {
            self.ctx.open_rw_session(self.slot)
        } else {
            self.ctx.open_ro_session(self.slot)
        }
        .map_err(|e| Error::device(&self.reference, "open session", e))?;
        let pin = read_pin(&self.pin_file)?;
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(CkError::Pkcs11(rv, _)) if login_reason(rv).is_some() => Err(Error::Login {
                token: self.label.clone(),
                reason: login_reason(rv).unwrap_or_default().to_owned(),
            }),
            Err(e) => Err(Error::device(&self.reference, "login", e)),
        }
    }
}

fn login_reason(rv: RvError) -> Option<&'static str> {
    Some(match rv {
        RvError::PinIncorrect => "incorrect PIN (check pkcs11_pin_file)",
        RvError::PinLocked => {
            "the user PIN is locked after too many wrong attempts; unlock it with the SO PIN"
        }
        RvError::PinExpired => "the user PIN has expired; set a new one",
        RvError::PinInvalid | RvError::PinLenRange => "the PIN in pkcs11_pin_file is malformed",
        RvError::UserPinNotInitialized => "the token has no user PIN yet; initialise it",
        _ => return None,
    })
}

/// Reads the PIN: the first line of the file, without its line ending.
fn read_pin(path: &Path) -> Result<AuthPin, Error> {
    let bytes = crate::secret_file::read(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "PIN file is not UTF-8"),
    })?;
    let pin = text.lines().next().unwrap_or_default();
    // Exact capacity: `into_boxed_str` must not reallocate and leave a copy.
    let mut owned = String::with_capacity(pin.len());
    owned.push_str(pin);
    Ok(AuthPin::from(owned.into_boxed_str()))
}

/// The process-wide, initialised context of a module (`C_Initialize` once).
fn module_context(module: &Path) -> Result<Pkcs11, Error> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let fail = |source: CkError| Error::Pkcs11Module {
        module: module.display().to_string(),
        source: source.into(),
    };
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(ctx) = modules.get(module) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(module).map_err(fail)?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(fail(e)),
    }
    modules.insert(module.to_owned(), ctx.clone());
    Ok(ctx)
}

fn key_template(class: ObjectClass, uri: &Pkcs11Uri) -> Vec<Attribute> {
    let mut template = vec![Attribute::Class(class)];
    if let Some(label) = &uri.object {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        template.push(Attribute::Id(id.clone()));
    }
    template
}

fn find_one(
    session: &Session,
    reference: &str,
    class: ObjectClass,
    uri: &Pkcs11Uri,
) -> Result<ObjectHandle, Error> {
    let found = session
        .find_objects(&key_template(class, uri))
        .map_err(|e| Error::device(reference, "search token", e))?;
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::NotFound {
            reference: reference.to_owned(),
            reason: format!("no {class} object with that label/id on the token"),
        }),
        _ => Err(Error::InvalidReference {
            reference: reference.to_owned(),
            reason: format!(
                "{} {class} objects match; add `id=` to pick one",
                found.len()
            ),
        }),
    }
}

/// Reads algorithm, SPKI and (RSA) modulus length from a public key object.
fn read_public(
    session: &Session,
    reference: &str,
    public: ObjectHandle,
) -> Result<(Algorithm, Vec<u8>, Option<usize>), Error> {
    let key_type = session
        .get_attributes(public, &[AttributeType::KeyType])
        .map_err(|e| Error::device(reference, "read public key", e))?;
    if key_type
        .iter()
        .any(|a| matches!(a, Attribute::KeyType(t) if *t == CkKeyType::RSA))
    {
        let (spki, modulus_len) = rsa::read_public(session, reference, public)?;
        return Ok((Algorithm::RsaPssSha256, spki, Some(modulus_len)));
    }
    let (algorithm, spki) = read_ec_public(session, reference, public)?;
    Ok((algorithm, spki, None))
}

/// Reads algorithm and SPKI from an EC public key object.
fn read_ec_public(
    session: &Session,
    reference: &str,
    public: ObjectHandle,
) -> Result<(Algorithm, Vec<u8>), Error> {
    let unsupported = |reason: &str| Error::UnsupportedKey {
        reference: reference.to_owned(),
        reason: reason.to_owned(),
    };
    let attrs = session
        .get_attributes(
            public,
            &[
                AttributeType::KeyType,
                AttributeType::EcParams,
                AttributeType::EcPoint,
            ],
        )
        .map_err(|e| Error::device(reference, "read public key", e))?;
    let (mut key_type, mut params, mut point) = (None, None, None);
    for attr in attrs {
        match attr {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::EcParams(p) => params = Some(p),
            Attribute::EcPoint(p) => point = Some(p),
            _ => {}
        }
    }
    if key_type != Some(CkKeyType::EC) {
        return Err(unsupported(
            "only EC and RSA keys are supported by the PKCS#11 backend",
        ));
    }
    let params = params.ok_or_else(|| unsupported("public key has no CKA_EC_PARAMS"))?;
    let curve = Reader::new(&params)
        .expect(OID, "")
        .map_err(|_| unsupported("CKA_EC_PARAMS is not a named curve"))?;
    let (algorithm, width) = match curve {
        OID_P256 => (Algorithm::EcdsaP256Sha256, 32),
        OID_P384 => (Algorithm::EcdsaP384Sha384, 48),
        _ => return Err(unsupported("curve not supported; use P-256 or P-384")),
    };
    let point = point.ok_or_else(|| unsupported("public key has no CKA_EC_POINT"))?;
    // CKA_EC_POINT is a DER OCTET STRING around the SEC1 point; some tokens
    // return the bare point.
    let sec1 = if point.len() == 1 + 2 * width && point.first() == Some(&0x04) {
        point.as_slice()
    } else {
        Reader::new(&point)
            .expect(OCTET_STRING, "")
            .map_err(|_| unsupported("CKA_EC_POINT is malformed"))?
    };
    if sec1.len() != 1 + 2 * width || sec1.first() != Some(&0x04) {
        return Err(unsupported(
            "CKA_EC_POINT is not an uncompressed point on the curve",
        ));
    }
    Ok((algorithm, crate::spki::ec(algorithm, sec1)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::thread;

    use super::*;

    #[test]
    fn exhausted_pool_is_busy_after_the_short_wait_not_the_deadline() {
        let pool = Pool::new(vec![1u32]);
        let held = pool.checkout("k", Duration::ZERO).unwrap();
        assert_eq!(*held, 1);

        let start = Instant::now();
        let err = pool.checkout("k", Duration::ZERO).err().unwrap();
        assert!(start.elapsed() < Duration::from_millis(50));
        assert!(
            matches!(
                err,
                Error::Busy {
                    backend: "pkcs11",
                    capacity: 1,
                    ..
                }
            ),
            "{err}"
        );

        let start = Instant::now();
        let err = pool
            .checkout("k", Duration::from_millis(100))
            .err()
            .unwrap();
        let waited = start.elapsed();
        assert!(matches!(err, Error::Busy { .. }), "{err}");
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");

        drop(held);
        assert_eq!(*pool.checkout("k", Duration::ZERO).unwrap(), 1);
    }

    #[test]
    fn a_session_returned_within_the_wait_is_handed_over() {
        let pool = Arc::new(Pool::new(vec![7u32]));
        let held = pool.checkout("k", Duration::ZERO).unwrap();
        let waiter = {
            let pool = pool.clone();
            thread::spawn(move || {
                let start = Instant::now();
                let got = pool.checkout("k", Duration::from_secs(10)).map(|s| *s);
                (got.ok(), start.elapsed())
            })
        };
        thread::sleep(Duration::from_millis(50));
        drop(held);
        let (got, waited) = waiter.join().unwrap();
        assert_eq!(got, Some(7));
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    }
}
