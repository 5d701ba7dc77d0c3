//! A scripted browser for login flows: a real HTTP client (reqwest, rustls
//! with ring) with a real cookie jar (`cookie_store`, RFC 6265 rules),
//! that does not follow redirects by itself.
//!
//! - [`Browser::follow`] walks redirects (at most 20) and records every hop
//!   ([`Hop`]: method, URL, status, `Location`, `Set-Cookie`), so a test
//!   can assert on `state`, `iss`, PKCE parameters and cookie flags.
//!   [`Browser::stop_before`] ends a walk before it requests a URL (e.g. a
//!   redirect URI nobody listens on) and keeps that URL in
//!   [`Chain::stopped_at`].
//! - [`Browser::submit_form`] reads a page's `<form>` (action, method,
//!   inputs, selects) with a small parser and submits it, as a browser
//!   without JavaScript would. [`Browser::login_at_op`] does that on the
//!   test OP's login page ([`crate::oidc`]).
//! - The cookie jar can be read and tampered with ([`Browser::cookies_for`],
//!   [`Browser::set_cookie`], [`Browser::remove_cookie`]).
//!
//! HTTPS trusts only the CA PEMs given to the builder; plain HTTP is allowed
//! (the test OP speaks it). [`BrowserBuilder::resolve`] maps a host name to
//! a local address; as in reqwest, the port of that address is ignored, so
//! URLs carry the port (`https://buerger.example:PORT/`).
//! HTTP/1.1 and HTTP/2 (by ALPN), a new connection per request (no pool,
//! so restarts of the processes under test do not break it). Transport errors on the first request of
//! a call panic; later in a redirect walk they end the walk
//! ([`Chain::error`]).

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
pub use reqwest::{Method, Url};

use crate::oidc::{Level, TestUser};

/// How many redirects [`Browser::follow`] takes before it calls it a loop.
pub const MAX_HOPS: usize = 20;

/// A response, body read in full.
#[derive(Clone)]
pub struct Response {
    pub method: Method,
    pub url: Url,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Response {
    /// A header's value (the first, if repeated).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `Location`, resolved against the request URL.
    pub fn location(&self) -> Option<Url> {
        self.header("location").map(|l| {
            self.url
                .join(l)
                .unwrap_or_else(|e| panic!("bad Location {l:?}: {e}"))
        })
    }

    pub fn is_redirect(&self) -> bool {
        matches!(self.status, 301 | 302 | 303 | 307 | 308)
    }

    /// Every `Set-Cookie` header, raw.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    /// Names of the cookies set by this response.
    pub fn set_cookie_names(&self) -> Vec<String> {
        self.set_cookies()
            .iter()
            .map(|c| cookie_name(c).to_owned())
            .collect()
    }

    /// The raw `Set-Cookie` header for cookie `name`.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| cookie_name(c) == name)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}) from {}: {}", self.url, self.body))
    }

    /// The forms on this page.
    pub fn forms(&self) -> Vec<Form> {
        parse_forms(&self.body, &self.url)
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.method, self.url, self.status)?;
        if let Some(l) = self.header("location") {
            write!(f, " Location: {l}")?;
        }
        let body: String = self.body.chars().take(2000).collect();
        write!(f, "\n{body}")
    }
}

fn cookie_name(set_cookie: &str) -> &str {
    set_cookie
        .split(';')
        .next()
        .unwrap_or_default()
        .split('=')
        .next()
        .unwrap_or_default()
        .trim()
}

/// Query parameter `name` of `url`, percent-decoded.
pub fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// One request of a redirect walk.
#[derive(Clone, Debug)]
pub struct Hop {
    pub method: Method,
    pub url: Url,
    pub status: u16,
    /// `Location`, resolved against `url`.
    pub location: Option<Url>,
    pub set_cookie_names: Vec<String>,
    /// The raw `Set-Cookie` headers, attributes included.
    pub set_cookies: Vec<String>,
}

