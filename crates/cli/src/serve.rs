//! `confide serve`, and the client commands that talk to it: `confide gov …`, `confide ledger
//! tail`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use confide_identity::Home;
use confide_model::{Action, EntryPage, GovBody, Submitted};
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// The data directory (ledger, keys).
    #[arg(long, value_name = "DIR", default_value = "confide-data")]
    data: PathBuf,
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7780")]
    listen: SocketAddr,
    /// The development profile: keys in local files (said at every start), simulated TEEs
    /// accepted. Without it the server starts sealed and opens when the key store's recovery
    /// shares are given (`confide kms init`, then `confide kms unseal`).
    #[arg(long)]
    dev: bool,
    /// Only the member with this identity fingerprint (hex) may found the consortium. Without
    /// it, no one may (the development profile: whoever calls first).
    #[arg(long, value_name = "FINGERPRINT")]
    founder: Option<String>,
    /// The URL clients reach this server at, the issuer of its tokens (default: http://ADDR).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Sign attestation tokens with a new key from now on (older keys stay published).
    #[arg(long)]
    rotate_token_key: bool,
    /// Retire the token signing key with this kid (repeatable; after --rotate-token-key if the
    /// newest): its file is deleted, it is published no more, and every token it signed stops
    /// verifying at once.
    #[arg(long, value_name = "KID")]
    retire_token_key: Vec<String>,
    /// How long attestation tokens are valid, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = confide_server::TOKEN_LIFETIME,
          value_parser = clap::value_parser!(i64).range(1..=86_400))]
    token_lifetime: i64,
    /// Serve HTTPS even on loopback in the development profile (elsewhere it is the default),
    /// with a certificate made on first start in DATA/tls unless --tls-cert is given.
    #[arg(long)]
    tls: bool,
    /// Serve HTTPS with this certificate chain (PEM; the server's certificate first).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// How the server is reached: HTTPS with a given or made certificate, or plain HTTP only on
/// loopback or in the development profile (and it says so).
fn tls_identity(
    args: &ServeArgs,
    addr: SocketAddr,
) -> anyhow::Result<Option<confide_server::tls::TlsIdentity>> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        return Ok(Some(confide_server::tls::given(cert, key)?));
    }
    if !args.tls && (args.dev || addr.ip().is_loopback()) {
        eprintln!(
            "PLAIN HTTP on {addr}: allowed only on loopback or in the development profile; \
             --tls serves HTTPS"
        );
        return Ok(None);
    }
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if !addr.ip().is_unspecified() {
        names.push(addr.ip().to_string());
    }
    if let Some(host) = args
        .public_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()))
    {
        names.push(host);
    }
    names.dedup();
    Ok(Some(confide_server::tls::made(
        &args.data.join("tls"),
        &names,
    )?))
}

pub(crate) fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = confide_server::bind(args.listen).await?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let has_founder = args.founder.is_some();
        let tls = tls_identity(&args, addr)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        if let Some(tls) = &tls {
            eprintln!(
                "HTTPS: clients trust {} (SHA-256 {}): confide --ca {}",
                tls.trust.display(),
                tls.fingerprint,
                tls.trust.display()
            );
        }
        let config = confide_server::Config {
            data: args.data.clone(),
            dev: args.dev,
            founder: args.founder,
            issuer: args
                .public_url
                .unwrap_or_else(|| format!("{scheme}://{addr}")),
            rotate_token_key: args.rotate_token_key,
            retire_token_keys: args.retire_token_key,
            token_lifetime: args.token_lifetime,
        };
        if !args.dev {
            let router = confide_server::sealed_router(config)?;
            println!("listening on {scheme}://{addr}");
            use std::io::Write as _;
            let _ = std::io::stdout().flush();
            eprintln!(
                "SEALED: waiting for the recovery shares of the key store in {} \
                 (each holder runs `confide kms unseal`)",
                args.data.join("kms").display()
            );
            confide_server::serve_router(listener, router, tls.as_ref()).await?;
            return anyhow::Ok(());
        }
        let (state, opened) = confide_server::open(&config, None)?;
        eprintln!(
            "DEVELOPMENT PROFILE: the master key and signing keys are kept unencrypted under {}, \
             and simulated TEE evidence is accepted (insecure_allow_simulated_tee); do not use \
             this for real data",
            args.data.display()
        );
        if opened.dropped_bytes > 0 {
            eprintln!(
                "recovered after a crash: dropped {} bytes of a batch that was never acknowledged",
                opened.dropped_bytes
            );
        }
        // The one line on stdout: scripts and tests read the address from it.
        println!("listening on {scheme}://{addr}");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let ledger_pub = args.data.join("ledger").join("ledger.pub");
        eprintln!(
            "ledger: {} entries in {}; its key, which workloads and members pin, is {} \
             (fingerprint {})",
            opened.entries,
            args.data.join("ledger").display(),
            ledger_pub.display(),
            confide_client::ledger::key_fingerprint(&crate::ledger::read_key(&ledger_pub)?)
        );
        if opened.entries == 0 && !has_founder {
            eprintln!(
                "no --founder: the first member to call POST /gov/found founds the consortium \
                 (development profile only)"
            );
        }
        confide_server::serve(listener, state, tls.as_ref()).await?;
        anyhow::Ok(())
    })
}

