//! A minimal PDF reader: enough of ISO 32000 to append an incremental
//! update to a file made by someone else.
//!
//! It reads the cross-reference chain (classic `xref` tables, cross-
//! reference streams and hybrid files, following `/Prev` and `/XRefStm`),
//! finds objects by number (also inside object streams, `/FlateDecode`
//! with PNG predictors), and parses and re-serialises the object syntax
//! (strings and names are kept byte for byte). It does not render, does
//! not repair damaged files (a wrong offset is an error, not a guess) and
//! refuses encrypted files.

use std::collections::{HashMap, HashSet};

use crate::Error;

fn err(reason: impl Into<String>) -> Error {
    Error::Pdf {
        reason: reason.into(),
    }
}

/// A PDF object. Names and strings keep their raw bytes (with `/`,
/// parentheses or angle brackets) so that writing them back is exact.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A real number, as written.
    Real(Vec<u8>),
    /// A name, raw, including the leading `/`.
    Name(Vec<u8>),
    /// A literal or hex string, raw, including its delimiters.
    Str(Vec<u8>),
    /// An array.
    Array(Vec<Object>),
    /// A dictionary: keys are raw names including `/`.
    Dict(Dict),
    /// An indirect reference `N G R`.
    Ref(u32, u16),
}

/// A dictionary with its keys in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dict(pub Vec<(Vec<u8>, Object)>);

