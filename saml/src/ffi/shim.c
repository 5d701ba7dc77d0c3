/*
 * stadttor-saml: the small C layer over libxml2 and libxmlsec1 (OpenSSL
 * backend). Rust calls only the st_* functions below; every libxml2 or
 * xmlsec structure stays on this side, compiled against the headers of the
 * installed library, so no struct layout is guessed in Rust.
 *
 * What is done here, and nothing else:
 *   - parse a document strictly (no DTD, no entities, no network, no
 *     comments or processing instructions, unique ID attributes);
 *   - verify the one enveloped XML-DSig signature of the one element of a
 *     given name with a given certificate, algorithms from an allowlist,
 *     and hand back the bytes the digest was computed over;
 *   - decrypt the one xenc:EncryptedData in place with a given AES key;
 *   - canonicalise (exclusive C14N 1.0) a document, for signing.
 * The SAML rules (which element, which values) are the Rust side's.
 */
#include <string.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/valid.h>
#include <libxml/c14n.h>
#include <libxml/xmlerror.h>

#include <xmlsec/xmlsec.h>
#include <xmlsec/xmltree.h>
#include <xmlsec/xmldsig.h>
#include <xmlsec/xmlenc.h>
#include <xmlsec/keys.h>
#include <xmlsec/transforms.h>
#include <xmlsec/errors.h>
#include <xmlsec/openssl/app.h>
#include <xmlsec/openssl/crypto.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>

#define ST_OK 0
#define ST_E_PARSE 1      /* not well-formed, DTD, comment, PI, duplicate ID */
#define ST_E_STRUCTURE 2  /* element missing or not unique, no ID, no signature */
#define ST_E_ALGORITHM 3  /* an algorithm outside the allowlist */
#define ST_E_SIGNATURE 4  /* the signature does not verify */
#define ST_E_DECRYPT 5    /* the content does not decrypt */
#define ST_E_INTERNAL 6   /* library failure */

static const char DSIG_NS[] = "http://www.w3.org/2000/09/xmldsig#";
static const char XENC_NS[] = "http://www.w3.org/2001/04/xmlenc#";

/* ------------------------------------------------------------------ errors */

static __thread char last_lib_error[256];

static void st_xmlsec_error(const char *file, int line, const char *func,
                            const char *object, const char *subject, int reason,
                            const char *msg) {
    (void)file; (void)line; (void)func; (void)object;
    if (last_lib_error[0] != '\0') return; /* keep the first, the root cause */
    snprintf(last_lib_error, sizeof last_lib_error, "%s%s%s (reason %d)",
             subject ? subject : "", subject ? ": " : "", msg ? msg : "", reason);
}

static void st_xml_error(void *ctx, xmlErrorPtr e) {
    (void)ctx;
    if (e == NULL || last_lib_error[0] != '\0') return;
    snprintf(last_lib_error, sizeof last_lib_error, "line %d: %s", e->line,
             e->message ? e->message : "XML error");
    size_t n = strlen(last_lib_error);
    if (n > 0 && last_lib_error[n - 1] == '\n') last_lib_error[n - 1] = '\0';
}

static int fail(char *err, size_t errlen, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (last_lib_error[0] != '\0') {
        size_t n = strlen(err);
        snprintf(err + n, errlen > n ? errlen - n : 0, " (%s)", last_lib_error);
    }
    return code;
}

static void st_xml_generic(void *ctx, const char *msg, ...) {
    (void)ctx; (void)msg; /* structured errors carry the same text */
}

static void reset_errors(void) {
    last_lib_error[0] = '\0';
    xmlSetStructuredErrorFunc(NULL, st_xml_error);
    xmlSetGenericErrorFunc(NULL, st_xml_generic);
}

/* ------------------------------------------------------- RSA-PSS (1.2.x) */