#[derive(Debug, Subcommand)]
pub(crate) enum GovCommand {
    /// Found the consortium, as its first member.
    Found,
    /// Propose actions: a JSON file holding a list of actions, and/or the shortcuts below.
    Propose {
        /// A JSON file with a list of actions.
        actions: Option<PathBuf>,
        /// Add the member whose public identity (JSON) is in FILE.
        #[arg(long, value_name = "FILE")]
        add_member: Vec<PathBuf>,
        /// Remove the member with this fingerprint.
        #[arg(long, value_name = "FINGERPRINT")]
        remove_member: Vec<confide_model::MemberId>,
    },
    /// Vote on a proposal.
    Vote {
        /// The proposal's id.
        id: String,
        /// Vote for it.
        #[arg(long, conflicts_with = "reject", required_unless_present = "reject")]
        approve: bool,
        /// Vote against it.
        #[arg(long)]
        reject: bool,
    },
    /// List the proposals.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the members.
    Members {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) use confide_client::Client;

/// A client for a member's commands, once the server's ledger has been checked against what
/// this member saw before: its newest checkpoint must be signed by the ledger key pinned in
/// the member's home (`HOME/ledger.pub`) and extend the checkpoint kept there
/// (`HOME/checkpoint.json`) by a consistency proof, so a server that forks or rolls back its
/// ledger is refused before the member reads or signs anything. The key is pinned on first
/// contact from `CONFIDE_LEDGER_KEY` when set, else from the server itself (trust on first use,
/// its fingerprint said on stderr to compare out of band). Without a home directory there is
/// nothing to keep, and nothing is checked.
pub(crate) fn member_client(home: &Home, server: &str) -> anyhow::Result<Client> {
    let client = Client::new(server);
    if !home.dir().is_dir() {
        return Ok(client);
    }
    let pinned = home.dir().join("ledger.pub");
    let key = if pinned.exists() {
        crate::ledger::read_key(&pinned)?
    } else {
        let (pem, from) = match std::env::var_os("CONFIDE_LEDGER_KEY") {
            Some(path) => (
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.to_string_lossy()))?,
                "CONFIDE_LEDGER_KEY",
            ),
            None => (
                String::from_utf8(client.get_bytes("/ledger/key")?)
                    .context("the server's ledger key is not text")?,
                "the server, on first use",
            ),
        };
        let key = confide_crypto::signing::VerifyingKey::from_spki_pem(&pem)
            .context("the ledger key is not a P-256 public key (PEM)")?;
        std::fs::write(&pinned, key.to_spki_pem())
            .with_context(|| format!("pinning the ledger key in {}", pinned.display()))?;
        eprintln!(
            "pinned the ledger key {} from {from} in {}: compare its fingerprint with the one \
             the consortium published",
            confide_client::ledger::key_fingerprint(&key),
            pinned.display()
        );
        key
    };
    confide_client::ledger::check_consistency(&client, &key, &home.dir().join("checkpoint.json"))
        .with_context(|| format!("checking the ledger of {server}"))?;
    Ok(client)
}

