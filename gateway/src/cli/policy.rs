//! `stadttor policy …`: the security officers' command line, a thin layer
//! over [`stadttor_policies::Workflow`] and the policy engine.
//!
//! | command | what it does |
//! |---|---|
//! | `init --officers A,B [--officer DN]… [--from DIR]` | first version of an empty store (the embedded default, or DIR, plus the officers), recorded as bootstrap |
//! | `test [DIR]` | runs the tests table of DIR (or of the active version); every failing row is printed |
//! | `explain --subject … --domain … --path … --method …` | which rule allowed or denied a request |
//! | `diff A B` | what changed between two versions, proposals or directories |
//! | `history` | every version (author, approver, emergency) and open proposals |
//! | `pending` | open proposals with their diff and test results |
//! | `export [VERSION] --to DIR` | writes a version's files (to edit a change) |
//! | `propose --author A --from DIR [--emergency]` | a proposal on the active version; its tests must pass |
//! | `approve ID --officer B` | a second officer activates it (B ≠ A) |
//! | `reject ID --officer B --reason R` | turns a proposal down |
//! | `rollback VERSION --author A` | proposes an earlier version's content |
//!
//! The store is `--store file:DIR|postgres://…` or the `[policies]` table of
//! `--config FILE`. The command line acts as the officer it is told
//! (`--author`, `--officer`): whoever may write to the store may use it,
//! so protect the store (file permissions, database roles); the admin web
//! page and API instead take the officer from a verified login. Running
//! gateways pick every activation up through their watchers and record it
//! in their audit logs.
//!
//! Exit codes: 0 success; 2 refused (invalid policy, failing tests,
//! four-eyes rules, stale proposal); 64 unusable command line; 78 unusable
//! configuration (`--config`);
//! 1 anything else (store unreachable, I/O).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};
use stadttor_gateway::config::{self, PolicyStorage, Problem};
use stadttor_policies::{
    AccessRequest, CompiledPolicy, PolicyDiff, PolicyError, PolicySet, PolicyStore, ProposalStatus,
    StoreError, Workflow, WorkflowError,
};

use super::Exit;

/// Where the store is.
#[derive(Debug, Clone, Args)]
pub(crate) struct StoreArgs {
    /// The policy store: `file:DIR` or `postgres://…`.
    #[arg(long, global = true)]
    store: Option<String>,
    /// PostgreSQL schema of the store (default `stadttor_policies`).
    #[arg(long, global = true)]
    schema: Option<String>,
    /// CA file for a `postgres://…?sslmode=verify-full` store.
    #[arg(long, global = true)]
    store_ca_file: Option<PathBuf>,
    /// Read the store from the `[policies]` table of this configuration.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
}

/// `stadttor policy …`.
#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Install the first policy of an empty store: the embedded default
    /// (or `--from DIR`) with the named officers. Recorded as bootstrap.
    Init {
        /// At least two officers (names as the policy knows them, e.g. the
        /// e-mail claim), comma separated.
        #[arg(long, value_delimiter = ',', required_unless_present = "officer")]
        officers: Vec<String>,
        /// One officer whose name contains a comma (a certificate DN);
        /// repeatable, adds to `--officers`.
        #[arg(long)]
        officer: Vec<String>,
        /// A directory with model.conf, policy.csv, tests.csv instead of the default.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Who installs it (recorded).
        #[arg(long, default_value = "installer")]
        author: String,
    },
    /// Run a policy's tests table (a directory, or the store's active version).
    Test {
        /// Directory with model.conf (optional), policy.csv and tests.csv.
        dir: Option<PathBuf>,
    },
    /// Explain the decision for one request.
    Explain(ExplainArgs),
    /// What changed between A and B (each a version number, a proposal id
    /// or a directory).
    Diff {
        /// Old side.
        a: String,
        /// New side.
        b: String,
    },
    /// Every version with author, approver and flags, and open proposals.
    History,
    /// Open proposals with their diff and test results.
    Pending,
    /// Write a version's files into a directory (default: the active one).
    Export {
        /// Version number.
        version: Option<u64>,
        /// Target directory (created).
        #[arg(long)]
        to: PathBuf,
    },
    /// Propose the policy in a directory as the next version.
    Propose {
        /// The proposing officer.
        #[arg(long)]
        author: String,
        /// Directory with model.conf (optional), policy.csv and tests.csv.
        #[arg(long)]
        from: PathBuf,
        /// Activate at once; a second officer approves afterwards.
        #[arg(long)]
        emergency: bool,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Approve a proposal as a second officer.
    Approve {
        /// Proposal id.
        id: String,
        /// The approving officer (not the author).
        #[arg(long)]
        officer: String,
    },
    /// Reject a proposal.
    Reject {
        /// Proposal id.
        id: String,
        /// The rejecting officer.
        #[arg(long)]
        officer: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Propose restoring an earlier version.
    Rollback {
        /// The version to restore.
        version: u64,
        /// The proposing officer.
        #[arg(long)]
        author: String,
        /// Activate at once; approved afterwards.
        #[arg(long)]
        emergency: bool,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
    },
}

/// The request `policy explain` decides.
#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    /// Subject, as the gateway takes it from the verified identity.
    #[arg(long, default_value = "")]
    subject: String,
    /// Policy domain of the route.
    #[arg(long)]
    domain: String,
    /// Request path.
    #[arg(long)]
    path: String,
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// eIDAS level of the login: low, substantial, high.
    #[arg(long)]
    level: Option<String>,
    /// Identity provider.
    #[arg(long)]
    provider: Option<String>,
    /// Client certificate subject.
    #[arg(long)]
    cert: Option<String>,
    /// Explain against this directory instead of the active version.
    #[arg(long)]
    from: Option<PathBuf>,
}

