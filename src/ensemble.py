"""Ensemble runs that share a fold file: ``python -m src.ensemble RUN RUN ... [--method M] [--name NAME]``.

Reads only run artifacts (``config.json``, ``oof.npy``, ``test.npy``,
``holdout.npy``, ``metrics.json``) and writes a new run folder under the same
contract (plus ``weights.json``), so an ensemble can be submitted, compared or
ensembled again.

Methods (classification; probability matrices ``(n, C)`` per run):

* ``mean`` — arithmetic mean of probabilities;
* ``geometric`` — geometric mean, rows renormalised to sum to 1;
* ``rank`` — per class, the average of each run's rank-normalised scores,
  rows renormalised (ranks are taken within OOF and within test separately);
* ``hill`` — Caruana et al. (2004) greedy forward selection with replacement:
  repeatedly add the run whose inclusion most improves the OOF metric of the
  averaged probability matrix; the counts become weights;
* ``stack`` — a meta-model (``--meta logreg`` or ``gbm``) on the runs' OOF
  log-probabilities.

``hill`` and ``stack`` fit on OOF predictions, so scoring them on the same
OOF rows would be optimistic. Their reported OOF (and ``oof.npy``) is nested:
for each outer fold k of the shared fold file the weights / meta-model are
fitted on the OOF rows of the other folds and predict fold k. Test and holdout
predictions use the weights / meta-model fitted on all OOF rows. (The base OOF
rows of other folds came from models that saw fold k; this second-order
leakage is the usual, small, price of stacking on OOF.)

Multi-label runs (``task = "multilabel"``; ``(n, C)`` independent sigmoid probabilities, rows do not sum
to 1) are combined per class, never renormalised across classes:

* ``mean`` — as above, per class;
* ``geometric`` — the *logit mean*: ``sigmoid(sum_i w_i logit(p_i))``. This is the geometric mean of each
  class's two-outcome distribution ``(p, 1 - p)`` renormalised over {positive, negative} — the binary
  analogue of the classification rule. (The plain geometric mean of ``p`` alone would ignore ``1 - p`` and
  pull every probability towards 0.)
* ``rank`` — per class column, the average of rank-normalised scores, not renormalised (the result ranks
  rows, it is not calibrated: tune F1 thresholds on its OOF, as ``metrics.json["oof_thresholds"]`` does);
* ``hill`` — as above, on the chosen multi-label metric (roc_auc, cmap, lwlrap, micro_f1, macro_f1);
* ``stack`` — one meta-model per class on the runs' logits of that class (``logreg`` or ``gbm``); a class
  with only positives or only negatives in a fitting part falls back to the members' mean for that class.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np

from . import cli
from .artifacts import code_version, read_json, setup_logging, write_json, write_npy
from .errors import EnsembleError
from .metrics import compute_metrics, greater_is_better
from .runs import RunArtifacts, check_compatible, fold_file_path, fold_summary, load_fold_table, load_run, model_key, oof_thresholds
from .scoring import check_finite, multilabel_class_scores, per_fold_metrics, task_metrics

log = logging.getLogger(__name__)
METHODS = ("mean", "geometric", "rank", "hill", "stack")
EPS = 1e-7


# ----------------------------------------------------------------------------- combiners


def _normalise(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 0, None)
    s = p.sum(1, keepdims=True)
    return np.where(s > 0, p / np.where(s > 0, s, 1), 1.0 / p.shape[1])


def _weights(n: int, weights: np.ndarray | None) -> np.ndarray:
    return np.ones(n) / n if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def mean_probs(mats: list[np.ndarray], weights: np.ndarray | None = None, task: str = "classification") -> np.ndarray:
    """Weighted arithmetic mean (the same rule for both tasks: a mean of distributions is one, and per class it needs no care)."""
    return np.tensordot(_weights(len(mats), weights), np.stack(mats).astype(np.float64), axes=1).astype(np.float32)


def geometric_mean(mats: list[np.ndarray], weights: np.ndarray | None = None, task: str = "classification") -> np.ndarray:
    """Classification: weighted mean of log-probabilities, exponentiated and renormalised per row.
    Multilabel: per class, sigmoid of the weighted mean logit (see the module docstring for why)."""
    w = _weights(len(mats), weights)
    if task == "multilabel":
        z = np.tensordot(w, np.stack([logit(m) for m in mats]), axes=1)  # (n, C)
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
    logp = np.tensordot(w, np.log(np.clip(np.stack(mats).astype(np.float64), EPS, 1.0)), axes=1)
    logp -= logp.max(1, keepdims=True)
    return _normalise(np.exp(logp)).astype(np.float32)


def rank_average(mats: list[np.ndarray], weights: np.ndarray | None = None, task: str = "classification") -> np.ndarray:
    """Average per-class ranks (scaled to (0, 1]) over runs; rows renormalised to probabilities for
    classification, left per class for multilabel (independent classes)."""
    from scipy.stats import rankdata

    w = _weights(len(mats), weights)
    n = len(mats[0])
    if n == 0:
        return np.zeros_like(mats[0], dtype=np.float32)
    avg = np.tensordot(w, np.stack([rankdata(m, axis=0) / n for m in mats]), axes=1)  # (n, C)
    return (avg if task == "multilabel" else _normalise(avg)).astype(np.float32)


COMBINERS: dict[str, Callable[..., np.ndarray]] = {"mean": mean_probs, "geometric": geometric_mean, "rank": rank_average}


def _score(metric: str, y: np.ndarray, p: np.ndarray, targets: list[str], task: str = "classification") -> tuple[float, float]:
    """Sort key for hill climbing: (metric oriented so larger is better, -log loss (BCE for multilabel) as tie-break)."""
    m = compute_metrics(task, y, p, targets)
    sign = 1.0 if greater_is_better(metric) else -1.0
    return sign * m[metric], -m["log_loss"]


def hill_climb(oofs: list[np.ndarray], y: np.ndarray, metric: str, targets: list[str], max_iter: int = 50,
               patience: int = 5, task: str = "classification") -> tuple[np.ndarray, list[int]]:
    """Caruana greedy forward selection with replacement on whole probability matrices.

    Starts from the single best run, then adds (again and again, replacement allowed) the run
    that gives the best averaged OOF score; keeps the best bag seen and stops after
    ``patience`` rounds without improvement. Returns (weights summing to 1, selection order).
    """
    mats = [m.astype(np.float64) for m in oofs]
    scores = [_score(metric, y, m, targets, task) for m in mats]
    first = int(max(range(len(mats)), key=lambda i: scores[i]))
    counts = np.zeros(len(mats))
    counts[first] = 1
    total, path = mats[first].copy(), [first]
    best, best_counts, since = scores[first], counts.copy(), 0
    for _ in range(max_iter):
        n = counts.sum()
        cand = [_score(metric, y, (total + m) / (n + 1), targets, task) for m in mats]
        i = int(max(range(len(mats)), key=lambda j: cand[j]))
        counts[i] += 1
        total += mats[i]
        path.append(i)
        if cand[i] > best:
            best, best_counts, since = cand[i], counts.copy(), 0
        else:
            since += 1
            if since >= patience:
                break
    return best_counts / best_counts.sum(), path[: int(best_counts.sum())]


def _stack_features(mats: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.log(np.clip(m.astype(np.float64), EPS, 1.0)) for m in mats], axis=1)


def make_meta(kind: str, seed: int = 0):
    """A small meta-model: multinomial logistic regression (default) or a shallow gradient-boosting model."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    if kind == "logreg":
        return LogisticRegression(C=1.0, max_iter=2000)
    if kind == "gbm":
        return HistGradientBoostingClassifier(max_iter=100, learning_rate=0.05, max_depth=3, min_samples_leaf=10, random_state=seed)
    raise EnsembleError(f"unknown meta-model {kind!r}; choose logreg or gbm")


