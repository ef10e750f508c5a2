//! Sentry-compatible ingest: `POST /api/{project_id}/envelope/` and `/api/{project_id}/store/`.
//! A request is authenticated by the app's DSN public key, rate-limited per key, decompressed
//! under a cap, parsed ([`updraft_core::ingest::envelope`]), scrubbed and hashed
//! ([`updraft_core::ingest::payload`]) and only then handed to the [writer](writer) — nothing
//! unscrubbed reaches the store. Admin reads and privacy operations are in [`admin`].

pub mod admin;
pub mod auth;
pub mod decode;
pub mod writer;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use updraft_core::ingest::{envelope, payload};
use updraft_store::health::{EventWrite, IngestBatch, IngestProject, InstallOutcome, InstallReport, SessionWrite};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::Path;
use crate::state::AppState;

/// Ingest limits and switches, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct IngestLimits {
    /// Request body as sent (compressed).
    pub max_body: usize,
    /// Request body once decompressed.
    pub max_decompressed: usize,
    /// One event or other item.
    pub max_event: usize,
    /// Envelopes per second per DSN key (0: no limit).
    pub rate: u64,
    /// Envelopes waiting for the writer before `429`.
    pub queue: usize,
    /// Default retention for new ingest projects, days.
    pub retention_days: u32,
}

pub struct Ingest {
    pub limits: IngestLimits,
    projects: RwLock<HashMap<i64, Arc<IngestProject>>>,
    limiter: Option<crate::ratelimit::Limiter<i64>>,
    writer: writer::Writer,
}

impl Ingest {
    pub fn new(limits: IngestLimits) -> Self {
        let rate = limits.rate as f64;
        Self {
            limits,
            projects: RwLock::default(),
            limiter: crate::ratelimit::Limiter::new(rate, (rate * 2.0).max(10.0)),
            writer: writer::Writer::new(limits.queue),
        }
    }

    pub fn sweep(&self) {
        if let Some(l) = &self.limiter {
            l.sweep(std::time::Instant::now());
        }
    }

    async fn project(&self, state: &AppState, id: i64) -> Result<Arc<IngestProject>, ApiError> {
        if let Some(p) = self.projects.read().expect("project cache").get(&id) {
            return Ok(p.clone());
        }
        let p = state.store.ingest_project_by_id(id).await?.ok_or_else(unknown_project)?;
        let p = Arc::new(p);
        self.projects.write().expect("project cache").insert(id, p.clone());
        Ok(p)
    }
}

fn unknown_project() -> ApiError {
    ApiError::not_found("unknown_project", "no project with this id; check the DSN (`updraft app dsn APP`)")
}

fn rate_limited(secs: u64, code: &'static str, message: &str) -> Response {
    let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message);
    e.retry_after = Some(secs);
    let mut resp = e.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{secs}::key")) {
        resp.headers_mut().insert("x-sentry-rate-limits", v);
    }
    resp
}

/// What an accepted envelope kept.
#[derive(Serialize, ToSchema, Default)]
pub struct IngestAccepted {
    /// The event id, when the envelope carried an event.
    id: Option<String>,
    events_stored: u64,
    /// Events with an `event_id` already stored: not stored twice.
    events_duplicate: u64,
    sessions: u64,
    installs: u64,
    /// Items of types Updraft does not keep (attachments, transactions, client reports, …).
    items_skipped: u64,
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProjectPath {
    /// The app's numeric project id (the last part of its DSN).
    project_id: String,
}

/// Sentry envelope ingest: events, `session`/`sessions` items and `updraft_install` reports.
#[utoipa::path(post, path = "/api/{project_id}/envelope/", operation_id = "ingest_envelope", tag = "ingest", params(ProjectPath,
        ("sentry_key" = Option<String>, Query, description = "DSN public key (or X-Sentry-Auth, or the envelope's dsn)"),
        ("X-Sentry-Auth" = Option<String>, Header, description = "Sentry sentry_key=KEY, sentry_version=7, …")),
    request_body(content = String, content_type = "application/x-sentry-envelope",
        description = "A Sentry envelope; Content-Encoding gzip, deflate or br"),
    responses((status = 200, description = "Accepted", body = IngestAccepted),
        (status = 401, description = "Missing or wrong DSN key", body = crate::error::ErrorBody),
        (status = 413, description = "Body, decompressed body or an item too large", body = crate::error::ErrorBody),
        (status = 415, description = "Unsupported Content-Encoding", body = crate::error::ErrorBody)))]