/// A redirect walk: every hop, and the last response.
#[derive(Clone)]
pub struct Chain {
    pub hops: Vec<Hop>,
    /// The last response received (a redirect if the walk stopped early).
    pub last: Response,
    /// The URL the walk did not request because of
    /// [`Browser::stop_before`].
    pub stopped_at: Option<Url>,
    /// A transport error that ended the walk (URL and error).
    pub error: Option<String>,
}

impl Chain {
    /// The first hop whose URL starts with `prefix`.
    pub fn hop_to(&self, prefix: &str) -> Option<&Hop> {
        self.hops
            .iter()
            .find(|h| h.url.as_str().starts_with(prefix))
    }

    /// Every URL requested, in order.
    pub fn urls(&self) -> Vec<String> {
        self.hops.iter().map(|h| h.url.to_string()).collect()
    }

    /// Every cookie name set anywhere in the walk.
    pub fn set_cookie_names(&self) -> Vec<String> {
        self.hops
            .iter()
            .flat_map(|h| h.set_cookie_names.iter().cloned())
            .collect()
    }
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "redirect chain:")?;
        for (i, h) in self.hops.iter().enumerate() {
            write!(f, "  {i}: {} {} -> {}", h.method, h.url, h.status)?;
            if let Some(l) = &h.location {
                write!(f, " Location: {l}")?;
            }
            if !h.set_cookie_names.is_empty() {
                write!(f, " Set-Cookie: {:?}", h.set_cookie_names)?;
            }
            writeln!(f)?;
        }
        if let Some(u) = &self.stopped_at {
            writeln!(f, "  stopped before {u}")?;
        }
        if let Some(e) = &self.error {
            writeln!(f, "  error: {e}")?;
        }
        write!(f, "last: {:?}", self.last)
    }
}

/// A form read from a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Form {
    pub id: Option<String>,
    /// The absolute action URL (the page's URL if the form has none).
    pub action: Url,
    /// `GET` or `POST`, upper case.
    pub method: String,
    /// Successful controls in document order: inputs (not unchecked
    /// checkboxes/radios, not submit buttons), selects (the selected or
    /// first option), textareas.
    pub fields: Vec<(String, String)>,
}

impl Form {
    /// The value of field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets field `name` (replacing every existing value) or appends it.
    pub fn set(&mut self, name: &str, value: &str) {
        if self.fields.iter().any(|(k, _)| k == name) {
            self.fields.retain(|(k, _)| k != name);
        }
        self.fields.push((name.to_owned(), value.to_owned()));
    }
}

/// Builds a [`Browser`].
#[derive(Default)]
pub struct BrowserBuilder {
    ca_pems: Vec<String>,
    resolves: Vec<(String, SocketAddr)>,
    timeout: Option<Duration>,
}

impl BrowserBuilder {
    /// Trusts this CA (PEM) for HTTPS. Without one, HTTPS fails.
    pub fn trust_ca_pem(mut self, pem: &str) -> Self {
        self.ca_pems.push(pem.to_owned());
        self
    }

    /// Sends requests for `host` to `addr`'s IP (the URL's port is used).
    pub fn resolve(mut self, host: &str, addr: SocketAddr) -> Self {
        self.resolves.push((host.to_owned(), addr));
        self
    }

    /// Timeout per request (default 30 s).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    pub fn build(self) -> Browser {
        let jar = Arc::new(Jar::default());
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_provider(jar.clone())
            .tls_built_in_root_certs(false)
            // No connection reuse: a restarted OP or gateway would otherwise
            // meet a dead pooled connection ("connection closed before
            // message completed"), which reqwest does not retry.
            .pool_max_idle_per_host(0)
            .user_agent("stadttor-testkit-browser")
            .timeout(self.timeout.unwrap_or(Duration::from_secs(30)));
        for pem in &self.ca_pems {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes()).unwrap();
            assert!(!certs.is_empty(), "no certificate in CA PEM");
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        for (host, addr) in &self.resolves {
            b = b.resolve(host, *addr);
        }
        Browser {
            client: b.build().unwrap(),
            jar,
            stop_before: Mutex::new(Vec::new()),
        }
    }
}