def _meta_predict(model, X: np.ndarray, n_classes: int) -> np.ndarray:
    """Meta-model probabilities expanded to every class (a fold may lack a class in training)."""
    out = np.zeros((len(X), n_classes))
    if len(X) == 0:  # e.g. a competition without a test split
        return out
    out[:, model.classes_] = model.predict_proba(X)
    return _normalise(out)


@dataclass
class Fitted:
    """A fitted combination: OOF (honest), test, holdout predictions, the full-data weights and extras."""

    oof: np.ndarray
    test: np.ndarray
    holdout: np.ndarray | None
    weights: dict[str, float]
    extra: dict = field(default_factory=dict)
    oof_in_sample: np.ndarray | None = None


def fit_method(method: str, runs: list[RunArtifacts], y: np.ndarray, folds: np.ndarray, have: np.ndarray, metric: str,
               meta: str = "logreg") -> Fitted:
    """Combine the runs' predictions with one method (see the module docstring for why OOF is nested)."""
    names = [r.name for r in runs]
    hold = [r.holdout for r in runs] if all(r.holdout is not None for r in runs) else None
    targets = runs[0].config.get("targets", [])
    task = runs[0].config.get("task", "classification")
    n_cls = runs[0].oof.shape[1]
    if method in COMBINERS:
        f = COMBINERS[method]
        oof = np.full(runs[0].oof.shape, np.nan, np.float32)
        oof[have] = f([r.oof[have] for r in runs], task=task)
        return Fitted(oof, f([r.test for r in runs], task=task), f(hold, task=task) if hold else None, {n: 1 / len(runs) for n in names})
    if method == "hill":
        return _fit_hill(runs, y, folds, have, metric, targets, hold, task)
    if method == "stack" and task == "multilabel":
        return _fit_stack_multilabel(runs, y, folds, have, meta, hold)
    if method == "stack":
        return _fit_stack(runs, y, folds, have, meta, n_cls, hold)
    raise EnsembleError(f"unknown method {method!r}; choose from {list(METHODS)}")


