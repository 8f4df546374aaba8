"""Ensembling on constructed predictions where the right answer is known.

``write_fold_file`` / ``write_fake_run`` / ``fake_probs`` build run folders that follow the
README's artifact contract without training anything; tests/test_compare.py,
tests/test_submit.py and tests/test_stats.py import them from here.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import src.ensemble as ens_mod
from src import cli
from src.artifacts import file_sha256, write_json
from src.ensemble import EnsembleError, ensemble, geometric_mean, hill_climb, main, mean_probs, rank_average
from src.errors import RunError
from src.metrics import compute_metrics
from src.runs import fold_summary, load_run

CLASSES = ["blues", "jazz", "rock"]


def write_fold_file(workdir: Path, n: int = 150, k: int = 5, repeats: int = 1, seed: int = 0, name: str = "fake_k5.csv",
                    classes: list[str] = CLASSES) -> tuple[Path, np.ndarray]:
    """A fold file (id,label,group,fold[,fold_r1..]) with balanced labels; returns (path, class index per row)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(classes)
    df = pd.DataFrame({"id": [f"clip{i:04d}" for i in range(n)], "label": [classes[i] for i in y], "group": [f"g{i}" for i in range(n)]})
    for r in range(repeats):
        f = np.empty(n, int)
        for c in range(len(classes)):  # stratified
            idx = rng.permutation(np.flatnonzero(y == c))
            f[idx] = np.arange(len(idx)) % k
        df["fold" if r == 0 else f"fold_r{r}"] = f
    path = workdir / "folds" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path, y


def fake_probs(y: np.ndarray, acc: float, n_classes: int = 3, seed: int = 0, confidence: float = 0.7) -> np.ndarray:
    """Probabilities whose argmax is right on a fraction ``acc`` of rows (chosen at random)."""
    rng = np.random.default_rng(seed)
    n = len(y)
    right = rng.random(n) < acc
    pred = np.where(right, y, (y + rng.integers(1, n_classes, n)) % n_classes)
    p = rng.dirichlet(np.ones(n_classes), n) * (1 - confidence)
    p[np.arange(n), pred] += confidence
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


def write_fake_run(workdir: Path, name: str, oof: np.ndarray, fold_file: Path, y: np.ndarray, *, test: np.ndarray | None = None,
                   fold_column: str = "fold", classes: list[str] = CLASSES, model: str = "mlp", params: dict | None = None,
                   metric: str = "accuracy", workspace_path: str = "", holdout: np.ndarray | None = None,
                   n_test: int = 12, segment_accuracy: bool = False) -> Path:
    """A run folder under the artifact contract: config.json, oof.npy, test.npy, metrics.json, fold<k>_metrics.json."""
    root = workdir / "runs" / name
    root.mkdir(parents=True, exist_ok=True)
    folds = pd.read_csv(fold_file)[fold_column].to_numpy()
    test = fake_probs(np.arange(n_test) % len(classes), 0.8, len(classes), seed=len(name)) if test is None else test
    np.save(root / "oof.npy", oof.astype(np.float32))
    np.save(root / "test.npy", test.astype(np.float32))
    if holdout is not None:
        np.save(root / "holdout.npy", holdout.astype(np.float32))
    per_fold, hist = {}, {}
    for k in np.unique(folds):
        m = compute_metrics("classification", y[folds == k], oof[folds == k], ["label"])
        if segment_accuracy:
            m["segment_accuracy"] = m["accuracy"] - 0.05
        per_fold[str(k)] = {**m, "epoch": 3}
        hist[str(k)] = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "val_accuracy": m["accuracy"] * e / 3} for e in (1, 2, 3)]
        write_json(root / f"fold{k}_metrics.json", {"best": per_fold[str(k)], "history": hist[str(k)]})
    write_json(root / "metrics.json", {
        "metric": metric, "level": "clip", "folds": per_fold, "folds_done": [int(k) for k in np.unique(folds)],
        **fold_summary(per_fold), "oof": compute_metrics("classification", y, oof, ["label"]), "history": hist})
    write_json(root / "config.json", {
        "run_id": name, "workspace": {"path": workspace_path}, "fold_file": str(fold_file), "fold_sha256": file_sha256(fold_file),
        "fold_column": fold_column, "task": "classification", "classes": classes, "targets": ["label"],
        "train": {"model": model, "model_params": params or {}, "run_id": name, "repeat": 0 if fold_column == "fold" else int(fold_column[6:])},
        "n_train": len(y), "n_test": len(test), "n_holdout": 0 if holdout is None else len(holdout), "train_ids_sha256": "ids123"})
    return root


