"""Multi-label runs through the downstream stages: per-fold scoring, ensemble (every method), compare, report, tune.

One tiny Freesound-style competition (comma-separated labels, 4 classes, 24 clips, 3 grouped folds) with two
2-epoch runs (cnn, mlp); every expectation is recomputed by hand from the runs' ``oof.npy`` and the fold file.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures import make_multilabel_competition
from scipy.stats import rankdata
from sklearn.metrics import label_ranking_average_precision_score, roc_auc_score
from train_helpers import _train, _write_folds

from src.config import load_config
from src.features import prepare
from src.runs import load_fold_table, load_run

RUNS = ("ml-cnn", "ml-mlp")


@pytest.fixture(scope="module")
def ml(tmp_path_factory: pytest.TempPathFactory):
    """(config path, workdir, {run name: RunArtifacts}) of the trained multi-label competition."""
    root = tmp_path_factory.mktemp("mlstages")
    comp = make_multilabel_competition(root, style="freesound", folds={"n_splits": 3})
    cfg = load_config(comp.config)
    wd = root / "work"
    prep = prepare(cfg, wd, workers=1)
    _write_folds(prep, wd)
    for model, name in zip(("cnn", "mlp"), RUNS):
        _train(cfg, prep, wd, model, name, epochs=2)
    return comp.config, wd, {n: load_run(n, wd) for n in RUNS}


def _hand_roc_auc(Y: np.ndarray, P: np.ndarray) -> float:
    """Mean of per-class ROC-AUC over the classes with positives and negatives in these rows."""
    keep = [c for c in range(Y.shape[1]) if 0 < Y[:, c].sum() < len(Y)]
    return float(np.mean([roc_auc_score(Y[:, c], P[:, c]) for c in keep]))


def _hand_lwlrap(Y: np.ndarray, P: np.ndarray) -> float:
    w = Y.sum(1)
    return float(label_ranking_average_precision_score(Y[w > 0], P[w > 0], sample_weight=w[w > 0]))


def test_per_fold_scores_from_the_fold_file_equal_metrics_json(ml):
    from src.scoring import per_fold_metrics, score_run

    _, wd, runs = ml
    for run in runs.values():
        Y, folds = load_fold_table(run, wd)
        assert Y.shape == run.oof.shape and set(np.unique(Y)) <= {0.0, 1.0}
        assert run.config["task"] == "multilabel"
        pf = per_fold_metrics(Y, run.oof, folds, [], "multilabel")
        for k, saved in run.metrics["folds"].items():
            rows = folds == int(k)
            assert pf[k]["roc_auc"] == pytest.approx(_hand_roc_auc(Y[rows], run.oof[rows]), abs=1e-9)
            assert pf[k]["lwlrap"] == pytest.approx(_hand_lwlrap(Y[rows], run.oof[rows]), abs=1e-9)
            for name in ("roc_auc", "cmap", "lwlrap", "micro_f1", "macro_f1"):
                assert pf[k][name] == pytest.approx(saved[name], abs=1e-5), (run.name, k, name)
        scores, correct, _ = score_run(run, wd)
        assert correct is None  # no per-row right/wrong for several labels
        assert scores[0]["roc_auc"] == pytest.approx(run.metrics["folds"]["0"]["roc_auc"], abs=1e-5)


def _ensemble(wd, method: str, **kw):
    from src.ensemble import ensemble

    return load_run(ensemble(list(RUNS), f"ml-ens-{method}{kw.get('meta', '')}", wd, method, **kw), wd)


def test_mean_geometric_rank_equal_hand_computation(ml):
    _, wd, runs = ml
    a, b = (runs[n].oof.astype(np.float64) for n in RUNS)
    ta, tb = (runs[n].test.astype(np.float64) for n in RUNS)
    logit = lambda p: np.log(np.clip(p, 1e-7, 1 - 1e-7)) - np.log1p(-np.clip(p, 1e-7, 1 - 1e-7))  # noqa: E731
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    rank = lambda x, y: (rankdata(x, axis=0) / len(x) + rankdata(y, axis=0) / len(y)) / 2  # noqa: E731
    want = {"mean": ((a + b) / 2, (ta + tb) / 2),
            "geometric": (sigmoid((logit(a) + logit(b)) / 2), sigmoid((logit(ta) + logit(tb)) / 2)),
            "rank": (rank(a, b), rank(ta, tb))}
    for method, (oof, test) in want.items():
        ens = _ensemble(wd, method)
        np.testing.assert_allclose(ens.oof, oof, atol=1e-6, err_msg=method)
        np.testing.assert_allclose(ens.test, test, atol=1e-6, err_msg=method)
        assert not np.allclose(ens.oof.sum(1), 1.0)  # independent classes: never renormalised across a row
        assert ens.config["task"] == "multilabel" and "oof_thresholds" in ens.metrics
        assert set(ens.metrics["per_class"]["low"]) == {"ap", "roc_auc", "support"}
        assert (ens.root / "class_ap.png").is_file() and not (ens.root / "confusion.png").exists()
        Y, folds = load_fold_table(ens, wd)
        assert ens.metrics["folds"]["1"]["roc_auc"] == pytest.approx(_hand_roc_auc(Y[folds == 1], ens.oof[folds == 1]), abs=1e-6)


@pytest.mark.parametrize("metric", ["roc_auc", "lwlrap"])
def test_hill_climbing_keeps_or_improves_the_metric(ml, metric):
    from src.ensemble import hill_climb
    from src.metrics import multilabel_metrics

    _, wd, runs = ml
    Y, _ = load_fold_table(runs[RUNS[0]], wd)
    oofs = [runs[n].oof for n in RUNS]
    w, _ = hill_climb(oofs, Y, metric, [], task="multilabel")
    best_member = max(multilabel_metrics(Y, p)[metric] for p in oofs)
    assert multilabel_metrics(Y, sum(wi * p for wi, p in zip(w, oofs)))[metric] >= best_member - 1e-12
    if metric == "roc_auc":  # the run's metric: the CLI path, nested OOF plus the in-sample score
        ens = _ensemble(wd, "hill")
        assert ens.metrics["metric"] == "roc_auc"
        assert ens.metrics["oof_in_sample"]["roc_auc"] >= max(m["roc_auc"] for m in ens.metrics["members"].values()) - 1e-12


def test_stacking_is_per_class_logistic_regression(ml):
    _, wd, runs = ml
    ens = _ensemble(wd, "stack")
    w = json.loads((ens.root / "weights.json").read_text())
    assert w["per_class"] and w["task"] == "multilabel" and len(w["coef"]) == 4
    assert ens.oof.shape == runs[RUNS[0]].oof.shape and np.all((ens.oof >= 0) & (ens.oof <= 1))
    assert ens.test.shape == runs[RUNS[0]].test.shape and np.isfinite(ens.test).all()
    assert sum(w["weights"].values()) == pytest.approx(1.0)


def test_compare_notes_mcnemar_and_tests_per_fold_roc_auc(ml, capsys, tmp_path):
    from src.compare import MCNEMAR_MULTILABEL, main

    _, wd, runs = ml
    main([*RUNS, "--workdir", str(wd), "--out", str(tmp_path / "cmp")])
    out = capsys.readouterr().out
    assert "McNemar: not applicable (multi-label)" in out and MCNEMAR_MULTILABEL in out
    res = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert res["metric"] == "roc_auc" and res["task"] == "multilabel" and "accuracy" not in res["metrics"]
    pair = res["pairs"][0]
    assert pair["mcnemar"]["applies"] is False
    a, b = (np.array([runs[n].metrics["folds"][k]["roc_auc"] for k in ("0", "1", "2")]) for n in RUNS)
    assert pair["n_pairs"] == 3 and pair["corrected_t"]["mean_diff"] == pytest.approx(float(np.mean(a - b)), abs=1e-5)
    assert res["table"][0]["per_fold"]["fold:0"] == pytest.approx(runs[RUNS[0]].metrics["folds"]["0"]["roc_auc"], abs=1e-5)
    page = (tmp_path / "cmp" / "report.md").read_text()
    assert "| class | average precision | ROC-AUC | support (positives) |" in page
    assert (tmp_path / "cmp" / "ml-cnn_class_ap.png").is_file() and not list((tmp_path / "cmp").glob("*confusion*"))


def test_compare_and_ensemble_refuse_a_classification_metric(ml):
    from src.compare import compare
    from src.ensemble import ensemble
    from src.errors import EnsembleError

    _, wd, _ = ml
    with pytest.raises(EnsembleError, match="not a multilabel metric"):
        compare(list(RUNS), wd, metric="accuracy")
    with pytest.raises(EnsembleError, match="not a multilabel metric"):
        ensemble(list(RUNS), "ml-bad", wd, "hill", metric="accuracy")


def test_tune_two_trials_on_a_multilabel_config(ml, capsys):
    import optuna

    from src.tune import main

    cfg, wd, _ = ml
    main(["--config", str(cfg), "--workdir", str(wd), "--model", "cnn", "--study", "mlt", "--trials", "2", "--epochs", "1",
          "--no-plots", "--pruner", "none", "--fold-pruner", "none", "--device", "cpu",
          "--folds", "0", "1", *[a for f in ("channels=[4,8]", "base_channels=8", "n_blocks=3", "convs=1", "batch_size=16") for a in ("--fix", f)]])
    study = optuna.load_study(study_name="mlt", storage=f"sqlite:///{wd / 'optuna_studies' / 'mlt.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2 and study.direction == optuna.study.StudyDirection.MAXIMIZE
    for t in done:  # the objective is the mean per-fold roc_auc (the competition metric)
        assert t.value == pytest.approx(np.mean([t.user_attrs["fold_metrics"][k]["roc_auc"] for k in ("0", "1")]))
    assert "roc_auc" in capsys.readouterr().out


def test_freesound_ensemble_goes_to_a_validated_submission(ml):
    """folds -> train (cnn, mlp) -> mean ensemble -> submit: one probability column per class in the sample's order."""
    import pandas as pd

    from src.submit import main as submit_main

    config, wd, _ = ml
    ens = _ensemble(wd, "mean")
    submit_main([ens.name, "--workdir", str(wd)])
    sub = pd.read_csv(wd / "submissions" / f"{ens.name}.csv", dtype={"fname": str})
    sample = pd.read_csv(config.parent.parent / "data" / "freesound" / "sample_submission.csv", dtype={"fname": str})
    assert list(sub.columns) == list(sample.columns) and sub["fname"].tolist() == sample["fname"].tolist()
    np.testing.assert_allclose(sub[ens.config["classes"]].to_numpy(), ens.test, rtol=1e-6)
