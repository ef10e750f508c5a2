//! Privacy scrubbers, applied to every event before anything is stored. Keys that name secrets
//! lose their values; string values lose e-mail addresses, IP addresses, credit-card and IMEI
//! numbers (Luhn-checked), MAC addresses, bearer tokens, `key=value` secrets, and the user name
//! in home-directory paths. Hand-written scanners, no regular expressions: linear time on any
//! input.

use serde_json::Value;

pub const FILTERED: &str = "[Filtered]";

/// Key fragments (compared lowercased, `-` treated as `_`) whose values are always removed.
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "auth",
    "credential",
    "cookie",
    "session",
    "csrf",
    "private_key",
    "privatekey",
    "bearer",
    "signature",
    "dsn",
];

/// Keys with these exact names are left alone although they contain a fragment above
/// (Sentry's own structure, which holds no secrets).
const SAFE_KEYS: &[&str] = &["author", "authority"];

/// Whether a key names a secret.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace('-', "_");
    if SAFE_KEYS.contains(&k.as_str()) {
        return false;
    }
    SECRET_KEYS.iter().any(|s| k.contains(s))
}

/// Scrubs a JSON value in place: secret keys, then every string.
pub fn scrub_value(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if is_secret_key(k) && !matches!(val, Value::Null) {
                    *val = Value::String(FILTERED.into());
                } else {
                    scrub_value(val);
                }
            }
        }
        Value::Array(a) => {
            // `[key, value]` pairs (Sentry's header and cookie lists).
            if a.len() == 2 && a[0].as_str().is_some_and(is_secret_key) {
                a[1] = Value::String(FILTERED.into());
                return;
            }
            a.iter_mut().for_each(scrub_value);
        }
        Value::String(s) => {
            if let Some(clean) = scrub_str(s) {
                *s = clean;
            }
        }
        _ => {}
    }
}

/// The scrubbed string, or `None` when nothing in it needed scrubbing. The passes run again
/// on what they changed until nothing changes (a replacement can split a token so that a
/// part of it is found the next time, e.g. an IPv6 address before an IMEI), so scrubbed
/// text never needs another pass.
pub fn scrub_str(s: &str) -> Option<String> {
    let mut cur = scrub_once(s)?;
    for _ in 0..4 {
        match scrub_once(&cur) {
            Some(next) => cur = next,
            None => break,
        }
    }
    Some(cur)
}

fn scrub_once(s: &str) -> Option<String> {
    let mut out = home_dirs(s);
    let mut changed = out.is_some();
    let cur = out.take().unwrap_or_else(|| s.to_owned());
    let (cur, c1) = key_values(&cur);
    let (cur, c2) = bearer(&cur);
    let (cur, c3) = tokens(&cur);
    let (cur, c4) = digit_runs(&cur);
    changed |= c1 | c2 | c3 | c4;
    changed.then_some(cur)
}

/// `/home/NAME`, `/Users/NAME`, `C:\Users\NAME` (any drive, either slash) → `[user]`.
fn home_dirs(s: &str) -> Option<String> {
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut changed = false;
    let b = s.as_bytes();
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        let rest = &lower[i..];
        let prefix = if rest.starts_with("/home/") {
            Some(6)
        } else if rest.starts_with("/users/") {
            Some(7)
        } else if i + 9 <= b.len()
            && b[i].is_ascii_alphabetic()
            && (rest[1..].starts_with(":\\users\\") || rest[1..].starts_with(":/users/"))
        {
            Some(9)
        } else {
            None
        };
        if let Some(n) = prefix {
            let start = i + n;
            let end = b[start..]
                .iter()
                .position(|&c| c == b'/' || c == b'\\' || c == b'"' || c == b'\'' || c.is_ascii_whitespace())
                .map_or(b.len(), |p| start + p);
            let name = &s[start..end];
            if !name.is_empty() && name != "[user]" {
                out.push_str(&s[copied..start]);
                out.push_str("[user]");
                copied = end;
                changed = true;
            }
            i = end.max(i + 1);
            continue;
        }
        i += 1;
        while i < b.len() && !s.is_char_boundary(i) {
            i += 1;
        }
    }
    if !changed {
        return None;
    }
    out.push_str(&s[copied..]);
    Some(out)
}

