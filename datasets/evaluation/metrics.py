"""Metrics every evaluator reports: per-class precision/recall/F1 with a confusion matrix,
Cohen's kappa (unweighted, linear or quadratic weights for ordinal labels such as the
甲/乙/丙/丁 or 0–3 grade), Dice per structure, and always the sample count.

Plain Python on purpose (numpy only for Dice): the numbers must be easy to check by hand,
and the unit tests do exactly that on small known examples.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Label = Hashable


def _labels(truth: Sequence[Label], pred: Sequence[Label], labels: Sequence[Label] | None) -> list[Label]:
    if labels is not None:
        return list(labels)
    seen: list[Label] = []
    for value in list(truth) + list(pred):
        if value not in seen:
            seen.append(value)
    try:
        return sorted(seen)  # type: ignore[type-var]
    except TypeError:
        return seen


def confusion_matrix(truth: Sequence[Label], pred: Sequence[Label], labels: Sequence[Label] | None = None) -> tuple[list[Label], list[list[int]]]:
    """``matrix[i][j]`` = number of samples whose truth is ``labels[i]`` and prediction ``labels[j]``.

    Pairs whose truth or prediction is not in ``labels`` are ignored (give the labels
    explicitly to include an "unknown"/"missing" column).
    """
    if len(truth) != len(pred):
        raise ValueError(f"truth and prediction differ in length ({len(truth)} != {len(pred)})")
    labs = _labels(truth, pred, labels)
    index = {lab: i for i, lab in enumerate(labs)}
    matrix = [[0] * len(labs) for _ in labs]
    for t, p in zip(truth, pred, strict=True):
        if t in index and p in index:
            matrix[index[t]][index[p]] += 1
    return labs, matrix


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


@dataclass
class ClassReport:
    precision: float | None
    recall: float | None
    f1: float | None
    support: int  # samples whose truth is this class
    predicted: int  # samples predicted as this class


@dataclass
class ClassificationResult:
    """Per-class and averaged scores of one labelled task, with its confusion matrix."""

    name: str
    labels: list[Label]
    matrix: list[list[int]]
    per_class: dict[str, ClassReport]
    n: int
    accuracy: float | None
    macro_f1: float | None
    kappa: float | None = None
    kappa_weights: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "kappa": self.kappa,
            "kappa_weights": self.kappa_weights,
            "labels": [str(lab) for lab in self.labels],
            "confusion_matrix": self.matrix,
            "per_class": {k: vars(v) for k, v in self.per_class.items()},
            "notes": self.notes,
        }


def classification(
    name: str,
    truth: Sequence[Label],
    pred: Sequence[Label],
    labels: Sequence[Label] | None = None,
    ordinal: bool = False,
    kappa_weights: str | None = None,
) -> ClassificationResult:
    """Precision/recall/F1 per class, accuracy, macro F1; Cohen's kappa when ``ordinal``
    (``kappa_weights`` ``linear``/``quadratic``, default ``quadratic`` for ordinal labels)
    or when ``kappa_weights`` is given (``none`` = unweighted)."""
    labs, matrix = confusion_matrix(truth, pred, labels)
    n = sum(sum(row) for row in matrix)
    per: dict[str, ClassReport] = {}
    f1s = []
    for i, lab in enumerate(labs):
        tp = matrix[i][i]
        support = sum(matrix[i])
        predicted = sum(row[i] for row in matrix)
        precision = _ratio(tp, predicted)
        recall = _ratio(tp, support)
        f1 = _ratio(2 * tp, support + predicted)  # = 2PR/(P+R); 0 when tp = 0, None when unused
        per[str(lab)] = ClassReport(precision, recall, f1, support, predicted)
        if support:
            f1s.append(f1 or 0.0)
    correct = sum(matrix[i][i] for i in range(len(labs)))
    result = ClassificationResult(
        name=name, labels=labs, matrix=matrix, per_class=per, n=n, accuracy=_ratio(correct, n),
        macro_f1=sum(f1s) / len(f1s) if f1s else None,
    )
    if ordinal or kappa_weights:
        weights = kappa_weights or "quadratic"
        result.kappa = kappa_from_matrix(matrix, None if weights == "none" else weights)
        result.kappa_weights = weights
    return result


def kappa_from_matrix(matrix: Sequence[Sequence[int]], weights: str | None = None) -> float | None:
    """Cohen's kappa of a square confusion matrix (rows = rater A / truth, columns = B).

    ``weights``: None (unweighted), ``linear`` (|i-j|/(k-1)) or ``quadratic``
    ((i-j)²/(k-1)²) disagreement weights for ordinal categories in matrix order.
    kappa = 1 - sum(w·observed) / sum(w·expected). None when undefined (no samples, or
    chance disagreement is zero, e.g. both raters used one category only).
    """
    k = len(matrix)
    n = sum(sum(row) for row in matrix)
    if k == 0 or n == 0:
        return None
    rows = [sum(matrix[i]) for i in range(k)]
    cols = [sum(matrix[i][j] for i in range(k)) for j in range(k)]

    def w(i: int, j: int) -> float:
        if weights is None:
            return 0.0 if i == j else 1.0
        if k == 1:
            return 0.0
        if weights == "linear":
            return abs(i - j) / (k - 1)
        if weights == "quadratic":
            return (i - j) ** 2 / (k - 1) ** 2
        raise ValueError(f"unknown kappa weights {weights!r} (linear, quadratic)")

    observed = sum(w(i, j) * matrix[i][j] for i in range(k) for j in range(k)) / n
    expected = sum(w(i, j) * rows[i] * cols[j] for i in range(k) for j in range(k)) / (n * n)
    if expected == 0:
        return None
    return 1.0 - observed / expected


def cohen_kappa(truth: Sequence[Label], pred: Sequence[Label], labels: Sequence[Label] | None = None,
                weights: str | None = None) -> float | None:
    """Cohen's kappa between two label sequences; ``labels`` fixes the (ordinal) order."""
    _, matrix = confusion_matrix(truth, pred, labels)
    return kappa_from_matrix(matrix, weights)


