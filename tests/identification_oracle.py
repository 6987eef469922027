"""Brute-force 1:N identification: plain loops over probes and gallery, written from the definitions in
docs/metrics.md without faceval's search or figures, as the oracle of the identification tests."""

from __future__ import annotations

import math

import numpy as np


def score(a, b, metric):
    """Similarity of two vectors in score units: -Euclidean distance, or the cosine."""
    if metric == "euclidean":
        return -math.sqrt(sum((float(x) - float(y)) ** 2 for x, y in zip(a, b, strict=True)))
    dot = sum(float(x) * float(y) for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(float(x) ** 2 for x in a) * sum(float(y) ** 2 for y in b))


def identity_scores(probe, gallery_vectors, gallery_identities, metric, fusion):
    """Each gallery identity's score for one probe."""
    scores = {}
    for identity in sorted(set(gallery_identities)):
        rows = [v for v, name in zip(gallery_vectors, gallery_identities, strict=True) if name == identity]
        if fusion == "max":
            scores[identity] = max(score(probe, row, metric) for row in rows)
        else:
            if metric == "cosine":
                rows = [np.asarray(row, float) / math.sqrt(sum(float(x) ** 2 for x in row)) for row in rows]
            mean = [sum(float(row[k]) for row in rows) / len(rows) for k in range(len(rows[0]))]
            scores[identity] = score(probe, mean, metric)
    return scores


class Oracle:
    """Every search's identity scores, and the figures computed from them by loops."""

    def __init__(self, probes, probe_identities, gallery_vectors, gallery_identities, metric, fusion="max"):
        self.probe_identities = list(probe_identities)
        self.scores = [identity_scores(p, gallery_vectors, gallery_identities, metric, fusion) for p in probes]
        self.mated = [identity in scores for identity, scores in zip(self.probe_identities, self.scores, strict=True)]

    def rank(self, i):
        """1 + the non-mates scoring at least as high as the mate (ties at the worse rank); 0 when non-mated."""
        if not self.mated[i]:
            return 0
        mate = self.scores[i][self.probe_identities[i]]
        return 1 + sum(1 for name, s in self.scores[i].items() if name != self.probe_identities[i] and s >= mate)

    def mate_score(self, i):
        return self.scores[i][self.probe_identities[i]] if self.mated[i] else math.nan

    def top(self, i, names=None):
        return max(s for name, s in self.scores[i].items() if names is None or name in names)

    def cmc(self, r, members=None):
        chosen = [i for i in range(len(self.scores)) if self.mated[i] and (members is None or members[i])]
        return sum(1 for i in chosen if self.rank(i) <= r) / len(chosen)

    def fpir(self, threshold, members=None, names=None):
        chosen = [i for i in range(len(self.scores)) if not self.mated[i] and (members is None or members[i])]
        return sum(1 for i in chosen if self.top(i, names) >= threshold) / len(chosen)

    def fnir(self, threshold, rank, members=None):
        chosen = [i for i in range(len(self.scores)) if self.mated[i] and (members is None or members[i])]
        missed = [i for i in chosen if self.rank(i) > rank or self.mate_score(i) < threshold]
        return len(missed) / len(chosen)

    def candidate_thresholds(self, rank):
        """Distinct non-mated top scores and scores of mates found within ``rank``, descending."""
        values = {self.top(i) for i in range(len(self.scores)) if not self.mated[i]}
        values |= {self.mate_score(i) for i in range(len(self.scores)) if self.mated[i] and self.rank(i) <= rank}
        return sorted(values, reverse=True)

    def fnir_at_fpir(self, target, rank):
        """(FNIR, FPIR, threshold) at the lowest candidate threshold whose FPIR <= target (+inf if none)."""
        chosen = math.inf
        for threshold in self.candidate_thresholds(rank):
            if self.fpir(threshold) <= target:
                chosen = threshold
        return self.fnir(chosen, rank), self.fpir(chosen), chosen
