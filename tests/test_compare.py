"""src.compare and src.report on fake run folders with constructed predictions."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_ensemble import fake_probs, write_fake_run, write_fold_file
from train_helpers import _train

from src import stats
from src.cli import run_command
from src.compare import compare, group_models, main, parse_run_args
from src.ensemble import EnsembleError
from src.report import main as report_main


@pytest.fixture
def three(tmp_path: Path):
    """Three models on one 5-fold file (150 rows): strong, medium, weak."""
    ff, y = write_fold_file(tmp_path)
    for name, acc, seed in (("strong", 0.95, 1), ("medium", 0.75, 2), ("weak", 0.45, 3)):
        write_fake_run(tmp_path, name, fake_probs(y, acc, seed=seed), ff, y, model=name, segment_accuracy=name == "strong")
    return tmp_path, ff, y


def test_compare_table_tests_and_holm(three):
    root, ff, y = three
    res = compare(["strong", "medium", "weak"], root)
    assert res["metric"] == "accuracy" and res["n_test"] == 30 and res["n_train"] == 120
    rows = {r["model"]: r for r in res["table"]}
    assert rows["strong"]["folds"] == 5 and len(rows["strong"]["per_fold"]) == 5
    assert "segment_accuracy" in rows["strong"] and "segment_accuracy" not in rows["weak"]
    # per-fold scores recomputed from OOF equal the ones the run recorded in metrics.json
    recorded = json.loads((root / "runs/strong/metrics.json").read_text())["folds"]
    assert list(rows["strong"]["per_fold"].values()) == pytest.approx([recorded[str(k)]["accuracy"] for k in range(5)])
    assert len(res["pairs"]) == 3
    raw = [p["corrected_t"]["p_value"] for p in res["pairs"]]
    np.testing.assert_allclose([p["corrected_t"]["p_holm"] for p in res["pairs"]], stats.holm(raw))
    strong_weak = next(p for p in res["pairs"] if {p["a"], p["b"]} == {"strong", "weak"})
    assert strong_weak["verdict"].startswith("strong better than weak: p=") and "corrected" in strong_weak["verdict"]
    assert strong_weak["mcnemar"]["p_value"] < 1e-6 and strong_weak["bayes"]["p_a_better"] > 0.95
    assert "WARNING" in strong_weak["verdict"] and "never reach" in strong_weak["verdict"]  # 5 folds
    fr = res["friedman"]
    assert fr["avg_ranks"] == [1.0, 2.0, 3.0] and fr["p_value"] < 0.01


def test_corrected_test_matches_stats_on_fold_scores(three):
    root, ff, y = three
    res = compare(["strong", "medium"], root)
    p = res["pairs"][0]
    a = np.array(list(res["table"][0]["per_fold"].values()))
    b = np.array(list(res["table"][1]["per_fold"].values()))
    want = stats.corrected_resampled_ttest(a, b, 120, 30)
    assert p["corrected_t"]["statistic"] == pytest.approx(want.statistic)
    assert p["bayes"]["rho"] == pytest.approx(30 / 150)
    assert res["friedman"] is None


def test_equal_models_no_significant_difference(tmp_path):
    ff, y = write_fold_file(tmp_path)
    p = fake_probs(y, 0.8, seed=5)
    write_fake_run(tmp_path, "a", p, ff, y, model="a")
    write_fake_run(tmp_path, "b", p, ff, y, model="b")
    res = compare(["a", "b"], tmp_path)
    v = res["pairs"][0]["verdict"]
    assert "no significant difference" in v and res["pairs"][0]["mcnemar"]["p_value"] == 1.0
    assert res["pairs"][0]["bayes"]["p_equivalent"] == 1.0


def test_lower_is_better_metric_orientation(three):
    root, _, _ = three
    res = compare(["strong", "weak"], root, metric="log_loss")
    p = res["pairs"][0]
    assert p["corrected_t"]["mean_diff"] > 0  # oriented: strong has lower log loss, so A is better
    assert p["diff_mean"] < 0  # raw log-loss difference A - B
    assert p["verdict"].startswith("strong better than weak")


def test_repeated_kfold_grouping_and_pairing(tmp_path):
    ff, y = write_fold_file(tmp_path, repeats=2, name="rep_k5.csv")
    for model, acc in (("good", 0.9), ("bad", 0.6)):
        for r, col in enumerate(("fold", "fold_r1")):
            write_fake_run(tmp_path, f"{model}_r{r}", fake_probs(y, acc, seed=r + len(model)), ff, y, model=model, fold_column=col)
    res = compare(["good_r0", "good_r1", "bad_r0", "bad_r1"], tmp_path)
    assert len(res["pairs"]) == 1
    p = res["pairs"][0]
    assert p["n_pairs"] == 10 and p["columns"] == ["fold", "fold_r1"]
    assert "repeated k-fold" in p["corrected_t"]["test"] and p["corrected_t"]["df"] == 9
    assert "never reach" not in p["verdict"]
    assert res["table"][0]["model"].endswith("(x2 repeats)")
    # explicit labels group the same way
    res2 = compare(["G=good_r0,good_r1", "B=bad_r0,bad_r1"], tmp_path)
    assert res2["pairs"][0]["corrected_t"]["statistic"] == pytest.approx(p["corrected_t"]["statistic"])
    assert {r["model"] for r in res2["table"]} == {"G", "B"}


def test_same_model_same_column_twice_is_refused(tmp_path):
    ff, y = write_fold_file(tmp_path)
    write_fake_run(tmp_path, "x1", fake_probs(y, 0.8), ff, y, model="m")
    write_fake_run(tmp_path, "x2", fake_probs(y, 0.7), ff, y, model="m")
    with pytest.raises(EnsembleError, match="same fold column"):
        group_models(parse_run_args(["x1", "x2"], tmp_path))
    res = compare(["A=x1", "B=x2"], tmp_path)  # labels make them two models
    assert len(res["pairs"]) == 1


def test_seed_repeats_under_one_label_average_per_fold(tmp_path):
    """Same model, same fold column, different seeds: one model whose fold score is the seed mean, k pairs."""
    ff, y = write_fold_file(tmp_path)
    for name, acc, seed in (("d1", 0.8, 1), ("d2", 0.7, 2), ("t1", 0.9, 3), ("t2", 0.6, 4)):
        write_fake_run(tmp_path, name, fake_probs(y, acc, seed=seed), ff, y, model="mlp")
    res = compare(["default=d1,d2", "tuned=t1,t2"], tmp_path)
    rows = {r["model"]: r for r in res["table"]}
    assert set(rows) == {"default(x2 seeds)", "tuned(x2 seeds)"} and rows["default(x2 seeds)"]["runs"] == "d1,d2"
    one = {n: compare([f"A={n}", "B=t1"], tmp_path)["table"][0]["per_fold"] for n in ("d1", "d2")}
    want = [(a + b) / 2 for a, b in zip(one["d1"].values(), one["d2"].values())]
    assert list(rows["default(x2 seeds)"]["per_fold"].values()) == pytest.approx(want)
    p = res["pairs"][0]
    assert p["n_pairs"] == 5 and p["corrected_t"]["df"] == 4  # seeds are not extra folds
    res_b = compare(["tuned=t1,t2"], tmp_path, baseline="d1")  # a seed run can still be looked up as the baseline
    assert res_b["pairs"][0]["a"] == "d1"


def test_seed_repeats_need_the_same_count_on_every_column(tmp_path):
    ff, y = write_fold_file(tmp_path, repeats=2, name="rep_k5.csv")
    for name, col in (("a", "fold"), ("b", "fold"), ("c", "fold_r1")):
        write_fake_run(tmp_path, name, fake_probs(y, 0.8, seed=len(name)), ff, y, model="m", fold_column=col)
    with pytest.raises(EnsembleError, match="different numbers of seed runs"):
        group_models(parse_run_args(["M=a,b,c"], tmp_path))


def test_refuses_runs_on_other_folds(three):
    root, _, y = three
    ff2, _ = write_fold_file(root, seed=9, name="other_k5.csv")
    write_fake_run(root, "other", fake_probs(y, 0.8), ff2, y)
    with pytest.raises(EnsembleError, match="different fold file"):
        compare(["strong", "other"], root)


def test_baseline_pairs_only(three):
    root, _, _ = three
    res = compare(["strong", "medium"], root, baseline="weak")
    assert sorted((p["a"], p["b"]) for p in res["pairs"]) == [("weak", "medium"), ("weak", "strong")]
    again = compare(["strong", "weak", "medium"], root, baseline="weak")  # baseline also listed: counted once
    assert sorted((p["a"], p["b"]) for p in again["pairs"]) == [("weak", "medium"), ("weak", "strong")]


def test_cli_writes_report_with_pngs(three, capsys):
    root, _, _ = three
    out = root / "rep"
    main(["strong", "medium", "weak", "--workdir", str(root), "--out", str(out)])
    text = capsys.readouterr().out
    assert "pairwise tests:" in text and "Friedman" in text
    page = (out / "report.md").read_text()
    for png in ("scores.png", "cd_diagram.png", "strong_confusion.png", "strong_curves.png"):
        assert (out / png).stat().st_size > 1000 and png in page
    assert "| macro avg |" in page and "| micro avg |" in page and "balanced accuracy" in page
    assert json.loads((out / "compare.json").read_text())["pairs"][0]["verdict"]


def test_report_cli(three, capsys):
    root, _, _ = three
    out = root / "r2"
    report_main(["strong", "weak", "--workdir", str(root), "--out", str(out)])
    page = (out / "report.md").read_text()
    assert "### strong" in page and "### weak" in page and "![scores per model](scores.png)" in page


def test_nan_oof_rows_inside_a_trained_fold_are_refused_not_skipped(three):
    """A NaN OOF row used to drop out of its fold's score silently; whole untrained folds stay allowed."""
    root, ff, y = three
    oof = np.load(root / "runs/medium/oof.npy")
    oof[[4, 40]] = np.nan
    np.save(root / "runs/medium/oof.npy", oof)
    with pytest.raises(EnsembleError, match=r"run medium: oof\.npy has NaN inside fold \d, whose other rows have predictions") as exc:
        compare(["strong", "medium"], root)
    assert "re-train or resume run medium" in exc.value.fix


