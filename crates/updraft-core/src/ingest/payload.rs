//! SDK payloads to what is kept: error events (scrubbed, grouped by fingerprint), `session`
//! and aggregated `sessions` items, and our client's `updraft_install` reports. Raw device and
//! install ids never leave this module: they are hashed with the app's salt first.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::scrub;

const MAX_FIELD: usize = 1000;
const MAX_TITLE: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("{what} is not valid JSON")]
    NotJson { what: &'static str },
    #[error("{what} is not a JSON object")]
    NotObject { what: &'static str },
    #[error("{what}: {reason}")]
    Invalid { what: &'static str, reason: String },
}

impl PayloadError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotJson { .. } | Self::NotObject { .. } => "payload_invalid_json",
            Self::Invalid { .. } => "payload_invalid",
        }
    }
}

/// The per-app salted hash of a device or install id: SHA-256 over salt, NUL, id (hex, 32 chars).
pub fn hash_id(salt: &str, id: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update([0]);
    h.update(id.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// `APP@VERSION` or `VERSION` → `VERSION`.
pub fn version_of_release(release: &str) -> &str {
    release.split_once('@').map_or(release, |(_, v)| v)
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_owned();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A timestamp as Sentry sends it (RFC 3339 string or Unix seconds) as Unix seconds.
fn unix_of(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite() && f.abs() < 1e12).map(|f| f as i64),
        Value::String(s) => {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok().map(|t| t.unix_timestamp()).or_else(|| {
                // Sentry SDKs may omit the zone (`2024-01-01T10:00:00.123`): UTC.
                time::OffsetDateTime::parse(&format!("{s}Z"), &time::format_description::well_known::Rfc3339)
                    .ok()
                    .map(|t| t.unix_timestamp())
            })
        }
        _ => None,
    }
}

/// A 32-hex-digit event id (dashes allowed, any case), normalized to lowercase without dashes.
pub fn normalize_event_id(id: &str) -> Option<String> {
    let s: String = id.chars().filter(|&c| c != '-').collect::<String>().to_ascii_lowercase();
    (s.len() == 32 && s.chars().all(|c| c.is_ascii_hexdigit())).then_some(s)
}

/// An error event ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event_id: String,
    /// Grouping key: hex SHA-256 (32 chars) of the explicit fingerprint or of type + top frames.
    pub fingerprint: String,
    pub title: String,
    /// RFC 3339 UTC.
    pub timestamp: String,
    pub release: Option<String>,
    pub version: Option<String>,
    pub environment: Option<String>,
    pub platform: Option<String>,
    pub level: String,
    pub exc_type: Option<String>,
    pub message: Option<String>,
    pub client_hash: Option<String>,
    /// The scrubbed event, JSON.
    pub body: String,
}

/// Removes what identifies a person before any scrubbing: IP addresses, e-mail, user names;
/// replaces `user.id` by its salted hash. Returns the hash.
fn strip_identity(ev: &mut Map<String, Value>, salt: &str) -> Option<String> {
    let mut client = None;
    if let Some(Value::Object(user)) = ev.get_mut("user") {
        for k in ["ip_address", "email", "username", "name", "geo"] {
            user.remove(k);
        }
        if let Some(id) = user.remove("id") {
            let id = match id {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                _ => String::new(),
            };
            if !id.is_empty() {
                let h = hash_id(salt, &id);
                user.insert("id".into(), Value::String(h.clone()));
                client = Some(h);
            }
        }
    }
    if let Some(Value::Object(req)) = ev.get_mut("request") {
        if let Some(Value::Object(env)) = req.get_mut("env") {
            env.remove("REMOTE_ADDR");
        }
        if let Some(headers) = req.get_mut("headers") {
            let drop =
                |k: &str| matches!(k.to_ascii_lowercase().as_str(), "x-forwarded-for" | "x-real-ip" | "forwarded" | "cf-connecting-ip");
            match headers {
                Value::Object(h) => h.retain(|k, _| !drop(k)),
                Value::Array(a) => a.retain(|p| !p.get(0).and_then(Value::as_str).is_some_and(drop)),
                _ => {}
            }
        }
    }
    if let Some(Value::Object(ctx)) = ev.get_mut("contexts") {
        if let Some(Value::Object(dev)) = ctx.get_mut("device") {
            for k in ["device_unique_identifier", "id"] {
                if let Some(Value::String(d)) = dev.get(k) {
                    let h = hash_id(salt, d);
                    dev.insert(k.into(), Value::String(h));
                }
            }
        }
    }
    client
}

