//! Server configuration in two layers: [`RawConfig`] holds values as a user wrote them (flags,
//! `UPDRAFT_*` environment, a TOML file — all optional), merged in that order of precedence;
//! [`Config`] is the validated result with typed fields and defaults filled in.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One layer of configuration. Every field is optional so layers can be merged.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub data: Option<PathBuf>,
    /// Metadata database URL: `sqlite://PATH` (default `sqlite://DATA/updraft.db`) or
    /// `postgres://…` (shared by any number of instances).
    pub database: Option<String>,
    /// Blob store: a directory or `file://PATH` (default `DATA/blobs`), or
    /// `s3://BUCKET[/PREFIX]` (configured by the standard `AWS_*` environment variables).
    pub blobs: Option<String>,

    pub listen: Option<String>,
    /// Base URL clients reach this server at; download URLs in update answers start with it.
    pub public_url: Option<String>,
    pub max_upload_bytes: Option<u64>,
    pub max_json_bytes: Option<usize>,
    pub request_timeout_secs: Option<u64>,
    pub bootstrap_token: Option<String>,
    pub key_passphrase: Option<String>,
    pub timestamp_lifetime_secs: Option<u64>,
    pub snapshot_lifetime_secs: Option<u64>,
    pub targets_lifetime_secs: Option<u64>,
    pub root_lifetime_secs: Option<u64>,
    /// How often the background job checks metadata expiry and stale uploads.
    pub maintenance_interval_secs: Option<u64>,
    /// With an S3 blob store: answer blob downloads with a redirect to a presigned URL valid
    /// this long, so the bucket (or a CDN before it) sends the bytes (0: stream through).
    pub blob_redirect_secs: Option<u64>,
    /// Seconds a client may take to send a request head (slow or idle connections are closed).
    pub header_read_timeout_secs: Option<u64>,
    /// How often scheduled rollouts are checked (advanced, or halted when a health rule trips).
    pub health_interval_secs: Option<u64>,
    /// Public API requests per second per client address (0: no limit).
    pub public_rate_limit: Option<u64>,
    /// Admin API requests per second per token (0: no limit).
    pub admin_rate_limit: Option<u64>,
    /// Failed authentications per second per client address (0: no limit).
    pub auth_failure_rate_limit: Option<u64>,
    /// Take the client address from the last `X-Forwarded-For` entry (behind a trusted proxy).
    pub trust_forwarded_for: Option<bool>,
    /// Let halt webhooks reach loopback, private and link-local addresses (off: SSRF guard).
    pub webhook_allow_private: Option<bool>,
    /// PKCS#11 module for `pkcs11:` key URIs that do not name one.
    pub pkcs11_module: Option<PathBuf>,
    /// PIN for `pkcs11:` key URIs that carry none.
    pub pkcs11_pin: Option<String>,
    /// Ingest: largest request body as sent (compressed), bytes.
    pub ingest_max_body_bytes: Option<u64>,
    /// Ingest: largest body once decompressed, bytes.
    pub ingest_max_decompressed_bytes: Option<u64>,
    /// Ingest: largest single event or envelope item, bytes.
    pub ingest_max_event_bytes: Option<u64>,
    /// Ingest: envelopes per second per DSN key (0: no limit).
    pub ingest_rate_limit: Option<u64>,
    /// Ingest: envelopes waiting to be written before the server answers 429.
    pub ingest_queue: Option<u64>,
    /// Days crash, session and install data is kept for apps that do not set their own.
    pub retention_days: Option<u64>,
}

/// A configuration problem, naming where the value came from and which field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {field}: {message}")]
pub struct ConfigError {
    pub source_name: String,
    pub field: String,
    pub message: String,
}

