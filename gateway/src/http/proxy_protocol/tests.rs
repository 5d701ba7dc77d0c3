//! The PROXY header parser on hand-written headers of both versions:
//! what HAProxy sends, LOCAL, UNKNOWN, TLVs, and every way to be cut off,
//! too long or malformed; and the reader with [`Prefixed`] on a byte
//! stream that carries the TLS bytes right behind the header.

use super::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A v2 header: command, family byte, body.
fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(0x20 | cmd);
    h.push(fam);
    h.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    h.extend_from_slice(body);
    h
}

fn inet4_body() -> Vec<u8> {
    let mut b = vec![192, 0, 2, 7, 10, 0, 0, 1];
    b.extend_from_slice(&51234u16.to_be_bytes());
    b.extend_from_slice(&443u16.to_be_bytes());
    b
}

/// Every strict prefix of a valid header is `Incomplete`, never an error
/// or a header: the reader relies on this to wait for more bytes.
fn prefixes_incomplete(version: Version, h: &[u8]) {
    for i in 0..h.len() {
        assert_eq!(
            parse(version, &h[..i]),
            Err(ParseError::Incomplete),
            "prefix of {i} bytes"
        );
    }
}

#[test]
fn v1_tcp4_and_tcp6() {
    let h = b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443\r\nTLS";
    assert_eq!(
        parse(Version::V1, h),
        Ok((
            Header::Proxy {
                source: sa("192.0.2.7:51234"),
                destination: sa("10.0.0.1:443")
            },
            h.len() - 3
        ))
    );
    prefixes_incomplete(Version::V1, &h[..h.len() - 3]);
    let h = b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 0\r\n";
    assert_eq!(
        parse(Version::V1, h),
        Ok((
            Header::Proxy {
                source: sa("[2001:db8::7]:65535"),
                destination: sa("[2001:db8::1]:0")
            },
            h.len()
        ))
    );
}

#[test]
fn v1_unknown_uses_the_socket_peer() {
    for h in [
        &b"PROXY UNKNOWN\r\n"[..],
        b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
    ] {
        assert_eq!(parse(Version::V1, h), Ok((Header::Unknown, h.len())));
    }
}

#[test]
fn v1_malformed() {
    for h in [
        &b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443\n"[..], // LF without CR
        b"PROXY TCP4 192.0.2.7  10.0.0.1 51234 443\r\n",   // two spaces
        b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n",        // family mismatch
        b"PROXY TCP6 192.0.2.7 10.0.0.1 1 2\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 051234 443\r\n", // leading zero
        b"PROXY TCP4 192.0.2.7 10.0.0.1 +1 443\r\n",     // sign
        b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 443\r\n",  // range
        b"PROXY TCP4 192.0.2.7 10.0.0.1 1\r\n",          // too few
        b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2 3\r\n",      // too many
        b"PROXY UDP4 192.0.2.7 10.0.0.1 1 2\r\n",
        b"PROXY \r\n",
        b"proxy TCP4 192.0.2.7 10.0.0.1 1 2\r\n",
        b"PROXY TCP4 192.0.2.\xff 10.0.0.1 1 2\r\n",
        b"\x16\x03\x01\x02\x00\x01", // a TLS ClientHello: refused at once
        b"GET / HTTP/1.1\r\n",
    ] {
        assert!(
            matches!(parse(Version::V1, h), Err(ParseError::Invalid(_))),
            "{:?}",
            String::from_utf8_lossy(h)
        );
    }
}

#[test]
fn v1_too_long() {
    let mut h = b"PROXY UNKNOWN ".to_vec();
    h.resize(V1_MAX, b'x');
    assert_eq!(parse(Version::V1, &h), Err(ParseError::TooLong));
    // The longest allowed header still parses.
    let mut ok = b"PROXY UNKNOWN ".to_vec();
    ok.resize(V1_MAX - 2, b'x');
    ok.extend_from_slice(b"\r\n");
    assert_eq!(parse(Version::V1, &ok), Ok((Header::Unknown, V1_MAX)));
}

#[test]
fn v2_ipv4_with_tlvs_skipped() {
    let mut body = inet4_body();
    // PP2_TYPE_UNIQUE_ID, then a NOOP padding TLV of length 0.
    body.extend_from_slice(&[0x05, 0x00, 0x03, b'a', b'b', b'c', 0x04, 0x00, 0x00]);
    let mut h = v2(1, 0x11, &body);
    let n = h.len();
    prefixes_incomplete(Version::V2, &h);
    h.extend_from_slice(b"\x16\x03\x01");
    assert_eq!(
        parse(Version::V2, &h),
        Ok((
            Header::Proxy {
                source: sa("192.0.2.7:51234"),
                destination: sa("10.0.0.1:443")
            },
            n
        ))
    );
}

#[test]
fn v2_ipv6() {
    let mut body = Vec::new();
    body.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
    body.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    body.extend_from_slice(&[0x01, 0xbb, 0x00, 0x50]);
    let h = v2(1, 0x21, &body);
    assert_eq!(
        parse(Version::V2, &h),
        Ok((
            Header::Proxy {
                source: sa("[2001:db8::7]:443"),
                destination: sa("[2001:db8::1]:80")
            },
            h.len()
        ))
    );
}

