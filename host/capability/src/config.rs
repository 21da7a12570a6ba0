//! `config`: a plugin's own `[settings]`. Always granted: they are the plugin's.
//! Not to be confused with the host's configuration (the supervisor's `Config`).

use std::sync::Arc;

use synchro_manifest::ManifestError;
pub(super) use synchro_wit::imports::config as wit;

use crate::{Asks, CallContext};

pub struct Grant {
    settings: Arc<serde_json::Map<String, serde_json::Value>>,
}

impl crate::Grant for Grant {
    fn parse(asks: &Asks<'_>, entry: Option<&toml::Value>) -> Result<Self, ManifestError> {
        if entry.is_some() {
            return Err(asks
                .manifest
                .error("field `capabilities.config`: settings belong in `[settings]`"));
        }
        let settings = serde_json::to_value(&asks.manifest.settings)
            .map_err(|e| asks.manifest.error(format!("field `settings`: {e}")))?;
        let serde_json::Value::Object(settings) = settings else {
            unreachable!("a TOML table serialises to a JSON object")
        };
        Ok(Grant {
            settings: Arc::new(settings),
        })
    }

    fn describe(&self) -> Option<String> {
        Some(format!("its [settings] ({} keys)", self.settings.len()))
    }
}

pub struct Capability {
    settings: Arc<serde_json::Map<String, serde_json::Value>>,
}

impl Capability {
    pub fn new(call: &CallContext) -> Capability {
        Capability {
            settings: call.grants.config.settings.clone(),
        }
    }
}

impl wit::Host for Capability {
    async fn get(&mut self, name: String) -> Option<String> {
        self.settings.get(&name).map(|value| match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    async fn all(&mut self) -> String {
        serde_json::to_string(&*self.settings).expect("a JSON map serialises")
    }
}
