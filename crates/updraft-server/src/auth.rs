//! Bearer-token authentication and authorization for the admin API. A token's secret is
//! `updraft_` + 64 hex characters (the prefix lets secret scanners find leaked ones); only its
//! SHA-256 is stored, and lookups go by that hash. A token outside its app scope gets the same
//! `404` as a missing app, so scopes cannot be used to enumerate apps.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sends crash reports and sessions only.
    Ingest,
    /// Reads apps, releases and the audit log.
    Viewer,
    /// Uploads, publishes, changes rollouts and yanks on its apps.
    Publisher,
    /// Everything, including apps and tokens.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "ingest" => Role::Ingest,
            "viewer" => Role::Viewer,
            "publisher" => Role::Publisher,
            "admin" => Role::Admin,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Viewer => "viewer",
            Role::Publisher => "publisher",
            Role::Admin => "admin",
        }
    }
}

pub const TOKEN_PREFIX: &str = "updraft_";

pub fn new_secret() -> String {
    format!("{TOKEN_PREFIX}{}", updraft_store::random_hex(32))
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: String,
    pub name: String,
    pub role: Role,
    /// Empty: every app.
    pub apps: Arc<Vec<String>>,
}

impl Caller {
    /// The name audit events record (never the secret).
    pub fn actor(&self) -> String {
        format!("token:{}:{}", self.token_id, self.name)
    }
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this needs the {} role; the token has {}", role.as_str(), self.role.as_str()),
            ))
        }
    }
    pub fn can_see_app(&self, app: &str) -> bool {
        self.apps.is_empty() || self.apps.iter().any(|a| a == app)
    }
    /// For operations not tied to one app (creating apps, managing tokens): a token scoped to
    /// apps may not do them, or a scoped admin could mint itself an unscoped token.
    pub fn require_global(&self, role: Role) -> Result<(), ApiError> {
        self.require(role)?;
        if !self.apps.is_empty() {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "this needs a token that is not limited to apps"));
        }
        Ok(())
    }
    /// Checks role and app scope together; out of scope looks exactly like a missing app.
    pub fn require_app(&self, role: Role, app: &str) -> Result<(), ApiError> {
        if !self.can_see_app(app) {
            return Err(ApiError::app_not_found(app));
        }
        self.require(role)
    }
}

fn unauthorized(code: &'static str, message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let result = authenticate(parts, state).await;
        match &result {
            Ok(caller) => {
                if let Some(limit) = &state.limits.admin {
                    limit.check(&caller.token_id, std::time::Instant::now()).map_err(ApiError::too_many_requests)?;
                }
            }
            Err(e) if e.status == StatusCode::UNAUTHORIZED => {
                // Brute-force guard: failed authentications cost the client address.
                if let (Some(limit), Some(addr)) = (&state.limits.auth_failures, state.client_addr(parts)) {
                    limit.check(&addr, std::time::Instant::now()).map_err(ApiError::too_many_requests)?;
                }
            }
            Err(_) => {}
        }
        result
    }
}

/// Compares two hashes without an early exit, so timing says nothing about where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing_token", "send an admin token as 'Authorization: Bearer updraft_…'"))?;
    let value = header.to_str().map_err(|_| unauthorized("malformed_token", "the Authorization header is not valid text"))?;
    let secret = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| unauthorized("malformed_token", "the Authorization header must be 'Bearer <token>'"))?;
    let hash = hash_secret(secret);
    let row = state.store.token_by_hash(&hash).await?.ok_or_else(|| unauthorized("invalid_token", "the token is not valid"))?;
    // Revoked tokens look exactly like unknown ones.
    if !constant_time_eq(row.hash.as_bytes(), hash.as_bytes()) || row.revoked_at.is_some() {
        return Err(unauthorized("invalid_token", "the token is not valid"));
    }
    if let Some(exp) = &row.expires_at {
        if exp.as_str() <= updraft_store::now_rfc3339().as_str() {
            return Err(unauthorized("token_expired", "the token has expired"));
        }
    }
    let role = Role::parse(&row.role).ok_or_else(|| ApiError::internal(format!("token {} has unknown role {:?}", row.id, row.role)))?;
    Ok(Caller { token_id: row.id, name: row.name, role, apps: Arc::new(row.apps) })
}