/// The cookie jar behind a [`Browser`].
#[derive(Default)]
struct Jar(Mutex<cookie_store::CookieStore>);

impl reqwest::cookie::CookieStore for Jar {
    fn set_cookies(&self, headers: &mut dyn Iterator<Item = &HeaderValue>, url: &Url) {
        let cookies = headers.filter_map(|v| {
            std::str::from_utf8(v.as_bytes())
                .ok()
                .and_then(|s| cookie_store::RawCookie::parse(s.to_owned()).ok())
        });
        self.0.lock().unwrap().store_response_cookies(cookies, url);
    }

    fn cookies(&self, url: &Url) -> Option<HeaderValue> {
        let store = self.0.lock().unwrap();
        let s = store
            .get_request_values(url)
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        (!s.is_empty()).then(|| HeaderValue::from_str(&s).unwrap())
    }
}

/// Where a login starts: a page already fetched, or a URL to walk to.
pub enum Start<'a> {
    Page(&'a Response),
    Url(&'a str),
}

impl<'a> From<&'a Response> for Start<'a> {
    fn from(r: &'a Response) -> Self {
        Start::Page(r)
    }
}

impl<'a> From<&'a Chain> for Start<'a> {
    fn from(c: &'a Chain) -> Self {
        Start::Page(&c.last)
    }
}

impl<'a> From<&'a str> for Start<'a> {
    fn from(u: &'a str) -> Self {
        Start::Url(u)
    }
}

impl<'a> From<&'a String> for Start<'a> {
    fn from(u: &'a String) -> Self {
        Start::Url(u)
    }
}

/// A browser session: one cookie jar, no JavaScript, manual redirects.
pub struct Browser {
    client: reqwest::Client,
    jar: Arc<Jar>,
    stop_before: Mutex<Vec<String>>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    /// A browser for plain HTTP only (no CA trusted).
    pub fn new() -> Self {
        Self::builder().build()
    }

    pub fn builder() -> BrowserBuilder {
        BrowserBuilder::default()
    }

    /// The underlying client (redirects off, this browser's cookie jar),
    /// for requests the helpers do not cover; pass them to [`Browser::send`].
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Redirect walks end before requesting a URL starting with `prefix`.
    pub fn stop_before(&self, prefix: &str) {
        self.stop_before.lock().unwrap().push(prefix.to_owned());
    }

    fn should_stop(&self, url: &Url) -> bool {
        self.stop_before
            .lock()
            .unwrap()
            .iter()
            .any(|p| url.as_str().starts_with(p.as_str()))
    }

