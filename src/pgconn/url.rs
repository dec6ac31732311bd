//! The text of connection URLs: taking out the TLS parameters tokio-postgres does
//! not know, and hiding passwords for logs. Both `postgres://` URLs and libpq
//! `key=value` strings are understood.

const REDACTED: &str = "***";

const TLS_PARAMS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// `url` without its TLS parameters, and those parameters (decoded).
pub(super) fn split_tls_params(url: &str) -> (String, Vec<(String, String)>) {
    let mut params = Vec::new();
    if is_uri(url) {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_string(), params);
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some((key, value)) if TLS_PARAMS.contains(&key) => {
                    params.push((key.to_string(), percent_decode(value)));
                }
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (rest, params);
    }
    let mut kept = Vec::new();
    for token in key_value_tokens(url) {
        match token.split_once('=') {
            Some((key, value)) if TLS_PARAMS.contains(&key.trim()) => {
                params.push((key.trim().to_string(), unquote(value.trim())));
            }
            _ => kept.push(token),
        }
    }
    (kept.join(" "), params)
}

fn is_uri(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The `key=value` items of a libpq connection string, as written (quotes kept).
fn key_value_tokens(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut start = None;
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in text.char_indices() {
        if start.is_none() && !c.is_whitespace() {
            start = Some(i);
        }
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '\'' {
            quoted = !quoted;
        } else if c.is_whitespace() && !quoted {
            // "key = value" is legal in libpq; keep it as one item.
            let item = start.map_or("", |s| &text[s..i]);
            let rest = text[i..].trim_start();
            if !(item.ends_with('=') || rest.starts_with('='))
                && let Some(s) = start.take()
            {
                tokens.push(&text[s..i]);
            }
        }
    }
    if let Some(s) = start {
        tokens.push(&text[s..]);
    }
    tokens
}

fn unquote(value: &str) -> String {
    let inner = value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(value);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().unwrap_or('\\')
        } else {
            c
        });
    }
    out
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `url` with its password (user info or `password` parameter) replaced by `***`,
/// for logs and error messages.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return redact_key_values(url);
    };
    // The last '@' ends the user info even when the password holds '@', '/' or '?'.
    let (authority, tail) = match rest.rfind('@') {
        Some(at) => {
            let (userinfo, tail) = rest.split_at(at);
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let shown = if userinfo.contains(':') {
                format!("{user}:{REDACTED}")
            } else {
                user.to_string()
            };
            (shown, tail)
        }
        None => (String::new(), rest),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => format!("{path}?{}", redact_query(query)),
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

fn redact_query(query: &str) -> String {
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some(("password", _)) => format!("password={REDACTED}"),
            _ => pair.to_string(),
        })
        .collect();
    pairs.join("&")
}

fn redact_key_values(text: &str) -> String {
    let tokens: Vec<String> = key_value_tokens(text)
        .into_iter()
        .map(|token| match token.split_once('=') {
            Some((key, _)) if key.trim() == "password" => format!("password={REDACTED}"),
            _ => token.to_string(),
        })
        .collect();
    tokens.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_params_leave_the_url_and_are_decoded() {
        let (rest, params) = split_tls_params(
            "postgres://u:p@h:5433/db?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem",
        );
        assert_eq!(rest, "postgres://u:p@h:5433/db?application_name=x");
        assert_eq!(
            params,
            vec![
                ("sslmode".to_string(), "verify-full".to_string()),
                ("sslrootcert".to_string(), "/etc/ca.pem".to_string()),
            ]
        );
        let (rest, params) = split_tls_params("postgres://h/db?sslmode=require");
        assert_eq!(rest, "postgres://h/db");
        assert_eq!(params.len(), 1);
    }

    #[test]
    fn tls_params_of_key_value_strings() {
        let (rest, params) = split_tls_params(
            "host=h user=u password='a b\\'c' sslmode = verify-ca sslrootcert='/x y.pem'",
        );
        assert_eq!(rest, "host=h user=u password='a b\\'c'");
        assert_eq!(
            params,
            vec![
                ("sslmode".to_string(), "verify-ca".to_string()),
                ("sslrootcert".to_string(), "/x y.pem".to_string()),
            ]
        );
    }

    #[test]
    fn redact_url_hides_passwords_only() {
        assert_eq!(
            redact_url("postgres://alice:s3cr@t/x?@h:5432/db?sslmode=require&password=two"),
            "postgres://alice:***@h:5432/db?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("postgresql://alice@h/db"),
            "postgresql://alice@h/db"
        );
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
        assert_eq!(
            redact_url("host=h password='x y' user=u"),
            "host=h password=*** user=u"
        );
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(percent_decode("a%20b%2f%zz%"), "a b/%zz%");
    }
}
