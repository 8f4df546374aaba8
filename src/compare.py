"""Honest comparison of models trained on one fold file: ``python -m src.compare RUN... [--baseline RUN]``.

Everything comes from saved artifacts: per-fold scores are recomputed from each
run's ``oof.npy`` on the shared fold file (the same numbers as
``metrics["folds"]``, and available for ensembles too), McNemar uses the OOF rows.

Repeated k-fold: runs trained on the same fold file with different fold columns
(``fold``, ``fold_r1``, ...) are one *model* measured on several repeats. Runs are
grouped automatically by their training configuration without run id and repeat
(``config.json["model_key"]`` for ensembles), or explicitly as ``LABEL=RUN_A,RUN_B``.
Two models are paired on the fold columns they share, giving ``J = k * r`` paired
scores; the corrected repeated k-fold t-test then uses ``1/J + n_test/n_train``.

Seed repeats: runs given under one explicit label on the *same* fold column (``LABEL=RUN_S1,RUN_S2``,
trained with different ``--seed``) are one model whose per-fold score is the mean over its seeds.
That removes the luck of one initialisation (what a tuned-vs-default claim needs) without pretending
to have more folds: the number of paired scores stays ``k`` per column. McNemar counts a row correct
when the majority of seeds are.

Multi-label runs (``task = "multilabel"``): the paired fold tests (corrected t, Wilcoxon, Bayesian, Friedman)
work on any per-fold metric (``roc_auc``, ``cmap``, ``lwlrap``, ``micro_f1``, ``macro_f1``, ``log_loss``).
McNemar needs one right-or-wrong answer per row, which a row with several labels does not have; it is not
computed, and the pair records (and prints) a note saying so.
"""
from __future__ import annotations

import itertools
import logging
from datetime import datetime
from pathlib import Path

import numpy as np

from . import cli, stats
from .artifacts import setup_logging, write_json
from .errors import EnsembleError
from .metrics import greater_is_better
from .runs import RunArtifacts, check_compatible, load_run, model_key
from .scoring import Model, fold_sizes, score_models, task_metrics

log = logging.getLogger(__name__)
METRICS = task_metrics("classification")
MCNEMAR_MULTILABEL = ("McNemar does not apply to multi-label predictions: a row with several labels has no single "
                      "right-or-wrong answer to count; use the paired per-fold tests")


def parse_run_args(args: list[str], workdir: str | Path) -> list[tuple[str | None, RunArtifacts]]:
    """``RUN`` or ``LABEL=RUN1,RUN2`` -> (explicit label or None, run)."""
    out = []
    for a in args:
        label, _, rest = a.partition("=") if "=" in a else (None, "", a)
        out.extend((label, load_run(r, workdir)) for r in rest.split(","))
    return out


def group_models(items: list[tuple[str | None, RunArtifacts]]) -> list[Model]:
    """Group runs into models (see the module docstring); refuse runs on other data or with a repeat given twice."""
    ref = items[0][1]
    for _, r in items[1:]:  # the fold column may differ: repeats of one model are compared across columns
        check_compatible(ref.config, r.config, (ref.name, r.name), keys=["fold_sha256", "train_ids_sha256", "classes", "task"],
                         fix="only runs on the same data and folds can be compared")
    groups: dict[str, Model] = {}
    for label, r in items:
        key = f"label:{label}" if label else model_key(r)
        col = r.config.get("fold_column", "fold")
        m = groups.setdefault(key, Model(label or r.name, {}))
        if col in m.runs and not label:
            raise EnsembleError(f"runs {m.runs[col].name} and {r.name} are the same model on the same fold column {col!r}; "
                                f"give them different labels (LABEL=RUN) to compare them as two models, or one label "
                                f"(LABEL=RUN_A,RUN_B) to average them as seed repeats")
        if col in m.runs:
            m.seeds.setdefault(col, []).append(r)
        else:
            m.runs[col] = r
    for key, m in groups.items():
        if len(m.runs) > 1 and not key.startswith("label:"):
            m.label = f"{m.label}(x{len(m.runs)} repeats)"
        n_seeds = {c: 1 + len(m.seeds.get(c, [])) for c in m.runs}
        if len(set(n_seeds.values())) > 1:
            raise EnsembleError(f"model {m.label}: fold columns have different numbers of seed runs ({n_seeds}); "
                                f"give every column the same seeds")
        if max(n_seeds.values()) > 1:
            m.label = f"{m.label}(x{max(n_seeds.values())} seeds)"
    return list(groups.values())