    /// Sends a request and reads the whole response.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Response {
        let req = req.build().unwrap();
        let (method, url) = (req.method().clone(), req.url().clone());
        self.try_send(req)
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
    }

    async fn try_send(&self, req: reqwest::Request) -> Result<Response, String> {
        let (method, url) = (req.method().clone(), req.url().clone());
        let resp = self
            .client
            .execute(req)
            .await
            .map_err(|e| format!("{method} {url}: {}", error_chain(&e)))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .text()
            .await
            .map_err(|e| format!("{method} {url}: body: {}", error_chain(&e)))?;
        Ok(Response {
            method,
            url,
            status,
            headers,
            body,
        })
    }

    /// `GET url`, redirects not followed.
    pub async fn get(&self, url: &str) -> Response {
        self.send(self.client.get(url)).await
    }

    /// `POST url` with an `application/x-www-form-urlencoded` body.
    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Response {
        self.send(self.client.post(url).form(form)).await
    }

    /// `GET url`, then every redirect (see [`Browser::follow_from`]).
    pub async fn follow(&self, url: &str) -> Chain {
        let first = self.get(url).await;
        self.follow_from(first).await
    }

    /// Follows the redirects that start at `first` (up to [`MAX_HOPS`]):
    /// 301/302/303 as GET, 307/308 with the same method (a body is not
    /// repeated: the walk panics on a 307/308 after a POST). Stops before a
    /// URL registered with [`Browser::stop_before`] and on a transport error.
    pub async fn follow_from(&self, first: Response) -> Chain {
        let mut chain = Chain {
            hops: vec![hop(&first)],
            last: first,
            stopped_at: None,
            error: None,
        };
        while chain.last.is_redirect() {
            let Some(next) = chain.last.location() else {
                break;
            };
            if chain.hops.len() > MAX_HOPS {
                panic!("more than {MAX_HOPS} redirects: {chain:?}");
            }
            if self.should_stop(&next) {
                chain.stopped_at = Some(next);
                break;
            }
            let method = match chain.last.status {
                307 | 308 => {
                    assert!(
                        chain.last.method == Method::GET || chain.last.method == Method::HEAD,
                        "307/308 after {} is not supported: {chain:?}",
                        chain.last.method
                    );
                    chain.last.method.clone()
                }
                _ => Method::GET,
            };
            let req = self.client.request(method, next).build().unwrap();
            match self.try_send(req).await {
                Ok(resp) => {
                    chain.hops.push(hop(&resp));
                    chain.last = resp;
                }
                Err(e) => {
                    chain.error = Some(e);
                    break;
                }
            }
        }
        chain
    }

    /// Finds the form on `page` whose action contains `action_contains`,
    /// sets the `overrides` (replacing or adding fields) and submits it as
    /// its method says. Redirects are not followed.
    pub async fn submit_form(
        &self,
        page: &Response,
        action_contains: &str,
        overrides: &[(&str, &str)],
    ) -> Response {
        let forms = page.forms();
        let mut form = forms
            .into_iter()
            .find(|f| f.action.as_str().contains(action_contains))
            .unwrap_or_else(|| {
                panic!("no form with action containing {action_contains:?} on {page:?}")
            });
        for (k, v) in overrides {
            form.set(k, v);
        }
        self.submit(&form).await
    }

    /// Submits a form (GET: fields as the query; POST: urlencoded body).
    pub async fn submit(&self, form: &Form) -> Response {
        let fields: Vec<(&str, &str)> = form
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if form.method == "GET" {
            let mut url = form.action.clone();
            url.query_pairs_mut().clear().extend_pairs(&fields);
            self.send(self.client.get(url)).await
        } else {
            self.send(self.client.post(form.action.clone()).form(&fields))
                .await
        }
    }

    /// Logs `user` in at the test OP at `level` and walks back: from a URL
    /// (typically the RP's login URL) it first walks to the OP's login page;
    /// then it fills and submits the form and follows every redirect, to
    /// the RP and beyond. The returned chain starts at the form submission.
    pub async fn login_at_op<'a>(
        &self,
        start: impl Into<Start<'a>>,
        user: TestUser,
        level: Level,
    ) -> Chain {
        self.login_as(start, user.name, Some(level.as_str())).await
    }

    /// Like [`Browser::login_at_op`] with any user name and level (also
    /// unknown ones, for negative tests); `level: None` leaves the form's
    /// field out, so the OP uses the user's highest level.
    pub async fn login_as<'a>(
        &self,
        start: impl Into<Start<'a>>,
        user: &str,
        level: Option<&str>,
    ) -> Chain {
        let walked;
        let page = match start.into() {
            Start::Page(p) => p,
            Start::Url(u) => {
                walked = self.follow(u).await;
                &walked.last
            }
        };
        let mut form = page
            .forms()
            .into_iter()
            .find(|f| {
                f.action.path().starts_with("/interaction/") && f.action.path().ends_with("/login")
            })
            .unwrap_or_else(|| panic!("not the test OP's login page: {page:?}"));
        form.set("user", user);
        match level {
            Some(l) => form.set("level", l),
            None => form.fields.retain(|(k, _)| k != "level"),
        }
        let resp = self.submit(&form).await;
        self.follow_from(resp).await
    }

    /// The cookies this browser would send to `url`, as (name, value).
    pub fn cookies_for(&self, url: &str) -> Vec<(String, String)> {
        let url = Url::parse(url).unwrap();
        self.jar
            .0
            .lock()
            .unwrap()
            .get_request_values(&url)
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect()
    }

    /// The value of cookie `name` sent to `url`.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        self.cookies_for(url)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Sets cookie `name` to `value` for `url`: every stored cookie of that
    /// name that `url` would receive gets the new value (attributes kept);
    /// if there is none, a host-only cookie `Path=/` is added (`Secure` for
    /// https).
    pub fn set_cookie(&self, url: &str, name: &str, value: &str) {
        let url = Url::parse(url).unwrap();
        let mut store = self.jar.0.lock().unwrap();
        let matching: Vec<cookie_store::Cookie<'static>> = store
            .matches(&url)
            .into_iter()
            .filter(|c| c.name() == name)
            .cloned()
            .collect();
        if matching.is_empty() {
            let secure = if url.scheme() == "https" {
                "; Secure"
            } else {
                ""
            };
            store
                .parse(&format!("{name}={value}; Path=/{secure}"), &url)
                .unwrap();
            return;
        }
        for old in matching {
            let mut raw = (*old).clone();
            raw.set_value(value.to_owned());
            let mut new = cookie_store::Cookie::try_from_raw_cookie(&raw, &url).unwrap();
            new.path = old.path.clone();
            new.domain = old.domain.clone();
            store.insert(new.into_owned(), &url).unwrap();
        }
    }

    /// Adds a cookie as if `url` had answered `Set-Cookie: set_cookie`.
    pub fn add_cookie(&self, url: &str, set_cookie: &str) {
        let url = Url::parse(url).unwrap();
        self.jar.0.lock().unwrap().parse(set_cookie, &url).unwrap();
    }

    /// Removes every stored cookie `name` that `url` would receive.
    pub fn remove_cookie(&self, url: &str, name: &str) {
        let url = Url::parse(url).unwrap();
        let mut store = self.jar.0.lock().unwrap();
        let keys: Vec<(String, String)> = store
            .matches(&url)
            .into_iter()
            .filter(|c| c.name() == name)
            .map(|c| (String::from(&c.domain), String::from(&c.path)))
            .collect();
        for (domain, path) in keys {
            store.remove(&domain, &path, name);
        }
    }

    /// Forgets every cookie.
    pub fn clear_cookies(&self) {
        self.jar.0.lock().unwrap().clear();
    }
}

