//! A real SAML 2.0 IdP for the tests that behaves like BundID
//! (DeutschlandID) as far as public sources describe it:
//! `tests/saml-idp/idp.py` (PyPI `pysaml2`, pinned with hashes in its
//! `requirements.txt`, and Debian's `xmlsec1`) run from
//! `tests/saml-idp/.venv` on a port from the harness allocator, killed on
//! drop.
//!
//! ```text
//! let dir = TempDir::new("saml");
//! let sp = SpKeys::generate(&dir, "https://kommune.example/saml/sp", &acs_url);
//! let idp = SamlIdp::start(&dir, &sp);
//! let req = sp.signed_authn_request(&idp, &AuthnRequestSpec::bundid("STORK-QAA-Level-3"));
//! // or, as BundID wants it, RSA-PSS (xmllint --exc-c14n + openssl dgst):
//! let req = sp.pss_signed_authn_request(&idp, &AuthnRequestSpec::bundid("STORK-QAA-Level-3"));
//! let answer = idp.post_sso(&req, Some("relay"), &[("user", "citizen-high")]);
//! let xml = answer.saml_response();            // the Response, assertion still encrypted
//! let plain = sp.decrypt(&xml);                // xmlsec1 --decrypt with the SP key
//! ```
//!
//! What the IdP does (details and sources in `tests/saml-idp/README.md`):
//! verifies the AuthnRequest signature against the SP metadata: rsa-sha256
//! with pysaml2 + xmlsec1, RSA-PSS ([`RSA_PSS_SHA256`], which xmlsec1
//! 1.2.37 lacks) with its own verifier (`tests/saml-idp/pss_verify.py`,
//! lxml + cryptography); SHA-1 is refused. `GET /last`
//! ([`SamlIdp::last_request`]) says which ran: `signature_algorithm`,
//! `signature_verified_by` (`"xmlsec1"` or `"cryptography+lxml"`). It
//! reads `RequestedAuthnContext`, `ForceAuthn` and the
//! `akdb:AuthenticationRequest` extension, and answers with a signed
//! Response holding an encrypted (RSA-OAEP, AES-256-GCM) signed Assertion:
//! transient NameID, `AuthnContextClassRef` at the user's level, requested
//! attributes by OID with `akdb:TrustLevel`. The SP side
//! ([`SpKeys`], RSA-3072 keys) signs requests with the `xmlsec1` CLI or,
//! for RSA-PSS, with `xmllint --exc-c14n` and `openssl dgst` (module
//! `request`), never with the IdP's code. Test knobs: `user=` and
//! `threat=` (see [`THREATS`] and the table in the README);
//! [`IdpOptions`] switches the content encryption to AES-256-CBC and turns
//! Single Logout on.
//!
//! Single Logout (`IdpOptions::slo`, `tests/saml-idp/slo.py`): the
//! metadata offers an HTTP-POST `SingleLogoutService`;
//! [`SamlIdp::initiate_logout`] gives the auto-post form of an
//! IdP-initiated LogoutRequest for the last login (signed by xmlsec1, to
//! the SLO URL of the SP metadata; knobs [`LOGOUT_THREATS`]);
//! `POST /slo` takes the SP's RSA-PSS signed LogoutRequest (recorded,
//! [`SamlIdp::last_logout`], answered with a signed LogoutResponse form)
//! or LogoutResponse ([`SamlIdp::last_logout_response`]).
//!
//! What it does not: sign responses or assertions with RSA-PSS (xmlsec1
//! 1.2.37 signs them, with rsa-sha256), enforce the requested level (it
//! issues the level the user has, the SP must check), a login UI, SLO
//! over the HTTP-Redirect binding.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::{require_tool, TempDir};

mod request;

pub use request::{
    pss_signature, AuthnRequestSpec, RequestSignature, RSA_PSS_SHA256, RSA_SHA1, RSA_SHA256, SHA1,
    SHA256,
};