pub async fn envelope_endpoint(
    State(state): State<AppState>,
    Path(p): Path<ProjectPath>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&state, &p.project_id, &uri, &headers, &body, Kind::Envelope).await.unwrap_or_else(|r| r)
}

/// Sentry's older store endpoint: one event as JSON.
#[utoipa::path(post, path = "/api/{project_id}/store/", operation_id = "ingest_store", tag = "ingest", params(ProjectPath,
        ("sentry_key" = Option<String>, Query, description = "DSN public key (or X-Sentry-Auth)"),
        ("X-Sentry-Auth" = Option<String>, Header, description = "Sentry sentry_key=KEY, sentry_version=7, …")),
    request_body(content = Object, description = "A Sentry event; Content-Encoding gzip, deflate or br"),
    responses((status = 200, description = "Accepted", body = IngestAccepted),
        (status = 401, description = "Missing or wrong DSN key", body = crate::error::ErrorBody),
        (status = 413, description = "Body, decompressed body or the event too large", body = crate::error::ErrorBody),
        (status = 415, description = "Unsupported Content-Encoding", body = crate::error::ErrorBody)))]
pub async fn store_endpoint(
    State(state): State<AppState>,
    Path(p): Path<ProjectPath>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&state, &p.project_id, &uri, &headers, &body, Kind::Store).await.unwrap_or_else(|r| r)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Envelope,
    Store,
}

fn too_large(code: &'static str, what: &str, limit: usize) -> Response {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, code, format!("{what} is larger than the limit of {limit} bytes")).into_response()
}

fn bad(code: &'static str, message: impl Into<String>) -> Response {
    ApiError::bad_request(code, message).into_response()
}

fn unauthorized(code: &'static str, message: &str) -> Response {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message).into_response()
}

