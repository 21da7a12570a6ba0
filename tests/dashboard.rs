//! The dashboard end to end, as an operator uses it: the real `synchro` binary serves it,
//! a real headless Chromium (Debian's, over chromedriver) opens the link `synchro
//! dashboard` prints, and the test acts on the source and clicks the page's buttons.
//!
//! `SYNCHRO_SCREENSHOTS=DIR` keeps the page's pictures in DIR (the README's come from
//! there: `SYNCHRO_SCREENSHOTS=tests/screenshots cargo test --release -p synchro-tests
//! --test dashboard`).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use synchro_testkit::{Browser, Setup, Source};

const WAIT: Duration = Duration::from_secs(60);

/// What a hostile source or plugin might send to run script in the operator's page.
const MARKUP: &str = "<img src=x onerror=\"window.pwned=1\">";

fn inventory(servers: &[(&str, &str)]) -> String {
    let servers: Vec<_> = servers
        .iter()
        .map(|(id, hostname)| json!({"id": id, "hostname": hostname}))
        .collect();
    json!({ "servers": servers, "vms": [] }).to_string()
}

fn shots() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("SYNCHRO_SCREENSHOTS")?);
    std::fs::create_dir_all(&dir).unwrap();
    Some(dir)
}

fn inventory_manifest(source: &Source, version: &str) -> String {
    format!(
        "name = \"inventory\"\nversion = \"{version}\"\nroles = [\"collector\"]\n\
         [schedule]\ninterval = \"300ms\"\njitter = \"0s\"\n\
         [capabilities]\npoll = {{ hosts = [\"{}\"] }}\n\
         [settings]\nurl = \"{}\"\n",
        source.origin(),
        source.url()
    )
}