#if XMLSEC_VERSION_MAJOR > 1 || (XMLSEC_VERSION_MAJOR == 1 && XMLSEC_VERSION_MINOR >= 3)
#define ST_NATIVE_RSA_PSS 1
#else
/*
 * libxmlsec1 before 1.3 (Debian 12 ships 1.2.37) has no RSA-PSS signature
 * method, which BundID and MUK use. This registers one for VERIFYING
 * `xmldsig-more#sha256-rsa-MGF1` (RFC 6931: SHA-256, MGF1 with SHA-256,
 * salt length 32): a signature-method transform in xmlsec's own framework
 * (xmlsec still canonicalises SignedInfo, checks every reference and
 * hands the key from the caller's certificate), whose only job is
 * OpenSSL's EVP_DigestVerify with PSS padding. On xmlsec 1.3 the native
 * transform is used instead.
 */
typedef struct {
    EVP_PKEY *key;
    EVP_MD_CTX *md;
} st_pss_ctx;

#define ST_PSS_CTX(t) ((st_pss_ctx *)(((xmlSecByte *)(t)) + sizeof(xmlSecTransform)))

static int st_pss_initialize(xmlSecTransformPtr t) {
    memset(ST_PSS_CTX(t), 0, sizeof(st_pss_ctx));
    return 0;
}

static void st_pss_finalize(xmlSecTransformPtr t) {
    st_pss_ctx *c = ST_PSS_CTX(t);
    if (c->md != NULL) EVP_MD_CTX_free(c->md);
    if (c->key != NULL) EVP_PKEY_free(c->key);
    memset(c, 0, sizeof(st_pss_ctx));
}

static int st_pss_set_key_req(xmlSecTransformPtr t, xmlSecKeyReqPtr req) {
    if (t->operation != xmlSecTransformOperationVerify) return -1; /* verify only */
    req->keyId = xmlSecOpenSSLKeyDataRsaId;
    req->keyType = xmlSecKeyDataTypePublic;
    req->keyUsage = xmlSecKeyUsageVerify;
    return 0;
}

static int st_pss_set_key(xmlSecTransformPtr t, xmlSecKeyPtr key) {
    st_pss_ctx *c = ST_PSS_CTX(t);
    EVP_PKEY *pkey = xmlSecOpenSSLKeyDataRsaGetEvp(xmlSecKeyGetValue(key));
    if (pkey == NULL || EVP_PKEY_up_ref(pkey) != 1) return -1;
    c->key = pkey;
    return 0;
}

static int st_pss_execute(xmlSecTransformPtr t, int last, xmlSecTransformCtxPtr tctx) {
    (void)tctx;
    st_pss_ctx *c = ST_PSS_CTX(t);
    xmlSecBufferPtr in = &(t->inBuf);
    if (c->key == NULL) return -1;
    if (t->status == xmlSecTransformStatusNone) {
        EVP_PKEY_CTX *pctx = NULL;
        c->md = EVP_MD_CTX_new();
        if (c->md == NULL ||
            EVP_DigestVerifyInit(c->md, &pctx, EVP_sha256(), NULL, c->key) != 1 ||
            EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
            EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) <= 0 ||
            EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) <= 0)
            return -1;
        t->status = xmlSecTransformStatusWorking;
    }
    if (t->status == xmlSecTransformStatusWorking) {
        xmlSecSize n = xmlSecBufferGetSize(in);
        if (n > 0) {
            if (EVP_DigestVerifyUpdate(c->md, xmlSecBufferGetData(in), n) != 1) return -1;
            if (xmlSecBufferRemoveHead(in, n) < 0) return -1;
        }
        if (last) t->status = xmlSecTransformStatusFinished;
        return 0;
    }
    return t->status == xmlSecTransformStatusFinished ? 0 : -1;
}

static int st_pss_verify(xmlSecTransformPtr t, const xmlSecByte *data, xmlSecSize size,
                         xmlSecTransformCtxPtr tctx) {
    (void)tctx;
    st_pss_ctx *c = ST_PSS_CTX(t);
    if (t->status != xmlSecTransformStatusFinished || c->md == NULL) return -1;
    int rc = EVP_DigestVerifyFinal(c->md, data, size);
    t->status = rc == 1 ? xmlSecTransformStatusOk : xmlSecTransformStatusFail;
    return 0;
}