def _fit_hill(runs, y, folds, have, metric, targets, hold, task="classification") -> Fitted:
    names = [r.name for r in runs]
    oof = np.full(runs[0].oof.shape, np.nan, np.float32)
    per_fold = {}
    for k in np.unique(folds[have]):
        tr, va = have & (folds != k), have & (folds == k)
        w, _ = hill_climb([r.oof[tr] for r in runs], y[tr], metric, targets, task=task)
        oof[va] = mean_probs([r.oof[va] for r in runs], w)
        per_fold[str(k)] = dict(zip(names, w.round(4).tolist()))
    w, path = hill_climb([r.oof[have] for r in runs], y[have], metric, targets, task=task)
    in_sample = np.full(oof.shape, np.nan, np.float32)
    in_sample[have] = mean_probs([r.oof[have] for r in runs], w)
    return Fitted(oof, mean_probs([r.test for r in runs], w), mean_probs(hold, w) if hold else None,
                  dict(zip(names, w.tolist())), {"selection_order": [names[i] for i in path], "weights_per_outer_fold": per_fold},
                  in_sample)


def _fit_stack(runs, y, folds, have, meta, n_cls, hold) -> Fitted:
    names = [r.name for r in runs]
    X = _stack_features([r.oof for r in runs])
    oof = np.full(runs[0].oof.shape, np.nan, np.float32)
    for k in np.unique(folds[have]):
        tr, va = have & (folds != k), have & (folds == k)
        model = make_meta(meta).fit(X[tr], y[tr])
        oof[va] = _meta_predict(model, X[va], n_cls)
    model = make_meta(meta).fit(X[have], y[have])
    in_sample = np.full(oof.shape, np.nan, np.float32)
    in_sample[have] = _meta_predict(model, X[have], n_cls)
    test = _meta_predict(model, _stack_features([r.test for r in runs]), n_cls).astype(np.float32)
    holdout = _meta_predict(model, _stack_features(hold), n_cls).astype(np.float32) if hold else None
    extra: dict = {"meta_model": meta}
    if hasattr(model, "coef_"):  # importance of each run: mean |coefficient| over its C input columns
        coef = np.abs(model.coef_).reshape(model.coef_.shape[0], len(runs), n_cls).mean(axis=(0, 2))
        weights = dict(zip(names, (coef / coef.sum()).tolist()))
        extra["coef"] = model.coef_.tolist()
        extra["intercept"] = model.intercept_.tolist()
        extra["weights_note"] = "stacking: weights are each run's share of the mean |coefficient| of the logistic meta-model"
    else:
        weights = {n: float("nan") for n in names}
        extra["weights_note"] = "stacking with a GBM meta-model has no per-run weights"
    return Fitted(oof, test, holdout, weights, extra, in_sample)


