"""A test SAML 2.0 IdP that behaves like BundID (DeutschlandID) as far as
public sources describe it; see README.md for what is and is not verified.

Real parts: pysaml2 parses the SP metadata, parses the AuthnRequest and
verifies its signature against the SP's signing certificate (xmlsec1);
RSA-PSS request signatures, which xmlsec1 1.2.37 cannot check, are verified
by pss_verify.py (lxml + cryptography) instead; xmlsec1 signs assertions and
responses and encrypts assertions. Only the XML of the assertion and response
is written here (as text), so that the BundID specifics (akdb:TrustLevel,
STORK-QAA contexts) and the threat knobs are exact.

    python idp.py CONFIG.json      prints "IdP ready http://127.0.0.1:PORT"

Endpoints:
    GET  /metadata                  IdP metadata (signing cert, SSO endpoint)
    GET  /metadata-signed           the same, signed by the IdP signing key
                                    (?tampered: SSO location changed after signing)
    POST /sso                       SAMLRequest (+RelayState), HTTP-POST binding;
                                    query: user=NAME (default citizen-high),
                                    threat=KNOB (see THREATS)
    GET  /last                      JSON: what the last AuthnRequest asked for,
                                    and which verifier checked its signature
    GET  /initiate-logout           (config "slo") an auto-submit form with a
                                    signed LogoutRequest for the last login to
                                    the SP's SLO URL; query: by=session-index
                                    (default) or name-id, threat=KNOB (see
                                    slo.LOGOUT_THREATS), relay=RELAYSTATE
    POST /slo                       (config "slo") the SP's LogoutRequest
                                    (answered with a signed LogoutResponse
                                    form) or LogoutResponse; see slo.py
    GET  /last-logout               JSON: the last LogoutRequest from the SP
    GET  /last-logout-response      JSON: the last LogoutResponse from the SP
Answer: 200 with an auto-submit HTML form (SAMLResponse, RelayState) to the
ACS URL, or 400/403 with a plain-text reason.
"""

import base64
import copy
import hashlib
import datetime
import html
import json
import re
import secrets
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.etree import ElementTree as ET

from cryptography import x509
from defusedxml.ElementTree import fromstring as safe_fromstring
from saml2 import BINDING_HTTP_POST
from saml2.config import IdPConfig
from saml2.server import Server
from saml2.sigver import CryptoBackendXmlSec1, pre_encryption_part

import pss_sign
import pss_verify
import slo

NS = {
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "xenc": "http://www.w3.org/2001/04/xmlenc#",
    "xs": "http://www.w3.org/2001/XMLSchema",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
    "akdb": "https://www.akdb.de/request/2018/09",
}
for _p, _u in NS.items():
    ET.register_namespace(_p, _u)

