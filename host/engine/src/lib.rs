//! The WebAssembly engine: the only crate that depends on wasmtime (the bindings and
//! the roles name it through the re-export below).
//!
//! One [`Engine`] for the process; components compiled once and cached on disk; an
//! [`InstancePre`](wasmtime::component::InstancePre) per plugin so that instantiation
//! does no linking; and a fresh [`Store`] per call, so nothing a plugin does in one call
//! can leak into the next. Every call has a wall-clock deadline — epoch interruption
//! stops a guest that spins, a timer stops one that waits on the host — and a memory cap.

mod cache;
mod contract;
mod memory;
mod output;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use synchro_manifest::Limits;
use synchro_model::ErrorKind;
use wasmtime::component::{Component, InstancePre, Linker, ResourceTable};
use wasmtime::{Config, Store, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

pub use cache::Origin;
pub use contract::Contract;
pub use output::GuestOutput;
use output::Stream;
/// For the bindings generated over the WIT (`wasmtime_crate`) and the roles' calls: the
/// crates above name wasmtime only through this.
pub use wasmtime;

/// How often the epoch advances; a deadline is rounded up to it.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The data of one plugin call's [`Store`]: WASI (linked, and denied everything), the
/// memory limiter, and `C`, the per-call state of the host's capabilities.
pub struct CallState<C> {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: memory::Limiter,
    pub caps: C,
}

impl<C> CallState<C> {
    /// Bytes of linear memory the store's instance holds.
    pub fn memory_bytes(&self) -> usize {
        self.limits.bytes()
    }
}

impl<C: Send> WasiView for CallState<C> {
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
    #[error("returned an error ({kind}): {message}")]
    Plugin { kind: ErrorKind, message: String },
    #[error("produced invalid output: {0}")]
    InvalidOutput(String),
}

impl CallError {
    /// Whether retrying as is cannot help, until an operator acts: the plugin was denied
    /// what it asked for (its grants), or cannot be instantiated (its limits).
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            CallError::Instantiate(_)
                | CallError::Plugin {
                    kind: ErrorKind::Denied,
                    ..
                }
        )
    }

    /// Classifies a wasmtime error from a call: deadline, fuel, or another trap. The
    /// reason goes on one line; the wasm backtrace only to debug logs.
    pub fn from_trap(error: wasmtime::Error, limits: &Limits) -> CallError {
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
}

/// The WebAssembly engine of the host, generic over `C`, the per-call state of the
/// capabilities that `register` links (so that this crate knows none of them).
pub struct Engine<C: 'static> {
    engine: wasmtime::Engine,
    linker: Linker<CallState<C>>,
    cache: Option<cache::ComponentCache>,
    pooling: bool,
    fuel_metering: bool,
    _ticker: EpochTicker,
}

