"""Fills an enveloped RSASSA-PSS XML signature (`xmldsig-more#sha256-rsa-MGF1`:
SHA-256, MGF1 with SHA-256, salt length 32) without xmlsec1, which cannot
sign RSA-PSS on Debian 12 (1.2.37). BundID and MUK sign their responses so.

The caller has put `signature_template(...)` (idp.py) into the element whose
`ID` is `node_id`, as a direct child; this fills its DigestValue (exclusive
C14N of the element without the signature: the enveloped-signature
transform) and its SignatureValue (exclusive C14N of SignedInfo in place,
signed with `cryptography`). lxml parses and canonicalises; no DTD,
entities or network.
"""

import base64
import copy
import hashlib

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from lxml import etree

DS = "http://www.w3.org/2000/09/xmldsig#"
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


def _ds(name):
    return f"{{{DS}}}{name}"


def _without(el, sig):
    """A copy of `el` without its child `sig`, keeping the text after it."""
    doc = copy.deepcopy(el)
    inner = doc[list(el).index(sig)]
    prev = inner.getprevious()
    if inner.tail:
        if prev is not None:
            prev.tail = (prev.tail or "") + inner.tail
        else:
            doc.text = (doc.text or "") + inner.tail
    doc.remove(inner)
    return doc


def sign(xml, node_id, key_path):
    """`xml` with the signature of the element `node_id` filled in."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.fromstring(xml.encode("utf-8"), parser)
    targets = [e for e in root.iter() if isinstance(e.tag, str) and e.get("ID") == node_id]
    if len(targets) != 1:
        raise ValueError(f"{len(targets)} elements with ID {node_id}")
    el = targets[0]
    sigs = [c for c in el if c.tag == _ds("Signature")]
    if len(sigs) != 1:
        raise ValueError("no signature template in the element")
    sig = sigs[0]
    referenced = etree.tostring(_without(el, sig), method="c14n", exclusive=True, with_comments=False)
    digest = base64.b64encode(hashlib.sha256(referenced).digest()).decode("ascii")
    signed_info = sig.find(_ds("SignedInfo"))
    signed_info.find(f"{_ds('Reference')}/{_ds('DigestValue')}").text = digest
    c14n = etree.tostring(signed_info, method="c14n", exclusive=True, with_comments=False)
    with open(key_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    value = key.sign(c14n, PSS, hashes.SHA256())
    sig.find(_ds("SignatureValue")).text = base64.b64encode(value).decode("ascii")
    return etree.tostring(root, encoding="unicode")
