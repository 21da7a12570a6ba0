//! A real headless Chromium, driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`, which `./dev test` installs), with blocking calls like the rest of
//! the kit.
//!
//! chromedriver runs in a process group of its own, and the group is killed when the
//! [`Browser`] is dropped: a failed test leaves neither it nor the Chromium it started.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// Debian's Chromium and its driver.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a wait for the page lasts: long enough for a busy 2-core machine.
pub const PAGE_WAIT: Duration = Duration::from_secs(60);

pub struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium through it, with a
    /// window of `width` × `height`.
    pub fn start(width: u32, height: u32) -> Browser {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(program).is_file(),
                "{program} is missing: `./dev test` installs Debian's chromium and chromium-driver \
                 (apt-get install chromium chromium-driver)"
            );
        }
        let port = crate::broker::free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("starting chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut browser = Browser {
            runtime,
            client: None,
            driver,
            _profile: profile,
        };
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                // The machine's network is closed: without the background-networking
                // flags Chromium keeps trying to reach Google's hosts.
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", browser._profile.path().display()),
                ],
            }
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = browser.runtime.block_on(async {
            loop {
                match ClientBuilder::new(HttpConnector::new())
                    .capabilities(capabilities.clone())
                    .connect(&url)
                    .await
                {
                    Ok(client) => break client,
                    // chromedriver is still starting.
                    Err(_) if started.elapsed() < PAGE_WAIT => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(error) => panic!("no WebDriver session on {url}: {error}"),
                }
            }
        });
        browser.client = Some(client);
        browser
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("a session")
    }

    pub fn goto(&self, url: &str) {
        self.runtime
            .block_on(self.client().goto(url))
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// Runs `script` (a function body that may `return`) in the page with `args`.
    pub fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        self.runtime
            .block_on(self.client().execute(script, args))
            .unwrap_or_else(|e| panic!("running {script}: {e}"))
    }

    /// The text of the first element `css` selects, if one does.
    pub fn text(&self, css: &str) -> Option<String> {
        let text = self.eval(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            vec![json!(css)],
        );
        text.as_str().map(str::to_owned)
    }

    /// How many elements `css` selects.
    pub fn count(&self, css: &str) -> u64 {
        self.eval(
            "return document.querySelectorAll(arguments[0]).length;",
            vec![json!(css)],
        )
        .as_u64()
        .unwrap()
    }

    /// Waits until the first element `css` selects has a text `accept` takes, and
    /// answers it; fails naming `css` and the last text seen.
    pub fn wait_text(&self, css: &str, accept: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let text = self.text(css);
            if let Some(text) = text.as_deref().filter(|t| accept(t)) {
                return text.to_owned();
            }
            assert!(
                started.elapsed() < PAGE_WAIT,
                "waited {PAGE_WAIT:?} for `{css}`; last seen: {text:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `script` (a function body) returns `true` in the page.
    pub fn wait_true(&self, script: &str) {
        let started = Instant::now();
        while self.eval(script, vec![]) != Value::Bool(true) {
            assert!(
                started.elapsed() < PAGE_WAIT,
                "waited {PAGE_WAIT:?} for `{script}`"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clicks the first element `css` selects (a real click, as a user's).
    pub fn click(&self, css: &str) {
        self.runtime
            .block_on(async {
                self.client()
                    .wait()
                    .at_most(PAGE_WAIT)
                    .for_element(Locator::Css(css))
                    .await?
                    .click()
                    .await
            })
            .unwrap_or_else(|e| panic!("clicking `{css}`: {e}"));
    }

    /// Types `text` into the first element `css` selects, after clearing it.
    pub fn type_into(&self, css: &str, text: &str) {
        self.runtime
            .block_on(async {
                let element = self.client().find(Locator::Css(css)).await?;
                element.clear().await?;
                element.send_keys(text).await
            })
            .unwrap_or_else(|e| panic!("typing into `{css}`: {e}"));
    }

    /// Writes a PNG of the window to `path`.
    pub fn screenshot(&self, path: &Path) {
        let png = self
            .runtime
            .block_on(self.client().screenshot())
            .expect("a screenshot");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Ends the session, then kills chromedriver's group; answers the processes of the
    /// group still alive (not zombies: this machine's init may be slow to reap them), which
    /// should be none.
    pub fn quit(self) -> Vec<String> {
        let group = self.driver.id();
        drop(self);
        let mut alive = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid pgrp …`; comm may hold spaces, not ')'.
            let Some((head, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.len() > 2 && fields[0] != "Z" && fields[2] == group.to_string() {
                alive.push(format!("{head})"));
            }
        }
        alive
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), client.close()).await
            });
        }
        // SAFETY: kill(2) on the group chromedriver leads (`process_group(0)`).
        unsafe { libc::kill(-(self.driver.id() as i32), libc::SIGKILL) };
        let _ = self.driver.wait();
    }
}
