//! The canonical path (`policies/src/path.rs`) on arbitrary strings. It
//! must never panic, and what it accepts must be a fixed point: canonical
//! again unchanged, starting with `/`, without dot segments, without an
//! encoded `/` or `\`, without `//` when slashes are merged, and in the
//! form the policy engine decides on once its parameters are removed.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use stadttor_policies::path::{canonical_path, decision_path, is_decision_form};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    for merge in [true, false] {
        let Ok(c) = canonical_path(raw, merge) else {
            continue;
        };
        let p = c.path.as_ref();
        assert!(p.starts_with('/'), "{raw:?} -> {p:?}");
        let again = canonical_path(p, merge).expect("a canonical path is accepted");
        assert_eq!(again.path, p, "not idempotent: {raw:?}");
        assert!(!again.changed(), "{raw:?}");
        for seg in p.split('/') {
            let name = seg.split(';').next().unwrap_or("");
            assert!(
                name != "." && name != "..",
                "dot segment in {p:?} from {raw:?}"
            );
        }
        let upper = p.to_ascii_uppercase();
        assert!(!upper.contains("%2F") && !upper.contains("%5C"), "{p:?}");
        assert!(!p.contains('\\'), "{p:?}");
        if merge {
            assert!(!p.contains("//"), "{p:?} from {raw:?}");
            assert!(is_decision_form(&decision_path(p)), "{p:?}");
        }
    }
});
