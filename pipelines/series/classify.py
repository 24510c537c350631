"""Series classification: header rules fused with a learned header model and an image model.

Each component gives, per label field, a distribution over the field's values (``None`` =
not applicable is a value): the header rules as additive log-odds (hard facts and
description words kept apart), the header model (:mod:`radqc.models.series_header`) and the
thumbnail image model (:mod:`radqc.models.series_image`, helper C) as probabilities. The
fusion is a weighted log-linear combination::

    logit(v) = S_header_rules(v) + w_desc * S_description(v)
               + w_model * log P_header_model(v) + w_image * log P_image(v)

so hard header facts (ImageType LOCALIZER, SOP class, TR/TE/TI, b-values) outweigh
everything, the image model can overrule a description word (about 10% of descriptions
are wrong), and each component is optional: without a model, or without an image for a
series, its term is left out and the evidence says so. The weights live in
``FusionWeights`` (tuned on the val_* sets only; see models/cards/series_header.md).

Fields are decided in order: role first, then the fields that apply to that role
(``applicable`` in rules.yaml); the others are null. A derived series inherits the CT
contrast phase of the source series it names (SourceImageSequence). The category code comes
from :func:`radqc.pipelines.series.categories.category_code`; a field's confidence is its
fused probability and the label's confidence is the minimum over the fields the category
depends on. Nothing here raises on bad headers: such a series gets role ``unknown`` and an
``unknown_reason``.
"""

from __future__ import annotations

import gc
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .categories import category_code
from .features import SeriesHeader, annotate_exam
from .heads import HEADS
from .rules import RuleResult, RuleSet, family, load_rules
from .types import Evidence, SeriesLabel

log = logging.getLogger(__name__)

#: Fields the fusion decides (SeriesLabel fields) plus the rules-only ``special`` field.
LABEL_FIELDS = ("role", "derived_type", "plane", "sequence", "phase", "kernel_class", "thickness_class", "view",
                "region")
#: Column layout shared with the header model's output: HEADS order, None first in each head.
HEADS_VALUES: dict[str, tuple[Any, ...]] = HEADS
HEAD_SLICES: list[tuple[str, int, int]] = []
COLUMN: dict[tuple[str, Any], int] = {}
COLUMN_VALUE: list[Any] = []
for _f, _values in HEADS.items():
    HEAD_SLICES.append((_f, len(COLUMN_VALUE), len(COLUMN_VALUE) + len(_values)))
    for _v in _values:
        COLUMN[(_f, _v)] = len(COLUMN_VALUE)
        COLUMN_VALUE.append(_v)
N_COLUMNS = len(COLUMN_VALUE)
HEAD_INDEX: dict[str, tuple[int, int, int]] = {f: (i, a, b) for i, (f, a, b) in enumerate(HEAD_SLICES)}

#: Rule votes shown as evidence per field and source (the strongest first).
MAX_VOTE_EVIDENCE = 1
#: Below this fused role probability the series is reported as unknown.
MIN_ROLE_CONFIDENCE = 0.5


@dataclass(frozen=True)
class FusionWeights:
    """Weights of the log-linear fusion (tuned on val_* only; the card records the values)."""

    description: float = 1.0  # scale of description-word votes
    header_model: float = 1.0  # multiplier of log P from the header model
    #: per-field overrides of ``header_model``: CT phase has no hard header fact (val: 0.988 at 1, 0.996 at 3)
    header_model_fields: dict[str, float] = field(default_factory=lambda: {"phase": 3.0, "region": 3.0})
    image_model: float = 1.5  # multiplier of log P from the image model
    #: with an image model present, description votes are scaled by this too (they may be wrong)
    description_with_image: float = 0.6
    #: log-odds for "not applicable" (None) when only rules speak and a field got votes
    none_prior: float = 0.0
    #: probability floor of the learned models: bounds how far a confident model can veto a value
    #: (log 0.01 = -4.6 per unit weight), so hard header facts (rule weights 5-9) keep the last word
    #: on headers unlike the training data
    model_floor: float = 0.01


#: Modalities the header model was trained on; for others its output is not used (rules only).
MODEL_MODALITIES = frozenset({"CT", "MR", "DX", "CR", "DR"})


class _Fused:
    """One series' fused decisions per head, precomputed column-wise (see ``_fuse_all``)."""

    __slots__ = ("idx_all", "conf_all", "idx_nn", "conf_nn", "spoke", "desc_top", "row", "desc")

    def __init__(self, idx_all: list[int], conf_all: list[float], idx_nn: list[int], conf_nn: list[float],
                 spoke: list[bool], desc_top: list[int], row: int, desc: np.ndarray) -> None:
        self.idx_all, self.conf_all, self.idx_nn, self.conf_nn = idx_all, conf_all, idx_nn, conf_nn
        self.spoke, self.desc_top, self.row, self.desc = spoke, desc_top, row, desc