def _per_class_stack(X: list[np.ndarray], Y: np.ndarray, fit_rows: np.ndarray, preds: list[list[np.ndarray]], meta: str
                     ) -> tuple[list[np.ndarray], list, list[int]]:
    """Multilabel stacking: for each class c a meta-model on the runs' logits of c (``X[c]`` (n, R)) fitted on
    ``fit_rows``; predicts each entry of ``preds`` (per class, (m, R) logits). A class whose fitting rows are all
    positive or all negative keeps the members' mean probability. Returns (predictions (m, C) each, models, fallback classes)."""
    outs = [np.zeros((len(p[0]), len(X))) for p in preds]
    models, fallback = [], []
    for c in range(len(X)):
        yc = (Y[fit_rows, c] > 0).astype(int)
        if yc.min() == yc.max():
            fallback.append(c)
            models.append(None)
            for o, p in zip(outs, preds):
                o[:, c] = (1.0 / (1.0 + np.exp(-p[c]))).mean(1)  # members' mean probability
            continue
        model = make_meta(meta).fit(X[c][fit_rows], yc)
        models.append(model)
        for o, p in zip(outs, preds):
            if len(p[c]):
                o[:, c] = model.predict_proba(p[c])[:, 1]
    return [o.astype(np.float32) for o in outs], models, fallback


def _fit_stack_multilabel(runs, Y, folds, have, meta, hold) -> Fitted:
    """Per-class stacking (see :func:`_per_class_stack`), nested over the outer folds like :func:`_fit_stack`."""
    names = [r.name for r in runs]
    per_class = lambda mats: [np.stack([logit(m[:, c]) for m in mats], 1) for c in range(mats[0].shape[1])]  # noqa: E731 (n, R)
    X = per_class([r.oof for r in runs])
    oof = np.full(runs[0].oof.shape, np.nan, np.float32)
    fallback_per_fold = {}
    for k in np.unique(folds[have]):
        tr, va = have & (folds != k), have & (folds == k)
        (oof_k,), _, fb = _per_class_stack(X, Y, tr, [[x[va] for x in X]], meta)
        oof[va] = oof_k
        fallback_per_fold[str(k)] = fb
    preds = [[x[have] for x in X], per_class([r.test for r in runs])] + ([per_class(hold)] if hold else [])
    outs, models, fb = _per_class_stack(X, Y, have, preds, meta)
    in_sample = np.full(oof.shape, np.nan, np.float32)
    in_sample[have] = outs[0]
    extra: dict = {"meta_model": meta, "per_class": True, "fallback_classes": fb, "fallback_classes_per_outer_fold": fallback_per_fold}
    coefs = [np.abs(m.coef_[0]) for m in models if m is not None and hasattr(m, "coef_")]
    if coefs:
        imp = np.mean(coefs, axis=0)
        weights = dict(zip(names, (imp / imp.sum()).tolist()))
        extra["coef"] = [m.coef_[0].tolist() if m is not None else None for m in models]
        extra["weights_note"] = "per-class stacking: weights are each run's share of the mean |coefficient| over the classes' meta-models"
    else:
        weights = {n: float("nan") for n in names}
        extra["weights_note"] = "stacking with a GBM meta-model has no per-run weights"
    return Fitted(oof, outs[1], outs[2] if hold else None, weights, extra, in_sample)


# ----------------------------------------------------------------------------- scoring and writing


def check_shapes(ref: RunArtifacts, r: RunArtifacts) -> None:
    """Runs with the same rows and classes must have prediction matrices of the same shape."""
    if r.oof.shape != ref.oof.shape or r.test.shape != ref.test.shape:
        raise EnsembleError(f"runs {ref.name} and {r.name} have different prediction shapes: "
                            f"oof {ref.oof.shape} vs {r.oof.shape}, test {ref.test.shape} vs {r.test.shape}",
                            "re-train one of them on the current data")
    if (r.holdout is None) != (ref.holdout is None) or (r.holdout is not None and r.holdout.shape != ref.holdout.shape):
        log.warning("runs %s and %s differ in holdout predictions: the ensemble gets no holdout.npy", ref.name, r.name)


def per_class_scores(y: np.ndarray, probs: np.ndarray, classes: list[str], task: str = "classification") -> dict[str, dict[str, float]]:
    """Classification: argmax precision/recall/F1/support per class. Multilabel: average precision, ROC-AUC
    (NaN without positives) and support (positive rows) per class — argmax says nothing about several labels."""
    from sklearn.metrics import precision_recall_fscore_support

    if task == "multilabel":
        return multilabel_class_scores(y, probs, classes)
    p, r, f, s = precision_recall_fscore_support(y, probs.argmax(1), labels=np.arange(len(classes)), zero_division=0)
    return {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])} for i, c in enumerate(classes)}


