//! `/readyz`: whether a load balancer should send this gateway traffic.
//!
//! Three answers, in plain text:
//!
//! * `503 not ready: REASON` while the gateway drains (SIGTERM), while the
//!   audit log cannot record, while the session store fails, or while
//!   `[policies]` has no active policy. Nothing this gateway would answer
//!   is useful then, so another instance should get the traffic.
//! * `200 ready (degraded)` followed by one line per route whose every
//!   identity provider is down (probed every few seconds, see
//!   [`crate::authn::provider::Provider::probe`]), naming the route and each
//!   provider with why. Such a route cannot log anyone in, but anonymous
//!   routes, client-certificate routes and existing sessions are still
//!   served. Providers are shared by every instance behind the balancer,
//!   so a 503 here would take them all out for an outage that none of them
//!   can fix, and turn "no new logins" into "nothing works". Balancers that
//!   want to pull an instance anyway (an instance-local network fault) can
//!   match the body, e.g. HAProxy `http-check expect !string degraded`.
//! * `200 ready` otherwise.
//!
//! Both 200 answers end with one line per certificate that expires soon
//! ([`crate::certs::readiness_detail`]).
//!
//! The answer is computed from plain data ([`decide`]), unit-tested below.

use std::sync::atomic::Ordering;

use http::StatusCode;

use crate::config;
use crate::identity::AuthMethod;
use crate::runtime::Shared;

/// A route that cannot log anyone in: every provider it names is down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stranded {
    /// The route's name.
    pub(crate) route: String,
    /// Its providers, each with why it is considered down.
    pub(crate) providers: Vec<(String, String)>,
}

/// What the gateway's parts report, gathered for [`decide`].
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// SIGTERM arrived.
    pub(crate) draining: bool,
    /// The audit log's health, if one is configured.
    pub(crate) audit: Option<Result<(), String>>,
    /// The session store's health, if `[identity]` is configured.
    pub(crate) sessions: Option<Result<(), String>>,
    /// The policy's readiness, if `[policies]` is configured.
    pub(crate) policy: Option<Result<(), String>>,
    /// Routes whose every provider is down.
    pub(crate) stranded: Vec<Stranded>,
    /// Lines added to a ready answer (certificates that expire soon).
    pub(crate) notes: Vec<String>,
}

/// The `/readyz` answer for the process right now.
pub(crate) fn answer(shared: &Shared) -> (StatusCode, String) {
    // Read first: a drain that began while the others are asked is not
    // reported as ready.
    let draining = shared.draining.load(Ordering::SeqCst);
    let stranded = match shared.auth.as_ref() {
        Some(auth) => {
            let state = shared.state.load();
            let routes = state
                .config
                .routes
                .iter()
                .map(|r| (r.name.as_str(), &r.auth));
            stranded_routes(routes, |name| auth.provider_down(name))
        }
        None => Vec::new(),
    };
    decide(&Report {
        draining,
        audit: shared.audit.as_ref().map(|a| a.health()),
        sessions: shared.auth.as_ref().map(|a| a.health()),
        policy: shared.policy.as_ref().map(|p| p.readiness()),
        stranded,
        notes: crate::certs::readiness_detail(shared),
    })
}

/// The status and body for `report`.
pub(crate) fn decide(report: &Report) -> (StatusCode, String) {
    let unavailable = |why: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
    };
    if report.draining {
        return unavailable("draining for shutdown".to_owned());
    }
    if let Some(Err(reason)) = &report.audit {
        return unavailable(format!("audit log cannot record: {reason}"));
    }
    if let Some(Err(reason)) = &report.sessions {
        return unavailable(format!("session store: {reason}"));
    }
    if let Some(Err(reason)) = &report.policy {
        return unavailable(reason.clone());
    }
    let mut body = if report.stranded.is_empty() {
        String::from("ready\n")
    } else {
        String::from("ready (degraded)\n")
    };
    for s in &report.stranded {
        let providers: Vec<String> = s
            .providers
            .iter()
            .map(|(name, why)| format!("`{name}` ({why})"))
            .collect();
        body.push_str(&format!(
            "degraded: route `{}`: no identity provider answers: {}; new logins on this route \
             are refused, existing sessions and other routes are served\n",
            s.route,
            providers.join(", ")
        ));
    }
    for note in &report.notes {
        body.push_str(note);
        body.push('\n');
    }
    (StatusCode::OK, body)
}

