"""A report page for runs: ``python -m src.report RUN... [--out DIR]`` (also written by ``src.compare``).

Per run: OOF confusion matrices (counts and row-normalised), scikit-learn's
classification report (per-class precision/recall/F1, macro and weighted
averages) plus micro averages and balanced accuracy, training/validation curves
per fold. Multi-label runs get a per-class table of average precision, ROC-AUC (classes
with positives only) and support, and a per-class AP bar chart instead (a confusion matrix
needs one label per row). Across runs: a bar chart of the CV score with the fold spread. One
Markdown page (``report.md``) embeds every PNG by relative path, so the folder
can be pasted into a write-up as is. Reads run artifacts only.
"""
from __future__ import annotations

import logging
import re
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import cli  # noqa: E402
from .artifacts import read_json, save_figure, setup_logging, write_bytes  # noqa: E402
from .metrics import compute_metrics  # noqa: E402
from .plots import plot_confusion, plot_curves  # noqa: E402
from .runs import RunArtifacts, load_fold_table, load_run  # noqa: E402
from .scoring import Model, multilabel_class_scores, score_models, task_metrics  # noqa: E402

log = logging.getLogger(__name__)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def plot_scores(names: list[str], per_fold: list[np.ndarray], metric: str, path: Path) -> None:
    """Bar = mean over folds, error bar = std (ddof=1), dots = the individual folds."""
    fig, ax = plt.subplots(figsize=(1.5 + 1.1 * len(names), 3.8))
    x = np.arange(len(names))
    means = [v.mean() for v in per_fold]
    sds = [v.std(ddof=1) if len(v) > 1 else 0 for v in per_fold]
    ax.bar(x, means, yerr=sds, capsize=4, color="#9ecae1", edgecolor="#3182bd")
    for i, v in enumerate(per_fold):
        ax.scatter(np.full(len(v), i) + np.linspace(-0.15, 0.15, len(v)), v, s=12, color="#08306b", zorder=3)
    lo = min(v.min() for v in per_fold)
    hi = max(v.max() for v in per_fold)
    ax.set_ylim(max(0.0, lo - 0.1 * (hi - lo + 1e-3) - 0.02), hi + 0.1 * (hi - lo + 1e-3) + 0.01)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set(ylabel=metric, title=f"CV {metric} per model (bar: mean, whisker: std, dots: folds)")
    save_figure(path, fig)


