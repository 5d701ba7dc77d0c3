"""Single Logout for the test IdP (SAML 2.0 core 3.7, HTTP-POST binding both
ways), offered when the config says "slo": true.

IdP-initiated: GET /initiate-logout builds a LogoutRequest for the last
login (its NameID with Format and qualifiers, and its SessionIndex unless
by=name-id), signs it with xmlsec1 (rsa-sha256, exclusive C14N, like the
responses) and answers with an auto-submit form to the SP's HTTP-POST
SingleLogoutService from the SP metadata. Threat knobs: LOGOUT_THREATS.

SP-initiated: POST /slo takes the SP's LogoutRequest (SAMLRequest) or its
LogoutResponse to an IdP-initiated request (SAMLResponse). The signature is
required and checked against the SP metadata's signing certificate with
pss_verify (RSA-PSS, what stadttor signs; anything else is refused), the
message is read from the signed bytes only, its Destination must be this
/slo. A LogoutRequest is recorded (GET /last-logout) and answered with a
signed LogoutResponse (Success) in a form to the SP's SLO URL; a
LogoutResponse is recorded (GET /last-logout-response) and answered 200.
"""

import base64
import datetime
import html

from defusedxml.ElementTree import fromstring as safe_fromstring
from saml2 import BINDING_HTTP_POST

import pss_verify

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
OTHER_SLO = "https://other-sp.example/slo"

LOGOUT_THREATS = {
    "unsigned": "the LogoutRequest carries no signature",
    "foreign-key": "the LogoutRequest is signed by a key not in the IdP metadata",
    "wrong-destination": f"Destination {OTHER_SLO}, validly signed",
    "expired": "IssueInstant 20 minutes and NotOnOrAfter 10 minutes in the past, validly signed",
}


def form_page(action, field, b64, relay_state):
    """An auto-submit HTML form posting `field`=`b64` (and RelayState)."""
    relay = (
        f'<input type="hidden" name="RelayState" value="{html.escape(relay_state)}"/>' if relay_state is not None else ""
    )
    return (
        '<!DOCTYPE html><html><body onload="document.forms[0].submit()">'
        f'<form method="post" action="{html.escape(action)}">'
        f'<input type="hidden" name="{field}" value="{b64}"/>{relay}'
        '<noscript><button type="submit">Weiter</button></noscript></form></body></html>'
    )