static xmlSecTransformKlass st_pss_klass = {
    sizeof(xmlSecTransformKlass),
    sizeof(xmlSecTransform) + sizeof(st_pss_ctx),
    BAD_CAST "stadttor-rsa-pss-sha256",
    BAD_CAST "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1",
    xmlSecTransformUsageSignatureMethod,
    st_pss_initialize,
    st_pss_finalize,
    NULL, /* readNode */
    NULL, /* writeNode */
    st_pss_set_key_req,
    st_pss_set_key,
    st_pss_verify,
    xmlSecTransformDefaultGetDataType,
    xmlSecTransformDefaultPushBin,
    xmlSecTransformDefaultPopBin,
    NULL, /* pushXml */
    NULL, /* popXml */
    st_pss_execute,
    NULL,
    NULL,
};
#endif

/* -------------------------------------------------------------------- init */

int st_init(char *err, size_t errlen) {
    xmlInitParser();
    reset_errors();
    xmlSecErrorsSetCallback(st_xmlsec_error);
    if (xmlSecInit() < 0)
        return fail(err, errlen, ST_E_INTERNAL, "xmlSecInit failed");
    if (xmlSecCheckVersion() != 1)
        return fail(err, errlen, ST_E_INTERNAL,
                    "libxmlsec1 at run time is not the version built against (%s)",
                    XMLSEC_VERSION);
    if (xmlSecOpenSSLAppInit(NULL) < 0)
        return fail(err, errlen, ST_E_INTERNAL, "xmlSecOpenSSLAppInit failed");
    if (xmlSecOpenSSLInit() < 0)
        return fail(err, errlen, ST_E_INTERNAL, "xmlSecOpenSSLInit failed");
#ifndef ST_NATIVE_RSA_PSS
    if (xmlSecTransformIdsRegister(&st_pss_klass) < 0)
        return fail(err, errlen, ST_E_INTERNAL, "cannot register the RSA-PSS transform");
#endif
    return ST_OK;
}

const char *st_xmlsec_version(void) { return XMLSEC_VERSION; }

/* --------------------------------------------------------------- documents */

/* Nothing a SAML message needs, everything an attacker likes: a DTD
 * (XXE, entity expansion), comments (NameID truncation), processing
 * instructions, entity references. */
static int check_tree(xmlNodePtr n, char *err, size_t errlen) {
    for (; n != NULL; n = n->next) {
        switch (n->type) {
        case XML_ELEMENT_NODE:
            if (check_tree(n->children, err, errlen) != ST_OK) return ST_E_PARSE;
            break;
        case XML_TEXT_NODE:
        case XML_CDATA_SECTION_NODE:
            break;
        case XML_COMMENT_NODE:
            return fail(err, errlen, ST_E_PARSE,
                        "comment in a SAML message (line %d): refused",
                        (int)xmlGetLineNo(n));
        case XML_PI_NODE:
            return fail(err, errlen, ST_E_PARSE, "processing instruction in a SAML message: refused");
        case XML_ENTITY_REF_NODE:
        case XML_ENTITY_NODE:
        case XML_ENTITY_DECL:
            return fail(err, errlen, ST_E_PARSE, "entity reference in a SAML message: refused");
        default:
            return fail(err, errlen, ST_E_PARSE, "unexpected XML node type %d: refused", (int)n->type);
        }
    }
    return ST_OK;
}

/* Registers every `ID` attribute (SAML's ID type) so that xmlsec can
 * resolve "#id" references; the same value twice is refused (a second
 * element with the signed element's ID is the core of signature wrapping). */