#[test]
fn v2_local_and_unspec_use_the_socket_peer() {
    // HAProxy's health checks: LOCAL, family UNSPEC, no body.
    let h = v2(0, 0x00, &[]);
    assert_eq!(parse(Version::V2, &h), Ok((Header::Local, 16)));
    // LOCAL with an address block: ignored, but skipped.
    let h = v2(0, 0x11, &inet4_body());
    assert_eq!(parse(Version::V2, &h), Ok((Header::Local, 28)));
    // PROXY over UNSPEC and UNIX: nothing usable.
    assert_eq!(
        parse(Version::V2, &v2(1, 0x00, &[])),
        Ok((Header::Unknown, 16))
    );
    let unix = v2(1, 0x31, &[0u8; 216]);
    assert_eq!(parse(Version::V2, &unix), Ok((Header::Unknown, 232)));
}

#[test]
fn v2_malformed() {
    let body = inet4_body();
    let mut wrong_version = v2(1, 0x11, &body);
    wrong_version[12] = 0x11;
    let mut bad_tlv = body.clone();
    bad_tlv.extend_from_slice(&[0x05, 0x00, 0x09, b'a']); // says 9, has 1
    let mut short_tlv = body.clone();
    short_tlv.extend_from_slice(&[0x05, 0x00]);
    for (what, h) in [
        ("version 1", wrong_version),
        ("command 2", v2(2, 0x11, &body)),
        ("DGRAM", v2(1, 0x12, &body)),
        ("family 4", v2(1, 0x41, &body)),
        ("INET body too short", v2(1, 0x11, &body[..11])),
        ("INET6 body of INET size", v2(1, 0x21, &body)),
        ("TLV overruns", v2(1, 0x11, &bad_tlv)),
        ("TLV header cut", v2(1, 0x11, &short_tlv)),
        (
            "v1 on a v2 listener",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
        ),
        (
            "TLS",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
        ),
        ("signature typo", {
            let mut h = v2(1, 0x11, &body);
            h[11] = b'X';
            h
        }),
    ] {
        assert!(
            matches!(parse(Version::V2, &h), Err(ParseError::Invalid(_))),
            "{what}: {:?}",
            parse(Version::V2, &h)
        );
    }
}

#[test]
fn v2_oversized_is_refused_from_the_preamble() {
    // The length alone decides: nothing after the 16 bytes is awaited.
    let mut h = V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x21, 0x11]);
    h.extend_from_slice(&u16::try_from(V2_MAX_BODY + 1).unwrap().to_be_bytes());
    assert_eq!(parse(Version::V2, &h), Err(ParseError::TooLong));
    h[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    assert_eq!(parse(Version::V2, &h), Err(ParseError::TooLong));
    // The largest accepted body parses.
    let mut body = inet4_body();
    body.extend_from_slice(&[0x04]);
    let pad = V2_MAX_BODY - body.len() - 2;
    body.extend_from_slice(&u16::try_from(pad).unwrap().to_be_bytes());
    body.resize(V2_MAX_BODY, 0);
    let h = v2(1, 0x11, &body);
    assert!(
        matches!(parse(Version::V2, &h), Ok((Header::Proxy { .. }, n)) if n == 16 + V2_MAX_BODY)
    );
}

#[tokio::test]
async fn reader_hands_on_the_bytes_behind_the_header() {
    let mut wire = v2(1, 0x11, &inet4_body());
    wire.extend_from_slice(b"client hello bytes");
    let (mut client, mut server) = tokio::io::duplex(64);
    let writer = tokio::spawn(async move {
        // In small pieces, as a slow balancer might.
        for c in wire.chunks(5) {
            tokio::io::AsyncWriteExt::write_all(&mut client, c)
                .await
                .unwrap();
        }
        client
    });
    let (h, rest) = read_header(&mut server, Version::V2, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(matches!(h, Header::Proxy { source, .. } if source == sa("192.0.2.7:51234")));
    let _client = writer.await.unwrap();
    let mut stream = Prefixed::new(rest, server);
    let mut got = vec![0u8; 18];
    stream.read_exact(&mut got).await.unwrap();
    assert_eq!(got, b"client hello bytes");
}

#[tokio::test]
async fn reader_times_out_and_sees_a_close() {
    let (client, mut server) = tokio::io::duplex(64);
    let e = read_header(&mut server, Version::V1, Duration::from_millis(50)).await;
    assert!(matches!(e, Err(ReadError::TimedOut(_))), "{e:?}");
    drop(client);
    let e = read_header(&mut server, Version::V1, Duration::from_secs(5)).await;
    assert!(matches!(e, Err(ReadError::Closed)), "{e:?}");
}

/// Every single-byte change of valid headers of both versions (the fuzz
/// target's invariants, exhaustively on a small neighbourhood): no panic,
/// and a header that still parses is self-delimiting.
#[test]
fn every_single_byte_change_is_handled() {
    let mut inet6 = vec![0u8; 32];
    inet6.extend_from_slice(&[0, 1, 0, 2, 0x05, 0x00, 0x01, b'x']);
    let cases = [
        (
            Version::V1,
            b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443\r\n".to_vec(),
        ),
        (Version::V1, b"PROXY TCP6 2001:db8::7 ::1 1 2\r\n".to_vec()),
        (Version::V2, v2(1, 0x11, &inet4_body())),
        (Version::V2, v2(1, 0x21, &inet6)),
        (Version::V2, v2(0, 0x00, &[])),
    ];
    for (version, valid) in cases {
        for i in 0..valid.len() {
            for b in 0..=255u8 {
                let mut h = valid.clone();
                h[i] = b;
                if let Ok((header, used)) = parse(version, &h) {
                    assert!(used <= h.len());
                    assert_eq!(parse(version, &h[..used]), Ok((header, used)));
                    assert_eq!(parse(version, &h[..used - 1]), Err(ParseError::Incomplete));
                }
            }
        }
    }
}
