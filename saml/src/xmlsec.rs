//! The safe face of `ffi/shim.c`: libxml2 documents and libxmlsec1
//! signature verification, decryption and canonicalisation.
//!
//! This is the crate's only `unsafe` code. Each function hands the shim
//! plain byte slices and gets back an owned buffer or an error message;
//! no libxml2 pointer leaves a [`Doc`], and a [`Doc`] is neither `Send`
//! nor `Sync` (libxml2 documents are not shared between threads).
//!
//! What the shim guarantees is documented there: strict parsing (no DTD,
//! entities, comments or processing instructions, unique `ID`s), one
//! signed element of a given name, one reference to it, algorithms from an
//! allowlist (no SHA-1), the key only from the caller's certificates, and
//! the bytes the digest was computed over as the result.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_uchar, c_void, CStr, CString};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::OnceLock;

/// What went wrong in XML security processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XmlErrorKind {
    /// Not well-formed, or a DTD, comment, processing instruction or
    /// duplicate `ID`.
    Parse,
    /// An element missing or not unique, no signature, a reference to
    /// another element (signature wrapping).
    Structure,
    /// An algorithm outside the allowlist (SHA-1, `rsa-1_5`, ...).
    Algorithm,
    /// A signature or digest that does not verify.
    Signature,
    /// Content that does not decrypt.
    Decrypt,
    /// The library failed.
    Internal,
}

/// An error from libxml2/libxmlsec1 processing, with the shim's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct XmlError {
    /// The class of the failure.
    pub kind: XmlErrorKind,
    /// What happened, for logs and audit events (never secret material).
    pub message: String,
}

impl XmlError {
    fn from_code(code: c_int, err: &[u8]) -> Self {
        let kind = match code {
            1 => XmlErrorKind::Parse,
            2 => XmlErrorKind::Structure,
            3 => XmlErrorKind::Algorithm,
            4 => XmlErrorKind::Signature,
            5 => XmlErrorKind::Decrypt,
            _ => XmlErrorKind::Internal,
        };
        let message = CStr::from_bytes_until_nul(err)
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "XML security error".into());
        Self { kind, message }
    }

    fn internal(message: &str) -> Self {
        Self {
            kind: XmlErrorKind::Internal,
            message: message.into(),
        }
    }
}

const ERR_LEN: usize = 512;

