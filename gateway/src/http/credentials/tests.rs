//! Unit tests of [`super`]: each case is a way a client or an upstream
//! could try to get a credential past the gateway.

use super::*;

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn route(methods: &[AuthMethod], forward: bool) -> RouteAuth {
    RouteAuth {
        methods: methods.to_vec(),
        forward_authorization: forward,
        ..RouteAuth::default()
    }
}

fn cookies(h: &HeaderMap) -> Vec<&str> {
    h.get_all(header::COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

#[test]
fn two_authorization_headers_are_ambiguous_in_either_order() {
    let h = map(&[
        ("authorization", "Bearer good"),
        ("authorization", "Bearer forged"),
    ]);
    assert_eq!(check_unique(&h), Err(TWO_AUTHORIZATIONS));
    assert_eq!(authorization(&h), None, "authentication never picks one");
    let h = map(&[
        ("authorization", "Bearer forged"),
        ("authorization", "Bearer good"),
    ]);
    assert_eq!(check_unique(&h), Err(TWO_AUTHORIZATIONS));
    let h = map(&[("authorization", "Bearer good")]);
    assert_eq!(check_unique(&h), Ok(()));
    assert_eq!(authorization(&h).unwrap(), "Bearer good");
}

#[test]
fn a_gateway_cookie_twice_is_ambiguous_across_headers_and_case() {
    let s = "__Host-stadttor-session";
    for h in [
        map(&[("cookie", &format!("{s}=a; {s}=b"))]),
        map(&[
            ("cookie", &format!("{s}=a")),
            ("cookie", &format!("x=1; {s}=b")),
        ]),
        map(&[("cookie", &format!("{s}=a; __HOST-STADTTOR-SESSION=b"))]),
        map(&[("cookie", &format!(" {s} =a;{s}=b"))]),
    ] {
        assert_eq!(check_unique(&h), Err(TWO_GATEWAY_COOKIES), "{h:?}");
        assert_eq!(cookie(&h, s), None, "{h:?}");
    }
    // Other cookies may repeat (browsers send one per path); different
    // gateway cookies side by side are fine.
    let h = map(&[(
        "cookie",
        &format!("a=1; a=2; {s}=v; __Host-stadttor-login-abc=t"),
    )]);
    assert_eq!(check_unique(&h), Ok(()));
    assert_eq!(cookie(&h, s), Some("v"));
    assert_eq!(cookie(&h, "__Host-stadttor-login-abc"), Some("t"));
    // A name in another case is not the gateway's cookie.
    let h = map(&[("cookie", "__host-stadttor-session=v")]);
    assert_eq!(cookie(&h, s), None);
}

#[test]
fn gateway_cookies_are_cut_out_and_others_keep_their_order() {
    let mut h = map(&[
        ("cookie", "a=1; __Host-stadttor-session=sealed; b=2"),
        ("cookie", "__host-STADTTOR-login-x=t;c=3"),
        ("accept", "*/*"),
    ]);
    let w = withhold(&mut h, &RouteAuth::default());
    assert_eq!(w.cookies, 2);
    assert_eq!(
        cookies(&h),
        ["a=1; b=2; c=3"],
        "one header, RFC 9113 §8.2.3"
    );
    let mut h = map(&[("cookie", "__Host-stadttor-session=sealed")]);
    withhold(&mut h, &RouteAuth::default());
    assert!(!h.contains_key(header::COOKIE), "nothing left: no header");
    let mut h = map(&[("cookie", "a=1;  b=2")]);
    assert_eq!(withhold(&mut h, &RouteAuth::default()).cookies, 0);
    assert_eq!(cookies(&h), ["a=1;  b=2"], "untouched when nothing to cut");
}

#[test]
fn authorization_is_withheld_on_session_and_bearer_routes_unless_opted_in() {
    let with = |m: &[AuthMethod], fwd: bool| {
        let mut h = map(&[("authorization", "Bearer t")]);
        let w = withhold(&mut h, &route(m, fwd));
        assert_eq!(w.authorization, !h.contains_key(header::AUTHORIZATION));
        h.contains_key(header::AUTHORIZATION)
    };
    assert!(!with(&[AuthMethod::Bearer], false));
    assert!(!with(&[AuthMethod::Session], false));
    assert!(!with(&[AuthMethod::ClientCert, AuthMethod::Bearer], false));
    assert!(with(&[AuthMethod::Bearer], true));
    // The gateway does not read it here: the service's own business.
    assert!(with(&[], false));
    assert!(with(&[AuthMethod::ClientCert], false));
}

#[test]
fn upstream_set_cookie_for_gateway_names_is_refused() {
    let mut h = map(&[
        ("set-cookie", "app=1; Path=/"),
        ("set-cookie", "__Host-stadttor-session=evil; Path=/; Secure"),
        ("set-cookie", "__HOST-Stadttor-Session=evil; Path=/; Secure"),
        ("set-cookie", " __Host-stadttor-login-x =; Max-Age=0"),
        ("set-cookie", "=__Host-stadttor-session=evil; Path=/"),
        ("set-cookie", "__Host-stadttor-officer"),
        ("set-cookie", "other=__Host-stadttor-session; Path=/"),
        ("content-type", "text/html"),
    ]);
    assert_eq!(refuse_set_cookies(&mut h), 5);
    let left: Vec<&str> = h
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        left,
        ["app=1; Path=/", "other=__Host-stadttor-session; Path=/"]
    );
    assert!(h.contains_key(header::CONTENT_TYPE));
    let mut h = map(&[("set-cookie", "a=1")]);
    assert_eq!(refuse_set_cookies(&mut h), 0);
    assert_eq!(h.len(), 1);
}

#[test]
fn request_host_is_what_the_cookie_is_bound_to() {
    let h = map(&[("host", "Portal.Example.:8443")]);
    assert_eq!(request_host(&Uri::from_static("/x"), &h), "portal.example");
    let uri = Uri::from_static("https://B.example/x");
    assert_eq!(request_host(&uri, &HeaderMap::new()), "b.example");
    assert_eq!(request_host(&Uri::from_static("/"), &HeaderMap::new()), "");
}
