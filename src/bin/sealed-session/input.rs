//! Finds the token in what the user pasted: a bare token, a `Set-Cookie` value (or several
//! lines of them, for a chunked cookie), or a whole `Cookie` header.

use std::collections::BTreeMap;

use crate::{CliError, list_or_none, usage};

/// The token found, and the cookie it came from.
#[derive(Debug, Default)]
pub struct Found {
    pub token: String,
    /// `token` (a bare token), `cookie` (a `Cookie` request header) or `set-cookie` (one or
    /// more `Set-Cookie` response headers).
    pub source: &'static str,
    /// The cookie's name as sent (without a chunk suffix); `None` for a bare token.
    pub cookie_name: Option<String>,
    /// Number of chunk cookies reassembled (0 for an unchunked cookie or a bare token).
    pub chunks: usize,
    /// Things worth telling the user (a plain cookie beside chunks, ...).
    pub notes: Vec<String>,
}

/// Cookie attribute names of `Set-Cookie`.
const ATTRIBUTES: &str =
    "path domain expires max-age samesite secure httponly partitioned priority";

/// Longest chunk index looked for.
const MAX_CHUNKS: usize = 64;

/// The session cookie names to look for, in order: `__Host-NAME` then `NAME`, or exactly
/// the name given when it already carries a `__Host-` or `__Secure-` prefix.
pub fn candidate_names(name: &str) -> Vec<String> {
    if name.starts_with("__Host-") || name.starts_with("__Secure-") {
        vec![name.to_owned()]
    } else {
        vec![format!("__Host-{name}"), name.to_owned()]
    }
}

/// `line` without a leading `Cookie:` or `Set-Cookie:` (in any case), and which it was.
fn strip_header_name(line: &str) -> (&str, Option<&'static str>) {
    let line = line.trim();
    for (prefix, source) in [("set-cookie:", "set-cookie"), ("cookie:", "cookie")] {
        if let Some(head) = line.get(..prefix.len())
            && head.eq_ignore_ascii_case(prefix)
        {
            return (line.get(prefix.len()..).unwrap_or("").trim(), Some(source));
        }
    }
    (line, None)
}

/// Whether a `;`-separated pair is a Set-Cookie attribute (`Path=/`, `HttpOnly`, ...).
fn is_attribute(pair: &str) -> bool {
    let key = pair.split_once('=').map_or(pair, |(k, _)| k).trim();
    ATTRIBUTES.split(' ').any(|a| a.eq_ignore_ascii_case(key))
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(v)
}

/// Finds the session token in `input`. `name` is the cookie name (without a chunk suffix;
/// `__Host-` is tried first unless the name has a prefix already).
pub fn find_token(input: &str, name: &str) -> Result<Found, CliError> {
    let input = input.trim();
    if input.is_empty() {
        return Err(usage(
            "the input is empty; give a token, a Set-Cookie value or a Cookie header",
        ));
    }
    // A token (sealed, signed or JWT) never has `=` (no base64 padding) or `;`.
    // Whitespace is dropped, so a token wrapped over several lines reads whole.
    let (_, header) = strip_header_name(input.lines().next().unwrap_or(""));
    if header.is_none() && !input.contains(['=', ';']) {
        let token = unquote(input).split_whitespace().collect();
        return Ok(Found {
            token,
            source: "token",
            ..Found::default()
        });
    }

    // Every (name, value) pair, in order; a Set-Cookie line contributes its first pair only.
    let several_lines = input.lines().count() > 1;
    let mut cookies: Vec<(&str, &str)> = Vec::new();
    let mut source = "cookie";
    for line in input.lines().filter(|l| !l.trim().is_empty()) {
        let (line, header) = strip_header_name(line);
        let pairs = line.split(';').map(str::trim).filter(|p| !p.is_empty());
        // Without a header name: Set-Cookie lines when several, or when attributes follow.
        let set_cookie = match header {
            Some(h) => h == "set-cookie",
            None => several_lines || pairs.clone().skip(1).any(is_attribute),
        };
        if set_cookie {
            source = "set-cookie";
        }
        let pairs = pairs.take(if set_cookie { 1 } else { usize::MAX });
        cookies.extend(
            pairs
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.trim(), unquote(v))),
        );
    }

    for wanted in candidate_names(name) {
        let plain = cookies.iter().find(|(k, _)| *k == wanted).map(|(_, v)| *v);
        // `wanted.N` cookies by N; reversed, so that the first of two with the same N wins.
        let chunks: BTreeMap<usize, &str> = cookies
            .iter()
            .rev()
            .filter(|(_, v)| !v.is_empty())
            .filter_map(|(k, v)| {
                let i = k.strip_prefix(wanted.as_str())?.strip_prefix('.')?;
                let i = i.parse::<usize>().ok().filter(|i| *i < MAX_CHUNKS)?;
                Some((i, *v))
            })
            .collect();
        let token = if chunks.is_empty() {
            match plain {
                None => continue,
                Some("") => {
                    return Err(usage(format!(
                        "cookie {wanted} is empty (a removal cookie?); nothing to inspect"
                    )));
                }
                Some(v) => v.to_owned(),
            }
        } else if let Some(missing) = (0..chunks.len()).find(|i| !chunks.contains_key(i)) {
            return Err(usage(format!(
                "chunk cookie {wanted}.{missing} is missing ({} chunks present); paste every {wanted}.N cookie",
                chunks.len()
            )));
        } else {
            chunks.values().copied().collect()
        };
        let shadowed = !chunks.is_empty() && plain.is_some_and(|p| !p.is_empty());
        let notes = shadowed.then(|| {
            format!("a plain {wanted} cookie is present too; the chunks win, as in the middleware")
        });
        return Ok(Found {
            token,
            source,
            cookie_name: Some(wanted),
            chunks: chunks.len(),
            notes: notes.into_iter().collect(),
        });
    }
    let mut found: Vec<&str> = cookies.iter().map(|(k, _)| *k).collect();
    found.dedup();
    Err(usage(format!(
        "no session cookie named {} in the input (cookies found: {}); pass --name with the cookie's name",
        candidate_names(name).join(" or "),
        list_or_none(&found)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Cookie headers, Set-Cookie values, chunks and the errors: see tests/cli.rs.
    #[test]
    fn forms_the_cli_tests_do_not_use() {
        let f = find_token("  AQECaz\nEA-_x \n", "sid").unwrap();
        assert_eq!((f.token.as_str(), f.source), ("AQECazEA-_x", "token"));
        let lines = "Set-Cookie: __Host-sid.0=AB; Path=/\nSet-Cookie: __Host-sid.1=CD; Path=/";
        let f = find_token(lines, "sid").unwrap();
        assert_eq!(
            (f.token.as_str(), f.source, f.chunks),
            ("ABCD", "set-cookie", 2)
        );
        let removal = find_token("sid=; Max-Age=0; Path=/", "sid").unwrap_err();
        assert!(removal.message.contains("cookie sid is empty"));
        assert_eq!(candidate_names("__Host-x"), ["__Host-x"]);
    }
}
