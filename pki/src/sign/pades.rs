//! PAdES baseline signatures (ETSI EN 319 142-1), B-B and B-T, as an
//! incremental update of an existing PDF.
//!
//! The original bytes stay untouched; appended are: a signature
//! dictionary (`/Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached`,
//! `/M` with the signing time, a `/ByteRange` and a zero-filled
//! `/Contents` placeholder), an invisible signature field that is also the
//! widget annotation on page 1, the page with the widget added to its
//! `/Annots`, an `/AcroForm` with `/SigFlags 3` (the catalog's, extended,
//! or a new one), and a cross-reference section in the style of the
//! original (classic table or cross-reference stream). Then the
//! `/ByteRange` is filled in, the covered bytes hashed, and the CMS
//! signature (see [`super::cms`]: no `signingTime`, `signingCertificateV2`
//! required; B-T adds the signature timestamp) is written as hex into the
//! placeholder.
//!
//! Not done: visible signature appearances, DocMDP certification
//! signatures, B-LT/B-LTA (DSS dictionary, document timestamps),
//! encrypted PDFs.

use super::cms::{self, CmsOptions};
use super::pdf::{Dict, Object, Pdf, XrefStyle};
use super::tsa::TimestampAuthority;
use super::{AlgInfo, SealCertificate, SealCreator};
use crate::Error;

fn err(reason: impl Into<String>) -> Error {
    Error::Pdf {
        reason: reason.into(),
    }
}

/// How to seal a PDF.
#[derive(Clone, Copy, Default)]
pub struct PadesOptions<'a> {
    /// The time written to the signature dictionary's `/M`; now if `None`.
    pub signing_time: Option<time::OffsetDateTime>,
    /// A TSA for B-T; `None` gives B-B.
    pub tsa: Option<&'a dyn TimestampAuthority>,
    /// `/Reason`, if any (PDF text string; non-ASCII is written as UTF-16).
    pub reason: Option<&'a str>,
    /// `/Location`, if any.
    pub location: Option<&'a str>,
    /// Bytes reserved for the CMS signature; estimated if `None`.
    pub reserve: Option<usize>,
}

impl std::fmt::Debug for PadesOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PadesOptions")
            .field("signing_time", &self.signing_time)
            .field("tsa", &self.tsa.is_some())
            .field("reason", &self.reason)
            .field("location", &self.location)
            .field("reserve", &self.reserve)
            .finish()
    }
}

/// A PDF text string: literal if printable ASCII, else UTF-16BE hex.
fn text_string(s: &str) -> Object {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        let escaped = s
            .replace('\\', "\\\\")
            .replace('(', "\\(")
            .replace(')', "\\)");
        Object::Str(format!("({escaped})").into_bytes())
    } else {
        let mut hex = String::from("<FEFF");
        for u in s.encode_utf16() {
            hex.push_str(&format!("{u:04X}"));
        }
        hex.push('>');
        Object::Str(hex.into_bytes())
    }
}

/// Seals `pdf` and returns the signed file (original plus the update).
pub fn sign_pdf<K: SealCreator + ?Sized>(
    key: &K,
    cert: &SealCertificate,
    pdf: &[u8],
    opts: &PadesOptions<'_>,
) -> Result<Vec<u8>, Error> {
    let estimate = opts.reserve.unwrap_or_else(|| {
        cert.chain().iter().map(Vec::len).sum::<usize>()
            + 2048
            + if opts.tsa.is_some() { 12 * 1024 } else { 0 }
    });
    let prepared = prepare(pdf, opts, estimate)?;
    match finish(key, cert, prepared, opts)? {
        Ok(signed) => Ok(signed),
        // The signature (with its timestamp) did not fit: one more try
        // with room for what it needed.
        Err(needed) if opts.reserve.is_none() => {
            let prepared = prepare(pdf, opts, needed + 4096)?;
            finish(key, cert, prepared, opts)?
                .map_err(|n| err(format!("the signature needs {n} bytes, more than reserved")))
        }
        Err(needed) => Err(err(format!(
            "the signature needs {needed} bytes, more than the {estimate} reserved"
        ))),
    }
}

/// The update written, with the placeholders' positions.
struct Prepared {
    out: Vec<u8>,
    /// Byte range of `[0 … ]` to rewrite.
    byte_range: (usize, usize),
    /// Byte range of `<00…>`.
    contents: (usize, usize),
}