impl Dict {
    /// The value of `/key` (`key` without the slash).
    pub fn get(&self, key: &str) -> Option<&Object> {
        self.0
            .iter()
            .find(|(k, _)| k.get(1..) == Some(key.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Sets `/key`, replacing an existing entry.
    pub fn set(&mut self, key: &str, value: Object) {
        match self
            .0
            .iter_mut()
            .find(|(k, _)| k.get(1..) == Some(key.as_bytes()))
        {
            Some((_, v)) => *v = value,
            None => self.0.push((format!("/{key}").into_bytes(), value)),
        }
    }

    fn int(&self, key: &str) -> Option<i64> {
        match self.get(key) {
            Some(Object::Int(n)) => Some(*n),
            _ => None,
        }
    }

    /// Whether `/key` is the name `/value`.
    pub fn is_name(&self, key: &str, value: &str) -> bool {
        matches!(self.get(key), Some(Object::Name(n)) if n.get(1..) == Some(value.as_bytes()))
    }
}

impl Object {
    /// Appends the PDF syntax of this object.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Object::Null => out.extend_from_slice(b"null"),
            Object::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Object::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Object::Real(r) | Object::Name(r) | Object::Str(r) => out.extend_from_slice(r),
            Object::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
            Object::Dict(d) => {
                out.extend_from_slice(b"<<");
                for (k, v) in &d.0 {
                    out.extend_from_slice(k);
                    out.push(b' ');
                    v.write(out);
                }
                out.extend_from_slice(b">>");
            }
            Object::Ref(n, g) => out.extend_from_slice(format!("{n} {g} R").as_bytes()),
        }
    }
}

fn is_ws(c: u8) -> bool {
    matches!(c, 0 | b'\t' | b'\n' | 0x0c | b'\r' | b' ')
}

fn is_delim(c: u8) -> bool {
    matches!(
        c,
        b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
    )
}

/// A cursor over PDF bytes.
struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Lexer<'a> {
    fn new(s: &'a [u8], i: usize) -> Self {
        Self { s, i }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if is_ws(c) {
                self.i += 1;
            } else if c == b'%' {
                while self.peek().is_some_and(|c| c != b'\n' && c != b'\r') {
                    self.i += 1;
                }
            } else {
                break;
            }
        }
    }

    fn regular(&mut self) -> &'a [u8] {
        let start = self.i;
        while self.peek().is_some_and(|c| !is_ws(c) && !is_delim(c)) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    fn keyword(&mut self, kw: &[u8]) -> Result<(), Error> {
        self.skip_ws();
        if self.regular() != kw {
            return Err(err(format!(
                "expected `{}` at byte {}",
                String::from_utf8_lossy(kw),
                self.i
            )));
        }
        Ok(())
    }

    fn uint(&mut self) -> Result<u64, Error> {
        self.skip_ws();
        let t = self.regular();
        std::str::from_utf8(t)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| err(format!("expected a number at byte {}", self.i)))
    }

    /// Parses one object at the cursor; `depth` bounds nesting.
    fn object(&mut self, depth: u32) -> Result<Object, Error> {
        if depth > 64 {
            return Err(err("objects nested too deeply"));
        }
        self.skip_ws();
        let start = self.i;
        match self.peek() {
            None => Err(err("unexpected end of file")),
            Some(b'/') => {
                self.i += 1;
                self.regular();
                Ok(Object::Name(self.s[start..self.i].to_vec()))
            }
            Some(b'(') => self.literal_string(start),
            Some(b'<') if self.s.get(self.i + 1) == Some(&b'<') => self.dict(depth),
            Some(b'<') => self.hex_string(start),
            Some(b'[') => self.array(depth),
            Some(_) => self.token(),
        }
    }

    /// Parses a literal string `( … )` starting at `start` (the cursor),
    /// balancing nested parentheses; keeps it raw, delimiters included.
    fn literal_string(&mut self, start: usize) -> Result<Object, Error> {
        let mut level = 0usize;
        loop {
            match self.peek() {
                None => return Err(err("unterminated string")),
                Some(b'\\') => self.i += 2,
                Some(b'(') => {
                    level += 1;
                    self.i += 1;
                }
                Some(b')') => {
                    level -= 1;
                    self.i += 1;
                    if level == 0 {
                        break;
                    }
                }
                Some(_) => self.i += 1,
            }
        }
        Ok(Object::Str(self.s[start..self.i].to_vec()))
    }

    /// Parses a dictionary `<< … >>` at the cursor; values at `depth + 1`.
    fn dict(&mut self, depth: u32) -> Result<Object, Error> {
        self.i += 2;
        let mut d = Dict::default();
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'>') if self.s.get(self.i + 1) == Some(&b'>') => {
                    self.i += 2;
                    return Ok(Object::Dict(d));
                }
                Some(b'/') => {
                    let Object::Name(k) = self.object(depth + 1)? else {
                        return Err(err("bad dictionary key"));
                    };
                    let v = self.object(depth + 1)?;
                    d.0.push((k, v));
                }
                _ => return Err(err(format!("bad dictionary at byte {}", self.i))),
            }
        }
    }

    /// Parses a hex string `< … >` starting at `start` (the cursor); keeps
    /// it raw, delimiters included.
    fn hex_string(&mut self, start: usize) -> Result<Object, Error> {
        while self.peek().is_some_and(|c| c != b'>') {
            self.i += 1;
        }
        if self.peek().is_none() {
            return Err(err("unterminated hex string"));
        }
        self.i += 1;
        Ok(Object::Str(self.s[start..self.i].to_vec()))
    }

    /// Parses an array `[ … ]` at the cursor; items at `depth + 1`.
    fn array(&mut self, depth: u32) -> Result<Object, Error> {
        self.i += 1;
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(b']') {
                self.i += 1;
                return Ok(Object::Array(items));
            }
            items.push(self.object(depth + 1)?);
        }
    }

    /// Parses a bare token at the cursor: `true`, `false`, `null`, an
    /// integer, an indirect reference `N G R`, or a real number.
    fn token(&mut self) -> Result<Object, Error> {
        let t = self.regular();
        match t {
            b"true" => return Ok(Object::Bool(true)),
            b"false" => return Ok(Object::Bool(false)),
            b"null" => return Ok(Object::Null),
            _ => {}
        }
        if t.is_empty() {
            return Err(err(format!("unexpected byte at {}", self.i)));
        }
        let text = std::str::from_utf8(t).map_err(|_| err("bad number"))?;
        if let Ok(n) = text.parse::<i64>() {
            // `N G R`?
            let save = self.i;
            if n >= 0 {
                if let Ok(g) = self.uint() {
                    self.skip_ws();
                    if self.peek() == Some(b'R')
                        && self
                            .s
                            .get(self.i + 1)
                            .is_none_or(|c| is_ws(*c) || is_delim(*c))
                    {
                        self.i += 1;
                        return Ok(Object::Ref(
                            u32::try_from(n).map_err(|_| err("object number"))?,
                            u16::try_from(g).map_err(|_| err("generation"))?,
                        ));
                    }
                }
            }
            self.i = save;
            return Ok(Object::Int(n));
        }
        if text.parse::<f64>().is_ok() {
            return Ok(Object::Real(t.to_vec()));
        }
        Err(err(format!("unknown token `{text}`")))
    }
}

