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

/// Whether a webhook may reach `ip` by default. Not: loopback, private (RFC 1918, IPv6
/// unique-local), link-local (where clouds serve instance credentials, 169.254.169.254),
/// carrier-grade NAT, unspecified, broadcast or multicast — the server's own network, which a
/// webhook URL must not turn into a target (SSRF).
pub fn is_public(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(a) => {
            let [o0, o1, ..] = a.octets();
            !(a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || o0 == 0
                || (o0 == 100 && (o1 & 0xc0) == 64))
        }
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                let s0 = a.segments()[0];
                !(a.is_loopback() || a.is_unspecified() || a.is_multicast() || (s0 & 0xfe00) == 0xfc00 || (s0 & 0xffc0) == 0xfe80)
            }
        },
    }
}

const PRIVATE_HINT: &str = "set UPDRAFT_WEBHOOK_ALLOW_PRIVATE=true to allow webhooks into the server's own network";

/// Refuses a URL whose host is, by name or address, in the server's own network (see
/// [`is_public`]), unless `allow_private`. Names are resolved again at each delivery.
pub fn check_address(url: &str, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let refused = match parsed.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(a)) => !is_public(a.into()),
        Some(url::Host::Ipv6(a)) => !is_public(a.into()),
        None => true,
    };
    if refused {
        return Err(format!("the host is a loopback, private or link-local address: {PRIVATE_HINT}"));
    }
    Ok(())
}

/// Resolves the URL's host once, refusing addresses in the server's own network unless
/// `allow_private`, and pins the client to what was checked (no second lookup an attacker's DNS
/// could answer differently).
async fn pinned_client(url: &str, allow_private: bool) -> Result<reqwest::Client, String> {
    check_address(url, allow_private)?;
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let mut builder = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("updraft/", env!("CARGO_PKG_VERSION")));
    if let Some(url::Host::Domain(host)) = parsed.host() {
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addrs: Vec<std::net::SocketAddr> =
            tokio::net::lookup_host((host, port)).await.map_err(|e| format!("cannot resolve {host}: {e}"))?.collect();
        if !allow_private && addrs.iter().any(|a| !is_public(a.ip())) {
            return Err(format!("{host} resolves into the server's own network: {PRIVATE_HINT}"));
        }
        builder = builder.resolve_to_addrs(host, &addrs);
    }
    builder.build().map_err(|e| format!("cannot build an HTTP client: {e}"))
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
pub async fn deliver(hook: Webhook, evidence: Value, allow_private: bool) {
    let body = payload(hook.format, &evidence);
    let client = match pinned_client(&hook.url, allow_private).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook: not delivering the halt");
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
    fn the_servers_own_network_is_refused_unless_allowed() {
        for bad in [
            "http://127.0.0.1:9/hook",
            "http://localhost/x",
            "http://api.localhost./x",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://172.16.5.4/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(check_address(bad, false).is_err(), "{bad}");
            assert_eq!(check_address(bad, true), Ok(()), "{bad}");
        }
        for ok in ["https://hooks.slack.com/services/T/B/X", "http://8.8.8.8/", "http://[2001:4860::8888]/", "http://172.32.0.1/"] {
            assert_eq!(check_address(ok, false), Ok(()), "{ok}");
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
