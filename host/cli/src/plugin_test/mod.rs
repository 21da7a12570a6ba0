//! `synchro plugin test DIR`: runs a plugin's component in a mock host ([`mock_host`])
//! against its fixtures ([`fixture`]), then the conformance checks every plugin must
//! pass whatever its fixtures (Airbyte's connector acceptance tests are the model):
//! it loads under the host's default limits, a missing or bad config gets an error and
//! not a trap, a denied capability is handled, and a collector's second collect of the
//! same data changes nothing.
//!
//! Fixtures drive every role: a collector's collects, an event step's messages, a model
//! policy's or a sync step's calls.

mod fixture;
mod mock_host;

use std::io::Write;
use std::path::Path;

use synchro_capability::Canned;
use synchro_engine::CallError;

use fixture::{Answer, Fixture, Function, Step, StoredEntity};
use mock_host::{Called, Case, MockHost, Variant};

/// Runs every check, printing one line each to `out`; fails when one did.
pub fn run(dir: &Path, fixtures: Option<&Path>, out: &mut impl Write) -> anyhow::Result<()> {
    let manifest = mock_host::manifest_in(dir)?;
    let fixtures_dir = match fixtures {
        Some(dir) if !dir.is_dir() => anyhow::bail!("--fixtures {}: no such folder", dir.display()),
        Some(dir) => dir.to_owned(),
        None => manifest.parent().unwrap_or(Path::new(".")).join("fixtures"),
    };
    let fixtures = Fixture::all_in(&fixtures_dir)?;
    let host = MockHost::new(&manifest)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut report = Report {
        out,
        passed: 0,
        failed: 0,
    };
    let title = format!("plugin test {} ({})", host.name(), manifest.display());
    writeln!(report.out, "{title}")?;

    let loads = "loads under the host's default limits";
    let plugin = match host.load(&Variant::default()) {
        Ok((plugin, took, origin)) => {
            let how = match origin {
                synchro_roles::Origin::Cache => "from the cache",
                synchro_roles::Origin::Compiled => "compiled",
            };
            report.check(loads, Ok(format!("{how} in {} ms", took.as_millis())))?;
            plugin
        }
        Err(error) => {
            report.check(loads, Err(format!("{error:#}")))?;
            return report.finish();
        }
    };
    let first_kind =
        |work: &synchro_roles::ModelWork| work.kinds.first().cloned().unwrap_or_default();
    let role = if plugin.roles.collector.is_some() {
        Role::Collector
    } else if let Some(step) = &plugin.roles.event_step {
        // Without fixtures, the conformance checks hand it `{}` on its first topic.
        let topic = match &step.events.topics {
            synchro_bus::Topics::Names(names) => names.first().cloned(),
            synchro_bus::Topics::Pattern(_) => None,
        };
        Role::EventStep(topic.unwrap_or_else(|| "changes".to_owned()))
    } else if let Some(policy) = &plugin.roles.model_policy {
        Role::ModelPolicy(first_kind(&policy.policy))
    } else if let Some(sync) = &plugin.roles.sync_step {
        Role::SyncStep(first_kind(&sync.sync))
    } else {
        anyhow::bail!("{} plays no role", host.name());
    };
    drop(plugin);
    for fixture in &fixtures {
        let (step, outcomes) = match (&role, fixture.collect.is_empty(), fixture.event.is_empty()) {
            (Role::Collector, false, _) => ("collect", runtime.block_on(collects(&host, fixture))?),
            (Role::EventStep(_), _, false) => ("event", runtime.block_on(events(&host, fixture))?),
            // A case's calls are all of one role (checked when read): its first says which.
            (_, true, true) if role.takes(&fixture.call) => {
                ("call", runtime.block_on(calls(&host, fixture))?)
            }
            _ => (
                "steps",
                vec![Err(format!(
                    "its steps are for another role: {} is a {}",
                    host.name(),
                    role.name()
                ))],
            ),
        };
        for (i, outcome) in outcomes.into_iter().enumerate() {
            report.check(
                &format!("fixture {}: {step} {}", fixture.name, i + 1),
                outcome,
            )?;
        }
    }
    // What the conformance checks give the plugin: the first fixture's first step, else
    // the manifest's settings alone.
    let input = match (&role, fixtures.first()) {
        (Role::Collector, Some(first)) if !first.collect.is_empty() => {
            let (variant, answers) =
                step_input(first, &first.collect[0].settings, &first.collect[0].http);
            Input::Collect { variant, answers }
        }
        (Role::EventStep(_), Some(first)) if !first.event.is_empty() => {
            let event = &first.event[0];
            let (variant, answers) = step_input(first, &event.settings, &event.http);
            Input::Event {
                variant,
                answers,
                message: event.message().expect("checked when read"),
            }
        }
        // The first fixture's first call, when it is of the plugin's role.
        (_, Some(first)) if role.takes(&first.call) => {
            let call = &first.call[0];
            let (variant, answers) = step_input(first, &call.settings, &call.http);
            Input::Call {
                variant,
                answers,
                function: call.function.expect("checked when read"),
                entity: call.entity.clone().expect("checked when read"),
                previous: call.previous.clone(),
            }
        }
        (Role::Collector, _) => Input::Collect {
            variant: Variant::default(),
            answers: Vec::new(),
        },
        (Role::EventStep(topic), _) => Input::Event {
            variant: Variant::default(),
            answers: Vec::new(),
            message: synchro_bus::Message::new(topic.clone(), "{}"),
        },
        // Without fixtures: an entity of the first kind it handles, new.
        (Role::ModelPolicy(kind) | Role::SyncStep(kind), _) => Input::Call {
            variant: Variant::default(),
            answers: Vec::new(),
            function: if matches!(role, Role::ModelPolicy(_)) {
                Function::HandleCreate
            } else {
                Function::SyncRecord
            },
            entity: StoredEntity {
                kind: kind.clone(),
                key: "conformance".to_owned(),
                properties: None,
            },
            previous: None,
        },
    };
    for (what, outcome) in runtime.block_on(conformance(&host, &input))? {
        report.check(&format!("conformance: {what}"), outcome)?;
    }
    report.finish()
}

