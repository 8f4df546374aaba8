"""Transfer learning for timm backbones: layer groups, discriminative learning rates, freezing.

Layer groups run from the stem to the head: timm's own ``group_matcher`` (stem, then each
block or stage) with the classifier (``model.get_classifier()``) split off as the last group.
Models without a ``group_matcher`` (this workspace's MLP/CNN) are grouped by top-level module.

Discriminative learning rates — ``param_groups(model, base_lr, layer_decay=0.7)`` — give group
``i`` of ``n`` the rate ``base_lr * layer_decay ** (n - 1 - i)`` (times an optional explicit
multiplier). The rate is baked into each optimizer group's ``lr`` *and* ``initial_lr``.
That is deliberate: timm's ``layer_decay`` only writes an ``lr_scale`` key that timm's own
schedulers multiply in; ``torch.optim.lr_scheduler`` ignores it, so with a torch scheduler
every layer silently trains at the same rate. Torch schedulers scale each group from its
``initial_lr`` (LambdaLR, StepLR, CosineAnnealingLR with ``eta_min=0``...), timm schedulers
from ``initial_lr`` too, so the ratios hold at every step. Two exceptions:
``OneCycleLR`` overwrites ``initial_lr`` from ``max_lr`` — pass ``max_lr=group_lrs(optimizer)``
(a list), never a scalar; and absolute floors and starts — ``CosineAnnealingLR(eta_min>0)``,
timm's ``lr_min``/``warmup_lr_init`` — are one rate for all groups, so near them the ratios
shrink (keep them at 0 or use LambdaLR for warmup). Biases and normalisation parameters get no weight decay.

Freezing — ``Freezer(model, freeze_epochs=N, unfreeze_every=k)``: for epochs ``1..N`` only the
head group trains; then one more group per ``k`` epochs from the head down (``k=0``: all at
once; ``freeze_epochs=-1``: the body stays frozen for good). Frozen parameters get
``requires_grad=False``; they stay in the optimizer (build it once over all groups), receive
no gradient and are skipped by the optimizer step — weight decay included. BatchNorm layers
of frozen groups are kept in eval mode (``freeze_bn="frozen"``, default), so their running
statistics do not drift either; ``"all"`` keeps every BatchNorm in eval mode, ``"none"`` lets
frozen BatchNorm layers keep updating their statistics.

The training loop calls ``freezer.apply(epoch)`` once at the start of each epoch (1-based),
before or after ``model.train()``: BatchNorm eval mode is enforced by a forward pre-hook, so a
later ``model.train()`` cannot undo it.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .errors import ConfigError

log = logging.getLogger(__name__)


def _inner(model: nn.Module) -> nn.Module:
    """The network inside ``train.Wrapped`` (``.net``), or the model itself."""
    while not hasattr(model, "group_matcher") and isinstance(getattr(model, "net", None), nn.Module):
        model = model.net
    return model


def layer_groups(model: nn.Module) -> list[list[tuple[str, nn.Parameter]]]:
    """(name, parameter) lists from stem to head; the classifier is always the last group."""
    net = _inner(model)
    named = [(n, p) for n, p in net.named_parameters()]
    head_ids = {id(p) for p in _classifier(net).parameters()} if _classifier(net) is not None else set()
    if hasattr(net, "group_matcher"):
        from timm.models._manipulate import group_parameters

        by_name = dict(named)
        groups = [[(n, by_name[n]) for n in names] for names in group_parameters(net, net.group_matcher(coarse=False)).values()]
    else:
        groups = _top_level_groups(named)
    body = [[(n, p) for n, p in g if id(p) not in head_ids] for g in groups]
    head = [(n, p) for n, p in named if id(p) in head_ids]
    out = [g for g in body if g] + ([head] if head else [])
    if len(out) < 2:
        raise ValueError(f"{type(net).__name__}: found {len(out)} layer group(s); freezing and layer decay need a body and a head")
    return out


def _classifier(net: nn.Module) -> nn.Module | None:
    if hasattr(net, "get_classifier"):
        return net.get_classifier()
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def _top_level_groups(named: list[tuple[str, nn.Parameter]]) -> list[list[tuple[str, nn.Parameter]]]:
    """Group by the first name component, or the first two when the first is a numbered container."""
    groups: dict[str, list[tuple[str, nn.Parameter]]] = {}
    for n, p in named:
        parts = n.split(".")
        key = ".".join(parts[:2]) if len(parts) > 2 and parts[1].isdigit() else parts[0]
        groups.setdefault(key, []).append((n, p))
    return list(groups.values())


def group_scales(n_groups: int, layer_decay: float | None = None,
                 multipliers: Sequence[float] | Mapping[int, float] | None = None) -> list[float]:
    """LR factor per group (stem first): ``layer_decay ** (n-1-i)`` times the explicit multipliers."""
    scales = [1.0] * n_groups
    if layer_decay is not None:
        if not 0 < layer_decay <= 1:
            raise ConfigError(f"--layer-decay {layer_decay} is outside (0, 1]",
                              "0.7 gives each lower layer group 0.7x the learning rate of the one above; 1 turns it off")
        scales = [layer_decay ** (n_groups - 1 - i) for i in range(n_groups)]
    if multipliers is not None:
        items = multipliers.items() if isinstance(multipliers, Mapping) else enumerate(multipliers)
        if not isinstance(multipliers, Mapping) and len(multipliers) != n_groups:
            raise ValueError(f"multipliers has {len(multipliers)} entries but the model has {n_groups} layer groups "
                             "(stem first, head last); or pass a dict {group_index: factor}, negative indexes allowed")
        for i, m in items:
            scales[int(i)] *= float(m)
    return scales


def param_groups(model: nn.Module, base_lr: float, layer_decay: float | None = None,
                 multipliers: Sequence[float] | Mapping[int, float] | None = None,
                 weight_decay: float = 1e-4, no_decay: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Optimizer parameter groups with per-layer-group learning rates baked into ``lr`` and ``initial_lr``.

    Pass the result to any ``torch.optim`` optimizer (``make_optimizer(param_groups(...), tc)`` in
    src.train: group values override the optimizer defaults). Each layer group becomes up to two
    optimizer groups: with weight decay (weights) and without (biases, norm parameters, 1-d
    tensors and the names in ``no_decay`` / ``model.no_weight_decay()``).
    """
    net = _inner(model)
    groups = layer_groups(net)
    scales = group_scales(len(groups), layer_decay, multipliers)
    skip = set(no_decay) | (set(net.no_weight_decay()) if hasattr(net, "no_weight_decay") else set())
    out: list[dict[str, Any]] = []
    for i, (group, scale) in enumerate(zip(groups, scales)):
        lr = base_lr * scale
        decay = [p for n, p in group if _decays(n, p, skip)]
        plain = [p for n, p in group if not _decays(n, p, skip)]
        for params, wd in ((decay, weight_decay), (plain, 0.0)):
            if params:
                out.append({"params": params, "lr": lr, "initial_lr": lr, "weight_decay": wd,
                            "layer_group": i, "lr_mult": scale, "group_name": group[0][0].rsplit(".", 1)[0]})
    return out


