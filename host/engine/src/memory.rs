//! The store's limiter: wasmtime's [`StoreLimits`] (the memory cap of the plugin's
//! `limits.memory-mb`), counting the linear memory the instance holds on the way, for
//! the plugin's status and metrics.

use wasmtime::{ResourceLimiter, StoreLimits};

pub(crate) struct Limiter {
    limits: StoreLimits,
    /// Bytes of linear memory granted to the store's instance, all its memories together.
    bytes: usize,
}

impl Limiter {
    pub(crate) fn new(limits: StoreLimits) -> Limiter {
        Limiter { limits, bytes: 0 }
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let granted = self.limits.memory_growing(current, desired, maximum)?;
        if granted {
            self.bytes += desired.saturating_sub(current);
        }
        Ok(granted)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}
