//! `poll`: HTTP(S) fetched by the host for the plugin, only from allowed origins, with
//! a timeout and a cap on the body size. The only module that fetches for plugins
//! (reqwest); the admin API's client in `synchro-admin` is reqwest's only other user.
//!
//! ```toml
//! [capabilities]
//! poll = { hosts = ["http://127.0.0.1:8181", "https://*.example.com"] }
//! ```
//!
//! An origin is a scheme, a host and a port (the scheme's default when omitted); a host
//! `*.example.com` allows every subdomain of example.com, but not example.com itself.
//! Redirects are not followed — the plugin sees the 3xx — so a redirect cannot lead a
//! request outside the allowed origins.

use std::sync::Arc;
use std::time::{Duration, Instant};

use synchro_manifest::ManifestError;
use synchro_model::ErrorKind;
use synchro_wit::WitError;
pub(super) use synchro_wit::imports::poll as wit;

use serde::Deserialize;

use crate::{Asks, CallContext, denied, fail, raw};

/// Host-side settings of the `poll` capability: `[poll]` in the host config.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct PollSettings {
    /// Timeout of one request unless the plugin asks for less.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Largest response body handed to a plugin.
    pub max_body_bytes: usize,
}

impl Default for PollSettings {
    fn default() -> Self {
        PollSettings {
            timeout: Duration::from_secs(10),
            max_body_bytes: 16 << 20,
        }
    }
}

impl PollSettings {
    /// Checks the values; errors start with the field's name.
    pub fn check(&self) -> Result<(), String> {
        if self.timeout.is_zero() {
            return Err("timeout`: must be longer than zero".into());
        }
        if self.timeout > Duration::from_secs(24 * 3600) {
            return Err("timeout`: must be at most a day".into());
        }
        if self.max_body_bytes == 0 {
            return Err("max-body-bytes`: must be at least 1".into());
        }
        Ok(())
    }
}

/// The HTTP client plugins' requests go through, shared by every plugin.
#[derive(Clone)]
pub struct Http {
    backend: Backend,
    settings: PollSettings,
}

/// Where requests go once the capability's checks let them through.
#[derive(Clone)]
enum Backend {
    Network(reqwest::Client),
    Canned(Arc<[Canned]>),
}

/// An answer given without the network, to the request with its method and URL:
/// `synchro plugin test` runs a plugin against its fixtures' answers, through the same
/// checks (granted origins, headers, body cap) as a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canned {
    pub method: String,
    pub url: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Http {
    pub fn new(settings: PollSettings) -> Result<Http, String> {
        let client = reqwest::Client::builder()
            // A redirect could lead outside the allowed hosts: plugins see 3xx and decide.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("synchro/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client for `poll`: {e}"))?;
        Ok(Http {
            backend: Backend::Network(client),
            settings,
        })
    }

    /// A client that answers from `answers` alone; a request none of them matches fails
    /// as `unavailable`, naming it.
    pub fn canned(settings: PollSettings, answers: Vec<Canned>) -> Http {
        Http {
            backend: Backend::Canned(answers.into()),
            settings,
        }
    }
}