/// Routes that authenticate through providers (sessions or bearer tokens)
/// and whose every provider is down according to `down` (provider name →
/// why it is down).
pub(crate) fn stranded_routes<'a>(
    routes: impl Iterator<Item = (&'a str, &'a config::RouteAuth)>,
    down: impl Fn(&str) -> Option<String>,
) -> Vec<Stranded> {
    routes
        .filter(|(_, auth)| {
            auth.methods
                .iter()
                .any(|m| matches!(m, AuthMethod::Session | AuthMethod::Bearer))
        })
        .filter_map(|(name, auth)| {
            let providers = auth
                .providers
                .iter()
                .map(|p| down(p).map(|why| (p.clone(), why)))
                .collect::<Option<Vec<_>>>()?;
            (!providers.is_empty()).then(|| Stranded {
                route: name.to_owned(),
                providers,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stranded(route: &str, providers: &[(&str, &str)]) -> Stranded {
        Stranded {
            route: route.into(),
            providers: providers
                .iter()
                .map(|(p, w)| ((*p).into(), (*w).into()))
                .collect(),
        }
    }

    #[test]
    fn draining_wins_over_everything_else() {
        let (status, body) = decide(&Report {
            draining: true,
            audit: Some(Err("disk full".into())),
            stranded: vec![stranded("portal", &[("bund", "refused")])],
            ..Report::default()
        });
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "not ready: draining for shutdown\n");
    }

    #[test]
    fn a_failing_part_is_not_ready_and_named() {
        for (report, want) in [
            (
                Report {
                    audit: Some(Err("disk full".into())),
                    ..Report::default()
                },
                "not ready: audit log cannot record: disk full\n",
            ),
            (
                Report {
                    sessions: Some(Err("redis down".into())),
                    ..Report::default()
                },
                "not ready: session store: redis down\n",
            ),
            (
                Report {
                    policy: Some(Err("no active policy".into())),
                    ..Report::default()
                },
                "not ready: no active policy\n",
            ),
        ] {
            assert_eq!(
                decide(&report),
                (StatusCode::SERVICE_UNAVAILABLE, want.into())
            );
        }
    }

    #[test]
    fn stranded_routes_are_degraded_but_ready() {
        assert_eq!(
            decide(&Report::default()),
            (StatusCode::OK, "ready\n".into())
        );
        let (status, body) = decide(&Report {
            audit: Some(Ok(())),
            notes: vec!["certificate expiring: listeners[0]: in 3 days".into()],
            stranded: vec![stranded(
                "portal",
                &[
                    ("bund", "connection refused"),
                    ("land", "discovery answered 502"),
                ],
            )],
            ..Report::default()
        });
        assert_eq!(status, StatusCode::OK);
        assert!(body.starts_with("ready (degraded)\n"), "{body}");
        assert!(
            body.contains(
                "route `portal`: no identity provider answers: `bund` (connection refused), \
                 `land` (discovery answered 502)"
            ),
            "{body}"
        );
        assert!(
            body.ends_with("\ncertificate expiring: listeners[0]: in 3 days\n"),
            "{body}"
        );
    }

    fn route(methods: &[AuthMethod], providers: &[&str]) -> config::RouteAuth {
        config::RouteAuth {
            methods: methods.to_vec(),
            providers: providers.iter().map(|p| (*p).to_owned()).collect(),
            ..config::RouteAuth::default()
        }
    }

    #[test]
    fn a_route_is_stranded_only_when_every_provider_it_needs_is_down() {
        let routes = [
            ("anonymous", route(&[], &[])),
            ("certs", route(&[AuthMethod::ClientCert], &[])),
            ("one-down", route(&[AuthMethod::Session], &["bund", "land"])),
            ("all-down", route(&[AuthMethod::Session], &["bund"])),
            ("api", route(&[AuthMethod::Bearer], &["bund"])),
            ("up", route(&[AuthMethod::Session], &["land"])),
        ];
        let down = |p: &str| (p == "bund").then(|| "refused".to_owned());
        let names: Vec<String> = stranded_routes(routes.iter().map(|(n, a)| (*n, a)), down)
            .into_iter()
            .map(|s| s.route)
            .collect();
        assert_eq!(names, ["all-down", "api"]);
    }
}
