"""A CUDA simulator for the CPU test suite: run our CUDA code paths without a GPU.

What it is (facts in ``../shared/NOTES-gpu-sim.md``): fake ``cuda`` tensors (``FakeTensorMode``) on
the CPU-only torch build, made possible by a small C++ shim (:mod:`sim.shim`, ``cuda_shim.cpp``)
preloaded into a child process; torch's fake process group to play any rank of a large mesh in one
process; ``MemTracker`` for peaks; counters (:mod:`sim.runtime`) that record which attention ran on
which thread, matmul dtypes and device->host syncs. Tests call :func:`sim.harness.run_case`, which
runs one function of :mod:`sim.cases` in such a child and returns what it measured.

What it cannot know: kernel numerics (no kernel runs: every op is its meta function), which kernel
an sm90 GPU really picks, allocator fragmentation, NCCL/cuBLAS workspaces, real timings, flash-attn.
Those stay the job of ``tests/gpu`` and ``longctx doctor`` on a real GPU.

Never imported by the product: it lives under ``tests/``.
"""
