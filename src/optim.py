"""What one training run optimises with: optimizer (with per-layer-group learning rates), schedule, loss, AMP scaler.

``optimisation`` assembles them for a wrapped model; a pretrained backbone (timm, musicnn) gets
discriminative learning rates from ``src.transfer`` and, when asked, a freezer for progressive unfreezing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import ConfigError
from .inference import Wrapped
from .metrics import greater_is_better
from .models import get_spec
from .settings import TrainConfig


def make_optimizer(groups: list[dict], tc: TrainConfig) -> torch.optim.Optimizer:
    """``groups``: torch param groups, each with its own ``lr`` (discriminative LRs survive schedulers)."""
    name = tc.optimizer.lower()
    if name == "sgd":
        return torch.optim.SGD(groups, lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay, nesterov=tc.momentum > 0)
    opts = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad}
    if name not in opts:
        raise ValueError(f"unknown optimizer {tc.optimizer!r}; choose from {['sgd', *opts]}")
    return opts[name](groups, lr=tc.lr, weight_decay=tc.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, tc: TrainConfig, steps_per_epoch: int):
    """Returns (scheduler, per_step). Per-step schedulers advance every batch, the others every epoch."""
    total = max(1, tc.epochs * steps_per_epoch)
    if tc.scheduler == "none":
        return None, False
    if tc.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, tc.step_size, tc.gamma), False
    if tc.scheduler == "plateau":
        mode = "max" if greater_is_better(tc.metric) else "min"
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=tc.gamma, patience=max(1, tc.patience // 3)), False
    if tc.scheduler == "cosine":
        warm = tc.warmup_epochs * steps_per_epoch

        def f(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + np.cos(np.pi * min(1.0, (step - warm) / max(1, total - warm))))
        return torch.optim.lr_scheduler.LambdaLR(opt, f), True
    if tc.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total), True
    raise ValueError(f"unknown scheduler {tc.scheduler!r}; choose none | step | cosine | onecycle | plateau")


class RegressionLoss(nn.Module):
    """Weighted sum of per-target MSE or L1 (multi-task regression, e.g. valence/energy/danceability)."""

    def __init__(self, kind: str, weights: list[float] | None, n_targets: int):
        super().__init__()
        if kind not in ("mse", "l1"):
            raise ValueError(f"loss {kind!r}: expected 'mse' or 'l1'")
        self.kind = kind
        w = torch.ones(n_targets) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        if len(w) != n_targets:
            raise ConfigError(f"--task-weights has {len(w)} entries for {n_targets} targets", "give one weight per [competition] target")
        self.register_buffer("w", w / w.sum())

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        err = (out - y).abs() if self.kind == "l1" else (out - y) ** 2  # (B, n_targets)
        return (err.mean(0) * self.w.to(err.device)).sum()


@dataclass
class Step:
    """What one optimisation step needs besides the batch."""

    opt: torch.optim.Optimizer
    loss_fn: nn.Module
    sched: Any = None
    per_step: bool = False
    scaler: Any = None
    n_classes: int = 0  # > 0: classification or multilabel (mixup makes soft targets)
    multilabel: bool = False


class MultilabelLoss(nn.Module):
    """BCE-with-logits, or torchvision's sigmoid focal loss (alpha 0.25, ``gamma``), on soft (B, C) targets."""

    def __init__(self, kind: str, gamma: float = 2.0):
        super().__init__()
        if kind not in ("bce", "focal"):
            raise ValueError(f"multilabel loss {kind!r}: expected 'bce' or 'focal'")
        self.kind, self.gamma = kind, gamma

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "focal":
            from torchvision.ops import sigmoid_focal_loss

            return sigmoid_focal_loss(out, y, alpha=0.25, gamma=self.gamma, reduction="mean")
        return nn.functional.binary_cross_entropy_with_logits(out, y)


def make_loss(tc: TrainConfig, task: str, n_out: int) -> nn.Module:
    """The training loss of a task: cross-entropy (with label smoothing), BCE/focal, or weighted MSE/L1."""
    if task == "classification":
        return nn.CrossEntropyLoss(label_smoothing=tc.label_smoothing)
    if task == "multilabel":
        return MultilabelLoss(tc.multilabel_loss, tc.focal_gamma)  # label smoothing is applied to the targets
    return RegressionLoss(tc.loss, tc.task_weights, n_out)


def optimisation(model: Wrapped, tc: TrainConfig, n_train: int, task: str, n_out: int, device: torch.device):
    """Optimizer (with discriminative LR groups for pretrained backbones), scheduler, loss, freezer."""
    freezer = None
    if get_spec(tc.model).transfer:
        from .transfer import Freezer, param_groups

        backbone = getattr(model.net, "backbone", model.net)  # timm nets sit inside SpecToImage; musicnn nets are the net
        groups = param_groups(backbone, tc.lr, layer_decay=tc.layer_decay, weight_decay=tc.weight_decay)
        if tc.freeze_epochs or tc.unfreeze_every or tc.freeze_bn:
            freezer = Freezer(backbone, freeze_epochs=tc.freeze_epochs, unfreeze_every=tc.unfreeze_every, freeze_bn=tc.freeze_bn)
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": tc.lr}]
    opt = make_optimizer(groups, tc)
    steps = max(1, -(-n_train // tc.batch_size))
    sched, per_step = make_scheduler(opt, tc, steps)
    scaler = torch.amp.GradScaler("cuda") if (device.type == "cuda" and tc.amp and not torch.cuda.is_bf16_supported()) else None
    return Step(opt, make_loss(tc, task, n_out), sched, per_step, scaler, n_out if task != "regression" else 0, task == "multilabel"), freezer
