//! The matching functions of the default model, shared by the fast index
//! and the casbin reference engine so both decide alike by construction:
//! `pathMatch` (keyMatch2 semantics without regular expressions),
//! `methodMatch`, `levelAtLeast` and `attrMatch`.

use crate::request::Level;

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    /// Must equal this text.
    Lit(Box<str>),
    /// `:name`: any one non-empty segment.
    Param,
}

/// A compiled path pattern: `/a/:id/*`. `*` is allowed only as the whole
/// last segment and matches the rest of the path (possibly empty), so
/// `/a/*` matches `/a/` and `/a/b/c` but not `/a`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathPattern {
    segs: Vec<Seg>,
    tail: bool,
}

impl PathPattern {
    /// Parses a pattern; the error says what is wrong.
    pub(crate) fn parse(p: &str) -> Result<Self, String> {
        let Some(rest) = p.strip_prefix('/') else {
            return Err(format!("path pattern {p:?} must start with '/'"));
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let mut segs = Vec::with_capacity(parts.len());
        let mut tail = false;
        for (i, s) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            if *s == "*" {
                if !last {
                    return Err(format!(
                        "path pattern {p:?}: '*' is only allowed as the last segment"
                    ));
                }
                tail = true;
            } else if let Some(name) = s.strip_prefix(':') {
                if name.is_empty() || name.contains(['*', ':']) {
                    return Err(format!("path pattern {p:?}: bad parameter segment {s:?}"));
                }
                segs.push(Seg::Param);
            } else if s.contains(['*', ':']) {
                return Err(format!(
                    "path pattern {p:?}: segment {s:?} mixes text with '*' or ':'"
                ));
            } else {
                segs.push(Seg::Lit((*s).into()));
            }
        }
        Ok(Self { segs, tail })
    }

    /// Whether `path` matches.
    pub(crate) fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut it = rest.split('/');
        for seg in &self.segs {
            let Some(s) = it.next() else {
                return false;
            };
            match seg {
                Seg::Lit(l) => {
                    if **l != *s {
                        return false;
                    }
                }
                Seg::Param => {
                    if s.is_empty() {
                        return false;
                    }
                }
            }
        }
        if self.tail {
            it.next().is_some()
        } else {
            it.next().is_none()
        }
    }
}

/// `*` or a `|`-separated list of methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Methods {
    Any,
    List(Vec<Box<str>>),
}

impl Methods {
    pub(crate) fn parse(m: &str) -> Result<Self, String> {
        if m == "*" {
            return Ok(Self::Any);
        }
        let mut list = Vec::new();
        for x in m.split('|') {
            if x.is_empty() || !x.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(format!(
                    "method {x:?} in {m:?} is not an upper-case HTTP method (use * or GET|POST)"
                ));
            }
            list.push(x.into());
        }
        Ok(Self::List(list))
    }

    pub(crate) fn matches(&self, method: &str) -> bool {
        match self {
            Self::Any => true,
            Self::List(l) => l.iter().any(|m| **m == *method),
        }
    }
}

/// Minimum level: `*` (none needed) or a level.
pub(crate) fn parse_min_level(s: &str) -> Result<Option<Level>, String> {
    if s == "*" {
        Ok(None)
    } else {
        s.parse().map(Some).map_err(|e: String| format!("{e} or *"))
    }
}

/// Whether a request level satisfies a minimum.
pub(crate) fn level_ok(have: Option<Level>, min: Option<Level>) -> bool {
    match min {
        None => true,
        Some(m) => have.is_some_and(|h| h >= m),
    }
}

/// `*` (anything, also absent), `+` (any present value) or an exact value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attr {
    Any,
    Present,
    Exact(Box<str>),
}

impl Attr {
    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "*" => Self::Any,
            "+" => Self::Present,
            v => Self::Exact(v.into()),
        }
    }

    pub(crate) fn matches(&self, v: Option<&str>) -> bool {
        let v = v.filter(|s| !s.is_empty());
        match self {
            Self::Any => true,
            Self::Present => v.is_some(),
            Self::Exact(e) => v == Some(&**e),
        }
    }
}

/// The casbin custom functions, string in, bool out.
pub(crate) mod casbin_fns {
    use casbin::function_map::dynamic_to_str;
    use casbin::rhai::Dynamic;

    use super::{level_ok, parse_min_level, Attr, Methods, PathPattern};

    pub(crate) fn path_match(req: Dynamic, pat: Dynamic) -> Dynamic {
        let (r, p) = (dynamic_to_str(&req), dynamic_to_str(&pat));
        PathPattern::parse(&p).is_ok_and(|pp| pp.matches(&r)).into()
    }

    pub(crate) fn method_match(req: Dynamic, pat: Dynamic) -> Dynamic {
        let (r, p) = (dynamic_to_str(&req), dynamic_to_str(&pat));
        Methods::parse(&p).is_ok_and(|m| m.matches(&r)).into()
    }

    pub(crate) fn level_at_least(req: Dynamic, pat: Dynamic) -> Dynamic {
        let (r, p) = (dynamic_to_str(&req), dynamic_to_str(&pat));
        let have = r.parse().ok();
        parse_min_level(&p)
            .is_ok_and(|min| level_ok(have, min))
            .into()
    }

    pub(crate) fn attr_match(req: Dynamic, pat: Dynamic) -> Dynamic {
        let (r, p) = (dynamic_to_str(&req), dynamic_to_str(&pat));
        Attr::parse(&p).matches(Some(&r)).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_patterns() {
        let p = |s: &str| PathPattern::parse(s).unwrap();
        assert!(p("/a/*").matches("/a/"));
        assert!(p("/a/*").matches("/a/b/c"));
        assert!(!p("/a/*").matches("/a"));
        assert!(!p("/a/*").matches("/ab/c"));
        assert!(p("/*").matches("/"));
        assert!(p("/*").matches("/x/y"));
        assert!(p("/a/:id").matches("/a/7"));
        assert!(!p("/a/:id").matches("/a/"));
        assert!(!p("/a/:id").matches("/a/7/8"));
        assert!(p("/a/:id/*").matches("/a/7/x"));
        assert!(p("/a.b").matches("/a.b"));
        assert!(!p("/a.b").matches("/axb"));
        assert!(p("/").matches("/"));
        assert!(!p("/").matches("/a"));
        assert!(!p("/a").matches("a"));
        assert!(PathPattern::parse("a").is_err());
        assert!(PathPattern::parse("/a/*/b").is_err());
        assert!(PathPattern::parse("/a*").is_err());
        assert!(PathPattern::parse("/:").is_err());
    }

    #[test]
    fn methods_levels_attrs() {
        let m = Methods::parse("GET|POST").unwrap();
        assert!(m.matches("GET") && m.matches("POST") && !m.matches("PUT"));
        assert!(Methods::parse("*").unwrap().matches("DELETE"));
        assert!(Methods::parse("get").is_err());
        assert!(Methods::parse("GET|").is_err());
        assert!(level_ok(Some(Level::High), Some(Level::Substantial)));
        assert!(!level_ok(Some(Level::Low), Some(Level::Substantial)));
        assert!(!level_ok(None, Some(Level::Low)));
        assert!(level_ok(None, None));
        assert!(Attr::parse("*").matches(None));
        assert!(!Attr::parse("+").matches(None));
        assert!(!Attr::parse("+").matches(Some("")));
        assert!(Attr::parse("+").matches(Some("x")));
        assert!(Attr::parse("x").matches(Some("x")));
        assert!(!Attr::parse("x").matches(Some("y")));
    }
}