static int register_ids(xmlDocPtr doc, xmlNodePtr n, char *err, size_t errlen) {
    for (; n != NULL; n = n->next) {
        if (n->type != XML_ELEMENT_NODE) continue;
        xmlAttrPtr a = xmlHasProp(n, BAD_CAST "ID");
        if (a != NULL && a->ns == NULL) {
            xmlChar *v = xmlNodeListGetString(doc, a->children, 1);
            if (v == NULL || v[0] == '\0') {
                xmlFree(v);
                return fail(err, errlen, ST_E_STRUCTURE, "empty ID attribute");
            }
            xmlAttrPtr seen = xmlGetID(doc, v);
            if (seen != NULL && seen != a) {
                int rc = fail(err, errlen, ST_E_PARSE, "ID \"%.64s\" appears twice: refused", (char *)v);
                xmlFree(v);
                return rc;
            }
            if (seen == NULL && xmlAddID(NULL, doc, v, a) == NULL) {
                xmlFree(v);
                return fail(err, errlen, ST_E_INTERNAL, "cannot register ID");
            }
            xmlFree(v);
        }
        if (register_ids(doc, n->children, err, errlen) != ST_OK) return ST_E_PARSE;
    }
    return ST_OK;
}

xmlDocPtr st_parse(const char *buf, size_t len, char *err, size_t errlen, int *code) {
    reset_errors();
    *code = ST_OK;
    if (len > 4 * 1024 * 1024) {
        *code = fail(err, errlen, ST_E_PARSE, "XML document larger than 4 MiB");
        return NULL;
    }
    /* Refused before libxml2 reads any of it: a DTD never gets parsed. */
    for (size_t i = 0; i + 9 <= len; i++) {
        if (buf[i] == '<' && buf[i + 1] == '!' && memcmp(buf + i, "<!DOCTYPE", 9) == 0) {
            *code = fail(err, errlen, ST_E_PARSE, "DOCTYPE in a SAML message: refused (XXE, entity expansion)");
            return NULL;
        }
    }
    /* No NOENT (entities stay references), no DTDLOAD/DTDATTR/DTDVALID,
     * NONET: no fetch of anything. NOCDATA merges CDATA into text. */
    int options = XML_PARSE_NONET | XML_PARSE_NOCDATA;
    xmlDocPtr doc = xmlReadMemory(buf, (int)len, "saml.xml", NULL, options);
    if (doc == NULL) {
        *code = fail(err, errlen, ST_E_PARSE, "not well-formed XML");
        return NULL;
    }
    if (doc->intSubset != NULL || doc->extSubset != NULL) {
        *code = fail(err, errlen, ST_E_PARSE, "DOCTYPE in a SAML message: refused (XXE, entity expansion)");
        xmlFreeDoc(doc);
        return NULL;
    }
    for (xmlNodePtr n = doc->children; n != NULL; n = n->next) {
        if (n->type != XML_ELEMENT_NODE) {
            *code = check_tree(n, err, errlen);
            if (*code == ST_OK) *code = fail(err, errlen, ST_E_PARSE, "content outside the root element");
            xmlFreeDoc(doc);
            return NULL;
        }
    }
    xmlNodePtr root = xmlDocGetRootElement(doc);
    if (root == NULL) {
        *code = fail(err, errlen, ST_E_PARSE, "no root element");
        xmlFreeDoc(doc);
        return NULL;
    }
    if ((*code = check_tree(root, err, errlen)) != ST_OK ||
        (*code = register_ids(doc, root, err, errlen)) != ST_OK) {
        xmlFreeDoc(doc);
        return NULL;
    }
    return doc;
}

void st_free(xmlDocPtr doc) {
    if (doc != NULL) xmlFreeDoc(doc);
}

/* Collects the elements named (ns, local) under n; stops counting at 2. */
static void find_elements(xmlNodePtr n, const char *ns, const char *local,
                          xmlNodePtr *first, int *count) {
    for (; n != NULL; n = n->next) {
        if (n->type != XML_ELEMENT_NODE) continue;
        if (xmlSecCheckNodeName(n, BAD_CAST local, BAD_CAST ns)) {
            if (*count == 0) *first = n;
            (*count)++;
        }
        find_elements(n->children, ns, local, first, count);
    }
}

static xmlNodePtr the_element(xmlDocPtr doc, const char *ns, const char *local,
                              char *err, size_t errlen, int *code) {
    xmlNodePtr found = NULL;
    int count = 0;
    find_elements(xmlDocGetRootElement(doc), ns, local, &found, &count);
    if (count != 1) {
        *code = fail(err, errlen, ST_E_STRUCTURE, "%d %s elements where exactly one is allowed",
                     count, local);
        return NULL;
    }
    return found;
}