def dice(truth_mask: Any, pred_mask: Any) -> float | None:
    """Dice = 2|A∩B| / (|A|+|B|) of two boolean masks; None when both are empty."""
    import numpy as np

    a = np.asarray(truth_mask, dtype=bool)
    b = np.asarray(pred_mask, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} != {b.shape}")
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return None
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def dice_per_structure(truth_labels: Any, pred_labels: Any, structures: Mapping[str, int]) -> dict[str, float | None]:
    """Dice per named structure of two label maps (``structures``: name -> label id)."""
    import numpy as np

    t = np.asarray(truth_labels)
    p = np.asarray(pred_labels)
    return {name: dice(t == lab, p == lab) for name, lab in structures.items()}


@dataclass
class Rate:
    """A checked proportion: ``value = numerator / denominator`` (None when nothing to check)."""

    numerator: int
    denominator: int

    @property
    def value(self) -> float | None:
        return _ratio(self.numerator, self.denominator)

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "numerator": self.numerator, "denominator": self.denominator}

    def interval(self, z: float = 1.96) -> tuple[float, float] | None:
        """The Wilson score interval (95% for the default ``z``), None when nothing was checked."""
        return wilson_interval(self.numerator, self.denominator, z)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """Wilson score interval of a proportion ``successes / n``.

    Why Wilson and not ``p ± z·sqrt(p(1-p)/n)``: the per-item figures are taken from 10-30 exams
    and sit near 100%, where the normal approximation gives a zero-width interval for 10/10 and
    bounds above 1; Wilson stays inside [0, 1] and is honest about what 10 exams can show
    (10/10 is compatible with a true rate of 72%)."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes} outside 0..{n}")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * ((p * (1 - p) / n + z2 / (4 * n * n)) ** 0.5) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_ignoring_none(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None
