//! The index against the linear reference: hand-picked cases for each rule,
//! and a property test over random route tables and requests.

use super::*;

/// The first matching route, one by one: what the index must answer.
fn linear(keys: &[RouteKey<'_>], listener: usize, host: &str, path: &str) -> Option<usize> {
    keys.iter().position(|k| matches(k, listener, host, path))
}

fn key<'a>(listeners: &'a [usize], host: Option<&'a str>, prefix: &'a str) -> RouteKey<'a> {
    RouteKey {
        listeners,
        host,
        path_prefix: prefix,
    }
}

#[test]
fn host_patterns() {
    assert!(host_matches(None, "x"));
    assert!(host_matches(Some("a.example"), "a.example"));
    assert!(!host_matches(Some("a.example"), "b.example"));
    assert!(host_matches(Some("*.example"), "a.example"));
    assert!(!host_matches(Some("*.example"), "a.b.example"));
    assert!(!host_matches(Some("*.example"), "example"));
    assert!(!host_matches(Some("*.example"), ".example"));
}

#[test]
fn prefixes_respect_segments() {
    assert!(prefix_matches("/", "/anything"));
    assert!(prefix_matches("/app", "/app"));
    assert!(prefix_matches("/app", "/app/x"));
    assert!(!prefix_matches("/app", "/apple"));
    assert!(prefix_matches("/app/", "/app/x"));
    assert!(!prefix_matches("/app/", "/app"));
}

#[test]
fn first_match_wins_across_buckets() {
    let keys = [
        key(&[], Some("a.example"), "/app"),
        key(&[], Some("*.example"), "/app/x"),
        key(&[1], None, "/app/x/y"),
        key(&[], None, "/"),
    ];
    let index = RouteIndex::build(keys);
    assert_eq!(index.len(), 4);
    // The exact host's shorter prefix comes first in the list, so it wins.
    assert_eq!(index.find(0, "a.example", "/app/x/y"), Some(0));
    assert_eq!(index.find(0, "b.example", "/app/x/y"), Some(1));
    // Listener 1 only: the any-host route beats the fallback there.
    assert_eq!(index.find(1, "c.other", "/app/x/y"), Some(2));
    assert_eq!(index.find(0, "c.other", "/app/x/y"), Some(3));
    assert_eq!(index.find(0, "a.example", "/apple"), Some(3));
    assert_eq!(index.find(0, "a.example", "no-slash"), None);
}

#[test]
fn listener_restriction_skips_to_the_next_route_with_the_same_prefix() {
    let keys = [
        key(&[2], None, "/a"),
        key(&[0, 1], None, "/a"),
        key(&[], None, "/a"),
    ];
    let index = RouteIndex::build(keys);
    assert_eq!(index.find(2, "h", "/a/b"), Some(0));
    assert_eq!(index.find(1, "h", "/a"), Some(1));
    assert_eq!(index.find(5, "h", "/a/"), Some(2));
    assert_eq!(index.find(5, "h", "/b"), None);
}

#[test]
fn a_prefix_matches_before_a_question_mark_as_the_reference_says() {
    let keys = [key(&[], None, "/a/b"), key(&[], None, "/a/b?c/")];
    let index = RouteIndex::build(keys);
    assert_eq!(index.find(0, "h", "/a/b?x"), Some(0));
    assert_eq!(index.find(0, "h", "/a/b?c/d"), Some(0));
    assert_eq!(index.find(0, "h", "/a/bb?x"), None);
}

#[test]
fn empty_index_finds_nothing() {
    let index = RouteIndex::build([]);
    assert!(index.is_empty());
    assert_eq!(index.find(0, "h", "/"), None);
}

/// xorshift64*: a small seeded generator, so a failing case can be
/// replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const SEGMENTS: &[&str] = &["a", "ab", "b", "", "a?b", "?", "x.y"];
const HOST_PATTERNS: &[&str] = &["a.x", "b.x", "x", "*.x", "*.y.x", "*.", "a."];
const HOSTS: &[&str] = &[
    "a.x", "b.x", "c.x", "x", "y.x", "a.y.x", ".x", "a.", "", "q",
];

/// A path (or prefix) of up to four segments, sometimes with a trailing
/// `/`, rarely without the leading one.
fn path(rng: &mut Rng) -> String {
    let mut p = String::new();
    for _ in 0..rng.below(5) {
        p.push('/');
        p.push_str(rng.pick(SEGMENTS));
    }
    match rng.below(10) {
        0..=2 => p.push('/'),
        3 => p = p.trim_start_matches('/').to_owned(),
        _ => {}
    }
    if p.is_empty() && rng.below(2) == 0 {
        p.push('/');
    }
    p
}

#[test]
fn property_index_agrees_with_the_linear_reference() {
    const LISTENERS: [&[usize]; 5] = [&[], &[], &[0], &[1], &[0, 2]];
    for seed in 1..=400u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let n = 1 + rng.below(40);
        let routes: Vec<(usize, Option<&str>, String)> = (0..n)
            .map(|_| {
                let host = (rng.below(3) != 0).then(|| rng.pick(HOST_PATTERNS));
                (rng.below(LISTENERS.len()), host, path(&mut rng))
            })
            .collect();
        let keys: Vec<RouteKey<'_>> = routes
            .iter()
            .map(|(l, h, p)| key(LISTENERS[*l], *h, p))
            .collect();
        let index = RouteIndex::build(keys.iter().copied());
        for _ in 0..200 {
            let listener = rng.below(3);
            let host = rng.pick(HOSTS);
            let mut p = path(&mut rng);
            if rng.below(4) == 0 {
                p.push_str(rng.pick(&["?q", "x", "?"]));
            }
            assert_eq!(
                index.find(listener, host, &p),
                linear(&keys, listener, host, &p),
                "seed {seed}: listener {listener}, host {host:?}, path {p:?}, routes {routes:?}"
            );
        }
    }
}