def compare_pair(a: Model, b: Model, metric: str, n_train: float, n_test: float, rope: float) -> dict:
    """All paired tests of A vs B on the fold columns both have; positive differences mean A is better."""
    cols = sorted(set(a.scores) & set(b.scores))
    if not cols:
        raise EnsembleError(f"{a.label} and {b.label} share no fold column ({sorted(a.scores)} vs {sorted(b.scores)})")
    if [sorted(a.scores[c]) for c in cols] != [sorted(b.scores[c]) for c in cols]:
        raise EnsembleError(f"{a.label} and {b.label} were scored on different folds; train every fold of both")
    sign = 1.0 if greater_is_better(metric) else -1.0
    sa, sb = sign * a.fold_scores(metric, cols), sign * b.fold_scores(metric, cols)
    if len(sa) < 2:
        raise EnsembleError(f"{a.label} and {b.label} share {len(sa)} scored fold(s); a paired test needs at least 2",
                            "train more folds of both runs (--folds), or compare their scores without a test")
    res = {"a": a.label, "b": b.label, "columns": cols, "n_pairs": len(sa), "diff_mean": float(sign * np.mean(sa - sb)),
           "corrected_t": stats.corrected_resampled_ttest(sa, sb, n_train, n_test).to_dict(),
           "plain_t": stats.paired_ttest(sa, sb).to_dict(),
           "wilcoxon": stats.wilcoxon_test(sa, sb).to_dict(),
           "mcnemar": mcnemar_pair(a, b, cols[0]),
           "bayes": stats.bayesian_correlated_ttest(sa, sb, n_test / (n_test + n_train), rope).to_dict(),
           "warning": stats.too_few_folds_warning(len(sa))}
    if len(cols) > 1:
        res["corrected_t"]["test"] = f"corrected repeated k-fold t-test (Bouckaert-Frank, {len(cols)} repeats)"
    return res


def mcnemar_pair(a: Model, b: Model, col: str) -> dict:
    """McNemar on the OOF rows of fold column ``col`` both models predicted; for multi-label models a
    not-applicable record (``applies`` False, p-value NaN, the reason in ``note``) instead of a test."""
    if col not in a.correct or col not in b.correct:
        return {"test": "McNemar", "applies": False, "p_value": float("nan"), "note": MCNEMAR_MULTILABEL}
    ca, cb = a.correct[col], b.correct[col]
    both = ~np.isnan(ca) & ~np.isnan(cb)
    return {**stats.mcnemar_test(ca[both] > 0, cb[both] > 0).to_dict(), "applies": True}


def apply_holm(pairs: list[dict], alpha: float) -> None:
    """Holm-adjust each test's p-values over the pairs, then write the verdict line of every pair."""
    for test in ("corrected_t", "wilcoxon", "mcnemar"):
        if test == "mcnemar" and not all(p[test]["applies"] for p in pairs):
            continue  # multi-label: nothing to adjust
        adj = stats.holm([p[test]["p_value"] for p in pairs]) if pairs else []
        for p, v in zip(pairs, adj):
            p[test]["p_holm"] = float(v)
    for p in pairs:
        p["verdict"] = verdict(p, alpha, len(pairs))


def verdict(p: dict, alpha: float, n_pairs: int) -> str:
    t, bay = p["corrected_t"], p["bayes"]
    corr = f"Holm over {n_pairs} pairs" if n_pairs > 1 else "single pair"
    mc = f"McNemar p={p['mcnemar']['p_value']:.4f}" if p["mcnemar"]["applies"] else "McNemar: not applicable (multi-label)"
    detail = (f"corrected t-test p={t['p_value']:.4f} (adjusted {t['p_holm']:.4f}, {corr}; uncorrected paired t p={p['plain_t']['p_value']:.4f}), "
              f"Wilcoxon p={p['wilcoxon']['p_value']:.4f}, {mc}; "
              f"Bayesian P(A better)={bay['p_a_better']:.2f}, P(equivalent, ROPE ±{bay['rope']:g})={bay['p_equivalent']:.2f}, "
              f"P(B better)={bay['p_b_better']:.2f}")
    a, b = p["a"], p["b"]
    if t["p_holm"] < alpha:
        better, worse = (a, b) if t["mean_diff"] > 0 else (b, a)
        head = f"{better} better than {worse}: p={t['p_holm']:.4f}, corrected"
    else:
        head = f"{a} vs {b}: no significant difference (p={t['p_holm']:.4f}, corrected; mean diff {p['diff_mean']:+.4f})"
    out = f"{head} -- {detail}"
    return out + (f"\n  WARNING: {p['warning']}" if p["warning"] else "")


