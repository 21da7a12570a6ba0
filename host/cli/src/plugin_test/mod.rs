//! `synchro plugin test DIR`: runs a plugin's component in a mock host ([`mock_host`])
//! against its fixtures ([`fixture`]), then the conformance checks every plugin must
//! pass whatever its fixtures (Airbyte's connector acceptance tests are the model):
//! it loads under the host's default limits, a bad config gets an error and not a trap,
//! a denied capability is handled, and a collector's second collect of the same data
//! changes nothing.
//!
//! Fixtures drive collectors so far; a plugin of another role gets the load check.

mod fixture;
mod mock_host;

use std::io::Write;
use std::path::Path;

use synchro_engine::CallError;

use fixture::{Answer, Fixture, Step};
use mock_host::{Collect, MockHost, Variant};

/// Runs every check, printing one line each to `out`; fails when one did.
pub fn run(dir: &Path, fixtures: Option<&Path>, out: &mut impl Write) -> anyhow::Result<()> {
    let manifest = mock_host::manifest_in(dir)?;
    let fixtures_dir = match fixtures {
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
    writeln!(
        report.out,
        "plugin test {} ({})",
        host.name(),
        manifest.display()
    )?;

    let plugin = match host.load(&Variant::default()) {
        Ok((plugin, took, origin)) => {
            let how = match origin {
                synchro_roles::Origin::Cache => "from the cache",
                synchro_roles::Origin::Compiled => "compiled",
            };
            report.check(
                "loads under the host's default limits",
                Ok(format!("{how} in {} ms", took.as_millis())),
            )?;
            plugin
        }
        Err(error) => {
            report.check(
                "loads under the host's default limits",
                Err(format!("{error:#}")),
            )?;
            return report.finish();
        }
    };
    if plugin.roles.collector.is_none() {
        if !fixtures.is_empty() {
            report.check(
                "fixtures",
                Err(format!(
                    "{} is not a collector: fixtures drive collectors only so far",
                    host.name()
                )),
            )?;
        }
        return report.finish();
    }
    drop(plugin);
    for fixture in &fixtures {
        for (i, outcome) in runtime
            .block_on(run_fixture(&host, fixture))?
            .into_iter()
            .enumerate()
        {
            report.check(
                &format!("fixture {}: collect {}", fixture.name, i + 1),
                outcome,
            )?;
        }
    }
    // The data the conformance checks collect: the first fixture's first collect, else
    // the manifest's settings alone.
    let (variant, answers) = match fixtures.first() {
        Some(first) => step_input(first, &first.collect[0]),
        None => (Variant::default(), Vec::new()),
    };
    for (what, outcome) in runtime.block_on(conformance(&host, &variant, &answers))? {
        report.check(&format!("conformance: {what}"), outcome)?;
    }
    report.finish()
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

/// The settings and the answers of `step` of `fixture`.
fn step_input(fixture: &Fixture, step: &Step) -> (Variant, Vec<synchro_capability::Canned>) {
    let mut settings = fixture.settings.clone();
    settings.extend(step.settings.clone());
    let answers = step.http.as_deref().unwrap_or(&fixture.http);
    (
        Variant {
            settings,
            ..Variant::default()
        },
        Answer::canned(answers),
    )
}

/// The fixture's collects, in one case, each checked against what it expects.
async fn run_fixture(host: &MockHost, fixture: &Fixture) -> anyhow::Result<Vec<Outcome>> {
    let mut case = host.case()?;
    let mut outcomes = Vec::new();
    for step in &fixture.collect {
        let (variant, answers) = step_input(fixture, step);
        let collected = case.collect(&variant, answers).await?;
        outcomes.push(expect(step, collected));
    }
    Ok(outcomes)
}

fn expect(step: &Step, collected: Collect) -> Outcome {
    let mut expected = step.changes.clone();
    expected.sort();
    match (collected, &step.error) {
        (Collect::Done(changes), None) if changes == expected => Ok(match changes.len() {
            0 => "no change, as expected".to_owned(),
            n => format!("{n} change(s), as expected"),
        }),
        (Collect::Done(changes), None) => Err(format!(
            "announced {} where {} was expected",
            list(&changes),
            list(&expected)
        )),
        (Collect::Done(changes), Some(kind)) => Err(format!(
            "succeeded ({}) where it should fail with `{kind}`",
            list(&changes)
        )),
        (Collect::Failed(CallError::Plugin { kind, message }), Some(want))
            if kind.label() == want =>
        {
            Ok(format!("failed with `{kind}`, as expected: {message}"))
        }
        (Collect::Failed(error), Some(want)) => {
            Err(format!("failed, but not with `{want}`: {error}"))
        }
        (Collect::Failed(error), None) => Err(format!("failed: {error}")),
    }
}

fn list(changes: &[String]) -> String {
    if changes.is_empty() {
        "no change".to_owned()
    } else {
        format!("[{}]", changes.join(", "))
    }
}

/// Whether a failed call failed as a plugin should: with an error it returned, not by
/// trapping, running out of time or fuel, or handing the host something invalid.
fn handled(error: &CallError) -> bool {
    matches!(error, CallError::Plugin { .. })
}

async fn conformance(
    host: &MockHost,
    variant: &Variant,
    answers: &[synchro_capability::Canned],
) -> anyhow::Result<Vec<(&'static str, Outcome)>> {
    let mut checks = Vec::new();

    let twice = async {
        let mut case = host.case()?;
        let first = case.collect(variant, answers.to_vec()).await?;
        let second = case.collect(variant, answers.to_vec()).await?;
        anyhow::Ok(match (first, second) {
            (Collect::Failed(error), _) => Err(format!(
                "the first collect failed ({error}); give the data it needs in a fixture \
                 (fixtures/*.toml: settings and http answers)"
            )),
            (_, Collect::Failed(error)) => Err(format!("the second collect failed: {error}")),
            (Collect::Done(_), Collect::Done(changes)) if changes.is_empty() => {
                Ok("the second collect announced nothing".to_owned())
            }
            (Collect::Done(_), Collect::Done(changes)) => Err(format!(
                "the second collect of the same data announced {}: is something in the \
                 entities not from the data (a time, a counter, a random id)?",
                list(&changes)
            )),
        })
    };
    checks.push((
        "collecting the same data twice changes nothing",
        twice.await?,
    ));

    // Without its settings, and with each setting a value it cannot expect.
    let mut garbled = host.settings();
    garbled.extend(variant.settings.clone());
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
    for (what, config) in [
        ("a missing config gets an error, not a trap", missing),
        ("a bad config gets an error, not a trap", bad),
    ] {
        checks.push((what, survives(host, &config, answers).await?));
    }

    let denied = Variant {
        no_capabilities: true,
        ..variant.clone()
    };
    checks.push((
        "a denied capability is handled (an error, not a trap)",
        survives(host, &denied, answers).await?,
    ));
    Ok(checks)
}

/// Collects once with `variant`: passes when the collect succeeds or returns an error.
async fn survives(
    host: &MockHost,
    variant: &Variant,
    answers: &[synchro_capability::Canned],
) -> anyhow::Result<Outcome> {
    let mut case = host.case()?;
    Ok(match case.collect(variant, answers.to_vec()).await {
        // The manifest itself refuses the variant (a required setting's type, say): the
        // host never calls the plugin with it.
        Err(refused) => Ok(format!(
            "the host refuses it: {}",
            synchro_model::OneLine(&format!("{refused:#}"))
        )),
        Ok(Collect::Done(_)) => Ok("collected".to_owned()),
        Ok(Collect::Failed(error)) if handled(&error) => Ok(format!("returned: {error}")),
        Ok(Collect::Failed(error)) => Err(format!("{error}")),
    })
}
