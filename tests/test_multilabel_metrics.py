"""Multi-label metrics against values computed by hand (the arithmetic is in the comments), against the
competitions' reference definitions (written out here as loops) and against scikit-learn where it has them."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, f1_score, label_ranking_average_precision_score, roc_auc_score

from src.config import MULTILABEL_METRICS, TASK_METRICS
from src.metrics import compute_metrics, lwlrap, macro_roc_auc, multilabel_metrics, padded_cmap, tune_threshold

# ----------------------------------------------------------------------------- macro ROC-AUC


def test_macro_roc_auc_leaves_out_classes_without_positives_or_negatives():
    Y = np.array([[1, 0, 1, 0],
                  [0, 0, 1, 1],
                  [1, 0, 1, 1],
                  [0, 0, 1, 0]], dtype=float)
    P = np.array([[0.9, 0.7, 0.1, 0.2],
                  [0.8, 0.1, 0.2, 0.6],
                  [0.3, 0.5, 0.3, 0.5],
                  [0.1, 0.2, 0.4, 0.5]])
    # class 0: positives score {0.9, 0.3}, negatives {0.8, 0.1}; pairs (pos > neg): 0.9>0.8 1, 0.9>0.1 1,
    #          0.3<0.8 0, 0.3>0.1 1 -> AUC 3/4
    # class 1: no positive -> left out (BirdCLEF 2024-25 score only classes with positives)
    # class 2: only positives -> no negative to rank against, AUC undefined -> left out
    # class 3: positives {0.6, 0.5}, negatives {0.2, 0.5}: 1 + 1 + 1 + 0.5 (tie) -> 3.5/4
    # macro = (0.75 + 0.875) / 2 = 0.8125
    assert macro_roc_auc(Y, P) == pytest.approx(0.8125)
    assert macro_roc_auc(Y, P) == pytest.approx(roc_auc_score(Y[:, [0, 3]], P[:, [0, 3]], average="macro"))
    # whatever the left-out classes predict does not matter
    P2 = P.copy()
    P2[:, 1], P2[:, 2] = [0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]
    assert macro_roc_auc(Y, P2) == pytest.approx(0.8125)


def test_macro_roc_auc_is_nan_when_no_class_can_be_scored():
    Y = np.array([[0, 1], [0, 1]], dtype=float)  # class 0 never positive, class 1 always
    assert np.isnan(macro_roc_auc(Y, np.array([[0.2, 0.9], [0.4, 0.1]])))


# ----------------------------------------------------------------------------- padded cmAP


Y_AP = np.array([[0, 1, 0],
                 [1, 0, 0],
                 [0, 0, 0]], dtype=float)   # class 2 has no positive
P_AP = np.array([[0.9, 0.2, 0.3],
                 [0.5, 0.7, 0.2],
                 [0.1, 0.4, 0.1]])


def birdclef2023_padded_cmap(solution: pd.DataFrame, submission: pd.DataFrame, padding_factor: int = 5) -> float:
    """The BirdCLEF 2023 Kaggle metric, as published: ``padding_factor`` rows of ones appended to both frames,
    then scikit-learn's macro average precision (pad 0: pandas would concatenate an empty object frame)."""
    if not padding_factor:
        return float(average_precision_score(solution.values, submission.values, average="macro"))
    new_rows = pd.DataFrame([[1] * len(solution.columns)] * padding_factor, columns=solution.columns)
    padded_solution = pd.concat([solution, new_rows]).reset_index(drop=True)
    padded_submission = pd.concat([submission, new_rows]).reset_index(drop=True)
    return float(average_precision_score(padded_solution.values, padded_submission.values, average="macro"))


