#!/usr/bin/env python3
"""Independent verifiers for stadttor's signature formats (pki/tests).

Each subcommand prints what it checked and exits 0 only if the signature
is valid; any failure exits 1 with the reason. Nothing here uses stadttor
code: pyHanko, asn1crypto, jwcrypto, http-message-signatures and
cryptography do the work.

  verify.py pades FILE.pdf CA.pem [--timestamp]
  verify.py cms FILE.p7s CONTENT CA.pem [--timestamp]
  verify.py cms-parts FILE.p7s OUTDIR     # writes signature value, timestamp token, attribute names
  verify.py jws TOKEN_FILE PAYLOAD_FILE SEAL.pem
  verify.py httpsig RESPONSE.json KEY.pem ALG        # ecdsa-p256-sha256 | ed25519
  verify.py delegation STATEMENT_FILE SEAL.pem RESPONSE.json
"""
import base64
import hashlib
import json
import sys


def fail(msg):
    print(f"INVALID: {msg}")
    sys.exit(1)


def pades(path, ca_path, want_ts):
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext
    from asn1crypto import pem, x509

    with open(ca_path, "rb") as f:
        _, _, der = pem.unarmor(f.read())
    vc = ValidationContext(trust_roots=[x509.Certificate.load(der)])
    with open(path, "rb") as f:
        r = PdfFileReader(f)
        sigs = r.embedded_signatures
        if len(sigs) != 1:
            fail(f"{len(sigs)} signatures")
        sig = sigs[0]
        attrs = [a["type"].native for a in sig.signer_info["signed_attrs"]]
        print("signed attributes:", attrs)
        if "signing_time" in attrs:
            fail("signingTime present (PAdES baseline forbids it)")
        if "signing_certificate_v2" not in attrs:
            fail("no signing-certificate-v2")
        print("subfilter:", sig.sig_object.get("/SubFilter"))
        if sig.sig_object.get("/SubFilter") != "/ETSI.CAdES.detached":
            fail("SubFilter is not ETSI.CAdES.detached")
        ts_vc = ValidationContext(trust_roots=[x509.Certificate.load(der)])
        st = validate_pdf_signature(sig, vc, ts_validation_context=ts_vc)
        print(st.pretty_print_details())
        if not (st.intact and st.valid):
            fail("signature not intact/valid")
        if not st.trusted:
            fail("signer not trusted")
        if st.coverage != SignatureCoverageLevel.ENTIRE_FILE:
            fail(f"coverage {st.coverage}")
        if want_ts:
            tv = st.timestamp_validity
            if tv is None:
                fail("no signature timestamp")
            if not (tv.intact and tv.valid and tv.trusted):
                fail("signature timestamp not valid/trusted")
            print("timestamp:", tv.timestamp)
        elif st.timestamp_validity is not None:
            fail("unexpected timestamp in B-B")
    print("VALID")


def trust(ca_path):
    from asn1crypto import pem, x509
    from pyhanko_certvalidator import ValidationContext

    with open(ca_path, "rb") as f:
        _, _, der = pem.unarmor(f.read())
    return ValidationContext(trust_roots=[x509.Certificate.load(der)])


def cms_check(path, content_path, ca_path, want_ts):
    import asyncio
    from asn1crypto import cms
    from pyhanko.sign.validation.generic_cms import async_validate_detached_cms

    with open(path, "rb") as f:
        ci = cms.ContentInfo.load(f.read())
    content = open(content_path, "rb").read()
    st = asyncio.run(
        async_validate_detached_cms(content, ci["content"], trust(ca_path), ts_validation_context=trust(ca_path))
    )
    print(st.pretty_print_details())
    if not (st.intact and st.valid):
        fail("signature not intact/valid")
    if not st.trusted:
        fail("signer not trusted")
    if want_ts:
        tv = st.timestamp_validity
        if tv is None or not (tv.intact and tv.valid and tv.trusted):
            fail("no valid, trusted signature timestamp")
    print("VALID")


def cms_parts(path, outdir):
    from asn1crypto import cms, tsp  # noqa: F401 (tsp names the ESS attributes)

    with open(path, "rb") as f:
        ci = cms.ContentInfo.load(f.read())
    si = ci["content"]["signer_infos"][0]
    names = [a["type"].native for a in si["signed_attrs"]]
    with open(f"{outdir}/signed_attrs.txt", "w") as f:
        f.write("\n".join(names) + "\n")
    sig = si["signature"].native
    with open(f"{outdir}/signature.bin", "wb") as f:
        f.write(sig)
    tokens = []
    if si["unsigned_attrs"].native is not None:
        for a in si["unsigned_attrs"]:
            if a["type"].native == "signature_time_stamp_token":
                tokens.append(a["values"][0].dump())
    if tokens:
        with open(f"{outdir}/token.der", "wb") as f:
            f.write(tokens[0])
    print("signed attributes:", names, "timestamp tokens:", len(tokens))


