"""Inside the simulated process: the Python half of the fake CUDA device, and the counters tests read.

:func:`install` must run before anything asks torch about CUDA (the child does it first). It makes
``torch.cuda`` answer for one H100-like device, turns streams and events into no-ops (FSDP2 and our
offload use them), and routes ``F.scaled_dot_product_attention`` on fake ``cuda`` tensors to the
fused op a GPU would pick (a CPU build would take the T x T math path and trace quadratic memory).
"""

from __future__ import annotations

import collections
import contextlib
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

GIB = 2**30
PROPS = SimpleNamespace(name="simulated NVIDIA H100 80GB HBM3", major=9, minor=0, total_memory=80 * GIB,
                        multi_processor_count=132, is_integrated=False, L2_cache_size=50 * 2**20)


_CALLS: collections.Counter = collections.Counter()
"""Stream API calls seen (tests read ``wait_stream``, ``wait_event``, ``stream_switch``, ``record_stream``)."""


class _NoOpStream:
    def __init__(self, *args, **kwargs):
        self.device = torch.device("cuda", 0)

    def synchronize(self):
        _CALLS["stream_synchronize"] += 1

    def wait_stream(self, other):
        _CALLS["wait_stream"] += 1

    def wait_event(self, event):
        _CALLS["wait_event"] += 1

    def record_event(self, event=None):
        return event or _NoOpEvent()

    def query(self):
        return True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _NoOpEvent:
    def __init__(self, *args, **kwargs):
        _CALLS["event"] += 1

    def record(self, stream=None):
        pass

    def wait(self, stream=None):
        pass

    def synchronize(self):
        pass

    def query(self):
        return True


_STREAMS: list = []


def _stream_ctx(stream):
    _STREAMS.append(stream)
    _CALLS["stream_switch"] += 1

    @contextlib.contextmanager
    def ctx():
        yield

    return ctx()


def install() -> None:
    """Make ``torch.cuda`` describe one simulated sm90 device (call before any CUDA query)."""
    c = torch.cuda
    c.is_available = lambda: True
    c.device_count = lambda: 1
    c.current_device = lambda: 0
    c.set_device = lambda device: None
    c.synchronize = lambda device=None: None
    c.is_bf16_supported = lambda including_emulation=True: True
    c.get_device_capability = lambda device=None: (PROPS.major, PROPS.minor)
    c.get_device_properties = lambda device=None: PROPS
    c.get_device_name = lambda device=None: PROPS.name
    c.mem_get_info = lambda device=None: (PROPS.total_memory, PROPS.total_memory)
    c.Stream = _NoOpStream
    c.Event = _NoOpEvent
    c.current_stream = lambda device=None: _NoOpStream()
    c.default_stream = lambda device=None: _NoOpStream()
    c.stream = _stream_ctx
    c._lazy_init = lambda: None
    torch.Tensor.record_stream = lambda self, stream: _CALLS.update(["record_stream"])
    c.is_initialized = lambda: True
    _route_sdpa()


_SDPA = torch.nn.functional.scaled_dot_product_attention


def _route_sdpa() -> None:
    """SDPA on fake cuda tensors -> the efficient op (O(T) memory, as a GPU's fused kernels)."""

    def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if query.device.type != "cuda" or attn_mask is not None:
            return _SDPA(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                         scale=scale, enable_gqa=enable_gqa)
        if enable_gqa and key.shape[1] != query.shape[1]:
            rep = query.shape[1] // key.shape[1]
            key, value = key.repeat_interleave(rep, 1), value.repeat_interleave(rep, 1)
        return _EfficientSDPA.apply(query, key, value, is_causal, scale)

    torch.nn.functional.scaled_dot_product_attention = sdpa