def _decays(name: str, p: nn.Parameter, skip: set[str]) -> bool:
    """Weight decay only on weight matrices and kernels: not on biases, norm scales or listed names."""
    return p.ndim > 1 and not name.endswith(".bias") and name not in skip


def group_lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    """Each optimizer group's ``initial_lr`` (its peak): use as ``OneCycleLR(max_lr=group_lrs(opt))``."""
    return [float(g.get("initial_lr", g["lr"])) for g in optimizer.param_groups]


class Freezer:
    """Freeze the body for the first epochs, then unfreeze layer groups from the head down.

    ``apply(epoch)`` (1-based) sets ``requires_grad`` per group and returns how many groups
    (counted from the head) train in that epoch. ``head_groups`` groups always train.
    """

    def __init__(self, model: nn.Module, freeze_epochs: int = 0, unfreeze_every: int = 0,
                 freeze_bn: bool | str = "frozen", head_groups: int = 1):
        self.groups = layer_groups(model)
        self.freeze_epochs, self.unfreeze_every, self.head_groups = int(freeze_epochs), int(unfreeze_every), int(head_groups)
        mode = ("frozen" if freeze_bn else "none") if isinstance(freeze_bn, bool) else str(freeze_bn)
        if mode not in ("frozen", "none", "all"):
            raise ValueError(f"freeze_bn must be 'frozen', 'none', 'all' or a bool, got {freeze_bn!r}")
        if not 1 <= self.head_groups <= len(self.groups):
            raise ValueError(f"head_groups={head_groups} but the model has {len(self.groups)} layer groups")
        self.freeze_bn = mode
        self.n_trainable = len(self.groups)
        self._net = _inner(model)
        self._bn = self._bn_groups(self._net)
        self._eval_bn: set[int] = set()
        self._hooks = [m.register_forward_pre_hook(self._bn_hook) for m, _ in self._bn]

    def trainable_groups(self, epoch: int) -> int:
        """Number of groups (from the head) that train in ``epoch``."""
        n = len(self.groups)
        if self.freeze_epochs < 0:
            return self.head_groups
        if epoch <= self.freeze_epochs:
            return self.head_groups
        if self.unfreeze_every <= 0:
            return n
        return min(n, self.head_groups + 1 + (epoch - self.freeze_epochs - 1) // self.unfreeze_every)

    def apply(self, epoch: int) -> int:
        """Set ``requires_grad`` and the BatchNorm modes for ``epoch``; returns the trainable group count."""
        k = self.trainable_groups(epoch)
        first_trainable = len(self.groups) - k
        for i, group in enumerate(self.groups):
            for _, p in group:
                p.requires_grad_(i >= first_trainable)
        before = self._eval_bn
        self._eval_bn = {id(m) for m, g in self._bn
                         if self.freeze_bn == "all" or (self.freeze_bn == "frozen" and g < first_trainable)}
        for m, _ in self._bn:  # release layers that were forced into eval mode, keep the rest in sync now
            if id(m) in before and id(m) not in self._eval_bn:
                m.train(self._net.training)
            elif id(m) in self._eval_bn:
                m.train(False)
        if k != self.n_trainable:
            log.info("epoch %d: %d of %d layer groups trainable (from the head)", epoch, k, len(self.groups))
        self.n_trainable = k
        return k

    def remove(self) -> None:
        """Drop the BatchNorm hooks (e.g. before exporting the model); forced layers follow the model's mode again."""
        for h in self._hooks:
            h.remove()
        for m, _ in self._bn:
            if id(m) in self._eval_bn:
                m.train(self._net.training)
        self._hooks, self._eval_bn = [], set()

    def _bn_hook(self, module: nn.Module, args: Any) -> None:
        if module.training and id(module) in self._eval_bn:
            module.train(False)

    def _bn_groups(self, net: nn.Module) -> list[tuple[nn.Module, int]]:
        """Every BatchNorm with the index of the group that owns its parameters (or its buffers' module path)."""
        group_of = {id(p): i for i, g in enumerate(self.groups) for _, p in g}
        name_group = {n.rsplit(".", 1)[0]: i for i, g in enumerate(self.groups) for n, _ in g}
        out = []
        for name, m in net.named_modules():
            if not isinstance(m, _BatchNorm):
                continue
            if m.weight is not None and id(m.weight) in group_of:
                out.append((m, group_of[id(m.weight)]))
            else:  # affine=False: the group of the nearest enclosing module that has parameters
                parent = name
                while parent and parent not in name_group:
                    parent = parent.rsplit(".", 1)[0] if "." in parent else ""
                out.append((m, name_group.get(parent, 0)))
        return out
