//! The route index: which route a request on a listener, for a host and a
//! path, goes to, in time that does not grow with the number of routes.
//!
//! Routes are ordered (the state sorts them most specific first) and the
//! first route that matches wins. A route matches when
//!
//! - it applies to the request's listener (no listeners: every listener);
//! - its host pattern matches: none matches any host, `*.suffix` matches
//!   exactly one non-empty label in front of `suffix`, anything else is
//!   compared as it is (hosts are lowercase, without port);
//! - its path prefix matches ([`prefix_matches`]): `/app` matches `/app`,
//!   `/app/` and `/app/x`, not `/apple`; `/app/` matches any path that
//!   starts with it.
//!
//! [`RouteIndex`] keeps exactly these semantics: the routes are bucketed
//! by host (an exact-host map, a wildcard-suffix map and the any-host
//! bucket) and, in each bucket, put in a trie of path segments. A lookup
//! walks at most three tries along the request path's segments and takes
//! the lowest route index among the routes it meets that apply to the
//! listener. [`matches`] is the one-route rule, the linear reference the
//! tests compare the index against.
//!
//! What it does not do: know about upstreams, authentication or anything
//! else of a route; it returns an index into the caller's route list.

use std::collections::HashMap;

/// What decides whether one route matches.
#[derive(Debug, Clone, Copy)]
pub struct RouteKey<'a> {
    /// Listener indexes it applies to (empty: all).
    pub listeners: &'a [usize],
    /// Host pattern, or any host.
    pub host: Option<&'a str>,
    /// Path prefix.
    pub path_prefix: &'a str,
}

/// Does route `key` match a request on `listener` for `host` and `path`?
/// The linear reference for [`RouteIndex::find`].
pub fn matches(key: &RouteKey<'_>, listener: usize, host: &str, path: &str) -> bool {
    (key.listeners.is_empty() || key.listeners.contains(&listener))
        && host_matches(key.host, host)
        && prefix_matches(key.path_prefix, path)
}

/// Does host pattern `pattern` (none: any host) match `host`?
pub fn host_matches(pattern: Option<&str>, host: &str) -> bool {
    match pattern {
        None => true,
        Some(p) => match p.strip_prefix("*.") {
            Some(suffix) => wildcard_suffix(host) == Some(suffix),
            None => p == host,
        },
    }
}

/// What a `*.` pattern must equal for `host` to match it: `host` without
/// its first, non-empty label.
fn wildcard_suffix(host: &str) -> Option<&str> {
    host.split_once('.')
        .filter(|(label, _)| !label.is_empty())
        .map(|(_, rest)| rest)
}

/// `/app` matches `/app`, `/app/` and `/app/x`, not `/apple`; `/app/`
/// matches what starts with it.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
}

/// Routes by listener, host and path, answering with the first match.
#[derive(Debug, Default)]
pub struct RouteIndex {
    /// Listener restrictions, by route index (empty: all).
    listeners: Vec<Box<[usize]>>,
    exact: HashMap<Box<str>, Trie>,
    wildcard: HashMap<Box<str>, Trie>,
    any: Trie,
    /// Routes whose prefix does not start with `/` (configuration refuses
    /// them; kept so the index means the same as [`matches`] for any
    /// input), checked one by one.
    odd: Vec<u32>,
    odd_keys: Vec<(Option<Box<str>>, Box<str>)>,
}

/// A trie of path segments. Node 0 is the root, the empty path.
#[derive(Debug)]
struct Trie {
    nodes: Vec<Node>,
}

#[derive(Debug, Default)]
struct Node {
    /// Children by segment, sorted for binary search.
    children: Vec<(Box<str>, u32)>,
    /// Routes whose prefix is this node's path (no trailing `/`).
    exact: Vec<u32>,
    /// Routes whose prefix is this node's path followed by `/`.
    dir: Vec<u32>,
}

impl Default for Trie {
    fn default() -> Self {
        Self {
            nodes: vec![Node::default()],
        }
    }
}

impl Trie {
    /// Adds route `id` for `prefix`, which starts with `/`.
    fn insert(&mut self, prefix: &str, id: u32) {
        let (body, dir) = match prefix.strip_suffix('/') {
            Some(body) => (body, true),
            None => (prefix, false),
        };
        let mut node = 0usize;
        // `body` is empty or starts with `/`; its segments follow each `/`.
        for seg in body.split('/').skip(1) {
            node = self.child_or_insert(node, seg);
        }
        let n = &mut self.nodes[node];
        if dir {
            n.dir.push(id);
        } else {
            n.exact.push(id);
        }
    }