impl<C: Send + 'static> Engine<C> {
    /// Builds the engine (with the pooling allocator when the machine allows it), its
    /// component cache in `cache_dir` (none: every load compiles), and a linker with a
    /// denied-by-default WASI plus whatever `register` adds. Fuel is counted only with
    /// `fuel_metering`.
    pub fn new(
        cache_dir: Option<&Path>,
        fuel_metering: bool,
        register: impl FnOnce(&mut Linker<CallState<C>>) -> wasmtime::Result<()>,
    ) -> anyhow::Result<Engine<C>> {
        let (engine, pooling) = match wasmtime::Engine::new(&engine_config(true, fuel_metering)) {
            Ok(engine) => (engine, true),
            Err(e) => {
                tracing::info!("pooling allocator unavailable ({e}); using on-demand allocation");
                let engine = wasmtime::Engine::new(&engine_config(false, fuel_metering))
                    .map_err(anyhow::Error::from)?;
                (engine, false)
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        register(&mut linker).map_err(anyhow::Error::from)?;
        let cache = cache_dir.map(|dir| cache::ComponentCache::new(&engine, dir.to_owned()));
        let ticker = EpochTicker::start(engine.clone());
        Ok(Engine {
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
        match &self.cache {
            Some(cache) => cache.load(&self.engine, bytes, || self.precompile(bytes)),
            None => {
                let compiled = self.precompile(bytes)?;
                // SAFETY: compiled just now, by an engine configured as this one.
                let component = unsafe { Component::deserialize(&self.engine, &compiled) };
                Ok((component.map_err(anyhow::Error::from)?, Origin::Compiled))
            }
        }
    }

    /// Compiles `bytes` with an engine of its own, configured as this one and dropped
    /// afterwards. An engine keeps Cranelift's working memory for its next compile: after
    /// a few large components (Python and JavaScript plugins), tens of megabytes the host
    /// would hold for as long as it runs.
    fn precompile(&self, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
        let compiler = wasmtime::Engine::new(&engine_config(false, self.fuel_metering))
            .map_err(anyhow::Error::from)?;
        compiler
            .precompile_component(bytes)
            .map_err(anyhow::Error::from)
    }

    /// Checks that `component` speaks a `synchro:plugin` series this host supports and
    /// links its imports, saying exactly what does not match.
    pub fn link(&self, component: &Component) -> anyhow::Result<InstancePre<CallState<C>>> {
        let mut names = self.imports(component);
        names.extend(self.exports(component));
        match Contract::of_component(names.iter().map(String::as_str))
            .map_err(anyhow::Error::msg)?
        {
            Contract::V0_2 => self
                .linker
                .instantiate_pre(component)
                .map_err(anyhow::Error::from)
                .context("its imports do not match what this host provides"),
        }
    }

    /// The exports of `component`, by name.
    pub fn exports(&self, component: &Component) -> Vec<String> {
        let ty = component.component_type();
        ty.exports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect()
    }

    /// The imports of `component`, by name.
    pub fn imports(&self, component: &Component) -> Vec<String> {
        let ty = component.component_type();
        ty.imports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect()
    }

    /// A fresh store for one call (or a session of calls) under `limits`, with `caps` as
    /// the capabilities' state and the guest's stdout and stderr going to `output`, armed
    /// for its first call.
    pub fn store(&self, caps: C, limits: &Limits, output: &GuestOutput) -> Store<CallState<C>> {
        let wasi = WasiCtxBuilder::new()
            .stdout(output.stream(Stream::Stdout))
            .stderr(output.stream(Stream::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = CallState {
            wasi,
            table: ResourceTable::new(),
            limits: memory::Limiter::new(
                StoreLimitsBuilder::new()
                    .memory_size(limits.memory_bytes())
                    .trap_on_grow_failure(true)
                    .build(),
            ),
            caps,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_trap();
        self.arm(&mut store, limits);
        store
    }

    /// Gives `store` the fuel and the deadline of one more call.
    pub fn arm(&self, store: &mut Store<CallState<C>>, limits: &Limits) {
        if self.fuel_metering {
            store
                .set_fuel(limits.fuel.unwrap_or(u64::MAX))
                .expect("fuel metering is on");
        }
        store.set_epoch_deadline(epoch_ticks(limits.deadline));
    }
}

fn epoch_ticks(deadline: Duration) -> u64 {
    deadline.as_millis().div_ceil(EPOCH_TICK.as_millis()) as u64 + 1
}

fn engine_config(pooling: bool, fuel_metering: bool) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.consume_fuel(fuel_metering);
    // Calls run as fibers on tokio threads; each fiber gets its own stack.
    config.max_wasm_stack(1 << 20);
    config.async_stack_size(2 << 20);
    // The contract has no async functions, streams or futures, and a call through
    // wasmtime's concurrent machinery (a guest task per call, its state in the store)
    // costs a few microseconds more than a plain call on a fiber: a third of an event
    // step's time per event.
    config.concurrency_support(false);
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
    fn start(engine: wasmtime::Engine) -> EpochTicker {
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