fn frame_key(f: &Value) -> String {
    let loc = str_at(f, &["module"]).or_else(|| str_at(f, &["filename"])).or_else(|| str_at(f, &["abs_path"])).unwrap_or("?");
    let func = str_at(f, &["function"]).unwrap_or("?");
    format!("{loc}:{func}")
}

/// The default grouping: the outermost exception's type and its five newest frames (in-app
/// frames when any are marked), or the message template.
fn default_grouping(ev: &Value) -> String {
    if let Some(exc) = ev.get("exception").and_then(|e| e.get("values").or(Some(e))).and_then(Value::as_array).and_then(|a| a.last()) {
        let ty = str_at(exc, &["type"]).unwrap_or("Error");
        let frames: Vec<&Value> =
            exc.get("stacktrace").and_then(|s| s.get("frames")).and_then(Value::as_array).map(|f| f.iter().collect()).unwrap_or_default();
        let in_app: Vec<&Value> = frames.iter().copied().filter(|f| f.get("in_app").and_then(Value::as_bool) == Some(true)).collect();
        let chosen = if in_app.is_empty() { frames } else { in_app };
        let top: Vec<String> = chosen.iter().rev().take(5).map(|f| frame_key(f)).collect();
        if !top.is_empty() {
            return format!("exc\u{0}{ty}\u{0}{}", top.join("\u{0}"));
        }
        // No frames: the type and the value.
        return format!("exc\u{0}{ty}\u{0}{}", str_at(exc, &["value"]).unwrap_or(""));
    }
    let msg = str_at(ev, &["logentry", "message"])
        .or_else(|| str_at(ev, &["logentry", "formatted"]))
        .or_else(|| str_at(ev, &["message", "message"]))
        .or_else(|| str_at(ev, &["message", "formatted"]))
        .or_else(|| str_at(ev, &["message"]))
        .unwrap_or("");
    format!("msg\u{0}{msg}")
}

fn fingerprint(ev: &Value) -> String {
    let default = default_grouping(ev);
    let parts: Option<Vec<String>> = ev.get("fingerprint").and_then(Value::as_array).filter(|a| !a.is_empty()).map(|a| {
        a.iter()
            .map(|p| match p.as_str() {
                Some("{{ default }}") | Some("{{default}}") => default.clone(),
                Some(s) => s.to_owned(),
                None => p.to_string(),
            })
            .collect()
    });
    let key = parts.map_or(default, |p| format!("fp\u{0}{}", p.join("\u{0}")));
    hex::encode(&Sha256::digest(key.as_bytes())[..16])
}

