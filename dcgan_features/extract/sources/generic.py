"""Any ``nn.Module`` as a feature source: ``torchvision:NAME`` and ``python:MODULE:CALLABLE``.

The paper's protocol applied to someone else's network: chosen layers' outputs, each
max-pooled to the grid inside its forward hook, concatenated. Layers are found from one
traced forward at the dataset's input size (:func:`trace`, which ``--list-layers`` prints):

* ``--layer all``: every ``Conv2d``, each taken after the activation called right after it
  (norm layers in between allowed: conv -> BN -> ReLU gives the ReLU's output), or the
  conv's own output where no activation follows;
* ``--layer NAMES``: module names or globs (``layer1,layer2.*.conv2``); a module called
  more than once in a forward (torchvision's ResNet blocks reuse one ReLU) gives its last call.

Every chosen output must be a 4-d map at least ``grid x grid``. Images are fed at
``--image-size`` (default 32) and ``--normalize`` (minus1to1, imagenet or unit). Weights
(``--weights FILE``, a state dict) load with ``weights_only=True``: never code from the file.

>>> src = torchvision_source("resnet18", SourceOptions(image_size=32))
>>> plan = src.plan("layer1.*.conv2,layer2.0.conv1", 2, "running")
>>> plan.layers, plan.layer_dims
(['layer1.0.conv2', 'layer1.1.conv2', 'layer2.0.conv1'], [256, 256, 512])
>>> len(src.plan("all", 1, "running").layers)  # 20 convs, downsample shortcuts included
20
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from ...core.errors import UserError
from ..hooks import BN_MODES, batchnorms, grid_max_pool, layer_items, set_extraction_modes
from .base import NORMALIZE, FeatureSource, Plan, PrepareContext, SourceOptions, file_sha256, recompute_bn_once, \
    text_sha256

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm,
          nn.LocalResponseNorm)
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
                nn.Hardswish, nn.Hardtanh, nn.Tanh, nn.Sigmoid, nn.Softplus)


def normalize(x: torch.Tensor, how: str) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float input: ``minus1to1`` (as our D), ``imagenet`` (mean/std), ``unit`` ([0, 1])."""
    x = x.float()
    if how == "minus1to1":
        return x.div_(127.5).sub_(1.0)
    x = x.div_(255.0)
    if how == "imagenet":
        mean = torch.tensor(_IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(_IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        x = x.sub_(mean).div_(std)
    return x


@dataclass(frozen=True)
class Call:
    """One module call of the traced forward: its name, type, output shape and call number."""

    name: str
    type: str
    shape: tuple | None  # None: the output is not a tensor
    index: int  # 0 for the module's first call in a forward, 1 for its second, ...
    leaf: bool
    module: nn.Module


def trace(model: nn.Module, image_size: int, how: str, spec: str = "model") -> list[Call]:
    """Every module call of one eval-mode forward of a (2, 3, S, S) input, in the order calls start."""
    calls: list[list] = []
    counts: dict[int, int] = {}
    handles = []
    for name, m in model.named_modules():
        if not name:
            continue

        def pre(mod, args, name=name):
            i = counts.get(id(mod), 0)
            counts[id(mod)] = i + 1
            calls.append([name, mod, i, None])
            mod._trace_slot = len(calls) - 1

        def post(mod, args, out):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
            calls[mod._trace_slot][3] = shape

        handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    restore = set_extraction_modes(model, "running")
    try:
        with torch.no_grad():
            model(normalize(torch.zeros((2, 3, image_size, image_size), dtype=torch.uint8), how))
    except Exception as e:  # noqa: BLE001 - whatever the user's model raises, reported on one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"--model {spec} fails on a 3x{image_size}x{image_size} input ({type(e).__name__}: "
                        f"{first[:200]}); try another --image-size") from None
    finally:
        for h in handles:
            h.remove()
        for _, m in model.named_modules():
            m.__dict__.pop("_trace_slot", None)
        restore()
    return [Call(n, type(m).__name__, s, i, not any(True for _ in m.children()), m) for n, m, i, s in calls]


def conv_features(calls: list[Call]) -> list[tuple[str, Call]]:
    """``--layer all``: (conv name, the call whose output is taken) for every Conv2d call."""
    leaves = [c for c in calls if c.leaf]
    out = []
    for i, c in enumerate(leaves):
        if not isinstance(c.module, nn.Conv2d):
            continue
        take = c
        for nxt in leaves[i + 1:]:
            if isinstance(nxt.module, _NORMS):
                continue
            if isinstance(nxt.module, _ACTIVATIONS) and nxt.shape == c.shape:
                take = nxt
            break
        out.append((c.name, take))
    return out


def named_features(calls: list[Call], spec: str) -> list[tuple[str, Call]]:
    """``--layer NAMES``: names or globs -> (name, last call of that module), in forward order."""
    names = list(dict.fromkeys(c.name for c in calls))
    chosen: set[str] = set()
    for item in layer_items(spec, "all or module names/globs (see --list-layers)"):
        hits = [n for n in names if fnmatch.fnmatchcase(n, item)]
        if not hits:
            near = difflib.get_close_matches(item, names, n=4, cutoff=0.4) or names[:4]
            raise UserError(f"--layer {item!r} matches no module of the model; nearest: {', '.join(near)} "
                            f"(see --list-layers)")
        chosen.update(hits)
    if not chosen:
        raise UserError("no layer given; use all or module names/globs (see --list-layers)")
    last = {c.name: c for c in calls}  # later calls overwrite earlier ones
    return sorted(((n, last[n]) for n in chosen), key=lambda nc: calls.index(nc[1]))


class _CallHook:
    """Pools the output of chosen calls of one module into ``out`` (set per batch)."""

    def __init__(self, grid: int):
        self.grid, self.slots, self.count = grid, {}, 0
        self.out: torch.Tensor | None = None
        self.stop_after: int | None = None

    def __call__(self, module, args, output) -> None:
        i, self.count = self.count, self.count + 1
        if self.out is None or i not in self.slots:
            return
        lo, dim = self.slots[i]
        self.out[:, lo:lo + dim].copy_(grid_max_pool(output, self.grid).flatten(1))
        if self.stop_after == i:
            raise _Done


class _Done(Exception):
    """Raised by the hook of the last chosen output: the rest of the forward is not needed."""


class ModuleSource(FeatureSource):
    """A module whose chosen layers' outputs are the features."""

    width = 0

    def __init__(self, module: nn.Module, spec: str, sha256: str, image_size: int, how: str):
        if how not in NORMALIZE:
            raise UserError(f"--normalize must be one of {', '.join(NORMALIZE)}, got {how!r}")
        self.module, self.spec, self.architecture, self.sha256 = module, spec, spec, sha256
        self.image_size, self.normalize = int(image_size), how
        self.calls = trace(module, self.image_size, how, spec)
        self._chosen: list[tuple[str, Call]] = []

    def plan(self, layers: str, grid: int, bn: str) -> Plan:
        if bn not in BN_MODES:
            raise UserError(f"unknown bn mode {bn!r}; choose one of {', '.join(BN_MODES)}")
        if grid < 1:
            raise UserError(f"grid must be at least 1, got {grid}")
        every = layers.strip() == "all"
        chosen = conv_features(self.calls) if every else named_features(self.calls, layers)
        if not chosen:
            raise UserError(f"--model {self.spec} has no Conv2d layer for --layer all; name layers (see --list-layers)")
        skipped = []
        if every:  # all = the conv outputs at least grid x grid at this input size; the rest are said
            wide = [(n, c) for n, c in chosen if c.shape is not None and len(c.shape) == 4 and min(c.shape[2:]) >= grid]
            keep = {n for n, _ in wide}
            skipped = [n for n, _ in chosen if n not in keep]
            if not wide:
                raise UserError(f"--layer all: no conv layer of --model {self.spec} outputs a map at least {grid}x"
                                f"{grid} at --image-size {self.image_size}; lower --grid or raise --image-size")
            chosen = wide
        dims = []
        for name, c in chosen:
            if c.shape is None or len(c.shape) != 4:
                raise UserError(f"layer {name} outputs {'a non-tensor' if c.shape is None else tuple(c.shape)}, "
                                f"not a 4-d (N, C, H, W) map; choose conv layers or blocks (see --list-layers)")
            if grid > min(c.shape[2:]):
                raise UserError(f"grid {grid} is larger than layer {name}'s {c.shape[2]}x{c.shape[3]} output at "
                                f"--image-size {self.image_size}; use --grid {min(c.shape[2:])} or leave {name} out")
            dims.append(c.shape[1] * grid * grid)
        self._chosen = chosen
        has_bn = bool(batchnorms(self.module))
        return Plan([n for n, _ in chosen], dims, bn if has_bn else "none", skipped=skipped)

    def default_bn(self) -> str | None:
        """``running`` when the model holds running statistics of its own (loaded weights), else None."""
        for m in batchnorms(self.module):
            mean, var = getattr(m, "running_mean", None), getattr(m, "running_var", None)
            if mean is not None and var is not None and (bool(mean.ne(0).any()) or bool(var.ne(1).any())):
                return "running"
        return None

    def work_size(self) -> int:
        from ...core.threads import model_size

        return model_size(self.module)

    def to(self, device: torch.device) -> "ModuleSource":
        self.module.to(device)
        return self

    def prepare(self, plan: Plan, ctx: PrepareContext) -> None:
        recompute_bn_once(self.module, plan, ctx, lambda x: normalize(x, self.normalize), forward=self.module)

    @contextlib.contextmanager
    def extractor(self, plan: Plan, grid: int, dtype: torch.dtype) -> Iterator:
        hooks: dict[int, tuple[nn.Module, _CallHook]] = {}
        lo = 0
        for (name, call), dim in zip(self._chosen, plan.layer_dims):
            m, h = hooks.setdefault(id(call.module), (call.module, _CallHook(grid)))
            h.slots[call.index] = (lo, dim)
            lo += dim
        last = self._chosen[-1][1]
        hooks[id(last.module)][1].stop_after = last.index
        restore = set_extraction_modes(self.module, "batch" if plan.bn_mode == "batch" else "running")
        handles = [m.register_forward_hook(h) for m, h in hooks.values()]

        @torch.no_grad()
        def run(x: torch.Tensor) -> torch.Tensor:
            out = torch.empty((x.shape[0], plan.dim), dtype=dtype, device=x.device)
            for _, h in hooks.values():
                h.out, h.count = out, 0
            try:
                self.module(normalize(x, self.normalize))
            except _Done:
                pass
            finally:
                for _, h in hooks.values():
                    h.out = None
            return out

        try:
            yield run
        finally:
            for hd in handles:
                hd.remove()
            restore()


# ------------------------------------------------------------------------- building


def load_weights(module: nn.Module, path: str) -> None:
    """Load a state dict file (``weights_only``) into ``module``; the first mismatch is one line."""
    import pickle

    if not os.path.isfile(path):
        raise UserError(f"--weights {path}: no such file")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"--weights {path} is not a loadable state dict (weights_only: tensors and plain "
                        f"containers only): {first[:160]}") from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UserError(f"--weights {path} does not hold a state dict (a mapping of names to tensors)")
    own = module.state_dict()
    for k, v in own.items():
        if k not in sd:
            raise UserError(f"--weights {path} do not match the model: first mismatched key {k!r} is missing "
                            f"from the file")
        if tuple(sd[k].shape) != tuple(v.shape):
            raise UserError(f"--weights {path} do not match the model: first mismatched key {k!r} has shape "
                            f"{tuple(sd[k].shape)} in the file, {tuple(v.shape)} in the model")
    extra = [k for k in sd if k not in own]
    if extra:
        raise UserError(f"--weights {path} do not match the model: first mismatched key {extra[0]!r} is not "
                        f"in the model")
    module.load_state_dict(sd)