    fn child(&self, node: usize, seg: &str) -> Option<usize> {
        let c = &self.nodes[node].children;
        c.binary_search_by(|(s, _)| s.as_ref().cmp(seg))
            .ok()
            .map(|i| c[i].1 as usize)
    }

    fn child_or_insert(&mut self, node: usize, seg: &str) -> usize {
        let next = self.nodes.len();
        let c = &mut self.nodes[node].children;
        match c.binary_search_by(|(s, _)| s.as_ref().cmp(seg)) {
            Ok(i) => c[i].1 as usize,
            Err(i) => {
                c.insert(i, (seg.into(), next as u32));
                self.nodes.push(Node::default());
                next
            }
        }
    }

    /// Calls `found` with the routes of every prefix in this trie that
    /// matches `path`, by the rules of [`prefix_matches`].
    fn walk(&self, path: &str, found: &mut dyn FnMut(&[u32])) {
        let mut node = 0usize;
        let mut pos = 0usize;
        loop {
            let n = &self.nodes[node];
            let rest = &path[pos..];
            // This node's path is `path[..pos]`.
            if rest.is_empty() || rest.starts_with('/') || rest.starts_with('?') {
                found(&n.exact);
            }
            let Some(after) = rest.strip_prefix('/') else {
                return;
            };
            found(&n.dir);
            let seg = after.split('/').next().unwrap_or("");
            // `/a/b` matches `/a/b?x` too: a prefix ending before a `?`.
            for (q, _) in seg.match_indices('?') {
                if let Some(c) = self.child(node, &seg[..q]) {
                    found(&self.nodes[c].exact);
                }
            }
            match self.child(node, seg) {
                Some(c) => {
                    node = c;
                    pos += 1 + seg.len();
                }
                None => return,
            }
        }
    }

    fn shrink(&mut self) {
        self.nodes.shrink_to_fit();
        for n in &mut self.nodes {
            n.children.shrink_to_fit();
            n.exact.shrink_to_fit();
            n.dir.shrink_to_fit();
        }
    }
}

impl RouteIndex {
    /// Indexes `routes`; a route's index is its position.
    pub fn build<'a>(routes: impl IntoIterator<Item = RouteKey<'a>>) -> Self {
        let mut index = Self::default();
        for (id, r) in routes.into_iter().enumerate() {
            let id = u32::try_from(id).unwrap_or(u32::MAX);
            index.listeners.push(r.listeners.into());
            if !r.path_prefix.starts_with('/') {
                index.odd.push(id);
                index
                    .odd_keys
                    .push((r.host.map(Into::into), r.path_prefix.into()));
                continue;
            }
            let trie = match r.host {
                None => &mut index.any,
                Some(h) => match h.strip_prefix("*.") {
                    Some(suffix) => index.wildcard.entry(suffix.into()).or_default(),
                    None => index.exact.entry(h.into()).or_default(),
                },
            };
            trie.insert(r.path_prefix, id);
        }
        index.any.shrink();
        for t in index.exact.values_mut().chain(index.wildcard.values_mut()) {
            t.shrink();
        }
        index
    }

    /// Number of routes indexed.
    pub fn len(&self) -> usize {
        self.listeners.len()
    }

    /// No routes indexed.
    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }

    /// The index of the first route that matches a request on `listener`
    /// for `host` (lowercase, no port) and `path`.
    pub fn find(&self, listener: usize, host: &str, path: &str) -> Option<usize> {
        let mut best = u32::MAX;
        let mut found = |ids: &[u32]| {
            // `ids` ascend: the first that applies to the listener is the
            // best of them.
            for &id in ids {
                if id >= best {
                    return;
                }
                if self.applies(id, listener) {
                    best = id;
                    return;
                }
            }
        };
        if let Some(t) = self.exact.get(host) {
            t.walk(path, &mut found);
        }
        if let Some(t) = wildcard_suffix(host).and_then(|s| self.wildcard.get(s)) {
            t.walk(path, &mut found);
        }
        self.any.walk(path, &mut found);
        for (&id, (h, p)) in self.odd.iter().zip(&self.odd_keys) {
            if id < best
                && self.applies(id, listener)
                && host_matches(h.as_deref(), host)
                && prefix_matches(p, path)
            {
                best = id;
            }
        }
        (best != u32::MAX).then_some(best as usize)
    }

    fn applies(&self, id: u32, listener: usize) -> bool {
        self.listeners
            .get(id as usize)
            .is_some_and(|l| l.is_empty() || l.contains(&listener))
    }
}

#[cfg(test)]
mod tests;
