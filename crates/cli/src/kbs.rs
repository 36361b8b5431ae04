//! `confide kbs …`: resources served over the Trustee KBS protocol. A member stores a resource
//! (`put-resource`); a workload fetches it (`get-resource`, here with Trustee's `sample`
//! evidence, for testing a server that allows simulated TEEs). [`round`] is one complete KBS
//! exchange, shared with the load generator (`confide bench kbs`).

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use base64::Engine as _;
use clap::Subcommand;
use confide_crypto::jwe::DecryptionKey;
use confide_identity::Home;
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
        /// {token, resource}; default: the token's status is affirming or warning.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
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
        KbsCommand::PutResource { path, file, policy } => {
            let content = Zeroizing::new(
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?,
            );
            let policy = policy
                .map(|p| {
                    std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
                })
                .transpose()?;
            let answer = put_resource(home, server, &path, &content, policy.as_deref())?;
            println!(
                "stored {} ({} bytes), owner {}; audit entry {}",
                answer["resource"]["path"].as_str().unwrap_or(&path),
                answer["resource"]["size"],
                answer["resource"]["owner"].as_str().unwrap_or("?"),
                answer["audit_seq"]
            );
            Ok(())
        }
        KbsCommand::GetResource { path, out, .. } => {
            let agent = agent();
            let content = round(&agent, server.trim_end_matches('/'), &path)?;
            match out {
                Some(out) => {
                    use std::os::unix::fs::OpenOptionsExt as _;
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&out)
                        .with_context(|| format!("creating {}", out.display()))?;
                    f.write_all(&content)
                        .and_then(|()| f.sync_all())
                        .with_context(|| format!("writing {}", out.display()))?;
                }
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
) -> anyhow::Result<Value> {
    let mut body = json!({
        "type": "kbs.put",
        "path": path,
        "content": base64::engine::general_purpose::STANDARD.encode(content),
    });
    if let Some(p) = policy {
        body["policy"] = json!(p);
    }
    crate::serve::Client::new(server).post(
        &format!("/kbs/v0/resource/{path}"),
        &crate::serve::signed(home, &body)?,
    )
}

/// An HTTP agent that hands every status to the caller.
pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn answer(
    what: &str,
    mut response: ureq::http::Response<ureq::Body>,
) -> anyhow::Result<(Option<String>, Value)> {
    let status = response.status();
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    let body: Value = response
        .body_mut()
        .read_json()
        .unwrap_or_else(|_| json!({"detail": "the answer is not JSON"}));
    if !status.is_success() {
        bail!(
            "{what}: the KBS refused ({}): {} ({})",
            status.as_u16(),
            body["detail"].as_str().unwrap_or("no detail"),
            body["type"].as_str().unwrap_or("no type")
        );
    }
    Ok((cookie, body))
}

/// One complete KBS round, as Trustee's `kbs_protocol` does it: auth, attest with `sample`
/// evidence binding a fresh P-256 key, fetch `path` and open its JWE.
pub(crate) fn round(
    agent: &ureq::Agent,
    base: &str,
    path: &str,
) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let request = json!({
        "version": confide_server::KBS_PROTOCOL_VERSION,
        "tee": "sample",
        "extra-params": {"supported-hash-algorithms": ["sha384"]},
    });
    let (cookie, challenge) = answer(
        "auth",
        agent
            .post(format!("{base}/kbs/v0/auth"))
            .header("content-type", "application/json")
            .send(request.to_string())
            .with_context(|| format!("reaching {base}"))?,
    )?;
    let cookie = cookie.context("auth: the KBS set no session cookie")?;
    let nonce = challenge["nonce"]
        .as_str()
        .context("auth: the challenge has no nonce")?;
    let key = DecryptionKey::generate_p256()?;
    let runtime_data = json!({"nonce": nonce, "tee-pubkey": key.public_jwk()?});
    let digest = confide_server::kbs_runtime_data_digest(&runtime_data, &json!(""));
    let attestation = json!({
        "init-data": null,
        "runtime-data": runtime_data,
        "tee-evidence": {
            "primary_evidence": {
                "report_data": base64::engine::general_purpose::STANDARD.encode(digest),
                "svn": "1",
            },
            "additional_evidence": "",
        },
    });
    answer(
        "attest",
        agent
            .post(format!("{base}/kbs/v0/attest"))
            .header("content-type", "application/json")
            .header("cookie", &cookie)
            .send(attestation.to_string())
            .with_context(|| format!("reaching {base}"))?,
    )?;
    let (_, jwe) = answer(
        "resource",
        agent
            .get(format!("{base}/kbs/v0/resource/{path}"))
            .header("cookie", &cookie)
            .call()
            .with_context(|| format!("reaching {base}"))?,
    )?;
    key.decrypt(&jwe).context("opening the resource's JWE")
}
