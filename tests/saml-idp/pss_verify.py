"""Verifies an enveloped RSASSA-PSS XML signature on a SAML protocol message
without xmlsec1 (Debian 12's xmlsec1 1.2.37 has no RSA-PSS).

SignatureMethod `http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1`
(RFC 6931 2.3.10): SHA-256, MGF1 with SHA-256, salt length 32, trailer 1.
lxml does the parsing and the exclusive C14N, `cryptography` the RSA-PSS
check. Only the profile SAML (saml-core 5.4) and BundID use is accepted:

- no DOCTYPE, no entities, no network (parsed with load_dtd=False,
  resolve_entities=False, no_network=True);
- exactly one ds:Signature in the document, a direct child of the root,
  with SignedInfo, SignatureValue and an optional KeyInfo (ignored: the key
  comes from the caller, i.e. the SP metadata), no ds:Object;
- CanonicalizationMethod exclusive C14N without comments, SignatureMethod
  sha256-rsa-MGF1 (no parameters), exactly one Reference whose URI is "#"
  plus the root's ID (an ID no other element carries), Transforms exactly
  enveloped-signature then exclusive C14N, DigestMethod SHA-256;
- no InclusiveNamespaces PrefixList (refused, not implemented).

`verify` returns the signed bytes (exclusive C14N of the root without its
signature): the caller should read the message from those, not from the
original text.
"""

import base64
import binascii
import copy
import hmac
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

DS = "http://www.w3.org/2000/09/xmldsig#"
RSA_PSS_SHA256 = "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
MIN_RSA_BITS = 2048


class SignatureRefused(Exception):
    """The signature is missing, malformed, outside the profile or wrong."""


def _ds(name):
    return f"{{{DS}}}{name}"


def parse(xml_bytes):
    """The root element of `xml_bytes`, parsed without DTD, entities or network."""
    if b"<!DOCTYPE" in xml_bytes or b"<!ENTITY" in xml_bytes:
        raise SignatureRefused("a DOCTYPE or ENTITY declaration is not allowed")
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
    )
    try:
        root = etree.fromstring(xml_bytes, parser)
    except etree.XMLSyntaxError as e:
        raise SignatureRefused(f"not well-formed XML: {e}") from e
    if root.getroottree().docinfo.doctype:
        raise SignatureRefused("a DOCTYPE is not allowed")
    return root


def the_signature(root):
    """The root's one ds:Signature (None when the document has none)."""
    everywhere = root.findall(".//" + _ds("Signature"))
    if not everywhere:
        return None
    direct = [c for c in root if c.tag == _ds("Signature")]
    if len(everywhere) != 1 or len(direct) != 1:
        raise SignatureRefused(
            f"expected one ds:Signature as a direct child of the root, found {len(direct)} "
            f"there and {len(everywhere)} in the document"
        )
    return direct[0]


def signature_method(root):
    """The Algorithm of the root signature's SignatureMethod, or None if unsigned."""
    sig = the_signature(root)
    if sig is None:
        return None
    method = sig.find(f"{_ds('SignedInfo')}/{_ds('SignatureMethod')}")
    if method is None:
        raise SignatureRefused("ds:Signature without SignedInfo/SignatureMethod")
    return method.get("Algorithm")


def _children(el, *names):
    """The element children of `el`, which must be exactly `names` (a trailing
    "?" marks an optional last one)."""
    kids = [c for c in el if isinstance(c.tag, str)]
    want = [n.rstrip("?") for n in names]
    if names and names[-1].endswith("?") and len(kids) == len(want) - 1:
        want = want[:-1]
    if [c.tag for c in kids] != [_ds(n) for n in want]:
        got = ", ".join(etree.QName(c).localname for c in kids)
        raise SignatureRefused(f"ds:{etree.QName(el).localname} must hold {', '.join(names)}; it holds {got}")
    for c in el:
        if not isinstance(c.tag, str) and not isinstance(c, etree._Comment):
            raise SignatureRefused(f"unexpected node in ds:{etree.QName(el).localname}")
    return kids


def _algorithm(el, expected, what):
    if el.get("Algorithm") != expected:
        raise SignatureRefused(f"{what} {el.get('Algorithm')} is not accepted (only {expected})")
    if len(el):
        raise SignatureRefused(f"{what} must have no child elements (InclusiveNamespaces, parameters)")


def _b64(text, what):
    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except binascii.Error as e:
        raise SignatureRefused(f"{what} is not base64") from e


def _enveloped_c14n(root, sig):
    """Exclusive C14N of the root without `sig` (the enveloped-signature
    transform, then exc-c14n), keeping the text that followed `sig`."""
    doc = copy.deepcopy(root)
    index = list(root).index(sig)
    inner = doc[index]
    prev = inner.getprevious()
    if inner.tail:
        if prev is not None:
            prev.tail = (prev.tail or "") + inner.tail
        else:
            doc.text = (doc.text or "") + inner.tail
    doc.remove(inner)
    return etree.tostring(doc, method="c14n", exclusive=True, with_comments=False)


def verify(root, public_keys):
    """Checks the enveloped RSA-PSS signature of `root` against any of
    `public_keys` (RSA keys from the SP metadata, never from KeyInfo).
    Returns the signed bytes; raises SignatureRefused."""
    sig = the_signature(root)
    if sig is None:
        raise SignatureRefused("the message is not signed")
    root_id = root.get("ID")
    if not root_id:
        raise SignatureRefused("the root element has no ID attribute")
    same_id = [e for e in root.iter() if isinstance(e.tag, str) and e.get("ID") == root_id]
    if len(same_id) != 1:
        raise SignatureRefused(f"ID {root_id} is carried by {len(same_id)} elements")
    signed_info, sig_value, *_ = _children(sig, "SignedInfo", "SignatureValue", "KeyInfo?")
    c14n, method, ref = _children(signed_info, "CanonicalizationMethod", "SignatureMethod", "Reference")
    _algorithm(c14n, EXC_C14N, "CanonicalizationMethod")
    _algorithm(method, RSA_PSS_SHA256, "SignatureMethod")
    if ref.get("URI") != "#" + root_id:
        raise SignatureRefused(f"Reference URI {ref.get('URI')!r} does not name the root element (#{root_id})")
    transforms, digest_method, digest_value = _children(ref, "Transforms", "DigestMethod", "DigestValue")
    steps = _children(transforms, "Transform", "Transform")
    _algorithm(steps[0], ENVELOPED, "Transform 1")
    _algorithm(steps[1], EXC_C14N, "Transform 2")
    _algorithm(digest_method, SHA256, "DigestMethod")

    signed = _enveloped_c14n(root, sig)
    if not hmac.compare_digest(hashlib.sha256(signed).digest(), _b64(digest_value.text, "DigestValue")):
        raise SignatureRefused("DigestValue does not match the message (changed after signing?)")
    signed_info_c14n = etree.tostring(signed_info, method="c14n", exclusive=True, with_comments=False)
    signature = _b64(sig_value.text, "SignatureValue")
    for key in public_keys:
        if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_RSA_BITS:
            continue
        try:
            key.verify(signature, signed_info_c14n, PSS, hashes.SHA256())
        except InvalidSignature:
            continue
        return signed
    raise SignatureRefused(
        f"RSA-PSS signature does not verify with the {len(public_keys)} signing key(s) of the SP metadata"
    )