def test_padded_cmap_hand_computed_pad_0_and_1():
    Y, P = Y_AP[:, :2], P_AP[:, :2]
    # AP = sum over thresholds of (recall step) x precision, thresholds = the scores from high to low.
    # pad 0, class 0: ranked 0.9 (neg), 0.5 (pos), 0.1 (neg): the one positive at rank 2 -> precision 1/2, AP 1/2
    #        class 1: ranked 0.7 (neg), 0.4 (neg), 0.2 (pos): precision 1/3 -> AP 1/3;  cmAP = (1/2 + 1/3) / 2 = 5/12
    assert padded_cmap(Y, P, pad=0) == pytest.approx(5 / 12)
    # pad 1 (a row of ones in truth and prediction, ranked first):
    #        class 0: 1 (pos), 0.9 (neg), 0.5 (pos): recall 1/2 at precision 1, then recall 1 at precision 2/3
    #                 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    #        class 1: 1 (pos), 0.7, 0.4 (neg), 0.2 (pos): 1/2 * 1 + 1/2 * 2/4 = 3/4;  cmAP = (5/6 + 3/4) / 2 = 19/24
    assert padded_cmap(Y, P, pad=1) == pytest.approx(19 / 24)


def test_padded_cmap_hand_computed_pad_5_with_a_class_without_positives():
    # pad 5: five tied ones ranked first.
    #   class 0: 5 pads (pos), 0.9 (neg), 0.5 (pos): recall 5/6 at precision 1, then 1 at precision 6/7
    #            -> AP = 5/6 + 1/6 * 6/7 = 5/6 + 1/7 = 41/42
    #   class 1: 5 pads, 0.7 (neg), 0.4 (neg), 0.2 (pos): 5/6 + 1/6 * 6/8 = 5/6 + 1/8 = 23/24
    #   class 2: no positive of its own: the 5 pads are the only positives, all ranked first -> AP 1
    #            (this is why BirdCLEF pads: without it the class's AP is undefined)
    # cmAP = (41/42 + 23/24 + 1) / 3
    want = (41 / 42 + 23 / 24 + 1) / 3
    assert padded_cmap(Y_AP, P_AP) == pytest.approx(want)          # default pad is 5
    assert padded_cmap(Y_AP, P_AP, pad=5) == pytest.approx(want)


@pytest.mark.parametrize("pad", [0, 1, 5])
def test_padded_cmap_equals_the_birdclef_2023_reference(pad):
    rng = np.random.default_rng(pad)
    Y = (rng.random((30, 6)) < 0.3).astype(float)
    Y[0] = 1  # every class has a positive, so pad 0 is defined too
    P = rng.random((30, 6))
    cols = [f"sp{j}" for j in range(6)]
    ref = birdclef2023_padded_cmap(pd.DataFrame(Y.astype(int), columns=cols), pd.DataFrame(P, columns=cols), pad)
    assert padded_cmap(Y, P, pad=pad) == pytest.approx(ref)


# ----------------------------------------------------------------------------- lwlrap


def lwlrap_reference(Y: np.ndarray, P: np.ndarray) -> float:
    """Freesound 2019: for every positive label of every row, the precision at its rank (positives scored at
    least as high / labels scored at least as high), averaged over all positive labels of all rows."""
    precisions = []
    for y, p in zip(Y > 0, P):
        for j in np.flatnonzero(y):
            above = p >= p[j]
            precisions.append((above & y).sum() / above.sum())
    return float(np.mean(precisions))


def test_lwlrap_hand_computed():
    Y = np.array([[1, 0, 1, 0],
                  [0, 1, 0, 0]], dtype=float)
    P = np.array([[0.9, 0.8, 0.1, 0.3],
                  [0.2, 0.4, 0.6, 0.1]])
    # row 0: class 0 ranked 1st -> precision 1/1; class 2 ranked 4th with 2 positives at or above -> 2/4
    # row 1: class 1 ranked 2nd (behind class 2) -> 1/2
    # lwlrap = mean over the 3 positive labels = (1 + 1/2 + 1/2) / 3 = 2/3
    # (plain LRAP averages rows first: ((1 + 1/2) / 2 + 1/2) / 2 = 5/8 — the label weighting matters)
    assert lwlrap(Y, P) == pytest.approx(2 / 3)
    assert lwlrap_reference(Y, P) == pytest.approx(2 / 3)
    assert label_ranking_average_precision_score(Y, P) == pytest.approx(5 / 8)


def test_lwlrap_equals_the_reference_and_weighted_sklearn():
    rng = np.random.default_rng(3)
    Y = (rng.random((40, 7)) < 0.3).astype(float)
    Y[:3] = 0  # rows without a positive label contribute nothing
    P = rng.random((40, 7))  # continuous: no ties
    keep = Y.sum(1) > 0
    want = lwlrap_reference(Y[keep], P[keep])
    assert lwlrap(Y, P) == pytest.approx(want)
    assert lwlrap(Y, P) == pytest.approx(label_ranking_average_precision_score(Y[keep], P[keep], sample_weight=Y[keep].sum(1)))
    assert np.isnan(lwlrap(np.zeros((2, 3)), P[:2, :3]))