# xmlsec1 1.2.37 (Debian 12) has no RSA-PSS (xmldsig-more#sha256-rsa-MGF1):
# `xmlsec1 --list-transforms` lists rsa-sha256 but no rsa-pss; RSA-PSS came
# with xmlsec 1.3. Requests signed with it are verified by pss_verify.py.
# TODO(rsa-pss): sign responses with RSA_PSS_SHA256 once the test runs on an
# xmlsec1 >= 1.3 (Debian 13), and make it the default like BundID.
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
RSA_PSS_SHA256 = "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
RSA_1_5 = "http://www.w3.org/2001/04/xmlenc#rsa-1_5"
OTHER_ACS = "https://other-sp.example/acs"
XXE_DOCTYPE = '<!DOCTYPE samlp:Response [<!ENTITY t SYSTEM "file:///etc/hostname">]>'
LAUGHS_DOCTYPE = (
    '<!DOCTYPE samlp:Response [<!ENTITY l0 "ha">'
    + "".join(f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    + "]>"
)
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
AES256_GCM = "http://www.w3.org/2009/xmlenc11#aes256-gcm"
AES256_CBC = "http://www.w3.org/2001/04/xmlenc#aes256-cbc"
RSA_OAEP_MGF1P = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"
TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
URI_FORMAT = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"

LEVELS = ["STORK-QAA-Level-1", "STORK-QAA-Level-2", "STORK-QAA-Level-3", "STORK-QAA-Level-4"]

BPK2 = "urn:oid:1.3.6.1.4.1.25484.494450.3"
GIVEN_NAME = "urn:oid:2.5.4.42"
SURNAME = "urn:oid:2.5.4.4"
MAIL = "urn:oid:0.9.2342.19200300.100.1.3"
BIRTHDATE = "urn:oid:1.2.40.0.10.2.1.1.55"
PLACE_OF_BIRTH = "urn:oid:1.3.6.1.5.5.7.9.2"
POSTAL_ADDRESS = "urn:oid:2.5.4.16"
POSTAL_CODE = "urn:oid:2.5.4.17"
LOCALITY = "urn:oid:2.5.4.7"
QAA_LEVEL = "urn:oid:1.2.40.0.10.2.1.1.261.94"

# Test users: level reached (AuthnContextClassRef), method, and attributes
# as (value, akdb:TrustLevel). Erika Mustermann is the specimen eID holder.
USERS = {
    "citizen-high": {
        "level": "STORK-QAA-Level-4",
        "method": "eID",
        "attributes": {
            BPK2: ("bPK2-ERIKA-7f3a9c21e4b8d05a", "HOCH"),
            GIVEN_NAME: ("Erika", "HOCH"),
            SURNAME: ("Mustermann", "HOCH"),
            BIRTHDATE: ("1964-08-12", "HOCH"),
            PLACE_OF_BIRTH: ("Berlin", "HOCH"),
            POSTAL_ADDRESS: ("Heidestraße 17", "HOCH"),
            POSTAL_CODE: ("51147", "HOCH"),
            LOCALITY: ("Köln", "HOCH"),
            MAIL: ("erika@example.org", "NORMAL"),
        },
    },
    "citizen-substantial": {
        "level": "STORK-QAA-Level-3",
        "method": "Elster",
        "attributes": {
            BPK2: ("bPK2-MAX-2b6e0d94a1c7f358", "SUBSTANTIELL"),
            GIVEN_NAME: ("Max", "SUBSTANTIELL"),
            SURNAME: ("Mustermann", "SUBSTANTIELL"),
            MAIL: ("max@example.org", "NORMAL"),
        },
    },
    "citizen-low": {
        "level": "STORK-QAA-Level-1",
        "method": "Benutzername",
        "attributes": {
            BPK2: ("bPK2-LENA-c94f1a0e7d3b62b8", "UNTERGEORDNET"),
            GIVEN_NAME: ("Lena", "UNTERGEORDNET"),
            SURNAME: ("Beispiel", "UNTERGEORDNET"),
            MAIL: ("lena@example.org", "NORMAL"),
        },
    },
}

THREATS = {
    "expired": "assertion and subject confirmation NotOnOrAfter 10 minutes in the past",
    "wrong-audience": "Audience is https://other-sp.example/saml",
    "replay": "the previous response again, byte for byte (same IDs)",
    "unsigned-assertion": "assertion without signature (response still signed)",
    "foreign-key": "assertion and response signed by a key not in the IdP metadata",
    "comment-nameid": "NameID user@evil.example<!---->.kommune.example, signature valid",
    "wrong-destination": "Response Destination https://other-sp.example/acs",
    "wrong-recipient": "SubjectConfirmationData Recipient https://other-sp.example/acs",
    "wrong-in-response-to": "InResponseTo (response and subject) names another request",
    "unsolicited": "no InResponseTo at all (IdP-initiated)",
    "unsigned": "neither the response nor the assertion is signed",
    "response-tampered": "response changed after signing (Consent attribute added)",
    "assertion-tampered": "assertion bPK2 changed after signing, then encrypted; response signature valid",
    "sha1": "both signatures rsa-sha1 with sha1 digests",
    "rsa-1_5": "key transport rsa-1_5 (PKCS#1 v1.5) instead of RSA-OAEP",
    "xxe": "a DOCTYPE with an external entity (file:///etc/hostname) used in StatusMessage",
    "entity-expansion": "a DOCTYPE with nested entities (billion laughs) used in StatusMessage",
    "xsw1": "evil response; the signed original response inside its Signature",
    "xsw2": "evil response; the signed original response before its Signature",
    "xsw3": "evil assertion first, signed original assertion after it",
    "xsw4": "evil assertion wrapping the signed original assertion",
    "xsw5": "evil assertion carries the original signature; unsigned copy of the original at the end",
    "xsw6": "evil assertion carries the signature; unsigned copy of the original inside it",
    "xsw7": "signed original assertion in samlp:Extensions, evil assertion after it",
    "xsw8": "evil assertion carries the signature; unsigned original in ds:Object inside it",
}
EVIL_NAME_ID = "evil-attacker"
EVIL_BPK2 = "bPK2-EVIL-000000000000"


def now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def ts(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id():
    return "_" + secrets.token_hex(20)


def pem_body(path):
    text = open(path, encoding="ascii").read()
    return "".join(line for line in text.splitlines() if "-----" not in line)


def parse_request_details(xml):
    """What the (already verified) AuthnRequest asks for."""
    root = safe_fromstring(xml)
    ctx = root.find("samlp:RequestedAuthnContext", NS)
    ext = root.find("samlp:Extensions/akdb:AuthenticationRequest", NS)
    return {
        "id": root.get("ID"),
        "issuer": (root.findtext("saml:Issuer", "", NS) or "").strip(),
        "acs_url": root.get("AssertionConsumerServiceURL"),
        "destination": root.get("Destination"),
        "force_authn": root.get("ForceAuthn") in ("true", "1"),
        "comparison": ctx.get("Comparison", "exact") if ctx is not None else None,
        "requested_levels": [
            (c.text or "").strip() for c in (ctx if ctx is not None else [])
        ],
        "akdb_version": ext.get("Version") if ext is not None else None,
        "requested_attributes": [
            a.get("Name")
            for a in (ext.findall("akdb:RequestedAttributes/akdb:RequestedAttribute", NS) if ext is not None else [])
        ],
    }


def request_signature_algorithm(root):
    """The SignatureMethod of the AuthnRequest `root` (an lxml element), None
    when unsigned (pysaml2 then refuses it). Refuses SHA-1 and anything but
    rsa-sha256 or sha256-rsa-MGF1 with SHA-256 digests."""
    if root.tag != f"{{{NS['samlp']}}}AuthnRequest":
        raise ValueError(f"{root.tag} is not a samlp:AuthnRequest")
    alg = pss_verify.signature_method(root)
    if alg is None:
        return None
    if alg not in (RSA_SHA256, RSA_PSS_SHA256):
        raise ValueError(f"SignatureMethod {alg} is not accepted (rsa-sha256 or sha256-rsa-MGF1; no SHA-1)")
    for method in root.iterfind("ds:Signature/ds:SignedInfo/ds:Reference/ds:DigestMethod", NS):
        if method.get("Algorithm") != SHA256:
            raise ValueError(f"DigestMethod {method.get('Algorithm')} is not accepted (SHA-256 only; no SHA-1)")
    return alg


def signature_template(ref_id, cert_b64, sign_alg, digest=SHA256):
    return (
        f'<ds:Signature xmlns:ds="{NS["ds"]}"><ds:SignedInfo>'
        f'<ds:CanonicalizationMethod Algorithm="{EXC_C14N}"/>'
        f'<ds:SignatureMethod Algorithm="{sign_alg}"/>'
        f'<ds:Reference URI="#{ref_id}"><ds:Transforms>'
        f'<ds:Transform Algorithm="{ENVELOPED}"/><ds:Transform Algorithm="{EXC_C14N}"/>'
        f'</ds:Transforms><ds:DigestMethod Algorithm="{digest}"/><ds:DigestValue/></ds:Reference>'
        f"</ds:SignedInfo><ds:SignatureValue/><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert_b64}"
        f"</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>"
    )


class Idp:
    def __init__(self, cfg):
        self.cfg = cfg
        self.base = f"http://127.0.0.1:{cfg['port']}"
        self.entity_id = cfg.get("entity_id", self.base + "/metadata")
        self.sign_alg = cfg.get("sign_alg", RSA_SHA256)
        self.data_enc = cfg.get("data_encryption", AES256_GCM)
        self.server = Server(config=IdPConfig().load(self.pysaml2_config()))
        # For requests whose signature pss_verify checked (RSA-PSS): pysaml2
        # gets the signed bytes without the signature and checks the rest.
        self.presigned = Server(config=IdPConfig().load(self.pysaml2_config(signed_requests=False)))
        self.xmlsec = CryptoBackendXmlSec1(cfg.get("xmlsec1", "/usr/bin/xmlsec1"), delete_tmpfiles=True)
        self.last_response = None
        self.last_request = None
        self.slo = slo.Slo(self, NS, now, ts, new_id, signature_template, pem_body)

    def pysaml2_config(self, signed_requests=True):
        c = self.cfg
        return {
            "entityid": self.entity_id,
            "xmlsec_binary": c.get("xmlsec1", "/usr/bin/xmlsec1"),
            "key_file": c["signing_key"],
            "cert_file": c["signing_cert"],
            "metadata": {"local": [c["sp_metadata"]]},
            "service": {
                "idp": {
                    "name": "stadttor test IdP (BundID-like)",
                    "endpoints": {"single_sign_on_service": [(self.base + "/sso", BINDING_HTTP_POST)]},
                    "want_authn_requests_signed": signed_requests,
                    "name_id_format": [TRANSIENT],
                }
            },
            "delete_tmpfiles": True,
        }

    def metadata(self):
        """entityID, signing certificate, HTTP-POST SLO endpoint if enabled,
        HTTP-POST SSO endpoint (written here:
        pysaml2's generator also advertises MD5 and SHA-1 as supported)."""
        return (
            f'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="{NS["ds"]}" '
            f'entityID="{self.entity_id}"><md:IDPSSODescriptor WantAuthnRequestsSigned="true" '
            'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
            '<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>'
            f'{pem_body(self.cfg["signing_cert"])}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>'
            f"{self.slo.metadata_element()}<md:NameIDFormat>{TRANSIENT}</md:NameIDFormat>"
            f'<md:SingleSignOnService Binding="{BINDING_HTTP_POST}" Location="{self.base}/sso"/>'
            "</md:IDPSSODescriptor></md:EntityDescriptor>"
        )

    # --- request ------------------------------------------------------------
    def read_request(self, saml_request_b64):
        """Verifies the signature against the SP metadata and parses: RSA-PSS
        with pss_verify (lxml + cryptography), the rest with pysaml2 + xmlsec1."""
        xml_bytes = base64.b64decode(saml_request_b64)
        root = pss_verify.parse(xml_bytes)
        alg = request_signature_algorithm(root)
        if alg == RSA_PSS_SHA256:
            signed = pss_verify.verify(root, self.sp_signing_keys(root))
            req = self.presigned.parse_authn_request(base64.b64encode(signed).decode("ascii"), BINDING_HTTP_POST)
            xml, verified_by = signed.decode("utf-8"), "cryptography+lxml"
        else:
            req = self.server.parse_authn_request(saml_request_b64, BINDING_HTTP_POST)
            xml, verified_by = xml_bytes.decode("utf-8"), "xmlsec1"
        details = parse_request_details(xml)
        details["signature_algorithm"] = alg
        details["signature_verified_by"] = verified_by
        sp = req.message.issuer.text.strip()
        acs = self.server.metadata.assertion_consumer_service(sp, BINDING_HTTP_POST)
        allowed = [a["location"] for a in acs]
        if details["acs_url"] and details["acs_url"] not in allowed:
            raise ValueError(f"AssertionConsumerServiceURL {details['acs_url']} is not in the SP metadata")
        details["acs_url"] = details["acs_url"] or allowed[0]
        if details["akdb_version"] not in (None, "2"):
            raise ValueError(f"akdb:AuthenticationRequest Version {details['akdb_version']} is not 2")
        comparison = details["comparison"]
        if comparison not in (None, "minimum", "exact"):
            raise ValueError(f"RequestedAuthnContext Comparison={comparison} is not supported")
        for level in details["requested_levels"]:
            if level not in LEVELS:
                raise ValueError(f"unknown AuthnContextClassRef {level}")
        enc = self.server.metadata.certs(sp, "spsso", use="encryption")
        if not enc:
            raise ValueError(f"SP {sp} has no encryption certificate in its metadata")
        details["sp"] = sp
        details["sp_enc_cert"] = "".join(enc[0][1].split())
        return details

    def sp_signing_keys(self, root):
        """The public keys of the signing certificates that the SP metadata
        holds for the request's Issuer (never the request's own KeyInfo)."""
        issuer = (root.findtext("saml:Issuer", "", NS) or "").strip()
        try:
            certs = self.server.metadata.certs(issuer, "spsso", use="signing")
        except KeyError:
            certs = []
        if not certs:
            raise ValueError(f"no signing certificate for SP {issuer!r} in the metadata")
        return [x509.load_der_x509_certificate(base64.b64decode("".join(c.split()))).public_key() for _, c in certs]

    # --- response -----------------------------------------------------------
    def respond(self, details, user_name, threat):
        if threat == "replay":
            if self.last_response is None:
                raise ValueError("threat=replay: no earlier response to replay")
            return self.last_response
        if threat and threat not in THREATS:
            raise ValueError(f"unknown threat {threat}; known: {', '.join(THREATS)}")
        user = USERS.get(user_name)
        if user is None:
            raise ValueError(f"unknown user {user_name}; known: {', '.join(USERS)}")
        key, cert = self.cfg["signing_key"], self.cfg["signing_cert"]
        if threat == "foreign-key":
            key, cert = self.cfg["foreign_key"], self.cfg["foreign_cert"]
        details = self.threatened_details(details, threat)
        aid = new_id()
        name_id = None if threat == "comment-nameid" else new_id()
        session_index = new_id()
        assertion = self.assertion(aid, details, user, threat, pem_body(cert), name_id, session_index=session_index)
        if threat not in ("unsigned-assertion", "unsigned"):
            assertion = self.sign(assertion, "Assertion", aid, key)
        if threat == "assertion-tampered":
            bpk2 = user["attributes"][BPK2][0]
            assertion = assertion.replace(f">{bpk2}<", f">{EVIL_BPK2}<", 1)
        if threat == "comment-nameid":
            # Exclusive C14N drops comments: the signature stays valid.
            assertion = assertion.replace("user@evil.example.kommune.example", "user@evil.example<!---->.kommune.example", 1)
        rid = new_id()
        if threat in ("xsw1", "xsw2"):
            response = self.response_xsw(threat, rid, details, user, assertion, key, cert)
        else:
            parts = self.wrap_assertion(threat, assertion, details, user)
            sign_response = not (threat or "").startswith("xsw") and threat != "unsigned"
            response = self.response(rid, details, parts, pem_body(cert) if sign_response else None)
            if sign_response:
                response = self.sign(response, "Response", rid, key, protocol=True)
        response = self.after_signing(response, threat)
        self.last_response = response
        if not threat:
            self.slo.remember_login(details["sp"], name_id, TRANSIENT, session_index)
        return response

    @staticmethod
    def threatened_details(details, threat):
        """The request details as the threat wants them answered."""
        d = dict(details, recipient=details["acs_url"], destination=details["acs_url"])
        d["algs"] = (RSA_SHA1, SHA1) if threat == "sha1" else None
        if threat == "wrong-destination":
            d["destination"] = OTHER_ACS
        elif threat == "wrong-recipient":
            d["recipient"] = OTHER_ACS
        elif threat == "wrong-in-response-to":
            d["id"] = "_" + "0" * 40
        elif threat == "unsolicited":
            d["id"] = None
        return d

    @staticmethod
    def after_signing(response, threat):
        """Changes that break or bypass the response signature."""
        if threat == "response-tampered":
            return response.replace(" Version=", ' Consent="urn:oasis:names:tc:SAML:2.0:consent:obtained" Version=', 1)
        if threat in ("xxe", "entity-expansion"):
            doctype = XXE_DOCTYPE if threat == "xxe" else LAUGHS_DOCTYPE
            ref = "&t;" if threat == "xxe" else "&l9;"
            status = '<samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/>'
            return doctype + response.replace(status, f"{status}<samlp:StatusMessage>{ref}</samlp:StatusMessage>", 1)
        return response

    def assertion(self, aid, details, user, threat, cert_b64, name_id=None, bpk2=None, session_index=None):
        t = now()
        not_after = t + datetime.timedelta(minutes=5)
        issued = t
        if threat == "expired":
            not_after = t - datetime.timedelta(minutes=10)
            issued = t - datetime.timedelta(minutes=20)
        audience = "https://other-sp.example/saml" if threat == "wrong-audience" else details["sp"]
        if name_id is None:
            name_id = "user@evil.example.kommune.example" if threat == "comment-nameid" else new_id()
        wanted = details["requested_attributes"] or list(user["attributes"])
        attrs = ""
        for oid in wanted:
            if oid not in user["attributes"]:
                continue
            value, trust = user["attributes"][oid]
            if oid == BPK2 and bpk2 is not None:
                value = bpk2
            attrs += (
                f'<saml:Attribute Name="{oid}" NameFormat="{URI_FORMAT}" akdb:TrustLevel="{trust}">'
                f'<saml:AttributeValue xsi:type="xs:string">{html.escape(value)}</saml:AttributeValue></saml:Attribute>'
            )
        algs = details.get("algs") or (self.sign_alg, SHA256)
        sig = signature_template(aid, cert_b64, *algs) if threat not in ("unsigned-assertion", "unsigned") else ""
        in_response_to = f' InResponseTo="{details["id"]}"' if details["id"] else ""
        return (
            f'<saml:Assertion xmlns:saml="{NS["saml"]}" xmlns:akdb="{NS["akdb"]}" xmlns:xs="{NS["xs"]}" '
            f'xmlns:xsi="{NS["xsi"]}" ID="{aid}" IssueInstant="{ts(issued)}" Version="2.0">'
            f"<saml:Issuer>{self.entity_id}</saml:Issuer>{sig}"
            f'<saml:Subject><saml:NameID Format="{TRANSIENT}" NameQualifier="{self.entity_id}" '
            f'SPNameQualifier="{details["sp"]}">{name_id}</saml:NameID>'
            f'<saml:SubjectConfirmation Method="{BEARER}"><saml:SubjectConfirmationData'
            f'{in_response_to} NotOnOrAfter="{ts(not_after)}" Recipient="{details.get("recipient", details["acs_url"])}"/>'
            f"</saml:SubjectConfirmation></saml:Subject>"
            f'<saml:Conditions NotBefore="{ts(issued - datetime.timedelta(seconds=30))}" NotOnOrAfter="{ts(not_after)}">'
            f"<saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction>"
            f"</saml:Conditions>"
            f'<saml:AuthnStatement AuthnInstant="{ts(issued)}" SessionIndex="{session_index or new_id()}">'
            f"<saml:AuthnContext><saml:AuthnContextClassRef>{user['level']}</saml:AuthnContextClassRef>"
            f"</saml:AuthnContext></saml:AuthnStatement>"
            f"<saml:AttributeStatement>{attrs}</saml:AttributeStatement></saml:Assertion>"
        )

    def signed_metadata(self, tampered=False):
        """The metadata with an enveloped signature by the IdP's signing key
        (for SPs that pin a metadata signing certificate); `tampered`
        changes the SSO location after signing."""
        mid = "_md" + secrets.token_hex(8)
        xml = self.metadata().replace(" entityID=", f' ID="{mid}" entityID=', 1)
        sig = signature_template(mid, pem_body(self.cfg["signing_cert"]), RSA_SHA256)
        xml = xml.replace("<md:IDPSSODescriptor", sig + "<md:IDPSSODescriptor", 1)
        out = self.xmlsec.sign_statement(
            xml, "urn:oasis:names:tc:SAML:2.0:metadata:EntityDescriptor", self.cfg["signing_key"], mid
        )
        out = re.sub(r"^<\?xml[^>]*\?>\s*", "", out)
        if tampered:
            out = out.replace(f"{self.base}/sso", "https://evil.example/sso", 1)
        return out

    def sign(self, xml, node, node_id, key, protocol=False):
        if f'Algorithm="{RSA_PSS_SHA256}"' in xml and self.sign_alg == RSA_PSS_SHA256:
            return pss_sign.sign(xml, node_id, key)
        ns = NS["samlp"] if protocol else NS["saml"]
        out = self.xmlsec.sign_statement(xml, f"{ns}:{node}", key, node_id)
        return re.sub(r"^<\?xml[^>]*\?>\s*", "", out)

    def encrypt(self, assertion_xml, enc_cert_b64, key_enc=RSA_OAEP_MGF1P):
        """One saml:EncryptedAssertion (RSA-OAEP key transport, AES-256 content)."""
        doc = f'<saml:EncryptedAssertion xmlns:saml="{NS["saml"]}">{assertion_xml}</saml:EncryptedAssertion>'
        template = pre_encryption_part(msg_enc=self.data_enc, key_enc=key_enc)
        digest = hashlib.sha256(enc_cert_b64.encode("ascii")).hexdigest()[:16]
        cert_file = f"{self.cfg['workdir']}/sp-enc-{digest}.pem"
        with open(cert_file, "w", encoding="ascii") as f:
            body = "\n".join(enc_cert_b64[i : i + 64] for i in range(0, len(enc_cert_b64), 64))
            f.write(f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")
        out = self.xmlsec.encrypt_assertion(
            doc, cert_file, template, key_type="aes-256",
            node_xpath="/*[local-name()='EncryptedAssertion']/*[local-name()='Assertion']",
        )
        return re.sub(r"^<\?xml[^>]*\?>\s*", "", out)

    def evil_assertion(self, details, user):
        """An unsigned assertion for the attacker (new ID, evil NameID and bPK2)."""
        return self.assertion(new_id(), details, user, "unsigned-assertion", "", EVIL_NAME_ID, EVIL_BPK2)

    def wrap_assertion(self, threat, signed, details, user):
        """Response children after Status: (extensions, [assertion XML, ...])."""
        enc = details["sp_enc_cert"]
        if not (threat or "").startswith("xsw"):
            return "", [self.encrypt(signed, enc, RSA_1_5 if threat == "rsa-1_5" else RSA_OAEP_MGF1P)]
        orig = ET.fromstring(signed)
        sig = orig.find("ds:Signature", NS)
        unsigned = copy.deepcopy(orig)
        unsigned.remove(unsigned.find("ds:Signature", NS))
        evil = ET.fromstring(self.evil_assertion(details, user))
        s = lambda e: ET.tostring(e, encoding="unicode")  # noqa: E731
        if threat == "xsw3":
            return "", [self.encrypt(s(evil), enc), self.encrypt(signed, enc)]
        if threat == "xsw4":
            evil.append(orig)
            return "", [self.encrypt(s(evil), enc)]
        if threat == "xsw7":
            ext = f'<samlp:Extensions>{self.encrypt(signed, enc)}</samlp:Extensions>'
            return ext, [self.encrypt(s(evil), enc)]
        moved = copy.deepcopy(sig)
        evil.insert(1, moved)
        if threat == "xsw5":
            return "", [self.encrypt(s(evil), enc), self.encrypt(s(unsigned), enc)]
        if threat == "xsw6":
            moved.append(unsigned)
        else:  # xsw8
            obj = ET.SubElement(moved, f"{{{NS['ds']}}}Object")
            obj.append(unsigned)
        return "", [self.encrypt(s(evil), enc)]

    def response(self, rid, details, parts, cert_b64, issued=None):
        extensions, assertions = parts
        algs = details.get("algs") or (self.sign_alg, SHA256)
        sig = signature_template(rid, cert_b64, *algs) if cert_b64 else ""
        in_response_to = f' InResponseTo="{details["id"]}"' if details["id"] else ""
        return (
            f'<samlp:Response xmlns:samlp="{NS["samlp"]}" xmlns:saml="{NS["saml"]}" ID="{rid}" Version="2.0" '
            f'IssueInstant="{ts(issued or now())}" Destination="{details.get("destination", details["acs_url"])}"{in_response_to}>'
            f"<saml:Issuer>{self.entity_id}</saml:Issuer>{sig}{extensions}"
            f'<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>'
            f"{''.join(assertions)}</samlp:Response>"
        )

    def response_xsw(self, threat, rid, details, user, signed_assertion, key, cert):
        """XSW1/2: the IdP-signed original response wrapped into an evil one."""
        enc = details["sp_enc_cert"]
        orig_xml = self.response(rid, details, ("", [self.encrypt(signed_assertion, enc)]), pem_body(cert))
        orig = ET.fromstring(self.sign(orig_xml, "Response", rid, key, protocol=True))
        sig = orig.find("ds:Signature", NS)
        orig.remove(sig)
        evil_assertion = self.encrypt(self.evil_assertion(details, user), enc)
        evil = ET.fromstring(self.response(new_id(), details, ("", [evil_assertion]), None))
        if threat == "xsw1":
            sig.append(orig)
            evil.insert(1, sig)
        else:
            evil.insert(1, orig)
            evil.insert(2, sig)
        return ET.tostring(evil, encoding="unicode")


def auto_submit_form(acs_url, saml_response_b64, relay_state):
    relay = (
        f'<input type="hidden" name="RelayState" value="{html.escape(relay_state)}"/>' if relay_state is not None else ""
    )
    return (
        "<!DOCTYPE html><html><body onload=\"document.forms[0].submit()\">"
        f'<form method="post" action="{html.escape(acs_url)}">'
        f'<input type="hidden" name="SAMLResponse" value="{saml_response_b64}"/>{relay}'
        "<noscript><button type=\"submit\">Weiter</button></noscript></form></body></html>"
    )


def make_handler(idp):
    class Handler(BaseHTTPRequestHandler):
        def reply(self, status, body, ctype="text/plain; charset=utf-8"):
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            path = url.path
            if path == "/metadata":
                self.reply(200, idp.metadata(), "application/samlmetadata+xml")
            elif path == "/metadata-signed":
                tampered = "tampered" in url.query.split("&")
                self.reply(200, idp.signed_metadata(tampered), "application/samlmetadata+xml")
            elif path == "/last":
                self.reply(200, json.dumps(idp.last_request), "application/json")
            elif path == "/last-logout":
                self.reply(200, json.dumps(idp.slo.last_logout), "application/json")
            elif path == "/last-logout-response":
                self.reply(200, json.dumps(idp.slo.last_logout_response), "application/json")
            elif path == "/initiate-logout":
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                try:
                    page = idp.slo.initiate(query)
                except ValueError as e:
                    return self.reply(400, f"{e}\n")
                self.reply(200, page, "text/html; charset=utf-8")
            else:
                self.reply(404, "not found\n")

        def do_POST(self):
            url = urllib.parse.urlsplit(self.path)
            if url.path not in ("/sso", "/slo"):
                return self.reply(404, "not found\n")
            query = dict(urllib.parse.parse_qsl(url.query))
            length = int(self.headers.get("Content-Length", "0"))
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode("utf-8")))
            if url.path == "/slo":
                return self.single_logout(form)
            if "SAMLRequest" not in form:
                return self.reply(400, "no SAMLRequest in the form\n")
            try:
                details = idp.read_request(form["SAMLRequest"])
            except Exception as e:  # every refusal is an answer, not a crash
                sys.stderr.write(f"refused AuthnRequest: {type(e).__name__}: {e}\n")
                return self.reply(403, f"AuthnRequest refused: {type(e).__name__}: {e}\n")
            idp.last_request = {k: v for k, v in details.items() if k != "sp_enc_cert"}
            try:
                response = idp.respond(details, query.get("user", "citizen-high"), query.get("threat"))
            except ValueError as e:
                return self.reply(400, f"{e}\n")
            except Exception as e:  # xmlsec1 failures: say which, keep serving
                sys.stderr.write(f"response failed: {type(e).__name__}: {e} {e.__cause__}\n")
                return self.reply(500, f"response failed: {type(e).__name__}: {e.__cause__ or e}\n")
            b64 = base64.b64encode(response.encode("utf-8")).decode("ascii")
            self.reply(200, auto_submit_form(details["acs_url"], b64, form.get("RelayState")), "text/html; charset=utf-8")

        def single_logout(self, form):
            if not idp.slo.enabled:
                return self.reply(404, "SLO is not enabled\n")
            try:
                status, body, ctype = idp.slo.receive(form)
            except Exception as e:  # every refusal is an answer, not a crash
                sys.stderr.write(f"refused logout message: {type(e).__name__}: {e}\n")
                return self.reply(403, f"logout message refused: {type(e).__name__}: {e}\n")
            self.reply(status, body, ctype)

        def log_message(self, fmt, *args):
            sys.stderr.write("idp: " + fmt % args + "\n")

    return Handler


def main():
    cfg = json.load(open(sys.argv[1], encoding="utf-8"))
    idp = Idp(cfg)
    httpd = ThreadingHTTPServer(("127.0.0.1", cfg["port"]), make_handler(idp))
    print(f"IdP ready {idp.base}", flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