/// `password=…`, `token: …` inside free text and query strings.
fn key_values(s: &str) -> (String, bool) {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    let mut changed = false;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' || b[i] == b':' {
            // The key is the run of word characters before the separator.
            let mut k = i;
            while k > 0 && (b[k - 1].is_ascii_alphanumeric() || b[k - 1] == b'_' || b[k - 1] == b'-') {
                k -= 1;
            }
            let mut v = i + 1;
            if b[i] == b':' {
                while v < b.len() && b[v] == b' ' {
                    v += 1;
                }
            }
            let stop = |from: usize| {
                b[from..].iter().position(|&c| matches!(c, b'&' | b';' | b',' | b' ' | b'\n' | b'"' | b'\'')).map_or(b.len(), |p| from + p)
            };
            let mut end = stop(v);
            // `Authorization: Bearer xyz`: the credential is the word after the scheme.
            if end < b.len() && b[end] == b' ' && matches!(s[v..end].to_ascii_lowercase().as_str(), "bearer" | "basic" | "digest") {
                end = stop(end + 1);
            }
            if k < i && end > v && is_secret_key(&s[k..i]) && &s[v..end] != FILTERED && s.is_char_boundary(v) && s.is_char_boundary(end) {
                out.push_str(&s[copied..v]);
                out.push_str(FILTERED);
                copied = end;
                changed = true;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&s[copied..]);
    (out, changed)
}

/// `Bearer …` / `Basic …` credentials, in one pass over the string in order, whichever scheme
/// comes next (two passes, one per scheme, skipped a `Basic` credential that came before a
/// `Bearer` one, and scrubbing was not idempotent; found by the envelope fuzz target).
fn bearer(s: &str) -> (String, bool) {
    const SCHEMES: [&str; 2] = ["bearer ", "basic "];
    // ASCII lowercasing keeps every byte where it was: indices into `lower` are indices into `s`.
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    let mut changed = false;
    let mut from = 0;
    while let Some((at, len)) = SCHEMES.iter().filter_map(|sch| lower[from..].find(sch).map(|p| (from + p, sch.len()))).min() {
        let v = at + len;
        let end = s[v..].find(|c: char| c.is_whitespace() || c == '"' || c == ',').map_or(s.len(), |e| v + e);
        if end > v && &s[v..end] != FILTERED {
            out.push_str(&s[copied..v]);
            out.push_str(FILTERED);
            copied = end;
            changed = true;
        }
        from = end.max(v);
    }
    out.push_str(&s[copied..]);
    (out, changed)
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-' | '@' | ':')
}

/// Whitespace- and punctuation-delimited tokens: e-mail addresses, IPs, MAC addresses.
fn tokens(s: &str) -> (String, bool) {
    let mut out = String::with_capacity(s.len());
    let mut changed = false;
    let mut start = None;
    let flush = |out: &mut String, tok: &str, changed: &mut bool| {
        let t = tok.trim_end_matches(['.', ':', '-']);
        let tail = &tok[t.len()..];
        match classify(t) {
            Some(repl) => {
                out.push_str(repl);
                out.push_str(tail);
                *changed = true;
            }
            None => out.push_str(tok),
        }
    };
    for (i, c) in s.char_indices() {
        if is_token_char(c) {
            start.get_or_insert(i);
        } else {
            if let Some(st) = start.take() {
                flush(&mut out, &s[st..i], &mut changed);
            }
            out.push(c);
        }
    }
    if let Some(st) = start {
        flush(&mut out, &s[st..], &mut changed);
    }
    (out, changed)
}

fn classify(t: &str) -> Option<&'static str> {
    if t.len() < 3 {
        return None;
    }
    if is_email(t) {
        return Some("[email]");
    }
    if is_mac(t) {
        return Some("[mac]");
    }
    if t.contains('.') && t.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some("[ip]");
    }
    // IPv4 with a port.
    if let Some((h, p)) = t.rsplit_once(':') {
        if h.parse::<std::net::Ipv4Addr>().is_ok() && p.parse::<u16>().is_ok() {
            return Some("[ip]");
        }
    }
    if t.matches(':').count() >= 2 && t.parse::<std::net::Ipv6Addr>().is_ok() && t != "::" {
        return Some("[ip]");
    }
    None
}

fn is_email(t: &str) -> bool {
    let Some((local, domain)) = t.split_once('@') else { return false };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && domain.rsplit('.').next().is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()))
}

