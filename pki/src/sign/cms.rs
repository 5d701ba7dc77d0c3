//! CMS `SignedData` (RFC 5652), detached, as CAdES baseline signatures
//! (ETSI EN 319 122-1): B-B, and B-T with an RFC 3161 signature timestamp.
//!
//! Signed attributes: `contentType` (id-data), `messageDigest`,
//! `signingCertificateV2` (ESS, RFC 5035: SHA-256 of the seal certificate
//! plus its issuer and serial), and `signingTime` when asked for. CAdES-B-B
//! wants `signingTime`; PAdES baseline forbids it (the time goes into the
//! PDF's `/M`), so [`crate::sign::pades`] leaves it out. B-T adds the
//! unsigned attribute `id-aa-signatureTimeStampToken` whose message imprint
//! is the SHA-256 of the signature value. The certificates field carries
//! the seal chain as configured.
//!
//! Digests follow the key: SHA-256 for P-256 and RSA-PSS, SHA-384 for
//! P-384, SHA-512 for Ed25519 (RFC 8419).
//!
//! [`verify_detached`] checks a `SignedData` (ours or a TSA's token):
//! digest, content type, and the signature with the signer's certificate
//! from the structure. It does not decide whether that certificate is
//! trusted; the caller checks the returned chain.

use stadttor_hsm::Algorithm;

use super::der::{self, oid, tag, Reader, Tlv};
use super::tsa::{self, TimestampAuthority};
use super::{AlgInfo, SealCertificate, SealCreator};
use crate::Error;

/// How to build the CMS signature.
#[derive(Clone, Copy, Default)]
pub struct CmsOptions<'a> {
    /// Include a `signingTime` signed attribute with this time (CAdES-B-B
    /// requires it; PAdES forbids it).
    pub signing_time: Option<time::OffsetDateTime>,
    /// Ask this TSA for a signature timestamp (B-T); `None` gives B-B.
    pub tsa: Option<&'a dyn TimestampAuthority>,
}

impl std::fmt::Debug for CmsOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CmsOptions")
            .field("signing_time", &self.signing_time)
            .field("tsa", &self.tsa.is_some())
            .finish()
    }
}

/// A detached CAdES signature over `content`: DER `ContentInfo`, as a
/// `.p7s` file. B-B with `signingTime` = now unless `opts` says otherwise.
pub fn sign_detached<K: SealCreator + ?Sized>(
    key: &K,
    cert: &SealCertificate,
    content: &[u8],
    opts: &CmsOptions<'_>,
) -> Result<Vec<u8>, Error> {
    let info = AlgInfo::of(key.algorithm(), key.reference())?;
    let digest = ring::digest::digest(info.digest, content);
    sign_digest(key, cert, digest.as_ref(), opts)
}

/// Like [`sign_detached`], with the content's digest already computed
/// (with the digest the key's algorithm uses: see the module doc).
pub fn sign_digest<K: SealCreator + ?Sized>(
    key: &K,
    cert: &SealCertificate,
    message_digest: &[u8],
    opts: &CmsOptions<'_>,
) -> Result<Vec<u8>, Error> {
    let info = AlgInfo::of(key.algorithm(), key.reference())?;
    if message_digest.len() != info.digest.output_len() {
        return Err(Error::Malformed {
            what: "message digest",
            reason: format!(
                "{} bytes, the key's digest has {}",
                message_digest.len(),
                info.digest.output_len()
            ),
        });
    }
    let signed_attrs = signed_attributes(cert, message_digest, opts.signing_time);
    let signature = key.sign(&signed_attrs)?;
    let unsigned = match opts.tsa {
        Some(tsa) => {
            let imprint = ring::digest::digest(&ring::digest::SHA256, &signature);
            let token = tsa::timestamp_checked(tsa, imprint.as_ref())?;
            Some(attribute(oid::SIGNATURE_TIME_STAMP_TOKEN, &token))
        }
        None => None,
    };
    Ok(assemble(
        &info,
        cert,
        &signed_attrs,
        &signature,
        unsigned.as_deref(),
    ))
}

/// `Attribute ::= SEQUENCE { attrType, attrValues SET OF }` with one value.
fn attribute(attr_type: &[u8], value: &[u8]) -> Vec<u8> {
    der::seq(&[&der::oid(attr_type), &der::set_of(&[value])])
}

