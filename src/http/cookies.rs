//! Reading and writing cookies (a small, strict subset of RFC 6265: what Gatehouse sets, it can read).

use axum::http::HeaderMap;
use axum::http::header::COOKIE;

/// The value of the first cookie called `name`.
pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
}

/// A `Set-Cookie` value: HttpOnly, with the given path and SameSite, Secure when `secure`.
pub fn set(name: &str, value: &str, path: &str, same_site: &str, secure: bool, max_age: Option<i64>) -> String {
    let mut out = format!("{name}={value}; Path={path}; HttpOnly; SameSite={same_site}");
    if secure {
        out.push_str("; Secure");
    }
    if let Some(age) = max_age {
        out.push_str(&format!("; Max-Age={age}"));
    }
    out
}

/// A `Set-Cookie` value that removes the cookie.
pub fn clear(name: &str, path: &str, secure: bool) -> String {
    set(name, "", path, "Strict", secure, Some(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_cookie_among_many() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, "a=1; gh_admin=xyz; b=2".parse().unwrap());
        assert_eq!(get(&headers, "gh_admin").as_deref(), Some("xyz"));
        assert_eq!(get(&headers, "gh"), None);
    }
}
