//! `confide member`: create and show the member's identity.

use anyhow::Context;
use base64::Engine;
use clap::Subcommand;
use confide_identity::Home;

#[derive(Debug, Subcommand)]
pub(crate) enum MemberCommand {
    /// Create a new identity (signing and encryption keys) in the home directory.
    /// Refuses to overwrite an existing one.
    Init {
        /// The member's name: letters, digits, '.', '_' and '-'.
        #[arg(long)]
        name: String,
        /// Print the public identity document as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the public identity: name, fingerprint and public keys.
    Show {
        /// Print the public identity document, which other members pass to `--to`.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(cmd: MemberCommand, home: &Home) -> anyhow::Result<()> {
    match cmd {
        MemberCommand::Init { name, json } => {
            let identity = home.init(&name).context("creating the member identity")?;
            if json {
                print!("{}", identity.public().to_json());
            } else {
                let public = identity.public();
                println!(
                    "created identity {} ({})",
                    public.name(),
                    public.fingerprint()
                );
                println!(
                    "private keys: {} (only you can read it)",
                    home.key_path().display()
                );
                println!(
                    "public identity: {} (give this file to the other members)",
                    home.public_path().display()
                );
            }
        }
        MemberCommand::Show { json } => {
            let public = home.load_public()?;
            if json {
                print!("{}", public.to_json());
            } else {
                let hpke = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(public.hpke_key().as_bytes());
                println!("name         {}", public.name());
                println!(
                    "fingerprint  {} (in full: {}, as --founder takes it)",
                    public.fingerprint(),
                    public.fingerprint().to_hex()
                );
                println!("signing key  {} (ECDSA P-256 JWK)", public.signing_jwk());
                println!("hpke key     {hpke} (X25519)");
                println!("identity     {}", home.public_path().display());
            }
        }
    }
    Ok(())
}
