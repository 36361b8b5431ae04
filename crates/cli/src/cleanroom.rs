//! Clean rooms from the command line: `dataset publish`, `contract propose/approve/revoke/show`,
//! `run`, `result fetch` — the flows of DESIGN.md (dataset, contract, run, audit) against a
//! `confide serve` and a blob store (a local directory, or S3, Azure Blob Storage or Google
//! Cloud Storage by URL).

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine as _;
use clap::Subcommand;
use confide_cleanroom::{
    AnalysisRule, BlobStore, Contract, Format, Measurement, OnViolation, OutputRules, Privacy,
};
use confide_crypto::hpke::HpkeSecretKey;
use confide_crypto::signing::VerifyingKey;
use confide_identity::Home;
use confide_model::{
    Action, Approval, Bounds, BrokerBody, Budget, Column, ContractId, DatasetId, DatasetList,
    DatasetRecord, DatasetVersion, Epsilon, GovBody, KekAnswer, KeyAnswer, MemberId, Noise,
    Proposal, ProposalList, ProposalState, RunId, Submitted, Versions,
};
use confide_workload::{Launch, RunOutcome, Tee};
use datafusion::arrow::datatypes::SchemaRef;
use serde_json::json;
use zeroize::Zeroizing;

use crate::serve::{Client, member_client, signed};

/// Where ciphertexts are kept (`--store`, `CONFIDE_STORE`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StoreArgs {
    /// The blob store the members and the workloads share: a local directory, or
    /// s3://BUCKET[/PREFIX], az://CONTAINER[/PREFIX] or gs://BUCKET[/PREFIX], with credentials
    /// and endpoints from the environment (AWS_*, AZURE_*, GOOGLE_*).
    #[arg(
        long,
        env = "CONFIDE_STORE",
        value_name = "DIR|URL",
        default_value = "confide-blobs"
    )]
    store: String,
}

impl StoreArgs {
    fn open(&self) -> anyhow::Result<Store> {
        Store::open(&self.store)
    }
}

/// The blob store, and the one runtime its requests (and a run's query) run on, so that its
/// pooled connections stay valid for the life of the command.
pub(crate) struct Store {
    blobs: BlobStore,
    runtime: tokio::runtime::Runtime,
}