def friedman(models: list[Model], metric: str, alpha: float) -> dict | None:
    """Friedman test with folds as blocks on the columns every model has; None with fewer than three models."""
    if len(models) < 3:
        return None
    cols = sorted(set.intersection(*(set(m.scores) for m in models)))
    if not cols:
        return None
    S = np.stack([m.fold_scores(metric, cols) for m in models], axis=1)
    fr = stats.friedman_test(S, alpha, greater_is_better(metric))
    return {**fr.to_dict(), "models": [m.label for m in models], "columns": cols,
            "note": "blocks are folds (not data sets): they share training rows, so read the p-value as indicative"}


def table_rows(models: list[Model], metric: str, names: tuple[str, ...] = METRICS) -> list[dict]:
    """One row per model: mean ± std (ddof=1) over all folds of every metric in ``names``, the primary metric per fold,
    segment accuracy."""
    rows = []
    for m in models:
        cols = sorted(m.scores)
        row = {"model": m.label, "runs": ",".join(r.name for r in m.all_runs()), "folds": sum(len(m.scores[c]) for c in cols)}
        for name in names:
            v = m.fold_scores(name, cols)
            row[name] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0)
        row["per_fold"] = {f"{c}:{k}": m.scores[c][k][metric] for c in cols for k in sorted(m.scores[c])}
        seg = [v for c in cols for v in m.segment.get(c, {}).values()]
        if seg:
            row["segment_accuracy"] = (float(np.mean(seg)), float(np.std(seg, ddof=1)) if len(seg) > 1 else 0.0)
        rows.append(row)
    return rows


def compare(run_args: list[str], workdir: str | Path = ".", baseline: str | None = None, metric: str | None = None,
            rope: float = 0.01, alpha: float = 0.05) -> dict:
    """The whole comparison as a JSON-able dict (table, pairs with verdicts, Friedman)."""
    if baseline:  # listing the baseline among the runs as well is natural; count it once
        run_args = [r for r in run_args if r != baseline]
    items = parse_run_args(run_args + ([baseline] if baseline else []), workdir)
    models = group_models(items)
    if len(models) < 2:
        raise EnsembleError("give at least two models to compare")
    score_models(models, workdir)
    task = items[0][1].config.get("task", "classification")
    names = task_metrics(task)
    metric = metric or items[0][1].metrics.get("metric", names[0])
    if metric not in names:
        raise EnsembleError(f"--metric {metric!r} is not a {task} metric", f"choose from {list(names)}")
    n_train, n_test = fold_sizes(items[0][1], workdir)
    if baseline:
        base_name = items[-1][1].name  # the baseline was appended last
        base = next(m for m in models if any(r.name == base_name for r in m.all_runs()))
        pairs_of = [(base, m) for m in models if m is not base]
    else:
        pairs_of = list(itertools.combinations(models, 2))
    pairs = [compare_pair(a, b, metric, n_train, n_test, rope) for a, b in pairs_of]
    apply_holm(pairs, alpha)
    notes = [MCNEMAR_MULTILABEL] if any(not p["mcnemar"]["applies"] for p in pairs) else []
    return {"metric": metric, "task": task, "metrics": list(names), "greater_is_better": greater_is_better(metric), "alpha": alpha,
            "rope": rope, "n_train": n_train, "n_test": n_test, "table": table_rows(models, metric, names), "pairs": pairs,
            "friedman": friedman(models, metric, alpha), "notes": notes, "models": models}