async fn handle(state: &AppState, project_id: &str, uri: &Uri, headers: &HeaderMap, body: &[u8], kind: Kind) -> Result<Response, Response> {
    let ingest = &state.ingest;
    let limits = ingest.limits;
    let id: i64 = project_id.parse().map_err(|_| unknown_project().into_response())?;
    let project = ingest.project(state, id).await.map_err(IntoResponse::into_response)?;
    let header_key = ["x-sentry-auth", "authorization"]
        .iter()
        .filter_map(|h| headers.get(*h)?.to_str().ok())
        .find_map(|v| auth::key_from_auth_header(v).map(str::to_owned));
    let query_key = uri.query().and_then(auth::key_from_query);
    for k in [&header_key, &query_key].into_iter().flatten() {
        if k != &project.public_key {
            return Err(unauthorized("invalid_dsn_key", "the DSN key does not belong to this project"));
        }
    }
    if let Some(l) = &ingest.limiter {
        if let Err(wait) = l.check(&id, std::time::Instant::now()) {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            return Err(rate_limited(secs, "rate_limited", "too many envelopes for this DSN key; retry later"));
        }
    }
    if body.len() > limits.max_body {
        return Err(too_large("body_too_large", "the request body", limits.max_body));
    }
    let encoding = headers.get(axum::http::header::CONTENT_ENCODING).and_then(|v| v.to_str().ok());
    let raw = decode::decode(encoding, body, limits.max_decompressed).map_err(|e| match e {
        decode::DecodeError::TooLarge { limit } => too_large("decompressed_too_large", "the decompressed body", limit),
        decode::DecodeError::Corrupt(what) => bad("body_not_decodable", format!("the body is not valid {what} data")),
        decode::DecodeError::Unsupported(enc) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_encoding",
            format!("Content-Encoding {enc:?} is not supported: use gzip, deflate or br"),
        )
        .into_response(),
    })?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let received = updraft_store::now_rfc3339();
    let mut batch = IngestBatch::default();
    let mut accepted = IngestAccepted::default();
    let mut dsn_checked = header_key.is_some() || query_key.is_some();
    match kind {
        Kind::Store => {
            if raw.len() > limits.max_event {
                return Err(too_large("event_too_large", "the event", limits.max_event));
            }
            let ev = payload::process_event(&raw, &project.salt, None, now).map_err(|e| bad(e.code(), e.to_string()))?;
            accepted.id = Some(ev.event_id.clone());
            batch.events.push(event_write(ev, &received));
        }
        Kind::Envelope => {
            let env =
                envelope::parse(&raw, envelope::EnvelopeLimits { max_items: 100, max_item_bytes: limits.max_event }).map_err(|e| {
                    if matches!(e, envelope::EnvelopeError::ItemTooLarge { .. }) {
                        too_large("event_too_large", "an envelope item", limits.max_event)
                    } else {
                        bad(e.code(), e.to_string())
                    }
                })?;
            if let Some(dsn) = &env.header.dsn {
                match auth::parse_dsn(dsn) {
                    Some((key, pid)) if key == project.public_key && pid == project_id => dsn_checked = true,
                    _ => return Err(unauthorized("invalid_dsn_key", "the envelope's dsn does not belong to this project")),
                }
            }
            for item in &env.items {
                let err = |e: payload::PayloadError| bad(e.code(), e.to_string());
                match item.ty.as_str() {
                    "event" => {
                        let ev = payload::process_event(item.payload, &project.salt, env.header.event_id.as_deref(), now).map_err(err)?;
                        accepted.id.get_or_insert_with(|| ev.event_id.clone());
                        batch.events.push(event_write(ev, &received));
                    }
                    "session" => {
                        let s = payload::process_session(item.payload, &project.salt, now).map_err(err)?;
                        batch.sessions.push(session_write(s, &received));
                    }
                    "sessions" => {
                        for s in payload::process_sessions(item.payload, &project.salt, now).map_err(err)? {
                            batch.sessions.push(session_write(s, &received));
                        }
                    }
                    "updraft_install" => {
                        let i = payload::process_install(item.payload, &project.salt).map_err(err)?;
                        batch.installs.push(InstallReport {
                            version: i.version,
                            from_version: i.from_version,
                            platform: i.platform,
                            outcome: InstallOutcome::parse(&i.outcome).unwrap_or(InstallOutcome::Failure),
                            client_hash: i.client_hash,
                            error: i.error,
                            received_at: received.clone(),
                        });
                    }
                    _ => accepted.items_skipped += 1,
                }
            }
            if accepted.id.is_none() {
                accepted.id = env.header.event_id.as_deref().and_then(payload::normalize_event_id);
            }
        }
    }
    if !dsn_checked {
        return Err(unauthorized("missing_dsn_key", "send the DSN key in X-Sentry-Auth, ?sentry_key= or the envelope's dsn"));
    }
    if batch != IngestBatch::default() {
        match ingest.writer.submit(&state.store, project.app.clone(), batch).await {
            Ok(out) => {
                accepted.events_stored = out.events_stored;
                accepted.events_duplicate = out.events_duplicate;
                accepted.sessions = out.sessions;
                accepted.installs = out.installs;
            }
            Err(writer::SubmitError::Busy) => {
                return Err(rate_limited(1, "ingest_overloaded", "the server is busy writing; retry in a second"));
            }
            Err(writer::SubmitError::Failed) => return Err(ApiError::internal("ingest write failed").into_response()),
        }
    }
    metrics::counter!("updraft_ingest_envelopes_total").increment(1);
    Ok(axum::Json(accepted).into_response())
}

fn event_write(e: payload::Event, received: &str) -> EventWrite {
    EventWrite {
        event_id: e.event_id,
        fingerprint: e.fingerprint,
        title: e.title,
        received_at: received.to_owned(),
        timestamp: e.timestamp,
        release: e.release,
        version: e.version,
        environment: e.environment,
        platform: e.platform,
        level: e.level,
        exc_type: e.exc_type,
        message: e.message,
        client_hash: e.client_hash,
        body: e.body,
    }
}

fn session_write(s: payload::SessionCounts, received: &str) -> SessionWrite {
    SessionWrite {
        version: s.version,
        platform: String::new(),
        environment: s.environment,
        hour: s.hour,
        sid: s.sid,
        client_hash: s.client_hash,
        started: s.started,
        crashed: s.crashed,
        abnormal: s.abnormal,
        errored: s.errored,
        at: received.to_owned(),
    }
}