/// Why a policy command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PolicyCmdError {
    /// Bad command line.
    #[error("{0}")]
    Usage(String),
    /// The configuration file named by `--config` cannot be used.
    #[error("{0}")]
    Config(String),
    /// The policy or workflow refused.
    #[error("{0}")]
    Refused(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl PolicyCmdError {
    /// The process exit code.
    pub(crate) fn exit(&self) -> Exit {
        match self {
            Self::Usage(_) => Exit::Usage,
            Self::Config(_) => Exit::Config,
            Self::Refused(_) => Exit::Rejected,
            Self::Other(_) => Exit::Failure,
        }
    }
}

impl From<WorkflowError> for PolicyCmdError {
    fn from(e: WorkflowError) -> Self {
        match e {
            WorkflowError::Store(s) => s.into(),
            other => Self::Refused(other.to_string()),
        }
    }
}

impl From<StoreError> for PolicyCmdError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoSuchProposal(_) | StoreError::NoSuchVersion(_) => {
                Self::Usage(e.to_string())
            }
            StoreError::Conflict { .. } | StoreError::ProposalConflict(_) => {
                Self::Refused(e.to_string())
            }
            other => Self::Other(other.to_string()),
        }
    }
}

impl From<PolicyError> for PolicyCmdError {
    fn from(e: PolicyError) -> Self {
        Self::Refused(e.to_string())
    }
}

fn io_err(path: &Path, e: std::io::Error) -> PolicyCmdError {
    PolicyCmdError::Other(format!("{}: {e}", path.display()))
}

/// Reads a policy directory: `policy.csv` and `tests.csv` (required) and
/// `model.conf` (the embedded default model when absent).
fn read_dir(dir: &Path) -> Result<PolicySet, PolicyCmdError> {
    if !dir.is_dir() {
        return Err(PolicyCmdError::Usage(format!(
            "{}: not a directory with policy.csv and tests.csv",
            dir.display()
        )));
    }
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read_to_string(&p).map_err(|e| io_err(&p, e))
    };
    let model_path = dir.join("model.conf");
    let model = if model_path.exists() {
        read("model.conf")?
    } else {
        stadttor_policies::set::DEFAULT_MODEL.to_string()
    };
    Ok(PolicySet {
        model,
        policy: read("policy.csv")?,
        tests: read("tests.csv")?,
    })
}

/// Writes a policy set into `dir` (created).
fn write_dir(set: &PolicySet, dir: &Path) -> Result<(), PolicyCmdError> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    for (name, text) in [
        ("model.conf", &set.model),
        ("policy.csv", &set.policy),
        ("tests.csv", &set.tests),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| io_err(&p, e))?;
    }
    Ok(())
}