const BYTE_RANGE_PLACEHOLDER: &[u8] = b"[0 0000000000 0000000000 0000000000]";

/// An object to (re)write in the update: number, generation, value.
type PendingObject = (u32, u16, Object);

/// Builds the incremental update that adds an invisible signature field
/// on page 1 of `pdf`, with placeholders for `/ByteRange` and `/Contents`.
fn prepare(pdf: &[u8], opts: &PadesOptions<'_>, reserve: usize) -> Result<Prepared, Error> {
    let doc = Pdf::parse(pdf)?;
    let root_ref = match doc.trailer.get("Root") {
        Some(Object::Ref(n, _)) => *n,
        _ => return Err(err("trailer without /Root reference")),
    };
    let Object::Dict(mut catalog) = doc.get(root_ref)? else {
        return Err(err("catalog is not a dictionary"));
    };
    let (page_ref, mut page) = first_page(&doc, &catalog)?;

    let mut next = doc.size()?;
    let mut alloc = || {
        let n = next;
        next += 1;
        n
    };
    let sig_num = alloc();
    let field_num = alloc();
    let field_ref = Object::Ref(field_num, 0);
    // Objects to (re)write, in order.
    let mut objects: Vec<PendingObject> = Vec::new();

    // /Annots of page 1.
    add_to_annots(&doc, &mut page, &field_ref, &mut objects)?;
    objects.push((page_ref, doc.generation(page_ref), Object::Dict(page)));

    // The AcroForm.
    let catalog_changed =
        add_to_acroform(&doc, &mut catalog, &field_ref, &mut objects, &mut alloc)?;
    if catalog_changed {
        objects.push((root_ref, doc.generation(root_ref), Object::Dict(catalog)));
    }

    // The field, merged with its widget annotation.
    let field = signature_field(sig_num, page_ref, doc.generation(page_ref));
    objects.push((field_num, 0, Object::Dict(field)));

    // Write: original, then objects, the signature dictionary first.
    let mut out = Vec::with_capacity(pdf.len() + 2 * reserve + 4096);
    out.extend_from_slice(pdf);
    if !pdf.ends_with(b"\n") {
        out.push(b'\n');
    }
    let mut offsets: Vec<(u32, u16, usize)> = Vec::new();
    offsets.push((sig_num, 0, out.len()));
    let (byte_range, contents) = write_signature_dict(&mut out, sig_num, opts, reserve);
    for (num, generation, obj) in &objects {
        offsets.push((*num, *generation, out.len()));
        out.extend_from_slice(format!("{num} {generation} obj\n").as_bytes());
        obj.write(&mut out);
        out.extend_from_slice(b"\nendobj\n");
    }
    write_xref(&doc, &mut out, &mut offsets, &mut alloc)?;
    Ok(Prepared {
        out,
        byte_range,
        contents,
    })
}

/// Finds page 1, the first leaf of the page tree under `catalog`, and
/// returns its object number and dictionary.
fn first_page(doc: &Pdf<'_>, catalog: &Dict) -> Result<(u32, Dict), Error> {
    let mut node_ref = match catalog.get("Pages") {
        Some(Object::Ref(n, _)) => *n,
        _ => return Err(err("catalog without /Pages reference")),
    };
    for _ in 0..64 {
        let Object::Dict(node) = doc.get(node_ref)? else {
            return Err(err("page tree node is not a dictionary"));
        };
        if node.is_name("Type", "Page") {
            return Ok((node_ref, node));
        }
        let kids = doc.resolve(node.get("Kids").unwrap_or(&Object::Null))?;
        match kids {
            Object::Array(k) => match k.first() {
                Some(Object::Ref(n, _)) => node_ref = *n,
                _ => return Err(err("page tree node without kids")),
            },
            _ => return Err(err("page tree node without /Kids")),
        }
    }
    Err(err("page tree too deep"))
}

