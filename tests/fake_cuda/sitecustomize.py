"""Pretend to be a one-GPU host on a CPU-only machine (tests only; active with ASPECTS_FAKE_CUDA=1).

CI has no GPU, yet the CUDA branch must run somewhere: this module, put first on PYTHONPATH of an
app subprocess, patches torch so that it reports one CUDA device and every ``cuda`` placement
(``Tensor.to``, ``Module.to``, ``jit.load(map_location=...)``) stays on the CPU. Each placement and
cache release is appended to ``$ASPECTS_FAKE_CUDA_LOG`` (JSON lines), so a test can prove that the
app took the CUDA branch rather than silently running on the CPU.
"""

import json
import os

if os.environ.get("ASPECTS_FAKE_CUDA") == "1":
    import torch

    _LOG = os.environ.get("ASPECTS_FAKE_CUDA_LOG")

    def _record(event: str, **kw) -> None:
        if _LOG:
            with open(_LOG, "a") as f:
                f.write(json.dumps({"event": event, **kw}) + "\n")

    def _is_cuda(dev) -> bool:
        return isinstance(dev, (str, torch.device)) and str(dev).startswith("cuda")

    def _cpu_args(what: str, args, kwargs):
        args = list(args)
        for i, a in enumerate(args):
            if _is_cuda(a):
                _record(what, device=str(a))
                args[i] = "cpu"
        if _is_cuda(kwargs.get("device")):
            _record(what, device=str(kwargs["device"]))
            kwargs["device"] = "cpu"
        return args, kwargs

    _tensor_to, _module_to, _jit_load = torch.Tensor.to, torch.nn.Module.to, torch.jit.load

    def _fake_tensor_to(self, *args, **kwargs):
        args, kwargs = _cpu_args("tensor_to", args, kwargs)
        return _tensor_to(self, *args, **kwargs)

    def _fake_module_to(self, *args, **kwargs):
        args, kwargs = _cpu_args("module_to", args, kwargs)
        return _module_to(self, *args, **kwargs)

    def _fake_jit_load(f, map_location=None, *args, **kwargs):
        if _is_cuda(map_location):
            _record("jit_load", device=str(map_location))
            map_location = "cpu"
        return _jit_load(f, map_location, *args, **kwargs)

    torch.Tensor.to = _fake_tensor_to
    torch.nn.Module.to = _fake_module_to
    torch.jit.load = _fake_jit_load
    torch.cuda.is_available = lambda: True
    torch.cuda.device_count = lambda: 1
    torch.cuda.current_device = lambda: 0
    torch.cuda.get_device_name = lambda device=None: "fake GPU (tests/fake_cuda)"
    torch.cuda.synchronize = lambda device=None: None
    torch.cuda.memory_allocated = lambda device=None: 0
    torch.cuda.max_memory_allocated = lambda device=None: 0
    torch.cuda.reset_peak_memory_stats = lambda device=None: _record("reset_peak_memory_stats")
    torch.cuda.empty_cache = lambda: _record("empty_cache")