/// The role fixtures drive (a component that plays several: the first of these).
enum Role {
    Collector,
    /// With the topic a conformance check's message goes to.
    EventStep(String),
    /// With the kind of a conformance check's entity.
    ModelPolicy(String),
    SyncStep(String),
}

impl Role {
    /// Whether `calls` (a case's `[[call]]`s, all of one role) are this role's.
    fn takes(&self, calls: &[Step]) -> bool {
        let policy = match calls.first().and_then(|call| call.function) {
            Some(function) => function.is_policy(),
            None => return false,
        };
        match self {
            Role::ModelPolicy(_) => policy,
            Role::SyncStep(_) => !policy,
            Role::Collector | Role::EventStep(_) => false,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Role::Collector => "collector",
            Role::EventStep(_) => "event step",
            Role::ModelPolicy(_) => "model policy",
            Role::SyncStep(_) => "sync step",
        }
    }
}

/// What one check found: a note when it passed, the reason when not.
type Outcome = Result<String, String>;

struct Report<'o, W: Write> {
    out: &'o mut W,
    passed: usize,
    failed: usize,
}

impl<W: Write> Report<'_, W> {
    fn check(&mut self, what: &str, outcome: Outcome) -> std::io::Result<()> {
        match outcome {
            Ok(note) => {
                self.passed += 1;
                writeln!(self.out, "  ok    {what}: {note}")
            }
            Err(why) => {
                self.failed += 1;
                writeln!(self.out, "  FAIL  {what}: {}", synchro_model::OneLine(&why))
            }
        }
    }

    fn finish(self) -> anyhow::Result<()> {
        writeln!(self.out, "{} passed, {} failed", self.passed, self.failed)?;
        anyhow::ensure!(
            self.failed == 0,
            "{} of {} checks failed",
            self.failed,
            self.failed + self.passed
        );
        Ok(())
    }
}

/// A step's settings (over the case's) and answers (instead of the case's).
fn step_input(
    fixture: &Fixture,
    settings: &toml::Table,
    http: &Option<Vec<Answer>>,
) -> (Variant, Vec<Canned>) {
    let mut merged = fixture.settings.clone();
    merged.extend(settings.clone());
    let answers = http.as_deref().unwrap_or(&fixture.http);
    let variant = Variant {
        settings: merged,
        ..Variant::default()
    };
    (variant, Answer::canned(answers))
}

/// A case for `fixture`: its store seeded and its responses ready.
async fn case<'h>(host: &'h MockHost, fixture: &Fixture) -> anyhow::Result<Case<'h>> {
    let mut case = host.case()?;
    case.seed(&fixture.store).await?;
    case.respond_with(fixture.responses.iter().map(|r| r.message()).collect());
    Ok(case)
}