impl Store {
    pub(crate) fn open(spec: &str) -> anyhow::Result<Self> {
        Ok(Self {
            blobs: BlobStore::open(spec, &[])?,
            runtime: tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?,
        })
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum DatasetCommand {
    /// Encrypt a CSV or Parquet file, upload the ciphertext, deposit its key with the key
    /// broker (released only for approved contracts) and register it on the ledger.
    Publish {
        /// The file.
        file: PathBuf,
        /// The dataset's name (its id is NAME-<digest prefix>).
        #[arg(long)]
        name: String,
        /// csv or parquet (default: from the file name).
        #[arg(long)]
        format: Option<String>,
        #[command(flatten)]
        privacy: PrivacyArgs,
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Append a batch of rows to a dataset of this member's, as its next version: the file is
    /// encrypted to the dataset's key, uploaded, and registered on the ledger.
    Append {
        /// The dataset's id.
        dataset: DatasetId,
        /// The batch: the dataset's columns, in its format.
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List a dataset's versions, as the verified ledger holds them.
    Versions {
        /// The dataset's id.
        dataset: DatasetId,
    },
    /// List the registered datasets.
    List,
    /// Show a dataset's privacy budget (the ε spent and left in this period), or, with
    /// EPSILON/DAYS, propose to set it: its owner's decision alone.
    Budget {
        /// The dataset's id.
        dataset: DatasetId,
        /// Its new budget, EPSILON/DAYS (`2/30`).
        #[arg(value_name = "EPSILON/DAYS")]
        budget: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ContractCommand {
    /// Propose a contract: every owner of a named dataset must approve it.
    Propose {
        /// A table of the SQL: NAME=DATASET_ID (repeat).
        #[arg(long = "table", value_name = "NAME=DATASET", required = true)]
        tables: Vec<String>,
        /// The SQL, from a file.
        #[arg(long, value_name = "FILE")]
        sql: PathBuf,
        /// A workload measurement allowed to run it: KIND:HEX (repeat).
        #[arg(long = "measurement", value_name = "KIND:HEX", required = true)]
        measurements: Vec<String>,
        /// A recipient of the result: a fingerprint or a public identity file (repeat).
        #[arg(long = "recipient", value_name = "FINGERPRINT|FILE", required = true)]
        recipients: Vec<String>,
        /// The columns that may leave, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        columns: Vec<String>,
        #[command(flatten)]
        rule: RuleArgs,
        #[command(flatten)]
        noise: NoiseArgs,
        /// The most rows the result may have.
        #[arg(long, default_value_t = 1000)]
        max_rows: u64,
        /// Refuse a result with rows under the minimum group (default: suppress them).
        #[arg(long)]
        refuse: bool,
        /// Which versions of its dataset a table reads: TABLE=all (the default), TABLE=latest,
        /// or TABLE=FROM..UNTIL (Unix seconds, the times the ledger accepted them) (repeat).
        #[arg(long = "versions", value_name = "TABLE=VERSIONS")]
        versions: Vec<String>,
    },
    /// Approve a proposed contract, as an owner of one of its datasets.
    Approve {
        /// The contract's id.
        id: ContractId,
    },
    /// Revoke an approved contract, as an owner of one of its datasets: it runs no more.
    Revoke {
        /// The contract's id.
        id: ContractId,
    },
    /// Show a contract and its state.
    Show {
        /// The contract's id.
        id: ContractId,
    },
}

/// What the owner declares about the individuals in the dataset; recorded on the ledger with
/// it and enforced by the engine on every contract that reads it.
#[derive(Debug, clap::Args)]
pub(crate) struct PrivacyArgs {
    /// A column that names individuals (repeat): COLUMN, or COLUMN=DOMAIN when columns of
    /// several tables name the same kind of individual (default domain: the column's name).
    /// Every result row must be backed by the contract's minimum of distinct values of it.
    #[arg(
        long = "identity",
        value_name = "COLUMN[=DOMAIN]",
        required_unless_present = "no_identity"
    )]
    identity: Vec<String>,
    /// The rows are about no one (room sensors, prices): declare no identity column.
    #[arg(long, conflicts_with = "identity")]
    no_identity: bool,
    /// Columns that may only be joined on, comma-separated: never filtered, grouped or let out.
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS")]
    join_only: Vec<String>,
    /// Columns that may only be aggregated (COUNT, SUM, AVG), comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS")]
    aggregate_only: Vec<String>,
    /// The bounds a numeric column is clamped to before a noised SUM or AVG (repeat):
    /// COLUMN=LO..HI with integers, e.g. `temperature=-20..60`.
    #[arg(long = "bounds", value_name = "COLUMN=LO..HI")]
    bounds: Vec<String>,
    /// The dataset's privacy budget: the ε its runs may spend per period, EPSILON/DAYS (`1/30`:
    /// ε 1 every 30 days). A dataset with a budget is read only by contracts that add noise.
    #[arg(long, value_name = "EPSILON/DAYS")]
    budget: Option<String>,
}

impl PrivacyArgs {
    fn declaration(&self) -> anyhow::Result<Privacy> {
        let identity = self
            .identity
            .iter()
            .map(|i| match i.split_once('=') {
                Some((column, domain)) => (column.to_owned(), domain.to_owned()),
                None => (i.clone(), i.to_lowercase()),
            })
            .collect();
        let bounds = self
            .bounds
            .iter()
            .map(|b| {
                let (column, range) = b
                    .split_once('=')
                    .with_context(|| format!("--bounds {b:?} is not COLUMN=LO..HI"))?;
                let range = Bounds::parse(range).with_context(|| format!("--bounds {b:?}"))?;
                Ok((column.to_owned(), range))
            })
            .collect::<anyhow::Result<_>>()?;
        let budget = self
            .budget
            .as_deref()
            .map(Budget::parse)
            .transpose()
            .context("--budget")?;
        Ok(Privacy {
            identity,
            join_only: self.join_only.clone(),
            aggregate_only: self.aggregate_only.clone(),
            bounds,
            budget,
        })
    }
}

/// How the engine counts the individuals behind each result row: one of the two rules.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub(crate) struct RuleArgs {
    /// The aggregation rule: the result is an aggregate (GROUP BY allowed columns; COUNT, SUM,
    /// AVG of plain columns), each group backed by at least MIN distinct individuals of each
    /// table, as the engine counts them from the owners' identity columns.
    #[arg(long, value_name = "MIN")]
    aggregation: Option<u64>,
    /// The list rule: rows matched across the datasets (findings), each backed by at least MIN
    /// distinct individuals of each identity domain, as the engine counts them.
    #[arg(long, value_name = "MIN")]
    list: Option<u64>,
}

impl RuleArgs {
    pub(crate) fn rule(&self) -> AnalysisRule {
        match (self.aggregation, self.list) {
            (Some(min_identities), _) => AnalysisRule::Aggregation { min_identities },
            (None, Some(min_identities)) => AnalysisRule::List { min_identities },
            // clap requires one of the two.
            (None, None) => AnalysisRule::Aggregation { min_identities: 0 },
        }
    }
}

/// The noise a contract's runs add (aggregation rule only).
#[derive(Debug, clap::Args)]
pub(crate) struct NoiseArgs {
    /// Add differential-privacy noise to every COUNT, SUM and AVG: each run spends EPSILON of
    /// the budget of every dataset it reads.
    #[arg(long = "noise", value_name = "EPSILON")]
    epsilon: Option<String>,
    /// With --noise: the most rows of one individual the aggregate reads (the noise is
    /// calibrated to what that many rows can move).
    #[arg(long, value_name = "K", default_value_t = 1, requires = "epsilon")]
    max_rows_per_identity: u32,
}

impl NoiseArgs {
    pub(crate) fn noise(&self) -> anyhow::Result<Option<Noise>> {
        let Some(epsilon) = &self.epsilon else {
            return Ok(None);
        };
        Ok(Some(Noise {
            epsilon: Epsilon::parse(epsilon).context("--noise")?,
            max_rows_per_identity: self.max_rows_per_identity,
        }))
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The approved contract's id.
    contract: ContractId,
    /// Attest with simulated evidence instead of this machine's TEE (configfs-tsm or
    /// /dev/sev-guest). Insecure: accepted only where the deployment's policy allows
    /// simulation, and every output says "simulated TEE".
    #[arg(long)]
    sim: bool,
    /// The measurement the simulated evidence reports (hex; default: the sim default).
    #[arg(long, value_name = "HEX", requires = "sim")]
    sim_measurement: Option<String>,
    /// The consortium's ledger key (PEM; `confide serve` keeps it in DATA/ledger/ledger.pub):
    /// the workload acts only on a ledger whose checkpoint this key signed, whatever the server
    /// or the network in between says.
    #[arg(long, env = "CONFIDE_LEDGER_KEY", value_name = "PEM")]
    ledger_key: PathBuf,
    #[command(flatten)]
    store: StoreArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ResultCommand {
    /// Download and decrypt a run's result, as one of its recipients.
    Fetch {
        /// The run's id.
        run: RunId,
        /// Write the result to FILE (created, 0600) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn fingerprint(home: &Home) -> anyhow::Result<MemberId> {
    Ok(MemberId::of(&home.load_public()?))
}

/// Proposes `actions` and votes for them as this member; the proposal's state after.
pub(crate) fn propose_and_vote(
    client: &Client,
    home: &Home,
    actions: Vec<Action>,
) -> anyhow::Result<(String, String)> {
    let r: Submitted = client.post_as(
        "/gov/proposals",
        &signed(home, &GovBody::Propose { actions })?,
    )?;
    let id = r.proposal.context("the server named no proposal")?;
    let state = vote(client, home, &id)?;
    Ok((id, state))
}

fn vote(client: &Client, home: &Home, proposal: &str) -> anyhow::Result<String> {
    let r: Submitted = client.post_as(
        &format!("/gov/proposals/{proposal}/ballots"),
        &signed(
            home,
            &GovBody::Ballot {
                proposal: proposal.to_owned(),
                vote: true,
            },
        )?,
    )?;
    Ok(r.state.map_or("?".to_owned(), |s| s.to_string()))
}

/// The member's key-exchange key at the broker, made on first use.
/// A key-exchange key found under this member's name but owned by another is refused, and so
/// is a public key that is not the one whose digest the ledger (verified under `ledger_key`)
/// recorded when the broker made it: a dataset key is never wrapped to a key its owner does
/// not hold at the broker, whatever the network answers.
fn member_kek(
    client: &Client,
    home: &Home,
    ledger_key: &confide_crypto::signing::VerifyingKey,
) -> anyhow::Result<(String, Vec<u8>)> {
    let me = fingerprint(home)?;
    let name = format!("kek-{}", &me.as_str()[..16]);
    let kek = match client.get_as::<KekAnswer>(&format!("/keks/{name}")) {
        Ok(r) => r.kek,
        Err(confide_client::ClientError::Refused { status: 404, .. }) => {
            let body = BrokerBody::KekCreate { name: name.clone() };
            client
                .post_as::<KekAnswer>("/keks", &signed(home, &body)?)?
                .kek
        }
        Err(e) => return Err(e.into()),
    };
    if kek.owner != me.as_str() {
        bail!(
            "the key-exchange key {name} at the broker belongs to {}, not to this member: \
             nothing was wrapped to it",
            kek.owner
        );
    }
    let der = confide_crypto::pem_decode(&kek.public_pem, "PUBLIC KEY")
        .context("the key-exchange key is not a PEM public key")?;
    crate::kms::check_kek(client, home, ledger_key, &name, me.as_str(), &der)?;
    Ok((name, der))
}

pub(crate) fn digest_file(path: &Path) -> anyhow::Result<String> {
    let f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let digest = confide_crypto::digest::sha256_reader(f)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(digest))
}

/// The schema and row count of a plaintext dataset file.
fn describe(file: &Path, format: Format) -> anyhow::Result<(Vec<(String, String)>, u64)> {
    match format {
        Format::Csv => {
            let f = std::fs::File::open(file)?;
            let columns = confide_cleanroom::runner::infer_csv_schema(BufReader::new(f), 10_000)?;
            let rows = BufReader::with_capacity(1 << 20, std::fs::File::open(file)?)
                .split(b'\n')
                .filter(|l| l.as_ref().is_ok_and(|l| !l.is_empty()))
                .count()
                .saturating_sub(1);
            Ok((columns, rows as u64))
        }
        Format::Parquet => {
            let (columns, rows) = confide_cleanroom::runner::describe_parquet(file)?;
            Ok((columns, rows))
        }
    }
}

/// A file to publish as a dataset: its path, the owner's name for it, its layout (default:
/// from the file's name) and the owner's privacy declaration.
pub(crate) struct Publication<'a> {
    pub(crate) file: &'a Path,
    pub(crate) name: &'a str,
    pub(crate) format: Option<&'a str>,
    pub(crate) privacy: Privacy,
}

pub(crate) fn publish(
    client: &Client,
    home: &Home,
    ledger_key: &confide_crypto::signing::VerifyingKey,
    publication: Publication<'_>,
    store: &Store,
) -> anyhow::Result<DatasetRecord> {
    let Publication {
        file,
        name,
        format,
        privacy,
    } = publication;
    let format = match format {
        Some(f) => {
            Format::from_name(f).with_context(|| format!("--format {f:?}: csv or parquet"))?
        }
        None if file.extension().is_some_and(|e| e == "parquet") => Format::Parquet,
        None => Format::Csv,
    };
    let (schema, rows) = describe(file, format)?;
    let schema: Vec<Column> = schema
        .into_iter()
        .map(|(name, ty)| Column { name, ty })
        .collect();
    // The declaration is checked against the file's columns before anything is encrypted,
    // deposited or uploaded.
    privacy
        .check(&schema)
        .context("the privacy declaration (--identity, --join-only, --aggregate-only)")?;
    // A key pair for this dataset only: the file is encrypted to it, and its secret half is
    // deposited with the key broker.
    let dataset_key = HpkeSecretKey::generate()?;
    // The ciphertext is written aside first: its digest names it in the store.
    let tmp = tempfile::NamedTempFile::new().context("creating a temporary file")?;
    {
        let input =
            std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
        let size = input.metadata().map(|m| m.len()).ok();
        let mut input = crate::progress::Progress::new(
            BufReader::with_capacity(1 << 20, input),
            size,
            "encrypting",
        );
        let mut out = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
        confide_crypto::envelope::encrypt(&[dataset_key.public_key()], &mut input, &mut out)?;
        out.flush()?;
        input.finish();
    }
    let digest = digest_file(tmp.path())?;
    let id: DatasetId = format!("{name}-{}", &digest[..12])
        .parse()
        .context("the dataset's name")?;
    let location = format!("datasets/{id}.cfd");
    // Deposit the dataset's key, wrapped to this member's key-exchange key, before the
    // ciphertext goes to the blob store: the key's name comes from the ciphertext's digest,
    // which nobody else can know before, so nobody can take the name first.
    let (kek, kek_der) = member_kek(client, home, ledger_key)?;
    let secret = dataset_key.to_bytes();
    let blob = confide_crypto::byok::wrap(
        &kek_der,
        &secret[..],
        confide_crypto::byok::OaepHash::Sha256,
    )?;
    let key = id.key_name();
    let body = BrokerBody::Import {
        name: key.clone(),
        kek,
        hash: "sha256".into(),
        blob: base64::engine::general_purpose::STANDARD.encode(blob),
        policy: Some(confide_kms::DATASET_RELEASE_POLICY.into()),
    };
    client.post_as::<KeyAnswer>(&format!("/keys/{key}/import"), &signed(home, &body)?)?;
    // The key of its difference-check history, made by the broker and released only to the
    // workloads of approved contracts: the owner holds it by name, never its bytes.
    let history_key = id.history_key_name();
    let body = BrokerBody::Create {
        name: history_key.clone(),
        policy: Some(confide_kms::DATASET_RELEASE_POLICY.into()),
    };
    client.post_as::<KeyAnswer>("/keys", &signed(home, &body)?)?;

    let size = tmp.as_file().metadata()?.len();
    let mut upload = crate::progress::Progress::new(
        BufReader::with_capacity(1 << 20, tmp.reopen()?),
        Some(size),
        "uploading",
    );
    store
        .runtime
        .block_on(store.blobs.put_reader(&location, &mut upload))?;
    upload.finish();

    let record = DatasetRecord {
        id,
        owner: fingerprint(home)?,
        name: name.to_owned(),
        format,
        schema,
        rows,
        size,
        digest,
        location,
        key,
        privacy: Some(privacy),
        public_key: Some(hex::encode(dataset_key.public_key().as_bytes())),
        history_key: Some(history_key),
    };
    record.check().context("the dataset's record")?;
    let (_, state) = propose_and_vote(client, home, vec![Action::RegisterDataset(record.clone())])?;
    if state != "accepted" {
        bail!("the dataset's registration is {state}, not accepted");
    }
    Ok(record)
}

/// Appends `file` to dataset `dataset` (this member's) as its next version: checked to have
/// the dataset's columns, encrypted to the dataset's key (its public half, as the ledger
/// verified under `ledger_key` records it), uploaded, and registered with the owner's vote.
/// The version, as the ledger then holds it.
pub(crate) fn append(
    client: &Client,
    home: &Home,
    ledger_key: &VerifyingKey,
    dataset: &DatasetId,
    file: &Path,
    store: &Store,
) -> anyhow::Result<DatasetVersion> {
    let governance = || -> anyhow::Result<confide_gov::Governance> {
        Ok(crate::serve::verified_ledger(client, home, ledger_key)?.governance()?)
    };
    let gov = governance()?;
    let record = gov
        .datasets()
        .get(dataset)
        .with_context(|| format!("no dataset {dataset} on the ledger"))?;
    if record.owner != fingerprint(home)? {
        bail!("dataset {dataset} is not this member's: only its owner appends to it");
    }
    let public_key = record
        .public_key
        .as_deref()
        .and_then(|k| hex::decode(k).ok())
        .and_then(|k| confide_crypto::hpke::HpkePublicKey::from_bytes(&k).ok())
        .with_context(|| {
            format!(
                "dataset {dataset} was registered without its key's public half: publish it \
                 again to append to it"
            )
        })?;
    // The batch has the dataset's columns, by name and in order (a Parquet file by type as
    // well; a CSV file is read with the dataset's types).
    let (columns, rows) = describe(file, record.format)?;
    let same = columns.len() == record.schema.len()
        && columns.iter().zip(&record.schema).all(|((name, ty), c)| {
            *name == c.name && (record.format == Format::Csv || *ty == c.ty)
        });
    if !same {
        let names = |c: Vec<&str>| c.join(",");
        bail!(
            "{} has the columns {}; dataset {dataset} has {}",
            file.display(),
            names(columns.iter().map(|(n, _)| n.as_str()).collect()),
            names(record.schema.iter().map(|c| c.name.as_str()).collect())
        );
    }
    let tmp = tempfile::NamedTempFile::new().context("creating a temporary file")?;
    {
        let mut input = BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?,
        );
        let mut out = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
        confide_crypto::envelope::encrypt(&[public_key], &mut input, &mut out)?;
        out.flush()?;
    }
    let digest = digest_file(tmp.path())?;
    let location = format!("datasets/{dataset}/{digest}.cfd");
    let size = tmp.as_file().metadata()?.len();
    store
        .runtime
        .block_on(store.blobs.put_reader(&location, &mut tmp.reopen()?))?;
    let version = confide_model::Version {
        rows,
        size,
        digest,
        location,
    };
    let action = Action::AppendDataset {
        dataset: dataset.clone(),
        version: version.clone(),
    };
    let (_, state) = propose_and_vote(client, home, vec![action])?;
    if state != "accepted" {
        bail!("the new version of {dataset} is {state}, not accepted");
    }
    governance()?
        .versions(dataset)
        .iter()
        .find(|v| v.version == version)
        .cloned()
        .context("the ledger does not hold the version it accepted")
}

pub(crate) fn dataset(cmd: DatasetCommand, home: &Home, server: &str) -> anyhow::Result<()> {
    let client = member_client(home, server)?;
    match cmd {
        DatasetCommand::Publish {
            file,
            name,
            format,
            privacy,
            store,
            json,
        } => {
            let publication = Publication {
                file: &file,
                name: &name,
                format: format.as_deref(),
                privacy: privacy.declaration()?,
            };
            let r = publish(
                &client,
                home,
                &crate::serve::pinned_ledger_key(home)?,
                publication,
                &store.open()?,
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "published {} ({} rows, {} bytes encrypted, digest {}); its key is with the \
                     key broker, released only for approved contracts",
                    r.id, r.rows, r.size, r.digest
                );
            }
        }
        DatasetCommand::Budget {
            dataset,
            budget: Some(budget),
        } => {
            let budget = Budget::parse(&budget).context("the budget")?;
            let (id, state) =
                propose_and_vote(&client, home, vec![Action::SetBudget { dataset, budget }])?;
            println!("budget proposal {id}: {state} (its owner's vote decides it)");
        }
        DatasetCommand::Budget {
            dataset,
            budget: None,
        } => {
            let gov = crate::serve::verified_governance(&client, home)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            match gov.budget(&dataset, now) {
                Some((spent, budget)) => println!(
                    "dataset {dataset}: ε {spent} spent of {} this period of {} days; ε {} left",
                    budget.epsilon,
                    budget.period_days,
                    Epsilon::from_micros(budget.epsilon.micros().saturating_sub(spent.micros()))
                ),
                None => println!("dataset {dataset} has no privacy budget"),
            }
        }
        DatasetCommand::Append {
            dataset,
            file,
            store,
        } => {
            let key = crate::serve::pinned_ledger_key(home)?;
            let v = append(&client, home, &key, &dataset, &file, &store.open()?)?;
            println!(
                "appended version {} of {dataset}: {} rows, {} bytes encrypted, digest {}",
                v.number, v.version.rows, v.version.size, v.version.digest
            );
        }
        DatasetCommand::Versions { dataset } => {
            let gov = crate::serve::verified_governance(&client, home)?;
            let versions = gov.versions(&dataset);
            if versions.is_empty() {
                bail!("no dataset {dataset} on the ledger");
            }
            println!("{}", serde_json::to_string_pretty(versions)?);
        }
        DatasetCommand::List => {
            // The datasets as this member's replay of the verified ledger registers them.
            let gov = crate::serve::verified_governance(&client, home)?;
            println!("{}", serde_json::to_string_pretty(gov.datasets())?);
        }
    }
    Ok(())
}

fn recipient(arg: &str) -> anyhow::Result<MemberId> {
    if Path::new(arg).is_file() {
        let id = confide_identity::PublicIdentity::load(Path::new(arg))
            .with_context(|| format!("{arg} is not a public identity"))?;
        return Ok(MemberId::of(&id));
    }
    arg.parse().with_context(|| {
        format!("--recipient {arg:?} is neither an identity file nor a fingerprint")
    })
}

/// Builds a contract from its parts.
#[allow(clippy::too_many_arguments)]
pub(crate) fn build_contract(
    tables: &[String],
    sql: String,
    measurements: &[String],
    recipients: &[String],
    columns: Vec<String>,
    rule: AnalysisRule,
    noise: Option<Noise>,
    max_rows: u64,
    refuse: bool,
) -> anyhow::Result<Contract> {
    let tables = tables
        .iter()
        .map(|t| {
            let (name, dataset) = t
                .split_once('=')
                .with_context(|| format!("--table {t:?} is not NAME=DATASET"))?;
            let dataset: DatasetId = dataset.parse().with_context(|| format!("--table {t:?}"))?;
            Ok((name.to_owned(), dataset))
        })
        .collect::<anyhow::Result<_>>()?;
    let measurements = measurements
        .iter()
        .map(|m| {
            let (kind, value) = m
                .split_once(':')
                .with_context(|| format!("--measurement {m:?} is not KIND:HEX"))?;
            Measurement::parse(kind, &value.to_lowercase())
                .with_context(|| format!("--measurement {m:?}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let contract = Contract {
        tables,
        sql,
        measurements,
        recipients: recipients
            .iter()
            .map(|r| recipient(r))
            .collect::<anyhow::Result<_>>()?,
        output: OutputRules {
            columns,
            rule: Some(rule),
            min_group: None,
            noise,
            max_rows,
            on_violation: if refuse {
                OnViolation::Refuse
            } else {
                OnViolation::Suppress
            },
        },
        versions: Default::default(),
    };
    contract.check()?;
    Ok(contract)
}

/// The columns a dataset's ledger record gives, as a schema.
fn record_schema(record: &DatasetRecord) -> anyhow::Result<SchemaRef> {
    let columns: Vec<(String, String)> = record
        .schema
        .iter()
        .map(|c| (c.name.clone(), c.ty.clone()))
        .collect();
    Ok(confide_cleanroom::runner::schema_from(&columns)?)
}

/// Proposes `contract` (and votes for it, which counts if this member owns a dataset of it),
/// once its SQL plans over its datasets' columns as the ledger records them and gives a result
/// its output rules let leave: a contract that could never run is refused before any owner is
/// asked to approve it.
pub(crate) fn propose_contract(
    client: &Client,
    home: &Home,
    contract: &Contract,
) -> anyhow::Result<(ContractId, String)> {
    // The server's listing is enough here: this only spares the owners a contract that could
    // never run; what they approve is checked against the ledger when they approve it.
    let listing: DatasetList = serde_json::from_value(client.get("/gov/datasets")?)
        .context("the server's list of datasets")?;
    let datasets = listing.datasets;
    let tables = contract
        .tables
        .iter()
        .map(|(table, dataset)| {
            let record = datasets
                .get(dataset)
                .with_context(|| format!("table {table}: no dataset {dataset} on the ledger"))?;
            let privacy = record.privacy.clone().with_context(|| {
                format!(
                    "table {table}: dataset {dataset} was published without a privacy \
                     declaration; no contract reads it until its owner publishes it again with one"
                )
            })?;
            anyhow::Ok((table.clone(), record_schema(record)?, privacy))
        })
        .collect::<Result<Vec<_>, _>>()?;
    tokio::runtime::Builder::new_current_thread()
        .build()
        .context("starting the async runtime")?
        .block_on(confide_cleanroom::runner::check(
            &contract.sql,
            &tables,
            &contract.output,
        ))
        .context("checking the contract before proposing it")?;
    let approval = Approval::of(contract.clone());
    let id = approval.id.clone();
    let (_, state) = propose_and_vote(client, home, vec![Action::ApproveContract(approval)])?;
    Ok((id, state))
}

/// The open proposal to approve contract `id`, as its proposer signed it, and the terms it
/// approves. The proposal is read from its own ledger entry (whose SHA-256 is the proposal's
/// id, which the ballot names), not from the server's listing; it must carry that one action
/// and nothing else, with terms whose digest is `id`. So a ballot never approves more, or
/// other, than the contract the member asked to approve.
fn contract_proposal(client: &Client, id: &ContractId) -> anyhow::Result<(String, Contract)> {
    let listing: ProposalList = serde_json::from_value(client.get("/gov/proposals")?)
        .context("the server's list of proposals")?;
    let approves = |p: &&Proposal| {
        p.state == ProposalState::Open
            && p.actions
                .iter()
                .any(|a| matches!(a, Action::ApproveContract(c) if c.id == *id))
    };
    let proposals: Vec<&Proposal> = listing.proposals.iter().filter(approves).collect();
    // A proposal of that one action (the earliest, if the contract was proposed twice).
    let listed = proposals
        .iter()
        .filter(|p| p.actions.len() == 1)
        .min_by_key(|p| p.seq)
        .or(proposals.first())
        .with_context(|| format!("no open proposal to approve contract {id}"))?;
    let (proposal, seq) = (listed.id.as_str(), listed.seq);
    let entry = client.get_bytes(&format!("/ledger/entries/{seq}"))?;
    if hex::encode(confide_crypto::digest::sha256(&entry)) != proposal {
        bail!("ledger entry {seq} is not proposal {proposal}: the server's listing is false");
    }
    let sign1 = confide_ledger::cose::Sign1::parse(&entry)
        .context("the proposal's ledger entry is not a signed request")?;
    let body = GovBody::from_json(sign1.payload.as_deref().unwrap_or_default())
        .context("the proposal's ledger entry is not a governance request")?;
    let GovBody::Propose { actions } = body else {
        bail!("ledger entry {seq} is not a proposal");
    };
    let [action] = &actions[..] else {
        bail!(
            "proposal {proposal} approves contract {id} together with {} other action(s); \
             it is not approved: `confide gov vote` shows every action it would approve",
            actions.len().saturating_sub(1)
        );
    };
    let Action::ApproveContract(approval) = action else {
        bail!("proposal {proposal} does not approve contract {id}");
    };
    if approval.id != *id {
        bail!("proposal {proposal} does not approve contract {id}");
    }
    let contract = approval.contract.clone();
    if contract.id() != *id {
        bail!("the terms in proposal {proposal} are not contract {id} (their digest differs)");
    }
    Ok((proposal.to_owned(), contract))
}

/// Approves contract `id` (see [`contract_proposal`]); the proposal's state after, and the
/// terms approved.
pub(crate) fn approve_contract(
    client: &Client,
    home: &Home,
    id: &ContractId,
) -> anyhow::Result<(String, Contract)> {
    let (proposal, contract) = contract_proposal(client, id)?;
    Ok((vote(client, home, &proposal)?, contract))
}

pub(crate) fn contract(cmd: ContractCommand, home: &Home, server: &str) -> anyhow::Result<()> {
    let client = member_client(home, server)?;
    match cmd {
        ContractCommand::Propose {
            tables,
            sql,
            measurements,
            recipients,
            columns,
            rule,
            noise,
            max_rows,
            refuse,
            versions,
        } => {
            let sql = std::fs::read_to_string(&sql)
                .with_context(|| format!("reading {}", sql.display()))?;
            let mut c = build_contract(
                &tables,
                sql,
                &measurements,
                &recipients,
                columns,
                rule.rule(),
                noise.noise()?,
                max_rows,
                refuse,
            )?;
            for v in &versions {
                let (table, chosen) = v
                    .split_once('=')
                    .with_context(|| format!("--versions {v:?} is not TABLE=VERSIONS"))?;
                let chosen =
                    Versions::parse(chosen).with_context(|| format!("--versions {v:?}"))?;
                c.versions.insert(table.to_owned(), chosen);
            }
            c.check().context("--versions")?;
            let (id, state) = propose_contract(&client, home, &c)?;
            println!(
                "contract {id} proposed ({state}); every owner of {} must approve it",
                c.datasets().join(", ")
            );
        }
        ContractCommand::Approve { id } => {
            let (state, terms) = approve_contract(&client, home, &id)?;
            println!(
                "approved contract {id}, exactly these terms:\n{}\nthe contract's proposal is now \
                 {state}",
                serde_json::to_string_pretty(&terms.to_value())?
            );
        }
        ContractCommand::Revoke { id } => {
            let (_, state) = propose_and_vote(&client, home, vec![Action::RevokeContract { id }])?;
            println!("revocation {state}");
        }
        ContractCommand::Show { id } => {
            // From the ledger verified under the pinned key, replayed here: what every owner
            // approved, not what an endpoint says.
            let gov = crate::serve::verified_governance(&client, home)?;
            let c = gov.contracts().get(&id).with_context(|| {
                format!("no contract {id} on the ledger (not yet approved by every owner?)")
            })?;
            println!("{}", serde_json::to_string_pretty(c)?);
        }
    }
    Ok(())
}

/// Runs contract `id` as its workload would, with the workload's own code
/// ([`confide_workload::run`]): the ledger verified under `ledger_key`, then attest, keys,
/// query, output rules, result, run record.
pub(crate) fn run_contract(
    client: &Client,
    ledger_key: &VerifyingKey,
    id: &ContractId,
    tee: Tee,
    store: &Store,
) -> anyhow::Result<RunOutcome> {
    let launch = Launch {
        ledger_key: *ledger_key,
        tee,
    };
    Ok(confide_workload::run(
        &launch,
        client,
        &store.blobs,
        &store.runtime,
        id,
    )?)
}

pub(crate) fn run(args: RunArgs, server: &str) -> anyhow::Result<()> {
    let client = Client::new(server);
    let ledger_key = crate::ledger::read_key(&args.ledger_key)?;
    let tee =
        Tee::from_flags(args.sim, args.sim_measurement.as_deref()).map_err(anyhow::Error::msg)?;
    let out = run_contract(
        &client,
        &ledger_key,
        &args.contract,
        tee,
        &args.store.open()?,
    )?;
    if args.json {
        println!(
            "{}",
            json!({"run": out.run, "rows": out.rows, "suppressed": out.suppressed,
                   "simulated": out.simulated, "audit_seq": out.audit_seq})
        );
    } else {
        println!(
            "run {}: {} row(s), {} suppressed by the output rules; recorded on the ledger (entry {}){}",
            out.run,
            out.rows,
            out.suppressed,
            out.audit_seq,
            if out.simulated {
                " — SIMULATED TEE: this run proves nothing about hardware"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// Downloads and decrypts run `id`'s result as this member. The run's record is taken from the
/// ledger as verified under `ledger_key` (and checked to be the report its workload signed),
/// never from an endpoint's answer; the ciphertext must have the digest it records.
pub(crate) fn fetch_result(
    client: &Client,
    home: &Home,
    ledger_key: &confide_crypto::signing::VerifyingKey,
    id: &RunId,
    store: &Store,
) -> anyhow::Result<(Zeroizing<Vec<u8>>, bool)> {
    let record = crate::serve::verified_ledger(client, home, ledger_key)?.run(id)?;
    let me = fingerprint(home)?;
    let output = match &record.output {
        Some(output) => output,
        None => bail!(
            "run {id} released no result: {}",
            record
                .reason
                .as_deref()
                .unwrap_or("the output rules refused it")
        ),
    };
    if !output.recipients.contains(&me) {
        bail!("this member ({me}) is not a recipient of run {id}");
    }
    let ciphertext = store
        .runtime
        .block_on(store.blobs.get_checked(&output.location, &output.digest))
        .context("the stored result is not the one the run recorded")?;
    let identity = home.load()?;
    let mut out = Zeroizing::new(Vec::new());
    confide_crypto::envelope::Decryptor::new(identity.hpke_key(), &ciphertext[..])?
        .decrypt_to(&mut *out)?;
    Ok((out, record.simulated))
}

pub(crate) fn result(cmd: ResultCommand, home: &Home, server: &str) -> anyhow::Result<()> {
    let ResultCommand::Fetch { run, out, store } = cmd;
    let client = member_client(home, server)?;
    let ledger_key = crate::serve::pinned_ledger_key(home)?;
    let (csv, simulated) = fetch_result(&client, home, &ledger_key, &run, &store.open()?)?;
    match out {
        Some(path) => confide_crypto::files::write_new(&path, &csv, 0o600)
            .with_context(|| format!("writing {}", path.display()))?,
        None => std::io::stdout().write_all(&csv)?,
    }
    if simulated {
        eprintln!("SIMULATED TEE: this result was computed without hardware attestation");
    }
    Ok(())
}
