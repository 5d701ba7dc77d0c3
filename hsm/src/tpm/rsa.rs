//! RSA keys in the TPM: the creation template, the public key, RSASSA-PSS
//! signatures and RSA-OAEP decryption (TPM2_RSA_Decrypt).
//!
//! Generated RSA keys are unrestricted, with both `sign` and `decrypt` set
//! and the scheme TPM_ALG_NULL, so each command names its scheme: RSASSA-PSS
//! with SHA-256 for TPM2_Sign, OAEP for TPM2_RSA_Decrypt. A TPM's OAEP
//! hashes the label and drives MGF1 with the same hash, so it offers
//! [`Oaep::Sha1`] and [`Oaep::Sha256`], not the mixed SHA-256/MGF1-SHA-1.
//!
//! RSA-3072 generation takes seconds on swtpm and up to a minute on a
//! hardware TPM, so it runs under [`GENERATE_TIMEOUT`], not the signing
//! deadline. swtpm 0.7 (libtpms 0.9) offers RSA-2048 and RSA-3072 only:
//! TPM2_TestParms refuses RSA-4096 there, and generation says so.

use std::time::Duration;

use tss_esapi::constants::response_code::Tss2ResponseCodeKind;
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Data, HashScheme, Public, PublicKeyRsa, PublicParameters, PublicRsaParametersBuilder,
    RsaDecryptionScheme, RsaExponent, RsaScheme, Signature,
};
use zeroize::Zeroizing;

use super::device::Worker;
use super::TpmKey;
use crate::{Error, KeyType, Oaep};

/// Deadline of one RSA key generation on the TPM owner thread.
pub(super) const GENERATE_TIMEOUT: Duration = Duration::from_secs(180);

/// What the backend remembers about an RSA key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RsaInfo {
    /// Modulus length in bytes (384 for RSA-3072).
    pub(super) modulus_len: usize,
    /// The TPM object has the `decrypt` attribute.
    pub(super) decrypt: bool,
}

/// The TPM key size of an RSA [`KeyType`], if it is one.
pub(super) fn key_bits(key_type: KeyType) -> Option<RsaKeyBits> {
    match key_type {
        KeyType::Rsa3072 => Some(RsaKeyBits::Rsa3072),
        KeyType::Rsa4096 => Some(RsaKeyBits::Rsa4096),
        _ => None,
    }
}

/// The creation template: unrestricted, sign + decrypt, scheme NULL, e = 65537.
pub(super) fn template(bits: RsaKeyBits) -> Result<Public, tss_esapi::Error> {
    tss_esapi::utils::create_unrestricted_encryption_decryption_rsa_public(
        bits,
        RsaExponent::default(),
    )
}

/// TPM2_TestParms for the template's parameters, so an RSA size the TPM
/// lacks is reported as such instead of as a failed TPM2_Create.
pub(super) fn check_supported(
    w: &mut Worker,
    reference: &str,
    bits: RsaKeyBits,
) -> Result<(), Error> {
    let unsupported = |detail: String| Error::UnsupportedKey {
        reference: reference.to_owned(),
        reason: format!(
            "this TPM does not offer RSA-{} keys ({detail}); swtpm 0.7 offers RSA-2048 and \
             RSA-3072, so use rsa3072",
            u16::from(bits)
        ),
    };
    let params = PublicRsaParametersBuilder::new()
        .with_scheme(RsaScheme::Null)
        .with_key_bits(bits)
        .with_exponent(RsaExponent::default())
        .with_is_signing_key(true)
        .with_is_decryption_key(true)
        .with_restricted(false)
        .build()
        .map_err(|e| unsupported(e.to_string()))?;
    w.ctx()
        .execute_without_session(|c| c.test_parms(PublicParameters::Rsa(params)))
        .map_err(|e| unsupported(format!("TPM2_TestParms: {e}")))
}

/// What an RSA public area says.
#[derive(Debug)]
pub(super) struct RsaPublic {
    /// The object is restricted (a storage or attestation key).
    pub(super) restricted: bool,
    /// DER `SubjectPublicKeyInfo`.
    pub(super) spki: Vec<u8>,
    /// Modulus length and decrypt attribute.
    pub(super) info: RsaInfo,
}

/// Describes an RSA public area; `None` if it is not RSA.
pub(super) fn describe(public: &Public) -> Option<Result<RsaPublic, String>> {
    let Public::Rsa {
        object_attributes,
        parameters,
        unique,
        ..
    } = public
    else {
        return None;
    };
    if !object_attributes.sign_encrypt() && !object_attributes.decrypt() {
        return Some(Err("the TPM RSA object can neither sign nor decrypt".into()));
    }
    let modulus = unique.value();
    let bits = usize::from(u16::from(parameters.key_bits()));
    if bits < 2048 || modulus.len() != bits / 8 {
        return Some(Err(format!(
            "RSA-{bits} with a {}-byte modulus is not supported; use RSA-3072",
            modulus.len()
        )));
    }
    // TPMs write 0 for the default exponent 65537.
    let exponent = match parameters.exponent().value() {
        0 => 65_537u32,
        e => e,
    };
    let der = crate::der::rsa_public_key(modulus, &exponent.to_be_bytes());
    Some(Ok(RsaPublic {
        restricted: object_attributes.restricted(),
        spki: crate::spki::rsa(&der),
        info: RsaInfo {
            modulus_len: modulus.len(),
            decrypt: object_attributes.decrypt(),
        },
    }))
}