fn is_mac(t: &str) -> bool {
    let sep = if t.contains(':') { ':' } else { '-' };
    let parts: Vec<&str> = t.split(sep).collect();
    parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Runs of digits (spaces and dashes allowed between them) of 13–19 digits that pass the Luhn
/// check: card numbers, and 15-digit IMEIs.
fn digit_runs(s: &str) -> (String, bool) {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    let mut changed = false;
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
            let mut j = i;
            let mut last_digit = i;
            let mut digits = Vec::new();
            while j < b.len() && (b[j].is_ascii_digit() || ((b[j] == b' ' || b[j] == b'-') && j + 1 < b.len() && b[j + 1].is_ascii_digit()))
            {
                if b[j].is_ascii_digit() {
                    digits.push(b[j] - b'0');
                    last_digit = j;
                }
                j += 1;
            }
            let end = last_digit + 1;
            let bounded = end == b.len() || !b[end].is_ascii_alphanumeric();
            if bounded && (13..=19).contains(&digits.len()) && luhn(&digits) {
                out.push_str(&s[copied..i]);
                out.push_str(if digits.len() == 15 { "[imei]" } else { "[card]" });
                copied = end;
                changed = true;
            }
            i = end.max(i + 1);
            continue;
        }
        i += 1;
    }
    out.push_str(&s[copied..]);
    (out, changed)
}

/// The Luhn checksum (cards, IMEI).
pub fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s(x: &str) -> String {
        scrub_str(x).unwrap_or_else(|| x.to_owned())
    }

    #[test]
    fn each_value_scrubber() {
        assert_eq!(s("mail alice@example.com now"), "mail [email] now");
        assert_eq!(s("from 192.168.1.20 and 10.0.0.1:8080."), "from [ip] and [ip].");
        assert_eq!(s("v6 2001:db8::ff00:42:8329 here"), "v6 [ip] here");
        assert_eq!(s("card 4111 1111 1111 1111 ok"), "card [card] ok");
        assert_eq!(s("card 4111-1111-1111-1112 bad luhn"), "card 4111-1111-1111-1112 bad luhn");
        assert_eq!(s("imei 490154203237518"), "imei [imei]");
        assert_eq!(s("mac 00:1A:2b:3c:4D:5e, 00-1a-2b-3c-4d-5e"), "mac [mac], [mac]");
        assert_eq!(s("/home/alice/app/main.py"), "/home/[user]/app/main.py");
        assert_eq!(s("at /Users/Bob/Library"), "at /Users/[user]/Library");
        assert_eq!(s(r"C:\Users\carol\AppData\x.dll"), r"C:\Users\[user]\AppData\x.dll");
        assert_eq!(s("d:/users/dave"), "d:/users/[user]");
        assert_eq!(s("Authorization: Bearer abc.def.ghi"), "Authorization: [Filtered]");
        assert_eq!(s("Bearer abc.def"), "Bearer [Filtered]");
        // A Basic credential before a Bearer one (the fuzz target's finding): both, in one pass.
        assert_eq!(s("x basic dXNlcjpwdw== then Bearer abc"), "x basic [Filtered] then Bearer [Filtered]");
        let found = "{\"$-ybasic /Use6_01:46_016 {\"type\":\"sessions\"}9_01_01t=abc Bearer xyz\"starte+\"";
        let once = scrub_str(found).unwrap();
        assert_eq!(scrub_str(&once), None, "{once}");
        // An IPv6 address run into an IMEI: the address shows only once the IMEI is replaced.
        let once = scrub_str("rs\\dan 00::3c2b:490154203237518").unwrap();
        assert_eq!(scrub_str(&once), None, "{once}");
        assert!(!once.contains("3c2b"), "{once}");
        assert_eq!(s("GET /x?user=1&password=hunter2&token=t0k"), "GET /x?user=1&password=[Filtered]&token=[Filtered]");
        // Things that look close but are not personal data stay.
        for keep in ["version 1.2.3.4.5", "12:30:45", "ValueError: boom", "9ec79c33ec9942ab8353589fcb2e04dc", "a@b", "ratio 3:4"] {
            assert_eq!(s(keep), keep);
        }
        assert_eq!(scrub_str("nothing here"), None);
    }

    #[test]
    fn keys_and_pairs() {
        let mut v = json!({
            "password": "x", "db": {"API-Key": 1, "author": "me"}, "Cookie": "a=b",
            "headers": [["Authorization", "Basic Zm9v"], ["Accept", "*/*"]], "user_token": null
        });
        scrub_value(&mut v);
        assert_eq!(
            v,
            json!({
                "password": FILTERED, "db": {"API-Key": FILTERED, "author": "me"}, "Cookie": FILTERED,
                "headers": [["Authorization", FILTERED], ["Accept", "*/*"]], "user_token": null
            })
        );
    }
}