def format_table(res: dict) -> str:
    metric, rows, names = res["metric"], res["table"], res.get("metrics", METRICS)
    w = max(len(r["model"]) for r in rows)
    head = f"{'model':<{w}}  folds  " + "  ".join(f"{n:>17}" for n in names) + "   segment acc"
    lines = [head]
    for r in rows:
        seg = f"{r['segment_accuracy'][0]:.4f}±{r['segment_accuracy'][1]:.4f}" if "segment_accuracy" in r else "-"
        lines.append(f"{r['model']:<{w}}  {r['folds']:>5}  " + "  ".join(f"{r[n][0]:>8.4f}±{r[n][1]:<8.4f}" for n in names) + f"   {seg}")
    lines.append(f"\nper-fold {metric} (clip level):")
    for r in rows:
        lines.append(f"{r['model']:<{w}}  " + " ".join(f"{v:.3f}" for v in r["per_fold"].values()))
    return "\n".join(lines)


def format_report(res: dict) -> str:
    out = [f"metric: {res['metric']} ({'higher' if res['greater_is_better'] else 'lower'} is better), mean ± std (ddof=1) over folds, "
           f"fold size ~{res['n_test']:.0f} test / {res['n_train']:.0f} train rows", format_table(res), "", "pairwise tests:"]
    out += [f"- {p['verdict']}" for p in res["pairs"]]
    out += [f"note: {n}" for n in res.get("notes", [])]
    fr = res["friedman"]
    if fr:
        ranks = ", ".join(f"{m} {r:.2f}" for m, r in sorted(zip(fr["models"], fr["avg_ranks"]), key=lambda t: t[1]))
        out.append(f"\nFriedman over {fr['n_blocks']} folds: chi2={fr['statistic']:.3f}, p={fr['p_value']:.4f}; average ranks (1 = best): "
                   f"{ranks}; Nemenyi critical difference {fr['critical_difference']:.3f} ({fr['note']})")
    return "\n".join(out)


def write_outputs(res: dict, out: Path, workdir: str | Path, with_report: bool = True) -> Path:
    """compare.json, compare.md, the critical-difference diagram and (by default) the full report page."""
    from .report import build_report, plot_cd_diagram

    out.mkdir(parents=True, exist_ok=True)
    js = {k: v for k, v in res.items() if k != "models"}
    write_json(out / "compare.json", js)
    md = ["## Model comparison", "", "```", format_report(res), "```", ""]
    if res["friedman"]:
        fr = res["friedman"]
        plot_cd_diagram(fr["models"], fr["avg_ranks"], fr["critical_difference"], out / "cd_diagram.png")
        md += ["![critical-difference diagram](cd_diagram.png)", ""]
    runs = [r for m in res["models"] for r in m.all_runs()]
    if with_report:
        return build_report(runs, out, workdir, extra_md="\n".join(md), models=res["models"], metric=res["metric"])
    from .artifacts import write_bytes

    write_bytes(out / "compare.md", "\n".join(md).encode())
    return out / "compare.md"


def main(argv: list[str] | None = None) -> None:
    ap = cli.parser("compare", "Compare models trained on one fold file with corrected paired tests.")
    ap.add_argument("runs", nargs="+", help="run ids/folders, or LABEL=RUN1,RUN2 to group repeats of one model "
                    "(other fold columns: repeated k-fold; the same column: seed repeats, averaged per fold)")
    ap.add_argument("--baseline", help="compare every model against this one only (default: all pairs)")
    ap.add_argument("--metric", choices=list(dict.fromkeys((*METRICS, *task_metrics("multilabel")))),
                    help="default: the runs' competition metric (multilabel: roc_auc, cmap, lwlrap, micro_f1, macro_f1, log_loss)")
    ap.add_argument("--rope", type=float, default=0.01, help="region of practical equivalence for the Bayesian test (metric units)")
    ap.add_argument("--alpha", type=float, default=0.05, help="significance level (after Holm)")
    ap.add_argument("--out", help="folder for compare.json/.md, PNGs and report.md (default: reports/compare-<time>)")
    ap.add_argument("--no-report", action="store_true", help="skip the per-run report (confusion matrices, curves)")
    cli.add_common(ap, config=False)
    args = ap.parse_args(argv)
    setup_logging()
    res = compare(args.runs, args.workdir, args.baseline, args.metric, args.rope, args.alpha)
    out = Path(args.out) if args.out else Path(args.workdir) / "reports" / f"compare-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    page = write_outputs(res, out, args.workdir, not args.no_report)
    print(format_report(res))
    print(f"\nwritten: {page} (+ compare.json, PNGs in {out})")


if __name__ == "__main__":
    cli.run_command(main)