def _summary(y, oof, folds, targets, task) -> dict:
    pf = per_fold_metrics(y, oof, folds, targets, task)
    have = ~np.isnan(oof).any(1)
    return {"folds": pf, **fold_summary(pf), "oof": compute_metrics(task, y[have], oof[have], targets)}


def ensemble(run_names: list[str], name: str | None = None, workdir: str | Path = ".", method: str = "mean",
             meta: str = "logreg", metric: str | None = None) -> Path:
    """Combine runs with ``method`` and write the ensemble's run folder. Returns it.

    ``metric`` (hill climbing's objective and the reported one) defaults to the first run's selection metric;
    any per-fold metric of the task may be chosen (``src.scoring.task_metrics``)."""
    if method not in METHODS:
        raise EnsembleError(f"unknown method {method!r}; choose from {list(METHODS)}")
    runs = [load_run(r, workdir) for r in run_names]
    if len(runs) < 2:
        raise EnsembleError("give at least two runs to ensemble")
    if len({r.root.resolve() for r in runs}) < len(runs):
        raise EnsembleError(f"the same run is given twice in {run_names}")
    for r in runs[1:]:
        check_compatible(runs[0].config, r.config, (runs[0].name, r.name))
        check_shapes(runs[0], r)
    ref = runs[0]
    task = ref.config["task"]
    if task not in ("classification", "multilabel"):
        raise EnsembleError("regression ensembles need the targets: not supported by the fold file alone")
    y, folds = load_fold_table(ref, workdir)
    if len(y) != len(ref.oof):
        raise EnsembleError(f"fold file has {len(y)} rows but run {ref.name}'s oof.npy has {len(ref.oof)}")
    for r in runs:
        check_finite(r, folds)
    have = ~np.any([np.isnan(r.oof).any(1) for r in runs], axis=0)
    metric = metric or ref.metrics["metric"]
    if metric not in task_metrics(task):
        raise EnsembleError(f"--metric {metric!r} is not a {task} metric", f"choose from {list(task_metrics(task))}")
    fit = fit_method(method, runs, y, folds, have, metric, meta)
    targets, classes = ref.config["targets"], ref.config["classes"]
    members = {r.name: {**_summary(y, np.where(have[:, None], r.oof, np.nan), folds, targets, task),
                        "per_class": per_class_scores(y[have], r.oof[have], classes, task)} for r in runs}
    metrics = {"metric": metric, "level": "clip", "method": method if method != "stack" else f"stack-{meta}",
               **_summary(y, fit.oof, folds, targets, task), "folds_done": sorted(int(k) for k in np.unique(folds[have])),
               "per_class": per_class_scores(y[have], fit.oof[have], classes, task),
               "members": {n: {**m["oof"], "cv_mean": m["mean"][metric], "cv_std": m["std"][metric]} for n, m in members.items()},
               "members_detail": members, "weights": fit.weights, "n_rows_scored": int(have.sum()),
               "oof_note": "nested over the outer folds (honest)" if fit.oof_in_sample is not None else "no fitted weights: OOF is honest"}
    if fit.oof_in_sample is not None:
        metrics["oof_in_sample"] = compute_metrics(task, y[have], fit.oof_in_sample[have], targets)
    if task == "multilabel" and have.any():
        metrics["oof_thresholds"] = oof_thresholds(y[have], fit.oof[have])
    root = _write_run(runs, fit, metrics, name, workdir, y, have, method, meta)
    return root