/// The DER `SET OF Attribute` that is signed.
fn signed_attributes(
    cert: &SealCertificate,
    message_digest: &[u8],
    signing_time: Option<time::OffsetDateTime>,
) -> Vec<u8> {
    let content_type = attribute(oid::CONTENT_TYPE, &der::oid(oid::DATA));
    let digest = attribute(oid::MESSAGE_DIGEST, &der::octets(message_digest));
    // ESSCertIDv2 with the default hash (SHA-256, so omitted) and
    // IssuerSerial { GeneralNames { directoryName [4] Name }, serial }.
    let cert_hash = ring::digest::digest(&ring::digest::SHA256, cert.leaf());
    let general_names = der::seq(&[&der::explicit(4, cert.issuer_der())]);
    let issuer_serial = der::seq(&[&general_names, &der::tlv(tag::INTEGER, cert.serial())]);
    let ess_cert_id = der::seq(&[&der::octets(cert_hash.as_ref()), &issuer_serial]);
    let signing_cert = attribute(
        oid::SIGNING_CERTIFICATE_V2,
        &der::seq(&[&der::seq(&[&ess_cert_id])]),
    );
    let time = signing_time.map(|t| attribute(oid::SIGNING_TIME, &der::time(t)));
    let mut attrs: Vec<&[u8]> = vec![&content_type, &digest, &signing_cert];
    if let Some(t) = &time {
        attrs.push(t);
    }
    der::set_of(&attrs)
}

fn assemble(
    info: &AlgInfo,
    cert: &SealCertificate,
    signed_attrs: &[u8],
    signature: &[u8],
    unsigned_attr: Option<&[u8]>,
) -> Vec<u8> {
    let digest_alg = info.digest_algorithm_id();
    let sid = der::seq(&[cert.issuer_der(), &der::tlv(tag::INTEGER, cert.serial())]);
    // [0] IMPLICIT SET OF Attribute: the signed SET with its tag replaced.
    let mut signed_implicit = signed_attrs.to_vec();
    signed_implicit[0] = 0xa0;
    let mut signer_info = vec![
        der::small_int(1),
        sid,
        digest_alg.clone(),
        signed_implicit,
        info.signature_algorithm_id(),
        der::octets(signature),
    ];
    if let Some(attr) = unsigned_attr {
        signer_info.push(der::tlv(0xa1, attr));
    }
    let signer_info = der::tlv(tag::SEQUENCE, &signer_info.concat());
    let certs: Vec<&[u8]> = cert.chain().iter().map(Vec::as_slice).collect();
    let mut certs_implicit = der::set_of(&certs);
    certs_implicit[0] = 0xa0;
    let signed_data = der::seq(&[
        &der::small_int(1),
        &der::set_of(&[&digest_alg]),
        &der::seq(&[&der::oid(oid::DATA)]),
        &certs_implicit,
        &der::set_of(&[&signer_info]),
    ]);
    der::seq(&[&der::oid(oid::SIGNED_DATA), &der::explicit(0, &signed_data)])
}

/// What [`verify_detached`] found.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The signer's certificate, DER.
    pub signer: Vec<u8>,
    /// Every certificate the structure carries, DER.
    pub certificates: Vec<Vec<u8>>,
    /// The encapsulated content type OID (DER content octets).
    pub content_type: Vec<u8>,
    /// The encapsulated content, if it is not detached.
    pub content: Option<Vec<u8>>,
    /// The `signingTime` attribute, raw DER, if present.
    pub signing_time: Option<Vec<u8>>,
    /// Whether a `signingCertificateV2` attribute names the signer.
    pub signing_certificate_v2: bool,
    /// The signature timestamp token (B-T), if present: already checked
    /// to be over this signature value and signed by the certificate it
    /// carries; the TSA's trust is the caller's business.
    pub timestamp: Option<tsa::TstInfo>,
}

fn bad(reason: impl Into<String>) -> Error {
    Error::BadSignature {
        reason: reason.into(),
    }
}

fn mal(reason: impl Into<String>) -> Error {
    Error::Malformed {
        what: "CMS",
        reason: reason.into(),
    }
}