impl RawConfig {
    /// Reads a TOML file. Errors name the file and, where TOML says, the field.
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let err = |field: &str, message: String| ConfigError { source_name: path.display().to_string(), field: field.into(), message };
        let text = std::fs::read_to_string(path).map_err(|e| err("-", e.to_string()))?;
        toml::from_str(&text).map_err(|e| err("-", e.message().to_owned()))
    }

    /// Reads `UPDRAFT_*` variables through `get` (the process environment in production).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut flag = |name: &str| match get(name).as_deref().map(str::trim) {
            None => None,
            Some("1" | "true" | "yes") => Some(true),
            Some("0" | "false" | "no") => Some(false),
            Some(v) => {
                errors.push(ConfigError {
                    source_name: "environment".into(),
                    field: name.into(),
                    message: format!("{v:?} is not true or false"),
                });
                None
            }
        };
        let trust_forwarded_for = flag("UPDRAFT_TRUST_FORWARDED_FOR");
        let webhook_allow_private = flag("UPDRAFT_WEBHOOK_ALLOW_PRIVATE");
        let mut num = |name: &str| -> Option<u64> {
            let v = get(name)?;
            match v.trim().parse() {
                Ok(n) => Some(n),
                Err(_) => {
                    errors.push(ConfigError {
                        source_name: "environment".into(),
                        field: name.into(),
                        message: format!("{v:?} is not a whole number"),
                    });
                    None
                }
            }
        };
        let raw = RawConfig {
            trust_forwarded_for,
            webhook_allow_private,
            max_upload_bytes: num("UPDRAFT_MAX_UPLOAD_BYTES"),
            max_json_bytes: num("UPDRAFT_MAX_JSON_BYTES").map(|n| n as usize),
            request_timeout_secs: num("UPDRAFT_REQUEST_TIMEOUT_SECS"),
            timestamp_lifetime_secs: num("UPDRAFT_TIMESTAMP_LIFETIME_SECS"),
            snapshot_lifetime_secs: num("UPDRAFT_SNAPSHOT_LIFETIME_SECS"),
            targets_lifetime_secs: num("UPDRAFT_TARGETS_LIFETIME_SECS"),
            root_lifetime_secs: num("UPDRAFT_ROOT_LIFETIME_SECS"),
            maintenance_interval_secs: num("UPDRAFT_MAINTENANCE_INTERVAL_SECS"),
            blob_redirect_secs: num("UPDRAFT_BLOB_REDIRECT_SECS"),
            header_read_timeout_secs: num("UPDRAFT_HEADER_READ_TIMEOUT_SECS"),
            health_interval_secs: num("UPDRAFT_HEALTH_INTERVAL_SECS"),
            public_rate_limit: num("UPDRAFT_PUBLIC_RATE_LIMIT"),
            admin_rate_limit: num("UPDRAFT_ADMIN_RATE_LIMIT"),
            auth_failure_rate_limit: num("UPDRAFT_AUTH_FAILURE_RATE_LIMIT"),
            data: get("UPDRAFT_DATA").map(PathBuf::from),
            database: get("UPDRAFT_DATABASE").filter(|v| !v.is_empty()),
            blobs: get("UPDRAFT_BLOBS").filter(|v| !v.is_empty()),

            listen: get("UPDRAFT_LISTEN"),
            public_url: get("UPDRAFT_PUBLIC_URL"),
            bootstrap_token: get("UPDRAFT_BOOTSTRAP_TOKEN"),
            key_passphrase: get("UPDRAFT_KEY_PASSPHRASE"),
            pkcs11_module: get("UPDRAFT_PKCS11_MODULE").filter(|m| !m.is_empty()).map(PathBuf::from),
            pkcs11_pin: get("UPDRAFT_PKCS11_PIN"),
            ingest_max_body_bytes: num("UPDRAFT_INGEST_MAX_BODY_BYTES"),
            ingest_max_decompressed_bytes: num("UPDRAFT_INGEST_MAX_DECOMPRESSED_BYTES"),
            ingest_max_event_bytes: num("UPDRAFT_INGEST_MAX_EVENT_BYTES"),
            ingest_rate_limit: num("UPDRAFT_INGEST_RATE_LIMIT"),
            ingest_queue: num("UPDRAFT_INGEST_QUEUE"),
            retention_days: num("UPDRAFT_RETENTION_DAYS"),
        };
        if errors.is_empty() {
            Ok(raw)
        } else {
            Err(errors)
        }
    }

    /// `self` wins over `lower` field by field.
    pub fn over(self, lower: RawConfig) -> RawConfig {
        RawConfig {
            data: self.data.or(lower.data),
            database: self.database.or(lower.database),
            blobs: self.blobs.or(lower.blobs),

            listen: self.listen.or(lower.listen),
            public_url: self.public_url.or(lower.public_url),
            max_upload_bytes: self.max_upload_bytes.or(lower.max_upload_bytes),
            max_json_bytes: self.max_json_bytes.or(lower.max_json_bytes),
            request_timeout_secs: self.request_timeout_secs.or(lower.request_timeout_secs),
            bootstrap_token: self.bootstrap_token.or(lower.bootstrap_token),
            key_passphrase: self.key_passphrase.or(lower.key_passphrase),
            timestamp_lifetime_secs: self.timestamp_lifetime_secs.or(lower.timestamp_lifetime_secs),
            snapshot_lifetime_secs: self.snapshot_lifetime_secs.or(lower.snapshot_lifetime_secs),
            targets_lifetime_secs: self.targets_lifetime_secs.or(lower.targets_lifetime_secs),
            root_lifetime_secs: self.root_lifetime_secs.or(lower.root_lifetime_secs),
            maintenance_interval_secs: self.maintenance_interval_secs.or(lower.maintenance_interval_secs),
            blob_redirect_secs: self.blob_redirect_secs.or(lower.blob_redirect_secs),
            header_read_timeout_secs: self.header_read_timeout_secs.or(lower.header_read_timeout_secs),
            health_interval_secs: self.health_interval_secs.or(lower.health_interval_secs),
            public_rate_limit: self.public_rate_limit.or(lower.public_rate_limit),
            admin_rate_limit: self.admin_rate_limit.or(lower.admin_rate_limit),
            auth_failure_rate_limit: self.auth_failure_rate_limit.or(lower.auth_failure_rate_limit),
            trust_forwarded_for: self.trust_forwarded_for.or(lower.trust_forwarded_for),
            webhook_allow_private: self.webhook_allow_private.or(lower.webhook_allow_private),
            pkcs11_module: self.pkcs11_module.or(lower.pkcs11_module),
            pkcs11_pin: self.pkcs11_pin.or(lower.pkcs11_pin),
            ingest_max_body_bytes: self.ingest_max_body_bytes.or(lower.ingest_max_body_bytes),
            ingest_max_decompressed_bytes: self.ingest_max_decompressed_bytes.or(lower.ingest_max_decompressed_bytes),
            ingest_max_event_bytes: self.ingest_max_event_bytes.or(lower.ingest_max_event_bytes),
            ingest_rate_limit: self.ingest_rate_limit.or(lower.ingest_rate_limit),
            ingest_queue: self.ingest_queue.or(lower.ingest_queue),
            retention_days: self.retention_days.or(lower.retention_days),
        }
    }

    /// Validates every field and reports every problem, not just the first.
    pub fn validate(self) -> Result<Config, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut bad =
            |field: &str, message: String| errors.push(ConfigError { source_name: "configuration".into(), field: field.into(), message });
        let listen_s = self.listen.unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_s.parse().unwrap_or_else(|_| {
            bad("listen", format!("{listen_s:?} is not an address like 127.0.0.1:8080"));
            SocketAddr::from(([127, 0, 0, 1], 8080))
        });
        let public_url = self.public_url.map(|u| u.trim_end_matches('/').to_owned());
        if let Some(u) = &public_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                bad("public_url", format!("{u:?} must start with http:// or https://"));
            }
        }
        let lifetime = |v: Option<u64>, default: u64| v.unwrap_or(default);
        let lifetimes = Lifetimes {
            root: lifetime(self.root_lifetime_secs, 365 * 86400),
            targets: lifetime(self.targets_lifetime_secs, 90 * 86400),
            snapshot: lifetime(self.snapshot_lifetime_secs, 7 * 86400),
            timestamp: lifetime(self.timestamp_lifetime_secs, 86400),
        };
        for (name, v) in [
            ("root_lifetime_secs", lifetimes.root),
            ("targets_lifetime_secs", lifetimes.targets),
            ("snapshot_lifetime_secs", lifetimes.snapshot),
            ("timestamp_lifetime_secs", lifetimes.timestamp),
        ] {
            if v < 60 {
                bad(name, format!("{v} is too short: at least 60 seconds"));
            }
        }
        let health_interval_secs = self.health_interval_secs.unwrap_or(10);
        if !(1..=30).contains(&health_interval_secs) {
            bad(
                "health_interval_secs",
                format!("{health_interval_secs} is out of range: 1 to 30 seconds, so a halt lands within a minute"),
            );
        }
        let blob_redirect_secs = self.blob_redirect_secs.unwrap_or(0);
        if blob_redirect_secs != 0 && !(60..=604_800).contains(&blob_redirect_secs) {
            bad("blob_redirect_secs", format!("{blob_redirect_secs} is out of range: 0 (off) or 60 to 604800 seconds (S3's limit)"));
        }
        let header_read_timeout_secs = self.header_read_timeout_secs.unwrap_or(75);
        if !(1..=300).contains(&header_read_timeout_secs) {
            bad("header_read_timeout_secs", format!("{header_read_timeout_secs} is out of range: 1 to 300 seconds"));
        }
        let max_upload_bytes = self.max_upload_bytes.unwrap_or(4 << 30);
        if max_upload_bytes == 0 {
            bad("max_upload_bytes", "must be above 0".into());
        }
        if let Some(t) = &self.bootstrap_token {
            if t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) {
                bad("bootstrap_token", "must be at least 16 printable characters without spaces".into());
            }
        }
        let size = |v: Option<u64>, default: u64| usize::try_from(v.unwrap_or(default)).unwrap_or(usize::MAX);
        let ingest = crate::ingest::IngestLimits {
            max_body: size(self.ingest_max_body_bytes, 1 << 20),
            max_decompressed: size(self.ingest_max_decompressed_bytes, 8 << 20),
            max_event: size(self.ingest_max_event_bytes, 1 << 20),
            rate: self.ingest_rate_limit.unwrap_or(1000),
            queue: size(self.ingest_queue, 4096),
            retention_days: u32::try_from(self.retention_days.unwrap_or(90)).unwrap_or(u32::MAX),
        };
        for (name, v) in [
            ("ingest_max_body_bytes", ingest.max_body),
            ("ingest_max_decompressed_bytes", ingest.max_decompressed),
            ("ingest_max_event_bytes", ingest.max_event),
            ("ingest_queue", ingest.queue),
        ] {
            if v == 0 {
                bad(name, "must be above 0".into());
            }
        }
        if !(1..=3650).contains(&ingest.retention_days) {
            bad("retention_days", format!("{} must be from 1 to 3650", ingest.retention_days));
        }
        let data_dir = self.data.unwrap_or_else(|| PathBuf::from("updraft-data"));
        let database = match self.database.as_deref() {
            None => updraft_store::DatabaseUrl::Sqlite(data_dir.join("updraft.db")),
            Some(url) => updraft_store::DatabaseUrl::parse(url).unwrap_or_else(|e| {
                bad("database", e);
                updraft_store::DatabaseUrl::Sqlite(data_dir.join("updraft.db"))
            }),
        };
        let blobs = match self.blobs.as_deref() {
            None => updraft_store::BlobUrl::Dir(data_dir.join("blobs")),
            Some(url) => updraft_store::BlobUrl::parse(url).unwrap_or_else(|e| {
                bad("blobs", e);
                updraft_store::BlobUrl::Dir(data_dir.join("blobs"))
            }),
        };
        let config = Config {
            ingest,
            data_dir,
            database,
            blobs,
            listen,
            public_url,
            max_upload_bytes,
            max_json_bytes: self.max_json_bytes.unwrap_or(1 << 20),
            request_timeout_secs: self.request_timeout_secs.unwrap_or(30),
            bootstrap_token: self.bootstrap_token,
            key_passphrase: self.key_passphrase.filter(|p| !p.is_empty()),
            lifetimes,
            maintenance_interval_secs: self.maintenance_interval_secs.unwrap_or(60).max(1),
            blob_redirect_secs,
            header_read_timeout_secs,
            health_interval_secs,
            // Off by default on the public API: behind a load balancer every client would share
            // the balancer's address. Tokens are per caller wherever they come from.
            public_rate_limit: self.public_rate_limit.unwrap_or(0),
            admin_rate_limit: self.admin_rate_limit.unwrap_or(20),
            auth_failure_rate_limit: self.auth_failure_rate_limit.unwrap_or(5),
            trust_forwarded_for: self.trust_forwarded_for.unwrap_or(false),
            webhook_allow_private: self.webhook_allow_private.unwrap_or(false),
            pkcs11_module: self.pkcs11_module,
            pkcs11_pin: self.pkcs11_pin.filter(|p| !p.is_empty()),
        };
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }
}