/// The store named by `--store` or by the configuration's `[policies]`.
fn store_from_args(a: &StoreArgs) -> Result<Arc<dyn PolicyStore>, PolicyCmdError> {
    let storage = match (&a.store, &a.config) {
        (Some(s), _) => {
            let base = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
            PolicyStorage::parse(s, a.schema.as_deref(), a.store_ca_file.as_deref(), &base)
                .map_err(|e| {
                    PolicyCmdError::Usage(match e {
                        Problem::Url(r) => format!("--store: {r}"),
                        Problem::CaFile(r) => format!("--store-ca-file: {r}"),
                    })
                })?
        }
        (None, Some(path)) => {
            let cfg = config::load(path).map_err(|e| PolicyCmdError::Config(e.to_string()))?;
            cfg.policies
                .ok_or_else(|| {
                    PolicyCmdError::Config(format!(
                        "{}: no [policies] table; give --store",
                        path.display()
                    ))
                })?
                .storage
        }
        (None, None) => {
            return Err(PolicyCmdError::Usage(
                "name the policy store: --store file:DIR|postgres://… or --config FILE".into(),
            ))
        }
    };
    stadttor_gateway::policy::open_store(&storage).map_err(PolicyCmdError::from)
}

/// Runs `stadttor policy …` and prints a failure; returns the exit code.
pub(super) fn main(store: &StoreArgs, command: PolicyCommand) -> Exit {
    match run(store, command, &mut std::io::stdout().lock()) {
        Ok(()) => Exit::Ok,
        Err(e) => {
            eprintln!("stadttor policy: {e}");
            e.exit()
        }
    }
}

/// Writes command output; a closed stdout is a failure.
fn write(out: &mut dyn Write, s: impl AsRef<str>) -> Result<(), PolicyCmdError> {
    out.write_all(s.as_ref().as_bytes())
        .map_err(|e| PolicyCmdError::Other(format!("stdout: {e}")))
}

/// Runs one command against the store in `args`, printing to `out`.
fn run(args: &StoreArgs, cmd: PolicyCommand, out: &mut dyn Write) -> Result<(), PolicyCmdError> {
    // `test DIR` and `explain --from DIR` need no store.
    match &cmd {
        PolicyCommand::Test { dir: Some(dir) } => {
            let set = read_dir(dir)?;
            return test_set(&set, &dir.display().to_string(), out);
        }
        PolicyCommand::Explain(
            e @ ExplainArgs {
                from: Some(dir), ..
            },
        ) => {
            let set = read_dir(dir)?;
            let p = CompiledPolicy::compile(&set, 0)?;
            return explain(&p, e, out);
        }
        _ => {}
    }
    let store = store_from_args(args)?;
    let wf = Workflow::new(store.clone());
    match cmd {
        PolicyCommand::Init {
            officers,
            officer,
            from,
            author,
        } => init(&wf, &officers, &officer, from.as_deref(), &author, out),
        PolicyCommand::Test { dir: _ } => {
            let p = wf.active_policy()?;
            test_set(p.set(), &format!("version {}", p.version()), out)
        }
        PolicyCommand::Explain(e) => explain(&*wf.active_policy()?, &e, out),
        PolicyCommand::Diff { a, b } => {
            let (sa, sb) = (side(&*store, &a)?, side(&*store, &b)?);
            write(out, PolicyDiff::between(&sa, &sb).to_string())
        }
        PolicyCommand::History => write(out, history(&wf)?),
        PolicyCommand::Pending => write(out, pending(&wf)?),
        PolicyCommand::Export { version, to } => export(&*store, version, &to, out),
        PolicyCommand::Propose {
            author,
            from,
            emergency,
            comment,
        } => propose(&wf, &*store, &author, &from, emergency, &comment, out),
        PolicyCommand::Approve { id, officer } => {
            let c = wf.approve(&id, &officer)?;
            write(
                out,
                match c.version {
                    Some(v) => {
                        format!("proposal {id} approved by {officer}: version {v} is active\n")
                    }
                    None => format!("emergency change {id} approved afterwards by {officer}\n"),
                },
            )
        }
        PolicyCommand::Reject {
            id,
            officer,
            reason,
        } => {
            let c = wf.reject(&id, &officer, &reason)?;
            let mut s = format!("proposal {id} rejected by {officer}\n");
            if let Some(v) = c.version {
                s.push_str(&format!(
                    "emergency change reverted: version {v} is active\n"
                ));
            }
            write(out, s)
        }
        PolicyCommand::Rollback {
            version,
            author,
            emergency,
            comment,
        } => {
            let p = wf.rollback(version, &author, emergency, &comment)?;
            write(
                out,
                format!(
                    "proposal {} restores version {version}: tests {} passed\n{}",
                    p.proposal.id, p.tests.passed, p.diff
                ),
            )
        }
    }
}