/* ------------------------------------------------------------ allowlists */

typedef struct {
    const char *href;
    xmlSecTransformId (*id)(void);
} st_alg;

static xmlSecTransformId t_excl(void) { return xmlSecTransformExclC14NId; }
static xmlSecTransformId t_incl(void) { return xmlSecTransformInclC14NId; }
static xmlSecTransformId t_env(void) { return xmlSecTransformEnvelopedId; }
static xmlSecTransformId t_sha256(void) { return xmlSecOpenSSLTransformSha256Id; }
static xmlSecTransformId t_sha384(void) { return xmlSecOpenSSLTransformSha384Id; }
static xmlSecTransformId t_sha512(void) { return xmlSecOpenSSLTransformSha512Id; }
static xmlSecTransformId t_rsa256(void) { return xmlSecOpenSSLTransformRsaSha256Id; }
static xmlSecTransformId t_rsa384(void) { return xmlSecOpenSSLTransformRsaSha384Id; }
static xmlSecTransformId t_rsa512(void) { return xmlSecOpenSSLTransformRsaSha512Id; }
static xmlSecTransformId t_ec256(void) { return xmlSecOpenSSLTransformEcdsaSha256Id; }
static xmlSecTransformId t_ec384(void) { return xmlSecOpenSSLTransformEcdsaSha384Id; }
#ifdef ST_NATIVE_RSA_PSS
static xmlSecTransformId t_pss256(void) { return xmlSecOpenSSLTransformRsaPssSha256Id; }
#else
static xmlSecTransformId t_pss256(void) { return &st_pss_klass; }
#endif

static const char RSA_PSS_SHA256[] = "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1";

/* Canonicalisation of SignedInfo and the transforms of a Reference. */
static const st_alg C14N_AND_TRANSFORMS[] = {
    {"http://www.w3.org/2001/10/xml-exc-c14n#", t_excl},
    {"http://www.w3.org/TR/2001/REC-xml-c14n-20010315", t_incl},
    {"http://www.w3.org/2000/09/xmldsig#enveloped-signature", t_env},
};
static const st_alg DIGESTS[] = {
    {"http://www.w3.org/2001/04/xmlenc#sha256", t_sha256},
    {"http://www.w3.org/2001/04/xmldsig-more#sha384", t_sha384},
    {"http://www.w3.org/2001/04/xmlenc#sha512", t_sha512},
};
static const st_alg SIGNATURES[] = {
    {"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", t_rsa256},
    {"http://www.w3.org/2001/04/xmldsig-more#rsa-sha384", t_rsa384},
    {"http://www.w3.org/2001/04/xmldsig-more#rsa-sha512", t_rsa512},
    {"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256", t_ec256},
    {"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384", t_ec384},
    {RSA_PSS_SHA256, t_pss256},
};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static int allowed(const st_alg *list, size_t n, const xmlChar *href) {
    for (size_t i = 0; i < n; i++)
        if (href != NULL && xmlStrEqual(href, BAD_CAST list[i].href)) return 1;
    return 0;
}

/* Checks every Algorithm attribute under SignedInfo against the
 * allowlists, so that a refusal names the algorithm (SHA-1, ...). */
