"""The engine's view of the model slots: a model object, or a recorded reason why there is none.

Models come only from :mod:`radqc.models.slots` (our bundled ONNX weights, or weights a user
configured). There is no fallback model: when a slot cannot be resolved (weights not
trained yet, checksum mismatch, a user's folder missing), the engine gets an
:class:`Unavailable` carrying the reason, and every result it writes says
``status: model_unavailable`` with that reason — a QC number computed by a stand-in model
would be worse than none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: The anatomy slots, in the order their results appear.
SLOTS = ("ct_organs", "body_region", "radiograph_anatomy")


@dataclass(frozen=True)
class Unavailable:
    """A slot with no usable model, and why (shown to the user and stored in results)."""

    slot: str
    reason: str
    name: str = ""
    version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"slot": self.slot, "status": "unavailable", "reason": self.reason}


def resolve_slot(slot: str) -> Any:
    """The model object of ``slot`` (see ``radqc.models.interfaces``), or :class:`Unavailable`."""
    try:
        from radqc.models import slots
    except ImportError as exc:
        return Unavailable(slot, f"model slots are not installed (radqc.models.slots): {exc}")
    try:
        model = slots.resolve(slot)
    except Exception as exc:  # noqa: BLE001 - any failure to load is a recorded reason, not a crash
        return Unavailable(slot, f"{type(exc).__name__}: {exc}"[:500])
    if model is None:
        return Unavailable(slot, "no model configured for this slot")
    return model


def slot_versions(slots: tuple[str, ...] = SLOTS) -> dict[str, str]:
    """One line per slot naming the model behind it (name, version, weights hash), for a
    stage's fingerprint: a swapped model re-runs the stage. Never raises and never loads a
    model; an unresolvable slot reads ``unavailable`` (so it re-runs once the model lands)."""
    try:
        from radqc.models import slots as model_slots
    except ImportError as exc:
        return {slot: f"unavailable: {exc}"[:200] for slot in slots}
    out: dict[str, str] = {}
    for slot in slots:
        try:
            info = dict(model_slots.slot_versions(slot))
        except Exception as exc:  # noqa: BLE001 - a broken slot must not stop other stages
            out[slot] = f"unavailable: {type(exc).__name__}"
            continue
        digest = str(info.get("sha256") or info.get("bundle_hash") or "")[:16]
        out[slot] = " ".join(p for p in (str(info.get("kind", "")), str(info.get("name", "")),
                                         str(info.get("version", "")), digest) if p)
    return out


def describe(slot: str, model: Any) -> dict[str, Any]:
    """What a result records about the model of a slot."""
    if isinstance(model, Unavailable):
        return model.to_dict()
    if model is None:
        return {"slot": slot, "status": "not_used"}
    return {"slot": slot, "status": "ok", "name": str(getattr(model, "name", type(model).__name__)),
            "version": str(getattr(model, "version", ""))}