/// Scrubs and summarizes one event. `fallback_id` is the envelope's `event_id`; without either,
/// the id is a hash of the payload, so a retried identical body is still stored once.
pub fn process_event(raw: &[u8], salt: &str, fallback_id: Option<&str>, now_unix: i64) -> Result<Event, PayloadError> {
    let mut v: Value = serde_json::from_slice(raw).map_err(|_| PayloadError::NotJson { what: "event" })?;
    let Value::Object(map) = &mut v else { return Err(PayloadError::NotObject { what: "event" }) };
    let event_id = match map.get("event_id").and_then(Value::as_str).or(fallback_id) {
        Some(id) => normalize_event_id(id)
            .ok_or_else(|| PayloadError::Invalid { what: "event", reason: "event_id must be 32 hex digits".into() })?,
        None => hex::encode(&Sha256::digest(raw)[..16]),
    };
    map.insert("event_id".into(), Value::String(event_id.clone()));
    let client_hash = strip_identity(map, salt);
    scrub::scrub_value(&mut v);
    let ts = unix_of(v.get("timestamp")).filter(|t| *t <= now_unix + 3600).unwrap_or(now_unix);
    let exc = v.get("exception").and_then(|e| e.get("values").or(Some(e))).and_then(Value::as_array).and_then(|a| a.last());
    let exc_type = exc.and_then(|e| str_at(e, &["type"])).map(|s| truncate(s, MAX_FIELD));
    let exc_value = exc.and_then(|e| str_at(e, &["value"]));
    let message = str_at(&v, &["logentry", "formatted"])
        .or_else(|| str_at(&v, &["logentry", "message"]))
        .or_else(|| str_at(&v, &["message", "formatted"]))
        .or_else(|| str_at(&v, &["message"]))
        .or(exc_value)
        .map(|s| truncate(s, MAX_FIELD));
    let title = match (&exc_type, exc_value) {
        (Some(t), Some(val)) => truncate(&format!("{t}: {val}"), MAX_TITLE),
        (Some(t), None) => truncate(t, MAX_TITLE),
        (None, _) => message.as_deref().map_or_else(|| "<unlabeled event>".to_owned(), |m| truncate(m, MAX_TITLE)),
    };
    let field = |k: &str| str_at(&v, &[k]).map(|s| truncate(s, MAX_TITLE));
    let release = field("release");
    let version = release.as_deref().map(|r| version_of_release(r).to_owned());
    let level = field("level").unwrap_or_else(|| "error".into());
    Ok(Event {
        fingerprint: fingerprint(&v),
        title,
        timestamp: rfc3339(ts),
        environment: field("environment"),
        platform: field("platform"),
        release,
        version,
        level,
        exc_type,
        message,
        client_hash,
        body: v.to_string(),
        event_id,
    })
}

/// Session counts for one release and hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCounts {
    pub release: String,
    pub version: String,
    pub environment: String,
    /// Start of the hour, RFC 3339 UTC.
    pub hour: String,
    pub sid: Option<String>,
    pub client_hash: Option<String>,
    pub started: u64,
    pub crashed: u64,
    pub abnormal: u64,
    pub errored: u64,
}

fn hour_of(unix: i64) -> String {
    rfc3339(unix - unix.rem_euclid(3600))
}

fn attrs(v: &Value, what: &'static str) -> Result<(String, String), PayloadError> {
    let release = str_at(v, &["attrs", "release"])
        .filter(|r| !r.is_empty())
        .ok_or_else(|| PayloadError::Invalid { what, reason: "attrs.release is required".into() })?;
    let env = str_at(v, &["attrs", "environment"]).unwrap_or("production");
    Ok((truncate(release, MAX_TITLE), truncate(env, MAX_TITLE)))
}

fn id_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A Sentry `session` item: counted as started when `init` is true, as crashed/abnormal/errored
/// by its status (`errored` also when `errors` > 0 at its end).
pub fn process_session(raw: &[u8], salt: &str, now_unix: i64) -> Result<SessionCounts, PayloadError> {
    let v: Value = serde_json::from_slice(raw).map_err(|_| PayloadError::NotJson { what: "session" })?;
    if !v.is_object() {
        return Err(PayloadError::NotObject { what: "session" });
    }
    let (release, environment) = attrs(&v, "session")?;
    let sid = id_of(v.get("sid")).map(|s| truncate(&s, 64));
    let did = id_of(v.get("did"));
    let status = str_at(&v, &["status"]).unwrap_or("ok");
    if !matches!(status, "ok" | "exited" | "crashed" | "abnormal" | "errored") {
        return Err(PayloadError::Invalid { what: "session", reason: format!("unknown status {:?}", truncate(status, 40)) });
    }
    let errors = v.get("errors").and_then(Value::as_u64).unwrap_or(0);
    let started_at = unix_of(v.get("started")).filter(|t| *t <= now_unix + 3600).unwrap_or(now_unix);
    let init = v.get("init").and_then(Value::as_bool).unwrap_or(false);
    Ok(SessionCounts {
        version: version_of_release(&release).to_owned(),
        release,
        environment,
        hour: hour_of(started_at),
        sid,
        client_hash: did.map(|d| hash_id(salt, &d)),
        started: u64::from(init),
        crashed: u64::from(status == "crashed"),
        abnormal: u64::from(status == "abnormal"),
        errored: u64::from(status == "errored" || (status == "exited" && errors > 0)),
    })
}