/// `urn:oid` of bPK2, the BundID pseudonym.
pub const BPK2: &str = "urn:oid:1.3.6.1.4.1.25484.494450.3";
pub const GIVEN_NAME: &str = "urn:oid:2.5.4.42";
pub const SURNAME: &str = "urn:oid:2.5.4.4";
pub const MAIL: &str = "urn:oid:0.9.2342.19200300.100.1.3";
/// The akdb namespace of the request extension and of `TrustLevel`.
pub const AKDB_NS: &str = "https://www.akdb.de/request/2018/09";
/// The NameID and bPK2 the XSW variants' evil assertion carries.
pub const EVIL_NAME_ID: &str = "evil-attacker";
pub const EVIL_BPK2: &str = "bPK2-EVIL-000000000000";
/// The ACS URL of the `wrong-destination` and `wrong-recipient` knobs.
pub const OTHER_ACS: &str = "https://other-sp.example/acs";
/// The SLO URL of the IdP-initiated LogoutRequest's `wrong-destination` knob.
pub const OTHER_SLO: &str = "https://other-sp.example/slo";
/// The `threat=` knobs of `GET /initiate-logout` (`LOGOUT_THREATS` in
/// `slo.py`).
pub const LOGOUT_THREATS: &[&str] = &["unsigned", "foreign-key", "wrong-destination", "expired"];
/// XML-Enc content encryption URIs the IdP can use.
pub const AES256_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes256-gcm";
pub const AES256_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes256-cbc";

/// How the IdP runs; [`Default`] is BundID-like.
#[derive(Clone, Debug)]
pub struct IdpOptions {
    /// Content encryption of the assertion ([`AES256_GCM`] or [`AES256_CBC`]).
    pub data_encryption: &'static str,
    /// The signature method of responses and assertions: [`RSA_SHA256`]
    /// (xmlsec1) or [`RSA_PSS_SHA256`] (as BundID; signed by
    /// `tests/saml-idp/pss_sign.py` with lxml + cryptography, since xmlsec1
    /// 1.2.37 cannot).
    pub sign_alg: &'static str,
    /// Offer Single Logout (HTTP-POST `SingleLogoutService` in the metadata).
    pub slo: bool,
}

impl Default for IdpOptions {
    fn default() -> Self {
        Self {
            data_encryption: AES256_GCM,
            sign_alg: RSA_SHA256,
            slo: false,
        }
    }
}

/// The `threat=` knobs the IdP knows (`THREATS` in `idp.py`).
pub const THREATS: &[&str] = &[
    "expired",
    "wrong-audience",
    "replay",
    "unsigned-assertion",
    "foreign-key",
    "comment-nameid",
    "wrong-destination",
    "wrong-recipient",
    "wrong-in-response-to",
    "unsolicited",
    "unsigned",
    "response-tampered",
    "assertion-tampered",
    "sha1",
    "rsa-1_5",
    "xxe",
    "entity-expansion",
    "xsw1",
    "xsw2",
    "xsw3",
    "xsw4",
    "xsw5",
    "xsw6",
    "xsw7",
    "xsw8",
];

/// A test user of the IdP (`USERS` in `idp.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SamlUser {
    pub name: &'static str,
    /// `AuthnContextClassRef` the user reaches.
    pub level: &'static str,
    pub bpk2: &'static str,
    /// `akdb:TrustLevel` of the identity attributes (e-mail is NORMAL).
    pub trust: &'static str,
}

/// Erika Mustermann, eID: STORK-QAA-Level-4, attributes HOCH.
pub const CITIZEN_HIGH: SamlUser = SamlUser {
    name: "citizen-high",
    level: "STORK-QAA-Level-4",
    bpk2: "bPK2-ERIKA-7f3a9c21e4b8d05a",
    trust: "HOCH",
};
/// ELSTER certificate: STORK-QAA-Level-3, attributes SUBSTANTIELL.
pub const CITIZEN_SUBSTANTIAL: SamlUser = SamlUser {
    name: "citizen-substantial",
    level: "STORK-QAA-Level-3",
    bpk2: "bPK2-MAX-2b6e0d94a1c7f358",
    trust: "SUBSTANTIELL",
};
/// Username/password: STORK-QAA-Level-1, attributes UNTERGEORDNET.
pub const CITIZEN_LOW: SamlUser = SamlUser {
    name: "citizen-low",
    level: "STORK-QAA-Level-1",
    bpk2: "bPK2-LENA-c94f1a0e7d3b62b8",
    trust: "UNTERGEORDNET",
};

/// `tests/saml-idp` in the source tree.
pub fn idp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../saml-idp")
}