class _EfficientSDPA(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal, scale):
        out, lse, seed, offset = torch.ops.aten._scaled_dot_product_efficient_attention(
            q, k, v, None, True, 0.0, causal, scale=scale)[:4]
        ctx.save_for_backward(q, k, v, out, lse, seed, offset)
        ctx.causal, ctx.scale = causal, scale
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse, seed, offset = ctx.saved_tensors
        dq, dk, dv, _ = torch.ops.aten._scaled_dot_product_efficient_attention_backward(
            dout, q, k, v, None, out, lse, seed, offset, 0.0, [True, True, True, False], ctx.causal, scale=ctx.scale)
        return dq, dk, dv, None, None


# ---------------------------------------------------------------- counters

MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default,
           torch.ops.aten.baddbmm.default}


@dataclass
class Counters:
    """What the ops did: matmul dtypes (forward/backward alike), device->host syncs, host->device copies."""

    matmul_dtypes: collections.Counter = field(default_factory=collections.Counter)
    syncs: list = field(default_factory=list)
    h2d: int = 0
    d2h_async: int = 0

    def as_dict(self) -> dict:
        return {"matmul_dtypes": {str(k).replace("torch.", ""): v for k, v in self.matmul_dtypes.items()},
                "syncs": len(self.syncs), "sync_ops": collections.Counter(self.syncs), "h2d": self.h2d,
                "d2h_async": self.d2h_async, "stream_calls": dict(_CALLS)}


def _is_cuda(x) -> bool:
    return isinstance(x, torch.Tensor) and x.device.type == "cuda"


_HOST_VALUE = {torch.bool: True}


def _host_only(args, kwargs) -> bool:
    """No fake tensor among the inputs and nothing asked of the device: a real host op."""
    from torch.utils._pytree import tree_leaves

    for x in tree_leaves((args, kwargs)):
        if isinstance(x, torch.Tensor) and (_is_fake(x) or x.device.type != "cpu"):
            return False
        if isinstance(x, torch.device) and x.type != "cpu" or isinstance(x, str) and x.startswith("cuda"):
            return False
    return True


def _is_fake(x) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor

    return isinstance(x, FakeTensor)


class CountingMode(TorchDispatchMode):
    """Counts as ops pass through (enter it INSIDE ``fake``, so it sees each op first).

    A real host tensor copied to the device (a batch, a boundary table) becomes a fake one first:
    FakeTensorMode would otherwise constant-fold the copy and run a real CUDA op."""

    def __init__(self, counters: Counters, fake=None):
        super().__init__()
        self.c = counters
        self.fake = fake

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.fake is not None and _host_only(args, kwargs):  # the host stays real: batches, boundaries, counts
            with _disable_current_modes():
                return func(*args, **kwargs)
        if func is torch.ops.aten._local_scalar_dense.default and _is_cuda(args[0]):
            self.c.syncs.append("item")
            return _HOST_VALUE.get(args[0].dtype, 1)  # a sync: the simulated device answers a plausible 1
        if self.fake is None:
            pass
        elif func is torch.ops.aten._to_copy.default and not _is_fake(args[0]):
            args = (self.fake.from_tensor(args[0]),) + tuple(args[1:])
        elif func is torch.ops.aten.copy_.default and _is_fake(args[0]) and not _is_fake(args[1]):
            args = (args[0], self.fake.from_tensor(args[1])) + tuple(args[2:])
        if func in MATMULS:
            self.c.matmul_dtypes[args[-2].dtype if func in (torch.ops.aten.addmm.default, torch.ops.aten.baddbmm.default)
                                 else args[0].dtype] += 1
        elif func in (torch.ops.aten.nonzero.default, torch.ops.aten._unique2.default) and _is_cuda(args[0]):
            self.c.syncs.append(str(func.overloadpacket.__name__))
        elif func is torch.ops.aten._to_copy.default:
            src, dst = args[0].device.type, str(kwargs.get("device", args[0].device))
            if src == "cuda" and dst.startswith("cpu"):
                self.c.syncs.append("to_cpu")
            elif src == "cpu" and dst.startswith("cuda"):
                self.c.h2d += 1
        elif func is torch.ops.aten.copy_.default:
            dst, src = args[0], args[1]
            non_blocking = bool(args[2]) if len(args) > 2 else bool(kwargs.get("non_blocking", False))
            if _is_cuda(src) and dst.device.type == "cpu" and non_blocking:
                self.c.d2h_async += 1  # into pinned memory: no sync
            elif _is_cuda(src) and dst.device.type == "cpu":
                self.c.syncs.append("copy_to_cpu")
            elif src.device.type == "cpu" and _is_cuda(dst):
                self.c.h2d += 1
        return func(*args, **kwargs)


