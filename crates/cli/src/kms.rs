//! `confide kms …`: the key broker. `init` makes a sealed key store and its recovery shares
//! (on the server's machine, before the first sealed start); `unseal` gives one share to a
//! sealed server; `status` says whether it is sealed. The rest manage keys as their owner,
//! by requests signed with this member's key.

use std::io::BufRead as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use base64::Engine as _;
use clap::Subcommand;
use confide_identity::Home;
use confide_model::{BrokerBody, Deleted, KekAnswer, KekEvent, KeyAnswer, LeaseList, LeaseView};
use serde_json::json;

use crate::serve::{Client, signed};

#[derive(Debug, Subcommand)]
pub(crate) enum KmsCommand {
    /// Initialise a sealed key store in the server's data directory: a fresh master key split
    /// into recovery shares, printed once, one per line, for their holders; none is stored.
    Init {
        /// The server's data directory.
        #[arg(long, value_name = "DIR", default_value = "confide-data")]
        data: PathBuf,
        /// How many shares to make.
        #[arg(long, default_value_t = 5)]
        shares: u8,
        /// How many shares unseal the store.
        #[arg(long, default_value_t = 3)]
        threshold: u8,
    },
    /// Give one recovery share to a sealed server: read from FILE, or the first line of stdin.
    Unseal {
        /// A file holding the share.
        #[arg(long, value_name = "FILE")]
        share_file: Option<PathBuf>,
    },
    /// Whether the server is sealed, and how many shares it has.
    Status,
    /// Create a 256-bit key owned by this member.
    Create {
        /// The key's name.
        name: String,
        /// A Rego release policy (package confide.release, rule allow) over {token, key,
        /// contract}. One of --policy, --dataset-policy, --any-attested-tee or --no-release is
        /// required: there is no default that releases a key.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Release only to workloads of approved contracts that name the dataset of this key
        /// (the policy `confide cleanroom publish` sets).
        #[arg(long, conflicts_with_all = ["policy", "any_attested_tee", "no_release"])]
        dataset_policy: bool,
        /// Release to any workload whose token shows code the consortium trusts (its
        /// measurement matched a trusted one), on an up-to-date or out-of-date platform.
        #[arg(long, conflicts_with_all = ["policy", "no_release"])]
        any_attested_tee: bool,
        /// Release to no one (until the key is imported again with a policy).
        #[arg(long, conflicts_with = "policy")]
        no_release: bool,
    },
    /// Add a new version of a key; releases give it from now on.
    Rotate {
        /// The key's name.
        name: String,
    },
    /// Revoke a key: it is released no more.
    Revoke {
        /// The key's name.
        name: String,
    },
    /// Delete a key and every version of it, for good.
    Delete {
        /// The key's name.
        name: String,
    },
    /// Make a key-exchange key (RSA 3072) to import keys through, and print its public key
    /// (PEM) for wrapping tools (`confide kms import --key`, openssl, an HSM).
    Kek {
        /// The key-exchange key's name.
        name: String,
    },
    /// Import a 256-bit key (bring your own key), wrapped with CKM_RSA_AES_KEY_WRAP to one of
    /// this member's key-exchange keys: as a new key, or a new version of one's own key.
    Import {
        /// The key's name.
        name: String,
        /// The key-exchange key it is wrapped to.
        #[arg(long, value_name = "NAME")]
        kek: String,
        /// The raw key (32 bytes), wrapped here before it is sent.
        #[arg(
            long,
            value_name = "FILE",
            conflicts_with = "blob",
            required_unless_present = "blob"
        )]
        key: Option<PathBuf>,
        /// A blob wrapped elsewhere (RSA-OAEP part, then AES-KWP part).
        #[arg(long, value_name = "FILE")]
        blob: Option<PathBuf>,
        /// The RSA-OAEP hash: sha256 or sha1.
        #[arg(long, default_value = "sha256")]
        hash: String,
        /// A Rego release policy to set. A new key imported without one (nor
        /// --any-attested-tee) is released to no one; a new version keeps the key's policy.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Release to any workload whose token shows code the consortium trusts (its
        /// measurement matched a trusted one), on an up-to-date or out-of-date platform.
        #[arg(long, conflicts_with = "policy")]
        any_attested_tee: bool,
    },
    /// List a key's leases: who holds it, until when, last heartbeat, lapsed or not.
    Leases {
        /// The key's name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Checks that `der` is the public key of key-exchange key `name`, owned by `owner`, as the
/// ledger (verified under `ledger_key`) recorded it when the broker made it: what the member
/// wraps a key to is the broker's key-exchange key, not one the network swapped in.
pub(crate) fn check_kek(
    client: &Client,
    home: &Home,
    ledger_key: &confide_crypto::signing::VerifyingKey,
    name: &str,
    owner: &str,
    der: &[u8],
) -> anyhow::Result<()> {
    let digest = hex::encode(confide_crypto::digest::sha256(der));
    let ledger = crate::serve::verified_ledger(client, home, ledger_key)?;
    let recorded = ledger.events::<KekEvent>().any(|e| {
        matches!(e, Ok(KekEvent::Created { kek, owner: by, public_sha256, .. })
            if kek == name && by == owner && public_sha256 == digest)
    });
    if !recorded {
        bail!(
            "the key-exchange key {name} the server sent (SHA-256 {digest}) is not the one the \
             ledger records for this member: nothing was wrapped to it"
        );
    }
    Ok(())
}

pub(crate) fn run(cmd: KmsCommand, home: &Home, server: &str) -> anyhow::Result<()> {
    let client = Client::new(server);
    match cmd {
        KmsCommand::Init {
            data,
            shares,
            threshold,
        } => {
            let made = confide_kms::init_sealed(&data.join("kms"), threshold, shares)
                .context("initialising the key store")?;
            eprintln!(
                "Initialised a sealed key store in {}. Here are its {shares} recovery shares; any \
                 {threshold} unseal it. Give each to a different holder now: they are not stored \
                 anywhere and are shown only once.",
                data.join("kms").display()
            );
            for share in &made {
                println!("{}", &**share);
            }
        }
        KmsCommand::Unseal { share_file } => {
            let share = zeroize::Zeroizing::new(match share_file {
                Some(f) => std::fs::read_to_string(&f)
                    .with_context(|| format!("reading {}", f.display()))?,
                None => {
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    line
                }
            });
            let body = json!({"share": share.trim()}).to_string();
            let r = client.post_json("/kms/unseal", &body)?;
            if r["sealed"] == false {
                println!("unsealed: the server is open");
            } else {
                println!(
                    "share accepted: {} of {} given; the server stays sealed",
                    r["shares_given"], r["threshold"]
                );
            }
        }
        KmsCommand::Status => {
            let r = client.get("/kms/status")?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        KmsCommand::Create {
            name,
            policy,
            dataset_policy,
            any_attested_tee,
            no_release,
        } => {
            let policy = match (policy, dataset_policy, any_attested_tee, no_release) {
                (Some(p), ..) => std::fs::read_to_string(&p)
                    .with_context(|| format!("reading {}", p.display()))?,
                (None, true, ..) => confide_kms::DATASET_RELEASE_POLICY.to_owned(),
                (None, false, true, _) => confide_kms::ATTESTED_RELEASE_POLICY.to_owned(),
                (None, false, false, true) => confide_kms::DEFAULT_RELEASE_POLICY.to_owned(),
                (None, false, false, false) => bail!(
                    "say who may have key {name}: --policy FILE (your own Rego), \
                     --dataset-policy (only workloads of approved contracts over its dataset), \
                     --any-attested-tee (any workload the appraisal accepts, whatever its code) \
                     or --no-release"
                ),
            };
            let body = BrokerBody::Create {
                name,
                policy: Some(policy),
            };
            let r: KeyAnswer = client.post_as("/keys", &signed(home, &body)?)?;
            print_key("created", &r);
        }
        KmsCommand::Rotate { name } => {
            let r = manage(&client, home, BrokerBody::Rotate { name })?;
            print_key("rotated", &r);
        }
        KmsCommand::Revoke { name } => {
            let r = manage(&client, home, BrokerBody::Revoke { name })?;
            print_key("revoked", &r);
        }
        KmsCommand::Delete { name } => {
            let r: Deleted = manage(&client, home, BrokerBody::Delete { name })?;
            println!("deleted {}; audit entry {}", r.deleted.name, r.audit_seq);
        }
        KmsCommand::Kek { name } => {
            let body = BrokerBody::KekCreate { name: name.clone() };
            let r: KekAnswer = client.post_as("/keks", &signed(home, &body)?)?;
            print!("{}", r.kek.public_pem);
            if let Some(seq) = r.audit_seq {
                eprintln!("key-exchange key {name}; audit entry {seq}");
            }
        }
        KmsCommand::Import {
            name,
            kek,
            key,
            blob,
            hash,
            policy,
            any_attested_tee,
        } => {
            let oaep = confide_crypto::byok::OaepHash::from_name(&hash)
                .with_context(|| format!("--hash {hash:?}: sha256 or sha1"))?;
            let blob = match (key, blob) {
                (Some(key), _) => {
                    let raw = zeroize::Zeroizing::new(
                        std::fs::read(&key)
                            .with_context(|| format!("reading {}", key.display()))?,
                    );
                    let answer: KekAnswer = client.get_as(&format!("/keks/{kek}"))?;
                    let der = confide_crypto::pem_decode(&answer.kek.public_pem, "PUBLIC KEY")
                        .context("the key-exchange key's PEM is not a public key")?;
                    let owner = home.load_public()?.fingerprint().to_hex();
                    // The ledger key pinned in the member's home (pinned now if it is not yet).
                    crate::serve::member_client(home, server)?;
                    let ledger_key = crate::serve::pinned_ledger_key(home)?;
                    check_kek(&client, home, &ledger_key, &kek, &owner, &der)?;
                    confide_crypto::byok::wrap(&der, &raw, oaep)?
                }
                (None, Some(blob)) => {
                    std::fs::read(&blob).with_context(|| format!("reading {}", blob.display()))?
                }
                (None, None) => bail!("give --key or --blob"),
            };
            let policy = match policy {
                Some(p) => Some(
                    std::fs::read_to_string(&p)
                        .with_context(|| format!("reading {}", p.display()))?,
                ),
                None if any_attested_tee => Some(confide_kms::ATTESTED_RELEASE_POLICY.to_owned()),
                None => None,
            };
            let path = format!("/keys/{name}/import");
            let body = BrokerBody::Import {
                name,
                kek,
                hash,
                blob: base64::engine::general_purpose::STANDARD.encode(blob),
                policy,
            };
            let r: KeyAnswer = client.post_as(&path, &signed(home, &body)?)?;
            print_key("imported", &r);
        }
        KmsCommand::Leases { name, json } => {
            let r: LeaseList = manage(&client, home, BrokerBody::Leases { name: name.clone() })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            if r.leases.is_empty() {
                println!("{name} has no leases");
            }
            for LeaseView { lease: l, lapsed } in r.leases {
                println!(
                    "{}  version {}  granted {}  last heartbeat {}  expires {}{}",
                    l.id,
                    l.version,
                    l.granted,
                    l.last_heartbeat,
                    l.expires,
                    if lapsed { "  LAPSED" } else { "" }
                );
            }
        }
    }
    Ok(())
}

/// Sends a member's request about one of its keys to the key's endpoint (`kms.ACTION` goes to
/// `/keys/NAME/ACTION`).
fn manage<T: serde::de::DeserializeOwned>(
    client: &Client,
    home: &Home,
    body: BrokerBody,
) -> anyhow::Result<T> {
    let (BrokerBody::Rotate { name }
    | BrokerBody::Revoke { name }
    | BrokerBody::Delete { name }
    | BrokerBody::Leases { name }) = &body
    else {
        bail!("{} is not about one key", body.kind());
    };
    if name.contains('/') {
        bail!("key name {name:?} contains '/'");
    }
    let action = body.kind().trim_start_matches("kms.");
    let path = format!("/keys/{name}/{action}");
    Ok(client.post_as(&path, &signed(home, &body)?)?)
}

fn print_key(what: &str, r: &KeyAnswer) {
    println!(
        "{what} {} (version {}, owner {}); audit entry {}",
        r.key.name, r.key.version, r.key.owner, r.audit_seq
    );
}