/// The fixture's collects, in one case, each checked against what it expects.
async fn collects(host: &MockHost, fixture: &Fixture) -> anyhow::Result<Vec<Outcome>> {
    let mut case = case(host, fixture).await?;
    let mut outcomes = Vec::new();
    for step in &fixture.collect {
        let (variant, answers) = step_input(fixture, &step.settings, &step.http);
        let called = case.collect(&variant, answers).await?;
        outcomes.push(expect(&case, step, called)?);
    }
    Ok(outcomes)
}

/// The fixture's events, in one case, each checked against what it expects.
async fn events(host: &MockHost, fixture: &Fixture) -> anyhow::Result<Vec<Outcome>> {
    let mut case = case(host, fixture).await?;
    let mut outcomes = Vec::new();
    for event in &fixture.event {
        let (variant, answers) = step_input(fixture, &event.settings, &event.http);
        let message = event.message().expect("checked when read");
        let called = case.process(&variant, answers, &message).await?;
        outcomes.push(expect(&case, event, called)?);
    }
    Ok(outcomes)
}

/// The fixture's calls, in one case, each checked against what it expects.
async fn calls(host: &MockHost, fixture: &Fixture) -> anyhow::Result<Vec<Outcome>> {
    let mut case = case(host, fixture).await?;
    let mut outcomes = Vec::new();
    for call in &fixture.call {
        let (variant, answers) = step_input(fixture, &call.settings, &call.http);
        let called = case
            .call(
                &variant,
                answers,
                call.function.expect("checked when read"),
                call.entity.as_ref().expect("checked when read"),
                call.previous.as_ref(),
            )
            .await?;
        outcomes.push(expect(&case, call, called)?);
    }
    Ok(outcomes)
}

/// Checks what a call did against what its step expects: its result and changes, then
/// what it published and what is in the store.
fn expect(case: &Case<'_>, expect: &Step, called: Called) -> anyhow::Result<Outcome> {
    let Called {
        result,
        changes,
        published,
    } = called;
    let mut expected = expect.changes.to_vec();
    expected.sort();
    let outcome = match (result, expect.error.as_deref()) {
        (Ok(()), None) if changes == expected => match changes.len() {
            0 => "no change, as expected".to_owned(),
            n => format!("{n} change(s), as expected"),
        },
        (Ok(()), None) => {
            return Ok(Err(format!(
                "announced {} where {} was expected",
                list(&changes),
                list(&expected)
            )));
        }
        (Ok(()), Some(kind)) => {
            return Ok(Err(format!(
                "succeeded ({}) where it should fail with `{kind}`",
                list(&changes)
            )));
        }
        (Err(CallError::Plugin { kind, .. }), Some(want))
            if kind.label() == want && !changes.is_empty() =>
        {
            return Ok(Err(format!(
                "failed with `{kind}`, as expected, but announced {} first",
                list(&changes)
            )));
        }
        (Err(CallError::Plugin { kind, message }), Some(want)) if kind.label() == want => {
            format!("failed with `{kind}`, as expected: {message}")
        }
        (Err(error), Some(want)) => {
            return Ok(Err(format!("failed, but not with `{want}`: {error}")));
        }
        (Err(error), None) => return Ok(Err(format!("failed: {error}"))),
    };
    for want in &expect.published {
        let found = published.iter().any(|m| {
            m.topic == want.topic
                && want
                    .payload
                    .as_ref()
                    .is_none_or(|p| p.as_bytes() == m.payload)
        });
        if !found {
            let seen: Vec<String> = published
                .iter()
                .map(|m| format!("{}: {}", m.topic, String::from_utf8_lossy(&m.payload)))
                .collect();
            return Ok(Err(format!(
                "published nothing like {} {} (published: {})",
                want.topic,
                want.payload.as_deref().unwrap_or("(any payload)"),
                if seen.is_empty() {
                    "nothing".to_owned()
                } else {
                    seen.join("; ")
                }
            )));
        }
    }
    for want in &expect.stored {
        let Some(entity) = case.stored(&want.kind, &want.key)? else {
            return Ok(Err(format!(
                "{}/{} is not in the store",
                want.kind, want.key
            )));
        };
        if want.properties.is_some() {
            let have: serde_json::Value = serde_json::from_str(entity.properties())?;
            let expected: serde_json::Value = serde_json::from_str(&want.properties_json())?;
            if have != expected {
                return Ok(Err(format!(
                    "{}/{} is stored with {have} where {expected} was expected",
                    want.kind, want.key
                )));
            }
        }
    }
    Ok(Ok(outcome))
}

fn list(changes: &[String]) -> String {
    if changes.is_empty() {
        "no change".to_owned()
    } else {
        format!("[{}]", changes.join(", "))
    }
}