/// The consortium's state as this member's own replay of the ledger verified under the pinned
/// key gives it: what every member command that shows or acts on ledger state reads, never an
/// endpoint's listing.
pub(crate) fn verified_governance(
    client: &Client,
    home: &Home,
) -> anyhow::Result<confide_gov::Governance> {
    let key = pinned_ledger_key(home)?;
    Ok(verified_ledger(client, home, &key)?.governance()?)
}

/// The ledger verified under `key`, which must extend the checkpoint this member kept
/// (`HOME/checkpoint.json`, kept newer afterwards): every member command reads the state of
/// the ledger it checked, so a server cannot pass the consistency check with one answer and
/// serve an older or forked ledger in the next.
pub(crate) fn verified_ledger(
    client: &Client,
    home: &Home,
    key: &confide_crypto::signing::VerifyingKey,
) -> anyhow::Result<confide_client::ledger::VerifiedLedger> {
    Ok(confide_client::ledger::VerifiedLedger::fetch_extending(
        client,
        key,
        &home.dir().join("checkpoint.json"),
    )?)
}

/// The ledger key pinned in the member's home (by [`member_client`], on first use).
pub(crate) fn pinned_ledger_key(
    home: &Home,
) -> anyhow::Result<confide_crypto::signing::VerifyingKey> {
    let pinned = home.dir().join("ledger.pub");
    crate::ledger::read_key(&pinned)
        .with_context(|| format!("no ledger key is pinned in {}", pinned.display()))
}

fn now() -> i64 {
    confide_attest::UnixTime::now().secs()
}

/// Signs `body` as this member, with a fresh nonce and the current time.
pub(crate) fn signed(home: &Home, body: &impl serde::Serialize) -> anyhow::Result<Vec<u8>> {
    let identity = home.load().context("loading this member's identity")?;
    let nonce = confide_crypto::random::array::<16>()?;
    Ok(confide_gov::sign_request(
        identity.signing_key(),
        &identity.public().fingerprint().to_hex(),
        body,
        now(),
        &nonce,
    )?)
}

