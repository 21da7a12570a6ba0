//! The admin API of a running host ([`serve`]), and the client the CLI uses to reach it
//! ([`Client`]).
//!
//! HTTP on a loopback address (an ephemeral port unless configured): the host writes the
//! address it bound to `DATA_DIR/admin.addr` and a token new at every start to
//! `DATA_DIR/admin.token` (both 0600), so `synchro status --config FILE` finds the host
//! that runs with that config and proves it may use it. Every request needs the token
//! (`Authorization: Bearer`), a `Host` that is an IP address or `localhost` with the API's
//! port, and no `Origin` ([`access`]); at most 64 connections are served at once, each
//! closed after 30 s without a byte from its client.
//!
//! | request | does |
//! |---|---|
//! | `GET /v1/plugins` | every plugin's health and counters, and the manifests refused |
//! | `POST /v1/plugins/NAME/reload` | loads NAME again from its files and swaps it in |
//! | `POST /v1/plugins/NAME/release` | ends NAME's quarantine |

mod access;
mod client;
mod listener;
mod server;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use synchro_model::Error;
use synchro_status::{HostReport, Reloaded};
use tokio::sync::oneshot;

pub use access::TOKEN_FILE;
pub use client::Client;
pub use server::serve;

/// The file, in the data directory, that holds the address of the running host's API.
pub const ADDRESS_FILE: &str = "admin.addr";

/// Host-side settings of the admin API: `[admin]` in the host config.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AdminSettings {
    pub enabled: bool,
    /// Port 0 picks a free one; the CLI finds it through `admin.addr`.
    pub listen: SocketAddr,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// A request for the host, which answers on the enclosed channel.
pub enum Request {
    Status(oneshot::Sender<HostReport>),
    Reload(String, oneshot::Sender<Result<Reloaded, Error>>),
    Release(String, oneshot::Sender<Result<(), Error>>),
}

/// The body of an error answer.
#[derive(Debug, Serialize, Deserialize)]
struct ErrorBody {
    error: String,
    /// The error's kind ([`synchro_model::ErrorKind::label`]).
    #[serde(default)]
    kind: Option<String>,
}
