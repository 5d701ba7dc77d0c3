//! The PROXY protocol parser (`gateway/src/http/proxy_protocol.rs`) on
//! arbitrary bytes, as both versions. It must never panic; a header it
//! accepts must be self-delimiting (the same header from exactly its own
//! bytes, and `Incomplete` from every shorter prefix, which the reader
//! relies on to wait for more), and an accepted v1 header must round-trip
//! through its text form. `trusted_proxies` entries are parsed on the side.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use stadttor_gateway::config::TrustedProxies;
use stadttor_gateway::http::proxy_protocol::{parse, Header, ParseError, Version};

fuzz_target!(|data: &[u8]| {
    for version in [Version::V1, Version::V2] {
        match parse(version, data) {
            Ok((header, used)) => {
                assert!(used <= data.len());
                assert_eq!(parse(version, &data[..used]), Ok((header, used)));
                for cut in [0, used / 2, used.saturating_sub(1)] {
                    if cut < used {
                        assert_eq!(parse(version, &data[..cut]), Err(ParseError::Incomplete));
                    }
                }
                if let (
                    Version::V1,
                    Header::Proxy {
                        source,
                        destination,
                    },
                ) = (version, header)
                {
                    let fam = if source.is_ipv4() { "TCP4" } else { "TCP6" };
                    let text = format!(
                        "PROXY {fam} {} {} {} {}\r\n",
                        source.ip(),
                        destination.ip(),
                        source.port(),
                        destination.port()
                    );
                    let again = parse(Version::V1, text.as_bytes());
                    assert_eq!(again, Ok((header, text.len())));
                }
            }
            Err(ParseError::Incomplete) => {
                // More bytes could still make a header: only short inputs.
                assert!(data.len() < 16 + stadttor_gateway::http::proxy_protocol::V2_MAX_BODY);
            }
            Err(_) => {}
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(net) = TrustedProxies::parse_entry(s) {
            assert!(net.prefix_len() > 0);
            assert_eq!(TrustedProxies::parse_entry(&net.to_string()), Ok(net));
        }
    }
});