/// Checks a CMS `SignedData` with one signer. `detached` is the content
/// when it is not encapsulated. See the module doc for what is checked.
pub fn verify_detached(cms: &[u8], detached: Option<&[u8]>) -> Result<Verified, Error> {
    let ci = der::read_exact(cms, tag::SEQUENCE)?;
    let mut r = Reader::new(ci.value);
    if r.expect(tag::OID)?.value != oid::SIGNED_DATA {
        return Err(mal("not a SignedData"));
    }
    let inner = r.expect(0xa0)?;
    let sd = der::read_exact(inner.value, tag::SEQUENCE)?;
    let mut r = Reader::new(sd.value);
    r.expect(tag::INTEGER)?;
    r.expect(tag::SET)?;
    let encap = r.expect(tag::SEQUENCE)?;
    let mut e = Reader::new(encap.value);
    let content_type = e.expect(tag::OID)?.value.to_vec();
    let econtent = match e.optional(0xa0)? {
        Some(t) => Some(der::read_exact(t.value, tag::OCTET_STRING)?.value.to_vec()),
        None => None,
    };
    let certificates = read_certificates(r.optional(0xa0)?)?;
    r.optional(0xa1)?;
    let infos = r.expect(tag::SET)?;
    let mut s = Reader::new(infos.value);
    let si = s.expect(tag::SEQUENCE)?;
    if !s.is_empty() {
        return Err(mal("more than one SignerInfo"));
    }
    let content = match (&econtent, detached) {
        (Some(c), None) => c.as_slice(),
        (None, Some(c)) => c,
        (Some(_), Some(_)) => return Err(mal("content is both encapsulated and detached")),
        (None, None) => return Err(mal("detached signature but no content given")),
    };
    let mut r = Reader::new(si.value);
    r.expect(tag::INTEGER)?;
    let sid = r.any()?.ok_or_else(|| mal("no signer identifier"))?;
    let signer = find_signer(&certificates, sid)?;
    let digest_alg = r.expect(tag::SEQUENCE)?;
    let digest = digest_of(digest_alg)?;
    let signed = r
        .optional(0xa0)?
        .ok_or_else(|| mal("no signed attributes"))?;
    let sig_alg = r.expect(tag::SEQUENCE)?;
    let signature = r.expect(tag::OCTET_STRING)?.value;
    let unsigned = r.optional(0xa1)?;

    let attrs = read_signed_attributes(signed, &signer)?;
    if attrs.content_type != Some(content_type.as_slice()) {
        return Err(bad("the contentType attribute does not match the content"));
    }
    let computed = ring::digest::digest(digest, content);
    if attrs.message_digest != Some(computed.as_ref()) {
        return Err(bad(
            "the content's digest does not match the signed messageDigest",
        ));
    }
    let mut to_verify = signed.raw.to_vec();
    to_verify[0] = tag::SET;
    let spki = spki_of_cert(&signer)?;
    verify_with(sig_alg, &spki, &to_verify, signature)?;

    let timestamp = read_timestamp(unsigned, signature)?;
    Ok(Verified {
        signer,
        certificates,
        content_type,
        content: econtent,
        signing_time: attrs.signing_time,
        signing_certificate_v2: attrs.signing_certificate_v2,
        timestamp,
    })
}

/// Collects the DER of each certificate in the `certificates` field, if
/// present (other certificate choices are skipped).
fn read_certificates(certs: Option<Tlv<'_>>) -> Result<Vec<Vec<u8>>, Error> {
    let mut certificates = Vec::new();
    if let Some(certs) = certs {
        let mut c = Reader::new(certs.value);
        while let Some(t) = c.any()? {
            if t.tag == tag::SEQUENCE {
                certificates.push(t.raw.to_vec());
            }
        }
    }
    Ok(certificates)
}

/// The signed attributes the verifier looks at.
struct SignedAttributes<'a> {
    /// The `messageDigest` value.
    message_digest: Option<&'a [u8]>,
    /// The `contentType` value.
    content_type: Option<&'a [u8]>,
    /// The raw `signingTime` value.
    signing_time: Option<Vec<u8>>,
    /// Whether `signingCertificateV2` names the signer.
    signing_certificate_v2: bool,
}

/// Reads the signed attributes, checking `signingCertificateV2` against
/// the `signer` certificate.
fn read_signed_attributes<'a>(
    signed: Tlv<'a>,
    signer: &[u8],
) -> Result<SignedAttributes<'a>, Error> {
    let mut attrs = SignedAttributes {
        message_digest: None,
        content_type: None,
        signing_time: None,
        signing_certificate_v2: false,
    };
    let mut a = Reader::new(signed.value);
    while let Some(attr) = a.any()? {
        let mut f = Reader::new(attr.value);
        let t = f.expect(tag::OID)?.value;
        let values = f.expect(tag::SET)?;
        let mut v = Reader::new(values.value);
        let first = v.any()?.ok_or_else(|| mal("attribute without a value"))?;
        match t {
            oid::MESSAGE_DIGEST => attrs.message_digest = Some(first.value),
            oid::CONTENT_TYPE => attrs.content_type = Some(first.value),
            oid::SIGNING_TIME => attrs.signing_time = Some(first.raw.to_vec()),
            oid::SIGNING_CERTIFICATE_V2 => {
                attrs.signing_certificate_v2 = ess_names(first, signer)?;
            }
            _ => {}
        }
    }
    Ok(attrs)
}