static int check_algorithms(xmlNodePtr signed_info, char *err, size_t errlen) {
    for (xmlNodePtr n = signed_info->children; n != NULL; n = n->next) {
        if (n->type != XML_ELEMENT_NODE) continue;
        xmlChar *alg = xmlGetProp(n, BAD_CAST "Algorithm");
        int ok = 1;
        const char *what = NULL;
        if (xmlSecCheckNodeName(n, BAD_CAST "CanonicalizationMethod", BAD_CAST DSIG_NS)) {
            ok = allowed(C14N_AND_TRANSFORMS, 2, alg); what = "canonicalisation";
        } else if (xmlSecCheckNodeName(n, BAD_CAST "SignatureMethod", BAD_CAST DSIG_NS)) {
            ok = allowed(SIGNATURES, COUNT(SIGNATURES), alg); what = "signature";
        } else if (xmlSecCheckNodeName(n, BAD_CAST "Reference", BAD_CAST DSIG_NS)) {
            xmlFree(alg);
            for (xmlNodePtr r = n->children; r != NULL; r = r->next) {
                if (r->type != XML_ELEMENT_NODE) continue;
                if (xmlSecCheckNodeName(r, BAD_CAST "DigestMethod", BAD_CAST DSIG_NS)) {
                    xmlChar *d = xmlGetProp(r, BAD_CAST "Algorithm");
                    int dok = allowed(DIGESTS, COUNT(DIGESTS), d);
                    int rc = dok ? ST_OK : fail(err, errlen, ST_E_ALGORITHM,
                                                "digest algorithm %s is not accepted (SHA-256 or stronger)",
                                                d ? (char *)d : "(none)");
                    xmlFree(d);
                    if (rc != ST_OK) return rc;
                } else if (xmlSecCheckNodeName(r, BAD_CAST "Transforms", BAD_CAST DSIG_NS)) {
                    for (xmlNodePtr t = r->children; t != NULL; t = t->next) {
                        if (t->type != XML_ELEMENT_NODE) continue;
                        xmlChar *ta = xmlGetProp(t, BAD_CAST "Algorithm");
                        int tok = allowed(C14N_AND_TRANSFORMS, COUNT(C14N_AND_TRANSFORMS), ta);
                        int rc = tok ? ST_OK : fail(err, errlen, ST_E_ALGORITHM,
                                                    "transform %s is not accepted",
                                                    ta ? (char *)ta : "(none)");
                        xmlFree(ta);
                        if (rc != ST_OK) return rc;
                    }
                }
            }
            continue;
        }
        if (!ok) {
            int rc = fail(err, errlen, ST_E_ALGORITHM, "%s algorithm %s is not accepted%s", what,
                          alg ? (char *)alg : "(none)",
                          (alg && xmlStrstr(alg, BAD_CAST "sha1")) ? " (SHA-1)" : "");
            xmlFree(alg);
            return rc;
        }
        xmlFree(alg);
    }
    return ST_OK;
}

static int enable_all(xmlSecDSigCtxPtr ctx) {
    for (size_t i = 0; i < 2; i++)
        if (xmlSecDSigCtxEnableSignatureTransform(ctx, C14N_AND_TRANSFORMS[i].id()) < 0) return -1;
    for (size_t i = 0; i < COUNT(SIGNATURES); i++)
        if (xmlSecDSigCtxEnableSignatureTransform(ctx, SIGNATURES[i].id()) < 0) return -1;
    for (size_t i = 0; i < COUNT(C14N_AND_TRANSFORMS); i++)
        if (xmlSecDSigCtxEnableReferenceTransform(ctx, C14N_AND_TRANSFORMS[i].id()) < 0) return -1;
    for (size_t i = 0; i < COUNT(DIGESTS); i++)
        if (xmlSecDSigCtxEnableReferenceTransform(ctx, DIGESTS[i].id()) < 0) return -1;
    ctx->enabledReferenceUris = xmlSecTransformUriTypeSameDocument;
    return 0;
}

/* ----------------------------------------------------------------- verify */

/* The enveloped signature of the one element (ns, local) in doc, checked
 * with the certificates certs[i] (DER) tried in turn; KeyInfo in the
 * document is never used. On success out and out_len hold the bytes the
 * reference digest was computed over (free with st_buf_free), i.e. the
 * canonical form of exactly the element that was signed. */