/// Appends `field_ref` to the page's `/Annots`, rewriting an indirect
/// annotations array as its own object in `objects`.
fn add_to_annots(
    doc: &Pdf<'_>,
    page: &mut Dict,
    field_ref: &Object,
    objects: &mut Vec<PendingObject>,
) -> Result<(), Error> {
    match page.get("Annots").cloned() {
        None | Some(Object::Null) => page.set("Annots", Object::Array(vec![field_ref.clone()])),
        Some(Object::Array(mut a)) => {
            a.push(field_ref.clone());
            page.set("Annots", Object::Array(a));
        }
        Some(Object::Ref(n, _)) => {
            let Object::Array(mut a) = doc.get(n)? else {
                return Err(err("/Annots is not an array"));
            };
            a.push(field_ref.clone());
            objects.push((n, doc.generation(n), Object::Array(a)));
        }
        Some(_) => return Err(err("/Annots is not an array")),
    }
    Ok(())
}

/// Appends `field_ref` to the form's `/Fields` (rewriting an indirect
/// fields array in `objects`) and sets `/SigFlags 3`.
fn add_field(
    doc: &Pdf<'_>,
    form: &mut Dict,
    field_ref: &Object,
    objects: &mut Vec<PendingObject>,
) -> Result<(), Error> {
    match form.get("Fields").cloned() {
        None | Some(Object::Null) => form.set("Fields", Object::Array(vec![field_ref.clone()])),
        Some(Object::Array(mut a)) => {
            a.push(field_ref.clone());
            form.set("Fields", Object::Array(a));
        }
        Some(Object::Ref(n, _)) => {
            let Object::Array(mut a) = doc.get(n)? else {
                return Err(err("/Fields is not an array"));
            };
            a.push(field_ref.clone());
            objects.push((n, doc.generation(n), Object::Array(a)));
        }
        Some(_) => return Err(err("/Fields is not an array")),
    }
    form.set("SigFlags", Object::Int(3));
    Ok(())
}

/// Adds the field to the catalog's AcroForm, creating one (with a number
/// from `alloc`) if there is none. Returns whether the catalog changed.
fn add_to_acroform(
    doc: &Pdf<'_>,
    catalog: &mut Dict,
    field_ref: &Object,
    objects: &mut Vec<PendingObject>,
    alloc: &mut dyn FnMut() -> u32,
) -> Result<bool, Error> {
    match catalog.get("AcroForm").cloned() {
        Some(Object::Ref(n, _)) => {
            let Object::Dict(mut form) = doc.get(n)? else {
                return Err(err("/AcroForm is not a dictionary"));
            };
            add_field(doc, &mut form, field_ref, objects)?;
            objects.push((n, doc.generation(n), Object::Dict(form)));
            Ok(false)
        }
        Some(Object::Dict(mut form)) => {
            add_field(doc, &mut form, field_ref, objects)?;
            catalog.set("AcroForm", Object::Dict(form));
            Ok(true)
        }
        _ => {
            let n = alloc();
            let mut form = Dict::default();
            add_field(doc, &mut form, field_ref, objects)?;
            objects.push((n, 0, Object::Dict(form)));
            catalog.set("AcroForm", Object::Ref(n, 0));
            Ok(true)
        }
    }
}

/// The invisible signature field, merged with its widget annotation on
/// the page `page_ref` (generation `page_gen`), with value `sig_num`.
fn signature_field(sig_num: u32, page_ref: u32, page_gen: u16) -> Dict {
    let mut field = Dict::default();
    field.set("Type", Object::Name(b"/Annot".to_vec()));
    field.set("Subtype", Object::Name(b"/Widget".to_vec()));
    field.set("FT", Object::Name(b"/Sig".to_vec()));
    field.set("T", text_string(&format!("Siegel-{sig_num}")));
    field.set("V", Object::Ref(sig_num, 0));
    field.set("F", Object::Int(132));
    field.set(
        "Rect",
        Object::Array(vec![
            Object::Int(0),
            Object::Int(0),
            Object::Int(0),
            Object::Int(0),
        ]),
    );
    field.set("P", Object::Ref(page_ref, page_gen));
    field
}