/// An aggregated `sessions` item: one count per bucket (`exited`, `errored`, `abnormal`,
/// `crashed`; all of them are sessions started).
pub fn process_sessions(raw: &[u8], salt: &str, now_unix: i64) -> Result<Vec<SessionCounts>, PayloadError> {
    let v: Value = serde_json::from_slice(raw).map_err(|_| PayloadError::NotJson { what: "sessions" })?;
    if !v.is_object() {
        return Err(PayloadError::NotObject { what: "sessions" });
    }
    let (release, environment) = attrs(&v, "sessions")?;
    let aggs = v
        .get("aggregates")
        .and_then(Value::as_array)
        .ok_or_else(|| PayloadError::Invalid { what: "sessions", reason: "aggregates must be a list".into() })?;
    let mut out = Vec::with_capacity(aggs.len());
    for a in aggs {
        let n = |k: &str| a.get(k).and_then(Value::as_u64).unwrap_or(0).min(1 << 40);
        let (exited, errored, abnormal, crashed) = (n("exited"), n("errored"), n("abnormal"), n("crashed"));
        let started_at = unix_of(a.get("started")).filter(|t| *t <= now_unix + 3600).unwrap_or(now_unix);
        out.push(SessionCounts {
            release: release.clone(),
            version: version_of_release(&release).to_owned(),
            environment: environment.clone(),
            hour: hour_of(started_at),
            sid: None,
            client_hash: id_of(a.get("did")).map(|d| hash_id(salt, &d)),
            started: exited + errored + abnormal + crashed,
            crashed,
            abnormal,
            errored,
        });
    }
    Ok(out)
}

/// An install report from `updraft client` (item type `updraft_install`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    pub version: String,
    pub from_version: Option<String>,
    pub platform: String,
    /// `success`, `failure` or `rollback`.
    pub outcome: String,
    pub client_hash: String,
    pub error: Option<String>,
}