def _finish(module: nn.Module, spec: str, opts: SourceOptions, default_norm: str, origin: str) -> ModuleSource:
    if opts.weights:
        load_weights(module, opts.weights)
        sha = file_sha256(opts.weights)
    else:
        sha = text_sha256(f"{origin}:random-init:{opts.seed}")
    return ModuleSource(module, spec, sha, opts.image_size or 32, opts.normalize or default_norm)


def _seeded(build, seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def torchvision_source(name: str, opts: SourceOptions) -> ModuleSource:
    """A torchvision model by name, random-init (``opts.seed``) or ``opts.weights``; ImageNet normalisation."""
    import torchvision

    names = torchvision.models.list_models()
    if name not in names:
        near = difflib.get_close_matches(name, names, n=4, cutoff=0.5)
        raise UserError(f"unknown torchvision model {name!r}" + (f"; nearest: {', '.join(near)}" if near else
                                                                  "; see torchvision.models.list_models()"))
    module = _seeded(lambda: torchvision.models.get_model(name, weights=None), opts.seed)
    if opts.weights and not os.path.exists(opts.weights) and named_weights(opts.weights):
        path = hub_weights(name, opts.weights)
        load_weights(module, str(path))
        return ModuleSource(module, f"torchvision:{name}", file_sha256(str(path)), opts.image_size or 32,
                            opts.normalize or "imagenet")
    return _finish(module, f"torchvision:{name}", opts, "imagenet", f"torchvision:{name}")


def named_weights(text: str) -> bool:
    """``IMAGENET1K_V1`` or ``DEFAULT``: a torchvision weights name rather than a file.

    >>> named_weights("IMAGENET1K_V1"), named_weights("w.pt"), named_weights("runs/w")
    (True, False, False)
    """
    return text.replace("_", "").isalnum() and text.upper() == text


def hub_weights(model: str, weights: str) -> Path:
    """The file of torchvision's named ``weights`` for ``model`` in torch's hub cache (never downloaded
    here: the network is the user's to use). A missing file is one line naming the URL and the path."""
    import torch.hub
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(model)
    except (ValueError, KeyError):
        raise UserError(f"torchvision model {model!r} has no named weights; pass --weights FILE (a state dict)") \
            from None
    try:
        entry = enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except KeyError:
        raise UserError(f"--weights {weights}: {model} has {', '.join(w.name for w in enum)}") from None
    url = entry.url
    path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if not path.is_file():
        raise UserError(f"--weights {weights}: {path} is not in torch's hub cache; fetch it (no download here): "
                        f"curl -L --create-dirs -o {path} {url}")
    return path


def _import(module_ref: str):
    is_path = module_ref.endswith(".py") or os.sep in module_ref
    try:
        if not is_path:
            return importlib.import_module(module_ref)
        path = Path(module_ref)
        if not path.is_file():
            raise UserError(f"--model python:{module_ref}:...: no such file")
        name = f"dcgan_features_user_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        return mod
    except UserError:
        raise
    except BaseException as e:  # noqa: BLE001 - the user's module may raise anything while importing
        if isinstance(e, KeyboardInterrupt):
            raise
        first = (str(e).strip().splitlines() or [""])[0]
        raise UserError(f"cannot import {module_ref}: {type(e).__name__}: {first[:200]}") from None


def python_source(arg: str, opts: SourceOptions) -> ModuleSource:
    """``MODULE:CALLABLE``: MODULE importable or a path to a .py file; CALLABLE() returns the nn.Module."""
    module_ref, sep, attr = arg.rpartition(":")
    if not sep or not module_ref or not attr:
        raise UserError(f"--model python:{arg}: write python:MODULE:CALLABLE (MODULE importable or a .py path)")
    mod = _import(module_ref)
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise UserError(f"{module_ref} has no callable {attr!r}")
    try:
        model = _seeded(fn, opts.seed)
    except Exception as e:  # noqa: BLE001
        first = (str(e).strip().splitlines() or [""])[0]
        raise UserError(f"{module_ref}:{attr}() failed: {type(e).__name__}: {first[:200]}") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"{module_ref}:{attr}() returned {type(model).__name__}, not an nn.Module")
    origin = f"python:{file_sha256(module_ref) if os.path.isfile(module_ref) else module_ref}:{attr}"
    return _finish(model, f"python:{arg}", opts, "minus1to1", origin)


def list_layers(source: FeatureSource) -> list[tuple[str, str, str]]:
    """(name, type, output shape) of every module call of one traced forward (``--list-layers``)."""
    calls = getattr(source, "calls", None)
    if calls is None and hasattr(source, "D"):  # our D: traced like any module
        calls = trace(source.D, source.image_size, "minus1to1", source.spec)
    if calls is None:
        raise UserError(f"--model {source.spec} has no layers to list (its features are fixed)")
    taken = {id(c): n for n, c in conv_features(calls)}
    rows = []
    for c in calls:
        shape = "x".join(map(str, c.shape[1:])) if c.shape else "-"
        note = f"  (all: {taken[id(c)]})" if id(c) in taken and taken[id(c)] != c.name else ""
        rows.append((c.name + (f"#{c.index + 1}" if c.index else ""), c.type, shape + note))
    return rows
