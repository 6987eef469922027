"""10-fold verification accuracy on a pair list with folds (LFW, CFP-FP, AgeDB-30, CALFW, CPLFW protocols).

For each fold ``k`` a threshold is chosen on the other folds (the best accuracy there) and the accuracy of that
threshold is measured on fold ``k``; the figure is the mean over folds with their standard deviation. Two forms:

- `native_ten_fold`: the model's own scores (``s >= tau`` accepts), the threshold chosen among the distinct
  training scores (among equal accuracies the strictest), reported per fold in the model's units.
- `insightface_ten_fold`: exactly what insightface's ``eval/verification.py`` computes, so that a number can be
  put beside a published table: embeddings L2-normalised, squared Euclidean distance ``d``, accept ``d < t`` for
  ``t`` in ``np.arange(0, 4, 0.01)``, the first best ``t`` on the training folds, population standard deviation,
  no flipped-image features. insightface splits the list into 10 consecutive equal folds (scikit-learn's
  ``KFold``); for a ``pairs.txt`` whose pairs were all scored those are its own folds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from faceval.errors import InputError
from faceval.models.scoring import Similarity
from faceval.stats.metrics import ScoreTable, threshold_sweep
from faceval.stats.pair_lists import ResolvedPairs

# insightface's threshold grid, built exactly as its verification.py builds it (float steps included).
INSIGHTFACE_THRESHOLDS = np.arange(0, 4, 0.01)


@dataclass(frozen=True)
class TenFold:
    """Accuracy per held-out fold, the threshold chosen for it (in the form's units), and their mean and std."""

    form: str
    units: str
    fold_accuracies: list[float]
    thresholds: list[float | None]
    fold_sizes: list[int]
    mean: float
    std: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fold_ids(folds: np.ndarray) -> np.ndarray:
    ids = np.unique(folds)
    if ids.size < 2:
        raise InputError(f"k-fold accuracy needs at least two folds, the pairs have {ids.size}")
    return ids


def _accuracy_below(distances: np.ndarray, same: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Accuracy of accepting ``d < t`` at each threshold, from sorted genuine and impostor distances."""
    genuine = np.sort(distances[same])
    impostor = np.sort(distances[~same])
    accepted_genuine = np.searchsorted(genuine, thresholds, side="left")
    rejected_impostor = impostor.size - np.searchsorted(impostor, thresholds, side="left")
    return (accepted_genuine + rejected_impostor) / distances.size


def insightface_distances(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances of the L2-normalised rows, as insightface computes them."""
    first = first / np.linalg.norm(first, axis=1, keepdims=True)
    second = second / np.linalg.norm(second, axis=1, keepdims=True)
    return np.sum(np.square(first - second), axis=1)


def insightface_ten_fold(first: np.ndarray, second: np.ndarray, same: np.ndarray, folds: np.ndarray) -> TenFold:
    """insightface's 10-fold accuracy of the pairs ``(first[k], second[k])`` (raw embeddings, one row per pair).

    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=(40, 4)); same = np.arange(40) % 2 == 0
    >>> b = np.where(same[:, None], a + 0.1 * rng.normal(size=(40, 4)), rng.normal(size=(40, 4)))
    >>> result = insightface_ten_fold(a, b, same, np.arange(40) // 4)
    >>> result.mean, result.fold_sizes[0]
    (0.975, 4)
    """
    same = np.asarray(same, dtype=bool)
    folds = np.asarray(folds)
    distances = insightface_distances(np.asarray(first, np.float64), np.asarray(second, np.float64))
    accuracies, thresholds, sizes = [], [], []
    for fold in _fold_ids(folds):
        test = folds == fold
        train_accuracy = _accuracy_below(distances[~test], same[~test], INSIGHTFACE_THRESHOLDS)
        # np.argmax: the first (smallest) threshold among equal best accuracies, as insightface takes it.
        threshold = INSIGHTFACE_THRESHOLDS[int(np.argmax(train_accuracy))]
        accuracies.append(float(np.mean((distances[test] < threshold) == same[test])))
        thresholds.append(float(threshold))
        sizes.append(int(test.sum()))
    return TenFold("insightface", "squared distance of L2-normalised embeddings (accept d < threshold)",
                   accuracies, thresholds, sizes, float(np.mean(accuracies)), float(np.std(accuracies)))  # fmt: skip


def native_ten_fold(scores: np.ndarray, same: np.ndarray, folds: np.ndarray, similarity: Similarity) -> TenFold:
    """k-fold accuracy on the model's own scores (larger = more alike; accept ``s >= tau``).

    On the training folds the threshold is the distinct score of best accuracy (the strictest among equals);
    thresholds are reported in the model's units.

    >>> result = native_ten_fold(np.array([0.9, 0.2, 0.8, 0.3]), np.array([1, 0, 1, 0], bool),
    ...                          np.array([0, 0, 1, 1]), Similarity.COSINE)
    >>> result.fold_accuracies, result.thresholds  # fold 1 is judged at 0.9, chosen on fold 0: 0.8 is rejected
    ([1.0, 0.5], [0.8, 0.9])
    """
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    folds = np.asarray(folds)
    accuracies, thresholds, sizes = [], [], []
    for fold in _fold_ids(folds):
        test = folds == fold
        sweep = threshold_sweep(ScoreTable.from_scores(scores[~test], same[~test]))
        # The sweep runs from the strictest threshold down, so argmax picks the strictest best one.
        threshold = float(sweep.threshold[int(np.argmax(sweep.accuracy))])
        accuracies.append(float(np.mean((scores[test] >= threshold) == same[test])))
        thresholds.append(similarity.threshold_for_report(threshold))
        sizes.append(int(test.sum()))
    return TenFold("native", f"{similarity.model_units} ({similarity.value})", accuracies, thresholds, sizes,
                   float(np.mean(accuracies)), float(np.std(accuracies)))  # fmt: skip


def ten_fold_figures(
    pairs: ResolvedPairs, vectors: np.ndarray, similarity: Similarity, scores: np.ndarray
) -> dict[str, dict[str, Any]] | None:
    """Both forms for the scored pairs of a list with folds (``models.<name>.ten_fold``), from the model's
    ``scores`` of the listed pairs in list order (`faceval.stats.pair_lists.listed_scored_pairs`); None without folds.

    Failed pairs are not in any fold's accuracy; each form's ``fold_sizes`` shows how many pairs each fold kept.
    """
    folds = pairs.fold
    if folds is None or np.unique(folds).size < 2:
        return None
    return {
        "native": native_ten_fold(scores, pairs.genuine, folds, similarity).to_dict(),
        "insightface": insightface_ten_fold(
            vectors[pairs.first], vectors[pairs.second], pairs.genuine, folds
        ).to_dict(),
    }
