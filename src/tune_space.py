"""Search spaces under user control: ``--fix``, ``--narrow``, ``--space FILE`` and ``--grid`` for ``src.tune``.

A model's search space is the ``space=`` function beside its builder in ``src.models``; these
overrides narrow or pin it without editing code, and :func:`apply_params` turns a trial's flat
parameters into a validated TrainConfig by the same routing rule as ``src.train --param``.
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from .errors import TuneError
from .settings import RUN_IDENTITY, TrainConfig, make_train_config, parse_value, route_params


@dataclass
class SpaceOverrides:
    """User edits of a model's search space, without touching src/models.py.

    ``fixed[name] = value`` pins a suggested parameter (or sets any train/model parameter the space
    does not suggest, e.g. ``label_smoothing``); ``narrow[name]`` is ``(low, high)`` for a numeric
    parameter or a list of choices (for categorical or numeric parameters).
    """

    fixed: dict[str, Any] = field(default_factory=dict)
    narrow: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"fixed": self.fixed, "narrow": {k: list(v) for k, v in self.narrow.items()}}


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside brackets, so ``hidden=[64,32],[128]`` gives two values."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == sep and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [s.strip() for s in out if s.strip()]


def _key_value(pair: str, flag: str) -> tuple[str, str]:
    if "=" not in pair:
        raise TuneError(f"{flag} {pair!r}: expected KEY=VALUE")
    key, val = pair.split("=", 1)
    return key.strip(), val.strip()


def parse_narrow_value(text: str) -> Any:
    """``1e-4:1e-2`` -> (1e-4, 1e-2) range; ``adam,adamw`` -> list of choices."""
    if ":" in text and not text.startswith(("[", "(")):
        lo, hi = text.split(":", 1)
        return (parse_value(lo), parse_value(hi))
    return [parse_value(v) for v in split_top_level(text)]


def parse_overrides(fix: list[str], narrow: list[str], space_file: str | None = None) -> SpaceOverrides:
    """Command-line ``--fix``/``--narrow`` pairs on top of an optional TOML/JSON file with [fix] and [narrow]."""
    ov = SpaceOverrides()
    if space_file:
        path = Path(space_file)
        if not path.is_file():
            raise TuneError(f"--space {path}: file not found")
        raw = tomllib.loads(path.read_text()) if path.suffix == ".toml" else json.loads(path.read_text())
        unknown = sorted(set(raw) - {"fix", "narrow"})
        if unknown:
            raise TuneError(f"{path}: unknown section(s) {unknown}; use [fix] and [narrow]")
        ov.fixed.update(raw.get("fix", {}))
        for k, v in raw.get("narrow", {}).items():
            ov.narrow[k] = (v["low"], v["high"]) if isinstance(v, dict) else list(v)
    for pair in fix:
        k, v = _key_value(pair, "--fix")
        ov.fixed[k] = parse_value(v)
    for pair in narrow:
        k, v = _key_value(pair, "--narrow")
        ov.narrow[k] = parse_narrow_value(v)
    bad = sorted(set(ov.fixed) & RUN_IDENTITY)
    if bad:
        raise TuneError(f"--fix {bad}: these identify the run, not the recipe; use --folds/--fold-file/--device/--metric")
    return ov


class ConstrainedTrial:
    """An ``optuna.Trial`` whose suggestions obey :class:`SpaceOverrides`.

    The model's space function calls ``suggest_*`` as usual. A fixed value inside the space is
    recorded under the space's own distribution (the study's ``PartialFixedSampler`` supplies it),
    so studies stay consistent when a user pins a parameter halfway; a fixed value outside the space
    is used as is (it shows in the trial's ``train_params``). A narrowed parameter gets the user's
    range or choices. Everything else is forwarded to the real trial.
    """

    def __init__(self, trial: optuna.Trial, ov: SpaceOverrides):
        self._trial, self._ov = trial, ov
        self.used: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)

    def _narrowed(self, name: str, suggest: Any, *args: Any, **kw: Any) -> Any:
        self.used.add(name)
        try:
            return suggest(name, *args, **kw)
        except ValueError as exc:  # Optuna: a categorical's choices cannot change within a study
            raise TuneError(f"--narrow {name}: {exc} This study already sampled {name} differently; "
                            f"start a new one with --study NAME") from None

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False) -> Any:
        if name in self._ov.fixed:
            self.used.add(name)
            v = self._ov.fixed[name]
            inside = isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high
            return self._trial.suggest_float(name, low, high, step=step, log=log) if inside else v
        if name in self._ov.narrow:
            rng = self._ov.narrow[name]
            if isinstance(rng, list):
                return self._narrowed(name, self._trial.suggest_categorical, rng)
            return self._narrowed(name, self._trial.suggest_float, float(rng[0]), float(rng[1]), step=step, log=log)
        return self._trial.suggest_float(name, low, high, step=step, log=log)

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> Any:
        if name in self._ov.fixed:
            self.used.add(name)
            v = self._ov.fixed[name]
            inside = isinstance(v, int) and not isinstance(v, bool) and low <= v <= high
            return self._trial.suggest_int(name, low, high, step=step, log=log) if inside else v
        if name in self._ov.narrow:
            rng = self._ov.narrow[name]
            if isinstance(rng, list):
                return self._narrowed(name, self._trial.suggest_categorical, [int(v) for v in rng])
            return self._narrowed(name, self._trial.suggest_int, int(rng[0]), int(rng[1]), step=step, log=log)
        return self._trial.suggest_int(name, low, high, step=step, log=log)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        if name in self._ov.fixed:
            self.used.add(name)
            v = self._ov.fixed[name]
            return self._trial.suggest_categorical(name, choices) if v in list(choices) else v
        if name in self._ov.narrow:
            sub = self._ov.narrow[name]
            if not isinstance(sub, list):
                raise TuneError(f"--narrow {name}: categorical parameter (choices {list(choices)}); give a list: {name}=a,b")
            return self._narrowed(name, self._trial.suggest_categorical, sub)
        return self._trial.suggest_categorical(name, choices)


def parse_grid(pairs: list[str]) -> dict[str, list[Any]]:
    """``--grid optimizer=sgd,adam --grid batch_size=1,2,4`` -> {name: values} (scalars only: Optuna's grid)."""
    grid: dict[str, list[Any]] = {}
    for pair in pairs:
        k, v = _key_value(pair, "--grid")
        values = [parse_value(x) for x in split_top_level(v)]
        bad = [x for x in values if not (x is None or isinstance(x, (bool, int, float, str)))]
        if bad or not values:
            raise TuneError(f"--grid {k}: values must be scalars (numbers, strings, booleans); got {v!r}")
        if k in RUN_IDENTITY:
            raise TuneError(f"--grid {k}: not a tunable parameter")
        grid[k] = values
    return grid


def apply_params(base: TrainConfig, params: dict[str, Any]) -> TrainConfig:
    """Flat trial parameters -> TrainConfig by the one routing rule (src.settings.route_params), validated."""
    train, model = route_params(params)
    bad = sorted(set(train) & RUN_IDENTITY)
    if bad:
        raise TuneError(f"parameters {bad} identify the run, not the recipe", "use --folds/--fold-file/--device/--metric")
    values = {**dataclasses.asdict(base), **train, "model_params": {**base.model_params, **model}}
    return make_train_config(values, "trial parameters")