/// The RSASSA-PSS signature bytes, left-padded to the modulus length.
pub(super) fn signature_bytes(
    reference: &str,
    signature: Signature,
    modulus_len: usize,
) -> Result<Vec<u8>, Error> {
    let Signature::RsaPss(s) = signature else {
        return Err(Error::Signing {
            reference: reference.to_owned(),
            reason: "the TPM returned a non-RSA-PSS signature".into(),
        });
    };
    let raw = s.signature().value();
    if raw.len() > modulus_len {
        return Err(Error::Signing {
            reference: reference.to_owned(),
            reason: format!("the TPM returned a {}-byte RSA signature", raw.len()),
        });
    }
    let mut out = vec![0u8; modulus_len - raw.len()];
    out.extend_from_slice(raw);
    Ok(out)
}

/// TPM2_RSA_Decrypt with the OAEP scheme and an empty label.
pub(super) fn decrypt(
    key: &TpmKey,
    oaep: Oaep,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let reference = key.reference.clone();
    let Some(info) = key.rsa else {
        return Err(Error::NotDecrypting {
            reference,
            algorithm: key.algorithm,
        });
    };
    let hash = match oaep {
        Oaep::Sha1 => HashingAlgorithm::Sha1,
        Oaep::Sha256 => HashingAlgorithm::Sha256,
        other => {
            return Err(Error::UnsupportedOaep {
                reference,
                backend: "tpm",
                oaep: other,
                reason: "TPM2_RSA_Decrypt drives MGF1 with the OAEP hash; a TPM offers \
                         SHA-1/MGF1-SHA-1 and SHA-256/MGF1-SHA-256"
                    .into(),
            })
        }
    };
    if !info.decrypt || key.restricted {
        return Err(Error::UnsupportedKey {
            reference,
            reason: "the TPM object is not an unrestricted decryption key (decrypt attribute \
                     not set, or restricted)"
                .into(),
        });
    }
    let failed = || Error::Decryption {
        reference: key.reference.clone(),
        oaep,
    };
    if ciphertext.len() != info.modulus_len {
        return Err(failed());
    }
    let ciphertext = PublicKeyRsa::try_from(ciphertext.to_vec()).map_err(|_| failed())?;
    let id = key.id;
    let r = reference.clone();
    let answer = key.device.call(&reference, move |w| {
        let handle = w
            .key(id)
            .ok_or_else(|| Error::device(&r, "decrypt", "key is no longer loaded"))?;
        Ok(w.ctx()
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.rsa_decrypt(
                    handle,
                    ciphertext,
                    RsaDecryptionScheme::Oaep(HashScheme::new(hash)),
                    Data::default(),
                )
            })
            .map(|plain| Zeroizing::new(plain.value().to_vec())))
    })?;
    answer.map_err(|e| match e {
        // Every ciphertext-dependent failure (bad padding, value ≥ modulus)
        // is one and the same error. Hardware TPMs answer TPM_RC_VALUE;
        // libtpms (swtpm 0.7) answers TPM_RC_FAILURE and keeps working.
        tss_esapi::Error::Tss2Error(rc)
            if matches!(
                rc.kind(),
                Some(
                    Tss2ResponseCodeKind::Value
                        | Tss2ResponseCodeKind::Size
                        | Tss2ResponseCodeKind::Failure
                )
            ) =>
        {
            failed()
        }
        tss_esapi::Error::Tss2Error(rc)
            if matches!(
                rc.kind(),
                Some(Tss2ResponseCodeKind::Scheme | Tss2ResponseCodeKind::Hash)
            ) =>
        {
            Error::UnsupportedOaep {
                reference: reference.clone(),
                backend: "tpm",
                oaep,
                reason: format!("the TPM refused the scheme: {e}"),
            }
        }
        other => Error::device(&reference, "decrypt (TPM2_RSA_Decrypt)", other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_signs_and_decrypts_with_a_null_scheme() {
        let Public::Rsa {
            object_attributes,
            parameters,
            ..
        } = template(RsaKeyBits::Rsa3072).unwrap()
        else {
            panic!("not RSA");
        };
        assert!(object_attributes.sign_encrypt() && object_attributes.decrypt());
        assert!(!object_attributes.restricted());
        assert!(object_attributes.fixed_tpm() && object_attributes.sensitive_data_origin());
        assert_eq!(parameters.rsa_scheme(), RsaScheme::Null);
        assert_eq!(parameters.key_bits(), RsaKeyBits::Rsa3072);
    }

    #[test]
    fn describe_pads_nothing_and_defaults_the_exponent() {
        let modulus = vec![0xc5; 384];
        let public = tss_esapi::utils::create_unrestricted_encryption_decryption_rsa_public(
            RsaKeyBits::Rsa3072,
            RsaExponent::default(),
        )
        .unwrap();
        let Public::Rsa {
            object_attributes,
            name_hashing_algorithm,
            auth_policy,
            parameters,
            ..
        } = public
        else {
            panic!("not RSA");
        };
        let public = Public::Rsa {
            object_attributes,
            name_hashing_algorithm,
            auth_policy,
            parameters,
            unique: PublicKeyRsa::try_from(modulus.clone()).unwrap(),
        };
        let RsaPublic {
            restricted,
            spki,
            info,
        } = describe(&public).unwrap().unwrap();
        assert!(!restricted);
        assert_eq!(
            info,
            RsaInfo {
                modulus_len: 384,
                decrypt: true
            }
        );
        // SPKI ends with the exponent 65537 as DER INTEGER 01 00 01.
        assert!(
            spki.ends_with(&[0x02, 0x03, 0x01, 0x00, 0x01]),
            "{spki:02x?}"
        );
        assert!(spki.windows(384).any(|w| w == &modulus[..]));
    }
}