pub fn process_install(raw: &[u8], salt: &str) -> Result<Install, PayloadError> {
    let v: Value = serde_json::from_slice(raw).map_err(|_| PayloadError::NotJson { what: "updraft_install" })?;
    if !v.is_object() {
        return Err(PayloadError::NotObject { what: "updraft_install" });
    }
    let bad = |reason: &str| PayloadError::Invalid { what: "updraft_install", reason: reason.into() };
    let s = |k: &str| str_at(&v, &[k]).filter(|s| !s.is_empty()).map(|s| truncate(s, MAX_TITLE));
    let outcome = s("outcome").ok_or_else(|| bad("outcome is required"))?;
    if !matches!(outcome.as_str(), "success" | "failure" | "rollback") {
        return Err(bad("outcome must be success, failure or rollback"));
    }
    let install_id = s("install_id").ok_or_else(|| bad("install_id is required"))?;
    Ok(Install {
        version: s("version").ok_or_else(|| bad("version is required"))?,
        from_version: s("from_version"),
        platform: s("platform").unwrap_or_default(),
        outcome,
        client_hash: hash_id(salt, &install_id),
        error: s("error").map(|e| scrub::scrub_str(&e).unwrap_or(e)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_are_scrubbed_hashed_and_grouped() {
        let ev = json!({
            "event_id": "9EC79C33-EC99-42AB-8353-589FCB2E04DC",
            "release": "app@2.0.0", "environment": "production", "platform": "python", "timestamp": 1_700_000_000.5,
            "user": {"id": "device-1", "ip_address": "1.2.3.4", "email": "a@example.com"},
            "request": {"headers": {"X-Forwarded-For": "5.6.7.8", "Authorization": "Bearer x"}},
            "exception": {"values": [{"type": "ValueError", "value": "bad /home/alice", "stacktrace": {"frames": [
                {"module": "app.main", "function": "run", "in_app": true, "lineno": 3},
                {"module": "lib", "function": "inner", "in_app": false}]}}]}
        });
        let raw = serde_json::to_vec(&ev).unwrap();
        let e = process_event(&raw, "salt", None, 1_700_000_100).unwrap();
        assert_eq!(e.event_id, "9ec79c33ec9942ab8353589fcb2e04dc");
        assert_eq!(e.version.as_deref(), Some("2.0.0"));
        assert_eq!(e.title, "ValueError: bad /home/[user]");
        assert_eq!(e.timestamp, "2023-11-14T22:13:20Z");
        assert_eq!(e.client_hash.as_deref(), Some(hash_id("salt", "device-1").as_str()));
        for leaked in ["1.2.3.4", "5.6.7.8", "a@example.com", "device-1", "Bearer x", "alice"] {
            assert!(!e.body.contains(leaked), "{leaked} in {}", e.body);
        }
        // Line numbers and values do not change the group; the frames do.
        let mut other = ev.clone();
        other["exception"]["values"][0]["value"] = json!("other");
        other["exception"]["values"][0]["stacktrace"]["frames"][0]["lineno"] = json!(9);
        let o = process_event(&serde_json::to_vec(&other).unwrap(), "salt", None, 0).unwrap();
        assert_eq!(o.fingerprint, e.fingerprint);
        other["exception"]["values"][0]["stacktrace"]["frames"][0]["function"] = json!("start");
        assert_ne!(process_event(&serde_json::to_vec(&other).unwrap(), "salt", None, 0).unwrap().fingerprint, e.fingerprint);
        other["fingerprint"] = json!(["db-timeout"]);
        let a = process_event(&serde_json::to_vec(&other).unwrap(), "salt", None, 0).unwrap();
        let b = process_event(br#"{"message":"x","fingerprint":["db-timeout"]}"#, "salt", None, 0).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert!(matches!(process_event(b"[]", "s", None, 0), Err(PayloadError::NotObject { .. })));
        assert!(matches!(process_event(br#"{"event_id":"nope"}"#, "s", None, 0), Err(PayloadError::Invalid { .. })));
        // No id anywhere: the payload's hash, the same for the same bytes.
        assert_eq!(process_event(b"{}", "s", None, 0).unwrap().event_id, process_event(b"{}", "s", None, 0).unwrap().event_id);
    }

    #[test]
    fn sessions_and_aggregates() {
        let s = process_session(
            br#"{"sid":"s1","did":"u1","init":true,"started":"2026-01-01T10:15:00.5Z","status":"crashed","attrs":{"release":"app@1.0.0"}}"#,
            "salt",
            1_800_000_000,
        )
        .unwrap();
        assert_eq!((s.version.as_str(), s.hour.as_str(), s.started, s.crashed), ("1.0.0", "2026-01-01T10:00:00Z", 1, 1));
        assert_eq!(s.client_hash, Some(hash_id("salt", "u1")));
        assert!(process_session(br#"{"sid":"s1","status":"weird","attrs":{"release":"1"}}"#, "s", 0).is_err());
        assert!(process_session(br#"{"sid":"s1"}"#, "s", 0).is_err());
        let a = process_sessions(
            br#"{"aggregates":[{"started":"2026-01-01T10:00:00Z","exited":5,"crashed":1,"did":"u2"},{"started":"2026-01-01T11:00:00Z","errored":2}],"attrs":{"release":"2.0.0","environment":"beta"}}"#,
            "salt",
            1_800_000_000,
        )
        .unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!((a[0].started, a[0].crashed, a[1].started, a[1].errored), (6, 1, 2, 2));
        assert_eq!(a[1].environment, "beta");
    }

    #[test]
    fn install_reports() {
        let i = process_install(
            br#"{"version":"2.0.0","platform":"linux-x86_64","outcome":"rollback","install_id":"i1","error":"at /home/bob"}"#,
            "s",
        )
        .unwrap();
        assert_eq!(i.client_hash, hash_id("s", "i1"));
        assert_eq!(i.error.as_deref(), Some("at /home/[user]"));
        assert!(process_install(br#"{"version":"2.0.0","outcome":"maybe","install_id":"i"}"#, "s").is_err());
    }
}
