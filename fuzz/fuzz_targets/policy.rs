//! The policy loader: `stadttor_policies::CompiledPolicy::compile` on a
//! `PolicySet` from fuzz bytes, and the tests table parser. The input is
//! split at lines `%%`: `policy %% tests` runs on the default model (the
//! precomputed index); `model %% policy %% tests` on casbin. A policy
//! that compiles runs its tests and decides every test request, and its
//! decision must match `explain`.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use stadttor_policies::set::parse_tests;
use stadttor_policies::{CompiledPolicy, PolicySet};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_tests(text);
    let parts: Vec<&str> = text.split("\n%%\n").collect();
    let default = PolicySet::embedded_default();
    let set = match parts.as_slice() {
        [policy] => PolicySet {
            policy: (*policy).to_owned(),
            ..default
        },
        [policy, tests] => PolicySet {
            policy: (*policy).to_owned(),
            tests: (*tests).to_owned(),
            ..default
        },
        [model, policy, tests, ..] => PolicySet {
            model: (*model).to_owned(),
            policy: (*policy).to_owned(),
            tests: (*tests).to_owned(),
        },
        [] => return,
    };
    let Ok(p) = CompiledPolicy::compile(&set, 1) else {
        return;
    };
    let _ = p.run_tests();
    let _ = p.officers();
    if let Ok(tests) = set.parse_tests() {
        for t in &tests {
            let r = t.request();
            let d = p.decide(&r);
            let e = p.explain(&r);
            assert_eq!(d.decision, e.record.decision, "decide and explain disagree");
        }
    }
});