/// Where an object lives.
#[derive(Debug, Clone, Copy)]
enum Entry {
    Offset(usize),
    Compressed { stream: u32, index: usize },
}

/// How the newest cross-reference section is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XrefStyle {
    /// A classic `xref` table with a `trailer` dictionary.
    Table,
    /// A cross-reference stream (PDF 1.5).
    Stream,
}

/// A parsed PDF, borrowing its bytes.
#[derive(Debug)]
pub struct Pdf<'a> {
    data: &'a [u8],
    entries: HashMap<u32, Entry>,
    /// The newest trailer (or cross-reference stream dictionary).
    pub trailer: Dict,
    /// Style of the newest cross-reference section.
    pub style: XrefStyle,
    /// Byte offset of the newest cross-reference section.
    pub startxref: usize,
}

impl<'a> Pdf<'a> {
    /// Reads the cross-reference chain of `data`.
    pub fn parse(data: &'a [u8]) -> Result<Self, Error> {
        if !data.starts_with(b"%PDF-") {
            return Err(err("not a PDF (no %PDF- header)"));
        }
        let tail_start = data.len().saturating_sub(2048);
        let tail = &data[tail_start..];
        let pos = tail
            .windows(9)
            .rposition(|w| w == b"startxref")
            .ok_or_else(|| err("no startxref"))?;
        let mut lx = Lexer::new(data, tail_start + pos + 9);
        let startxref = lx.uint()? as usize;
        let mut pdf = Pdf {
            data,
            entries: HashMap::new(),
            trailer: Dict::default(),
            style: XrefStyle::Table,
            startxref,
        };
        let mut seen = HashSet::new();
        let mut next = Some(startxref);
        let mut first = true;
        while let Some(off) = next {
            if !seen.insert(off) || seen.len() > 1000 {
                return Err(err("cross-reference chain loops"));
            }
            let (trailer, style) = pdf.read_section(off)?;
            if style == XrefStyle::Table {
                if let Some(Object::Int(stm)) = trailer.get("XRefStm") {
                    let stm = usize::try_from(*stm).map_err(|_| err("bad /XRefStm"))?;
                    pdf.read_section(stm)?;
                }
            }
            next = match trailer.get("Prev") {
                Some(Object::Int(p)) => Some(usize::try_from(*p).map_err(|_| err("bad /Prev"))?),
                _ => None,
            };
            if first {
                pdf.trailer = trailer;
                pdf.style = style;
                first = false;
            }
        }
        if pdf.trailer.get("Encrypt").is_some() {
            return Err(err("the PDF is encrypted"));
        }
        Ok(pdf)
    }

