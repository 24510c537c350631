"""A MONAI bundle folder as our ``ct_organs`` segmenter, run through the bundle's own inference config.

The bundle (e.g. MONAI's ``wholeBody_ct_segmentation``: ``configs/inference.json``,
``configs/metadata.json``, ``models/model.pt``) keeps its own preprocessing, network, sliding
window inferer, postprocessing (``Invertd`` back to the input space, ``SaveImaged``) and
checkpoint loader: we only point its ``datalist`` at our image written to a temporary NIfTI,
its ``output_dir`` at a temporary folder, and run its ``run`` expressions (the evaluator).
Re-implementing a bundle's transforms here would drift from what its authors validated.

The config is parsed and the network built once per segmenter; the bundle's checkpoint loader
runs on the first image only (its handler is detached afterwards), so a worker that keeps the
segmenter (see :mod:`radqc.models.slots`) pays the load once, not per exam.

Labels: the bundle's ``metadata.json`` ``network_data_format.outputs.<pred>.channel_def`` names
its output values; they are mapped onto ours by :func:`radqc.models.byo.common.build_label_mapping`
(the slot's ``label_map`` first, then ``totalsegmentator_names.yaml``; leftovers become ``body``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from radqc.models.byo.common import (
    OUR_LABEL_SET,
    LabelMapping,
    build_label_mapping,
    byo_error,
    check_volume,
    files_hash,
    finish,
    resample_labels_like,
    stdout_to_stderr,
)
from radqc.models.registry import LabelSet, load_label_set

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

INFERENCE_CONFIGS = ("inference.json", "inference.yaml", "inference.yml")
META_FILE = "metadata.json"


def is_monai_bundle(path: Path) -> bool:
    """A folder with ``configs/metadata.json`` and an inference config (MONAI bundle layout)."""
    configs = path / "configs"
    return (configs / META_FILE).is_file() and any((configs / c).is_file() for c in INFERENCE_CONFIGS)


def inference_config(path: Path, config_file: str | None = None) -> Path:
    configs = Path(path) / "configs"
    if config_file:
        candidate = Path(config_file)
        candidate = candidate if candidate.is_absolute() else configs / candidate
        if not candidate.is_file():
            raise byo_error("bundle_layout", f"{candidate} does not exist")
        return candidate
    for name in INFERENCE_CONFIGS:
        if (configs / name).is_file():
            return configs / name
    raise byo_error("bundle_layout", str(path))


def bundle_metadata(path: Path) -> dict[str, Any]:
    meta_path = Path(path) / "configs" / META_FILE
    if not meta_path.is_file():
        raise byo_error("bundle_layout", f"{meta_path} is missing")
    try:
        return json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise byo_error("bundle_layout", f"{meta_path}: {exc}") from exc


def bundle_channels(meta: Mapping[str, Any], output_key: str | None = None) -> dict[int, str | None]:
    """Output label value -> name from the metadata's ``channel_def`` (empty when it has none)."""
    outputs = (meta.get("network_data_format") or {}).get("outputs") or {}
    if not outputs:
        return {}
    key = output_key or ("pred" if "pred" in outputs else next(iter(outputs)))
    channel_def = (outputs.get(key) or {}).get("channel_def") or {}
    out: dict[int, str | None] = {}
    for k, v in channel_def.items():
        try:
            out[int(k)] = str(v) if v is not None else None
        except (TypeError, ValueError):
            continue
    return out


def declared_labels(path: Path | str) -> dict[int, str | None]:
    """The bundle's output value -> name (from its metadata), without importing monai."""
    return bundle_channels(bundle_metadata(Path(path)))