/// Lifetimes of each TUF role's metadata, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub root: u64,
    pub targets: u64,
    pub snapshot: u64,
    pub timestamp: u64,
}

/// The validated configuration.
#[derive(Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub database: updraft_store::DatabaseUrl,
    pub blobs: updraft_store::BlobUrl,

    pub listen: SocketAddr,
    /// `None`: derived from the bound address.
    pub public_url: Option<String>,
    pub max_upload_bytes: u64,
    pub max_json_bytes: usize,
    pub request_timeout_secs: u64,
    pub bootstrap_token: Option<String>,
    pub key_passphrase: Option<String>,
    pub lifetimes: Lifetimes,
    pub maintenance_interval_secs: u64,
    /// Presigned-URL lifetime for blob redirects (S3 only; 0: bytes are streamed through).
    pub blob_redirect_secs: u64,
    /// Seconds a client may take to send a request head (1–300, default 75).
    pub header_read_timeout_secs: u64,
    /// Seconds between passes of the rollout-schedule job (1–30, default 10).
    pub health_interval_secs: u64,
    pub public_rate_limit: u64,
    pub admin_rate_limit: u64,
    pub auth_failure_rate_limit: u64,
    pub trust_forwarded_for: bool,
    /// Halt webhooks may reach loopback, private and link-local addresses.
    pub webhook_allow_private: bool,
    pub pkcs11_module: Option<PathBuf>,
    pub pkcs11_pin: Option<String>,
    /// Crash and session ingest limits.
    pub ingest: crate::ingest::IngestLimits,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets are never printed.
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("database", &self.database.redacted())
            .field("blobs", &self.blobs)
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("bootstrap_token", &self.bootstrap_token.as_ref().map(|_| "<set>"))
            .field("key_passphrase", &self.key_passphrase.as_ref().map(|_| "<set>"))
            .field("pkcs11_module", &self.pkcs11_module)
            .field("pkcs11_pin", &self.pkcs11_pin.as_ref().map(|_| "<set>"))
            .field("lifetimes", &self.lifetimes)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        RawConfig::default().validate().expect("defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_merge_in_order_and_all_errors_are_reported() {
        let flags = RawConfig { listen: Some("127.0.0.1:9000".into()), ..Default::default() };
        let env = RawConfig::from_env(|k| match k {
            "UPDRAFT_LISTEN" => Some("127.0.0.1:1".into()),
            "UPDRAFT_DATA" => Some("/tmp/x".into()),
            _ => None,
        })
        .unwrap();
        let cfg = flags.over(env).validate().unwrap();
        assert_eq!(cfg.listen.port(), 9000);
        assert_eq!(cfg.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(cfg.max_upload_bytes, 4 << 30);

        let errs = RawConfig::from_env(|k| (k == "UPDRAFT_MAX_UPLOAD_BYTES").then(|| "lots".into())).unwrap_err();
        assert_eq!(errs[0].field, "UPDRAFT_MAX_UPLOAD_BYTES");
        let errs =
            RawConfig { listen: Some("nowhere".into()), timestamp_lifetime_secs: Some(1), ..Default::default() }.validate().unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
    }

    #[test]
    fn toml_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("u.toml");
        std::fs::write(&p, "listen = \"127.0.0.1:1\"\nbogus = 1\n").unwrap();
        let e = RawConfig::from_toml_file(&p).unwrap_err();
        assert!(e.to_string().contains("u.toml") && e.to_string().contains("bogus"), "{e}");
    }
}