@pytest.fixture
def ws(tmp_path: Path):
    fold_file, y = write_fold_file(tmp_path)
    return tmp_path, fold_file, y


def _acc(y, p):
    return float((p.argmax(1) == y).mean())


# ----------------------------------------------------------------------------- combiners


def test_mean_geometric_rank_on_known_matrices():
    a = np.array([[0.8, 0.2], [0.4, 0.6]])
    b = np.array([[0.2, 0.8], [0.6, 0.4]])
    np.testing.assert_allclose(mean_probs([a, b]), [[0.5, 0.5], [0.5, 0.5]])
    g = geometric_mean([np.array([[0.9, 0.1]]), np.array([[0.1, 0.9]]), np.array([[0.5, 0.5]])])
    np.testing.assert_allclose(g, [[0.5, 0.5]], atol=1e-6)
    g2 = geometric_mean([np.array([[0.8, 0.2]]), np.array([[0.5, 0.5]])])
    want = np.sqrt([0.8 * 0.5, 0.2 * 0.5])
    np.testing.assert_allclose(g2, [want / want.sum()], atol=1e-6)
    r = rank_average([np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])])
    # per class column ranks /3: col0 [3,1,2]/3, col1 [1,3,2]/3 -> rows renormalised
    np.testing.assert_allclose(r, [[0.75, 0.25], [0.25, 0.75], [0.5, 0.5]], atol=1e-6)
    assert np.allclose(r.sum(1), 1)


def test_rank_average_ignores_calibration():
    """A monotone distortion of one model's scores must not change the rank average."""
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(3), 40)
    q = rng.dirichlet(np.ones(3), 40)
    np.testing.assert_allclose(rank_average([p, q]), rank_average([p ** 3, q]), atol=1e-6)


def test_hill_climb_picks_perfect_model_and_ignores_noise():
    y = np.arange(300) % 3
    perfect = np.eye(3)[y] * 0.9 + 0.1 / 3
    noise = [np.random.default_rng(s).dirichlet(np.ones(3), 300) for s in range(4)]
    w, path = hill_climb([*noise[:2], perfect, *noise[2:]], y, "accuracy", ["label"])
    assert w[2] == pytest.approx(1.0)
    assert set(path) == {2}


def test_hill_climb_combines_complementary_models():
    """Two models right on different halves (confident where right, hesitant where wrong) beat each alone."""
    n = 200
    y = np.arange(n) % 2
    first = np.arange(n) < n // 2
    a = np.where(first[:, None], np.eye(2)[y] * 0.9 + 0.05, np.eye(2)[1 - y] * 0.2 + 0.4)
    b = np.where(~first[:, None], np.eye(2)[y] * 0.9 + 0.05, np.eye(2)[1 - y] * 0.2 + 0.4)
    w, _ = hill_climb([a, b], y, "accuracy", ["label"])
    assert w == pytest.approx([0.5, 0.5])
    assert _acc(y, mean_probs([a, b], w)) == 1.0


# ----------------------------------------------------------------------------- the CLI / run folders


def test_mean_ensemble_writes_contract_and_scores(ws, capsys):
    root, ff, y = ws
    good = fake_probs(y, 0.85, seed=1)
    bad = fake_probs(y, 0.6, seed=2)
    write_fake_run(root, "a", good, ff, y)
    write_fake_run(root, "b", bad, ff, y)
    main(["a", "b", "--name", "ens", "--workdir", str(root)])
    out = capsys.readouterr().out
    assert "per-class F1" in out and "gain over the best member" in out
    ens = load_run("ens", root)
    np.testing.assert_allclose(ens.oof, (good + bad) / 2, atol=1e-6)
    m = ens.metrics
    assert m["oof"]["accuracy"] == pytest.approx(_acc(y, (good + bad) / 2))
    assert set(m["members"]) == {"a", "b"} and m["members"]["a"]["accuracy"] == pytest.approx(_acc(y, good))
    assert m["weights"] == {"a": 0.5, "b": 0.5}
    assert set(m["per_class"]) == set(CLASSES) and set(m["folds"]) == {"0", "1", "2", "3", "4"}
    assert (root / "runs/ens/weights.json").is_file() and (root / "runs/ens/test.npy").is_file()
    assert ens.config["fold_sha256"] == file_sha256(ff) and ens.config["classes"] == CLASSES