/// Verifies each signature timestamp token among the unsigned attributes
/// against `signature`; returns the last one's info, if any.
fn read_timestamp(
    unsigned: Option<Tlv<'_>>,
    signature: &[u8],
) -> Result<Option<tsa::TstInfo>, Error> {
    let mut timestamp = None;
    if let Some(u) = unsigned {
        let mut a = Reader::new(u.value);
        while let Some(attr) = a.any()? {
            let mut f = Reader::new(attr.value);
            if f.expect(tag::OID)?.value == oid::SIGNATURE_TIME_STAMP_TOKEN {
                let values = f.expect(tag::SET)?;
                let token = Reader::new(values.value)
                    .any()?
                    .ok_or_else(|| mal("empty timestamp attribute"))?;
                let imprint = ring::digest::digest(&ring::digest::SHA256, signature);
                let info = tsa::verify_token(token.raw)?;
                info.check_imprint(imprint.as_ref())?;
                timestamp = Some(info);
            }
        }
    }
    Ok(timestamp)
}

fn find_signer(certificates: &[Vec<u8>], sid: Tlv<'_>) -> Result<Vec<u8>, Error> {
    use x509_parser::prelude::*;
    for der_cert in certificates {
        let Ok((_, cert)) = X509Certificate::from_der(der_cert) else {
            continue;
        };
        let hit = match sid.tag {
            tag::SEQUENCE => {
                let mut r = Reader::new(sid.value);
                let issuer = r.expect(tag::SEQUENCE)?;
                let serial = r.expect(tag::INTEGER)?;
                issuer.raw == cert.issuer().as_raw() && serial.value == cert.raw_serial()
            }
            0x80 => cert.extensions().iter().any(|ext| {
                matches!(ext.parsed_extension(),
                    ParsedExtension::SubjectKeyIdentifier(ski) if ski.0 == sid.value)
            }),
            _ => false,
        };
        if hit {
            return Ok(der_cert.clone());
        }
    }
    Err(bad("the signer's certificate is not in the signature"))
}

/// Whether a `SigningCertificateV2` value's first ESSCertIDv2 is `signer`.
fn ess_names(value: Tlv<'_>, signer: &[u8]) -> Result<bool, Error> {
    let mut r = Reader::new(value.value);
    let certs = r.expect(tag::SEQUENCE)?;
    let first = Reader::new(certs.value).expect(tag::SEQUENCE)?;
    let mut f = Reader::new(first.value);
    let mut alg = &ring::digest::SHA256;
    if let Some(a) = f.optional(tag::SEQUENCE)? {
        alg = digest_of(a)?;
    }
    let hash = f.expect(tag::OCTET_STRING)?.value;
    if hash != ring::digest::digest(alg, signer).as_ref() {
        return Err(bad("signingCertificateV2 names another certificate"));
    }
    Ok(true)
}

fn digest_of(alg_id: Tlv<'_>) -> Result<&'static ring::digest::Algorithm, Error> {
    let o = Reader::new(alg_id.value).expect(tag::OID)?.value;
    match o {
        oid::SHA256 => Ok(&ring::digest::SHA256),
        oid::SHA384 => Ok(&ring::digest::SHA384),
        oid::SHA512 => Ok(&ring::digest::SHA512),
        _ => Err(mal("unsupported digest algorithm")),
    }
}

pub(crate) fn spki_of_cert(cert: &[u8]) -> Result<Vec<u8>, Error> {
    use x509_parser::prelude::*;
    let (_, c) = X509Certificate::from_der(cert)
        .map_err(|e| mal(format!("signer certificate does not parse: {e}")))?;
    Ok(c.public_key().raw.to_vec())
}

fn verify_with(sig_alg: Tlv<'_>, spki: &[u8], message: &[u8], sig: &[u8]) -> Result<(), Error> {
    const SHA256_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let o = Reader::new(sig_alg.value).expect(tag::OID)?.value;
    let key_alg = super::algorithm_of_spki(spki)?;
    let ok = matches!(
        (o, key_alg),
        (oid::ECDSA_SHA256, Algorithm::EcdsaP256Sha256)
            | (oid::ECDSA_SHA384, Algorithm::EcdsaP384Sha384)
            | (oid::ED25519, Algorithm::Ed25519)
            | (oid::RSASSA_PSS, Algorithm::RsaPssSha256)
    );
    if ok {
        return super::verify_raw(key_alg, spki, message, sig, false);
    }
    if (o == SHA256_RSA || o == RSA) && key_alg == Algorithm::RsaPssSha256 {
        // RSA PKCS#1 v1.5 with SHA-256, as many TSAs still sign.
        let seq = der::read_exact(spki, tag::SEQUENCE)?;
        let mut r = Reader::new(seq.value);
        r.expect(tag::SEQUENCE)?;
        let bits = r.expect(tag::BIT_STRING)?;
        return ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            bits.value.get(1..).unwrap_or_default(),
        )
        .verify(message, sig)
        .map_err(|_| bad("RSA signature does not verify"));
    }
    Err(mal("signature algorithm does not match the signer's key"))
}
