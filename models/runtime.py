"""ONNX Runtime sessions, loaded once per worker process and reused across exams.

Reloading a model per case is a known cost in TotalSegmentator-style tools (seconds per
exam spent parsing weights); here a session is keyed by the weights file's path and
sha256 and kept for the life of the process. The CUDA execution provider is used when
onnxruntime offers it (a GPU build on a GPU machine), the CPU provider otherwise; serving
never imports torch.

Environment:

* ``RADQC_ONNX_PROVIDERS``: comma-separated provider list to force (e.g. ``CPUExecutionProvider``).
* ``RADQC_ONNX_THREADS``: intra-op threads per session (default: onnxruntime's choice,
  i.e. the machine's cores). Set it to 1 when several worker processes share a machine.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from radqc.models.registry import ModelInfo, get_model, sha256_file

_LOCK = threading.Lock()
_SESSIONS: dict[tuple[str, str, tuple[str, ...], int], Any] = {}


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def preferred_providers() -> list[str]:
    """CUDA first when onnxruntime has it, then CPU; ``RADQC_ONNX_PROVIDERS`` overrides."""
    forced = os.environ.get("RADQC_ONNX_PROVIDERS", "").strip()
    available = available_providers()
    if forced:
        wanted = [p.strip() for p in forced.split(",") if p.strip()]
        unknown = [p for p in wanted if p not in available]
        if unknown:
            raise RuntimeError(f"RADQC_ONNX_PROVIDERS names {unknown}, not available here ({available})")
        return wanted
    order = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in order if p in available] or available


def _threads() -> int:
    value = os.environ.get("RADQC_ONNX_THREADS", "").strip()
    try:
        return max(0, int(value)) if value else 0
    except ValueError:
        return 0


def session_for_path(path: Path, providers: list[str] | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``path``, shared by every caller in this process."""
    import onnxruntime as ort

    path = Path(path).resolve()
    provs = tuple(providers or preferred_providers())
    threads = _threads()
    key = (str(path), sha256_file(path), provs, threads)
    with _LOCK:
        sess = _SESSIONS.get(key)
        if sess is None:
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if threads:
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(path), sess_options=opts, providers=list(provs))
            _SESSIONS[key] = sess
        return sess


def session_for(model: str | ModelInfo, providers: list[str] | None = None) -> Any:
    """The session of a registered model (weights checked against the registry's sha256)."""
    info = get_model(model) if isinstance(model, str) else model
    return session_for_path(info.verified_weights(), providers)


def loaded_sessions() -> int:
    """How many sessions this process holds (tests check that models are not reloaded per exam)."""
    with _LOCK:
        return len(_SESSIONS)


def clear_sessions() -> None:
    with _LOCK:
        _SESSIONS.clear()


class RegisteredModel:
    """A registry model served by one ONNX Runtime session; subclasses name it (``MODEL_NAME``)
    and add what its outputs mean.

    Why a shared base: every served model is loaded the same way -- the registry entry, its
    sha256-checked weights, one session per process, and ``None`` with a logged reason when it
    cannot be used, so that the caller falls back to what it does without the model."""

    MODEL_NAME = ""
    _shared_lock = threading.Lock()
    _shared: dict[type, Any] = {}

    def __init__(self, session: Any, info: Any = None) -> None:
        self.session = session
        self.info = info
        self.input_name = session.get_inputs()[0].name

    @property
    def version(self) -> str:
        return str(getattr(self.info, "version", "?"))

    @classmethod
    def load(cls, name: str | None = None) -> Any:
        """The model from the registry (``name`` or the class's ``MODEL_NAME``), or None with a logged reason."""
        try:
            info = get_model(name or cls.MODEL_NAME)
            return cls(session_for(info), info)
        except Exception as exc:  # noqa: BLE001 - unregistered / missing weights: the caller goes on without it
            logging.getLogger(cls.__module__).info("%s unavailable (%s): going on without it", cls.__name__, exc)
            return None

    @classmethod
    def shared(cls) -> Any:
        """One model per class and process (loaded on first use; a failed load is not retried)."""
        with RegisteredModel._shared_lock:
            if cls not in RegisteredModel._shared:
                RegisteredModel._shared[cls] = cls.load()
            return RegisteredModel._shared[cls]
