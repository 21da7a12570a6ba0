//! End to end: the Gizmo-compatible CRUD API of the real `synchro` binary, driven by a
//! real HTTP client (reqwest) on loopback. Messages and shapes are Gizmo's
//! (`../shared/seeds/gizmo-ASYNC.md`, and Gizmo's own CrudRestService).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use synchro_testkit::{Backend, Running, Setup};

const WAIT: Duration = Duration::from_secs(30);

/// A host serving the Gizmo API on a free port, with `extra` config lines.
struct Gizmo {
    setup: Setup,
    host: Running,
    base: String,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

/// An answer: its status, headers and body.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Gizmo {
    fn start(extra: &str) -> Gizmo {
        Gizmo::start_with(Setup::new(), "", extra)
    }

    /// Runs `setup` with the `bus` lines of the host config and `extra` lines of its
    /// `[gizmo]`, serving on a free port.
    fn start_with(setup: Setup, bus: &str, extra: &str) -> Gizmo {
        std::fs::write(
            setup.config(),
            format!(
                "data-dir = \"data\"\nplugin-dir = \"plugins\"\n{bus}\
                 [gizmo]\nlisten = \"127.0.0.1:0\"\n{extra}\n"
            ),
        )
        .unwrap();
        Gizmo::running(setup)
    }

