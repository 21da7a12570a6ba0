//! Who may use the admin API.
//!
//! Loopback is not a boundary: every local user, and every web page a local browser opens,
//! can reach a loopback port. So a request must carry the host's token, which only the
//! host's user can read (`DATA_DIR/admin.token`, mode 0600, new at every start); its
//! `Host` must be the address the API listens on (a DNS-rebound name is refused before
//! anything else); and a request a browser sends on behalf of a page (`Origin`) is refused
//! unless the page is the host's own dashboard (the same origin as the API).

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::ErrorBody;

/// The file, in the data directory, that holds the token of the running host's API.
pub const TOKEN_FILE: &str = "admin.token";

/// What a request must show.
#[derive(Clone)]
pub struct Access {
    token: String,
    /// The port the API listens on, which `Host` must name.
    port: u16,
}

impl Access {
    /// A new random token for the API listening on `address`.
    pub fn new(address: SocketAddr) -> Access {
        let bytes: [u8; 32] = rand::random();
        let token = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Access {
            token,
            port: address.port(),
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Why `headers` may not use the API, if they may not.
    fn refuse(&self, headers: &HeaderMap) -> Option<(StatusCode, String)> {
        if let Some(refusal) = foreign_host(self.port, headers).or_else(|| another_page(headers)) {
            return Some((StatusCode::FORBIDDEN, refusal));
        }
        let shown = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "));
        if !shown.is_some_and(|token| same(token.as_bytes(), self.token.as_bytes())) {
            return Some((
                StatusCode::UNAUTHORIZED,
                format!(
                    "a missing or wrong token: send `Authorization: Bearer` with the content of DATA_DIR/{TOKEN_FILE}"
                ),
            ));
        }
        None
    }
}

/// Why a request to a loopback API on `port` with `headers` may come from a web page,
/// if it may: its `Host` is not an IP address or `localhost` with that port (a DNS name
/// could be one an attacker's page rebinds to this address), or it has an `Origin` (a
/// page's request; a form or `fetch` can POST to loopback without a preflight).
pub fn from_a_page(port: u16, headers: &HeaderMap) -> Option<String> {
    if let Some(refusal) = foreign_host(port, headers) {
        return Some(refusal);
    }
    if headers.contains_key(header::ORIGIN) {
        return Some("requests from web pages (with an Origin header) are refused".into());
    }
    None
}

/// Why a request to the API may come from a page other than the dashboard, if it may: its
/// `Origin` is not the API's own (`http://` and the `Host` [`foreign_host`] accepted), the
/// origin of the page the host serves.
fn another_page(headers: &HeaderMap) -> Option<String> {
    let origin = headers.get(header::ORIGIN)?;
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok())?;
    if origin.as_bytes() == format!("http://{host}").as_bytes() {
        return None;
    }
    Some("requests from web pages other than the dashboard (another Origin) are refused".into())
}

/// Why `headers` may not name the API on `port`, if they may not: see [`from_a_page`].
fn foreign_host(port: u16, headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let names_us = |host: &str| match host.parse::<SocketAddr>() {
        Ok(address) => address.port() == port,
        Err(_) => host
            .strip_prefix("localhost:")
            .is_some_and(|p| p.parse() == Ok(port)),
    };
    if !host.is_some_and(names_us) {
        return Some(format!(
            "the Host header must be an IP address or localhost, with port {port} (a name \
             that could be rebound to this address is refused)"
        ));
    }
    None
}

/// Compares in time independent of where the two differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The middleware that refuses requests [`Access`] does not allow.
pub async fn guard(State(access): State<Access>, request: Request, next: Next) -> Response {
    match access.refuse(request.headers()) {
        None => next.run(request).await,
        Some((status, error)) => {
            tracing::warn!(%status, "admin API: refused a request: {error}");
            let body = ErrorBody {
                error,
                kind: Some("denied".into()),
            };
            (status, axum::Json(body)).into_response()
        }
    }
}

/// The middleware in front of the dashboard's files, which hold no data and need no
/// token: only the `Host` is checked, as for the API.
pub async fn guard_host(State(access): State<Access>, request: Request, next: Next) -> Response {
    match foreign_host(access.port, request.headers()) {
        None => next.run(request).await,
        Some(error) => {
            let body = ErrorBody {
                error,
                kind: Some("denied".into()),
            };
            (StatusCode::FORBIDDEN, axum::Json(body)).into_response()
        }
    }
}

/// Writes `content` to `path` readable by this user only, replacing what was there.
pub fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    // A file left by another user or with other permissions is replaced, not reused.
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_the_token_bearer_on_the_api_address_without_an_origin_gets_in() {
        let access = Access::new("127.0.0.1:4000".parse().unwrap());
        let headers = |pairs: &[(header::HeaderName, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(name.clone(), HeaderValue::from_str(value).unwrap());
            }
            map
        };
        let bearer = format!("Bearer {}", access.token());
        let good = [
            (header::HOST, "127.0.0.1:4000"),
            (header::AUTHORIZATION, bearer.as_str()),
        ];
        assert_eq!(access.refuse(&headers(&good)), None);
        let local = [
            (header::HOST, "localhost:4000"),
            (header::AUTHORIZATION, bearer.as_str()),
        ];
        assert_eq!(access.refuse(&headers(&local)), None);
        let refused =
            |pairs: &[(header::HeaderName, &str)]| access.refuse(&headers(pairs)).unwrap().0;
        assert_eq!(refused(&good[..1]), StatusCode::UNAUTHORIZED);
        assert_eq!(
            refused(&[
                (header::HOST, "127.0.0.1:4000"),
                (header::AUTHORIZATION, "Bearer 00")
            ]),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            refused(&[
                (header::HOST, "evil.example:4000"),
                (header::AUTHORIZATION, bearer.as_str())
            ]),
            StatusCode::FORBIDDEN
        );
        assert_eq!(refused(&good[1..]), StatusCode::FORBIDDEN, "no Host");
        assert_eq!(
            refused(&[
                (header::HOST, "127.0.0.1:4001"),
                (header::AUTHORIZATION, bearer.as_str())
            ]),
            StatusCode::FORBIDDEN,
            "another port"
        );
        assert_eq!(
            refused(&[
                good[0].clone(),
                good[1].clone(),
                (header::ORIGIN, "http://attacker.example")
            ]),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            refused(&[
                good[0].clone(),
                good[1].clone(),
                (header::ORIGIN, "http://localhost:4000")
            ]),
            StatusCode::FORBIDDEN,
            "the dashboard's origin is the Host the request names"
        );
        let from_the_dashboard = [
            good[0].clone(),
            good[1].clone(),
            (header::ORIGIN, "http://127.0.0.1:4000"),
        ];
        assert_eq!(access.refuse(&headers(&from_the_dashboard)), None);
        assert!(
            from_a_page(4000, &headers(&from_the_dashboard)).is_some(),
            "other APIs refuse every page"
        );
        assert_ne!(
            Access::new("127.0.0.1:4000".parse().unwrap()).token(),
            access.token()
        );
    }
}