int st_verify(xmlDocPtr doc, const char *ns, const char *local,
              const unsigned char *const *certs, const size_t *cert_lens, size_t ncerts,
              unsigned char **out, size_t *out_len, char *err, size_t errlen) {
    reset_errors();
    *out = NULL;
    *out_len = 0;
    int code = ST_OK;
    xmlNodePtr target = the_element(doc, ns, local, err, errlen, &code);
    if (target == NULL) return code;
    xmlNodePtr sig = NULL;
    int nsig = 0;
    for (xmlNodePtr c = target->children; c != NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE && xmlSecCheckNodeName(c, BAD_CAST "Signature", BAD_CAST DSIG_NS)) {
            sig = c;
            nsig++;
        }
    if (nsig == 0) return fail(err, errlen, ST_E_STRUCTURE, "%s is not signed", local);
    if (nsig > 1) return fail(err, errlen, ST_E_STRUCTURE, "%s has %d signatures", local, nsig);
    xmlChar *id = xmlGetProp(target, BAD_CAST "ID");
    if (id == NULL) return fail(err, errlen, ST_E_STRUCTURE, "signed %s has no ID", local);
    xmlNodePtr signed_info = xmlSecFindChild(sig, BAD_CAST "SignedInfo", BAD_CAST DSIG_NS);
    if (signed_info == NULL) {
        xmlFree(id);
        return fail(err, errlen, ST_E_STRUCTURE, "signature without SignedInfo");
    }
    if ((code = check_algorithms(signed_info, err, errlen)) != ST_OK) {
        xmlFree(id);
        return code;
    }
    if (ncerts == 0) {
        xmlFree(id);
        return fail(err, errlen, ST_E_SIGNATURE, "no certificate to verify with");
    }
    code = ST_E_SIGNATURE;
    for (size_t i = 0; i < ncerts && code == ST_E_SIGNATURE; i++) {
        reset_errors();
        xmlSecKeyPtr key = xmlSecOpenSSLAppKeyLoadMemory(certs[i], (xmlSecSize)cert_lens[i],
                                                         xmlSecKeyDataFormatCertDer, NULL, NULL, NULL);
        if (key == NULL) {
            code = fail(err, errlen, ST_E_INTERNAL, "cannot load the IdP certificate %zu", i);
            break;
        }
        xmlSecDSigCtxPtr ctx = xmlSecDSigCtxCreate(NULL);
        if (ctx == NULL) {
            xmlSecKeyDestroy(key);
            code = fail(err, errlen, ST_E_INTERNAL, "xmlSecDSigCtxCreate failed");
            break;
        }
        ctx->signKey = key; /* owned by ctx from here */
        ctx->flags |= XMLSEC_DSIG_FLAGS_STORE_SIGNEDINFO_REFERENCES | XMLSEC_DSIG_FLAGS_IGNORE_MANIFESTS;
        if (enable_all(ctx) < 0) {
            xmlSecDSigCtxDestroy(ctx);
            code = fail(err, errlen, ST_E_INTERNAL, "cannot set the algorithm allowlist");
            break;
        }
        if (xmlSecDSigCtxVerify(ctx, sig) < 0) {
            code = fail(err, errlen, ST_E_SIGNATURE, "signature of %s cannot be processed", local);
        } else if (ctx->status != xmlSecDSigStatusSucceeded) {
            code = fail(err, errlen, ST_E_SIGNATURE, "signature of %s does not verify", local);
        } else if (xmlSecPtrListGetSize(&ctx->signedInfoReferences) != 1) {
            code = fail(err, errlen, ST_E_STRUCTURE, "signature of %s has %d references where one is allowed",
                        local, (int)xmlSecPtrListGetSize(&ctx->signedInfoReferences));
        } else {
            xmlSecDSigReferenceCtxPtr ref = (xmlSecDSigReferenceCtxPtr)xmlSecPtrListGetItem(&ctx->signedInfoReferences, 0);
            xmlSecBufferPtr pre = ref ? xmlSecDSigReferenceCtxGetPreDigestBuffer(ref) : NULL;
            if (ref == NULL || ref->uri == NULL || ref->uri[0] != '#' || !xmlStrEqual(ref->uri + 1, id)) {
                code = fail(err, errlen, ST_E_STRUCTURE,
                            "the signature of %s references another element (signature wrapping)", local);
            } else if (ref->status != xmlSecDSigStatusSucceeded || pre == NULL) {
                code = fail(err, errlen, ST_E_SIGNATURE, "reference digest of %s does not verify", local);
            } else {
                size_t n = (size_t)xmlSecBufferGetSize(pre);
                *out = (unsigned char *)malloc(n ? n : 1);
                if (*out == NULL) {
                    code = fail(err, errlen, ST_E_INTERNAL, "out of memory");
                } else {
                    memcpy(*out, xmlSecBufferGetData(pre), n);
                    *out_len = n;
                    code = ST_OK;
                }
            }
        }
        xmlSecDSigCtxDestroy(ctx);
    }
    xmlFree(id);
    return code;
}