@pytest.mark.parametrize("method", ["geometric", "rank", "hill", "stack"])
def test_every_method_runs_and_can_be_ensembled_again(ws, method):
    root, ff, y = ws
    for i, acc in enumerate((0.9, 0.7, 0.5)):
        write_fake_run(root, f"m{i}", fake_probs(y, acc, seed=i), ff, y)
    ens = load_run(ensemble(["m0", "m1", "m2"], f"e-{method}", root, method=method), root)
    assert ens.oof.shape == (len(y), 3) and not np.isnan(ens.oof).any()
    np.testing.assert_allclose(ens.oof.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(ens.test.sum(1), 1, atol=1e-5)
    assert ens.metrics["oof"]["accuracy"] > 0.6
    again = load_run(ensemble([f"e-{method}", "m0"], f"again-{method}", root), root)  # an ensemble is a run
    assert again.oof.shape == ens.oof.shape


def test_hill_ensemble_reports_nested_oof(ws):
    """The perfect run gets all the weight; the honest OOF equals the perfect run's OOF."""
    root, ff, y = ws
    perfect = (np.eye(3)[y] * 0.9 + 0.1 / 3).astype(np.float32)
    write_fake_run(root, "perfect", perfect, ff, y)
    for s in range(3):
        write_fake_run(root, f"noise{s}", np.random.default_rng(s).dirichlet(np.ones(3), len(y)).astype(np.float32), ff, y)
    ens = load_run(ensemble(["noise0", "perfect", "noise1", "noise2"], "hill", root, method="hill"), root)
    assert ens.metrics["weights"]["perfect"] == pytest.approx(1.0)
    assert ens.metrics["oof"]["accuracy"] == 1.0
    np.testing.assert_allclose(ens.oof, perfect, atol=1e-6)
    w = json.loads((root / "runs/hill/weights.json").read_text())
    assert all(v["perfect"] == 1.0 for v in w["weights_per_outer_fold"].values())


def test_stacking_oof_is_nested_not_in_sample(ws):
    """Pure-noise runs: a meta-model scored in-sample looks better than chance; the nested OOF must not."""
    root, ff, y = ws
    for s in range(6):
        write_fake_run(root, f"n{s}", np.random.default_rng(10 + s).dirichlet(np.ones(3) * 0.3, len(y)).astype(np.float32), ff, y)
    ens = load_run(ensemble([f"n{s}" for s in range(6)], "stk", root, method="stack"), root)
    m = ens.metrics
    assert m["oof_in_sample"]["accuracy"] > m["oof"]["accuracy"]
    assert m["oof"]["accuracy"] < 0.48  # chance is 1/3; 150 rows


def test_stacking_learns_a_relabelling(ws):
    """A run that always predicts the next class is useless to averaging but perfect for a meta-model."""
    root, ff, y = ws
    shifted = (np.eye(3)[(y + 1) % 3] * 0.9 + 0.1 / 3).astype(np.float32)
    write_fake_run(root, "shift", shifted, ff, y)
    write_fake_run(root, "weak", fake_probs(y, 0.5, seed=3), ff, y)
    ens = load_run(ensemble(["shift", "weak"], "stk", root, method="stack"), root)
    assert ens.metrics["oof"]["accuracy"] == 1.0
    assert ens.metrics["members"]["shift"]["accuracy"] == 0.0


@pytest.mark.slow  # HistGradientBoosting's OpenMP start-up took minutes on the loaded 2-core build box
def test_gbm_meta_model(ws):
    root, ff, y = ws
    write_fake_run(root, "a", fake_probs(y, 0.9, seed=1), ff, y)
    write_fake_run(root, "b", fake_probs(y, 0.6, seed=2), ff, y)
    ens = load_run(ensemble(["a", "b"], "gbm", root, method="stack", meta="gbm"), root)
    assert ens.metrics["method"] == "stack-gbm" and ens.metrics["oof"]["accuracy"] > 0.7


# ----------------------------------------------------------------------------- refusals


def test_refuses_different_fold_files(ws, capsys):
    root, ff, y = ws
    ff2, _ = write_fold_file(root, seed=7, name="other_k5.csv")
    write_fake_run(root, "a", fake_probs(y, 0.8), ff, y)
    write_fake_run(root, "b", fake_probs(y, 0.8), ff2, y)
    with pytest.raises(EnsembleError, match="different fold file"):
        ensemble(["a", "b"], "x", root)
    with pytest.raises(SystemExit) as exc:
        cli.run_command(main, ["a", "b", "--workdir", str(root)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: runs a and b have a different fold file") and "only runs on the same data and folds" in err


def test_refuses_different_repeat_class_list_and_rows(ws):
    root, ff, y = ws
    ffr, _ = write_fold_file(root, repeats=2, name="rep_k5.csv")
    write_fake_run(root, "r0", fake_probs(y, 0.8), ffr, y)
    write_fake_run(root, "r1", fake_probs(y, 0.8), ffr, y, fold_column="fold_r1")
    with pytest.raises(EnsembleError, match=r"fold column \(repeat\)"):
        ensemble(["r0", "r1"], "x", root)
    write_fake_run(root, "a", fake_probs(y, 0.8), ff, y)
    write_fake_run(root, "c", fake_probs(y, 0.8), ff, y, classes=["blues", "rock", "jazz"])
    with pytest.raises(EnsembleError, match="different class list"):
        ensemble(["a", "c"], "x", root)
    d = write_fake_run(root, "d", fake_probs(y, 0.8), ff, y)
    cfg = json.loads((d / "config.json").read_text())
    cfg["train_ids_sha256"] = "other"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(EnsembleError, match="different training row ids"):
        ensemble(["a", "d"], "x", root)


def test_refuses_changed_fold_file_and_missing_artifacts(ws):
    root, ff, y = ws
    write_fake_run(root, "a", fake_probs(y, 0.8), ff, y)
    b = write_fake_run(root, "b", fake_probs(y, 0.8), ff, y)
    (b / "oof.npy").unlink()
    with pytest.raises(RunError, match="oof.npy missing: the run is unfinished"):
        ensemble(["a", "b"], "x", root)
    write_fake_run(root, "b", fake_probs(y, 0.8), ff, y)
    ff.write_text(ff.read_text().replace("clip0000", "clipXXXX"))
    with pytest.raises(EnsembleError, match="has changed since run"):
        ensemble(["a", "b"], "x", root)


def test_stacking_without_test_rows(ws):
    """Competitions without a test split (the GTZAN feature table) have empty test.npy: stacking must still work."""
    root, ff, y = ws
    empty = np.zeros((0, 3), np.float32)
    write_fake_run(root, "a", fake_probs(y, 0.9, seed=1), ff, y, test=empty)
    write_fake_run(root, "b", fake_probs(y, 0.6, seed=2), ff, y, test=empty)
    ens = load_run(ensemble(["a", "b"], "stk0", root, method="stack"), root)
    assert ens.test.shape == (0, 3) and ens.metrics["oof"]["accuracy"] > 0.8


# ----------------------------------------------------------------------------- blind spots: nesting, std, NaN members


def _right_or_hesitant(y: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Confident (0.9) on the true class where ``right``; elsewhere hesitantly wrong (0.4 on the next class, 0.3 on the truth)."""
    p = np.full((len(y), 3), 0.05)
    p[np.arange(len(y)), y] = 0.9
    wrong = np.full((len(y), 3), 0.3)
    wrong[np.arange(len(y)), (y + 1) % 3] = 0.4
    return np.where(right[:, None], p, wrong).astype(np.float32)


def test_hill_nested_oof_fits_weights_without_the_held_out_fold(ws):
    """A is right only on fold 0, B everywhere else. Fitted without fold 0, the weights are all B, so the honest
    OOF of fold 0 is B's (all wrong): 0.8 overall. Weights fitted on all rows mix A and B and get every row right,
    so a leaky 'nested' OOF would read 1.0 like the in-sample score."""
    root, ff, y = ws
    folds = pd.read_csv(ff)["fold"].to_numpy()
    write_fake_run(root, "A", _right_or_hesitant(y, folds == 0), ff, y)
    write_fake_run(root, "B", _right_or_hesitant(y, folds != 0), ff, y)
    ens = load_run(ensemble(["A", "B"], "hill", root, method="hill"), root)
    assert ens.metrics["oof_in_sample"]["accuracy"] == 1.0
    assert ens.metrics["oof"]["accuracy"] == pytest.approx(0.8)
    assert (ens.oof[folds == 0].argmax(1) != y[folds == 0]).all()
    per_fold = json.loads((root / "runs/hill/weights.json").read_text())["weights_per_outer_fold"]
    assert per_fold["0"] == {"A": 0.0, "B": 1.0} and all(per_fold[k]["A"] > 0 for k in "1234")
    assert ens.metrics["folds"]["0"]["accuracy"] == 0.0


def test_hill_nested_fits_see_exactly_the_other_folds(ws, monkeypatch):
    """Every outer fold's weights are fitted on the OOF rows of the other folds, never on its own rows."""
    root, ff, y = ws
    folds = pd.read_csv(ff)["fold"].to_numpy()
    oofs = [fake_probs(y, acc, seed=i) for i, acc in enumerate((0.8, 0.7, 0.6))]
    for i, o in enumerate(oofs):
        write_fake_run(root, f"m{i}", o, ff, y)
    seen: list[np.ndarray] = []
    real = ens_mod.hill_climb

    def recording(mats, yy, *a, **kw):
        seen.append(mats[0].copy())
        return real(mats, yy, *a, **kw)

    monkeypatch.setattr(ens_mod, "hill_climb", recording)
    ensemble(["m0", "m1", "m2"], "hill", root, method="hill")
    assert len(seen) == 6  # one fit per outer fold, then one on all rows for test/holdout
    for k in range(5):
        assert sum(m.shape == oofs[0][folds != k].shape and np.array_equal(m, oofs[0][folds != k]) for m in seen) == 1, k
    assert np.array_equal(seen[-1], oofs[0])


def test_member_fold_std_is_ddof_1(ws):
    root, ff, y = ws
    folds = pd.read_csv(ff)["fold"].to_numpy()
    a, b = fake_probs(y, 0.85, seed=1), fake_probs(y, 0.6, seed=2)
    write_fake_run(root, "a", a, ff, y)
    write_fake_run(root, "b", b, ff, y)
    m = load_run(ensemble(["a", "b"], "e", root), root).metrics
    for name, p in (("a", a), ("b", b), (None, (a + b) / 2)):
        per_fold = [_acc(y[folds == k], p[folds == k]) for k in range(5)]
        got = m["std"]["accuracy"] if name is None else m["members"][name]["cv_std"]
        assert got == pytest.approx(np.std(per_fold, ddof=1), rel=1e-9), name


@pytest.mark.parametrize("where, rows, match", [
    ("test", [3], r"run b: test\.npy has NaN/inf in 1 row\(s\) \(rows \[3\]\)"),
    ("test_inf", [0, 5], r"run b: test\.npy has NaN/inf in 2 row\(s\) \(rows \[0, 5\]\)"),
    ("holdout", [1], r"run b: holdout\.npy has NaN/inf in 1 row\(s\) \(rows \[1\]\)"),
    ("oof_inf", [7], r"run b: oof\.npy has inf or a partly NaN row in 1 row\(s\) \(rows \[7\]\)"),
    ("oof_partial", [9], r"run b: oof\.npy has inf or a partly NaN row in 1 row\(s\) \(rows \[9\]\)"),
    ("oof_row", [11], r"run b: oof\.npy has NaN inside fold \d, whose other rows have predictions .* \(rows \[11\]\)"),
])
def test_member_with_nan_or_inf_predictions_is_refused(ws, where, rows, match):
    """A NaN in one member's test.npy used to become a NaN row of the ensemble (and the first class in a submission)."""
    root, ff, y = ws
    hold = fake_probs(np.arange(6) % 3, 0.8, seed=9)
    write_fake_run(root, "a", fake_probs(y, 0.8, seed=1), ff, y, holdout=hold)
    b = write_fake_run(root, "b", fake_probs(y, 0.8, seed=2), ff, y, holdout=hold)
    file = b / f"{where.split('_')[0]}.npy"
    bad = np.load(file)
    bad[rows, 0] = np.inf if "inf" in where else np.nan
    if where == "oof_row":
        bad[rows] = np.nan
    np.save(file, bad)
    with pytest.raises(EnsembleError, match=match) as exc:
        ensemble(["a", "b"], "x", root)
    assert "re-train or resume run b" in exc.value.fix
    assert not (root / "runs/x").exists()


def test_untrained_folds_nan_in_oof_are_still_allowed(ws):
    """A run trained on some folds only has NaN OOF rows for whole folds: legitimate, scored on the folds both have."""
    root, ff, y = ws
    folds = pd.read_csv(ff)["fold"].to_numpy()
    part = fake_probs(y, 0.9, seed=1)
    part[folds >= 3] = np.nan
    write_fake_run(root, "full", fake_probs(y, 0.8, seed=2), ff, y)
    write_fake_run(root, "part", np.nan_to_num(part, nan=1 / 3), ff, y)
    np.save(root / "runs/part/oof.npy", part)
    ens = load_run(ensemble(["full", "part"], "e", root), root)
    assert ens.metrics["folds_done"] == [0, 1, 2] and np.isnan(ens.oof[folds >= 3]).all()
    assert not np.isnan(ens.test).any()
