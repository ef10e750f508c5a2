//! The halt webhook: a POST with the evidence, as generic JSON or as a Slack-compatible
//! `{"text": …}`. Delivery runs beside the job that halted the rollout, never in its way:
//! the halt is committed first, then a few attempts are made with growing pauses.

use std::time::Duration;

use serde_json::{json, Value};

/// Attempts per delivery, and the first pause between them (doubled each time).
pub const ATTEMPTS: u32 = 4;
const FIRST_PAUSE: Duration = Duration::from_millis(500);
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"event": "rollout.halted", …, "evidence": {…}}`.
    Json,
    /// `{"text": "…"}`, what Slack's incoming webhooks (and Mattermost, Discord's `/slack`) take.
    Slack,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Slack => "slack",
        }
    }
    /// Stored values are checked on the way in; anything else reads as generic JSON.
    pub fn parse(s: &str) -> Format {
        if s == "slack" {
            Self::Slack
        } else {
            Self::Json
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    pub format: Format,
}

/// Checks a webhook URL: `http` or `https`, a host, no credentials, at most 2,000 characters.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.len() > 2000 {
        return Err("the URL is longer than 2,000 characters".into());
    }
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).ok_or("the URL must start with http:// or https://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Err("the URL has no host".into());
    }
    if authority.contains('@') {
        return Err("put no credentials in the URL's host part".into());
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the URL contains spaces or control characters".into());
    }
    Ok(())
}

/// The body to send for a halt.
pub fn payload(format: Format, evidence: &Value) -> Value {
    let app = evidence["app"].as_str().unwrap_or("?");
    let version = evidence["version"].as_str().unwrap_or("?");
    match format {
        Format::Json => json!({
            "event": "rollout.halted",
            "app": app,
            "version": version,
            "channel": evidence["channel"],
            "rollout_percent": evidence["rollout_percent"],
            "rule": evidence["rule"],
            "evidence": evidence,
            "next": format!("updraft rollout status {app} {version}"),
        }),
        Format::Slack => {
            let rule = &evidence["rule"];
            let pct = |v: &Value| v.as_f64().map_or_else(|| "?".to_owned(), |x| format!("{:.2}%", x * 100.0));
            let why = if rule.is_null() {
                "a health rule tripped".to_owned()
            } else {
                format!(
                    "{} on {} is {} (upper bound {}, {} reports) against the baseline's lower bound {} minus {} points",
                    rule["metric"].as_str().unwrap_or("?"),
                    rule["platform"].as_str().unwrap_or("?"),
                    pct(&rule["new"]["rate"]),
                    pct(&rule["new"]["upper"]),
                    rule["new"]["trials"],
                    pct(&rule["baseline"]["lower"]),
                    rule["tolerance"].as_f64().map_or_else(|| "?".to_owned(), |t| format!("{:.2}", t * 100.0)),
                )
            };
            json!({
                "text": format!(
                    ":rotating_light: Updraft halted the rollout of {app} {version} at {}%: {why}. Details: `updraft rollout status {app} {version}`",
                    evidence["rollout_percent"]
                )
            })
        }
    }
}

/// POSTs the halt to the webhook, retrying on failures and non-2xx answers. Failures are
/// logged; the halt itself is already committed.
pub async fn deliver(hook: Webhook, evidence: Value) {
    let body = payload(hook.format, &evidence);
    let client = match reqwest::Client::builder().timeout(TIMEOUT).user_agent(concat!("updraft/", env!("CARGO_PKG_VERSION"))).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook: cannot build an HTTP client");
            return;
        }
    };
    let mut pause = FIRST_PAUSE;
    for attempt in 1..=ATTEMPTS {
        match client.post(&hook.url).json(&body).send().await {
            Ok(r) if r.status().is_success() => {
                tracing::info!(attempt, "webhook: halt delivered");
                return;
            }
            Ok(r) => tracing::warn!(attempt, status = r.status().as_u16(), "webhook: the receiver refused the halt"),
            Err(e) => tracing::warn!(attempt, error = %e.without_url(), "webhook: delivery failed"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
    tracing::error!(attempts = ATTEMPTS, "webhook: giving up on delivering the halt");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for ok in ["http://127.0.0.1:9/hook", "https://hooks.slack.com/services/T/B/X"] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for bad in ["ftp://x", "http://", "https://user:pw@host/", "http://a b", "hooks.slack.com"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn payloads() {
        let evidence = json!({
            "app": "demo", "version": "2.0.0", "channel": "stable", "rollout_percent": 10.0,
            "rule": {"metric": "crash_free_sessions", "platform": "linux-x86_64", "tolerance": 0.005,
                     "new": {"rate": 0.95, "upper": 0.9596, "trials": 2000}, "baseline": {"lower": 0.994}},
        });
        let j = payload(Format::Json, &evidence);
        assert_eq!(j["event"], "rollout.halted");
        assert_eq!(j["evidence"], evidence);
        let s = payload(Format::Slack, &evidence);
        let text = s["text"].as_str().unwrap();
        assert!(
            text.contains("demo 2.0.0") && text.contains("95.00%") && text.contains("99.40%") && text.contains("0.50 points"),
            "{text}"
        );
        assert_eq!(s.as_object().unwrap().len(), 1);
    }
}