def bundle_info(path: Path | str) -> dict[str, Any]:
    """Name, version and a hash of the bundle's configs and weights — without importing monai.

    The hash covers every file under ``configs/`` and ``models/``: a swapped checkpoint or an
    edited transform changes it, and with it the pipeline run's fingerprint."""
    root = Path(path).resolve()
    meta = bundle_metadata(root)
    files = [p for sub in ("configs", "models") for p in (root / sub).rglob("*") if p.is_file()]
    return {
        "kind": "monai_bundle",
        "name": str(meta.get("name") or root.name),
        "version": str(meta.get("version") or "unknown"),
        "bundle_hash": files_hash(root, files),
        "path": str(root),
    }


class MonaiBundleSegmenter:
    """:class:`radqc.models.interfaces.Segmenter` running a MONAI bundle's inference config.

    Parameters
    ----------
    path:
        The bundle folder (holds ``configs/`` and ``models/``).
    label_map:
        Their output value or name -> our structure name (or ``background``); wins over the
        names file. Needed when the metadata has no ``channel_def``.
    device:
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; None keeps the bundle's own choice.
    config_file:
        Another inference config of the bundle (e.g. ``inference_trt.json``).
    overrides:
        Extra config ids to set (``{"displayable_configs#highres": False}``).
    body_fill:
        Give ``body`` to unlabelled voxels inside the patient (see ``common.fill_body``).
    """

    def __init__(
        self,
        path: str | Path,
        label_map: Mapping[Any, Any] | None = None,
        device: str | None = None,
        config_file: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        body_fill: bool = True,
        name: str | None = None,
        output_key: str | None = None,
    ) -> None:
        root = Path(path).expanduser().resolve()
        if not root.is_dir() or not is_monai_bundle(root):
            raise byo_error("bundle_layout", str(root))
        self.path = root
        self.config_path = inference_config(root, config_file)
        self.meta = bundle_metadata(root)
        info = bundle_info(root)
        self.name = name or info["name"]
        self.version = info["version"]
        self.bundle_hash = info["bundle_hash"]
        self.device = device
        self.overrides = dict(overrides or {})
        self.body_fill = body_fill
        channels = bundle_channels(self.meta, output_key)
        if not channels and not label_map:
            raise byo_error("no_labels", f"{root / 'configs' / META_FILE} has no channel_def")
        self.mapping: LabelMapping = build_label_mapping(channels, label_map)
        self.last_run: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._parser: Any = None
        self._workdir: Path | None = None
        self._weights_loaded = False

    @property
    def label_set(self) -> LabelSet:
        return load_label_set(OUR_LABEL_SET)

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": "monai_bundle", "name": self.name, "version": self.version, "bundle_hash": self.bundle_hash}

    # ---------------------------------------------------------------------------------------
    def _prepare(self) -> Any:
        """Parse the inference config once, pointed at this segmenter's fixed temp paths."""
        if self._parser is not None:
            return self._parser
        try:
            import ignite  # noqa: F401  (the bundle's evaluator is an ignite engine)
            import nibabel  # noqa: F401  (LoadImaged / SaveImaged on NIfTI)
            from monai.bundle import ConfigParser
        except ImportError as exc:
            raise byo_error("monai_missing", str(exc)) from exc

        workdir = Path(tempfile.mkdtemp(prefix="radqc-bundle-"))
        weakref.finalize(self, shutil.rmtree, workdir, True)
        (workdir / "in").mkdir()
        (workdir / "out").mkdir()
        self._workdir = workdir
        # uncompressed: gzip of a 512 x 512 x 300 float volume costs seconds per exam for nothing
        image_file = str(workdir / "in" / "image.nii")

        parser = ConfigParser()
        parser.read_meta(str(self.path / "configs" / META_FILE))
        parser.read_config(str(self.config_path))
        parser["bundle_root"] = str(self.path)
        image_key = parser.get("image_key", "image")
        if "datalist" in parser:
            parser["datalist"] = [image_file]
        elif "dataset#data" in parser:
            parser["dataset#data"] = [{image_key: image_file}]
        else:
            raise byo_error("bundle_config", f"{self.config_path.name} defines neither datalist nor dataset#data")
        if "output_dir" not in parser:
            raise byo_error("bundle_config", f"{self.config_path.name} defines no output_dir")
        parser["output_dir"] = str(workdir / "out")
        if "dataloader#num_workers" in parser:
            # one image per call: worker processes only cost start-up (and fork inside our workers)
            parser["dataloader#num_workers"] = 0
        if self.device:
            expr = f"$torch.device({self.device!r})"
            parser["device"] = expr
            if "inferer#device" in parser:
                parser["inferer#device"] = expr
        for key, value in self.overrides.items():
            parser[key] = value
        try:
            parser.parse()
            if "initialize" in parser:
                parser.get_parsed_content("initialize")
        except Exception as exc:  # noqa: BLE001  (any failure of their config is theirs to fix)
            raise byo_error("bundle_failed", f"{self.config_path.name} initialize: {type(exc).__name__}: {exc}") from exc
        self._parser = parser
        return parser

    def _run_once(self, parser: Any) -> None:
        """Evaluate the config's ``run`` expressions again (the parser caches evaluated items)."""
        run = parser.get("run")
        if run is None:
            raise byo_error("bundle_config", f"{self.config_path.name} defines no run")
        from monai.bundle.reference_resolver import ReferenceResolver

        # Evaluate each expression of the list by its own id: resolving the list id alone
        # reuses the cached results of its items.
        ids = [f"run#{i}" for i in range(len(run))] if isinstance(run, list) else ["run"]
        for rid in ids:  # the resolver keys items by their normalised id ("run::0" in monai >= 1.4)
            parser.ref_resolver.remove_resolved_content(ReferenceResolver.normalize_id(rid))
            parser.get_parsed_content(rid)
        if not self._weights_loaded:
            self._detach_checkpoint_loaders(parser)
            self._weights_loaded = True

    @staticmethod
    def _detach_checkpoint_loaders(parser: Any) -> None:
        """After the first run the weights sit in the network: stop reloading them per image."""
        from ignite.engine import Events
        from monai.handlers import CheckpointLoader

        if "evaluator" not in parser:
            return
        evaluator = parser.get_parsed_content("evaluator")
        handlers = getattr(evaluator, "_event_handlers", {}).get(Events.STARTED, [])
        for handler, _args, _kwargs in list(handlers):
            target = getattr(handler, "__self__", handler)
            if isinstance(target, CheckpointLoader):
                evaluator.remove_event_handler(handler, Events.STARTED)

    def segment(self, image: sitk.Image) -> sitk.Image:
        """Our uint8 label map in ``image``'s geometry (size, origin, spacing, direction)."""
        import numpy as np
        import SimpleITK as sitk

        check_volume(image)
        started = time.perf_counter()
        with self._lock, stdout_to_stderr():  # MONAI's loggers write to stdout; --json owns it
            parser = self._prepare()
            assert self._workdir is not None
            out_dir = self._workdir / "out"
            shutil.rmtree(out_dir, ignore_errors=True)
            out_dir.mkdir()
            sitk.WriteImage(sitk.Cast(image, sitk.sitkFloat32), str(self._workdir / "in" / "image.nii"))
            try:
                self._run_once(parser)
            except Exception as exc:  # noqa: BLE001
                raise byo_error("bundle_failed", f"{type(exc).__name__}: {exc}") from exc
            ext = str(parser.get("output_ext", ".nii.gz"))
            written = sorted(p for p in out_dir.rglob(f"*{ext}") if p.is_file())
            if len(written) != 1:
                raise byo_error("bundle_output", f"{len(written)} file(s) *{ext} under output_dir")
            their = sitk.ReadImage(str(written[0]))
        on_grid = resample_labels_like(their, image)
        out = finish(on_grid, image, self.mapping, self.body_fill)
        self.last_run = {
            "seconds": round(time.perf_counter() - started, 3),
            "their_labels_present": [int(v) for v in np.unique(sitk.GetArrayViewFromImage(on_grid))],
            **self.mapping.to_dict(),
        }
        return out