def plot_cd_diagram(names: list[str], avg_ranks: list[float], cd: float, path: Path) -> None:
    """Demšar-style critical-difference diagram: models on a rank axis; a bar joins models closer than the CD."""
    order = np.argsort(avg_ranks)
    r = np.asarray(avg_ranks)[order]
    labels = [names[i] for i in order]
    k = len(names)
    fig, ax = plt.subplots(figsize=(8, 1.6 + 0.35 * k))
    ax.set_xlim(0.8, k + 0.2)
    ax.set_ylim(-(k + 2), 2)
    ax.axhline(0, color="black", lw=1)
    for t in range(1, k + 1):
        ax.plot([t, t], [0, 0.2], color="black", lw=1)
        ax.text(t, 0.4, str(t), ha="center", fontsize=8)
    for i, (rank, lab) in enumerate(zip(r, labels)):
        y = -(i + 1)
        ax.plot([rank, rank, 0.85 if i < (k + 1) // 2 else k + 0.15], [0, y, y], color="black", lw=0.8)
        left = i < (k + 1) // 2
        ax.text(0.83 if left else k + 0.17, y, f"{lab} ({rank:.2f})", ha="right" if left else "left", va="center", fontsize=8)
    ax.plot([1, 1 + cd], [1.2, 1.2], color="red", lw=2)
    ax.text(1 + cd / 2, 1.4, f"CD = {cd:.2f}", ha="center", color="red", fontsize=8)
    row, last_j = 0, -1
    for i in range(k):  # maximal groups of consecutive models within the CD
        j = max(jj for jj in range(i, k) if r[jj] - r[i] <= cd)
        if j > i and j > last_j:
            row, last_j = row + 1, j
            ax.plot([r[i] - 0.03, r[j] + 0.03], [-0.3 * row, -0.3 * row], color="grey", lw=3)
    ax.axis("off")
    ax.set_title("average rank over folds (1 = best); grey bars join models not significantly different (Nemenyi)", fontsize=9)
    save_figure(path, fig)


def plot_class_ap(scores: dict[str, dict[str, float]], path: Path, title: str) -> None:
    """Horizontal bars of each class's OOF average precision (the multi-label stand-in for a confusion matrix)."""
    names = list(scores)
    fig, ax = plt.subplots(figsize=(6, 1.0 + 0.28 * len(names)))
    ap = [scores[c]["ap"] for c in names]
    ax.barh(np.arange(len(names)), np.nan_to_num(ap), color="#9ecae1", edgecolor="#3182bd")
    ax.set_yticks(np.arange(len(names)), [f"{c} (n={scores[c]['support']})" for c in names], fontsize=7)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="average precision (OOF)", title=title)
    save_figure(path, fig)


def multilabel_section(run: RunArtifacts, Y: np.ndarray, have: np.ndarray, out: Path) -> list[str]:
    """Markdown for one multi-label run: its OOF metrics, a per-class AP / ROC-AUC / support table and AP bars."""
    m = compute_metrics("multilabel", Y[have], run.oof[have], run.config.get("targets", []))
    per = multilabel_class_scores(Y[have], run.oof[have], run.config["classes"])
    slug = _slug(run.name)
    plot_class_ap(per, out / f"{slug}_class_ap.png", f"{run.name}: per-class AP (OOF)")
    md = [f"### {run.name}", "", f"model: `{run.config.get('train', {}).get('model', '?')}`"
          f"{' (' + run.config['method'] + ')' if 'method' in run.config else ''}; multi-label; OOF rows scored: {int(have.sum())}; "
          + ", ".join(f"{k} {v:.4f}" for k, v in m.items()), "",
          "| class | average precision | ROC-AUC | support (positives) |", "|---|---:|---:|---:|"]
    fmt = lambda v: "-" if np.isnan(v) else f"{v:.3f}"  # noqa: E731
    md += [f"| {c} | {fmt(v['ap'])} | {fmt(v['roc_auc'])} | {v['support']} |"
           for c, v in per.items()]
    return md + ["", "No confusion matrix: a multi-label row has several true labels.", "",
                 f"![{run.name} per-class AP]({slug}_class_ap.png)", ""]


def run_section(run: RunArtifacts, out: Path, workdir: str | Path, metric: str) -> list[str]:
    """Markdown for one run, with its PNGs written into ``out``."""
    from sklearn.metrics import balanced_accuracy_score, classification_report, precision_recall_fscore_support

    y, _ = load_fold_table(run, workdir)
    have = ~np.isnan(run.oof).any(1)
    if run.config.get("task") == "multilabel":
        return multilabel_section(run, y, have, out) + _curves_md(run, out, metric)
    classes = run.config["classes"]
    pred = run.oof[have].argmax(1)
    slug = _slug(run.name)
    plot_confusion(y[have], pred, classes, out / f"{slug}_confusion.png", run.name)
    rep = classification_report(y[have], pred, labels=np.arange(len(classes)), target_names=classes, output_dict=True, zero_division=0)
    p, r, f, _ = precision_recall_fscore_support(y[have], pred, average="micro", zero_division=0)
    rep["micro avg"] = {"precision": p, "recall": r, "f1-score": f, "support": int(have.sum())}
    m = compute_metrics("classification", y[have], run.oof[have], run.config.get("targets", []))
    md = [f"### {run.name}", "", f"model: `{run.config.get('train', {}).get('model', '?')}`"
          f"{' (' + run.config['method'] + ')' if 'method' in run.config else ''}; OOF rows scored: {int(have.sum())}; "
          f"OOF accuracy {m['accuracy']:.4f}, balanced accuracy {balanced_accuracy_score(y[have], pred):.4f}, "
          f"macro-F1 {m['macro_f1']:.4f}, log loss {m['log_loss']:.4f}", "",
          "| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for name in [*classes, "micro avg", "macro avg", "weighted avg"]:
        v = rep[name]
        md.append(f"| {name} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1-score']:.3f} | {int(v['support'])} |")
    md += ["", f"![{run.name} confusion]({slug}_confusion.png)", ""]
    return md + _curves_md(run, out, metric)


def _curves_md(run: RunArtifacts, out: Path, metric: str) -> list[str]:
    """The run's training curves (none for ensembles) as a PNG and its Markdown line."""
    slug = _slug(run.name)
    hist = run.metrics.get("history") or {p.name[4:-13]: read_json(p)["history"] for p in run.root.glob("fold*_metrics.json")}
    if plot_curves(hist, metric, out / f"{slug}_curves.png", run.name):
        return [f"![{run.name} curves]({slug}_curves.png)", ""]
    return []


def build_report(runs: list[RunArtifacts], out: Path, workdir: str | Path = ".", extra_md: str = "", models=None,
                 metric: str | None = None) -> Path:
    """Write ``out/report.md`` and its PNGs; ``extra_md`` (the comparison) goes after the score chart."""
    out.mkdir(parents=True, exist_ok=True)
    names = task_metrics(runs[0].config.get("task", "classification"))
    metric = metric or runs[0].metrics.get("metric", names[0])
    if metric not in names:
        metric = names[0]
    if models is None:
        models = [Model(r.name, {r.config.get("fold_column", "fold"): r}) for r in runs]
        score_models(models, workdir)
    plot_scores([m.label for m in models], [m.fold_scores(metric, sorted(m.scores)) for m in models], metric, out / "scores.png")
    md = [f"# Model report ({datetime.now().strftime('%Y-%m-%d %H:%M')})", "",
          f"Runs: {', '.join(r.name for r in runs)}. Scores are out-of-fold, clip level, on fold file "
          f"`{Path(runs[0].config['fold_file']).name}`.", "", "![scores per model](scores.png)", ""]
    if extra_md:
        md += [extra_md, ""]
    md += ["## Runs", ""]
    for r in runs:
        md += run_section(r, out, workdir, metric)
    page = out / "report.md"
    write_bytes(page, "\n".join(md).encode())
    return page


def main(argv: list[str] | None = None) -> None:
    ap = cli.parser("report", "Confusion matrices, per-class scores, curves and a score chart for runs, as one Markdown page.")
    ap.add_argument("runs", nargs="+", help="run ids (under runs/) or run folders")
    ap.add_argument("--out", help="output folder (default: reports/report-<time>)")
    cli.add_common(ap, config=False)
    args = ap.parse_args(argv)
    setup_logging()
    out = Path(args.out) if args.out else Path(args.workdir) / "reports" / f"report-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    page = build_report([load_run(r, args.workdir) for r in args.runs], out, args.workdir)
    print(f"wrote {page} and {len(list(out.glob('*.png')))} PNG file(s) in {out}")


if __name__ == "__main__":
    cli.run_command(main)
