"""Header features of the learned series classifier: SeriesHeader -> one float32 row.

Shared by training and serving (numpy only), so a feature means the same thing in both.
Three blocks:

* numeric header facts, log-scaled where they span decades (TR, TE, TI, b-values, instance
  counts), each with a "missing" indicator (absence is informative: no TI, no b-value);
* one-hot categoricals (modality, SOP class, ImageType tokens, scanning sequence / variant /
  options, plane, manufacturer, ...) from fixed vocabularies stored with the model;
* hashed character 1-3-grams of SeriesDescription, ProtocolName, StudyDescription and
  BodyPartExamined, each text in its own bucket range, CRC32-hashed (deterministic across
  processes, unlike Python's hash). The model learns which words to trust; training adds
  description noise on top of the generator's ~10% wrong descriptions so it does not trust
  them blindly.

Per distinct text the n-gram buckets are computed once (descriptions repeat across series),
which keeps featurisation far above 10,000 series/s.
"""

from __future__ import annotations

import math
import unicodedata
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radqc.pipelines.series.features import SeriesHeader

#: version of the feature layout; stored in the model's metadata and checked at load
FEATURE_VERSION = 2

MODALITIES = ("CT", "MR", "DX", "CR", "DR", "MG", "SR", "OT", "SC", "PT", "NM", "US", "XA", "RF")
SOP_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.4",
    "1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1",
    "1.2.840.10008.5.1.4.1.1.1.2", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.88.67",
    "1.2.840.10008.5.1.4.1.1.88.22", "1.2.840.10008.5.1.4.1.1.88.11")
IMAGE_TYPE_TOKENS = ("ORIGINAL", "DERIVED", "PRIMARY", "SECONDARY", "AXIAL", "LOCALIZER", "REFORMATTED", "MPR",
                     "MIP", "MINIP", "VOLUME", "VR", "CPR", "SSD", "MONOE", "IODINE", "VNC", "DOSE_INFO",
                     "DIFFUSION", "TRACEW", "ADC", "M", "ND", "NORM", "DIS2D", "SWI", "PHASE", "P", "SUBTRACTION",
                     "OTHER", "CSA RESAMPLED", "PROJECTION IMAGE")
SCANNING_SEQUENCE = ("SE", "IR", "GR", "EP", "RM")
SEQUENCE_VARIANT = ("SK", "SP", "MP", "SS", "TRSS", "OSP", "MTC", "NONE")
SCAN_OPTIONS = ("IR", "FS", "PFP", "PFF", "SAT1", "SAT2", "FC", "CG", "RG", "PER", "SP", "EPI")
PLANES = ("axial", "coronal", "sagittal", "oblique")
MANUFACTURERS = ("ge", "siemens", "philips", "uih", "canon", "toshiba", "hitachi", "fujifilm", "carestream", "agfa")
VIEW_POSITIONS = ("PA", "AP", "LL", "RL", "LAT", "LATERAL", "OBL", "CC", "MLO")
PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "PALETTE COLOR")
CONTEXT_KEYS = ("exam_contrast", "mr_after_other", "ct_block_rank", "ct_block_count", "ct_enh_rank", "ct_enh_count",
                "ct_contrast_all")

#: hashed n-gram buckets per text field
TEXT_BUCKETS = {"description": 384, "protocol": 256, "study_description": 256, "body_part": 32, "kernel": 64,
                "sequence_name": 64}


def _log(v: float | None) -> float:
    if v is None or not math.isfinite(v):
        return 0.0
    return math.copysign(math.log1p(abs(v)), v)


NUMERIC: tuple[tuple[str, Any], ...] = (
    ("tr", lambda h: h.tr), ("te", lambda h: h.te), ("ti", lambda h: h.ti), ("etl", lambda h: h.echo_train_length),
    ("flip", lambda h: h.flip_angle), ("b_max", lambda h: max(h.b_values) if h.b_values else None),
    ("n_b", lambda h: float(len(h.b_values)) if h.b_values else None),
    ("thickness", lambda h: h.slice_thickness), ("spacing", lambda h: h.spacing_between),
    ("rows", lambda h: h.rows), ("columns", lambda h: h.columns), ("pixel_spacing", lambda h: h.pixel_spacing),
    ("n_instances", lambda h: float(h.n_instances)), ("repeats", lambda h: h.repeats),
    ("n_positions", lambda h: float(h.n_positions) if h.n_positions else None),
    ("temporal_positions", lambda h: h.temporal_positions), ("kvp", lambda h: h.kvp),
    ("recon_diameter", lambda h: h.recon_diameter), ("window_center", lambda h: h.window_center),
    ("window_width", lambda h: h.window_width), ("field_strength", lambda h: h.field_strength),
    ("z_extent", lambda h: h.z_extent), ("trigger_time", lambda h: h.trigger_time),
    ("n_frames", lambda h: float(h.n_frames) if h.n_frames and h.n_frames > 1 else None),
    ("series_number", lambda h: h.series_number),
)


