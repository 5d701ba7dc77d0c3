//! `stadttor identity …`: what an operator hands to identity providers.
//!
//! `saml-metadata` prints this gateway's SAML SP metadata for one
//! `protocol = "saml"` provider (entity ID, ACS URL, the signing and
//! encryption certificates, each checked against its key in the key
//! store), ready to upload at BundID's or MUK's self-service portal.

use std::path::PathBuf;

use clap::Subcommand;
use stadttor_gateway::keys::Keys;

use super::Exit;

/// `stadttor identity …`.
#[derive(Debug, Subcommand)]
pub(crate) enum IdentityCommand {
    /// Print the SAML SP metadata of provider NAME to stdout (exit 78 if
    /// the configuration, a certificate or a key is unusable).
    SamlMetadata {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The `[[identity.providers]]` name (`protocol = "saml"`).
        #[arg(long)]
        provider: String,
    },
}

/// Runs an `identity` subcommand.
pub(super) fn run(command: IdentityCommand) -> Exit {
    match command {
        IdentityCommand::SamlMetadata { config, provider } => {
            let cfg = match stadttor_gateway::config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return Exit::of_config(&e);
                }
            };
            let Some(identity) = &cfg.identity else {
                eprintln!("{}: no [identity] table", config.display());
                return Exit::Config;
            };
            let keys = Keys::new(cfg.keys.clone());
            match stadttor_gateway::authn::saml_metadata(identity, &provider, &keys) {
                Ok(xml) => {
                    print!("{xml}");
                    Exit::Ok
                }
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    Exit::Config
                }
            }
        }
    }
}