def _write_run(runs, fit: Fitted, metrics: dict, name, workdir, y, have, method, meta) -> Path:
    ref = runs[0]
    name = name or f"ens-{method}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    root = Path(workdir) / "runs" / name
    if root.resolve() in {r.root.resolve() for r in runs}:
        raise EnsembleError(f"--name {name} would overwrite one of its own members")
    root.mkdir(parents=True, exist_ok=True)
    write_npy(root / "oof.npy", fit.oof.astype(np.float32))
    write_npy(root / "test.npy", fit.test.astype(np.float32))
    if fit.holdout is not None:
        write_npy(root / "holdout.npy", fit.holdout.astype(np.float32))
    write_json(root / "weights.json", {"method": metrics["method"], "task": ref.config["task"], "weights": fit.weights, **fit.extra})
    write_json(root / "metrics.json", metrics)
    cfg = {k: ref.config[k] for k in ("workspace", "fold_file", "fold_sha256", "fold_column", "task", "classes", "targets",
                                      "n_train", "n_test", "n_holdout", "train_ids_sha256") if k in ref.config}
    fold_file = fold_file_path(ref, workdir)
    keys = sorted(model_key(r) for r in runs)
    write_json(root / "config.json", {**cfg, "fold_file": str(fold_file.resolve()), "run_id": name,
                                      "members": [str(r.root.resolve()) for r in runs], "method": metrics["method"],
                                      "model_key": f"ens:{metrics['method']}:" + "+".join(keys),
                                      "code_version": code_version(), "train": {"model": "ensemble", "method": metrics["method"]}})
    if ref.config["task"] == "multilabel":  # no confusion matrix for several labels per row: per-class AP bars
        from .report import plot_class_ap

        plot_class_ap(metrics["per_class"], root / "class_ap.png", f"{name}: per-class AP, OOF ({metrics['method']})")
        return root
    from .plots import plot_confusion

    plot_confusion(y[have], fit.oof[have].argmax(1), ref.config["classes"], root / "confusion.png",
                   title=f"{name}: OOF ({metrics['method']})")
    return root


def print_report(root: Path) -> None:
    """Every member's CV score beside the ensemble's, the weights and the per-class scores."""
    m = read_json(root / "metrics.json")
    metric = m["metric"]
    width = max(len(n) for n in [*m["members"], root.name])
    print(f"{'run':<{width}}  OOF {metric}  CV mean ± std over folds  weight   (clip level, {m['n_rows_scored']} rows)")
    for n, s in m["members"].items():
        print(f"{n:<{width}}  {s[metric]:.4f}       {s['cv_mean']:.4f} ± {s['cv_std']:.4f}        {m['weights'].get(n, float('nan')):.3f}")
    print(f"{root.name:<{width}}  {m['oof'][metric]:.4f}       {m['mean'][metric]:.4f} ± {m['std'][metric]:.4f}"
          f"        <- ensemble ({m['method']}; {m['oof_note']})")
    if "oof_in_sample" in m:
        print(f"{'':<{width}}  {m['oof_in_sample'][metric]:.4f}  <- same weights fitted and scored on all OOF rows (optimistic)")
    best = max(m["members"].items(), key=lambda kv: kv[1][metric] * (1 if greater_is_better(metric) else -1))
    gain = m["oof"][metric] - best[1][metric]
    print(f"gain over the best member ({best[0]}): {gain:+.4f} {metric} (test it with python -m src.compare)")
    classes = list(m["per_class"])
    cw = max(len(c) for c in classes)
    key, what = ("f1", "F1") if "f1" in m["per_class"][classes[0]] else ("ap", "average precision (multi-label; no confusion matrix)")
    print(f"\nper-class {what} (OOF)\n{'class':<{cw}}  " + "  ".join(f"{n[:10]:>10}" for n in [*m["members"], "ensemble"]))
    for c in classes:
        vals = [m["members_detail"][n]["per_class"][c][key] for n in m["members"]] + [m["per_class"][c][key]]
        print(f"{c:<{cw}}  " + "  ".join(f"{v:>10.3f}" for v in vals))
    print(f"\nwritten to {root}")


def main(argv: list[str] | None = None) -> None:
    ap = cli.parser("ensemble", "Combine runs that share a fold file; write an ensemble run folder.")
    ap.add_argument("runs", nargs="+", help="run ids (under runs/) or run folders")
    ap.add_argument("--method", default="mean", choices=METHODS,
                    help="mean | geometric | rank | hill (Caruana greedy weights, nested OOF) | stack (meta-model, nested OOF)")
    ap.add_argument("--meta", default="logreg", choices=["logreg", "gbm"], help="stacking meta-model")
    ap.add_argument("--name", help="name of the ensemble run folder (default: ens-<method>-<time>)")
    ap.add_argument("--metric", help="hill climbing's objective and the reported metric (default: the runs' metric); "
                    "classification: accuracy, balanced_accuracy, macro_f1, log_loss; multilabel: roc_auc, cmap, lwlrap, "
                    "micro_f1, macro_f1, log_loss")
    cli.add_common(ap, config=False)
    args = ap.parse_args(argv)
    setup_logging()
    print_report(ensemble(args.runs, args.name, args.workdir, args.method, args.meta, args.metric))


if __name__ == "__main__":
    cli.run_command(main)
