//! `confide kbs …`: resources served over the Trustee KBS protocol. A member stores a resource
//! (`put-resource`); a workload fetches it (`get-resource`, here with Trustee's `sample`
//! evidence, for testing a server that allows simulated TEEs). [`round`] is one complete KBS
//! exchange, shared with the load generator (`confide bench kbs`).

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use base64::Engine as _;
use clap::Subcommand;
use confide_identity::Home;
use confide_model::ResourceAnswer;
use serde_json::{Value, json};
use zeroize::Zeroizing;

#[derive(Debug, Subcommand)]
pub(crate) enum KbsCommand {
    /// Store FILE as the resource REPO/TYPE/TAG (as its owner); attested workloads whose
    /// token the resource policy allows fetch it.
    PutResource {
        /// The resource's path, REPO/TYPE/TAG.
        path: String,
        /// The file holding the resource (at most 256 KiB).
        file: PathBuf,
        /// A Rego resource policy (package confide.resource, rule allow) over
        /// {token, resource}. This or --any-attested-tee is required when the resource is new:
        /// there is no default that gives a resource out.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Give the resource to any workload whose token shows code the consortium trusts
        /// (its measurement matched a trusted one), on an up-to-date or out-of-date platform.
        #[arg(long, conflicts_with = "policy")]
        any_attested_tee: bool,
        /// Development only: give the resource to workloads on simulated evidence (`sim`, or
        /// Trustee's `sample`, which measures nothing). A sealed server issues no such token.
        #[arg(long, conflicts_with_all = ["policy", "any_attested_tee"])]
        insecure_simulated_tee: bool,
    },
    /// Fetch a resource over the KBS protocol as a workload would, attesting with Trustee
    /// `sample` evidence. Insecure: only servers that allow simulated TEEs accept it.
    GetResource {
        /// The resource's path, REPO/TYPE/TAG.
        path: String,
        /// Attest with unsigned sample evidence (required: there is no other way here yet).
        #[arg(long, required = true)]
        insecure_sample: bool,
        /// Write the resource to FILE (created, mode 0600) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

pub(crate) fn run(cmd: KbsCommand, home: &Home, server: &str) -> anyhow::Result<()> {
    match cmd {
        KbsCommand::PutResource {
            path,
            file,
            policy,
            any_attested_tee,
            insecure_simulated_tee,
        } => {
            let content = Zeroizing::new(
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?,
            );
            let policy = policy
                .map(|p| {
                    std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
                })
                .transpose()?
                .or_else(|| {
                    any_attested_tee.then(|| confide_kms::ATTESTED_RESOURCE_POLICY.to_owned())
                })
                .or_else(|| {
                    insecure_simulated_tee
                        .then(|| confide_kms::INSECURE_SIMULATED_RESOURCE_POLICY.to_owned())
                });
            if policy.is_none() {
                eprintln!(
                    "no policy given: a new resource is given to no one, and one that exists \
                     keeps its policy (--policy FILE or --any-attested-tee sets one)"
                );
            }
            let answer = put_resource(home, server, &path, &content, policy.as_deref())?;
            println!(
                "stored {} ({} bytes), owner {}; audit entry {}",
                answer.resource.path, answer.resource.size, answer.resource.owner, answer.audit_seq
            );
            Ok(())
        }
        KbsCommand::GetResource { path, out, .. } => {
            let agent = agent();
            let content = round(&agent, server.trim_end_matches('/'), &path)?;
            match out {
                Some(out) => confide_crypto::files::write_new(&out, &content, 0o600)
                    .with_context(|| format!("writing {}", out.display()))?,
                None => std::io::stdout().write_all(&content)?,
            }
            eprintln!("WARNING: fetched with sample evidence, which proves nothing about hardware");
            Ok(())
        }
    }
}

/// Stores a resource as this member; the server's answer.
pub(crate) fn put_resource(
    home: &Home,
    server: &str,
    path: &str,
    content: &[u8],
    policy: Option<&str>,
) -> anyhow::Result<ResourceAnswer> {
    let body = confide_model::BrokerBody::KbsPut {
        path: path.to_owned(),
        content: base64::engine::general_purpose::STANDARD.encode(content),
        policy: policy.map(str::to_owned),
    };
    Ok(crate::serve::Client::new(server).post_as(
        &format!("/kbs/v0/resource/{path}"),
        &crate::serve::signed(home, &body)?,
    )?)
}

/// An HTTP agent that hands every status to the caller.
pub(crate) fn agent() -> ureq::Agent {
    confide_client::agent()
}

/// One complete KBS round with Trustee's `sample` evidence ([`confide_client::kbs`]).
pub(crate) fn round(
    agent: &ureq::Agent,
    base: &str,
    path: &str,
) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    Ok(confide_client::kbs::sample_round(agent, base, path)?)
}

/// `confide bench kbs`: complete KBS rounds (auth, attest with `sample` evidence, resource)
/// from concurrent clients, each on its own keep-alive connection, against a server on
/// loopback; rounds per second and latency percentiles per client count.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// The client counts to run, one after another.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    clients: Vec<usize>,
    /// How long to run each client count.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Fetch this resource from the server named by --server (which must allow sample
    /// evidence). Without it, a development server is started on loopback in a temporary
    /// directory, with a member and a 32-byte resource of its own.
    #[arg(long, value_name = "REPO/TYPE/TAG")]
    resource: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn bench(args: &BenchArgs, server: &str) -> anyhow::Result<()> {
    let _embedded;
    let (base, path) = match &args.resource {
        Some(path) => (server.trim_end_matches('/').to_owned(), path.clone()),
        None => {
            let e = crate::embedded::Embedded::start()?;
            let home = Home::new(e.dir().join("home"));
            home.init("bench")
                .context("creating the benchmark's member")?;
            let founder: Value = serde_json::from_str(&home.load_public()?.to_json())?;
            crate::serve::Client::new(&e.url).post(
                "/gov/found",
                &crate::serve::signed(&home, &json!({"type": "found", "member": founder}))?,
            )?;
            let secret = Zeroizing::new(confide_crypto::random::array::<32>()?);
            put_resource(
                &home,
                &e.url,
                "bench/key/one",
                &secret[..],
                // The benchmark's guests send Trustee's `sample` evidence, which measures
                // nothing: only the development profile's simulated-evidence policy gives it.
                Some(confide_kms::INSECURE_SIMULATED_RESOURCE_POLICY),
            )?;
            let base = e.url.clone();
            _embedded = e;
            (base, "bench/key/one".to_owned())
        }
    };
    let seconds = std::time::Duration::from_secs_f64(args.seconds.max(0.1));
    let mut results = Vec::new();
    if !args.json {
        println!("KBS rounds (auth, attest with sample evidence, resource) against {base},");
        println!("and in the same run three bare HTTP requests (GET /kms/status) per round:");
        println!(
            "{:>8} {:>8} {:>10} {:>9} {:>9} {:>13} {:>8}",
            "clients", "rounds", "rounds/s", "p50 ms", "p99 ms", "bare rounds/s", "ratio"
        );
    }
    for &clients in &args.clients {
        let clients = clients.max(1);
        let mut r = run_clients(clients, seconds, |agent| {
            round(agent, &base, &path).map(drop)
        })?;
        // The peer in the same run: the transport a round costs without attestation, policy,
        // cryptography or audit.
        let bare = run_clients(clients, seconds, |agent| {
            for _ in 0..3 {
                agent
                    .get(format!("{base}/kms/status"))
                    .call()?
                    .body_mut()
                    .read_to_vec()?;
            }
            Ok(())
        })?;
        let (kbs, http) = (
            r["rounds_per_second"].as_f64().unwrap_or(0.0),
            bare["rounds_per_second"].as_f64().unwrap_or(0.0),
        );
        r["bare_rounds_per_second"] = json!(http);
        r["ratio_to_bare"] = json!(if http > 0.0 { kbs / http } else { 0.0 });
        if !args.json {
            println!(
                "{:>8} {:>8} {:>10.1} {:>9.2} {:>9.2} {:>13.1} {:>7.3}x",
                clients,
                r["rounds"].as_u64().unwrap_or(0),
                kbs,
                r["p50_ms"].as_f64().unwrap_or(0.0),
                r["p99_ms"].as_f64().unwrap_or(0.0),
                http,
                r["ratio_to_bare"].as_f64().unwrap_or(0.0),
            );
        }
        results.push(r);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    Ok(())
}

/// Runs `work` in a loop from `clients` threads, each with its own connection, for `seconds`;
/// the rounds, their rate and latency percentiles.
fn run_clients(
    clients: usize,
    seconds: std::time::Duration,
    work: impl Fn(&ureq::Agent) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<Value> {
    use std::time::Instant;
    let start = Instant::now();
    let deadline = start + seconds;
    let work = &work;
    let latencies = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(move || -> anyhow::Result<Vec<std::time::Duration>> {
                    let agent = agent();
                    let mut out = Vec::new();
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        work(&agent)?;
                        out.push(t.elapsed());
                    }
                    Ok(out)
                })
            })
            .collect();
        let mut all = Vec::new();
        for w in workers {
            all.extend(
                w.join()
                    .map_err(|_| anyhow::anyhow!("a client thread panicked"))??,
            );
        }
        anyhow::Ok(all)
    })?;
    let elapsed = start.elapsed().as_secs_f64();
    let mut sorted = latencies;
    sorted.sort_unstable();
    let pct = |p: f64| -> f64 {
        if sorted.is_empty() {
            return 0.0;
        }
        let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1].as_secs_f64() * 1000.0
    };
    Ok(json!({
        "clients": clients,
        "rounds": sorted.len(),
        "seconds": elapsed,
        "rounds_per_second": sorted.len() as f64 / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }))
}
