//! The sealed start: without the development profile, the server starts knowing no key. It
//! answers `GET /kms/status` and `POST /kms/unseal` (`{"share": TEXT}`, one recovery share per
//! request, from each holder) and refuses everything else with 503 `sealed`. When the
//! threshold of shares rebuilds the master key (checked against the store's seal), it opens
//! the data directory with it (the key store, the ledger's and tokens' signing keys, sealed
//! under it) and from then on serves every route. Shares live only in memory, and a wrong set
//! is forgotten whole.

use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use confide_kms::Unsealer;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::problem::Problem;
use crate::{Config, ServeError};

struct Sealed {
    config: Config,
    unsealer: Mutex<Unsealer>,
    app: OnceLock<Router>,
}

/// The router of a sealed start over the data directory of `config`, which must hold a key
/// store initialised with recovery shares.
pub fn sealed_router(config: Config) -> Result<Router, ServeError> {
    let unsealer = Unsealer::new(&config.data.join("kms"))
        .map_err(|e| ServeError::Config(format!("the key store: {e}")))?;
    let state = Arc::new(Sealed {
        config,
        unsealer: Mutex::new(unsealer),
        app: OnceLock::new(),
    });
    Ok(Router::new()
        .route("/kms/status", get(status))
        .route("/kms/unseal", post(unseal))
        .fallback(forward)
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(state))
}

fn sealed() -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "sealed",
        "The service is sealed",
        "the service waits for its recovery shares (confide kms unseal)",
    )
}

async fn forward(State(s): State<Arc<Sealed>>, request: Request) -> Response {
    match s.app.get() {
        Some(app) => match app.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        None => sealed().into_response(),
    }
}

async fn status(State(s): State<Arc<Sealed>>) -> Result<Json<Value>, Problem> {
    let progress = s
        .unsealer
        .lock()
        .map_err(|e| Problem::internal(e.to_string()))?
        .progress();
    Ok(Json(json!({
        "profile": "sealed",
        "sealed": s.app.get().is_none(),
        "shares_given": progress.given,
        "threshold": progress.threshold,
    })))
}

async fn unseal(State(s): State<Arc<Sealed>>, body: Bytes) -> Result<Json<Value>, Problem> {
    if s.app.get().is_some() {
        return Ok(Json(json!({"sealed": false})));
    }
    let req: Value = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request(format!("the request is not JSON: {e}")))?;
    let share = req
        .get("share")
        .and_then(Value::as_str)
        .ok_or_else(|| Problem::bad_request("no share"))?;
    let (master, progress) = {
        let mut unsealer = s
            .unsealer
            .lock()
            .map_err(|e| Problem::internal(e.to_string()))?;
        let master = unsealer.add(share)?;
        (master, unsealer.progress())
    };
    let Some(master) = master else {
        return Ok(Json(json!({
            "sealed": true,
            "shares_given": progress.given,
            "threshold": progress.threshold,
        })));
    };
    let config = s.config.clone();
    let opened = tokio::task::spawn_blocking(move || crate::open(&config, Some(master)))
        .await
        .map_err(|e| Problem::internal(e.to_string()))?;
    let (state, opened) = opened.map_err(|e| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "open-failed",
            "The data directory did not open with the master key",
            e.to_string(),
        )
    })?;
    // A concurrent unseal may have won; either way one app serves.
    let _ = s.app.set(crate::router(state));
    Ok(Json(
        json!({"sealed": false, "ledger_entries": opened.entries}),
    ))
}