def _norm_text(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower().strip()


def _ngrams(text: str, n_buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """Bucket indices and weights of the character 1-3-grams of ``text`` (word-boundary padded)."""
    t = f" {_norm_text(text)} "
    counts: dict[int, float] = {}
    for n in (1, 2, 3):
        for i in range(len(t) - n + 1):
            g = t[i:i + n]
            if n == 1 and g == " ":
                continue
            b = zlib.crc32(g.encode("utf-8")) % n_buckets
            counts[b] = counts.get(b, 0.0) + 1.0
    if not counts:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    idx = np.fromiter(counts.keys(), np.int64, len(counts))
    val = np.fromiter(counts.values(), np.float32, len(counts))
    val /= float(np.sqrt((val * val).sum()))
    return idx, val


@dataclass
class Featurizer:
    """Turns headers into model input rows; stateless apart from a per-text n-gram cache."""

    _cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        names: list[str] = []
        for n, _ in NUMERIC:
            names += [f"num:{n}", f"missing:{n}"]
        names += [f"ctx:{k}" for k in CONTEXT_KEYS]
        names += [f"modality:{m}" for m in MODALITIES] + ["modality:other"]
        names += [f"sop:{s}" for s in SOP_CLASSES] + ["sop:other"]
        names += [f"it:{t}" for t in IMAGE_TYPE_TOKENS]
        names += [f"ss:{t}" for t in SCANNING_SEQUENCE] + [f"sv:{t}" for t in SEQUENCE_VARIANT]
        names += [f"so:{t}" for t in SCAN_OPTIONS]
        names += [f"plane:{p}" for p in PLANES] + ["plane:none"]
        names += [f"mf:{m}" for m in MANUFACTURERS]
        names += [f"vp:{v}" for v in VIEW_POSITIONS] + [f"pi:{p}" for p in PHOTOMETRIC]
        names += ["flag:contrast", "flag:derivation", "flag:sources", "flag:angio", "flag:3d", "flag:laterality"]
        self.offsets: dict[str, int] = {}
        base = len(names)
        for key, n_buckets in TEXT_BUCKETS.items():
            self.offsets[key] = base
            base += n_buckets
        self.names = names
        self.dim = base
        self.index = {n: i for i, n in enumerate(names)}

    def _text(self, key: str, text: str | None) -> tuple[np.ndarray, np.ndarray] | None:
        if not text:
            return None
        ck = (key, text)
        hit = self._cache.get(ck)
        if hit is None:
            idx, val = _ngrams(text, TEXT_BUCKETS[key])
            hit = (idx + self.offsets[key], val)
            if len(self._cache) > 500_000:
                self._cache.clear()
            self._cache[ck] = hit
        return hit

    def transform(self, headers: Sequence[SeriesHeader], texts: Sequence[dict[str, str | None]] | None = None) -> np.ndarray:
        """Rows of features (float32, ``[len(headers), dim]``); ``texts`` overrides text fields (training noise)."""
        x = np.zeros((len(headers), self.dim), np.float32)
        ix = self.index
        # numeric block, column-wise: raw values (NaN = missing) -> sign * log1p(|v|) and a missing flag
        raw = np.full((len(headers), len(NUMERIC)), np.nan)
        for c, (_, get) in enumerate(NUMERIC):
            col = raw[:, c]
            for r, h in enumerate(headers):
                try:
                    v = get(h)
                except (TypeError, ValueError):
                    continue
                if v is not None:
                    col[r] = v
        finite = np.isfinite(raw)
        vals = np.where(finite, np.sign(raw) * np.log1p(np.abs(np.where(finite, raw, 0.0))), 0.0)
        num_idx = [ix[f"num:{n}"] for n, _ in NUMERIC]
        miss_idx = [ix[f"missing:{n}"] for n, _ in NUMERIC]
        x[:, num_idx] = vals
        x[:, miss_idx] = ~finite
        for r, h in enumerate(headers):
            row = x[r]
            for k in CONTEXT_KEYS:
                row[ix[f"ctx:{k}"]] = float(h.exam_context.get(k, 0.0))
            row[ix.get(f"modality:{h.modality}", ix["modality:other"])] = 1.0
            row[ix.get(f"sop:{h.sop_class_uid}", ix["sop:other"])] = 1.0
            for t in h.image_type:
                j = ix.get(f"it:{t}")
                if j is not None:
                    row[j] = 1.0
            for prefix, toks in (("ss", h.scanning_sequence), ("sv", h.sequence_variant), ("so", h.scan_options)):
                for t in toks:
                    j = ix.get(f"{prefix}:{t}")
                    if j is not None:
                        row[j] = 1.0
            row[ix[f"plane:{h.plane or 'none'}"]] = 1.0
            mf = (h.manufacturer or "").lower()
            for m in MANUFACTURERS:
                if mf.startswith(m):
                    row[ix[f"mf:{m}"]] = 1.0
                    break
            j = ix.get(f"vp:{(h.view_position or '').upper()}")
            if j is not None:
                row[j] = 1.0
            j = ix.get(f"pi:{(h.photometric or '').upper()}")
            if j is not None:
                row[j] = 1.0
            row[ix["flag:contrast"]] = 1.0 if h.contrast_agent else 0.0
            row[ix["flag:derivation"]] = 1.0 if h.derivation else 0.0
            row[ix["flag:sources"]] = 1.0 if h.source_series_uids else 0.0
            row[ix["flag:angio"]] = 1.0 if (h.angio_flag or "").upper() == "Y" else 0.0
            row[ix["flag:3d"]] = 1.0 if (h.mr_acquisition_type or "").upper() == "3D" else 0.0
            row[ix["flag:laterality"]] = 1.0 if h.laterality in ("L", "R") else 0.0
            tx = texts[r] if texts is not None else None
            for key in TEXT_BUCKETS:
                text = tx[key] if tx is not None and key in tx else getattr(h, key, None)
                hit = self._text(key, text)
                if hit is not None:
                    row[hit[0]] = hit[1]
        return x


__all__ = ["Featurizer", "FEATURE_VERSION", "TEXT_BUCKETS"]
