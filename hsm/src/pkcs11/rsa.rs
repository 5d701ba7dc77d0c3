//! RSA keys on a PKCS#11 token: generation templates, the public key,
//! RSASSA-PSS signatures (`CKM_RSA_PKCS_PSS` over a host-computed SHA-256
//! digest, MGF1-SHA-256, salt 32) and RSA-OAEP decryption
//! (`CKM_RSA_PKCS_OAEP`, empty label).
//!
//! Generated keys carry `CKA_SIGN` and `CKA_DECRYPT` (not `CKA_UNWRAP`) on
//! the private key, which is sensitive and never extractable. Tokens differ in the OAEP
//! parameters they accept: Debian's SoftHSM 2.6.1 takes only SHA-1 with
//! MGF1-SHA-1 and answers `CKR_ARGUMENTS_BAD` to SHA-256, which is reported
//! as [`Error::UnsupportedOaep`].

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::Session;
use ring::digest;
use zeroize::Zeroizing;

use crate::{Error, KeyType, Oaep};

/// The public and private templates of an RSA key pair of `key_type`, or
/// `None` if it is not an RSA type.
pub(super) fn templates(key_type: KeyType) -> Option<(Vec<Attribute>, Vec<Attribute>)> {
    let bits = key_type.rsa_bits()?;
    let public = vec![
        Attribute::Token(true),
        Attribute::Verify(true),
        Attribute::Encrypt(true),
        Attribute::Wrap(false),
        Attribute::ModulusBits((bits as u64).into()),
        Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
    ];
    let private = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(true),
        // Some tokens (SoftHSM) default CKA_UNWRAP to true; this key only
        // decrypts transported content keys into host memory.
        Attribute::Unwrap(false),
    ];
    Some((public, private))
}

/// SPKI and modulus length (bytes) of an RSA public key object.
pub(super) fn read_public(
    session: &Session,
    reference: &str,
    public: ObjectHandle,
) -> Result<(Vec<u8>, usize), Error> {
    let attrs = session
        .get_attributes(
            public,
            &[AttributeType::Modulus, AttributeType::PublicExponent],
        )
        .map_err(|e| Error::device(reference, "read public key", e))?;
    let (mut modulus, mut exponent) = (None, None);
    for attr in attrs {
        match attr {
            Attribute::Modulus(m) => modulus = Some(m),
            Attribute::PublicExponent(e) => exponent = Some(e),
            _ => {}
        }
    }
    let (Some(modulus), Some(exponent)) = (modulus, exponent) else {
        return Err(Error::UnsupportedKey {
            reference: reference.to_owned(),
            reason: "the RSA public key has no CKA_MODULUS or CKA_PUBLIC_EXPONENT".into(),
        });
    };
    let significant = &modulus[modulus.iter().take_while(|b| **b == 0).count()..];
    if significant.len() < 256 {
        return Err(Error::UnsupportedKey {
            reference: reference.to_owned(),
            reason: format!("RSA-{} is too small; use RSA-3072", significant.len() * 8),
        });
    }
    let der = crate::der::rsa_public_key(significant, &exponent);
    Ok((crate::spki::rsa(&der), significant.len()))
}

/// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt.
pub(super) fn sign(
    session: &Session,
    reference: &str,
    key: ObjectHandle,
    message: &[u8],
) -> Result<Vec<u8>, Error> {
    let digest = digest::digest(&digest::SHA256, message);
    let mechanism = Mechanism::RsaPkcsPss(PkcsPssParams {
        hash_alg: MechanismType::SHA256,
        mgf: PkcsMgfType::MGF1_SHA256,
        s_len: 32u64.into(),
    });
    session
        .sign(&mechanism, key, digest.as_ref())
        .map_err(|e| Error::device(reference, "sign (CKM_RSA_PKCS_PSS)", e))
}

/// `C_Decrypt` with `CKM_RSA_PKCS_OAEP`; `modulus_len` is checked first.
pub(super) fn decrypt(
    session: &Session,
    reference: &str,
    key: ObjectHandle,
    modulus_len: usize,
    oaep: Oaep,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let failed = || Error::Decryption {
        reference: reference.to_owned(),
        oaep,
    };
    if ciphertext.len() != modulus_len {
        return Err(failed());
    }
    let (hash, mgf) = match oaep {
        Oaep::Sha1 => (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
        Oaep::Sha256Mgf1Sha1 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA1),
        Oaep::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
    };
    let mechanism = Mechanism::RsaPkcsOaep(PkcsOaepParams::new(hash, mgf, PkcsOaepSource::empty()));
    match session.decrypt(&mechanism, key, ciphertext) {
        Ok(plain) => Ok(Zeroizing::new(plain)),
        Err(CkError::Pkcs11(rv, _)) if ciphertext_fault(rv) => Err(failed()),
        Err(CkError::Pkcs11(
            RvError::ArgumentsBad | RvError::MechanismInvalid | RvError::MechanismParamInvalid,
            _,
        )) => Err(Error::UnsupportedOaep {
            reference: reference.to_owned(),
            backend: "pkcs11",
            oaep,
            reason: "the token refused these CKM_RSA_PKCS_OAEP parameters (SoftHSM 2.6 \
                     accepts only SHA-1 with MGF1-SHA-1)"
                .into(),
        }),
        Err(CkError::Pkcs11(
            RvError::KeyFunctionNotPermitted | RvError::KeyTypeInconsistent,
            _,
        )) => Err(Error::UnsupportedKey {
            reference: reference.to_owned(),
            reason: "the token does not let this key decrypt (CKA_DECRYPT not set)".into(),
        }),
        Err(e) => Err(Error::device(reference, "decrypt (CKM_RSA_PKCS_OAEP)", e)),
    }
}

/// Return values that depend on the ciphertext: all reported alike.
/// SoftHSM 2.6 answers `CKR_GENERAL_ERROR` to a ciphertext that does not
/// decode, so that one counts too.
fn ciphertext_fault(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::GeneralError
            | RvError::EncryptedDataInvalid
            | RvError::EncryptedDataLenRange
            | RvError::DataInvalid
            | RvError::DataLenRange
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_templates_are_non_extractable_sign_and_decrypt() {
        let (public, private) = templates(KeyType::Rsa3072).unwrap();
        assert!(public
            .iter()
            .any(|a| matches!(a, Attribute::ModulusBits(b) if u64::from(*b) == 3072)));
        for wanted in [
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(true),
        ] {
            assert!(
                private
                    .iter()
                    .any(|a| format!("{a:?}") == format!("{wanted:?}")),
                "{wanted:?}"
            );
        }
        assert!(templates(KeyType::EcdsaP256).is_none());
    }
}