/// Writes the signature dictionary `sig_num` with placeholders reserving
/// `reserve` bytes for the signature. Returns the byte ranges of the
/// `/ByteRange` and `/Contents` placeholders.
fn write_signature_dict(
    out: &mut Vec<u8>,
    sig_num: u32,
    opts: &PadesOptions<'_>,
    reserve: usize,
) -> ((usize, usize), (usize, usize)) {
    let t = opts
        .signing_time
        .unwrap_or_else(time::OffsetDateTime::now_utc)
        .to_offset(time::UtcOffset::UTC);
    let m = format!(
        "(D:{:04}{:02}{:02}{:02}{:02}{:02}+00'00')",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    out.extend_from_slice(format!("{sig_num} 0 obj\n<</Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached /M {m}").as_bytes());
    if let Some(r) = opts.reason {
        out.extend_from_slice(b" /Reason ");
        text_string(r).write(out);
    }
    if let Some(l) = opts.location {
        out.extend_from_slice(b" /Location ");
        text_string(l).write(out);
    }
    out.extend_from_slice(b" /ByteRange ");
    let br_start = out.len();
    out.extend_from_slice(BYTE_RANGE_PLACEHOLDER);
    let br_end = out.len();
    out.extend_from_slice(b" /Contents ");
    let c_start = out.len();
    out.push(b'<');
    out.resize(out.len() + 2 * reserve, b'0');
    out.push(b'>');
    let c_end = out.len();
    out.extend_from_slice(b">>\nendobj\n");
    ((br_start, br_end), (c_start, c_end))
}

fn write_xref(
    doc: &Pdf<'_>,
    out: &mut Vec<u8>,
    offsets: &mut Vec<(u32, u16, usize)>,
    alloc: &mut dyn FnMut() -> u32,
) -> Result<(), Error> {
    let mut trailer = Dict::default();
    for key in ["Root", "Info", "ID"] {
        if let Some(v) = doc.trailer.get(key) {
            trailer.set(key, v.clone());
        }
    }
    trailer.set("Prev", Object::Int(doc.startxref as i64));
    match doc.style {
        XrefStyle::Table => {
            let size = offsets
                .iter()
                .map(|o| o.0 + 1)
                .max()
                .unwrap_or(0)
                .max(doc.size()?);
            trailer.set("Size", Object::Int(size as i64));
            offsets.sort();
            let xref_at = out.len();
            out.extend_from_slice(b"xref\n");
            for run in runs(offsets) {
                out.extend_from_slice(format!("{} {}\n", run[0].0, run.len()).as_bytes());
                for (_, generation, off) in run {
                    out.extend_from_slice(format!("{off:010} {generation:05} n\r\n").as_bytes());
                }
            }
            out.extend_from_slice(b"trailer\n");
            Object::Dict(trailer).write(out);
            out.extend_from_slice(format!("\nstartxref\n{xref_at}\n%%EOF\n").as_bytes());
        }
        XrefStyle::Stream => {
            let num = alloc();
            let xref_at = out.len();
            offsets.push((num, 0, xref_at));
            offsets.sort();
            let size = offsets
                .iter()
                .map(|o| o.0 + 1)
                .max()
                .unwrap_or(0)
                .max(doc.size()?);
            let mut data = Vec::with_capacity(offsets.len() * 7);
            let mut index = Vec::new();
            for run in runs(offsets) {
                index.push(Object::Int(run[0].0 as i64));
                index.push(Object::Int(run.len() as i64));
                for (_, generation, off) in run {
                    let off = u32::try_from(*off).map_err(|_| err("PDF larger than 4 GiB"))?;
                    data.push(1);
                    data.extend_from_slice(&off.to_be_bytes());
                    data.extend_from_slice(&generation.to_be_bytes());
                }
            }
            trailer.set("Type", Object::Name(b"/XRef".to_vec()));
            trailer.set("Size", Object::Int(size as i64));
            trailer.set(
                "W",
                Object::Array(vec![Object::Int(1), Object::Int(4), Object::Int(2)]),
            );
            trailer.set("Index", Object::Array(index));
            trailer.set("Length", Object::Int(data.len() as i64));
            out.extend_from_slice(format!("{num} 0 obj\n").as_bytes());
            Object::Dict(trailer).write(out);
            out.extend_from_slice(b"\nstream\n");
            out.extend_from_slice(&data);
            out.extend_from_slice(
                format!("\nendstream\nendobj\nstartxref\n{xref_at}\n%%EOF\n").as_bytes(),
            );
        }
    }
    Ok(())
}

/// Splits sorted entries into runs of consecutive object numbers.
fn runs(entries: &[(u32, u16, usize)]) -> Vec<&[(u32, u16, usize)]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=entries.len() {
        if i == entries.len() || entries[i].0 != entries[i - 1].0 + 1 {
            out.push(&entries[start..i]);
            start = i;
        }
    }
    out
}