/// `policy init`: the first version of an empty store, with at least two
/// officers.
fn init(
    wf: &Workflow,
    officers: &[String],
    officer: &[String],
    from: Option<&Path>,
    author: &str,
    out: &mut dyn Write,
) -> Result<(), PolicyCmdError> {
    let names: Vec<&str> = officers
        .iter()
        .chain(officer)
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    if names.len() < 2 {
        return Err(PolicyCmdError::Usage(
            "--officers: four eyes need at least two officers".into(),
        ));
    }
    let set = match from {
        Some(d) => read_dir(d)?,
        None => PolicySet::embedded_default(),
    }
    .with_officers(&names);
    let samples = sample_users(&set.policy);
    let changed = wf.bootstrap(set, author)?;
    let mut s = format!(
        "policy version {} installed (bootstrap by {author}); officers: {}\n",
        changed.version.unwrap_or(0),
        names.join(", ")
    );
    if !samples.is_empty() {
        s.push_str(&format!(
            "note: the policy grants roles to the sample users {} (domain `musterstadt` of the \
             embedded example); replace them with your own: policy export --to DIR, edit \
             policy.csv and tests.csv, policy propose\n",
            samples.join(", ")
        ));
    }
    write(out, s)
}

/// The sample users (`beispiel:NAME`) that `g` lines of `policy` grant a
/// role, as `beispiel:NAME (ROLE)`: the embedded default has two, so that
/// its tests have someone to decide on.
fn sample_users(policy: &str) -> Vec<String> {
    policy
        .lines()
        .filter_map(|l| l.trim().strip_prefix("g,"))
        .filter_map(|rest| {
            let mut fields = rest.split(',').map(str::trim);
            let (user, role) = (fields.next()?, fields.next()?);
            user.starts_with("beispiel:")
                .then(|| format!("{user} ({role})"))
        })
        .collect()
}

/// `policy history`: one line per version, then the open proposals.
fn history(wf: &Workflow) -> Result<String, PolicyCmdError> {
    let mut s = String::new();
    for h in wf.history()? {
        let m = &h.meta;
        s.push_str(&format!(
            "{}{:>4}  {}  {:?}  by {}{}{}{}  +{} -{}  {}\n",
            if h.active { "*" } else { " " },
            m.version,
            rfc3339(m.created_unix_ms),
            m.kind,
            m.author,
            m.approver
                .as_ref()
                .map(|a| format!(", approved by {a}"))
                .unwrap_or_default(),
            if m.emergency { ", EMERGENCY" } else { "" },
            if h.awaiting_approval {
                " (awaiting approval)"
            } else {
                ""
            },
            m.diff.added,
            m.diff.removed,
            m.comment
        ));
    }
    for p in wf.pending()? {
        s.push_str(&format!(
            "   pending proposal {} by {} on version {}: +{} -{}  {}\n",
            p.id,
            p.author,
            p.base_version.map_or("-".into(), |v| v.to_string()),
            p.diff.added,
            p.diff.removed,
            p.comment
        ));
    }
    Ok(s)
}

/// `policy pending`: every open proposal with its test results and diff.
fn pending(wf: &Workflow) -> Result<String, PolicyCmdError> {
    let active = wf.active_policy()?;
    let mut s = String::new();
    for p in wf.pending()?.into_iter().chain(wf.awaiting_approval()?) {
        let report = CompiledPolicy::compile(&p.set, 0)
            .map(|c| c.run_tests().to_string())
            .unwrap_or_else(|e| e.to_string());
        s.push_str(&format!(
            "proposal {} by {} on version {}{}: {}\ntests: {report}\n{}\n",
            p.id,
            p.author,
            p.base_version.map_or("-".into(), |v| v.to_string()),
            if p.emergency {
                " (EMERGENCY, active, awaiting approval)"
            } else {
                ""
            },
            p.comment,
            PolicyDiff::between(active.set(), &p.set)
        ));
    }
    if s.is_empty() {
        s.push_str("no open proposals\n");
    }
    Ok(s)
}

/// `policy export`: a version's files (default: the active one) into `to`.
fn export(
    store: &dyn PolicyStore,
    version: Option<u64>,
    to: &Path,
    out: &mut dyn Write,
) -> Result<(), PolicyCmdError> {
    let v = match version {
        Some(v) => v,
        None => store.active_version()?.ok_or_else(|| {
            PolicyCmdError::Refused("the policy store has no active policy".into())
        })?,
    };
    write_dir(&store.load(v)?.set, to)?;
    write(out, format!("version {v} written to {}\n", to.display()))
}