void st_buf_free(unsigned char *p) { free(p); }

/* ---------------------------------------------------------------- decrypt */

/* Decrypts the one xenc:EncryptedData of doc in place with the content
 * key `key` (already unwrapped by the caller: its RSA key never comes
 * here), and checks the decrypted content like a parsed document. */
int st_decrypt(xmlDocPtr doc, const unsigned char *key, size_t key_len,
               char *err, size_t errlen) {
    reset_errors();
    int code = ST_OK;
    xmlNodePtr enc = the_element(doc, XENC_NS, "EncryptedData", err, errlen, &code);
    if (enc == NULL) return code;
    xmlNodePtr parent = enc->parent;
    xmlSecEncCtxPtr ctx = xmlSecEncCtxCreate(NULL);
    if (ctx == NULL) return fail(err, errlen, ST_E_INTERNAL, "xmlSecEncCtxCreate failed");
    ctx->encKey = xmlSecKeyReadMemory(xmlSecOpenSSLKeyDataAesId, key, (xmlSecSize)key_len);
    if (ctx->encKey == NULL) {
        xmlSecEncCtxDestroy(ctx);
        return fail(err, errlen, ST_E_DECRYPT, "content key of %zu bytes is not an AES key", key_len);
    }
    xmlSecTransformId ids[] = {
        xmlSecOpenSSLTransformAes128GcmId, xmlSecOpenSSLTransformAes192GcmId,
        xmlSecOpenSSLTransformAes256GcmId, xmlSecOpenSSLTransformAes128CbcId,
        xmlSecOpenSSLTransformAes192CbcId, xmlSecOpenSSLTransformAes256CbcId,
    };
    for (size_t i = 0; i < COUNT(ids); i++)
        if (xmlSecPtrListAdd(&ctx->transformCtx.enabledTransforms, (void *)ids[i]) < 0) {
            xmlSecEncCtxDestroy(ctx);
            return fail(err, errlen, ST_E_INTERNAL, "cannot set the cipher allowlist");
        }
    ctx->transformCtx.enabledUris = xmlSecTransformUriTypeNone;
    if (xmlSecEncCtxDecrypt(ctx, enc) < 0 || ctx->result == NULL) {
        xmlSecEncCtxDestroy(ctx);
        return fail(err, errlen, ST_E_DECRYPT, "the encrypted content does not decrypt");
    }
    if (!ctx->resultReplaced) {
        xmlSecEncCtxDestroy(ctx);
        return fail(err, errlen, ST_E_DECRYPT, "the encrypted content is not an XML element");
    }
    xmlSecEncCtxDestroy(ctx);
    if ((code = check_tree(parent->children, err, errlen)) != ST_OK) return code;
    return register_ids(doc, parent->children, err, errlen);
}

/* ------------------------------------------------------------------- c14n */

/* Exclusive C14N 1.0 (without comments) of the whole document. */
int st_c14n(xmlDocPtr doc, unsigned char **out, size_t *out_len, char *err, size_t errlen) {
    reset_errors();
    xmlChar *buf = NULL;
    int n = xmlC14NDocDumpMemory(doc, NULL, XML_C14N_EXCLUSIVE_1_0, NULL, 0, &buf);
    if (n < 0 || buf == NULL) return fail(err, errlen, ST_E_INTERNAL, "canonicalisation failed");
    *out = (unsigned char *)malloc((size_t)n ? (size_t)n : 1);
    if (*out == NULL) {
        xmlFree(buf);
        return fail(err, errlen, ST_E_INTERNAL, "out of memory");
    }
    memcpy(*out, buf, (size_t)n);
    *out_len = (size_t)n;
    xmlFree(buf);
    return ST_OK;
}