fn hop(r: &Response) -> Hop {
    Hop {
        method: r.method.clone(),
        url: r.url.clone(),
        status: r.status,
        location: r.location(),
        set_cookie_names: r.set_cookie_names(),
        set_cookies: r.set_cookies(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

// --- a small HTML form reader -------------------------------------------

/// The forms in `html`, actions resolved against `base`. Enough HTML for
/// server-rendered forms: tags and attributes (quoted or not, any case),
/// character references in attribute values, `<input>` (not unchecked
/// checkboxes/radios, not buttons), `<select>` with `<option selected>`,
/// `<textarea>`, and inputs outside a form that name it with `form="id"`.
/// No scripts, no nested forms, no `<button name>` values.
pub fn parse_forms(html: &str, base: &Url) -> Vec<Form> {
    let tags = tokenize(html);
    let mut forms: Vec<Form> = Vec::new();
    let mut current: Option<usize> = None;
    let mut select: Option<OpenSelect> = None;
    let mut textarea: Option<(Option<usize>, String, usize)> = None;
    let mut orphans: Vec<(String, String, String)> = Vec::new();

    let mut push = |forms: &mut Vec<Form>,
                    form: Option<usize>,
                    owner: Option<String>,
                    k: String,
                    v: String| {
        match (owner, form) {
            (Some(id), _) => orphans.push((id, k, v)),
            (None, Some(i)) => forms[i].fields.push((k, v)),
            (None, None) => {}
        }
    };

    for tag in &tags {
        match tag {
            Token::Open { name, attrs, end } => match name.as_str() {
                "form" => {
                    let action = attr(attrs, "action")
                        .filter(|a| !a.is_empty())
                        .map(|a| {
                            base.join(&a)
                                .unwrap_or_else(|e| panic!("bad form action {a:?}: {e}"))
                        })
                        .unwrap_or_else(|| base.clone());
                    let method = attr(attrs, "method")
                        .unwrap_or_else(|| "get".to_owned())
                        .to_ascii_uppercase();
                    forms.push(Form {
                        id: attr(attrs, "id"),
                        action,
                        method: if method == "POST" {
                            method
                        } else {
                            "GET".to_owned()
                        },
                        fields: Vec::new(),
                    });
                    current = Some(forms.len() - 1);
                }
                "input" => {
                    let Some(n) = attr(attrs, "name") else {
                        continue;
                    };
                    let ty = attr(attrs, "type").unwrap_or_default().to_ascii_lowercase();
                    if matches!(
                        ty.as_str(),
                        "submit" | "button" | "image" | "reset" | "file"
                    ) {
                        continue;
                    }
                    if matches!(ty.as_str(), "checkbox" | "radio")
                        && attr(attrs, "checked").is_none()
                    {
                        continue;
                    }
                    let default = if matches!(ty.as_str(), "checkbox" | "radio") {
                        "on"
                    } else {
                        ""
                    };
                    let v = attr(attrs, "value").unwrap_or_else(|| default.to_owned());
                    push(&mut forms, current, attr(attrs, "form"), n, v);
                }
                "select" => {
                    if let Some(n) = attr(attrs, "name") {
                        select = Some(OpenSelect {
                            form: current,
                            name: n,
                            owner: attr(attrs, "form"),
                            chosen: None,
                        });
                    }
                }
                "option" => {
                    if let Some(OpenSelect { chosen, .. }) = select.as_mut() {
                        let v = attr(attrs, "value").unwrap_or_default();
                        if attr(attrs, "selected").is_some() || chosen.is_none() {
                            *chosen = Some(v);
                        }
                    }
                }
                "textarea" => {
                    if let Some(n) = attr(attrs, "name") {
                        textarea = Some((current, n, *end));
                    }
                }
                _ => {}
            },
            Token::Close { name, start } => match name.as_str() {
                "form" => current = None,
                "select" => {
                    if let Some(sel) = select.take() {
                        let value = sel.chosen.unwrap_or_default();
                        push(&mut forms, sel.form, sel.owner, sel.name, value);
                    }
                }
                "textarea" => {
                    if let Some((form, n, from)) = textarea.take() {
                        let text = decode_entities(&html[from..*start]);
                        push(&mut forms, form, None, n, text);
                    }
                }
                _ => {}
            },
        }
    }
    for (id, k, v) in orphans {
        if let Some(f) = forms
            .iter_mut()
            .find(|f| f.id.as_deref() == Some(id.as_str()))
        {
            f.fields.push((k, v));
        }
    }
    forms
}

/// A `<select>` being read: its form, name, `form=` owner, chosen value.
struct OpenSelect {
    form: Option<usize>,
    name: String,
    owner: Option<String>,
    chosen: Option<String>,
}

enum Token {
    /// `end`: byte offset just after the tag.
    Open {
        name: String,
        attrs: Vec<(String, Option<String>)>,
        end: usize,
    },
    /// `start`: byte offset of the `<`.
    Close { name: String, start: usize },
}

fn attr(attrs: &[(String, Option<String>)], name: &str) -> Option<String> {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone().unwrap_or_default())
}

/// Splits HTML into start and end tags (text, comments, doctype and the
/// contents of `<script>`/`<style>` skipped).
fn tokenize(html: &str) -> Vec<Token> {
    let b = html.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(off) = html[i..].find('<') {
        let start = i + off;
        i = start + 1;
        if html[start..].starts_with("<!--") {
            i = html[start..].find("-->").map_or(b.len(), |e| start + e + 3);
            continue;
        }
        if html[start..].starts_with("<!") || html[start..].starts_with("<?") {
            i = html[start..].find('>').map_or(b.len(), |e| start + e + 1);
            continue;
        }
        let closing = b.get(i) == Some(&b'/');
        if closing {
            i += 1;
        }
        let name_start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'-') {
            i += 1;
        }
        if i == name_start {
            continue; // a lone '<' in text
        }
        let name = html[name_start..i].to_ascii_lowercase();
        let mut attrs = Vec::new();
        // Attributes, up to '>'.
        loop {
            while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
                i += 1;
            }
            if i >= b.len() || b[i] == b'>' {
                i = (i + 1).min(b.len());
                break;
            }
            let an_start = i;
            while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'=' | b'>' | b'/')
            {
                i += 1;
            }
            let an = html[an_start..i].to_ascii_lowercase();
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            let mut value = None;
            if i < b.len() && b[i] == b'=' {
                i += 1;
                while i < b.len() && b[i].is_ascii_whitespace() {
                    i += 1;
                }
                if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                    let q = b[i] as char;
                    let vs = i + 1;
                    let ve = html[vs..].find(q).map_or(b.len(), |e| vs + e);
                    value = Some(decode_entities(&html[vs..ve]));
                    i = (ve + 1).min(b.len());
                } else {
                    let vs = i;
                    while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' {
                        i += 1;
                    }
                    value = Some(decode_entities(&html[vs..i]));
                }
            }
            if an.is_empty() {
                i += 1;
                continue;
            }
            attrs.push((an, value));
        }
        if closing {
            out.push(Token::Close { name, start });
        } else {
            let raw_text = name == "script" || name == "style";
            out.push(Token::Open {
                name: name.clone(),
                attrs,
                end: i,
            });
            if raw_text {
                let close = format!("</{name}");
                i = html[i..]
                    .to_ascii_lowercase()
                    .find(&close)
                    .map_or(b.len(), |e| i + e);
            }
        }
    }
    out
}