/// Fills in the ByteRange and signs; `Err(needed)` if the CMS did not fit.
fn finish<K: SealCreator + ?Sized>(
    key: &K,
    cert: &SealCertificate,
    p: Prepared,
    opts: &PadesOptions<'_>,
) -> Result<Result<Vec<u8>, usize>, Error> {
    let Prepared {
        mut out,
        byte_range,
        contents,
    } = p;
    let len = out.len();
    let text = format!("[0 {} {} {}", contents.0, contents.1, len - contents.1);
    let width = byte_range.1 - byte_range.0;
    if text.len() + 1 > width {
        return Err(err("ByteRange does not fit its placeholder"));
    }
    let mut filled = text.into_bytes();
    filled.resize(width - 1, b' ');
    filled.push(b']');
    out[byte_range.0..byte_range.1].copy_from_slice(&filled);
    let info = AlgInfo::of(key.algorithm(), key.reference())?;
    let mut ctx = ring::digest::Context::new(info.digest);
    ctx.update(&out[..contents.0]);
    ctx.update(&out[contents.1..]);
    let digest = ctx.finish();
    let cms_opts = CmsOptions {
        signing_time: None,
        tsa: opts.tsa,
    };
    let signature = cms::sign_digest(key, cert, digest.as_ref(), &cms_opts)?;
    let room = (contents.1 - contents.0 - 2) / 2;
    if signature.len() > room {
        return Ok(Err(signature.len()));
    }
    let hex = crate::hex::encode(&signature);
    out[contents.0 + 1..contents.0 + 1 + hex.len()].copy_from_slice(hex.as_bytes());
    Ok(Ok(out))
}

/// What [`verify_pdf`] found for the last signature of a PDF.
#[derive(Debug, Clone)]
pub struct PadesVerified {
    /// The CMS check of the signature.
    pub cms: cms::Verified,
    /// Whether the signature covers the whole file.
    pub covers_whole_file: bool,
}

/// Checks the newest signature dictionary of a signed PDF: its
/// `/ByteRange` and the CMS signature over those bytes (see
/// [`cms::verify_detached`]; trust in the signer is the caller's).
pub fn verify_pdf(pdf: &[u8]) -> Result<PadesVerified, Error> {
    let pos = pdf
        .windows(10)
        .rposition(|w| w == b"/ByteRange")
        .ok_or_else(|| err("no signature"))?;
    let open = pos
        + pdf[pos..]
            .iter()
            .position(|c| *c == b'[')
            .ok_or_else(|| err("bad /ByteRange"))?;
    let close = open
        + pdf[open..]
            .iter()
            .position(|c| *c == b']')
            .ok_or_else(|| err("bad /ByteRange"))?;
    let nums: Vec<usize> = std::str::from_utf8(&pdf[open + 1..close])
        .map_err(|_| err("bad /ByteRange"))?
        .split_ascii_whitespace()
        .map(|n| n.parse().map_err(|_| err("bad /ByteRange")))
        .collect::<Result<_, _>>()?;
    let [a, b, c, d] = nums[..] else {
        return Err(err("/ByteRange must have four numbers"));
    };
    if a != 0 || b >= c || c.checked_add(d).is_none_or(|e| e > pdf.len()) {
        return Err(err("/ByteRange is out of bounds"));
    }
    let hole = &pdf[b..c];
    if hole.first() != Some(&b'<') || hole.last() != Some(&b'>') {
        return Err(err(
            "/ByteRange does not exclude exactly the /Contents string",
        ));
    }
    let hex = &hole[1..hole.len() - 1];
    let mut bytes = Vec::with_capacity(hex.len() / 2);
    for pair in hex.chunks(2) {
        let s = std::str::from_utf8(pair).map_err(|_| err("bad /Contents"))?;
        bytes.push(u8::from_str_radix(s, 16).map_err(|_| err("bad /Contents"))?);
    }
    // The DER length says where the signature ends; the rest is padding.
    let (tlv, _) = super::der::read(&bytes)?;
    let cms_der = tlv.raw;
    let mut signed = pdf[..b].to_vec();
    signed.extend_from_slice(&pdf[c..c + d]);
    let cms = cms::verify_detached(cms_der, Some(&signed))?;
    Ok(PadesVerified {
        cms,
        covers_whole_file: c + d == pdf.len(),
    })
}
