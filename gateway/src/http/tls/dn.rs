//! Distinguished names as RFC 4514 strings, the form policy rules,
//! the audit log and the forwarded client-certificate header name a
//! certificate's subject by.
//!
//! The rendering is what `openssl x509 -noout -subject -nameopt RFC2253`
//! prints, so an operator can copy a subject from there into `policy.csv`:
//!
//! - the most specific RDN first (`CN=Amt 32,O=Stadt Muenster,C=DE`),
//!   RDNs separated by `,`, the values of a multi-valued RDN by `+` (in
//!   the reverse of their DER order, as OpenSSL prints them);
//! - the usual short names (`CN`, `O`, `OU`, `C`, `L`, `ST`, `street`,
//!   `DC`, `UID`, `emailAddress`, `serialNumber`, …); any other attribute
//!   is its dotted OID with the value as `#` and the hex of its DER
//!   encoding (RFC 4514 §2.4);
//! - escaped per RFC 4514 §2.4: `,` `+` `\` `<` `>` `;` with a backslash,
//!   a leading `#` or space and a trailing space with a backslash, control
//!   characters and every byte of a non-ASCII (UTF-8) character as `\XX`.
//!
//! One deliberate difference from OpenSSL: a `"` in a value is written
//! `\22` (the hex form RFC 4514 allows for any character), not `\"`, so
//! that every subject fits in a double-quoted `policy.csv` field, which
//! cannot contain a double quote. The output is always printable ASCII.

use std::fmt::Write as _;

use x509_parser::der_parser::asn1_rs::{Any, Tag, ToDer};
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// Short names OpenSSL prints (and RFC 4514 or its registry knows).
const SHORT_NAMES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.4", "SN"),
    ("2.5.4.5", "serialNumber"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "street"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.12", "title"),
    ("2.5.4.13", "description"),
    ("2.5.4.15", "businessCategory"),
    ("2.5.4.17", "postalCode"),
    ("2.5.4.42", "GN"),
    ("2.5.4.43", "initials"),
    ("2.5.4.44", "generationQualifier"),
    ("2.5.4.46", "dnQualifier"),
    ("2.5.4.65", "pseudonym"),
    ("2.5.4.97", "organizationIdentifier"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("1.2.840.113549.1.9.1", "emailAddress"),
];

/// `name` as an RFC 4514 string, most specific RDN first.
pub(crate) fn rfc4514(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    for (i, rdn) in name.iter_rdn().collect::<Vec<_>>().iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, ava) in rdn.iter().collect::<Vec<_>>().iter().rev().enumerate() {
            if j > 0 {
                out.push('+');
            }
            attribute(&mut out, ava);
        }
    }
    out
}

fn attribute(out: &mut String, ava: &AttributeTypeAndValue<'_>) {
    let oid = ava.attr_type().to_id_string();
    let short = SHORT_NAMES.iter().find(|(o, _)| *o == oid).map(|(_, n)| *n);
    let value = short.and_then(|_| text(ava.attr_value()));
    match (short, value) {
        (Some(n), Some(v)) => {
            out.push_str(n);
            out.push('=');
            escape(out, &v);
        }
        (n, _) => {
            out.push_str(n.unwrap_or(&oid));
            out.push('=');
            hex_der(out, ava.attr_value());
        }
    }
}

/// The value of a string type as text (`None` for other types).
fn text(v: &Any<'_>) -> Option<String> {
    let d = v.data;
    match v.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(d).ok().map(str::to_owned),
        // Teletex as Latin-1, the way OpenSSL reads it.
        Tag::T61String => Some(d.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => {
            let units: Vec<u16> = d
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            d.len()
                .is_multiple_of(2)
                .then(|| String::from_utf16(&units).ok())
                .flatten()
        }
        Tag::UniversalString => d
            .len()
            .is_multiple_of(4)
            .then(|| {
                d.chunks_exact(4)
                    .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                    .collect::<Option<String>>()
            })
            .flatten(),
        _ => None,
    }
}

/// `#` and the hex of the value's DER encoding (RFC 4514 §2.4).
fn hex_der(out: &mut String, v: &Any<'_>) {
    out.push('#');
    match v.to_der_vec() {
        Ok(der) => {
            for b in der {
                let _ = write!(out, "{b:02X}");
            }
        }
        // Cannot happen for a parsed value; an empty hex string still
        // never matches a rule written for another name.
        Err(_) => out.push_str("00"),
    }
}

