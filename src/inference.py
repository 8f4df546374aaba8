"""Inference with a trained fold model: the wrapped network, batched prediction, decoding, segment -> clip.

Kept free of training code so that prediction (a future ``src.predict``, a Kaggle inference
kernel) needs only this module, ``src.models`` and a ``fold<k>.pt`` checkpoint.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .augment import crop_time, tta_views
from .errors import CheckpointError, RunError
from .settings import TrainConfig


class Wrapped(nn.Module):
    """Network plus the training fold's input (and target) statistics, so a checkpoint is self-contained.

    ``augment`` (set by the training loop, not saved) runs on the normalised batch in training mode
    only, so SpecAugment's zero mask means "training-fold mean" and never leaks into evaluation.
    """

    def __init__(self, net: nn.Module, x_mean: np.ndarray, x_std: np.ndarray, spec_input: bool,
                 y_mean: np.ndarray | None = None, y_std: np.ndarray | None = None):
        super().__init__()
        self.net, self.spec_input = net, spec_input
        self.augment: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.register_buffer("x_mean", torch.as_tensor(x_mean, dtype=torch.float32))
        self.register_buffer("x_std", torch.as_tensor(x_std, dtype=torch.float32))
        self.register_buffer("y_mean", torch.as_tensor(0.0 if y_mean is None else y_mean, dtype=torch.float32))
        self.register_buffer("y_std", torch.as_tensor(1.0 if y_std is None else y_std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.x_mean) / self.x_std  # vector: (B, D); spec: (B, n_mels, T) with (n_mels, 1) stats
        if self.training and self.augment is not None:
            x = self.augment(x)
        if self.spec_input:
            x = x.unsqueeze(1)  # (B, 1, n_mels, T)
        return self.net(x)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when there is one, else CPU; asking for CUDA without it is an error, never a silent CPU run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RunError("--device cuda requested but torch.cuda.is_available() is False", "use --device cpu (or auto)")
    return torch.device(name)


def autocast(device: torch.device, tc: TrainConfig):
    """bf16 autocast where the GPU supports it, else fp16 (with a GradScaler in training); nothing on CPU."""
    if device.type != "cuda" or not tc.amp:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def batches(n: int, batch_size: int, rng: np.random.Generator | None):
    """Index batches, shuffled with ``rng`` or in order (evaluation; training plans its epochs in src.loader)."""
    idx = rng.permutation(n) if rng is not None else np.arange(n)
    for s in range(0, n, batch_size):
        yield idx[s:s + batch_size]


@torch.no_grad()
def predict(model: nn.Module, X: np.ndarray, tc: TrainConfig, device: torch.device) -> np.ndarray:
    """Raw outputs (logits or standardised regression values) per item; TTA averages several time views."""
    model.eval()
    outs = []
    spec = np.ndim(X[:1]) == 3
    bs = tc.batch_size if spec else max(tc.batch_size, 256)  # big image nets: stay at training batch size
    for b in batches(len(X), bs, None):
        xb = np.asarray(X[b], dtype=np.float32)  # (B, D) or (B, n_mels, T)
        views = tta_views(xb, tc.tta, tc.crop_frames) if (tc.tta > 1 and spec) else [crop_time(xb, tc.crop_frames, None) if spec else xb]
        with autocast(device, tc):
            o = torch.stack([model(torch.from_numpy(np.ascontiguousarray(v)).to(device)).float() for v in views]).mean(0)
        outs.append(o.cpu())
    return torch.cat(outs).numpy() if outs else np.zeros((0, 1), np.float32)


def decode(model: Wrapped, out: np.ndarray, task: str) -> np.ndarray:
    """Logits -> class probabilities (softmax) or per-class probabilities (multilabel: sigmoid), or standardised
    regression outputs -> target units."""
    if task == "classification":
        return torch.softmax(torch.from_numpy(out), dim=1).numpy()
    if task == "multilabel":
        return torch.sigmoid(torch.from_numpy(out)).numpy()
    return out * model.y_std.cpu().numpy() + model.y_mean.cpu().numpy()


def aggregate(item_pred: np.ndarray, item_row: np.ndarray, n_rows: int, fill: np.ndarray, how: str = "mean",
              normalise: bool = True) -> np.ndarray:
    """Segment (item) predictions -> one per row (clip); rows without items get ``fill``.

    ``mean`` of probabilities (default), ``max`` or ``logmean`` (geometric mean); the last two are renormalised
    to sum to one unless ``normalise`` is False (multi-label probabilities are independent per class: the max
    over segments says "the class occurs somewhere in the clip").
    """
    cnt = np.bincount(item_row, minlength=n_rows).astype(np.float64)
    out = np.zeros((n_rows, item_pred.shape[1]), dtype=np.float64)
    if how == "max":
        out[:] = -np.inf
        np.maximum.at(out, item_row, item_pred)
        out = np.where(np.isfinite(out), out, 0.0)
    elif how == "logmean":
        np.add.at(out, item_row, np.log(np.clip(item_pred, 1e-12, None)))
        out = np.exp(out / np.maximum(cnt, 1)[:, None])
    elif how == "mean":
        np.add.at(out, item_row, item_pred)
        out = out / np.maximum(cnt, 1)[:, None]
    else:
        raise ValueError(f"aggregate {how!r}: expected mean | max | logmean")
    if normalise and how != "mean":
        out = out / np.maximum(out.sum(1, keepdims=True), 1e-12)
    out[cnt == 0] = fill
    return out.astype(np.float32)


def load_fold_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[Wrapped, dict]:
    """A ``fold<k>.pt`` of ``src.train`` -> the wrapped network in eval mode, and the checkpoint's metadata.

    The network is rebuilt from the registry with the saved parameters and ``pretrained=False`` where the
    builder takes it (the fine-tuned weights are in the checkpoint: no hub or wheel weights are needed)."""
    import inspect

    from .models import create_model, get_spec
    from .pretrained import torch_load

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found", "train the fold first (python -m src.train), or pick a finished run")
    ckpt = torch_load(path)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{path} is not a fold checkpoint of src.train (no 'state_dict'/'model')")
    spec, state = get_spec(ckpt["model"]), ckpt["state_dict"]
    params = dict(ckpt.get("model_params") or {})
    if "pretrained" in inspect.signature(spec.builder).parameters or spec.transfer:
        params["pretrained"] = False
    if spec.input == "spec":
        shape = ckpt.get("input_shape")
        if shape is None:
            raise CheckpointError(f"{path} predates saved input shapes", "retrain the run with this version of src.train")
        net = create_model(ckpt["model"], ckpt["n_out"], in_chans=params.pop("in_chans", 1), input_shape=tuple(shape), **params)
    else:
        net = create_model(ckpt["model"], ckpt["n_out"], in_features=ckpt["in_features"], **params)
    model = Wrapped(net, state["x_mean"].numpy(), state["x_std"].numpy(), spec.input == "spec",
                    state["y_mean"].numpy(), state["y_std"].numpy())
    model.load_state_dict(state)
    return model.to(device).eval(), {k: v for k, v in ckpt.items() if k != "state_dict"}


def classifier_layer(net: nn.Module) -> nn.Linear:
    """The network's final Linear layer: a ``get_classifier()`` (timm, musicnn) that is Linear, else the last Linear registered."""
    for m in net.modules():
        head = m.get_classifier() if hasattr(m, "get_classifier") else None
        if isinstance(head, nn.Linear):
            return head
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise CheckpointError(f"{type(net).__name__} has no Linear layer, so no penultimate representation",
                              "use a model whose head is a Linear layer (every registered network's is)")
    return linears[-1]


