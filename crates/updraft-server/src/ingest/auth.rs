//! DSN authentication: the public key from `X-Sentry-Auth` (or `Authorization: Sentry …`), the
//! `sentry_key` query parameter, or the envelope header's `dsn`.

/// `Sentry sentry_key=abc, sentry_version=7, …` → `abc`.
pub fn key_from_auth_header(value: &str) -> Option<&str> {
    let rest = value.trim();
    let rest = rest.strip_prefix("Sentry").or_else(|| rest.strip_prefix("sentry")).unwrap_or(rest);
    rest.split(',').map(str::trim).find_map(|kv| kv.strip_prefix("sentry_key=")).map(str::trim).filter(|k| !k.is_empty())
}

/// `sentry_key` from a query string.
pub fn key_from_query(query: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "sentry_key")
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// `https://KEY[:SECRET]@host[:port]/[path/]PROJECT_ID` → (KEY, PROJECT_ID).
pub fn parse_dsn(dsn: &str) -> Option<(&str, &str)> {
    let (_, rest) = dsn.split_once("://")?;
    let (userinfo, hostpath) = rest.split_once('@')?;
    let key = userinfo.split(':').next().filter(|k| !k.is_empty())?;
    let project = hostpath.trim_end_matches('/').rsplit('/').next()?;
    Some((key, project))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_key_everywhere() {
        assert_eq!(key_from_auth_header("Sentry sentry_key=abc123, sentry_version=7, sentry_client=sentry.python/2.0"), Some("abc123"));
        assert_eq!(key_from_auth_header("Sentry sentry_version=7,sentry_key=k"), Some("k"));
        assert_eq!(key_from_auth_header("Sentry sentry_version=7"), None);
        assert_eq!(key_from_query("sentry_version=7&sentry_key=q1"), Some("q1".into()));
        assert_eq!(key_from_query("sentry_key="), None);
        assert_eq!(parse_dsn("https://pub:sec@example.com:9000/sub/42"), Some(("pub", "42")));
        assert_eq!(parse_dsn("http://k@127.0.0.1:8080/7/"), Some(("k", "7")));
        assert_eq!(parse_dsn("not a dsn"), None);
    }
}
