//! `[routes.paths]`: how a route treats request paths that were not in
//! canonical form (see [`crate::http::target`]), and the check that a route's
//! `path_prefix` is itself canonical.
//!
//! Routing always happens on the canonical path; these settings only say
//! what a route does with a request whose raw form differed: forward the
//! canonical path (default), redirect the client to it, refuse `//`, or
//! accept `;` path parameters.

use serde::Deserialize;

/// Raw shapes, exactly as in the file.
#[allow(missing_docs)]
pub(super) mod raw {
    use super::*;

    /// `[routes.paths]`.
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Paths {
        pub merge_slashes: Option<bool>,
        pub redirect_to_canonical: bool,
        pub parameters: bool,
    }
}

/// A route's path rules, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRules {
    /// `//` is merged into `/` (default); otherwise such a request is 400.
    pub merge_slashes: bool,
    /// A non-canonical `GET`/`HEAD` target gets a 308 to its canonical form
    /// instead of being forwarded as the canonical path.
    pub redirect_to_canonical: bool,
    /// `;` path parameters are accepted (decisions ignore them, the
    /// upstream receives them); otherwise such a request is 400.
    pub parameters: bool,
}

impl Default for PathRules {
    fn default() -> Self {
        Self {
            merge_slashes: true,
            redirect_to_canonical: false,
            parameters: false,
        }
    }
}

/// Validates `[routes.paths]` and the route's `path_prefix` (key `k`).
pub(super) fn validate(
    k: &str,
    prefix: &str,
    raw: Option<&raw::Paths>,
    issue: &mut dyn FnMut(String, String),
) -> PathRules {
    // Prefixes that are not paths at all have their own issue in `config`.
    let checked_elsewhere = !prefix.starts_with('/')
        || prefix.contains(|c: char| c == '?' || c == '#' || c.is_whitespace() || c.is_control());
    if !checked_elsewhere {
        match crate::http::target::canonical_path(prefix, true) {
            Ok(c) if !c.changed() && !c.parameters => {}
            Ok(c) => issue(
                format!("{k}.path_prefix"),
                format!(
                    "`{prefix}` is not a canonical path and would never match; write `{}`",
                    crate::http::target::decision_path(&c.path)
                ),
            ),
            Err(e) => issue(
                format!("{k}.path_prefix"),
                format!("`{prefix}` would never match: {e}"),
            ),
        }
    }
    let Some(raw) = raw else {
        return PathRules::default();
    };
    PathRules {
        merge_slashes: raw.merge_slashes.unwrap_or(true),
        redirect_to_canonical: raw.redirect_to_canonical,
        parameters: raw.parameters,
    }
}