/// What the conformance checks hand the plugin.
enum Input {
    Collect {
        variant: Variant,
        answers: Vec<Canned>,
    },
    Event {
        variant: Variant,
        answers: Vec<Canned>,
        message: synchro_bus::Message,
    },
    Call {
        variant: Variant,
        answers: Vec<Canned>,
        function: Function,
        entity: StoredEntity,
        previous: Option<StoredEntity>,
    },
}

impl Input {
    fn variant(&self) -> &Variant {
        match self {
            Input::Collect { variant, .. }
            | Input::Event { variant, .. }
            | Input::Call { variant, .. } => variant,
        }
    }

    /// One call with `variant` instead of the input's own, in a fresh case: its result,
    /// or why the host refused to load it.
    async fn call(
        &self,
        host: &MockHost,
        variant: &Variant,
    ) -> anyhow::Result<Result<(), CallError>> {
        let mut case = host.case()?;
        Ok(match self {
            Input::Collect { answers, .. } => case.collect(variant, answers.clone()).await?.result,
            Input::Event {
                answers, message, ..
            } => {
                case.process(variant, answers.clone(), message)
                    .await?
                    .result
            }
            Input::Call {
                answers,
                function,
                entity,
                previous,
                ..
            } => {
                case.call(
                    variant,
                    answers.clone(),
                    *function,
                    entity,
                    previous.as_ref(),
                )
                .await?
                .result
            }
        })
    }
}

async fn conformance(
    host: &MockHost,
    input: &Input,
) -> anyhow::Result<Vec<(&'static str, Outcome)>> {
    let mut checks = Vec::new();
    if let Input::Collect { variant, answers } = input {
        checks.push((
            "collecting the same data twice changes nothing",
            twice(host, variant, answers).await?,
        ));
    }
    // Without its settings, and with each setting a value it cannot expect.
    let mut garbled = host.settings();
    garbled.extend(input.variant().settings.clone());
    for (_, value) in garbled.iter_mut() {
        *value = toml::Value::Array(vec![toml::Value::Boolean(true)]);
    }
    let missing = Variant {
        no_settings: true,
        ..Variant::default()
    };
    let bad = Variant {
        settings: garbled,
        ..Variant::default()
    };
    let denied = Variant {
        no_capabilities: true,
        ..input.variant().clone()
    };
    for (what, variant) in [
        ("a missing config gets an error, not a trap", missing),
        ("a bad config gets an error, not a trap", bad),
        (
            "a denied capability is handled (an error, not a trap)",
            denied,
        ),
    ] {
        // The manifest itself may refuse the variant: the host never calls the plugin
        // with it.
        let outcome = if let Err(refused) = host.load(&variant) {
            let refused = format!("{refused:#}");
            Ok(format!(
                "the host refuses it: {}",
                synchro_model::OneLine(&refused)
            ))
        } else {
            match input.call(host, &variant).await {
                Err(error) => Err(format!("the mock host failed: {error:#}")),
                Ok(Ok(())) => Ok("succeeded".to_owned()),
                Ok(Err(error)) if handled(&error) => Ok(format!("returned: {error}")),
                Ok(Err(error)) => Err(error.to_string()),
            }
        };
        checks.push((what, outcome));
    }
    Ok(checks)
}

/// A collector collects the same data twice: the second collect must announce nothing.
async fn twice(host: &MockHost, variant: &Variant, answers: &[Canned]) -> anyhow::Result<Outcome> {
    let mut case = host.case()?;
    let first = case.collect(variant, answers.to_vec()).await?;
    let second = case.collect(variant, answers.to_vec()).await?;
    Ok(match (first.result, second.result) {
        (Err(error), _) => Err(format!(
            "the first collect failed ({error}); give the data it needs in a fixture \
             (fixtures/*.toml: settings and http answers)"
        )),
        (_, Err(error)) => Err(format!("the second collect failed: {error}")),
        (Ok(()), Ok(())) if second.changes.is_empty() => {
            Ok("the second collect announced nothing".to_owned())
        }
        (Ok(()), Ok(())) => Err(format!(
            "the second collect of the same data announced {}: is something in the \
             entities not from the data (a time, a counter, a random id)?",
            list(&second.changes)
        )),
    })
}

/// Whether a failed call failed as a plugin should: with an error it returned, not by
/// trapping, running out of time or fuel, or handing the host something invalid.
fn handled(error: &CallError) -> bool {
    matches!(error, CallError::Plugin { .. })
}