    /// Reads one section; older entries never override newer ones.
    fn read_section(&mut self, off: usize) -> Result<(Dict, XrefStyle), Error> {
        let mut lx = Lexer::new(self.data, off);
        lx.skip_ws();
        if self.data.get(lx.i..lx.i + 4) == Some(b"xref") {
            lx.i += 4;
            loop {
                lx.skip_ws();
                if self.data.get(lx.i..lx.i + 7) == Some(b"trailer") {
                    lx.i += 7;
                    break;
                }
                let start = lx.uint()? as u32;
                let count = lx.uint()? as u32;
                for k in 0..count {
                    let offset = lx.uint()? as usize;
                    let _gen = lx.uint()?;
                    lx.skip_ws();
                    let kind = lx.regular();
                    let num = start + k;
                    if kind == b"n" && offset > 0 {
                        self.entries.entry(num).or_insert(Entry::Offset(offset));
                    } else if kind != b"n" && kind != b"f" {
                        return Err(err("bad xref table entry"));
                    }
                }
            }
            let Object::Dict(trailer) = lx.object(0)? else {
                return Err(err("trailer is not a dictionary"));
            };
            return Ok((trailer, XrefStyle::Table));
        }
        let (_, dict, data) = self.indirect_at(off)?;
        if !dict.is_name("Type", "XRef") {
            return Err(err(
                "startxref points at neither an xref table nor an xref stream",
            ));
        }
        let data = data.ok_or_else(|| err("xref stream without data"))?;
        let decoded = decode_stream(&dict, data)?;
        let w: Vec<usize> = match dict.get("W") {
            Some(Object::Array(a)) => a
                .iter()
                .map(|o| match o {
                    Object::Int(n) if (0..=8).contains(n) => Ok(*n as usize),
                    _ => Err(err("bad /W")),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(err("xref stream without /W")),
        };
        if w.len() != 3 {
            return Err(err("bad /W"));
        }
        let size = dict
            .int("Size")
            .ok_or_else(|| err("xref stream without /Size"))?;
        let index: Vec<i64> = match dict.get("Index") {
            Some(Object::Array(a)) => a
                .iter()
                .map(|o| match o {
                    Object::Int(n) => Ok(*n),
                    _ => Err(err("bad /Index")),
                })
                .collect::<Result<_, _>>()?,
            _ => vec![0, size],
        };
        let row = w[0] + w[1] + w[2];
        let mut pos = 0usize;
        let field = |bytes: &[u8]| bytes.iter().fold(0u64, |a, b| (a << 8) | *b as u64);
        for pair in index.chunks(2) {
            let [start, count] = pair else {
                return Err(err("odd /Index"));
            };
            for k in 0..*count {
                let r = decoded
                    .get(pos..pos + row)
                    .ok_or_else(|| err("xref stream shorter than its /Index"))?;
                pos += row;
                let t = if w[0] == 0 { 1 } else { field(&r[..w[0]]) };
                let f2 = field(&r[w[0]..w[0] + w[1]]);
                let f3 = field(&r[w[0] + w[1]..]);
                let num = u32::try_from(start + k).map_err(|_| err("bad object number"))?;
                let entry = match t {
                    1 => Entry::Offset(f2 as usize),
                    2 => Entry::Compressed {
                        stream: u32::try_from(f2).map_err(|_| err("bad object stream"))?,
                        index: f3 as usize,
                    },
                    _ => continue,
                };
                self.entries.entry(num).or_insert(entry);
            }
        }
        Ok((dict, XrefStyle::Stream))
    }

    /// Parses `N G obj …` at `off`: the number, the object (a stream's
    /// dictionary) and the raw stream data if it is a stream.
    fn indirect_at(&self, off: usize) -> Result<(u32, Dict, Option<&'a [u8]>), Error> {
        let (num, obj, data) = self.indirect_object_at(off)?;
        match obj {
            Object::Dict(d) => Ok((num, d, data)),
            _ => Err(err(format!("object {num} is not a dictionary"))),
        }
    }

    fn indirect_object_at(&self, off: usize) -> Result<(u32, Object, Option<&'a [u8]>), Error> {
        if off >= self.data.len() {
            return Err(err("object offset beyond the end of the file"));
        }
        let mut lx = Lexer::new(self.data, off);
        let num = lx.uint()? as u32;
        lx.uint()?;
        lx.keyword(b"obj")?;
        let obj = lx.object(0)?;
        lx.skip_ws();
        let Object::Dict(d) = &obj else {
            return Ok((num, obj, None));
        };
        if self.data.get(lx.i..lx.i + 6) != Some(b"stream") {
            return Ok((num, obj, None));
        }
        lx.i += 6;
        if self.data.get(lx.i) == Some(&b'\r') {
            lx.i += 1;
        }
        if self.data.get(lx.i) == Some(&b'\n') {
            lx.i += 1;
        }
        let len = match d.get("Length") {
            Some(Object::Int(n)) => usize::try_from(*n).map_err(|_| err("bad /Length"))?,
            Some(Object::Ref(n, _)) => match self.get(*n)? {
                Object::Int(n) => usize::try_from(n).map_err(|_| err("bad /Length"))?,
                _ => return Err(err("bad /Length")),
            },
            _ => return Err(err("stream without /Length")),
        };
        let data = self
            .data
            .get(lx.i..lx.i + len)
            .ok_or_else(|| err("stream runs past the end of the file"))?;
        Ok((num, obj, Some(data)))
    }

    /// Object number `num`, resolved through the cross-reference chain
    /// (a stream's dictionary for a stream).
    pub fn get(&self, num: u32) -> Result<Object, Error> {
        match self.entries.get(&num) {
            None => Err(err(format!(
                "object {num} is not in the cross-reference table"
            ))),
            Some(Entry::Offset(off)) => {
                let (n, obj, _) = self.indirect_object_at(*off)?;
                if n != num {
                    return Err(err(format!(
                        "the cross-reference table says object {num} is at byte {off}, but object {n} is there"
                    )));
                }
                Ok(obj)
            }
            Some(Entry::Compressed { stream, index }) => {
                let Some(Entry::Offset(off)) = self.entries.get(stream) else {
                    return Err(err(format!("object stream {stream} not found")));
                };
                let (_, dict, data) = self.indirect_at(*off)?;
                let data = decode_stream(
                    &dict,
                    data.ok_or_else(|| err("object stream without data"))?,
                )?;
                let n = dict
                    .int("N")
                    .ok_or_else(|| err("object stream without /N"))?;
                let first = dict
                    .int("First")
                    .ok_or_else(|| err("object stream without /First"))?;
                let first = usize::try_from(first).map_err(|_| err("bad /First"))?;
                if *index as i64 >= n {
                    return Err(err("object index beyond the object stream"));
                }
                let mut lx = Lexer::new(&data, 0);
                let mut found = None;
                for k in 0..=*index {
                    let number = lx.uint()?;
                    let off = lx.uint()?;
                    if k == *index {
                        found = Some((number, off));
                    }
                }
                let (number, off) = found.ok_or_else(|| err("object stream header"))?;
                if number != num as u64 {
                    return Err(err(format!(
                        "object stream {stream} does not hold object {num}"
                    )));
                }
                Lexer::new(&data, first + off as usize).object(0)
            }
        }
    }

    /// Follows a reference (or returns a direct object as is).
    pub fn resolve(&self, obj: &Object) -> Result<Object, Error> {
        match obj {
            Object::Ref(n, _) => self.get(*n),
            other => Ok(other.clone()),
        }
    }

    /// The generation number of object `num` for a rewrite: objects in
    /// object streams have generation 0.
    pub fn generation(&self, num: u32) -> u16 {
        match self.entries.get(&num) {
            Some(Entry::Offset(off)) => {
                let mut lx = Lexer::new(self.data, *off);
                let _ = lx.uint();
                lx.uint()
                    .ok()
                    .and_then(|g| u16::try_from(g).ok())
                    .unwrap_or(0)
            }
            _ => 0,
        }
    }

    /// The trailer's `/Size`: the next free object number.
    pub fn size(&self) -> Result<u32, Error> {
        let s = self
            .trailer
            .int("Size")
            .ok_or_else(|| err("trailer without /Size"))?;
        let max = self.entries.keys().max().map_or(0, |m| m + 1);
        Ok(u32::try_from(s).map_err(|_| err("bad /Size"))?.max(max))
    }
}

/// Decodes a stream's data: no filter or `/FlateDecode`, with PNG
/// predictors (`/Predictor` ≥ 10).
fn decode_stream(dict: &Dict, data: &[u8]) -> Result<Vec<u8>, Error> {
    let filter = match dict.get("Filter") {
        None => None,
        Some(Object::Name(n)) => Some(n.clone()),
        Some(Object::Array(a)) if a.len() == 1 => match &a[0] {
            Object::Name(n) => Some(n.clone()),
            _ => return Err(err("bad /Filter")),
        },
        Some(_) => return Err(err("unsupported /Filter chain")),
    };
    let decoded = match filter.as_deref() {
        None => return Ok(data.to_vec()),
        Some(b"/FlateDecode") => {
            miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(data, 256 << 20)
                .map_err(|e| err(format!("bad /FlateDecode data: {e:?}")))?
        }
        Some(other) => {
            return Err(err(format!(
                "unsupported filter {}",
                String::from_utf8_lossy(other)
            )))
        }
    };
    let parms = match dict.get("DecodeParms") {
        Some(Object::Dict(d)) => d.clone(),
        Some(Object::Array(a)) => match a.first() {
            Some(Object::Dict(d)) => d.clone(),
            _ => Dict::default(),
        },
        _ => Dict::default(),
    };
    let predictor = parms.int("Predictor").unwrap_or(1);
    if predictor < 10 {
        if predictor != 1 {
            return Err(err("TIFF predictors are not supported"));
        }
        return Ok(decoded);
    }
    let columns = parms.int("Columns").unwrap_or(1);
    let columns = usize::try_from(columns).map_err(|_| err("bad /Columns"))?;
    if columns == 0
        || parms.int("Colors").unwrap_or(1) != 1
        || parms.int("BitsPerComponent").unwrap_or(8) != 8
    {
        return Err(err("unsupported predictor parameters"));
    }
    let mut out = Vec::with_capacity(decoded.len());
    let mut prev = vec![0u8; columns];
    for row in decoded.chunks(columns + 1) {
        let (&kind, bytes) = row
            .split_first()
            .ok_or_else(|| err("empty predictor row"))?;
        if bytes.len() != columns {
            return Err(err("short predictor row"));
        }
        let mut cur = vec![0u8; columns];
        for i in 0..columns {
            let left = if i > 0 { cur[i - 1] } else { 0 };
            let up = prev[i];
            let up_left = if i > 0 { prev[i - 1] } else { 0 };
            cur[i] = match kind {
                0 => bytes[i],
                1 => bytes[i].wrapping_add(left),
                2 => bytes[i].wrapping_add(up),
                3 => bytes[i].wrapping_add(((left as u16 + up as u16) / 2) as u8),
                4 => {
                    let p = left as i16 + up as i16 - up_left as i16;
                    let (pa, pb, pc) = (
                        (p - left as i16).abs(),
                        (p - up as i16).abs(),
                        (p - up_left as i16).abs(),
                    );
                    let pred = if pa <= pb && pa <= pc {
                        left
                    } else if pb <= pc {
                        up
                    } else {
                        up_left
                    };
                    bytes[i].wrapping_add(pred)
                }
                _ => return Err(err("bad PNG predictor row type")),
            };
        }
        out.extend_from_slice(&cur);
        prev = cur;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_round_trip() {
        let src = b"<</Type /Page /Kids [1 0 R 2 0 R] /S (a\\)b(c)) /H <0aff> /N -3 /R 1.5 /B true /Z null>>";
        let obj = Lexer::new(src, 0).object(0).unwrap();
        let Object::Dict(d) = &obj else { panic!() };
        assert!(d.is_name("Type", "Page"));
        assert_eq!(
            d.get("Kids"),
            Some(&Object::Array(vec![Object::Ref(1, 0), Object::Ref(2, 0)]))
        );
        assert_eq!(d.get("S"), Some(&Object::Str(b"(a\\)b(c))".to_vec())));
        let mut out = Vec::new();
        obj.write(&mut out);
        assert_eq!(Lexer::new(&out, 0).object(0).unwrap(), obj);
    }

    #[test]
    fn png_up_predictor() {
        let mut d = Dict::default();
        d.set("Predictor", Object::Int(12));
        d.set("Columns", Object::Int(2));
        let raw = [2u8, 1, 2, 2, 1, 1];
        let compressed = miniz_oxide::deflate::compress_to_vec_zlib(&raw, 6);
        d.set("Filter", Object::Name(b"/FlateDecode".to_vec()));
        let mut parms = Dict::default();
        parms.set("Predictor", Object::Int(12));
        parms.set("Columns", Object::Int(2));
        d.set("DecodeParms", Object::Dict(parms));
        assert_eq!(decode_stream(&d, &compressed).unwrap(), vec![1, 2, 2, 3]);
    }
}