/// Decodes the character references that appear in attribute values.
fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        let Some(semi) = rest[..rest.len().min(12)].find(';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let ent = &rest[1..semi];
        let ch = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            _ if ent.starts_with("#x") || ent.starts_with("#X") => {
                u32::from_str_radix(&ent[2..], 16)
                    .ok()
                    .and_then(char::from_u32)
            }
            _ if ent.starts_with('#') => ent[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_forms() {
        let html = r#"<!DOCTYPE html><html><body>
<!-- <form action="/commented"> -->
<script>if (a < b) { document.write('<form action="/js">') }</script>
<form id="op.logoutForm" method="post" action="/session/end/confirm">
<input type="hidden" name="xsrf" value="a&amp;b&#x3D;c"/>
<input type=checkbox name=remember>
<input type="checkbox" name="agree" checked>
<select name="level"><option value="low">low</option><option value="substantial" selected>s</option></select>
<textarea name="note">x &lt; y</textarea>
<button type="submit">go</button>
</form>
<input type="hidden" name="logout" value="yes" form="op.logoutForm">
<FORM ACTION='search'><INPUT NAME=q VALUE=rust></FORM>
</body></html>"#;
        let base = Url::parse("http://127.0.0.1:9/session/end?x=1").unwrap();
        let forms = parse_forms(html, &base);
        assert_eq!(forms.len(), 2, "{forms:?}");
        let f = &forms[0];
        assert_eq!(f.action.as_str(), "http://127.0.0.1:9/session/end/confirm");
        assert_eq!(f.method, "POST");
        assert_eq!(
            f.fields,
            vec![
                ("xsrf".into(), "a&b=c".into()),
                ("agree".into(), "on".into()),
                ("level".into(), "substantial".into()),
                ("note".into(), "x < y".into()),
                ("logout".into(), "yes".into()),
            ]
        );
        assert_eq!(
            forms[1].action.as_str(),
            "http://127.0.0.1:9/session/search"
        );
        assert_eq!(forms[1].method, "GET");
        assert_eq!(forms[1].field("q"), Some("rust"));
    }
}
