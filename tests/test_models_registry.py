"""The model registry, the slot resolver and ``radqc models``.

Registry: every committed entry is servable (weights present, sha256 as registered, card
present, label set loads); a tampered weights file is refused; ``register_model`` round-trips.
Slots: the default, an environment variable, ``models.yaml``, layout auto-detection, the
errors a misconfiguration gets (bilingual), and one load per process and configuration.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from radqc.models import registry, slots
from radqc.models.interfaces import BodyRegionResult
from radqc.models.registry import (
    ModelError,
    ModelInfo,
    get_model,
    list_models,
    load_label_set,
    register_model,
)

# ------------------------------------------------------------------------------------------
# helpers


def tiny_onnx(path: Path, scale: float = 2.0) -> Path:
    """A valid ONNX graph (y = x * scale), a few hundred bytes."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Mul", ["x", "s"], ["y"])
    graph = helper.make_graph(
        [node], "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [helper.make_tensor("s", TensorProto.FLOAT, [1], [scale])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def fake_bundle(root: Path, name: str = "fake bundle") -> Path:
    """The files a MONAI bundle is recognised by (nothing here is run)."""
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "configs" / "inference.json").write_text(json.dumps({"run": ["$@evaluator.run()"]}))
    meta = {"name": name, "version": "0.1.9", "network_data_format": {"outputs": {"pred": {
        "channel_def": {"0": "background", "5": "liver", "13": "lung_upper_lobe_left", "93": "face"}}}}}
    (root / "configs" / "metadata.json").write_text(json.dumps(meta))
    (root / "models" / "model.pt").write_bytes(b"weights")
    return root


def fake_nnunet(root: Path, labels: dict[str, int] | None = None) -> Path:
    """The files an nnU-Net v2 results folder is recognised by."""
    (root / "fold_0").mkdir(parents=True)
    labels = labels or {"background": 0, "spleen": 1, "urinary_bladder": 2, "gluteus_maximus_left": 3}
    (root / "dataset.json").write_text(json.dumps({"labels": labels, "name": "Dataset291_Fake"}))
    (root / "plans.json").write_text(json.dumps({"dataset_name": "Dataset291_Fake", "image_reader_writer": "SimpleITKIO"}))
    (root / "fold_0" / "checkpoint_final.pth").write_bytes(b"checkpoint")
    return root


class FakeScorer:
    """A BodyRegionScorer brought as a Python class (kind: python)."""

    name = "fake_scorer"
    version = "1"

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def score(self, image: Any) -> BodyRegionResult:
        return BodyRegionResult(scores=[self.offset], z_mm=[0.0], landmarks={})


class NotAScorer:
    name = "nope"
    version = "0"


class FakeSegmenterFromInfo:
    """Stands in for a slot's default class: built from a registry ModelInfo."""

    def __init__(self, info: ModelInfo) -> None:
        self.info = info
        self.name = info.name
        self.version = info.version

    @property
    def label_set(self) -> Any:
        return load_label_set("ct_organs")

    def segment(self, image: Any) -> Any:
        return image


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No slot configuration from the developer's machine; a fresh cache per test."""
    for slot in slots.SLOTS:
        monkeypatch.delenv(slots.env_var(slot), raising=False)
    monkeypatch.delenv("RADQC_MODELS_CONFIG", raising=False)
    monkeypatch.setenv("RADQC_HOME", str(tmp_path / "home"))
    slots.clear_cache()
    yield
    slots.clear_cache()