@torch.no_grad()
def penultimate(model: Wrapped, X: np.ndarray, batch_size: int = 64, crop_frames: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(features, outputs) per item: the input of the final Linear layer (a forward pre-hook) and the raw outputs.

    Evaluation mode, no TTA; spectrograms get :func:`predict`'s centre crop, so outputs equal ``predict``'s for ``tta <= 1``.
    """
    model.eval()
    device = next(model.parameters()).device
    grabbed: list[torch.Tensor] = []
    hook = classifier_layer(model.net).register_forward_pre_hook(lambda _m, inp: grabbed.append(inp[0].detach().float().flatten(1).cpu()))
    outs = []
    try:
        for b in batches(len(X), batch_size, None):
            xb = np.asarray(X[b], dtype=np.float32)  # (B, D) or (B, n_mels, T)
            if xb.ndim == 3:
                xb = crop_time(xb, crop_frames, None)
            outs.append(model(torch.from_numpy(np.ascontiguousarray(xb)).to(device)).float().cpu())
    finally:
        hook.remove()
    if len(grabbed) != len(outs):
        raise RuntimeError(f"the classifier layer ran {len(grabbed)} times for {len(outs)} batches")
    if not outs:
        return np.zeros((0, classifier_layer(model.net).in_features), np.float32), np.zeros((0, 1), np.float32)
    return torch.cat(grabbed).numpy(), torch.cat(outs).numpy()  # (n, D_penultimate), (n, n_out)
