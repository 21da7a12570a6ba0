//! The CLI's side of the API.

use std::path::{Path, PathBuf};

use anyhow::Context;
use synchro_status::{
    BaselinePage, CollectPlan, CollectReport, HostReport, ModelDeleted, ModelEntity, ModelFlags,
    ModelPage, ModelRef, ModelWrite, Reloaded, RunRecord,
};

use crate::{ADDRESS_FILE, ErrorBody, PageRequest, TOKEN_FILE};

/// The CLI's side: finds the running host through its data directory.
pub struct Client {
    base: String,
    /// `Bearer TOKEN`.
    authorization: String,
    http: reqwest::Client,
}

impl Client {
    pub fn for_data_dir(data_dir: &Path) -> anyhow::Result<Client> {
        let file: PathBuf = data_dir.join(ADDRESS_FILE);
        let address = std::fs::read_to_string(&file).with_context(|| {
            format!(
                "no running host uses the data directory {} ({} is missing); pass the --config of the running host",
                data_dir.display(),
                file.display()
            )
        })?;
        let token_file = data_dir.join(TOKEN_FILE);
        let token = std::fs::read_to_string(&token_file).with_context(|| {
            format!(
                "cannot read the admin token {} (run as the user the host runs as)",
                token_file.display()
            )
        })?;
        Ok(Client {
            base: format!("http://{}", address.trim()),
            authorization: format!("Bearer {}", token.trim()),
            http: reqwest::Client::new(),
        })
    }

    /// The link to the dashboard of the host, with the token in its fragment (which a
    /// browser does not send: the page takes it from there).
    pub fn dashboard_link(&self) -> String {
        let token = self.authorization.trim_start_matches("Bearer ");
        format!("{}{}#token={token}", self.base, crate::DASHBOARD_PATH)
    }

    pub async fn status(&self) -> anyhow::Result<HostReport> {
        self.call(self.http.get(format!("{}/v1/plugins", self.base)))
            .await
    }

    pub async fn reload(&self, name: &str) -> anyhow::Result<Reloaded> {
        self.call(
            self.http
                .post(format!("{}/v1/plugins/{name}/reload", self.base)),
        )
        .await
    }

    pub async fn release(&self, name: &str) -> anyhow::Result<()> {
        self.call::<serde_json::Value>(
            self.http
                .post(format!("{}/v1/plugins/{name}/release", self.base)),
        )
        .await
        .map(drop)
    }

    /// Deletes the collector `name`'s held deletes, if they are still the set `held`
    /// (when given); answers how many were deleted.
    pub async fn approve_deletes(&self, name: &str, held: Option<&str>) -> anyhow::Result<u64> {
        let mut url = self.plugin_url(name, "approve-deletes")?;
        if let Some(held) = held {
            url.query_pairs_mut().append_pair("held", held);
        }
        let answer: serde_json::Value = self.call(self.http.post(url)).await?;
        Ok(answer["deleted"].as_u64().unwrap_or(0))
    }

    /// The last runs of `name`, oldest first.
    pub async fn runs(&self, name: &str) -> anyhow::Result<Vec<RunRecord>> {
        let url = self.plugin_url(name, "runs")?;
        self.call(self.http.get(url)).await
    }

    /// What a collect of `name` would do now.
    pub async fn plan(&self, name: &str) -> anyhow::Result<CollectPlan> {
        let url = self.plugin_url(name, "plan")?;
        self.call(self.http.post(url)).await
    }

    /// Makes `name` collect now; what the collect did.
    pub async fn collect_now(&self, name: &str) -> anyhow::Result<CollectReport> {
        let url = self.plugin_url(name, "collect")?;
        self.call(self.http.post(url)).await
    }

    /// Stops (`paused`) or restarts `name`'s schedule.
    pub async fn pause(&self, name: &str, paused: bool) -> anyhow::Result<()> {
        let url = self.plugin_url(name, if paused { "pause" } else { "resume" })?;
        self.call::<serde_json::Value>(self.http.post(url))
            .await
            .map(drop)
    }

    /// The model's entity `kind` `key`.
    pub async fn entity(&self, kind: &str, key: &str) -> anyhow::Result<ModelEntity> {
        let url = self.entity_url(kind, key, &[])?;
        self.call(self.http.get(url)).await
    }

    /// Sets the operator's `flags` on the entity `kind` `key`; the entity as it is then.
    pub async fn flag(
        &self,
        kind: &str,
        key: &str,
        flags: &ModelFlags,
    ) -> anyhow::Result<ModelEntity> {
        let url = self.entity_url(kind, key, &["flags"])?;
        self.call(json(self.http.post(url), flags)?).await
    }