@dataclass
class CallLog:
    """Calls of wrapped functions: (label, thread name, extra) in call order."""

    calls: list = field(default_factory=list)

    def wrap(self, module, name: str, label: str | None = None, extra=None):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            self.calls.append((label or name, threading.current_thread().name, extra(*args, **kwargs) if extra else None))
            return original(*args, **kwargs)

        setattr(module, name, wrapper)
        return original


class _DeviceFactories(torch.overrides.TorchFunctionMode):
    """``torch.tensor(data, device="cuda")`` builds on the host and copies (the constructor itself
    allocates outside the dispatcher, where a CPU build has no CUDA allocator)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.tensor, torch.as_tensor) and "cuda" in str(kwargs.get("device", "")):
            device = kwargs.pop("device")
            return func(*args, **kwargs).to(device)
        return func(*args, **kwargs)


@contextlib.contextmanager
def simulate(fake, counters: Counters):
    """Run the enclosed code on the simulated device: fake CUDA, real host, counted."""
    with fake, _DeviceFactories(), CountingMode(counters, fake):
        yield counters


@contextlib.contextmanager
def module_moves_onto(fake):
    """``nn.Module.to("cuda")`` on the simulated device: parameters and buffers already fake ``cuda`` ones (of the
    asked dtype) stay, the same objects (``nn.Module._apply`` cannot swap a fake parameter: fake mode holds a
    weak reference to it); real host ones become fake ``cuda`` ones. What a library does to a model already on
    the GPU, e.g. PEFT moving each new LoRA layer (its base layer and the adapters it made on the host) to its
    base weight's device."""
    original = torch.nn.Module.to

    def to(self, *args, **kwargs):
        device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        if device is None or device.type != "cuda":
            return original(self, *args, **kwargs)

        def moved(t: torch.Tensor) -> torch.Tensor:
            cast = dtype if dtype is not None and t.is_floating_point() else t.dtype
            return t.to(cast) if _is_fake(t) else fake.from_tensor(t.detach()).to("cuda", cast)

        for module in self.modules():
            for name, p in list(module.named_parameters(recurse=False)):
                if not (_is_fake(p) and p.dtype == moved(p).dtype):
                    setattr(module, name, torch.nn.Parameter(moved(p), requires_grad=p.requires_grad))
            for name, b in list(module.named_buffers(recurse=False)):
                if not _is_fake(b):
                    module.register_buffer(name, moved(b), persistent=name not in module._non_persistent_buffers_set)
        return self

    torch.nn.Module.to = to
    try:
        yield
    finally:
        torch.nn.Module.to = original


def to_fake_cuda(model: torch.nn.Module, fake) -> torch.nn.Module:
    """Replace every parameter and buffer of a real (CPU) or ``meta`` model by a fake ``cuda`` one of the same
    dtype (call inside ``fake``; a meta tensor, having no values, becomes zeros)."""

    def moved(t: torch.Tensor) -> torch.Tensor:
        if t.is_meta:
            return torch.zeros(t.shape, dtype=t.dtype, device="cuda")
        return fake.from_tensor(t.detach()).to("cuda")

    for module in model.modules():
        for name, p in list(module.named_parameters(recurse=False)):
            setattr(module, name, torch.nn.Parameter(moved(p), requires_grad=p.requires_grad))
        for name, b in list(module.named_buffers(recurse=False)):
            persistent = name not in module._non_persistent_buffers_set
            module.register_buffer(name, moved(b), persistent=persistent)
    return model
