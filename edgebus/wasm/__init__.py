"""WebAssembly pods: modules run by wasmtime, one worker process per container.

* :mod:`edgebus.wasm.worker` - the worker process: loads one module, gives it WASI
  (argv, env, preopened directories), writes its stdout/stderr as CRI log records and its
  exit into a status file; enforces the memory limit (wasmtime's store limit) and the CPU
  limit (epoch interruption driven by the CPU time the module used);
* :mod:`edgebus.wasm.runtime` - :class:`WasmRuntime`, the CRI-shaped runtime edged
  drives beside containerd: sandboxes and containers as records on disk, answered with
  the same CRI messages, workers started and stopped by process id;
* :mod:`edgebus.wasm.modules` - the module store: OCI artifacts holding a single
  ``.wasm`` layer (the Wasm OCI conventions), imported from image archives.

Only this package imports ``wasmtime`` (and only the worker does, so edged itself never
loads it).
"""