    /// Writes the entity `kind` `key` as the API; the entity as it is then.
    pub async fn put(
        &self,
        kind: &str,
        key: &str,
        write: &ModelWrite,
    ) -> anyhow::Result<ModelEntity> {
        let url = self.entity_url(kind, key, &[])?;
        self.call(json(self.http.put(url), write)?).await
    }

    /// Deletes the entity `kind` `key` as the API, with its edges if `cascade`.
    pub async fn delete(
        &self,
        kind: &str,
        key: &str,
        cascade: bool,
    ) -> anyhow::Result<ModelDeleted> {
        let mut url = self.entity_url(kind, key, &[])?;
        if cascade {
            url.query_pairs_mut().append_pair("cascade", "true");
        }
        self.call(self.http.delete(url)).await
    }

    /// `/v1/model/KIND/KEY`, then `tail`, each segment encoded.
    /// `/v1/plugins/NAME/ACTION`, the name escaped.
    fn plugin_url(&self, name: &str, action: &str) -> anyhow::Result<reqwest::Url> {
        let mut url = self.url("/v1/plugins")?;
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("the host's address is not a base URL"))?
            .push(name)
            .push(action);
        Ok(url)
    }

    fn entity_url(&self, kind: &str, key: &str, tail: &[&str]) -> anyhow::Result<reqwest::Url> {
        let mut url = self.url("/v1/model")?;
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("the host's address is not a base URL"))?
            .push(kind)
            .push(key)
            .extend(tail);
        Ok(url)
    }

    /// A page of the model's entities.
    pub async fn entities(&self, page: &PageRequest) -> anyhow::Result<ModelPage> {
        let url = self.paged(self.url("/v1/model")?, page);
        self.call(self.http.get(url)).await
    }

    /// A page of the baseline of the collector `name` (`page`'s `owner` and `only` must
    /// not be set).
    pub async fn baseline(&self, name: &str, page: &PageRequest) -> anyhow::Result<BaselinePage> {
        let url = self.paged(self.plugin_url(name, "baseline")?, page);
        self.call(self.http.get(url)).await
    }

    /// Forgets the baseline of the collector `name`; answers how many entries it had.
    pub async fn reset_baseline(&self, name: &str) -> anyhow::Result<u64> {
        let url = self.plugin_url(name, "reset-baseline")?;
        let answer: serde_json::Value = self.call(self.http.post(url)).await?;
        Ok(answer["forgotten"].as_u64().unwrap_or(0))
    }

    /// Whether the host answers at all (`/v1/health`).
    pub async fn answers(&self) -> bool {
        match self.url("/v1/health") {
            Ok(url) => self
                .call::<serde_json::Value>(self.http.get(url))
                .await
                .is_ok(),
            Err(_) => false,
        }
    }

    /// `url` with the query of `page`.
    fn paged(&self, mut url: reqwest::Url, page: &PageRequest) -> reqwest::Url {
        {
            let mut query = url.query_pairs_mut();
            if let Some(kind) = &page.kind {
                query.append_pair("kind", kind);
            }
            if let Some(owner) = &page.owner {
                query.append_pair("owner", owner);
            }
            if let Some(only) = page.only {
                query.append_pair("only", only.name());
            }
            if let Some(ModelRef { kind, key }) = &page.after {
                query
                    .append_pair("after-kind", kind)
                    .append_pair("after-key", key);
            }
            query.append_pair("limit", &page.limit.to_string());
        }
        url
    }

    /// `path` on the host's API: names in it are encoded by the caller.
    fn url(&self, path: &str) -> anyhow::Result<reqwest::Url> {
        reqwest::Url::parse(&format!("{}{path}", self.base))
            .with_context(|| format!("the host's address {} is not a URL", self.base))
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = request
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .send()
            .await
            .with_context(|| format!("cannot reach the host at {} (has it stopped?)", self.base))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .context("reading the host's answer")?;
        if status.is_success() {
            return serde_json::from_slice(&body).context("the host's answer is not understood");
        }
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(ErrorBody { error, .. }) => anyhow::bail!("{error}"),
            Err(_) => anyhow::bail!("the host answered {status}"),
        }
    }
}

/// `request` with `body` as its JSON.
fn json(
    request: reqwest::RequestBuilder,
    body: &impl serde::Serialize,
) -> anyhow::Result<reqwest::RequestBuilder> {
    Ok(request
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body)?))
}