/// Writes a self-signed RSA-3072 certificate and key with openssl; returns
/// `(cert_path, key_path)`.
pub fn rsa_cert(dir: &TempDir, name: &str) -> (PathBuf, PathBuf) {
    let openssl = require_tool("openssl", "openssl");
    let cert = dir.path().join(format!("{name}.crt"));
    let key = dir.path().join(format!("{name}.key"));
    let out = Command::new(openssl)
        .args([
            "req", "-x509", "-newkey", "rsa:3072", "-nodes", "-days", "2",
        ])
        .arg("-subj")
        .arg(format!("/CN=stadttor test {name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// The base64 body of a PEM certificate file.
pub fn pem_body(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect()
}

/// The SP's side: entityID, ACS URL, signing and encryption key pairs and
/// the metadata file the IdP reads.
pub struct SpKeys {
    pub entity_id: String,
    pub acs_url: String,
    pub signing_cert: PathBuf,
    pub signing_key: PathBuf,
    pub encryption_cert: PathBuf,
    pub encryption_key: PathBuf,
    pub metadata: PathBuf,
}

impl SpKeys {
    /// Generates both key pairs and writes `sp-metadata.xml` into `dir`.
    pub fn generate(dir: &TempDir, entity_id: &str, acs_url: &str) -> Self {
        Self::generate_with_slo(dir, entity_id, acs_url, None)
    }

    /// Like [`SpKeys::generate`], the metadata offering an HTTP-POST
    /// `SingleLogoutService` at `slo_url` if given.
    pub fn generate_with_slo(
        dir: &TempDir,
        entity_id: &str,
        acs_url: &str,
        slo_url: Option<&str>,
    ) -> Self {
        let (signing_cert, signing_key) = rsa_cert(dir, "sp-signing");
        let (encryption_cert, encryption_key) = rsa_cert(dir, "sp-encryption");
        let kd = |usage: &str, cert: &Path| {
            format!(
                "<md:KeyDescriptor use=\"{usage}\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>",
                pem_body(cert)
            )
        };
        let xml = format!(
            "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" entityID=\"{entity_id}\">\
             <md:SPSSODescriptor AuthnRequestsSigned=\"true\" WantAssertionsSigned=\"true\" protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">\
             {}{}{}<md:AssertionConsumerService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" Location=\"{acs_url}\" index=\"0\"/>\
             </md:SPSSODescriptor></md:EntityDescriptor>",
            kd("signing", &signing_cert),
            kd("encryption", &encryption_cert),
            slo_url.map(|u| format!(
                "<md:SingleLogoutService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" Location=\"{u}\"/>"
            )).unwrap_or_default(),
        );
        let metadata = dir.write("sp-metadata.xml", &xml);
        Self {
            entity_id: entity_id.to_owned(),
            acs_url: acs_url.to_owned(),
            signing_cert,
            signing_key,
            encryption_cert,
            encryption_key,
            metadata,
        }
    }

    /// An AuthnRequest for `idp`, signed (rsa-sha256, exc-c14n) by
    /// `xmlsec1 --sign` with the SP signing key. Returns the XML.
    pub fn signed_authn_request(&self, idp: &SamlIdp, spec: &AuthnRequestSpec) -> String {
        self.authn_request_signed_by(idp, spec, &self.signing_key)
    }

    /// Like [`SpKeys::signed_authn_request`] with another key (negative tests).
    pub fn authn_request_signed_by(
        &self,
        idp: &SamlIdp,
        spec: &AuthnRequestSpec,
        key: &Path,
    ) -> String {
        self.authn_request_signed_with(idp, spec, &RequestSignature::rsa_sha256(key))
    }

    /// An AuthnRequest signed with RSA-PSS SHA-256 (salt 32) by the SP
    /// signing key, as BundID wants it (openssl, see [`pss_signature`]).
    pub fn pss_signed_authn_request(&self, idp: &SamlIdp, spec: &AuthnRequestSpec) -> String {
        self.authn_request_signed_with(idp, spec, &RequestSignature::pss(self))
    }

    /// An AuthnRequest signed as `sig` says (algorithms, key, KeyInfo).
    pub fn authn_request_signed_with(
        &self,
        idp: &SamlIdp,
        spec: &AuthnRequestSpec,
        sig: &RequestSignature,
    ) -> String {
        request::sign_authn_request(self, idp, spec, sig)
    }

    /// The AuthnRequest without a signature (for hand-made variants).
    pub fn unsigned_authn_request(&self, idp: &SamlIdp, spec: &AuthnRequestSpec) -> String {
        request::authn_request_xml(self, idp, spec, "")
    }

    /// Decrypts every `EncryptedData` in `xml` with the SP encryption key
    /// (`xmlsec1 --decrypt`, once per element, outermost first).
    pub fn decrypt(&self, xml: &str) -> String {
        let dir = TempDir::new("samldec");
        let mut doc = xml.to_owned();
        for round in 0..8 {
            if !doc.contains("EncryptedData") {
                return doc;
            }
            let input = dir.write(&format!("in{round}.xml"), &doc);
            let out = Command::new(require_tool("xmlsec1", "xmlsec1"))
                .args(["--decrypt", "--privkey-pem"])
                .arg(&self.encryption_key)
                .arg(&input)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "xmlsec1 --decrypt: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            doc = String::from_utf8(out.stdout).unwrap();
        }
        panic!("more than 8 EncryptedData elements");
    }
}

/// Now plus `offset_secs` as a SAML `xs:dateTime` (`2026-12-07T19:31:06Z`),
/// comparable as a string with the IdP's timestamps.
pub fn utc_timestamp(offset_secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + offset_secs;
    let (days, secs) = (now.div_euclid(86_400), now.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The IdP's answer to `POST /sso`.
#[derive(Debug)]
pub struct SsoAnswer {
    pub status: u16,
    pub body: String,
}

impl SsoAnswer {
    /// The `value` of the hidden form field `name` (HTML-unescaped `&amp;`,
    /// `&quot;` only: base64 and test relay states need no more).
    pub fn form_field(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')? + start;
        Some(
            self.body[start..end]
                .replace("&quot;", "\"")
                .replace("&amp;", "&"),
        )
    }

    /// The form's `action` (the ACS URL).
    pub fn action(&self) -> Option<String> {
        let start = self.body.find("action=\"")? + 8;
        let end = self.body[start..].find('"')? + start;
        Some(self.body[start..end].replace("&amp;", "&"))
    }

    /// The decoded `SAMLResponse` XML; panics if there is none.
    pub fn saml_response(&self) -> String {
        let b64 = self.form_field("SAMLResponse").unwrap_or_else(|| {
            panic!(
                "no SAMLResponse in the IdP answer ({}): {}",
                self.status, self.body
            )
        });
        String::from_utf8(B64.decode(b64).unwrap()).unwrap()
    }
}

/// A running test IdP (python process), killed on drop.
pub struct SamlIdp {
    child: Option<Child>,
    port: u16,
    pub signing_cert: PathBuf,
    pub signing_key: PathBuf,
    /// A key pair not in the IdP metadata (`threat=foreign-key` signs with it).
    pub foreign_cert: PathBuf,
    pub foreign_key: PathBuf,
    logs: Arc<Mutex<String>>,
}

impl SamlIdp {
    /// Generates the IdP's keys into `dir` and starts it for `sp`; panics
    /// (with its stderr) if it is not ready within 30 s.
    pub fn start(dir: &TempDir, sp: &SpKeys) -> Self {
        Self::start_with(dir, sp, &IdpOptions::default())
    }

    /// Like [`SamlIdp::start`] with `options`.
    pub fn start_with(dir: &TempDir, sp: &SpKeys, options: &IdpOptions) -> Self {
        let (signing_cert, signing_key) = rsa_cert(dir, "idp-signing");
        let (foreign_cert, foreign_key) = rsa_cert(dir, "idp-foreign");
        let python = idp_dir().join(".venv/bin/python");
        assert!(
            python.is_file(),
            "the test SAML IdP's venv is missing ({}): tests/run.sh creates it (python3 -m venv tests/saml-idp/.venv; .venv/bin/pip install --require-hashes -r tests/saml-idp/requirements.txt)",
            python.display()
        );
        let xmlsec1 = require_tool("xmlsec1", "xmlsec1");
        let port = crate::free_port();
        let config = serde_json::json!({
            "port": port,
            "workdir": dir.path(),
            "xmlsec1": xmlsec1,
            "signing_key": signing_key,
            "signing_cert": signing_cert,
            "foreign_key": foreign_key,
            "foreign_cert": foreign_cert,
            "sp_metadata": sp.metadata,
            "data_encryption": options.data_encryption,
            "sign_alg": options.sign_alg,
            "slo": options.slo,
        });
        let config_path = dir.write("idp-config.json", &config.to_string());
        let mut child = Command::new(&python)
            .args(["-W", "ignore"])
            .arg(idp_dir().join("idp.py"))
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the test SAML IdP");
        let logs = Arc::new(Mutex::new(String::new()));
        let rx = crate::capture_output(&mut child, logs.clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("IdP ready ") => break,
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    std::thread::sleep(Duration::from_millis(100));
                    panic!(
                        "the test SAML IdP did not start (status {status:?}); stderr:\n{}",
                        logs.lock().unwrap()
                    );
                }
            }
        }
        Self {
            child: Some(child),
            port,
            signing_cert,
            signing_key,
            foreign_cert,
            foreign_key,
            logs,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The IdP's entityID (`BASE/metadata`).
    pub fn entity_id(&self) -> String {
        format!("{}/metadata", self.base())
    }

    /// The HTTP-POST SSO endpoint.
    pub fn sso_url(&self) -> String {
        format!("{}/sso", self.base())
    }

    /// `GET /metadata`: the IdP metadata XML.
    pub fn metadata(&self) -> String {
        let (status, body) = self.http("GET", "/metadata", "");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// `GET /last`: what the last accepted AuthnRequest asked for.
    pub fn last_request(&self) -> serde_json::Value {
        let (_, body) = self.http("GET", "/last", "");
        serde_json::from_str(&body).unwrap()
    }

    /// The HTTP-POST SLO endpoint (offered when [`IdpOptions::slo`]).
    pub fn slo_url(&self) -> String {
        format!("{}/slo", self.base())
    }

    /// `GET /initiate-logout?QUERY` (`by=session-index|name-id`,
    /// `threat=`, `relay=`): the auto-post form with an IdP-initiated
    /// LogoutRequest for the last login.
    pub fn initiate_logout(&self, query: &[(&str, &str)]) -> SsoAnswer {
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect();
        let (status, body) = self.http("GET", &format!("/initiate-logout?{}", q.join("&")), "");
        SsoAnswer { status, body }
    }

    /// `GET /last-logout`: the last LogoutRequest the SP sent (null if none).
    pub fn last_logout(&self) -> serde_json::Value {
        let (_, body) = self.http("GET", "/last-logout", "");
        serde_json::from_str(&body).unwrap()
    }

    /// `GET /last-logout-response`: the last LogoutResponse the SP sent.
    pub fn last_logout_response(&self) -> serde_json::Value {
        let (_, body) = self.http("GET", "/last-logout-response", "");
        serde_json::from_str(&body).unwrap()
    }

    /// POSTs `xml` as the form field `field` (`SAMLRequest` or
    /// `SAMLResponse`) to `/slo`.
    pub fn post_slo(&self, field: &str, xml: &str, relay_state: Option<&str>) -> SsoAnswer {
        let mut body = format!("{field}={}", form_encode(&B64.encode(xml)));
        if let Some(r) = relay_state {
            body.push_str(&format!("&RelayState={}", form_encode(r)));
        }
        let (status, body) = self.http("POST", "/slo", &body);
        SsoAnswer { status, body }
    }

    /// POSTs `authn_request_xml` (HTTP-POST binding) to `/sso?QUERY`.
    pub fn post_sso(
        &self,
        authn_request_xml: &str,
        relay_state: Option<&str>,
        query: &[(&str, &str)],
    ) -> SsoAnswer {
        let mut body = format!(
            "SAMLRequest={}",
            form_encode(&B64.encode(authn_request_xml))
        );
        if let Some(r) = relay_state {
            body.push_str(&format!("&RelayState={}", form_encode(r)));
        }
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect();
        let (status, body) = self.http("POST", &format!("/sso?{}", q.join("&")), &body);
        SsoAnswer { status, body }
    }

    /// Kills the IdP ("IdP down").
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Everything the IdP wrote to stderr.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// A blocking HTTP/1.0 exchange (the IdP closes after each answer).
    fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, body.to_owned())
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Drop for SamlIdp {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("---- test SAML IdP logs ----\n{}", self.logs());
        }
    }
}

/// Runs `xmlsec1 --verify` on `xml` with `cert` as the only key, for the
/// signature at `signature_xpath`, with `ID` attributes of Response and
/// Assertion registered. `Ok(())` when xmlsec1 says OK, else its stderr.
pub fn xmlsec_verify(xml: &str, cert: &Path, signature_xpath: &str) -> Result<(), String> {
    let dir = TempDir::new("samlverify");
    let input = dir.write("doc.xml", xml);
    let out = Command::new(require_tool("xmlsec1", "xmlsec1"))
        .args(["--verify", "--pubkey-cert-pem"])
        .arg(cert)
        .args([
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:protocol:Response",
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
            "--node-xpath",
            signature_xpath,
        ])
        .arg(&input)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