def test_same_model_on_other_features_is_another_model():
    """logreg on MSD embeddings and logreg on MSD+MTT embeddings were grouped as one model (same train settings)."""
    from pathlib import Path

    from src.runs import RunArtifacts, model_key

    def run(vector):
        cfg = {"train": {"model": "logreg", "model_params": {}}, "workspace": {"features": {"vector": vector}, "audio": {}}}
        return RunArtifacts("r", Path("."), cfg, np.zeros((1, 2)), np.zeros((1, 2)), None, {})

    assert model_key(run(["musicnn_msd"])) != model_key(run(["musicnn_msd", "musicnn_mtt"]))
    assert model_key(run(["musicnn_msd"])) == model_key(run(["musicnn_msd"]))


def test_runs_sharing_one_fold_are_refused_with_a_fix(tab_runs, capsys):
    """A paired test on one fold has no spread: an error that says to train more folds, not a traceback from stats."""
    comp, cfg, prep, root, fp, runs = tab_runs
    _train(cfg, prep, root, "mlp", "one-fold-d", seed=5, folds=[0])
    with pytest.raises(SystemExit) as exc:
        run_command(main, ["c", "one-fold-d", "--workdir", str(root), "--no-report"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: ") and "share 1 scored fold" in err and "--folds" in err