    /// Runs the host `setup` configures (with a `[gizmo]` section).
    fn running(setup: Setup) -> Gizmo {
        let host = setup.run();
        host.wait_for_log("Gizmo API listening", WAIT);
        let address = std::fs::read_to_string(setup.dir.path().join("data/gizmo.addr")).unwrap();
        Gizmo {
            setup,
            host,
            base: format!("http://{}/services/inventory", address.trim()),
            client: reqwest::Client::new(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        self.runtime.block_on(async {
            let response = request.send().await.expect("the API answers");
            Answer {
                status: response.status().as_u16(),
                headers: response.headers().clone(),
                body: response.text().await.unwrap(),
            }
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    fn get(&self, path: &str) -> Answer {
        self.send(self.client.get(self.url(path)))
    }

    fn call(&self, method: &str, path: &str, body: &str) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        self.send(
            self.client
                .request(method, self.url(path))
                .header("Content-Type", "application/json")
                .body(body.to_owned()),
        )
    }

    /// Creates a vertex; its id.
    fn vertex(&self, kind: &str, properties: Value) -> String {
        let answer = self.call(
            "POST",
            &format!("v11/{kind}/"),
            &json!({ "properties": properties }).to_string(),
        );
        assert_eq!(answer.status, 201, "{}", answer.body);
        answer.json()["id"].as_str().unwrap().to_owned()
    }

    fn edge(&self, kind: &str, source: &str, target: &str) -> Answer {
        self.call(
            "POST",
            &format!("relationships/v11/{kind}/"),
            &json!({"source": source, "target": target, "properties": {"SVC-INFRA": "OUT"}})
                .to_string(),
        )
    }
}

fn vertex_url(kind: &str, id: &str) -> String {
    format!("services/inventory/v11/{kind}/{id}")
}

#[test]
fn vertices_and_edges_are_written_and_read_in_gizmos_shapes() {
    let api = Gizmo::start("");
    // POST: 201, the vertex, its ETag, the client's transaction id echoed.
    let created = api.send(
        api.client
            .post(api.url("v11/pserver/"))
            .header("X-TransactionId", "client-tx-1")
            .header("X-FromAppId", "test")
            .body(r#"{"properties": {"hostname": "myhost", "in-maint": false}}"#),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.header("x-transactionid"), Some("client-tx-1"));
    let etag = created.header("etag").unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let vertex = created.json();
    let host = vertex["id"].as_str().unwrap().to_owned();
    assert_eq!(
        vertex,
        json!({"id": host, "type": "pserver", "url": vertex_url("pserver", &host),
               "properties": {"hostname": "myhost", "in-maint": false}, "in": [], "out": []})
    );
    assert!(
        created.body.starts_with(r#"{"id":"#),
        "Gizmo's field order: {}",
        created.body
    );
    let vm = api.vertex("vserver", json!({"vserver-name": "vm-1"}));
    // An edge names its ends by URL.
    let edge = api.edge(
        "tosca.relationships.HostedOn",
        &vertex_url("vserver", &vm),
        &vertex_url("pserver", &host),
    );
    assert_eq!(edge.status, 201, "{}", edge.body);
    let edge = edge.json();
    let link = edge["id"].as_str().unwrap().to_owned();
    assert_eq!(edge["source"], vertex_url("vserver", &vm));
    assert_eq!(edge["target"], vertex_url("pserver", &host));
    assert_eq!(
        edge["url"],
        format!("services/inventory/relationships/v11/tosca.relationships.HostedOn/{link}")
    );
    // GET: the vertex with its edges, `in` where it is the target.
    let read = api.get(&format!("v11/pserver/{host}"));
    assert_eq!(read.status, 200);
    assert_eq!(
        read.header("etag"),
        Some(etag.as_str()),
        "same data, same ETag"
    );
    let read = read.json();
    assert_eq!(read["in"][0]["id"], link.as_str());
    assert_eq!(read["in"][0]["source"], vertex_url("vserver", &vm));
    assert_eq!(read["out"], json!([]));
    assert_eq!(
        api.get(&format!("v11/vserver/{vm}")).json()["out"][0]["target"],
        vertex_url("pserver", &host)
    );
    // PUT replaces, PATCH merges (a null removes), also as PUT with the override header.
    let put = api.call(
        "PUT",
        &format!("v11/pserver/{host}"),
        r#"{"properties": {"hostname": "renamed", "purpose": "db"}}"#,
    );
    assert_eq!(put.status, 200, "{}", put.body);
    assert_ne!(put.header("etag"), Some(etag.as_str()));
    assert_eq!(
        put.json()["properties"],
        json!({"hostname": "renamed", "purpose": "db"})
    );
    let patched = api.send(
        api.client
            .patch(api.url(&format!("v11/pserver/{host}")))
            .header("Content-Type", "application/merge-patch+json")
            .body(r#"{"properties": {"purpose": null, "fqdn": "renamed.onap.net"}}"#),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(
        patched.json()["properties"],
        json!({"hostname": "renamed", "fqdn": "renamed.onap.net"})
    );
    let overridden = api.send(
        api.client
            .put(api.url(&format!("v11/pserver/{host}")))
            .header("X-HTTP-Method-Override", "PATCH")
            .body(r#"{"properties": {"in-maint": true}}"#),
    );
    assert_eq!(overridden.status, 200, "{}", overridden.body);
    assert_eq!(overridden.json()["properties"]["hostname"], "renamed");
    // An edge keeps its ends.
    let moved = api.call(
        "PUT",
        &format!("relationships/v11/tosca.relationships.HostedOn/{link}"),
        &json!({"source": vertex_url("vserver", "elsewhere"), "properties": {}}).to_string(),
    );
    assert_eq!(
        (moved.status, moved.body.as_str()),
        (400, "Source can't be updated")
    );
    // Deleting a vertex with edges: Gizmo's 400, and nothing deleted.
    let refused = api.call("DELETE", &format!("v11/pserver/{host}"), "");
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.body,
        format!(
            "Failed to delete vertex: Attempt to delete vertex with id {host} which has incident edges."
        )
    );
    let gone = api.call(
        "DELETE",
        &format!("relationships/v11/tosca.relationships.HostedOn/{link}"),
        "",
    );
    assert_eq!((gone.status, gone.body.as_str()), (200, ""));
    let gone = api.call("DELETE", &format!("v11/pserver/{host}"), "");
    assert_eq!((gone.status, gone.body.as_str()), (200, ""));
    // Unknown ids: 404 in Gizmo's words; a vertex is not found on an edge's route.
    let missing = api.get(&format!("v11/pserver/{host}"));
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.body,
        format!("No vertex with id {host} and type pserver found in graph")
    );
    let wrong_route = api.get(&format!("relationships/v11/vserver/{vm}"));
    assert_eq!(wrong_route.status, 404, "{}", wrong_route.body);
    let missing = api.call("DELETE", &format!("v11/pserver/{host}"), "");
    assert_eq!(
        (missing.status, missing.body.as_str()),
        (
            404,
            format!("Failed to delete vertex: {host} not found").as_str()
        )
    );
    // Every write is on the change stream, owned by the API, in order.
    let events = api.host.raw_events(8, WAIT);
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            let element = e.get("vertex").or_else(|| e.get("edge")).unwrap();
            (
                e["operation"].as_str().unwrap().to_owned(),
                element["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("CREATE", "pserver"),
        ("CREATE", "vserver"),
        ("CREATE", "tosca.relationships.HostedOn"),
        ("UPDATE", "pserver"),
        ("UPDATE", "pserver"),
        ("UPDATE", "pserver"),
        ("DELETE", "tosca.relationships.HostedOn"),
        ("DELETE", "pserver"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(o, k)| (o.to_string(), k.to_string()))
        .collect();
    assert_eq!(seen, expected, "{events:#?}");
    assert!(events.iter().all(|e| e["source"] == "api"));
    assert_eq!(events[0]["transaction-id"], "client-tx-1");
}

#[test]
fn a_list_filters_by_property_shows_what_is_asked_and_pages() {
    let api = Gizmo::start("");
    for (name, maint) in [("a", false), ("b", true), ("c", false), ("d", false)] {
        api.vertex(
            "pserver",
            json!({"hostname": name, "in-maint": maint, "n": 1}),
        );
    }
    api.vertex("vserver", json!({"hostname": "a"}));
    let all = api.get("v11/pserver").json();
    assert_eq!(all.as_array().unwrap().len(), 4);
    assert!(
        all[0].get("properties").is_none(),
        "no properties unless asked"
    );
    assert!(all[0].get("in").is_none());
    let free = api
        .get("v11/pserver/?in-maint=false&properties=hostname")
        .json();
    let names: Vec<&str> = free
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["properties"]["hostname"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["a", "c", "d"]);
    assert!(
        free.as_array()
            .unwrap()
            .iter()
            .all(|v| v["properties"].as_object().unwrap().len() == 1)
    );
    let every = api.get("v11/pserver?hostname=b&properties=all").json();
    assert_eq!(
        every[0]["properties"],
        json!({"hostname": "b", "in-maint": true, "n": 1})
    );
    assert_eq!(api.get("v11/pserver?hostname=zz").json(), json!([]));
    // Pages of two, then the rest, following `Link: rel="next"`.
    let first = api.get("v11/pserver?in-maint=false&_limit=2");
    assert_eq!(first.json().as_array().unwrap().len(), 2);
    let link = first.header("link").expect("a next page").to_owned();
    let next = link
        .strip_prefix("</services/inventory/")
        .and_then(|l| l.strip_suffix(">; rel=\"next\""))
        .unwrap_or_else(|| panic!("{link}"));
    let second = api.get(next);
    assert_eq!(second.json().as_array().unwrap().len(), 1, "{link}");
    assert!(second.header("link").is_none());
    let bad = api.get("v11/pserver?_limit=0");
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("_limit"), "{}", bad.body);
}

#[test]
fn a_bulk_runs_in_gizmos_order_resolves_labels_and_goes_all_or_nothing() {
    let api = Gizmo::start("");
    let old = api.vertex("pserver", json!({"hostname": "old"}));
    let kept = api.vertex("pserver", json!({"hostname": "kept"}));
    let link = api
        .edge(
            "tosca.relationships.HostedOn",
            &vertex_url("pserver", &old),
            &vertex_url("pserver", &kept),
        )
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    api.host.raw_events(3, WAIT);
    // The vertex delete is listed before the edge delete that must precede it, and the
    // edge to `$v1` before... nothing: Gizmo's order sorts it out.
    let bulk = json!({
        "objects": [
            {"operation": "delete", "v0": {"id": old, "type": "pserver"}},
            {"operation": "add", "v1": {"type": "vserver", "properties": {"name": "vm"}}},
            {"operation": "patch", "v2": {"id": kept, "type": "pserver", "properties": {"x": 1}}}
        ],
        "relationships": [
            {"operation": "add", "e1": {"type": "tosca.relationships.HostedOn", "source": "$v1",
                                        "target": vertex_url("pserver", &kept), "properties": {}}},
            {"operation": "delete", "e0": {"id": link, "type": "tosca.relationships.HostedOn"}}
        ]
    });
    let answer = api.call("POST", "v11/bulk", &bulk.to_string());
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = answer.json();
    assert_eq!(answer["objects"][0]["v0"], json!({}));
    let vm = answer["objects"][1]["v1"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(answer["objects"][1]["v1"]["type"], "vserver");
    assert_eq!(
        answer["objects"][2]["v2"]["properties"],
        json!({"hostname": "kept", "x": 1})
    );
    assert_eq!(
        answer["relationships"][0]["e1"]["source"],
        vertex_url("vserver", &vm)
    );
    let events = api.host.raw_events(5, WAIT);
    let order: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            let element = e.get("vertex").or_else(|| e.get("edge")).unwrap();
            (
                e["operation"].as_str().unwrap(),
                element["type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("DELETE", "tosca.relationships.HostedOn"),
            ("DELETE", "pserver"),
            ("CREATE", "vserver"),
            ("UPDATE", "pserver"),
            ("CREATE", "tosca.relationships.HostedOn"),
        ]
    );
    let shared = &events[0]["database-transaction-id"];
    assert!(shared.is_string());
    assert!(
        events
            .iter()
            .all(|e| e["database-transaction-id"] == *shared)
    );
    // A bulk whose last write is refused writes nothing.
    let failing = json!({
        "objects": [{"operation": "add", "v1": {"type": "vserver", "properties": {"name": "never"}}},
                    {"operation": "modify", "v2": {"id": kept, "type": "pserver", "properties": {}}}],
        "relationships": [{"operation": "add", "e1": {"type": "link", "source": "$v1",
                           "target": vertex_url("pserver", "nowhere"), "properties": {}}}]
    });
    let refused = api.call("POST", "v11/bulk/", &failing.to_string());
    assert_eq!(refused.status, 404, "{}", refused.body);
    assert!(refused.body.contains("nowhere"), "{}", refused.body);
    api.host.expect_silence(Duration::from_millis(500));
    assert_eq!(
        api.get(&format!("v11/pserver/{kept}")).json()["properties"]["x"],
        1
    );
    assert_eq!(api.get("v11/vserver?name=never").json(), json!([]));
    // Malformed bulks name the problem.
    for (body, expected) in [
        (json!({}), "Invalid request Payload"),
        (
            json!({"objects": [{"operation": "add"}]}),
            "item 0 of `objects`",
        ),
        (
            json!({"objects": [{"operation": "upsert", "v1": {"type": "x"}}]}),
            "Invalid operation at item: v1",
        ),
        (
            json!({"objects": [{"operation": "add", "v1": {"properties": {}}}]}),
            "Vertex Type cannot be null for: v1",
        ),
        (
            json!({"objects": [{"operation": "modify", "v1": {"type": "x", "properties": {}}}]}),
            "Missing ID at item: v1",
        ),
        (
            json!({"relationships": [{"operation": "add", "e1": {"type": "l", "source": "$v9", "target": "$v9"}}]}),
            "Source Vertex $v9 not found for Edge: e1",
        ),
        (
            json!({"objects": [{"operation": "add", "v1": {"type": "x", "properties": {}}},
                            {"operation": "add", "v1": {"type": "x", "properties": {}}}]}),
            "duplicate vertex in payload: v1",
        ),
    ] {
        let answer = api.call("POST", "v11/bulk", &body.to_string());
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        assert!(answer.body.contains(expected), "{body}: {}", answer.body);
    }
    api.host.expect_silence(Duration::from_millis(200));
}

#[test]
fn schemas_refuse_unknown_kinds_and_name_the_field() {
    let setup = Setup::new();
    let schema =
        |name: &str, text: &str| std::fs::write(setup.dir.path().join(name), text).unwrap();
    schema(
        "pserver.json",
        r#"{"type": "object", "required": ["hostname"], "additionalProperties": false,
            "properties": {"hostname": {"type": "string"}, "in-maint": {"type": "boolean"}}}"#,
    );
    schema("link.json", r#"{"type": "object"}"#);
    let api = Gizmo::start_with(
        setup,
        "",
        "[gizmo.schemas]\npserver = \"pserver.json\"\n\"tosca.relationships.HostedOn\" = \"link.json\"",
    );
    let good = api.vertex("pserver", json!({"hostname": "a", "in-maint": true}));
    for (properties, field) in [
        (json!({"hostname": 5}), "/hostname"),
        (json!({"in-maint": true}), "hostname"),
        (json!({"hostname": "a", "color": "red"}), "color"),
    ] {
        let answer = api.call(
            "POST",
            "v11/pserver",
            &json!({ "properties": properties }).to_string(),
        );
        assert_eq!(answer.status, 400, "{properties}: {}", answer.body);
        assert!(answer.body.contains(field), "{properties}: {}", answer.body);
    }
    let patch = api.call(
        "PATCH",
        &format!("v11/pserver/{good}"),
        r#"{"properties": {"hostname": null}}"#,
    );
    assert_eq!(
        patch.status, 400,
        "a patch is checked merged: {}",
        patch.body
    );
    let unknown = api.call("POST", "v11/vserver", r#"{"properties": {}}"#);
    assert_eq!(
        (unknown.status, unknown.body.as_str()),
        (404, "Object of collection type not found: vserver")
    );
    assert_eq!(api.get("v11/vserver").status, 404);
    let label = api.edge(
        "nonsense",
        &vertex_url("pserver", &good),
        &vertex_url("pserver", &good),
    );
    assert_eq!(
        (label.status, label.body.as_str()),
        (404, "Invalid label: nonsense")
    );
    api.host.raw_events(1, WAIT);
    api.host.expect_silence(Duration::from_millis(300));
}

#[test]
fn bad_and_huge_bodies_are_refused_and_the_host_goes_on() {
    let api = Gizmo::start("max-body-kb = 64");
    let refusals: [(&str, &str, &[u8], u16, &str); 11] = [
        ("POST", "v11/pserver", b"{bad", 400, "Invalid Json Payload"),
        ("POST", "v11/pserver", b"", 400, "Invalid Json Payload"),
        (
            "POST",
            "v11/pserver",
            b"\xff\xfe\x00",
            400,
            "Invalid Json Payload",
        ),
        ("POST", "v11/pserver", b"[]", 400, "Invalid Json Payload"),
        ("POST", "v11/pserver", b"{}", 400, "Invalid request Payload"),
        (
            "POST",
            "v11/pserver",
            br#"{"properties": []}"#,
            400,
            "Invalid Json Payload",
        ),
        (
            "POST",
            "v11/pserver",
            br#"{"id": "x", "properties": {}}"#,
            400,
            "ID specified , use Http PUT to update Vertex",
        ),
        (
            "POST",
            "v11/pserver",
            br#"{"type": "vserver", "properties": {}}"#,
            400,
            "Vertex Type mismatch",
        ),
        (
            "POST",
            "v11/",
            br#"{"properties": {}}"#,
            400,
            "Missing Vertex Type",
        ),
        (
            "POST",
            "relationships/v11/link",
            br#"{"source": "x", "target": "y", "properties": {}}"#,
            400,
            "Invalid Source/Target Urls",
        ),
        (
            "PUT",
            "v11/pserver/none",
            br#"{"properties": {}}"#,
            404,
            "No vertex with id none",
        ),
    ];
    for (method, path, body, status, text) in refusals {
        let answer = api.send(
            api.client
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                    api.url(path),
                )
                .body(body.to_vec()),
        );
        assert_eq!(
            answer.status, status,
            "{method} {path} {body:?}: {}",
            answer.body
        );
        assert!(
            answer.body.contains(text),
            "{method} {path}: {}",
            answer.body
        );
    }
    // A web page's request, and one through a name that could be rebound to loopback.
    let from_a_page = api.send(
        api.client
            .post(api.url("v11/pserver"))
            .header("Origin", "https://evil.example")
            .body(r#"{"properties": {}}"#),
    );
    assert_eq!(from_a_page.status, 403, "{}", from_a_page.body);
    let port = api
        .base
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let rebound = api.send(
        api.client
            .post(api.url("v11/pserver"))
            .header("Host", format!("evil.example:{port}"))
            .body(r#"{"properties": {}}"#),
    );
    assert_eq!(rebound.status, 403, "{}", rebound.body);
    let huge = format!(
        r#"{{"properties": {{"blob": "{}"}}}}"#,
        "x".repeat(65 * 1024)
    );
    let answer = api.call("POST", "v11/pserver", &huge);
    assert_eq!(answer.status, 413, "{}", answer.body);
    // A body just under the limit and a typeless POST are fine, and the host is unharmed.
    let fits = format!(
        r#"{{"type": "pserver", "properties": {{"blob": "{}"}}}}"#,
        "x".repeat(60 * 1024)
    );
    let answer = api.call("POST", "v11/", &fits);
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(api.host.raw_events(1, WAIT)[0]["operation"], "CREATE");
    assert!(api.host.is_running());
}

#[test]
fn writes_through_the_api_are_policed_and_synced_like_any_sources() {
    let setup = Setup::new();
    let backend = Backend::start();
    setup.install(
        "stamp",
        "stamp-policy",
        "name = \"stamp\"\nversion = \"0.1.0\"\nroles = [\"model-policy\"]\n\
         [policy]\nkinds = [\"node\"]\n\
         [capabilities]\nstore = { read = [\"node\"], write = [\"node\", \"audit\"], handle = [\"node\"] }\n\
         [settings]\naudit-kind = \"audit\"\n",
    );
    setup.install(
        "push",
        "http-sync",
        &format!(
            "name = \"push\"\nversion = \"0.1.0\"\nroles = [\"sync-step\"]\n\
             [sync]\nkinds = [\"node\"]\n\
             [capabilities]\npoll = {{ hosts = [\"{url}\"] }}\n\
             store = {{ read = [\"node\"], write = [\"node\"], handle = [\"node\"] }}\n\
             [settings]\nurl = \"{url}\"\n",
            url = backend.url()
        ),
    );
    let api = Gizmo::start_with(setup, "", "");
    api.setup.status();
    let id = api.vertex("node", json!({"v": 1}));
    let deadline = Instant::now() + WAIT;
    loop {
        let node = api.get(&format!("v11/node/{id}")).json();
        let pushed = backend.requests("PUT", &format!("/node/{id}"));
        if node["properties"]["policy-runs"] == 1
            && pushed
                .last()
                .is_some_and(|r| r.body.contains("policy-runs"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the policy and the step never handled {id}: {node} {pushed:?}\n{}",
            api.host.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `[bus]` lines of a Kafka bus on the shared test broker under a new prefix, and
/// the prefix.
fn kafka_lines() -> (String, String) {
    let broker = synchro_testkit::broker::shared();
    let prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
    (
        format!(
            "[bus]\nkind = \"kafka\"\nbrokers = \"{}\"\ntopic-prefix = \"{prefix}\"\n",
            broker.address
        ),
        prefix,
    )
}

/// What both buses must do in async mode with the in-host responder.
fn async_mode_round_trips(api: &Gizmo) {
    let host = api.vertex("pserver", json!({"hostname": "a"}));
    let vm = api.vertex("vserver", json!({"name": "vm"}));
    let link = api.edge(
        "tosca.relationships.HostedOn",
        &vertex_url("vserver", &vm),
        &vertex_url("pserver", &host),
    );
    assert_eq!(link.status, 201, "{}", link.body);
    let link = link.json()["id"].as_str().unwrap().to_owned();
    let read = api.get(&format!("v11/pserver/{host}")).json();
    assert_eq!(
        read["in"][0]["id"],
        link.as_str(),
        "the responder wrote the model: {read}"
    );
    let patched = api.call(
        "PATCH",
        &format!("v11/pserver/{host}"),
        r#"{"properties": {"x": 1}}"#,
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(
        patched.json()["properties"],
        json!({"hostname": "a", "x": 1})
    );
    // The responder's FAILURE is answered with its status and Gizmo's message.
    let refused = api.call("DELETE", &format!("v11/pserver/{host}"), "");
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.starts_with("Operation Failed with transaction-id: ")
            && refused.body.ends_with(&format!(
                "Error: Failed to delete vertex: Attempt to delete vertex with id {host} which has incident edges."
            )),
        "{}",
        refused.body
    );
    let missing = api.call("PUT", "v11/pserver/nobody", r#"{"properties": {}}"#);
    assert_eq!(missing.status, 404, "{}", missing.body);
    // A bulk whose third write fails undoes the two before it.
    let bulk = json!({
        "objects": [
            {"operation": "add", "v1": {"type": "vserver", "properties": {"name": "undone"}}},
            {"operation": "modify", "v2": {"id": host, "type": "pserver", "properties": {"hostname": "undone"}}}
        ],
        "relationships": [
            {"operation": "add", "e1": {"type": "tosca.relationships.HostedOn", "source": "$v1",
                                        "target": vertex_url("pserver", "nowhere"), "properties": {}}}
        ]
    });
    let failed = api.call("POST", "v11/bulk", &bulk.to_string());
    assert_eq!(failed.status, 404, "{}", failed.body);
    assert_eq!(api.get("v11/vserver?name=undone").json(), json!([]));
    assert_eq!(
        api.get(&format!("v11/pserver/{host}")).json()["properties"],
        json!({"hostname": "a", "x": 1}),
        "the modify was rolled back"
    );
    let bulk = json!({
        "objects": [{"operation": "add", "v1": {"type": "vserver", "properties": {"name": "kept"}}}],
        "relationships": [{"operation": "add", "e1": {"type": "tosca.relationships.HostedOn",
            "source": "$v1", "target": vertex_url("pserver", &host), "properties": {}}}]
    });
    let done = api.call("POST", "v11/bulk", &bulk.to_string());
    assert_eq!(done.status, 200, "{}", done.body);
    let done = done.json();
    let kept = done["objects"][0]["v1"]["id"].as_str().unwrap();
    assert_eq!(
        done["relationships"][0]["e1"]["source"],
        vertex_url("vserver", kept)
    );
    // Created, created, created, updated; a create and an update then undone; then the
    // last bulk's two.
    let events = api.host.raw_events(10, WAIT);
    let operations: Vec<&str> = events
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(
        operations,
        [
            "CREATE", "CREATE", "CREATE", "UPDATE", "CREATE", "UPDATE", "UPDATE", "DELETE",
            "CREATE", "CREATE"
        ],
        "{events:#?}"
    );
}

#[test]
fn async_mode_answers_from_the_in_host_responder_on_the_embedded_bus() {
    let api = Gizmo::start("mode = \"async\"");
    async_mode_round_trips(&api);
}

#[test]
fn async_mode_answers_from_the_in_host_responder_on_kafka() {
    let (bus, _) = kafka_lines();
    let api = Gizmo::start_with(Setup::new(), &bus, "mode = \"async\"");
    async_mode_round_trips(&api);
}

/// A responder of the operator's, on Kafka: it answers each request as the property
/// `case` of its element says — Champ's envelope or Gizmo's flat shape, FAILURE,
/// violations, nothing, a malformed success, twice — until the test ends.
fn operators_responder(prefix: &str) {
    let broker = synchro_testkit::broker::shared();
    let bus = synchro_testkit::broker::kafka_bus_on(&broker.address, prefix);
    let ready = std::sync::Arc::new(std::sync::Barrier::new(2));
    let joined = ready.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            use synchro_bus::{Message, StartFrom, Topics};
            let mut requests = bus
                .consume("champ", Topics::Names(vec!["gizmo-requests".into()]), StartFrom::Earliest)
                .unwrap();
            joined.wait();
            loop {
                let delivery = requests.next().await.unwrap();
                let request: Value = serde_json::from_slice(&delivery.message.payload).unwrap();
                assert_eq!(request["header"]["request-id"], request["body"]["transaction-id"]);
                let body = &request["body"];
                let element = body.get("vertex").unwrap_or(&Value::Null);
                let case = element["properties"]["case"].as_str().unwrap_or("");
                let mut vertex = element.clone();
                vertex["key"] = json!(format!("champ-{}", element["key"].as_str().unwrap()));
                let flat = json!({"timestamp": 1, "operation": body["operation"],
                    "transaction-id": body["transaction-id"], "vertex": vertex, "result": "SUCCESS"});
                let answers = match case {
                    "fail" => vec![json!({"timestamp": 1, "operation": "CREATE", "vertex": element,
                        "transaction-id": body["transaction-id"], "result": "FAILURE",
                        "httpErrorStatus": "CONFLICT", "error-message": "hostname already taken"})],
                    "violate" => vec![json!({"header": {}, "body": flat, "policyViolations": [{"rule": "no-x"}]})],
                    "silent" => vec![],
                    "malformed" => vec![json!({"transaction-id": body["transaction-id"], "result": "SUCCESS"})],
                    "twice" => vec![flat.clone(), flat],
                    // A DELETE's response, in Champ's envelope, without a result.
                    _ if body["operation"] == "DELETE" => vec![json!({"header": {}, "body": {
                        "operation": "DELETE", "transaction-id": body["transaction-id"],
                        "vertex": element}})],
                    _ => vec![json!({"header": {"request-id": body["transaction-id"]}, "body": flat})],
                };
                for answer in answers {
                    bus.publish(Message::new("gizmo-responses".to_owned(), answer.to_string()))
                        .await
                        .unwrap();
                }
                requests.commit(&delivery).unwrap();
            }
        });
    });
    ready.wait();
}

#[test]
fn async_mode_reads_gizmos_responses_from_a_responder_of_the_operators() {
    let (bus, prefix) = kafka_lines();
    operators_responder(&prefix);
    let api = Gizmo::start_with(
        Setup::new(),
        &bus,
        "mode = \"async\"\nresponder = false\ntimeout = \"2s\"",
    );
    let post = |case: &str| {
        api.call(
            "POST",
            "v11/pserver",
            &json!({"properties": {"case": case}}).to_string(),
        )
    };
    // SUCCESS in Champ's envelope: the vertex as the responder wrote it (its key).
    let created = post("ok");
    assert_eq!(created.status, 201, "{}", created.body);
    let created = created.json();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("champ-"), "{created}");
    assert_eq!(created["url"], vertex_url("pserver", &id));
    // FAILURE: the status httpErrorStatus names, Gizmo's message.
    let failed = post("fail");
    assert_eq!(failed.status, 409, "{}", failed.body);
    assert!(
        failed
            .body
            .starts_with("Operation Failed with transaction-id: "),
        "{}",
        failed.body
    );
    assert!(
        failed.body.ends_with(". Error: hostname already taken"),
        "{}",
        failed.body
    );
    // Violations win over SUCCESS.
    let violated = post("violate");
    assert_eq!(violated.status, 400, "{}", violated.body);
    assert!(
        violated
            .body
            .contains("policy violations detected in request, [{\"rule\":\"no-x\"}]"),
        "{}",
        violated.body
    );
    // A success without the element it answers is the responder's fault.
    let malformed = post("malformed");
    assert_eq!(malformed.status, 502, "{}", malformed.body);
    // A duplicate response is dropped and counted; the first answers.
    assert_eq!(post("twice").status, 201);
    // No response: 504 naming the transaction id.
    let silent = post("silent");
    assert_eq!(silent.status, 504, "{}", silent.body);
    assert!(
        silent.body.starts_with("Timed out , transactionId: "),
        "{}",
        silent.body
    );
    // A DELETE's response without a result is a success; nothing is read locally first.
    let deleted = api.call("DELETE", &format!("v11/pserver/{id}"), "");
    assert_eq!((deleted.status, deleted.body.as_str()), (200, ""));
    let deadline = Instant::now() + WAIT;
    loop {
        let responses = api.setup.status().responses;
        if responses.duplicate >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the duplicate was not counted: {responses:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The silent one's wait gave up; six were answered, each wait's duration measured.
    assert_eq!(api.setup.status().responses.timed_out, 1);
    let (status, text) = api.setup.admin_request("GET", "/metrics", None);
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("synchro_responses_total{outcome=\"timed-out\"} 1\n"),
        "{text}"
    );
    let waits: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("synchro_await_response_seconds_count "))
        .unwrap_or_else(|| panic!("{text}"))
        .parse()
        .unwrap();
    assert_eq!(waits, 6, "{text}");
}

/// A write answered is durable: clients write concurrently while the host is killed with
/// SIGKILL at a moment the test does not choose; every vertex answered 201 is there after
/// the restart (writes are committed in groups, some without an fsync of their own: the
/// answer waits for the one that covers them).
#[test]
fn every_write_answered_survives_a_kill_9() {
    let api = Gizmo::start("");
    let url = api.url("v11/pserver");
    let pid = api.host.pid();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let acked: Vec<String> = runtime.block_on(async move {
        let client = reqwest::Client::new();
        let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut writers = tokio::task::JoinSet::new();
        for writer in 0..32 {
            let (client, url, answered) = (client.clone(), url.clone(), answered.clone());
            writers.spawn(async move {
                let mut acked = Vec::new();
                for i in 0.. {
                    let body = json!({"properties": {"writer": writer, "i": i}}).to_string();
                    let Ok(response) = client.post(&url).body(body).send().await else {
                        break;
                    };
                    if response.status() != 201 {
                        break;
                    }
                    let Ok(text) = response.text().await else {
                        break;
                    };
                    let vertex: Value = serde_json::from_str(&text).unwrap();
                    acked.push(vertex["id"].as_str().unwrap().to_owned());
                    answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                acked
            });
        }
        while answered.load(std::sync::atomic::Ordering::Relaxed) < 2000 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let mut acked = Vec::new();
        while let Some(done) = writers.join_next().await {
            acked.extend(done.unwrap());
        }
        acked
    });
    assert!(acked.len() >= 2000, "{}", acked.len());
    let Gizmo { setup, host, .. } = api;
    drop(host);
    let api = Gizmo::running(setup);
    let mut missing = Vec::new();
    for id in &acked {
        if api.get(&format!("v11/pserver/{id}")).status != 200 {
            missing.push(id.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} answered writes lost: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}

/// Lookups share one read of the model between commits (host/store/src/snapshot.rs): a
/// client must still read each of its writes as soon as it is answered, while other
/// clients' lookups keep a shared read warm and other writers commit around it.
#[test]
fn each_client_reads_its_writes_while_others_read_and_write() {
    let api = Gizmo::start("");
    let base = api.url("v11/pserver");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let client = reqwest::Client::new();
        let busy = client
            .post(&base)
            .body(json!({"properties": {"busy": true}}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(busy.status(), 201);
        let busy: Value = serde_json::from_str(&busy.text().await.unwrap()).unwrap();
        let busy = format!("{base}/{}", busy["id"].as_str().unwrap());
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut readers = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (client, busy, done) = (client.clone(), busy.clone(), done.clone());
            readers.spawn(async move {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let read = client.get(&busy).send().await.unwrap();
                    assert_eq!(read.status(), 200);
                }
            });
        }
        let mut writers = tokio::task::JoinSet::new();
        for writer in 0..8 {
            let (client, base) = (client.clone(), base.clone());
            writers.spawn(async move {
                let read = |url: String| {
                    let client = client.clone();
                    async move {
                        let answer = client.get(&url).send().await.unwrap();
                        let status = answer.status().as_u16();
                        let body: Value = if status == 200 {
                            serde_json::from_str(&answer.text().await.unwrap()).unwrap()
                        } else {
                            Value::Null
                        };
                        (status, body)
                    }
                };
                for i in 0..40 {
                    let created = client
                        .post(&base)
                        .body(json!({"properties": {"writer": writer, "i": i}}).to_string())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(created.status(), 201);
                    let created: Value =
                        serde_json::from_str(&created.text().await.unwrap()).unwrap();
                    let url = format!("{base}/{}", created["id"].as_str().unwrap());
                    let (status, body) = read(url.clone()).await;
                    assert_eq!(status, 200, "writer {writer} #{i}: its create unread");
                    assert_eq!(body["properties"]["i"], i);
                    let replaced = client
                        .put(&url)
                        .body(json!({"properties": {"writer": writer, "i": -i}}).to_string())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(replaced.status(), 200);
                    let (_, body) = read(url.clone()).await;
                    assert_eq!(
                        body["properties"]["i"], -i,
                        "writer {writer} #{i}: stale read"
                    );
                    let deleted = client.delete(&url).send().await.unwrap();
                    assert_eq!(deleted.status(), 200);
                    let (status, _) = read(url).await;
                    assert_eq!(status, 404, "writer {writer} #{i}: its delete unread");
                }
            });
        }
        while let Some(written) = writers.join_next().await {
            written.unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        while let Some(read) = readers.join_next().await {
            read.unwrap();
        }
    });
}

/// The seed's events (`host/model/tests/fixtures/gizmo`), as Gizmo's requests on Kafka,
/// answered by the in-host responder: creates (the seed's own, with an empty key, and the
/// vertices its later events name), the update and the delete of a vertex, an edge added
/// between two of them, and the replace and delete of an edge it does not have (FAILURE,
/// NOT_FOUND) — each answered with its transaction id and Gizmo's shapes.
#[test]
fn the_seeds_requests_are_answered_by_the_in_host_responder() {
    use synchro_bus::{Message, StartFrom, Topics};
    let (bus_lines, prefix) = kafka_lines();
    let api = Gizmo::start_with(Setup::new(), &bus_lines, "mode = \"async\"");
    let seed = |name: &str| -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../host/model/tests/fixtures/gizmo")
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let mut requests = vec![seed("01-event-adding-a-vertex.json")];
    for (key, kind) in [
        ("84bf7b3f-81f5-4c34-ab5c-207281cb71bd", "pserver"),
        ("7beade35-19f1-4c1d-a1bd-bfba59e0b582", "vserver"),
        ("febd8996-62ec-4ce6-ba8e-d2fa1609e13b", "pserver"),
    ] {
        let mut create = seed("01-event-adding-a-vertex.json");
        create["vertex"]["key"] = json!(key);
        create["vertex"]["type"] = json!(kind);
        create["transaction-id"] = json!(format!("create-{key}"));
        requests.push(create);
    }
    for name in [
        "02-event-updating-a-vertex.json",
        "04-event-adding-an-edge.json",
        "05-event-replace-an-edge.json",
        "06-event-deleting-an-edge.json",
        "03-event-deleting-a-vertex.json",
    ] {
        requests.push(seed(name));
    }
    // An edge's delete naming a vertex deletes nothing.
    let mut not_an_edge = seed("06-event-deleting-an-edge.json");
    not_an_edge["edge"]["key"] = json!("7beade35-19f1-4c1d-a1bd-bfba59e0b582");
    not_an_edge["edge"]["type"] = json!("vserver");
    not_an_edge["transaction-id"] = json!("not-an-edge");
    requests.push(not_an_edge);
    let expected = [
        "SUCCESS", "SUCCESS", "SUCCESS", "SUCCESS", "SUCCESS", "SUCCESS", "FAILURE", "FAILURE",
        "SUCCESS", "FAILURE",
    ];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let responses: Vec<Value> = runtime.block_on(async {
        let broker = synchro_testkit::broker::shared();
        let bus = synchro_testkit::broker::kafka_bus_on(&broker.address, &prefix);
        let mut responses = bus
            .consume(
                "seed-test",
                Topics::Names(vec!["gizmo-responses".into()]),
                StartFrom::Earliest,
            )
            .unwrap();
        let mut answered = Vec::new();
        // One at a time: the update needs the create before it.
        for body in &requests {
            let envelope = json!({"header": {
                "request-id": body["transaction-id"], "timestamp": "20180316T092301Z",
                "source-name": "GIZMO", "event-type": "pending-update",
                "validation-entity-type": body.get("vertex").or(body.get("edge")).unwrap()["type"]},
                "body": body});
            bus.publish(Message::new(
                "gizmo-requests".to_owned(),
                envelope.to_string(),
            ))
            .await
            .unwrap();
            let delivery = tokio::time::timeout(WAIT, responses.next())
                .await
                .expect("a response")
                .unwrap();
            answered.push(serde_json::from_slice(&delivery.message.payload).unwrap());
        }
        answered
    });
    for ((request, response), outcome) in requests.iter().zip(&responses).zip(expected) {
        assert_eq!(
            response["transaction-id"], request["transaction-id"],
            "{response}"
        );
        assert_eq!(response["operation"], request["operation"], "{response}");
        assert_eq!(response["result"], outcome, "{request}\n{response}");
        if outcome == "FAILURE" {
            assert_eq!(response["httpErrorStatus"], "NOT_FOUND", "{response}");
            assert!(
                response["error-message"]
                    .as_str()
                    .unwrap()
                    .contains(" found")
            );
        }
    }
    // The seed's own create got a key; its properties are the seed's.
    let created = &responses[0]["vertex"];
    assert!(!created["key"].as_str().unwrap().is_empty());
    assert_eq!(created["properties"], requests[0]["vertex"]["properties"]);
    assert_eq!(
        responses[4]["vertex"]["properties"]["fqdn"],
        "updated.myhost.onap.net"
    );
    let edge = &responses[5]["edge"];
    assert_eq!(
        edge["source"]["key"],
        "7beade35-19f1-4c1d-a1bd-bfba59e0b582"
    );
    // What the responder wrote is in the model the API reads.
    let key = edge["key"].as_str().unwrap();
    let read = api.get(&format!(
        "relationships/v11/tosca.relationships.HostedOn/{key}"
    ));
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(
        api.get("v11/pserver/84bf7b3f-81f5-4c34-ab5c-207281cb71bd")
            .status,
        404,
        "deleted"
    );
    assert_eq!(
        api.get("v11/vserver/7beade35-19f1-4c1d-a1bd-bfba59e0b582")
            .status,
        200,
        "not deleted by an edge's request"
    );
}

/// Two hosts in async mode share the request and response topics of an operator's
/// responder on Kafka: each reads every response and takes its own.
#[test]
fn two_hosts_sharing_the_response_topic_each_get_theirs() {
    let (bus, prefix) = kafka_lines();
    operators_responder(&prefix);
    let host = || Gizmo::start_with(Setup::new(), &bus, "mode = \"async\"\nresponder = false");
    let (a, b) = (host(), host());
    for round in 0..5 {
        for (name, api) in [("a", &a), ("b", &b)] {
            let answer = api.call(
                "POST",
                "v11/pserver",
                &json!({"properties": {"host": name, "round": round}}).to_string(),
            );
            assert_eq!(answer.status, 201, "{name}: {}", answer.body);
            assert_eq!(answer.json()["properties"]["host"], name, "{}", answer.body);
        }
    }
}
