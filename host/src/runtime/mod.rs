//! The WebAssembly runtime: the only module that knows wasmtime.
//!
//! One [`Engine`] for the process; components compiled once and cached on disk; an
//! [`InstancePre`](wasmtime::component::InstancePre) per plugin so that instantiation
//! does no linking; and a fresh [`Store`] per call, so nothing a plugin does in one call
//! can leak into the next. Every call has a wall-clock deadline — epoch interruption
//! stops a guest that spins, a timer stops one that waits on the host — and a memory cap.

pub mod bindings;
mod cache;
mod collect;
mod contract;
pub mod convert;
mod event;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

pub use cache::Origin;
pub use collect::{Collected, SnapshotSink};
pub use contract::Contract;
pub use event::EventSession;

use crate::capability::{self, CallContext, Capabilities};
use bindings::CollectorPluginPre;
use bindings::event_step::EventStepPluginPre;

/// How often the epoch advances; a deadline is rounded up to it.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The data of a plugin call's [`Store`].
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    pub caps: Capabilities,
    /// The snapshot being collected; present during a collector's `collect` only.
    pub snapshot: Option<SnapshotSink>,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Why a plugin call failed. Each fails that call only.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("could not instantiate: {0}")]
    Instantiate(String),
    #[error("trapped: {0}")]
    Trap(String),
    #[error("exceeded its deadline of {0:?}")]
    Deadline(Duration),
    #[error("used up its fuel budget of {0} (limits.fuel)")]
    OutOfFuel(u64),
    #[error("returned an error ({code}): {message}")]
    Plugin {
        code: convert::ErrorCode,
        message: String,
    },
    #[error("produced invalid output: {0}")]
    InvalidOutput(String),
}

/// Limits of one plugin's calls, after defaults and the manifest are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    pub deadline: Duration,
    pub memory_bytes: usize,
    pub max_entities: u64,
    pub max_snapshot_bytes: u64,
    pub max_message_bytes: usize,
    /// Fuel per call; `None`: unmetered, or no budget.
    pub fuel: Option<u64>,
}

/// A plugin's component, linked and ready to instantiate, for each role it implements.
#[derive(Clone)]
pub struct Prepared {
    collector: Option<CollectorPluginPre<PluginState>>,
    event_step: Option<EventStepPluginPre<PluginState>>,
}

impl Prepared {
    pub fn is_collector(&self) -> bool {
        self.collector.is_some()
    }

    pub fn is_event_step(&self) -> bool {
        self.event_step.is_some()
    }
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<PluginState>,
    cache: cache::ComponentCache,
    pooling: bool,
    fuel_metering: bool,
    _ticker: EpochTicker,
}

impl Runtime {
    /// Builds the engine (with the pooling allocator when the machine allows it) and the
    /// linker with every host capability and a denied-by-default WASI; no fuel metering.
    pub fn new(cache_dir: &Path) -> anyhow::Result<Runtime> {
        Runtime::build(cache_dir, false)
    }

    /// The runtime `config` asks for: its cache in the data directory, fuel metering if set.
    pub fn for_config(config: &crate::config::Config) -> anyhow::Result<Runtime> {
        Runtime::build(&config.data_dir.join("cache"), config.fuel_metering)
    }