/// Appends `v` escaped per RFC 4514 §2.4 (see the module docs).
fn escape(out: &mut String, v: &str) {
    let bytes = v.as_bytes();
    let last = bytes.len().saturating_sub(1);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b',' | b'+' | b'\\' | b'<' | b'>' | b';' => {
                out.push('\\');
                out.push(char::from(b));
            }
            b'#' if i == 0 => out.push_str("\\#"),
            b' ' if i == 0 || i == last => out.push_str("\\ "),
            b'"' | 0..=0x1f | 0x7f..=0xff => {
                let _ = write!(out, "\\{b:02X}");
            }
            _ => out.push(char::from(b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A self-signed certificate with `subject` made by the openssl CLI
    /// (`-multivalue-rdn`, UTF-8), and what `openssl x509 -nameopt RFC2253`
    /// prints for it.
    fn openssl_cert(dir: &std::path::Path, subject: &str) -> (Vec<u8>, String) {
        let pem = dir.join("c.pem");
        let ok = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
            .args(["-utf8", "-multivalue-rdn", "-subj", subject, "-keyout"])
            .arg(dir.join("k.pem"))
            .arg("-out")
            .arg(&pem)
            .output()
            .unwrap();
        assert!(ok.status.success(), "{ok:?}");
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&pem)
            .output()
            .unwrap()
            .stdout;
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in"])
            .arg(&pem)
            .output()
            .unwrap();
        let s = String::from_utf8(out.stdout).unwrap();
        let s = s.trim_end().strip_prefix("subject=").unwrap().to_owned();
        (der, s)
    }

    fn ours(der: &[u8]) -> String {
        let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        rfc4514(cert.subject())
    }

    #[test]
    fn subjects_with_dn_metacharacters_cannot_impersonate_another_subject() {
        let dir = std::env::temp_dir().join(format!("stadttor-dn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases = [
            // The documented example.
            "/C=DE/O=Stadt Muenster/CN=Amt 32",
            // A comma that would otherwise forge an extra RDN.
            "/C=DE/O=Stadt Muenster/CN=Amt 32,O=Stadt Muenster",
            // `+` and multi-valued RDNs.
            "/C=DE/O=A\\+B/CN=Amt+UID=x;y",
            // Quotes, backslashes, angle brackets, `=`.
            "/C=DE/O=Stadt \"M\"/OU=a\\\\b <c>=d",
            // Leading `#` and leading/trailing spaces.
            "/C=DE/OU=#1/CN= Amt 32 ",
            // UTF-8, email, DC, serial number.
            "/DC=de/DC=muenster/O=Stadt Münster/CN=Jörg Ärger+serialNumber=7/emailAddress=j@x.de",
        ];
        for subject in cases {
            let (der, expected) = openssl_cert(&dir, subject);
            // The one difference: `"` as `\22` (module docs).
            let expected = expected.replace("\\\"", "\\22");
            assert_eq!(ours(&der), expected, "subject {subject}");
        }
        // What a comma attack renders as, spelled out.
        let (der, _) = openssl_cert(&dir, "/C=DE/CN=Amt 32,O=Stadt Muenster");
        assert_eq!(ours(&der), "CN=Amt 32\\,O=Stadt Muenster,C=DE");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn escaping_follows_rfc_4514() {
        let mut s = String::new();
        escape(&mut s, "#a, b+c\"d\\e<f>g;h\u{1}ü ");
        assert_eq!(s, "\\#a\\, b\\+c\\22d\\\\e\\<f\\>g\\;h\\01\\C3\\BC\\ ");
        let mut s = String::new();
        escape(&mut s, " ");
        assert_eq!(s, "\\ ");
        let mut s = String::new();
        escape(&mut s, "a#b=c");
        assert_eq!(s, "a#b=c");
    }

    #[test]
    fn unknown_attributes_are_dotted_oids_with_hex_der_values() {
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "DE");
        dn.push(rcgen::DnType::CustomDnType(vec![1, 2, 3, 4]), "foo");
        dn.push(rcgen::DnType::CommonName, "x");
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(ours(cert.der()), "CN=x,1.2.3.4=#0C03666F6F,C=DE");
    }
}
