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

    // casbin's own keyMatch2..5, keyGet3 and regexMatch `unwrap()` the
    // regex they build from a policy field and keyMatch4 `panic!`s on a
    // repeated token: an officer's typo would take the gateway down at
    // decision time. These replacements keep casbin's semantics and
    // answer "no match" (deny) where casbin would panic. Registered over
    // casbin's names on every custom-model enforcer.

    /// `regexMatch(key1, key2)`: key1 matches the regular expression
    /// key2; an invalid expression matches nothing.
    pub(crate) fn regex_match(a: Dynamic, b: Dynamic) -> Dynamic {
        regex_is_match(&dynamic_to_str(&a), &dynamic_to_str(&b)).into()
    }

    /// casbin's token syntaxes, as the regular expressions casbin uses.
    struct Tokens {
        colon: regex::Regex,
        brace_greedy: regex::Regex,
        brace: regex::Regex,
    }

    #[allow(clippy::expect_used)] // constant, valid expressions
    static TOKENS: std::sync::LazyLock<Tokens> = std::sync::LazyLock::new(|| Tokens {
        colon: regex::Regex::new(r":[^/]*").expect("valid"),
        brace_greedy: regex::Regex::new(r"\{[^/]*\}").expect("valid"),
        brace: regex::Regex::new(r"\{[^/]+?\}").expect("valid"),
    });

    /// `keyMatch2`: `/*` is anything, `:name` one segment.
    pub(crate) fn key_match2(a: Dynamic, b: Dynamic) -> Dynamic {
        let pat = dynamic_to_str(&b).replace("/*", "/.*");
        let pat = TOKENS.colon.replace_all(&pat, "[^/]+");
        regex_is_match(&dynamic_to_str(&a), &format!("^{pat}$")).into()
    }

    /// `keyMatch3`: `/*` is anything, `{name}` one segment.
    pub(crate) fn key_match3(a: Dynamic, b: Dynamic) -> Dynamic {
        let pat = dynamic_to_str(&b).replace("/*", "/.*");
        let pat = TOKENS.brace_greedy.replace_all(&pat, "[^/]+");
        regex_is_match(&dynamic_to_str(&a), &format!("^{pat}$")).into()
    }

    /// `keyMatch4`: like keyMatch3, and a token repeated in the pattern
    /// must match the same text each time.
    pub(crate) fn key_match4(a: Dynamic, b: Dynamic) -> Dynamic {
        let (key, pat) = (dynamic_to_str(&a), dynamic_to_str(&b));
        let pat = pat.replace("/*", "/.*");
        let tokens: Vec<&str> = TOKENS
            .brace
            .find_iter(&pat)
            .map(|m| &m.as_str()[1..m.as_str().len() - 1])
            .collect();
        let re = TOKENS.brace.replace_all(&pat, "([^/]+)");
        let Ok(re) = regex::Regex::new(&format!("^{re}$")) else {
            return false.into();
        };
        let Some(caps) = re.captures(&key) else {
            return false.into();
        };
        // A pattern with its own groups cannot be told apart from the
        // tokens (casbin panics); no match instead.
        if caps.len() != tokens.len() + 1 {
            return false.into();
        }
        let mut seen: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
        for (token, m) in tokens.iter().zip(caps.iter().skip(1)) {
            let value = m.map_or("", |m| m.as_str());
            if *seen.entry(token).or_insert(value) != value {
                return false.into();
            }
        }
        true.into()
    }

    /// `keyMatch5`: keyMatch3 on the path without its query.
    pub(crate) fn key_match5(a: Dynamic, b: Dynamic) -> Dynamic {
        let key = dynamic_to_str(&a);
        let key = key.split_once('?').map_or(&*key, |(p, _)| p);
        let pat = dynamic_to_str(&b).replace("/*", "/.*");
        let pat = TOKENS.brace.replace_all(&pat, "[^/]+");
        regex_is_match(key, &format!("^{pat}$")).into()
    }

    /// `keyGet3(key, pattern, name)`: the text `{name}` matched, or "".
    pub(crate) fn key_get3(a: Dynamic, b: Dynamic, c: Dynamic) -> Dynamic {
        let (key, pat, var) = (dynamic_to_str(&a), dynamic_to_str(&b), dynamic_to_str(&c));
        let pat = pat.replace("/*", "/.*");
        let tokens: Vec<&str> = TOKENS
            .brace
            .find_iter(&pat)
            .map(|m| &m.as_str()[1..m.as_str().len() - 1])
            .collect();
        let re = TOKENS
            .brace
            .replace_all(&pat, "([^/]+?)")
            .replace('{', "\\{");
        let found = regex::Regex::new(&format!("^{re}$"))
            .ok()
            .and_then(|re| {
                let caps = re.captures(&key)?;
                let i = tokens.iter().position(|t| **t == *var)?;
                Some(caps.get(i + 1)?.as_str().to_owned())
            })
            .unwrap_or_default();
        Dynamic::from(found)
    }

    fn regex_is_match(key: &str, pattern: &str) -> bool {
        regex::Regex::new(pattern).is_ok_and(|re| re.is_match(key))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn m2(f: fn(Dynamic, Dynamic) -> Dynamic, a: &str, b: &str) -> bool {
            f(a.into(), b.into()).as_bool().unwrap()
        }

        #[test]
        fn same_answers_as_casbin_on_valid_patterns() {
            use casbin::function_map as c;
            let cases = [
                ("/foo/bar", "/foo/*"),
                ("/resource1", "/:resource"),
                ("/resource1", "/{resource}"),
                ("/parent/123/child/123", "/parent/{id}/child/{id}"),
                ("/parent/123/child/456", "/parent/{id}/child/{id}"),
                ("/parent/child1?status=1", "/parent/*"),
                ("/foo/bar?x=1", "/foo/bar"),
                ("/a/b/c", "/a/:x/c"),
                ("/a/b/c", "/a/{x}/d"),
                ("/", "/:"),
                ("abc", "a.c"),
            ];
            // Where casbin panics (e.g. `{` is not a regex for keyMatch2)
            // ours must say "no match".
            let same =
                |name: &str, ours: bool, theirs: fn(&str, &str) -> bool, k: &str, p: &str| {
                    let theirs = std::panic::catch_unwind(|| theirs(k, p)).unwrap_or(false);
                    assert_eq!(ours, theirs, "{name} {k} {p}");
                };
            let mut compared = 0;
            for (k, p) in cases {
                same("keyMatch2", m2(key_match2, k, p), c::key_match2, k, p);
                same("keyMatch3", m2(key_match3, k, p), c::key_match3, k, p);
                same("keyMatch4", m2(key_match4, k, p), c::key_match4, k, p);
                same("keyMatch5", m2(key_match5, k, p), c::key_match5, k, p);
                same("regexMatch", m2(regex_match, k, p), c::regex_match, k, p);
                compared += usize::from(m2(key_match4, k, p)) + usize::from(m2(key_match2, k, p));
            }
            assert!(
                compared >= 6,
                "the cases exercise matches, not only refusals"
            );
            let got = key_get3(
                "/proj_p1_admin/".into(),
                "/proj_{project}_admin/".into(),
                "project".into(),
            );
            assert_eq!(
                got.into_string().unwrap(),
                c::key_get3("/proj_p1_admin/", "/proj_{project}_admin/", "project")
            );
        }

        #[test]
        fn invalid_patterns_do_not_match_instead_of_panicking() {
            for p in ["(", "/a/[", "/{id}/(x)/{id}", "/a/{x}(/{y}"] {
                for f in [regex_match, key_match2, key_match3, key_match4, key_match5] {
                    assert!(!m2(f, "/a/b", p), "{p}");
                }
                let _ = key_get3("/a".into(), p.into(), "x".into());
            }
        }
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