pub(crate) fn gov(cmd: GovCommand, home: &Home, server: &str) -> anyhow::Result<()> {
    let client = member_client(home, server)?;
    match cmd {
        GovCommand::Found => {
            let member = home.load_public()?;
            let r: Submitted = client.post_as(
                "/gov/found",
                &signed(
                    home,
                    &GovBody::Found {
                        member,
                        constitution: None,
                    },
                )?,
            )?;
            println!("founded the consortium (ledger entry {})", r.seq);
        }
        GovCommand::Propose {
            actions,
            add_member,
            remove_member,
        } => {
            // Read whole and checked before anything is signed: an unknown action or field is
            // refused here, with its name, not sent.
            let mut list: Vec<Action> = match actions {
                Some(path) => serde_json::from_slice(
                    &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
                )
                .with_context(|| format!("{} is not a JSON list of actions", path.display()))?,
                None => Vec::new(),
            };
            for path in add_member {
                let member = confide_identity::PublicIdentity::load(&path)
                    .with_context(|| format!("{} is not an identity document", path.display()))?;
                list.push(Action::AddMember { member });
            }
            for fingerprint in remove_member {
                list.push(Action::RemoveMember { fingerprint });
            }
            if list.is_empty() {
                bail!("nothing to propose: give a file of actions or --add-member/--remove-member");
            }
            for action in &list {
                action
                    .check()
                    .with_context(|| format!("the {} action", action.name()))?;
            }
            let r: Submitted = client.post_as(
                "/gov/proposals",
                &signed(home, &GovBody::Propose { actions: list })?,
            )?;
            println!(
                "proposal {} ({}), ledger entry {}",
                r.proposal.as_deref().unwrap_or("?"),
                r.state.map_or("?".to_owned(), |s| s.to_string()),
                r.seq
            );
        }
        GovCommand::Vote { id, approve, .. } => {
            // What the ballot says yes or no to, as this member's replay of the verified ledger
            // holds it (never the server's listing): every action, whole, before it is signed.
            let gov = verified_governance(&client, home)?;
            let proposal = gov.proposals().get(&id).with_context(|| {
                format!("no proposal {id} on the ledger verified under the pinned key")
            })?;
            if proposal.state != confide_model::ProposalState::Open {
                bail!(
                    "proposal {id} is {}, not open: nothing to vote on",
                    proposal.state
                );
            }
            eprintln!(
                "voting {} proposal {id}, which does all of these {} action(s):",
                if approve { "for" } else { "against" },
                proposal.actions.len()
            );
            for action in &proposal.actions {
                eprintln!("{}", serde_json::to_string_pretty(action)?);
            }
            let r: Submitted = client.post_as(
                &format!("/gov/proposals/{id}/ballots"),
                &signed(
                    home,
                    &GovBody::Ballot {
                        proposal: id,
                        vote: approve,
                    },
                )?,
            )?;
            println!(
                "voted; the proposal is now {} (ledger entry {})",
                r.state.map_or("?".to_owned(), |s| s.to_string()),
                r.seq
            );
        }
        // Both from this member's replay of the verified ledger, not the server's listings.
        GovCommand::List { json } => {
            let gov = verified_governance(&client, home)?;
            let mut proposals: Vec<_> = gov.proposals().values().cloned().collect();
            proposals.sort_by_key(|p| p.seq);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&confide_model::ProposalList { proposals })?
                );
            } else {
                for p in proposals {
                    let actions: Vec<&str> = p.actions.iter().map(|a| a.name()).collect();
                    println!(
                        "{}  {:<8}  {}; {} ballot(s), entry {}",
                        p.id,
                        serde_json::to_value(p.state)?.as_str().unwrap_or("?"),
                        actions.join(", "),
                        p.ballots.len(),
                        p.seq
                    );
                }
            }
        }
        GovCommand::Members { json } => {
            let gov = verified_governance(&client, home)?;
            if json {
                let members: Vec<Value> = gov
                    .members()
                    .iter()
                    .map(|(fp, m)| serde_json::json!({"fingerprint": fp, "name": m.name().as_str(), "identity": m}))
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"members": members}))?
                );
            } else {
                for (fp, m) in gov.members() {
                    println!("{fp}  {}", m.name().as_str());
                }
            }
        }
    }
    Ok(())
}

/// An audit event (plain JSON): its type and what it is about.
fn audit_summary(bytes: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let kind = v["type"].as_str()?;
    let about = ["key", "resource", "kek", "run"]
        .iter()
        .find_map(|k| v[*k].as_str())
        .unwrap_or_default();
    let version = v["version"]
        .as_u64()
        .map(|n| format!(" v{n}"))
        .unwrap_or_default();
    Some(format!("audit {kind} {about}{version}"))
}

/// One line about a ledger entry: a governance request's type and gist, an audit event's
/// type and subject, or its size.
pub(crate) fn describe_entry(bytes: &[u8]) -> String {
    confide_ledger::cose::Sign1::parse(bytes)
        .ok()
        .and_then(|s| s.payload)
        .map(|p| match GovBody::from_json(&p) {
            Ok(GovBody::Propose { actions }) => format!(
                "propose {}",
                actions
                    .iter()
                    .map(Action::name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Ok(GovBody::Ballot { proposal, vote }) => format!(
                "ballot {} on {proposal}",
                if vote { "for" } else { "against" }
            ),
            Ok(body) => body.kind().to_owned(),
            Err(_) => "signed entry (not a governance request)".to_owned(),
        })
        .or_else(|| audit_summary(bytes))
        .unwrap_or_else(|| format!("{} bytes", bytes.len()))
}

pub(crate) fn tail(server: &str, from: u64, json: bool) -> anyhow::Result<()> {
    use base64::Engine as _;
    let page: EntryPage = Client::new(server).get_as(&format!("/ledger/entries?from={from}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(());
    }
    for e in page.entries {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&e.entry)
            .with_context(|| format!("entry {} is not base64", e.seq))?;
        println!("{:>8}  {}", e.seq, describe_entry(&bytes));
    }
    Ok(())
}