/// `policy propose`: the directory `from` as the next version.
fn propose(
    wf: &Workflow,
    store: &dyn PolicyStore,
    author: &str,
    from: &Path,
    emergency: bool,
    comment: &str,
    out: &mut dyn Write,
) -> Result<(), PolicyCmdError> {
    let set = read_dir(from)?;
    let base = store.active_version()?;
    let p = wf.propose(author, set, base, emergency, comment)?;
    let mut s = format!(
        "proposal {} by {author} on version {}: tests {} passed\n{}",
        p.proposal.id,
        base.map_or("-".into(), |v| v.to_string()),
        p.tests.passed,
        p.diff
    );
    if let ProposalStatus::Activated { version } = p.proposal.status {
        s.push_str(&format!(
            "EMERGENCY change: version {version} is active now; a second officer must approve it\n"
        ));
    } else {
        s.push_str("waiting for a second officer: stadttor policy approve ID --officer NAME\n");
    }
    write(out, s)
}

fn test_set(set: &PolicySet, what: &str, out: &mut dyn Write) -> Result<(), PolicyCmdError> {
    let p = CompiledPolicy::compile(set, 0)?;
    let r = p.run_tests();
    let mut s = String::new();
    for f in &r.failures {
        s.push_str(&format!(
            "FAIL tests.csv:{}: {}: expected {:?}, got {:?} ({})\n",
            f.line,
            f.request,
            f.expected,
            f.got,
            f.rule.as_deref().unwrap_or("no rule matched")
        ));
    }
    s.push_str(&format!(
        "{what}: {} passed, {} failed\n",
        r.passed,
        r.failures.len()
    ));
    write(out, s)?;
    if r.ok() {
        Ok(())
    } else {
        Err(PolicyCmdError::Refused(format!(
            "{} of {} tests failed",
            r.failures.len(),
            r.passed + r.failures.len()
        )))
    }
}

fn explain(
    p: &CompiledPolicy,
    args: &ExplainArgs,
    out: &mut dyn Write,
) -> Result<(), PolicyCmdError> {
    let ExplainArgs {
        subject,
        domain,
        path,
        method,
        level,
        provider,
        cert,
        from: _,
    } = args;
    let level = level
        .as_deref()
        .map(str::parse::<stadttor_policies::Level>)
        .transpose()
        .map_err(|e| PolicyCmdError::Usage(format!("--level: {e}")))?;
    let method = method.to_ascii_uppercase();
    // As the gateway decides: on the canonical path, or not at all.
    let decided = match stadttor_policies::path::decision_form(path) {
        Ok(p) => p,
        Err(refusal) => {
            return write(
                out,
                format!(
                    "DENY  the gateway refuses this path with 400 before any policy decision: {refusal}\n"
                ),
            )
        }
    };
    if decided != path.as_str() {
        write(
            out,
            format!("path: decided as `{decided}` (the canonical form the gateway forwards)\n"),
        )?;
    }
    let req = AccessRequest {
        subject,
        domain,
        path: &decided,
        method: &method,
        level,
        provider: provider.as_deref(),
        client_cert: cert.as_deref(),
    };
    write(out, p.explain(&req).to_string())
}

/// One side of a diff: version number, directory or proposal id.
fn side(store: &dyn PolicyStore, s: &str) -> Result<PolicySet, PolicyCmdError> {
    if let Ok(v) = s.parse::<u64>() {
        return Ok(store.load(v)?.set);
    }
    let p = Path::new(s);
    if p.is_dir() {
        return read_dir(p);
    }
    Ok(store.proposal(s)?.set)
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let (y, mo, d) = stadttor_audit::time::civil_from_days(days as i64);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn sample_users_are_the_beispiel_grants() {
        let default = PolicySet::embedded_default().with_officers(&["anna", "bernd"]);
        assert_eq!(
            sample_users(&default.policy),
            [
                "beispiel:erika (amtsleitung)",
                "beispiel:max (sachbearbeitung)"
            ]
        );
        let own = "p, *, d, /x/*, GET, low, *, *, allow\ng, anna, officer, stadttor-admin\n";
        assert!(sample_users(own).is_empty());
    }
}