class Slo:
    def __init__(self, idp, ns, now, ts, new_id, signature_template, pem_body):
        self.idp = idp
        self.ns = ns
        self.now, self.ts, self.new_id = now, ts, new_id
        self.signature_template, self.pem_body = signature_template, pem_body
        self.enabled = bool(idp.cfg.get("slo"))
        self.last_login = None
        self.last_logout = None
        self.last_logout_response = None
        self.last_initiated_id = None

    def url(self):
        return self.idp.base + "/slo"

    def metadata_element(self):
        if not self.enabled:
            return ""
        return f'<md:SingleLogoutService Binding="{BINDING_HTTP_POST}" Location="{self.url()}"/>'

    def remember_login(self, sp, name_id, fmt, session_index):
        self.last_login = {
            "sp": sp,
            "name_id": name_id,
            "format": fmt,
            "name_qualifier": self.idp.entity_id,
            "sp_name_qualifier": sp,
            "session_index": session_index,
        }

    def sp_slo_url(self, sp):
        services = self.idp.server.metadata.single_logout_service(sp, BINDING_HTTP_POST, "spsso")
        if not services:
            raise ValueError(f"SP {sp} has no HTTP-POST SingleLogoutService in its metadata")
        return services[0]["location"]

    # --- IdP-initiated -------------------------------------------------------
    def initiate(self, query):
        """The auto-submit form with a signed LogoutRequest for the last login."""
        if not self.enabled:
            raise ValueError("SLO is not enabled in this IdP's config")
        login = self.last_login
        if login is None:
            raise ValueError("no login to log out")
        threat = query.get("threat")
        if threat and threat not in LOGOUT_THREATS:
            raise ValueError(f"unknown logout threat {threat}; known: {', '.join(LOGOUT_THREATS)}")
        slo_url = self.sp_slo_url(login["sp"])
        t = self.now()
        issued, until = t, t + datetime.timedelta(minutes=5)
        if threat == "expired":
            issued, until = t - datetime.timedelta(minutes=20), t - datetime.timedelta(minutes=10)
        key, cert = self.idp.cfg["signing_key"], self.idp.cfg["signing_cert"]
        if threat == "foreign-key":
            key, cert = self.idp.cfg["foreign_key"], self.idp.cfg["foreign_cert"]
        rid = self.new_id()
        sig = "" if threat == "unsigned" else self.signature_template(rid, self.pem_body(cert), self.idp.sign_alg)
        index = ""
        if query.get("by", "session-index") != "name-id":
            index = f"<samlp:SessionIndex>{login['session_index']}</samlp:SessionIndex>"
        destination = OTHER_SLO if threat == "wrong-destination" else slo_url
        xml = (
            f'<samlp:LogoutRequest xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" ID="{rid}" Version="2.0" '
            f'IssueInstant="{self.ts(issued)}" NotOnOrAfter="{self.ts(until)}" Destination="{destination}" '
            'Reason="urn:oasis:names:tc:SAML:2.0:logout:user">'
            f"<saml:Issuer>{self.idp.entity_id}</saml:Issuer>{sig}"
            f'<saml:NameID Format="{login["format"]}" NameQualifier="{login["name_qualifier"]}" '
            f'SPNameQualifier="{login["sp_name_qualifier"]}">{login["name_id"]}</saml:NameID>{index}'
            "</samlp:LogoutRequest>"
        )
        if threat != "unsigned":
            xml = self.idp.sign(xml, "LogoutRequest", rid, key, protocol=True)
        self.last_initiated_id = rid
        b64 = base64.b64encode(xml.encode("utf-8")).decode("ascii")
        return form_page(slo_url, "SAMLRequest", b64, query.get("relay"))

    # --- from the SP ---------------------------------------------------------
    def verified(self, b64, expected_tag):
        """The SP's message, its RSA-PSS signature checked against the SP
        metadata (pss_verify), parsed from the signed bytes only."""
        root = pss_verify.parse(base64.b64decode(b64))
        if root.tag != f"{{{SAMLP}}}{expected_tag}":
            raise ValueError(f"{root.tag} is not a samlp:{expected_tag}")
        alg = pss_verify.signature_method(root)
        if alg is None:
            raise ValueError(f"the {expected_tag} is not signed")
        if alg != pss_verify.RSA_PSS_SHA256:
            raise ValueError(f"SignatureMethod {alg} is not accepted at /slo (RSA-PSS only)")
        signed = pss_verify.verify(root, self.idp.sp_signing_keys(root))
        msg = safe_fromstring(signed)
        if msg.get("Destination") != self.url():
            raise ValueError(f"Destination {msg.get('Destination')} is not {self.url()}")
        return msg, alg

    def receive(self, form):
        """POST /slo: (status, body, content type)."""
        if "SAMLRequest" in form:
            msg, alg = self.verified(form["SAMLRequest"], "LogoutRequest")
            return self.answer_request(msg, alg, form.get("RelayState"))
        if "SAMLResponse" in form:
            msg, alg = self.verified(form["SAMLResponse"], "LogoutResponse")
            code = msg.find("samlp:Status/samlp:StatusCode", self.ns)
            self.last_logout_response = {
                "id": msg.get("ID"),
                "issuer": (msg.findtext("saml:Issuer", "", self.ns) or "").strip(),
                "in_response_to": msg.get("InResponseTo"),
                "answers_last_request": msg.get("InResponseTo") == self.last_initiated_id,
                "status": code.get("Value") if code is not None else None,
                "signature_algorithm": alg,
                "signature_verified_by": "cryptography+lxml",
            }
            return 200, "logged out\n", "text/plain; charset=utf-8"
        raise ValueError("neither SAMLRequest nor SAMLResponse in the form")

    def answer_request(self, msg, alg, relay_state):
        name_id = msg.find("saml:NameID", self.ns)
        if name_id is None:
            raise ValueError("LogoutRequest without NameID")
        issuer = (msg.findtext("saml:Issuer", "", self.ns) or "").strip()
        indexes = [(s.text or "").strip() for s in msg.findall("samlp:SessionIndex", self.ns)]
        login = self.last_login or {}
        self.last_logout = {
            "id": msg.get("ID"),
            "issuer": issuer,
            "destination": msg.get("Destination"),
            "issue_instant": msg.get("IssueInstant"),
            "not_on_or_after": msg.get("NotOnOrAfter"),
            "reason": msg.get("Reason"),
            "name_id": (name_id.text or "").strip(),
            "name_id_format": name_id.get("Format"),
            "name_qualifier": name_id.get("NameQualifier"),
            "sp_name_qualifier": name_id.get("SPNameQualifier"),
            "session_indexes": indexes,
            "matches_last_login": (name_id.text or "").strip() == login.get("name_id")
            and login.get("session_index") in indexes,
            "signature_algorithm": alg,
            "signature_verified_by": "cryptography+lxml",
        }
        slo_url = self.sp_slo_url(issuer)
        rid = self.new_id()
        cert = self.idp.cfg["signing_cert"]
        sig = self.signature_template(rid, self.pem_body(cert), self.idp.sign_alg)
        xml = (
            f'<samlp:LogoutResponse xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" ID="{rid}" Version="2.0" '
            f'IssueInstant="{self.ts(self.now())}" Destination="{slo_url}" InResponseTo="{msg.get("ID")}">'
            f"<saml:Issuer>{self.idp.entity_id}</saml:Issuer>{sig}"
            f'<samlp:Status><samlp:StatusCode Value="{STATUS_SUCCESS}"/></samlp:Status></samlp:LogoutResponse>'
        )
        xml = self.idp.sign(xml, "LogoutResponse", rid, self.idp.cfg["signing_key"], protocol=True)
        b64 = base64.b64encode(xml.encode("utf-8")).decode("ascii")
        return 200, form_page(slo_url, "SAMLResponse", b64, relay_state), "text/html; charset=utf-8"