extern "C" {
    fn st_init(err: *mut c_char, errlen: usize) -> c_int;
    fn st_xmlsec_version() -> *const c_char;
    fn st_parse(
        buf: *const c_char,
        len: usize,
        err: *mut c_char,
        errlen: usize,
        code: *mut c_int,
    ) -> *mut c_void;
    fn st_free(doc: *mut c_void);
    fn st_verify(
        doc: *mut c_void,
        ns: *const c_char,
        local: *const c_char,
        certs: *const *const c_uchar,
        cert_lens: *const usize,
        ncerts: usize,
        out: *mut *mut c_uchar,
        out_len: *mut usize,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    fn st_buf_free(p: *mut c_uchar);
    fn st_decrypt(
        doc: *mut c_void,
        key: *const c_uchar,
        key_len: usize,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    fn st_c14n(
        doc: *mut c_void,
        out: *mut *mut c_uchar,
        out_len: *mut usize,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
}

/// Initialises libxml2 and libxmlsec1 once per process.
fn init() -> Result<(), XmlError> {
    static INIT: OnceLock<Result<(), XmlError>> = OnceLock::new();
    INIT.get_or_init(|| {
        let mut err = [0u8; ERR_LEN];
        // SAFETY: err is a writable buffer of ERR_LEN bytes; st_init is
        // called once (OnceLock) before any other shim function.
        let rc = unsafe { st_init(err.as_mut_ptr().cast(), ERR_LEN) };
        if rc == 0 {
            Ok(())
        } else {
            Err(XmlError::from_code(rc, &err))
        }
    })
    .clone()
}

/// The libxmlsec1 version this crate was built against, e.g. `1.2.37`.
pub fn xmlsec_version() -> String {
    // SAFETY: returns a pointer to a static NUL-terminated string.
    unsafe { CStr::from_ptr(st_xmlsec_version()) }
        .to_string_lossy()
        .into_owned()
}

/// A buffer malloc'ed by the shim.
struct ShimBuf(*mut c_uchar, usize);

impl ShimBuf {
    fn to_vec(&self) -> Vec<u8> {
        if self.0.is_null() {
            return Vec::new();
        }
        // SAFETY: the shim returned `self.1` initialised bytes at `self.0`.
        unsafe { std::slice::from_raw_parts(self.0, self.1) }.to_vec()
    }
}

impl Drop for ShimBuf {
    fn drop(&mut self) {
        // SAFETY: the pointer came from the shim's malloc (or is null).
        unsafe { st_buf_free(self.0) }
    }
}

/// A parsed XML document (a libxml2 `xmlDoc`), checked as described in
/// the module documentation.
pub struct Doc {
    ptr: NonNull<c_void>,
    /// libxml2 documents stay on the thread that made them.
    _not_send: PhantomData<*mut c_void>,
}

impl std::fmt::Debug for Doc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Doc")
    }
}

impl Doc {
    /// Parses `xml` strictly: refuses a DOCTYPE, comments, processing
    /// instructions, entity references and duplicate `ID` attributes.
    pub fn parse(xml: &[u8]) -> Result<Self, XmlError> {
        init()?;
        let mut err = [0u8; ERR_LEN];
        let mut code: c_int = 0;
        // SAFETY: xml is a valid slice for its length; err is writable.
        let ptr = unsafe {
            st_parse(
                xml.as_ptr().cast(),
                xml.len(),
                err.as_mut_ptr().cast(),
                ERR_LEN,
                &mut code,
            )
        };
        match NonNull::new(ptr) {
            Some(ptr) => Ok(Self {
                ptr,
                _not_send: PhantomData,
            }),
            None => Err(XmlError::from_code(code, &err)),
        }
    }

    /// Verifies the enveloped signature of the one element `local` in
    /// namespace `ns` with the DER certificates `certs` (tried in turn;
    /// a `KeyInfo` in the document is ignored). Returns the canonical
    /// bytes of exactly the signed element, without its signature: the
    /// bytes the digest covers, and the only thing the caller may read.
    pub fn verify(&self, ns: &str, local: &str, certs: &[&[u8]]) -> Result<Vec<u8>, XmlError> {
        let ns = CString::new(ns).map_err(|_| XmlError::internal("NUL in namespace"))?;
        let local = CString::new(local).map_err(|_| XmlError::internal("NUL in name"))?;
        let ptrs: Vec<*const c_uchar> = certs.iter().map(|c| c.as_ptr()).collect();
        let lens: Vec<usize> = certs.iter().map(|c| c.len()).collect();
        let mut out: *mut c_uchar = std::ptr::null_mut();
        let mut out_len = 0usize;
        let mut err = [0u8; ERR_LEN];
        // SAFETY: the document is alive; every pointer/length pair is a
        // valid slice for the call; out receives a malloc'ed buffer.
        let rc = unsafe {
            st_verify(
                self.ptr.as_ptr(),
                ns.as_ptr(),
                local.as_ptr(),
                ptrs.as_ptr(),
                lens.as_ptr(),
                certs.len(),
                &mut out,
                &mut out_len,
                err.as_mut_ptr().cast(),
                ERR_LEN,
            )
        };
        let buf = ShimBuf(out, out_len);
        if rc == 0 {
            Ok(buf.to_vec())
        } else {
            Err(XmlError::from_code(rc, &err))
        }
    }

    /// Decrypts the one `xenc:EncryptedData` in place with the AES
    /// content key `key`, then checks the decrypted content like
    /// [`Doc::parse`] does.
    pub fn decrypt(&mut self, key: &[u8]) -> Result<(), XmlError> {
        let mut err = [0u8; ERR_LEN];
        // SAFETY: the document is alive and exclusively borrowed; key is a
        // valid slice.
        let rc = unsafe {
            st_decrypt(
                self.ptr.as_ptr(),
                key.as_ptr(),
                key.len(),
                err.as_mut_ptr().cast(),
                ERR_LEN,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(XmlError::from_code(rc, &err))
        }
    }

    /// The exclusive C14N 1.0 form (without comments) of the document.
    pub fn c14n(&self) -> Result<Vec<u8>, XmlError> {
        let mut out: *mut c_uchar = std::ptr::null_mut();
        let mut out_len = 0usize;
        let mut err = [0u8; ERR_LEN];
        // SAFETY: as in `verify`.
        let rc = unsafe {
            st_c14n(
                self.ptr.as_ptr(),
                &mut out,
                &mut out_len,
                err.as_mut_ptr().cast(),
                ERR_LEN,
            )
        };
        let buf = ShimBuf(out, out_len);
        if rc == 0 {
            Ok(buf.to_vec())
        } else {
            Err(XmlError::from_code(rc, &err))
        }
    }
}

impl Drop for Doc {
    fn drop(&mut self) {
        // SAFETY: the document came from st_parse and is freed once.
        unsafe { st_free(self.ptr.as_ptr()) }
    }
}
