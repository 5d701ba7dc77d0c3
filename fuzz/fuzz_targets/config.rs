//! `stadttor_gateway::config::parse`: the TOML configuration, its types and
//! every validation rule, on arbitrary text. Must return `Ok` or a
//! `ConfigError`, never panic; a refused file must name at least one issue.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("/etc/stadttor/stadttor.toml");
    if let Err(e) = stadttor_gateway::config::parse(path, text) {
        assert!(
            !e.issues.is_empty(),
            "a refused configuration names no issue"
        );
        let _ = e.to_string();
    }
});