def _pick(fr: _Fused, fname: str, exclude_none: bool) -> tuple[Any, float]:
    """Most probable value of a head (ties: non-None first) and its (renormalised) probability."""
    i = HEAD_INDEX[fname][0]
    if exclude_none:
        return HEADS_VALUES[fname][fr.idx_nn[i]], fr.conf_nn[i]
    return HEADS_VALUES[fname][fr.idx_all[i]], fr.conf_all[i]


#: evidence confidence of a rule vote of weight w: 1 - exp(-w) (cached for the usual weights)
_VOTE_CONF = {w: round(1 - math.exp(-w), 3) for w in (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)}


def _load_header_model() -> Any:
    try:
        from radqc.models.series_header import SeriesHeaderModel

        return SeriesHeaderModel.load()
    except Exception as exc:  # noqa: BLE001 - a missing/broken model degrades to rules only
        log.info("series header model unavailable (%s): header rules only", exc)
        return None


def _load_image_model() -> Any:
    try:
        from radqc.models.series_image import SeriesImageModel  # type: ignore[import-not-found, unused-ignore]

        return SeriesImageModel.load()
    except Exception as exc:  # noqa: BLE001 - helper C's model may not exist yet
        log.info("series image model unavailable (%s)", exc)
        return None


class SeriesClassifier:
    """Classify series from their headers (and thumbnails when given); see the module docstring."""

    def __init__(self, header_model: Any = "auto", image_model: Any = "auto", rules: RuleSet | None = None,
                 weights: FusionWeights | None = None) -> None:
        self.rules = rules or load_rules()
        self.weights = weights or FusionWeights()
        self.header_model = _load_header_model() if header_model == "auto" else header_model
        self._image_model_arg = image_model
        self._image_model: Any = None
        self._image_loaded = False

    @property
    def image_model(self) -> Any:
        """Loaded on first use (torch/onnx start-up is paid only when images are classified)."""
        if not self._image_loaded:
            self._image_model = _load_image_model() if self._image_model_arg == "auto" else self._image_model_arg
            self._image_loaded = True
        return self._image_model

    def versions(self) -> dict[str, str]:
        """Rule-set and model versions the labels depend on (for the pipeline stage's manifest)."""
        out = {"series_rules": f"{self.rules.version}+{self.rules.digest}"}
        if self.header_model is not None:
            out["series_header"] = str(getattr(self.header_model, "version", "?"))
        if self._image_loaded and self._image_model is not None:
            out["series_image"] = str(getattr(self._image_model, "version", "?"))
        return out

    # ------------------------------------------------------------------------ public API
    def classify(self, headers: Sequence[SeriesHeader], images: Mapping[str, np.ndarray] | None = None) -> list[SeriesLabel]:
        """One label per header, in order (derived series take their source's phase)."""
        # a batch allocates many small objects (votes, labels, evidence) that all stay alive:
        # the cyclic garbage collector would scan them again and again for nothing
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._classify(headers, images)
        finally:
            if enabled:
                gc.enable()

    def _classify(self, headers: Sequence[SeriesHeader], images: Mapping[str, np.ndarray] | None) -> list[SeriesLabel]:
        headers = list(headers)
        if not headers:
            return []
        if not any(h.exam_context for h in headers):
            annotate_exam(headers)
        rule_results, hard, desc = self.rules.apply_batch_scored(headers, COLUMN, N_COLUMNS)
        n = len(headers)
        pm_arr: np.ndarray | None = None
        if self.header_model is not None:
            try:
                pm_arr = self._model_array(headers)
            except Exception as exc:  # noqa: BLE001
                log.warning("series header model failed (%s): header rules only", exc)
        image_probs: list[dict[str, dict[Any, float]] | None] = [None] * n
        if images:
            image_probs = self._predict_images(headers, images)
        fused = self._fuse_all(hard, desc, pm_arr, image_probs, [h.modality for h in headers])
        labels = [self._label(h, r, f, pm_arr[k] if pm_arr is not None and (h.modality or "") in MODEL_MODALITIES else None, i,
                              bool(images))
                  for k, (h, r, f, i) in enumerate(zip(headers, rule_results, fused, image_probs, strict=True))]
        self._inherit_from_sources(headers, labels)
        return labels

    def _model_array(self, headers: Sequence[SeriesHeader]) -> np.ndarray:
        """Header-model probabilities in the HEADS column layout (models without predict_array: from dicts)."""
        model = self.header_model
        if hasattr(model, "predict_array"):
            arr = np.asarray(model.predict_array(headers), np.float64)
            if arr.shape == (len(headers), N_COLUMNS):
                return arr
        arr = np.zeros((len(headers), N_COLUMNS))
        for k, probs in enumerate(model.predict(headers)):
            for fname, dist in probs.items():
                for value, p in dist.items():
                    c = COLUMN.get((fname, value))
                    if c is not None:
                        arr[k, c] = p
        return arr

    def _fuse_all(self, hard: np.ndarray, desc: np.ndarray, pm: np.ndarray | None,
                  pis: Sequence[dict[str, dict[Any, float]] | None], modalities: Sequence[str | None]) -> list[_Fused]:
        """Fused per-column probabilities for all series at once (vectorised log-linear fusion).

        Returns per series: probabilities in the HEADS column layout, whether each field got any
        evidence, and the description scores row (for the overruled check).
        """
        w = self.weights
        n = len(hard)
        model_rows: np.ndarray = np.zeros(n, bool)
        img_log = np.zeros((n, N_COLUMNS))
        img_has = np.zeros((n, len(HEAD_SLICES)), bool)
        for k, pi in enumerate(pis):
            if not pi:
                continue
            for h_i, (fname, a, b) in enumerate(HEAD_SLICES):
                dist = pi.get(fname)
                if not dist:
                    continue
                img_has[k, h_i] = True
                for c in range(a, b):
                    img_log[k, c] = math.log(max(float(dist.get(COLUMN_VALUE[c], 0.0)), w.model_floor))
        wd = np.full((n, 1), w.description)
        wd[img_has.any(1)] *= w.description_with_image
        logits = hard + wd * desc + w.image_model * img_log
        if pm is not None:
            wm = np.full(N_COLUMNS, w.header_model)
            for fname, a, b in HEAD_SLICES:
                if fname in w.header_model_fields:
                    wm[a:b] = w.header_model_fields[fname]
            model_rows = np.fromiter(((m or "") in MODEL_MODALITIES for m in modalities), bool, n)
            logits += np.where(model_rows[:, None], wm * np.log(np.maximum(pm, w.model_floor)), 0.0)
        voted = (hard != 0) | (desc != 0)
        probs = np.zeros_like(logits)
        spoke = np.zeros((n, len(HEAD_SLICES)), bool)
        for h_i, (_, a, b) in enumerate(HEAD_SLICES):
            z = logits[:, a:b].copy()
            any_vote = voted[:, a:b].any(1)
            model_says = (model_rows if pm is not None else np.zeros(n, bool)) | img_has[:, h_i]
            spoke[:, h_i] = any_vote | model_says
            # rules only: the candidates are the voted values and None (not applicable)
            rules_only = ~model_says
            if rules_only.any():
                zr = np.where(voted[:, a:b], z, -np.inf)
                zr[:, 0] = z[:, 0] + w.none_prior
                z = np.where(rules_only[:, None], zr, z)
            z -= z.max(1, keepdims=True)
            e = np.exp(z)
            probs[:, a:b] = e / e.sum(1, keepdims=True)
        # per head: best value with None allowed (ties -> non-None), best non-None value renormalised
        n_heads = len(HEAD_SLICES)
        idx_all = np.zeros((n, n_heads), np.int64)
        conf_all = np.zeros((n, n_heads))
        idx_nn = np.zeros((n, n_heads), np.int64)
        conf_nn = np.zeros((n, n_heads))
        desc_top = np.full((n, n_heads), -1, np.int64)
        for h_i, (_, a, b) in enumerate(HEAD_SLICES):
            p = probs[:, a:b]
            k_nn = p[:, 1:].argmax(1)
            p_nn = p[np.arange(n), k_nn + 1]
            p_none = p[:, 0]
            use_nn = p_nn >= p_none
            idx_all[:, h_i] = np.where(use_nn, k_nn + 1, 0)
            conf_all[:, h_i] = np.where(use_nn, p_nn, p_none)
            idx_nn[:, h_i] = k_nn + 1
            rest = 1.0 - p_none
            conf_nn[:, h_i] = np.where(rest > 0, p_nn / np.where(rest > 0, rest, 1.0), 0.0)
            d = desc[:, a:b]
            has = d.max(1) > 0
            desc_top[:, h_i] = np.where(has, d.argmax(1), -1)
        ia, ca, inn, cnn = idx_all.tolist(), conf_all.tolist(), idx_nn.tolist(), conf_nn.tolist()
        sp, dt = spoke.tolist(), desc_top.tolist()
        return [_Fused(ia[k], ca[k], inn[k], cnn[k], sp[k], dt[k], k, desc) for k in range(n)]

    # ------------------------------------------------------------------------ internals
    def _predict_images(self, headers: Sequence[SeriesHeader], images: Mapping[str, np.ndarray]) -> list[dict[str, dict[Any, float]] | None]:
        out: list[dict[str, dict[Any, float]] | None] = [None] * len(headers)
        model = self.image_model
        if model is None:
            return out
        idx = [k for k, h in enumerate(headers) if h.series_uid in images and images[h.series_uid] is not None]
        if not idx:
            return out
        try:
            batch = np.stack([np.asarray(images[headers[k].series_uid]) for k in idx])
            preds = model.predict(batch, [headers[k].modality or "" for k in idx])
        except Exception as exc:  # noqa: BLE001
            log.warning("series image model failed (%s): header only", exc)
            return out
        for k, p in zip(idx, preds, strict=False):
            out[k] = p
        return out

    def _label(self, h: SeriesHeader, rr: RuleResult, fused: _Fused,
               pm: np.ndarray | None, pi: dict[str, dict[Any, float]] | None, images_given: bool = False) -> SeriesLabel:
        label = SeriesLabel(series_uid=h.series_uid, modality=h.modality)
        try:
            return self._decide(h, rr, fused, pm, pi, label, images_given)
        except Exception as exc:  # noqa: BLE001 - never an exception for one odd series
            log.warning("series %s: classification failed (%s)", h.series_uid, exc)
            label.role = "unknown"
            label.unknown_reason = f"classification failed: {type(exc).__name__}: {exc}"
            return label

    def _decide(self, h: SeriesHeader, rr: RuleResult, fr: _Fused,
                pm: np.ndarray | None, pi: dict[str, dict[Any, float]] | None, label: SeriesLabel,
                images_given: bool = False) -> SeriesLabel:
        spoke_l = fr.spoke
        hard_voted = {v.field for v in rr.votes if v.source == "header_rule" and v.values != (None,)}
        reasons: list[str] = []
        if not h.modality:
            reasons.append("no Modality in the header")
        if pm is None:
            label.evidence.append(Evidence("fusion", "role", None, 0.0, "header model not available: header rules only"))
        if pi is None and images_given:
            label.evidence.append(Evidence("fusion", "role", None, 0.0, "no image model prediction for this series"))
        # --- role
        role, role_conf = _pick(fr, "role", exclude_none=True)
        if role is None or not spoke_l[HEAD_INDEX["role"][0]]:
            role, role_conf = "unknown", 0.0
            reasons.append("no header fact, description or model says what this series is")
        elif role_conf < MIN_ROLE_CONFIDENCE:
            reasons.append(f"role uncertain: {role} at {role_conf:.2f}")
            role = "unknown"
        label.role = role
        label.field_confidence["role"] = round(role_conf, 4)
        # --- derived type, then the fields that apply
        derived_type = _pick(fr, "derived_type", exclude_none=True)[0] if role == "derived" else None
        fields = self.rules.fields_for(h.modality, role, derived_type)
        values: dict[str, Any] = {"role": role}
        for fname in LABEL_FIELDS[1:]:
            if fname not in fields:
                values[fname] = None
                continue
            spoke = spoke_l[HEAD_INDEX[fname][0]]
            # the field applies and a header fact gave it a value: "not applicable" is no answer
            # (guards against a model that is unsure on headers unlike its training data)
            value, conf = _pick(fr, fname, exclude_none=fname == "derived_type" or fname in hard_voted)
            values[fname] = value
            label.field_confidence[fname] = round(conf, 4) if spoke else 0.0
            if value is None and not spoke and fname not in ("region", "phase"):
                reasons.append(f"{fname}: no evidence")
        for fname, value in values.items():
            setattr(label, fname, value)
        # --- special categories (rules only: CT perfusion, calcium score)
        special = [v for v in rr.votes if v.field == "special"]
        special_value = None
        if special and role in ("original", "derived"):
            special_value = max(special, key=lambda v: v.weight).values[0]
            label.evidence.append(Evidence("header_rule", "category", special_value, 1.0,
                                           "; ".join(v.detail for v in rr.votes if v.field == "special")))
        # --- evidence per decided field
        self._evidence(label, rr, pm, pi, values)
        self._overruled(label, h, values)
        label.category = category_code({**values, "special": special_value}, h.modality)
        if label.category is None and role != "unknown":
            reasons.append(f"no standard category for {', '.join(f'{k}={v}' for k, v in values.items() if v is not None)}")
        label.confidence = round(self._confidence(label), 4)
        label.evidence.append(Evidence("fusion", "category", label.category, label.confidence,
                                       "min confidence over the fields that define the category"))
        if reasons:
            label.unknown_reason = "; ".join(reasons)
        return label

    def _evidence(self, label: SeriesLabel, rr: RuleResult, pm: np.ndarray | None,
                  pi: dict[str, dict[Any, float]] | None, values: Mapping[str, Any]) -> None:
        ev = label.evidence
        # the strongest votes behind each decided value: at most MAX_VOTE_EVIDENCE per field and source
        shown: dict[tuple[str, str], int] = {}
        for v in rr.votes:  # rules run strongest first (RuleSet sorts them by weight)
            value = values.get(v.field)
            if value is None or value not in v.values:
                continue
            key = (v.field, v.source)
            if shown.get(key, 0) >= MAX_VOTE_EVIDENCE:
                continue
            shown[key] = shown.get(key, 0) + 1
            ev.append(Evidence(v.source, v.field, value, _VOTE_CONF.get(v.weight) or round(1 - math.exp(-v.weight), 3),
                               v.detail, rule=v.rule))
        for fname, value in values.items():
            if value is None:
                continue
            c = COLUMN.get((fname, value))
            if pm is not None and c is not None:
                ev.append(Evidence("header_model", fname, value, round(float(pm[c]), 4), "learned header classifier"))
            if pi and fname in pi:
                ev.append(Evidence("image_model", fname, value, round(float(pi[fname].get(value, 0.0)), 4),
                                   "thumbnail image classifier"))

    def _overruled(self, label: SeriesLabel, h: SeriesHeader, values: Mapping[str, Any]) -> None:
        """Mark fields where SeriesDescription by itself said something other than the fused value.

        Only SeriesDescription counts here: ProtocolName often still names the right protocol
        when the description is wrong, and must not hide the contradiction.
        """
        said_by_field = self.rules.description_scores(h)
        for fname, scores in said_by_field.items():
            if fname not in values or values.get(fname) is None or not scores:
                continue
            said = max(scores, key=lambda v: scores[v])
            chosen = values[fname]
            if said is None or said == chosen or scores.get(chosen, 0.0) > 0:
                continue
            label.description_overruled = True
            label.evidence.append(Evidence("fusion", fname, chosen, label.field_confidence.get(fname, 0.0),
                                           f"SeriesDescription '{h.description}' says {fname}={said}; "
                                           f"header facts and models say {chosen}"))

    def _confidence(self, label: SeriesLabel) -> float:
        if label.role == "unknown":
            return 0.0
        code = label.category or family(label.modality)
        table = self.rules.confidence_fields
        fields: tuple[str, ...] = ("role",)
        best = ""
        for prefix, fs in table.items():
            if (code == prefix or code.startswith(prefix + ".")) and len(prefix) > len(best):
                best, fields = prefix, fs
        confs = [label.field_confidence[f] for f in fields if f in label.field_confidence and getattr(label, f, None) is not None]
        return min(confs) if confs else label.field_confidence.get("role", 0.0)

    def _inherit_from_sources(self, headers: Sequence[SeriesHeader], labels: list[SeriesLabel]) -> None:
        """A derived CT series takes the contrast phase of the source series it names."""
        by_uid = {lab.series_uid: lab for lab in labels}
        for h, lab in zip(headers, labels, strict=False):
            if lab.role != "derived" or lab.phase is None or not h.source_series_uids:
                continue
            src = next((by_uid[u] for u in h.source_series_uids if u in by_uid and by_uid[u].phase), None)
            if src is None or src.phase == lab.phase:
                continue
            lab.evidence.append(Evidence("fusion", "phase", src.phase, src.field_confidence.get("phase", 0.0),
                                         f"derived from series {src.series_uid}: its phase {src.phase} "
                                         f"(own estimate {lab.phase})"))
            lab.phase = src.phase
            lab.field_confidence["phase"] = src.field_confidence.get("phase", 0.0)


def classify_headers(headers: Sequence[SeriesHeader], **kwargs: Any) -> list[SeriesLabel]:
    """Convenience: a one-off classifier over ``headers`` (header rules + header model)."""
    return SeriesClassifier(image_model=None, **kwargs).classify(headers)


__all__ = ["SeriesClassifier", "FusionWeights", "classify_headers", "LABEL_FIELDS"]