def load_cert_key(pem_path):
    from cryptography import x509

    with open(pem_path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def jws_check(token_path, payload_path, seal_pem):
    from jwcrypto import jwk, jws
    from cryptography.hazmat.primitives.serialization import Encoding

    token = open(token_path).read().strip()
    payload = open(payload_path, "rb").read()
    seal = load_cert_key(seal_pem)
    key = jwk.JWK.from_pyca(seal.public_key())
    s = jws.JWS()
    s.deserialize(token)
    hdr = s.jose_header
    print("header:", {k: v for k, v in hdr.items() if k != "x5c"})
    if hdr.get("b64") is not False or hdr.get("crit") != ["b64"]:
        fail("not an unencoded-payload JWS")
    if base64.b64decode(hdr["x5c"][0]) != seal.public_bytes(Encoding.DER):
        fail("x5c leaf is not the seal certificate")
    try:
        s.verify(key, detached_payload=payload)
    except Exception as e:
        fail(f"jwcrypto: {e!r}")
    print("VALID")


class Resp:
    def __init__(self, status, headers):
        self.status_code = status
        self.headers = headers
        self.request = None


def httpsig_check(resp_path, pub_pem, alg):
    from http_message_signatures import HTTPMessageVerifier, algorithms
    from http_message_signatures.resolvers import HTTPSignatureKeyResolver

    r = json.load(open(resp_path))
    body = base64.b64decode(r["body_b64"])
    headers = dict(r["headers"])
    key_pem = open(pub_pem, "rb").read()

    class Keys(HTTPSignatureKeyResolver):
        def resolve_public_key(self, key_id):
            return key_pem if key_id == r["keyid"] else None

    cls = {"ecdsa-p256-sha256": algorithms.ECDSA_P256_SHA256, "ed25519": algorithms.ED25519}[alg]
    v = HTTPMessageVerifier(signature_algorithm=cls, key_resolver=Keys())
    try:
        res = v.verify(
            Resp(r["status"], headers),
            expect_tag="stadttor",
            require_components=("@status", "content-type", "content-digest"),
            body=body,
        )
    except Exception as e:
        fail(f"http-message-signatures: {e!r}")
    # Our own look at the digest, not trusting the library's.
    want = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
    if headers.get("content-digest") != want:
        fail("Content-Digest does not match the body")
    print("covered:", list(res[0].covered_components), "params:", res[0].parameters)
    print("VALID")


def delegation_check(statement_path, seal_pem, resp_path):
    from jwcrypto import jwk, jws
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    statement = open(statement_path).read().strip()
    seal = load_cert_key(seal_pem)
    s = jws.JWS()
    s.deserialize(statement)
    if base64.b64decode(s.jose_header["x5c"][0]) != seal.public_bytes(Encoding.DER):
        fail("delegation not by the seal certificate")
    try:
        s.verify(jwk.JWK.from_pyca(seal.public_key()))
    except Exception as e:
        fail(f"delegation statement: {e!r}")
    claims = json.loads(s.payload)
    print("delegation:", {k: v for k, v in claims.items() if k != "jwk"})
    key = jwk.JWK(**claims["jwk"])
    if key.thumbprint() != claims["keyid"]:
        fail("keyid is not the RFC 7638 thumbprint")
    r = json.load(open(resp_path))
    if r["keyid"] != claims["keyid"]:
        fail("response not signed with the delegated keyid")
    pem = key.export_to_pem()
    with open(resp_path + ".pub.pem", "wb") as f:
        f.write(pem)
    httpsig_check(resp_path, resp_path + ".pub.pem", claims["alg"])


if __name__ == "__main__":
    cmd, *a = sys.argv[1:]
    if cmd == "pades":
        pades(a[0], a[1], "--timestamp" in a)
    elif cmd == "cms":
        cms_check(a[0], a[1], a[2], "--timestamp" in a)
    elif cmd == "cms-parts":
        cms_parts(a[0], a[1])
    elif cmd == "jws":
        jws_check(*a)
    elif cmd == "httpsig":
        httpsig_check(*a)
    elif cmd == "delegation":
        delegation_check(*a)
    else:
        fail(f"unknown command {cmd}")