/// The canned answer to `method` `url`, held to the body cap `limit`.
fn answer(answers: &[Canned], method: &str, url: &url::Url, limit: usize) -> Result<wit::Response, WitError> {
    let found = answers.iter().find(|a| {
        a.method.eq_ignore_ascii_case(method) && url::Url::parse(&a.url).is_ok_and(|u| u == *url)
    });
    let Some(found) = found else {
        return Err(fail(
            ErrorKind::Unavailable,
            format!("{method} {url}: no fixture answers this request"),
        ));
    };
    if found.body.len() > limit {
        return Err(fail(
            ErrorKind::Failed,
            format!("{url}: the response is larger than the {limit}-byte cap"),
        ));
    }
    Ok(wit::Response {
        status: found.status,
        headers: found.headers.clone(),
        body: found.body.clone(),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    /// Lower case; for a wildcard, the suffix after `*.`.
    host: String,
    wildcard: bool,
    port: u16,
}

impl Origin {
    fn parse(text: &str) -> Result<Origin, String> {
        let (wildcard, url_text) = match text.split_once("://*.") {
            Some((scheme, rest)) => (true, format!("{scheme}://{rest}")),
            None => (false, text.to_owned()),
        };
        let url =
            url::Url::parse(&url_text).map_err(|e| format!("`{text}` is not an origin: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("`{text}`: only http and https can be polled"));
        }
        if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
            return Err(format!(
                "`{text}`: give an origin (scheme://host[:port]), without a path"
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| format!("`{text}` has no host"))?;
        Ok(Origin {
            scheme: url.scheme().to_owned(),
            host: host.to_ascii_lowercase(),
            wildcard,
            port: url
                .port_or_known_default()
                .expect("http and https have default ports"),
        })
    }

    /// Whether every origin `other` allows, this one allows too.
    fn covers(&self, other: &Origin) -> bool {
        if self.scheme != other.scheme || self.port != other.port {
            return false;
        }
        match (self.wildcard, other.wildcard) {
            (false, false) | (true, true) if self.host == other.host => true,
            (true, _) => other
                .host
                .strip_suffix(&self.host)
                .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
            _ => false,
        }
    }

    fn allows(&self, url: &url::Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let host_ok = if self.wildcard {
            host.strip_suffix(&self.host)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
        } else {
            host == self.host
        };
        host_ok && url.scheme() == self.scheme && url.port_or_known_default() == Some(self.port)
    }
}

#[derive(Debug, Default)]
pub struct Grant {
    origins: Vec<Origin>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let wildcard = if self.wildcard { "*." } else { "" };
        write!(f, "{}://{wildcard}{}:{}", self.scheme, self.host, self.port)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    hosts: Vec<String>,
}

fn origins(entry: &toml::Value) -> Result<Vec<Origin>, String> {
    let raw: Raw = raw(entry)?;
    raw.hosts
        .iter()
        .map(|h| Origin::parse(h))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("hosts: {e}"))
}

impl crate::Grant for Grant {
    fn parse(asks: &Asks<'_>, entry: Option<&toml::Value>) -> Result<Self, ManifestError> {
        let Some(entry) = entry else {
            return Ok(Grant::default());
        };
        let origins = origins(entry).map_err(|e| {
            asks.manifest
                .error(format!("field `capabilities.poll`: {e}"))
        })?;
        Ok(Grant { origins })
    }

    /// Keeps the asked origins an operator origin covers, and the operator's origins that
    /// an asked wildcard covers.
    fn narrow(&mut self, operator: Option<&toml::Value>) -> Result<(), String> {
        let operator = operator.map(origins).transpose()?.unwrap_or_default();
        let asked = std::mem::take(&mut self.origins);
        for origin in &asked {
            if operator.iter().any(|o| o.covers(origin)) {
                self.origins.push(origin.clone());
            }
        }
        for origin in operator {
            if !self.origins.contains(&origin) && asked.iter().any(|a| a.covers(&origin)) {
                self.origins.push(origin);
            }
        }
        Ok(())
    }

    fn describe(&self) -> Option<String> {
        let origins: Vec<String> = self.origins.iter().map(|o| o.to_string()).collect();
        (!origins.is_empty()).then(|| origins.join(", "))
    }
}

/// Whether the header `name` is the host's to set: `Host` would reach another site on a
/// granted address (the grant is for an origin, not an address); the framing and
/// hop-by-hop headers would let a plugin smuggle a second request into the connection.
fn is_hosts_header(name: &str) -> bool {
    const HOSTS: &[&str] = &[
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
    ];
    HOSTS.iter().any(|h| name.trim().eq_ignore_ascii_case(h))
}

pub struct Capability {
    call: CallContext,
}

impl Capability {
    pub fn new(call: &CallContext) -> Capability {
        Capability { call: call.clone() }
    }
}

impl wit::Host for Capability {
    async fn poll(&mut self, req: wit::Request) -> Result<wit::Response, WitError> {
        let url = url::Url::parse(&req.url).map_err(|e| {
            fail(
                ErrorKind::InvalidInput,
                format!("`{}` is not a URL: {e}", req.url),
            )
        })?;
        if let Some((name, _)) = req.headers.iter().find(|(n, _)| is_hosts_header(n)) {
            return Err(denied(
                &self.call,
                "poll",
                format_args!("setting header `{name}` (the host sets it from the URL)"),
            ));
        }
        if !self.call.grants.poll.origins.iter().any(|o| o.allows(&url)) {
            return Err(denied(&self.call, "poll", format_args!("fetching `{url}`")));
        }
        let method = reqwest::Method::from_bytes(req.method.as_bytes()).map_err(|_| {
            fail(
                ErrorKind::InvalidInput,
                format!("`{}` is not an HTTP method", req.method),
            )
        })?;
        let settings = &self.call.services.http.settings;
        let asked = req
            .timeout_ms
            .map_or(settings.timeout, |ms| Duration::from_millis(ms.into()));
        let timeout = asked
            .min(settings.timeout)
            .min(self.call.deadline.saturating_duration_since(Instant::now()));
        let limit = settings.max_body_bytes;
        let client = match &self.call.services.http.backend {
            Backend::Network(client) => client,
            Backend::Canned(answers) => return answer(answers, method.as_str(), &url, limit),
        };
        let mut builder = client.request(method, url.clone());
        for (name, value) in &req.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = req.body {
            builder = builder.body(body);
        }
        let fetch = async {
            let mut response = builder.send().await.map_err(|e| {
                fail(
                    ErrorKind::Unavailable,
                    format!("{url}: {}", error_chain(&e)),
                )
            })?;
            if response
                .content_length()
                .is_some_and(|len| len > limit as u64)
            {
                return Err(fail(
                    ErrorKind::Failed,
                    format!("{url}: the response is larger than the {limit}-byte cap"),
                ));
            }
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| {
                fail(
                    ErrorKind::Unavailable,
                    format!("{url}: {}", error_chain(&e)),
                )
            })? {
                if body.len() + chunk.len() > limit {
                    return Err(fail(
                        ErrorKind::Failed,
                        format!("{url}: the response is larger than the {limit}-byte cap"),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(wit::Response {
                status,
                headers,
                body,
            })
        };
        match tokio::time::timeout(timeout, fetch).await {
            Ok(result) => result,
            Err(_) => Err(fail(
                ErrorKind::TimedOut,
                format!("{url}: no complete response within {timeout:?}"),
            )),
        }
    }
}

/// reqwest's error with its causes, which say what actually failed (refused, DNS, ...).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(origin: &str, url: &str) -> bool {
        Origin::parse(origin)
            .unwrap()
            .allows(&url::Url::parse(url).unwrap())
    }

    fn narrowed(asked: &[&str], operator: Option<&[&str]>) -> Option<String> {
        use crate::Grant as _;
        let hosts = |list: &[&str]| {
            let list = list.iter().map(|h| toml::Value::from(*h)).collect();
            toml::Value::Table(toml::Table::from_iter([(
                "hosts".to_owned(),
                toml::Value::Array(list),
            )]))
        };
        let mut grant = Grant {
            origins: origins(&hosts(asked)).unwrap(),
        };
        grant.narrow(operator.map(hosts).as_ref()).unwrap();
        grant.describe()
    }

    #[test]
    fn the_operator_narrows_origins_to_those_both_allow() {
        let asked = ["https://*.example.com", "http://127.0.0.1:8181"];
        assert_eq!(narrowed(&asked, None), None, "no operator entry: nothing");
        assert_eq!(
            narrowed(
                &asked,
                Some(&["http://127.0.0.1:8181", "https://other.net"])
            ),
            Some("http://127.0.0.1:8181".into())
        );
        assert_eq!(
            narrowed(&asked, Some(&["https://api.example.com"])),
            Some("https://api.example.com:443".into()),
            "an asked wildcard narrows to the operator's host"
        );
        assert_eq!(
            narrowed(
                &["https://api.example.com"],
                Some(&["https://*.example.com"])
            ),
            Some("https://api.example.com:443".into()),
            "an operator wildcard keeps the asked host, and no more"
        );
        assert_eq!(
            narrowed(
                &["https://*.example.com"],
                Some(&["https://*.a.example.com"])
            ),
            Some("https://*.a.example.com:443".into())
        );
        assert_eq!(
            narrowed(&["https://example.com"], Some(&["https://*.example.com"])),
            None,
            "a wildcard does not cover its bare domain"
        );
        assert_eq!(
            narrowed(
                &["http://127.0.0.1:8181"],
                Some(&["https://127.0.0.1:8181"])
            ),
            None
        );
    }

    #[test]
    fn origins_match_scheme_host_and_port() {
        assert!(allows(
            "http://127.0.0.1:8181",
            "http://127.0.0.1:8181/inventory.json"
        ));
        assert!(!allows("http://127.0.0.1:8181", "http://127.0.0.1:8182/"));
        assert!(!allows("http://127.0.0.1:8181", "https://127.0.0.1:8181/"));
        assert!(allows(
            "https://api.example.com",
            "https://API.example.com:443/v1"
        ));
        assert!(!allows(
            "https://api.example.com",
            "https://api.example.com.evil.net/"
        ));
        assert!(allows("https://*.example.com", "https://a.b.example.com/"));
        assert!(!allows("https://*.example.com", "https://example.com/"));
        assert!(!allows("https://*.example.com", "https://badexample.com/"));
    }

    #[test]
    fn bad_origins_are_refused() {
        for bad in ["127.0.0.1:8181", "ftp://h", "http://h/path", "not a url"] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }
}