#[test]
fn the_dashboard_shows_the_host_live_and_steers_it() {
    let source = Source::start(&inventory(&[
        ("srv-1", "alpha"),
        ("srv-2", "beta"),
        ("srv-3", "gamma"),
    ]));
    let down = Source::start(
        &json!({"mode": "error", "message": format!("the source is down {MARKUP}")}).to_string(),
    );
    let setup = Setup::new();
    // Only the page's button reloads: the host does not watch the plugin directory.
    std::fs::write(
        setup.config(),
        "data-dir = \"data\"\nplugin-dir = \"plugins\"\nwatch = false\n",
    )
    .unwrap();
    setup.install(
        "inventory",
        "http-inventory",
        &inventory_manifest(&source, "0.1.0"),
    );
    setup.scripted_plugin(
        "failing",
        &down,
        "5s",
        "quarantine-after = 2\nmax-backoff = \"100ms\"",
    );
    let host = setup.run();
    setup.wait_status("inventory", WAIT, |p| p.counters.changes == 3);

    let link = setup.command(&["dashboard"]);
    assert!(link.status.success(), "{link:?}");
    let link = String::from_utf8(link.stdout).unwrap().trim().to_owned();
    assert!(link.contains("/ui/#token="), "{link}");

    let browser = Browser::start(1280, 1000);
    browser.goto(&link);

    // The page loads, forgets the token from the address bar, and shows the plugins.
    browser.wait_text("tr[data-plugin=inventory] .health", |t| t == "ok");
    browser.wait_text("#host-state", |t| t == "ready");
    let address = browser.eval("return location.href;", vec![]);
    assert!(!address.as_str().unwrap().contains("token"), "{address}");
    browser.wait_text("#model tbody", |t| t.contains("srv-3"));

    // A change made at the source appears live, and what it carries stays text.
    source.set(
        200,
        &inventory(&[
            ("srv-1", "alpha"),
            ("srv-2", "beta"),
            ("srv-3", "gamma"),
            ("srv-4", MARKUP),
        ]),
    );
    browser.wait_text("#feed tr[data-key=srv-4] td:nth-child(3)", |t| {
        t == "CREATE"
    });
    browser.wait_text("#model tr[data-key=srv-4] td:nth-child(3)", |t| {
        t == "inventory"
    });
    let properties = browser
        .text("#feed tr[data-key=srv-4] td:last-child")
        .unwrap();
    assert!(
        properties.contains(r#"<img src=x onerror=\"window.pwned=1\">"#),
        "{properties}"
    );

    // A quarantined plugin shows why.
    let quarantined = setup.wait_status("failing", WAIT, |p| {
        matches!(p.health, synchro_status::Health::Quarantined { .. })
    });
    let synchro_status::Health::Quarantined { reason, .. } = quarantined.health else {
        unreachable!()
    };
    assert!(reason.contains(MARKUP), "{reason}");
    let shown = browser.wait_text("tr[data-plugin=failing] .health", |t| {
        t.starts_with("quarantined")
    });
    assert_eq!(shown, format!("quarantined after 2 failures: {reason}"));
    assert_eq!(browser.count("img"), 0, "markup became elements");
    assert_eq!(
        browser.eval("return window.pwned === undefined;", vec![]),
        json!(true)
    );
    if let Some(dir) = shots() {
        browser.screenshot(&dir.join("dashboard.png"));
    }

    // Reload from the page swaps the plugin for the version now on disk.
    setup.write("inventory.toml", &inventory_manifest(&source, "0.2.0"));
    browser.click("tr[data-plugin=inventory] button[data-action=reload]");
    browser.wait_text("#message", |t| {
        t.starts_with("reloaded inventory: version 0.2.0")
    });
    browser.wait_text("tr[data-plugin=inventory] td:first-child", |t| {
        t == "inventory 0.2.0"
    });
    assert_eq!(setup.plugin_status("inventory").counters.reloads, 1);

    // Pause and resume.
    browser.click("tr[data-plugin=inventory] button[data-action=pause]");
    browser.wait_text("tr[data-plugin=inventory] .health", |t| t == "paused");
    browser.click("tr[data-plugin=inventory] button[data-action=resume]");
    browser.wait_text("tr[data-plugin=inventory] .health", |t| t == "ok");

    // An empty answer: the deletes are held, the page offers to approve exactly them.
    source.set(200, &inventory(&[]));
    let held = setup.wait_status("inventory", WAIT, |p| p.held_deletes.is_some());
    let held = held.held_deletes.unwrap();
    assert_eq!(held.count, 4);
    browser.wait_text("#held button[data-action=approve-deletes]", |t| {
        t == "Approve 4 deletes"
    });
    if let Some(dir) = shots() {
        browser.screenshot(&dir.join("held-deletes.png"));
    }
    browser.click("#held button[data-action=approve-deletes]");
    browser.wait_text("#message", |t| t == "deleted 4 entities of inventory");
    for key in ["srv-1", "srv-2", "srv-3", "srv-4"] {
        browser.wait_text(&format!("#feed tr[data-key={key}] td:nth-child(3)"), |t| {
            t == "DELETE"
        });
    }
    browser.wait_true("return document.querySelector('#held').hidden;");

    // The run records of a plugin.
    browser.click("tr[data-plugin=inventory] button[data-action=runs]");
    browser.wait_text("#runs-of", |t| t == "inventory");
    browser.wait_true("return document.querySelectorAll('#runs tbody tr').length >= 2;");

    let left = browser.quit();
    assert!(left.is_empty(), "outlived the test: {left:?}");
    host.stop();
}

/// The page itself needs no token but is locked down; the API takes requests from it (its
/// own origin) and from no other page.
#[test]
fn only_the_dashboard_page_may_call_the_api_from_a_browser() {
    let setup = Setup::new();
    let host = setup.run();
    host.wait_for_log("admin API listening", WAIT);
    let data = setup.config().parent().unwrap().join("data");
    let address = std::fs::read_to_string(data.join("admin.addr")).unwrap();
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    // The whole answer, headers included.
    let get = |path: &str, host: &str, headers: &str| {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    let status = |answer: &str| answer[9..12].to_owned();

    let page = get("/ui/", &address, "");
    assert_eq!(status(&page), "200", "{page}");
    assert!(page.contains("<script src=\"app.js\""), "{page}");
    let page = page.to_ascii_lowercase();
    assert!(
        page.contains("content-security-policy: default-src 'none'; script-src 'self';"),
        "{page}"
    );
    assert_eq!(status(&get("/", &address, "")), "303");
    let script = get("/ui/app.js", &address, "");
    assert!(script.contains("textContent"), "{script}");
    let refused = get("/ui/", "attacker.example", "");
    assert_eq!(status(&refused), "403", "a rebound name: {refused}");

    let bearer = format!("Authorization: Bearer {token}\r\n");
    assert_eq!(status(&get("/v1/plugins", &address, &bearer)), "200");
    let own = format!("{bearer}Origin: http://{address}\r\n");
    assert_eq!(
        status(&get("/v1/plugins", &address, &own)),
        "200",
        "the dashboard's own origin"
    );
    let other = format!("{bearer}Origin: http://attacker.example\r\n");
    let refused = get("/v1/plugins", &address, &other);
    assert_eq!(status(&refused), "403", "{refused}");
    assert!(refused.contains("other than the dashboard"), "{refused}");
    assert_eq!(status(&get("/v1/plugins", &address, "")), "401");
    host.stop();
}