@pytest.fixture
def tmp_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A registry file in tmp with the three slot defaults, used by slots and the CLI."""
    reg = tmp_path / "registry.yaml"
    for name, task in (("ct_organs_3mm", "segmentation"), ("body_region", "slice_regression"),
                       ("cxr_anatomy", "landmarks")):
        weights = tiny_onnx(tmp_path / "weights" / f"{name}.onnx")
        card = tmp_path / "cards" / f"{name}.md"
        card.parent.mkdir(exist_ok=True)
        card.write_text(f"# {name}\n")
        register_model(ModelInfo(name=name, version="1.0.0", task=task, modality="CT", weights=str(weights),
                                 sha256="", labels="ct_organs" if task == "segmentation" else None,
                                 card=str(card), metrics={"dice_mean": 0.93}), path=reg)
    monkeypatch.setattr(slots, "get_model", partial(get_model, path=reg))
    monkeypatch.setattr(registry, "list_models", partial(list_models, path=reg))
    monkeypatch.setattr(registry, "get_model", partial(get_model, path=reg))
    return reg


def _write_models_yaml(home: Path, content: dict[str, Any]) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "models.yaml"
    path.write_text(yaml.safe_dump(content), encoding="utf-8")
    return path


def _bilingual(exc: pytest.ExceptionInfo[BaseException]) -> None:
    text = str(exc.value)
    assert " / " in text and any("\u4e00" <= ch <= "\u9fff" for ch in text), text


# ------------------------------------------------------------------------------------------
# the committed registry


@pytest.mark.parametrize("info", list_models(), ids=lambda i: i.name)
def test_every_registered_model_is_servable(info: ModelInfo) -> None:
    assert info.weights_path.is_file(), f"{info.name}: weights missing"
    assert info.verified_weights() == info.weights_path  # sha256 matches
    assert info.card_path is not None and info.card_path.is_file(), f"{info.name}: no model card"
    if info.labels:
        ls = info.label_set()
        assert ls is not None and len(ls.structures) > 0
    assert info.task and info.modality and info.version


def test_registry_file_loads_with_unique_names() -> None:
    names = [m.name for m in list_models()]
    assert len(names) == len(set(names))


def test_ct_label_set_is_the_public_contract() -> None:
    ls = load_label_set("ct_organs")
    names = [s.name for s in ls.structures]
    assert len(names) >= 20
    for required in ("body", "brain", "skull", "lung_left", "lung_right", "trachea", "heart", "aorta", "liver",
                     "spleen", "pancreas", "kidney_left", "kidney_right", "stomach", "bladder", "ribs"):
        assert required in names
    assert [s.label for s in ls.structures] == sorted({s.label for s in ls.structures})


@pytest.mark.parametrize("slot", list(slots.SLOTS))
def test_default_slot_class_exists(slot: str) -> None:
    """The dotted path of each slot's default names a real class (imported lazily by the
    resolver, so a renamed class would otherwise only show when an exam runs)."""
    import importlib.util

    module = slots.SLOTS[slot]["factory"].partition(":")[0]
    try:
        present = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its package is missing too
        present = False
    if not present:
        pytest.skip(f"{module} is not in this checkout yet")
    cls = slots._import(slots.SLOTS[slot]["factory"])
    assert isinstance(cls, type)


# ------------------------------------------------------------------------------------------
# registry mechanics in tmp


def test_register_model_round_trip_and_tamper_refused(tmp_path: Path) -> None:
    from radqc.cli.cmd_models import check_model
    from radqc.models.runtime import session_for

    reg = tmp_path / "registry.yaml"
    a = tiny_onnx(tmp_path / "a.onnx")
    b = tiny_onnx(tmp_path / "b.onnx", scale=3.0)
    register_model(ModelInfo(name="a", version="1", task="segmentation", modality="CT", weights=str(a), sha256="",
                             labels="ct_organs", metrics={"dice_mean": 0.9}), path=reg)
    register_model(ModelInfo(name="b", version="1", task="landmarks", modality="DX", weights=str(b), sha256=""),
                   path=reg)
    got = get_model("a", path=reg)
    assert got.sha256 == registry.sha256_file(a) and got.metrics == {"dice_mean": 0.9}
    assert got.label_set() is not None
    # replacing keeps the entry's place
    register_model(ModelInfo(name="a", version="2", task="segmentation", modality="CT", weights=str(a), sha256=""),
                   path=reg)
    assert [m.name for m in list_models(reg)] == ["a", "b"]
    assert get_model("a", path=reg).version == "2"
    assert session_for(get_model("b", path=reg)).run(None, {"x": [1.0]})[0].tolist() == [3.0]
    assert check_model(get_model("b", path=reg))["sha256_ok"] is True
    # a tampered file is refused by the registry and by the runtime
    b.write_bytes(b.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="does not match"):
        get_model("b", path=reg).verified_weights()
    with pytest.raises(ModelError, match="refusing"):
        session_for(get_model("b", path=reg))
    check = check_model(get_model("b", path=reg))
    assert check["sha256_ok"] is False and check["ok"] is False
    with pytest.raises(ModelError, match="unknown model"):
        get_model("c", path=reg)


# ------------------------------------------------------------------------------------------
# slots


def test_default_is_the_registry_model(tmp_registry: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = slots.slot_config("ct_organs")
    assert (cfg.kind, cfg.source, cfg.name) == ("registry", "default", "ct_organs_3mm")
    versions = slots.slot_versions("ct_organs")
    assert versions["name"] == "ct_organs_3mm" and versions["version"] == "1.0.0"
    assert versions["sha256"] == get_model("ct_organs_3mm", path=tmp_registry).sha256
    monkeypatch.setitem(slots.SLOTS["ct_organs"], "factory", "tests.test_models_registry:FakeSegmenterFromInfo")
    model = slots.resolve("ct_organs")
    assert isinstance(model, FakeSegmenterFromInfo) and model.info.name == "ct_organs_3mm"


def test_default_missing_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slots, "get_model", partial(get_model, path=tmp_path / "empty.yaml"))
    with pytest.raises(ModelError, match="默认模型尚未注册") as exc:
        slots.resolve("body_region")
    _bilingual(exc)
    row = next(r for r in slots.describe_slots() if r["slot"] == "body_region")
    assert row["ok"] is False and "body_region" in row["error"]


def test_env_var_path_is_auto_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from radqc.models.byo.monai_bundle import MonaiBundleSegmenter
    from radqc.models.interfaces import Segmenter

    bundle = fake_bundle(tmp_path / "wholeBody_ct_segmentation")
    monkeypatch.setenv("RADQC_MODEL_CT_ORGANS", str(bundle))
    cfg = slots.slot_config("ct_organs")
    assert (cfg.kind, cfg.source, cfg.path) == ("monai_bundle", "env:RADQC_MODEL_CT_ORGANS", bundle.resolve())
    model = slots.resolve("ct_organs")
    assert isinstance(model, MonaiBundleSegmenter) and isinstance(model, Segmenter)
    assert model.mapping.lookup()[13] == load_label_set("ct_organs").by_name()["lung_left"].label
    v = slots.slot_versions("ct_organs")
    assert (v["kind"], v["name"], v["version"]) == ("monai_bundle", "fake bundle", "0.1.9")
    assert len(v["bundle_hash"]) == 64


def test_env_var_registry_name(tmp_registry: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADQC_MODEL_CT_ORGANS", "cxr_anatomy")
    cfg = slots.slot_config("ct_organs")
    assert (cfg.kind, cfg.name) == ("registry", "cxr_anatomy")
    monkeypatch.setenv("RADQC_MODEL_CT_ORGANS", "no_such_model")
    with pytest.raises(ModelError, match="unknown model 'no_such_model'") as exc:
        slots.slot_versions("ct_organs")
    _bilingual(exc)


def test_models_yaml_with_relative_path_and_label_map(tmp_path: Path) -> None:
    from radqc.models.byo.nnunet import NnUNetSegmenter

    home = tmp_path / "home"
    fake_nnunet(home / "weights" / "Dataset291_Fake" / "nnUNetTrainer__nnUNetPlans__3d_fullres")
    _write_models_yaml(home, {"slots": {"ct_organs": {
        "kind": "nnunet", "path": "weights/Dataset291_Fake",  # relative to models.yaml; one level above
        "label_map": {"gluteus_maximus_left": "pelvis_bones"}, "folds": [0], "device": "cpu"}}})
    cfg = slots.slot_config("ct_organs")
    assert cfg.kind == "nnunet" and cfg.path is not None and cfg.path.name.startswith("nnUNetTrainer__")
    assert cfg.source == f"file:{home / 'models.yaml'}"
    model = slots.resolve("ct_organs")
    assert isinstance(model, NnUNetSegmenter) and model.folds == ["0"]
    ours = load_label_set("ct_organs").by_name()
    assert model.mapping.lookup() == {0: 0, 1: ours["spleen"].label, 2: ours["bladder"].label,
                                      3: ours["pelvis_bones"].label}
    v = slots.slot_versions("ct_organs")
    assert v["name"] == "Dataset291_Fake" and v["version"].endswith(":folds=0")


def test_env_var_wins_over_models_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    _write_models_yaml(home, {"slots": {"ct_organs": str(fake_nnunet(tmp_path / "nn"))}})  # bare path
    assert slots.slot_config("ct_organs").kind == "nnunet"
    monkeypatch.setenv("RADQC_MODEL_CT_ORGANS", str(fake_bundle(tmp_path / "b")))
    assert slots.slot_config("ct_organs").kind == "monai_bundle"


def test_models_config_env_points_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = _write_models_yaml(tmp_path / "etc", {"slots": {"ct_organs": {"path": str(fake_bundle(tmp_path / "b"))}}})
    monkeypatch.setenv("RADQC_MODELS_CONFIG", str(other))
    assert slots.models_config_path() == other
    assert slots.slot_config("ct_organs").kind == "monai_bundle"


@pytest.mark.parametrize(
    ("entry", "pattern"),
    [
        ({"kind": "monai_bundle", "path": "does/not/exist"}, "模型路径不存在 / model path does not exist"),
        ({"kind": "tensorflow", "path": "x"}, "未知的模型类型 / unknown model kind"),
        ({"path": "b", "lable_map": {}}, r"unknown key\(s\) \['lable_map'\]"),
        ({"kind": "nnunet", "path": "b"}, "looks like monai_bundle, not nnunet"),
        ({"kind": "registry"}, "kind registry needs 'name'"),
        ({"kind": "python"}, "kind python needs 'factory"),
        ({"path": "plain_folder"}, "无法识别模型目录"),
        ({"path": "two"}, "目录下有多个模型"),
        ({"path": "b", "label_map": {"liver": "hepar"}}, "标签映射无效 / invalid label map"),
        ({"kind": "onnx", "path": "b"}, "is not an .onnx file"),
        (42, "expected a mapping or a path"),
    ],
)
def test_misconfigured_slots_fail_clearly(tmp_path: Path, entry: Any, pattern: str) -> None:
    home = tmp_path / "home"
    fake_bundle(home / "b")
    (home / "plain_folder" / "sub").mkdir(parents=True)
    fake_bundle(home / "two" / "first")
    fake_nnunet(home / "two" / "second")
    _write_models_yaml(home, {"slots": {"ct_organs": entry}})
    with pytest.raises(ModelError, match=pattern) as exc:
        slots.resolve("ct_organs")
    _bilingual(exc)
    assert "ct_organs" in str(exc.value) or "label map" in str(exc.value)


def test_part_list_splits_the_label_map(tmp_path: Path) -> None:
    from radqc.models.byo.common import MergedSegmenter

    home = tmp_path / "home"
    fake_nnunet(home / "a")
    fake_nnunet(home / "b", labels={"background": 0, "face": 1})
    label_map = {"face": "skull", "gluteus_maximus_left": "pelvis_bones"}
    _write_models_yaml(home, {"slots": {"ct_organs": {"path": ["a", "b"], "label_map": label_map, "name": "ts"}}})
    model = slots.resolve("ct_organs")
    assert isinstance(model, MergedSegmenter) and model.name == "ts"
    ours = load_label_set("ct_organs").by_name()
    assert [p.mapping.lookup() for p in model.parts] == [
        {0: 0, 1: ours["spleen"].label, 2: ours["bladder"].label, 3: ours["pelvis_bones"].label},
        {0: 0, 1: ours["skull"].label},
    ]
    for bad, pattern in (({"fac": "skull"}, "no part has a label named 'fac'"),
                         ({1: "skull"}, "name their labels, not their numbers")):
        _write_models_yaml(home, {"slots": {"ct_organs": {"path": ["a", "b"], "label_map": bad}}})
        with pytest.raises(ModelError, match=pattern):
            slots.resolve("ct_organs")
    fake_bundle(home / "c")
    _write_models_yaml(home, {"slots": {"ct_organs": {"path": ["a", "c"]}}})
    with pytest.raises(ModelError, match="folders of one kind"):
        slots.slot_config("ct_organs")


def test_slot_takes_only_its_kinds(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _write_models_yaml(home, {"slots": {"body_region": {"path": str(fake_nnunet(tmp_path / "nn"))}}})
    with pytest.raises(ModelError, match="该槽位不接受此类模型 / this slot does not take this kind of model") as exc:
        slots.slot_config("body_region")
    assert "slot body_region takes registry, onnx, python" in str(exc.value)


def test_bad_models_yaml(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "models.yaml").write_text("slots: [unclosed\n")
    with pytest.raises(ModelError, match="模型配置文件无效 / invalid model configuration file") as exc:
        slots.slot_config("ct_organs")
    _bilingual(exc)
    _write_models_yaml(home, {"slots": {"ct_organ": "x"}})
    with pytest.raises(ModelError, match=r"未知的模型槽位 / unknown model slot.*ct_organ"):
        slots.slot_config("ct_organs")
    with pytest.raises(ModelError, match="unknown model slot"):
        slots.resolve("lungs")


def test_resolved_model_is_cached_per_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_models_yaml(tmp_path / "home", {"slots": {"body_region": {
        "kind": "python", "factory": "tests.test_models_registry:FakeScorer", "options": {"offset": 1.5}}}})
    first = slots.resolve("body_region")
    assert isinstance(first, FakeScorer) and first.offset == 1.5
    for _ in range(5):  # every exam of a worker gets the same object
        assert slots.resolve("body_region") is first
    assert slots.load_count("body_region") == 1
    v = slots.slot_versions("body_region")
    assert (v["kind"], v["name"]) == ("python", "tests.test_models_registry:FakeScorer")
    # another configuration is another model; the first stays cached for its configuration
    _write_models_yaml(tmp_path / "home", {"slots": {"body_region": {
        "kind": "python", "factory": "tests.test_models_registry:FakeScorer", "options": {"offset": 2.0}}}})
    second = slots.resolve("body_region")
    assert second is not first and second.offset == 2.0
    assert slots.load_count("body_region") == 2
    slots.clear_cache()
    assert slots.load_count("body_region") == 0


def test_protocol_and_factory_failures(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _write_models_yaml(home, {"slots": {"body_region": {"kind": "python",
                                                        "factory": "tests.test_models_registry:NotAScorer"}}})
    with pytest.raises(ModelError, match="模型未实现该槽位要求的接口 .*NotAScorer is not a BodyRegionScorer") as exc:
        slots.resolve("body_region")
    _bilingual(exc)
    _write_models_yaml(home, {"slots": {"body_region": {"kind": "python", "factory": "tests.nowhere:Thing"}}})
    with pytest.raises(ModelError, match="模型加载失败 / the model failed to load: body_region") as exc:
        slots.resolve("body_region")
    assert slots.load_count("body_region") == 0


def test_onnx_kind_uses_the_slot_contract(tmp_registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = tiny_onnx(tmp_path / "site" / "our_ct.onnx", scale=5.0)
    monkeypatch.setenv("RADQC_MODEL_CT_ORGANS", str(weights))
    cfg = slots.slot_config("ct_organs")
    assert cfg.kind == "onnx"
    v = slots.slot_versions("ct_organs")
    assert v["name"] == "our_ct" and v["sha256"] == registry.sha256_file(weights)
    assert v["version"] == f"byo-{v['sha256'][:12]}"
    monkeypatch.setitem(slots.SLOTS["ct_organs"], "factory", "tests.test_models_registry:FakeSegmenterFromInfo")
    model = slots.resolve("ct_organs")
    assert model.info.weights_path == weights.resolve() and model.info.labels == "ct_organs"  # from the default
    # a sha256 written into models.yaml is checked
    monkeypatch.delenv("RADQC_MODEL_CT_ORGANS")
    _write_models_yaml(tmp_path / "home", {"slots": {"ct_organs": {"path": str(weights), "sha256": "0" * 64}}})
    with pytest.raises(ModelError, match="权重文件校验失败，拒绝加载 / weights file refused"):
        slots.resolve("ct_organs")


def test_bundle_hash_in_slot_versions_follows_edits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = fake_bundle(tmp_path / "bundle")
    monkeypatch.setenv("RADQC_MODEL_CT_ORGANS", str(bundle))
    before = slots.slot_versions("ct_organs")["bundle_hash"]
    (bundle / "configs" / "inference.json").write_text(json.dumps({"run": [], "edited": True}))
    assert slots.slot_versions("ct_organs")["bundle_hash"] != before


def test_nested_download_folder_is_found(tmp_path: Path) -> None:
    kind, path = slots.detect_kind(fake_bundle(tmp_path / "downloads" / "wholeBody_ct_segmentation").parent)
    assert kind == "monai_bundle" and path.name == "wholeBody_ct_segmentation"
    nn = fake_nnunet(tmp_path / "results" / "Dataset291_Fake" / "nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres")
    kind, path = slots.detect_kind(tmp_path / "results")  # two levels down
    assert kind == "nnunet" and path == nn.resolve()


# ------------------------------------------------------------------------------------------
# CLI


def test_models_cli_list_show_verify(tmp_registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from radqc.cli.main import app

    runner = CliRunner()
    _write_models_yaml(tmp_path / "home", {"slots": {"ct_organs": {"path": str(fake_bundle(tmp_path / "b"))}}})
    out = runner.invoke(app, ["models", "list", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert [m["name"] for m in data["models"]] == ["ct_organs_3mm", "body_region", "cxr_anatomy"]
    assert all(m["check"]["ok"] for m in data["models"])
    assert data["models"][0]["metrics"] == {"dice_mean": 0.93}
    by_slot = {s["slot"]: s for s in data["slots"]}
    assert by_slot["ct_organs"]["kind"] == "monai_bundle" and by_slot["body_region"]["kind"] == "registry"

    human = runner.invoke(app, ["models", "list"])
    assert human.exit_code == 0 and "ct_organs_3mm" in human.stdout and "monai_bundle" in human.stdout

    show = runner.invoke(app, ["models", "show", "body_region", "--json"])
    assert show.exit_code == 0 and json.loads(show.stdout)["versions"]["name"] == "body_region"
    show = runner.invoke(app, ["models", "show", "ct_organs_3mm", "--json"])
    assert json.loads(show.stdout)["check"]["card_exists"] is True
    missing = runner.invoke(app, ["models", "show", "nope"])
    assert missing.exit_code == 2

    ok = runner.invoke(app, ["models", "verify", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["ok"] is True
    weights = get_model("cxr_anatomy", path=tmp_registry).weights_path
    weights.write_bytes(weights.read_bytes() + b"tampered")
    bad = runner.invoke(app, ["models", "verify", "--json"])
    assert bad.exit_code == 1
    assert json.loads(bad.stdout)["failures"] == ["model cxr_anatomy"]