# ----------------------------------------------------------------------------- F1 and the threshold


Y_F1 = np.array([[1, 0, 1],
                 [0, 1, 0],
                 [1, 1, 0]], dtype=float)
P_F1 = np.array([[0.7, 0.2, 0.4],
                 [0.6, 0.9, 0.1],
                 [0.5, 0.3, 0.8]])


def test_micro_and_macro_f1_at_half():
    # predicted positive where P >= 0.5 (0.5 itself counts): [[1,0,0], [1,1,0], [1,0,1]]
    # class 0: truth 1,0,1 vs 1,1,1 -> TP 2 FP 1 FN 0 -> F1 = 2*2 / (2*2 + 1) = 4/5
    # class 1: truth 0,1,1 vs 0,1,0 -> TP 1 FP 0 FN 1 -> 2 / 3
    # class 2: truth 1,0,0 vs 0,0,1 -> TP 0 -> 0
    # macro = (4/5 + 2/3 + 0) / 3 = 22/45;  micro: TP 3 FP 2 FN 2 -> 6 / (6 + 4) = 3/5
    m = multilabel_metrics(Y_F1, P_F1)
    assert m["macro_f1"] == pytest.approx(22 / 45)
    assert m["micro_f1"] == pytest.approx(3 / 5)


def test_tune_threshold_picks_the_f1_best_grid_point():
    Y = np.array([[1], [1], [0], [0]], dtype=float)
    P = np.array([[0.31], [0.305], [0.295], [0.1]])
    # the grid is 0.02, 0.04, .., 0.98; only t = 0.30 separates {0.31, 0.305} from {0.295, 0.1}: F1 1.
    # t = 0.28 also takes 0.295 (TP 2 FP 1 -> 4/5); t = 0.32 takes nothing (F1 0)
    assert tune_threshold(Y, P) == pytest.approx((0.30, 1.0))
    # against a brute force over the grid, on a random matrix, micro and macro
    rng = np.random.default_rng(5)
    Y = (rng.random((50, 4)) < 0.4).astype(float)
    P = np.clip(Y * 0.3 + rng.random((50, 4)) * 0.7, 0, 1)
    grid = np.round(np.arange(0.02, 0.99, 0.02), 2)
    for average in ("micro", "macro"):
        scores = [f1_score(Y.astype(int), (P >= t).astype(int), average=average, zero_division=0) for t in grid]
        t, f1 = tune_threshold(Y, P, average)
        assert f1 == pytest.approx(max(scores))
        assert t == pytest.approx(grid[int(np.argmax(scores))])


# ----------------------------------------------------------------------------- secondary weights, compute_metrics


def test_secondary_weight_counts_as_a_positive():
    Y = np.array([[1, 0.5, 0], [0, 1, 0.5], [0.5, 0, 1], [0, 0, 1]], dtype=float)
    P = np.array([[0.9, 0.4, 0.2], [0.3, 0.8, 0.6], [0.45, 0.1, 0.7], [0.2, 0.3, 0.9]])
    binary = multilabel_metrics((Y > 0).astype(float), P)
    weighted = multilabel_metrics(Y, P)
    assert weighted == pytest.approx(binary)
    assert tune_threshold(Y, P) == tune_threshold((Y > 0).astype(float), P)


def test_compute_metrics_multilabel():
    m = compute_metrics("multilabel", Y_F1, P_F1, ["a", "b", "c"])
    assert set(TASK_METRICS["multilabel"]) == set(MULTILABEL_METRICS) <= set(m)
    assert m == multilabel_metrics(Y_F1, P_F1)
    # log_loss: mean binary cross-entropy over all 9 cells
    bce = -np.mean(Y_F1 * np.log(P_F1) + (1 - Y_F1) * np.log(1 - P_F1))
    assert m["log_loss"] == pytest.approx(bce)
    with pytest.raises(ValueError):
        compute_metrics("multi-label", Y_F1, P_F1, [])