    fn build(cache_dir: &Path, fuel_metering: bool) -> anyhow::Result<Runtime> {
        let (engine, pooling) = match Engine::new(&engine_config(true, fuel_metering)) {
            Ok(engine) => (engine, true),
            Err(e) => {
                tracing::info!("pooling allocator unavailable ({e}); using on-demand allocation");
                let engine = Engine::new(&engine_config(false, fuel_metering))
                    .map_err(anyhow::Error::from)?;
                (engine, false)
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        capability::add_to_linker(&mut linker).map_err(anyhow::Error::from)?;
        bindings::synchro::plugin::snapshot::add_to_linker::<
            _,
            wasmtime::component::HasSelf<Option<SnapshotSink>>,
        >(&mut linker, |state| &mut state.snapshot)
        .map_err(anyhow::Error::from)?;
        let cache = cache::ComponentCache::new(&engine, cache_dir.to_owned());
        let ticker = EpochTicker::start(engine.clone());
        Ok(Runtime {
            engine,
            linker,
            cache,
            pooling,
            fuel_metering,
            _ticker: ticker,
        })
    }

    /// Whether instances come from the pooling allocator.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// Whether calls count fuel (`limits.fuel` budgets need it).
    pub fn fuel_metering(&self) -> bool {
        self.fuel_metering
    }

    /// Compiles (or loads from the cache) the component in `bytes`.
    pub fn compile(&self, bytes: &[u8]) -> anyhow::Result<(Component, Origin)> {
        // Core modules and components share the magic; the version field tells them apart.
        match bytes.get(..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => anyhow::bail!(
                "this is a core wasm module, not a component; build it for wasm32-wasip2 or wrap it with `wasm-tools component new`"
            ),
            Some([0, b'a', b's', b'm', ..]) => {}
            _ => anyhow::bail!(
                "not a WebAssembly binary (it does not start with the wasm magic bytes)"
            ),
        }
        self.cache.load(&self.engine, bytes)
    }

    /// Links `component` and checks it against the world of each role in `roles`,
    /// saying exactly what does not match.
    pub fn prepare(
        &self,
        component: &Component,
        roles: &[crate::manifest::Role],
    ) -> anyhow::Result<Prepared> {
        let mut names = self.imports(component);
        names.extend(
            component
                .component_type()
                .exports(&self.engine)
                .map(|(name, _)| name.to_owned()),
        );
        match Contract::of_component(names.iter().map(String::as_str))
            .map_err(anyhow::Error::msg)?
        {
            Contract::V0_1 => self.prepare_v0_1(component, roles),
        }
    }

    fn prepare_v0_1(
        &self,
        component: &Component,
        roles: &[crate::manifest::Role],
    ) -> anyhow::Result<Prepared> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(anyhow::Error::from)
            .context("its imports do not match what this host provides")?;
        let mut prepared = Prepared {
            collector: None,
            event_step: None,
        };
        for role in roles {
            match role {
                crate::manifest::Role::Collector => {
                    let collector = CollectorPluginPre::new(pre.clone())
                        .map_err(anyhow::Error::from)
                        .context("it does not export `synchro:plugin/collector@0.1.0` as the collector role requires")?;
                    prepared.collector = Some(collector);
                }
                crate::manifest::Role::EventStep => {
                    let step = EventStepPluginPre::new(pre.clone())
                        .map_err(anyhow::Error::from)
                        .context("it does not export `synchro:plugin/event-step@0.1.0` as the event-step role requires")?;
                    prepared.event_step = Some(step);
                }
                other => anyhow::bail!("role `{}` is not supported by this host yet", other.name()),
            }
        }
        Ok(prepared)
    }

    /// The roles whose export interface `component` has, judged by export names only.
    pub fn exported_roles(&self, component: &Component) -> Vec<crate::manifest::Role> {
        let ty = component.component_type();
        let names: Vec<String> = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        crate::manifest::Role::ALL
            .into_iter()
            .filter(|role| {
                let prefix = format!("synchro:plugin/{}@", role.name());
                names.iter().any(|n| n.starts_with(&prefix))
            })
            .collect()
    }

    /// The imports of `component`, by name.
    pub fn imports(&self, component: &Component) -> Vec<String> {
        let ty = component.component_type();
        ty.imports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect()
    }

    fn store(&self, call: CallContext, snapshot: Option<SnapshotSink>) -> Store<PluginState> {
        let limits = call.limits;
        let wasi = WasiCtxBuilder::new()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = PluginState {
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .trap_on_grow_failure(true)
                .build(),
            caps: Capabilities::new(&call),
            snapshot,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        refuel(&mut store, self.fuel_metering, &limits);
        store.set_epoch_deadline(epoch_ticks(limits.deadline));
        store.epoch_deadline_trap();
        store
    }
}

/// Gives a store the fuel of one call: its budget, or without end.
fn refuel(store: &mut Store<PluginState>, fuel_metering: bool, limits: &CallLimits) {
    if fuel_metering {
        store
            .set_fuel(limits.fuel.unwrap_or(u64::MAX))
            .expect("fuel metering is on");
    }
}

fn epoch_ticks(deadline: Duration) -> u64 {
    deadline.as_millis().div_ceil(EPOCH_TICK.as_millis()) as u64 + 1
}

/// Classifies a wasmtime error from a call: deadline, or another trap. The reason goes
/// on one line; the wasm backtrace only to debug logs.
fn trap(error: wasmtime::Error, limits: &CallLimits) -> CallError {
    match error.downcast_ref::<wasmtime::Trap>().copied() {
        Some(wasmtime::Trap::Interrupt) => CallError::Deadline(limits.deadline),
        Some(wasmtime::Trap::OutOfFuel) => CallError::OutOfFuel(limits.fuel.unwrap_or(0)),
        Some(trap) => {
            tracing::debug!("plugin trap: {:?}", anyhow::Error::from(error));
            CallError::Trap(trap.to_string())
        }
        // A limiter refusal and the like: the root cause names it; the wasm backtrace
        // wrapped around it is for debug logs only.
        None => {
            let error = anyhow::Error::from(error);
            tracing::debug!("plugin trap: {error:?}");
            CallError::Trap(error.root_cause().to_string())
        }
    }
}

fn engine_config(pooling: bool, fuel_metering: bool) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.consume_fuel(fuel_metering);
    // Calls run as fibers on tokio threads; each fiber gets its own stack.
    config.max_wasm_stack(1 << 20);
    config.async_stack_size(2 << 20);
    if pooling {
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(256)
            .total_core_instances(1024)
            .total_memories(512)
            .total_tables(512)
            .total_stacks(256)
            .max_memory_size(4 << 30);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Advances the engine's epoch on a background thread, which is what makes deadlines
/// interrupt a guest that never yields.
struct EpochTicker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> EpochTicker {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("synchro-epoch".into())
            .spawn(move || {
                let mut next = Instant::now();
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    next += EPOCH_TICK;
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
