//! The OpenAPI document (`/openapi.json`), generated from the handlers' `#[utoipa::path]`
//! annotations. Error responses are added here to every operation, in the one shape the API
//! uses, so no handler can forget to document them. A snapshot test keeps it honest.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::compat;
use crate::ingest;
use crate::routes::{admin, keys, public, rollouts};

#[derive(OpenApi)]
#[openapi(
    info(title = "Updraft", description = "Signed releases, staged rollouts and TUF-verified updates. Errors: {\"error\":{\"code\",\"message\"}} with a stable code."),
    paths(
        public::check_update, public::get_blob, public::get_metadata, public::get_target, public::healthz, public::readyz, public::metrics,
        admin::create_app, admin::list_apps, admin::get_app,
        admin::create_upload, admin::get_upload, admin::append_upload,
        admin::create_release, admin::list_releases, admin::get_release, admin::publish_release,
        admin::set_rollout, admin::pause_rollout, admin::resume_rollout, admin::yank_release,
        rollouts::set_schedule, rollouts::delete_schedule, rollouts::get_rollout_status, rollouts::get_health_rules, rollouts::set_health_rules,
        admin::create_token, admin::list_tokens, admin::revoke_token,
        admin::list_audit,
        keys::list_keys, keys::rotate_keys, keys::export_root, keys::import_root,
        ingest::envelope_endpoint, ingest::store_endpoint,
        ingest::admin::get_dsn, ingest::admin::set_retention, ingest::admin::get_health, ingest::admin::list_issues,
        ingest::admin::list_events, ingest::admin::erase,
        compat::tauri::check, compat::tauri::latest_json, compat::tauri::pubkey, compat::electron::channel_file,
        compat::velopack::get, compat::sparkle::appcast, compat::sparkle::pubkey, compat::routes::file,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    modifiers(&Security, &ErrorResponses),
    tags(
        (name = "public", description = "What installed clients call; no credentials"),
        (name = "tuf", description = "The app's TUF repository (consistent snapshots)"),
        (name = "operations", description = "Probes and metrics"),
        (name = "apps"), (name = "uploads", description = "Resumable artifact uploads"), (name = "releases"),
        (name = "rollouts"), (name = "tokens"), (name = "audit"),
        (name = "keys", description = "TUF signing keys: thresholds, rotation, the offline root ceremony"),
        (name = "ingest", description = "Sentry-compatible crash and session ingest, authenticated by the app's DSN key"),
        (name = "health", description = "What ingest keeps: release health, issues, events; DSN, retention, erasure"),
        (name = "compat", description = "Feeds for Tauri, electron-updater, Velopack and Sparkle apps (docs/integrations/)"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("updraft_…").build()),
        );
    }
}

struct ErrorResponses;

/// The error statuses every admin operation can answer, and every public one.
const ADMIN_ERRORS: &[(&str, &str)] = &[
    ("400", "Invalid input (see `error.code`)"),
    ("401", "Missing, malformed, unknown, revoked or expired token"),
    ("403", "The token's role does not allow this"),
    ("404", "Not found, or outside the token's app scope"),
    ("409", "Conflicts with the current state"),
    ("413", "Body or upload too large"),
    ("415", "Wrong content type"),
    ("429", "Rate limited; see Retry-After"),
    ("500", "Internal error; the message carries the request id"),
    ("503", "The request timed out"),
];
const PUBLIC_ERRORS: &[(&str, &str)] = &[
    ("400", "Invalid input (see `error.code`)"),
    ("404", "Not found"),
    ("429", "Rate limited; see Retry-After"),
    ("500", "Internal error; the message carries the request id"),
    ("503", "The request timed out"),
];

fn add_errors(op: &mut Operation, errors: &[(&str, &str)]) {
    for (status, description) in errors {
        op.responses.responses.entry((*status).to_owned()).or_insert_with(|| {
            ResponseBuilder::new()
                .description(*description)
                .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
                .build()
                .into()
        });
    }
}

impl Modify for ErrorResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for (path, item) in doc.paths.paths.iter_mut() {
            let errors = if path.starts_with("/v1/admin/") { ADMIN_ERRORS } else { PUBLIC_ERRORS };
            for op in [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten() {
                add_errors(op, errors);
            }
        }
    }
}

/// The document as served.
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.to_pretty_json().expect("the OpenAPI document serializes")
}
