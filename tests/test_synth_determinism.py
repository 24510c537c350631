"""The synthetic generator writes the same pixels for the same seed, on any machine state.

Seed 8275 once rendered different radiograph pixels at 14:14 and 16:55 on identical code: the
burned-in text (立位/卧位, Chinese patient names) took the first *system* CJK font found, and
``fonts-droid-fallback`` was installed in between. The renderer now burns text only with the
font subsets bundled in ``datasets/synthetic/imaging/fonts``. These tests fail when

* a glyph bitmap changes (a font file, Pillow's FreeType or the layout engine changed: every
  render with burned text would change, so the generator version must be bumped);
* the renderer picks a font other than the bundled ones;
* a character the planner can burn is missing from the bundled subset (it would draw a box);
* two renders of the same small set differ, in separate processes with different thread counts
  and hash seeds (threaded FFT/BLAS, set/dict order, hash randomisation, time-dependent values).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from radqc.datasets.synthetic.imaging import image_ops
from radqc.datasets.synthetic.imaging.image_ops import FONT_FILES, text_mask

ROOT = Path(__file__).resolve().parents[1]
NAMES = ROOT / "datasets" / "synthetic" / "clinical" / "data" / "names.yaml"

# (text, size) -> sha256 prefix of the packed mask and its shape, with the bundled fonts,
# Pillow 13.0.0 (FreeType 2.14.3) and Raqm layout. Sizes are those the renderer uses on small sets.
GOLDEN = {
    ("立位", 9): "de464fafd31b55ad",
    ("卧位", 12): "212a2d709cc92803",
    ("郑轩海", 9): "844e756128b51304",
    ("PA", 9): "0a4ecb20c221b0ae",
    ("LAT", 12): "5f30d75005bffaf5",
    ("L", 14): "4747fe6ba8669c16",
    ("R", 23): "5d3f6640a0c95f5a",
    ("Dose Report", 7): "81ac89468ac0f2fa",
    ("P0012345", 9): "2f3542e7a48c3689",
}


def _mask_hash(m: np.ndarray) -> str:
    return hashlib.sha256(np.packbits(m).tobytes() + str(m.shape).encode()).hexdigest()[:16]


def test_glyph_bitmaps_match_the_reference() -> None:
    changed = {k: _mask_hash(text_mask(*k)) for k in GOLDEN if _mask_hash(text_mask(*k)) != GOLDEN[k]}
    assert not changed, (
        "burned-in text renders differently than the reference (font file, Pillow/FreeType or layout "
        f"engine changed); every render with text changes: bump GENERATOR_VERSION and update GOLDEN: {changed}"
    )


def test_only_the_bundled_fonts_are_used() -> None:
    image_ops._font.cache_clear()
    assert image_ops._font(12, True)[1] == "radqc-cjk.ttf"
    assert image_ops._font(12, False)[1] == "radqc-latin.ttf"
    for path in FONT_FILES.values():
        assert path.is_file() and path.parent == image_ops.FONT_DIR


def test_missing_bundled_font_is_an_error_not_a_fallback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    image_ops._font.cache_clear()
    monkeypatch.setitem(image_ops.FONT_FILES, True, tmp_path / "absent.ttf")
    try:
        with pytest.raises(FileNotFoundError):
            image_ops._font(13, True)
    finally:
        image_ops._font.cache_clear()


def test_cached_masks_cannot_be_changed_by_a_caller() -> None:
    m = text_mask("L", 14)
    with pytest.raises(ValueError):
        m[0, 0] = not m[0, 0]


def _cmap(path: Path) -> set[int]:
    from fontTools.ttLib import TTFont

    return set(TTFont(str(path)).getBestCmap())


def test_every_burnable_character_is_in_the_bundled_fonts() -> None:
    pytest.importorskip("fontTools")
    data = yaml.safe_load(NAMES.read_text(encoding="utf-8"))
    chars = {c for row in data["surnames"] for c in row[0]}
    chars |= {c for pool in data["given"].values() for row in pool for c in row[0]}
    chars |= set("立位卧位")
    ascii_ = {chr(c) for c in range(0x21, 0x7F)}
    cjk, latin = _cmap(FONT_FILES[True]), _cmap(FONT_FILES[False])
    # Droid Sans Fallback has no ASCII: a line is drawn with it only when it holds CJK (names
    # in Chinese style and 立位/卧位 are pure CJK); every other line uses the Latin font
    assert not {c for c in chars if ord(c) not in cjk}, "rebuild fonts/build_fonts.py"
    assert not {c for c in ascii_ if ord(c) not in latin}


@pytest.mark.parametrize("kind", ["latin", "cjk"])
def test_bundled_subset_draws_like_the_full_system_font(kind: str) -> None:
    """Where the source fonts are installed, the subsets draw the same bitmaps (no pixel change)."""
    from PIL import Image, ImageDraw, ImageFont

    source = {"latin": "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", "cjk": "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"}[kind]
    if not Path(source).exists():
        pytest.skip(f"{source} not installed")
    texts = ["PA", "LAT", "OBL", "Total DLP: 123.4 mGy-cm", "ZHANG WEI"] + (["立位", "卧位", "诸葛春红", "郑轩海"] if kind == "cjk" else [])
    for size in (7, 9, 12, 14, 23):
        full = ImageFont.truetype(source, size, layout_engine=ImageFont.Layout.RAQM)
        for t in texts:
            left, top, right, bottom = full.getbbox(t)
            img = Image.new("L", (max(1, right - left + 2), max(1, bottom - top + 2)), 0)
            ImageDraw.Draw(img).text((1 - left, 1 - top), t, fill=255, font=full)
            if image_ops._has_cjk(t) == (kind == "cjk"):
                assert np.array_equal(np.asarray(img) > 96, text_mask(t, size)), (t, size)


_RENDER = (
    "import sys; from radqc.datasets.synthetic.generate import generate_set; "
    "generate_set(sys.argv[1], 4, 8345, profile_name='dx')"
)


def _render(out: Path, threads: str, hashseed: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONHASHSEED": hashseed}
    subprocess.run([sys.executable, "-c", _RENDER, str(out)], check=True, env=env, cwd=ROOT, capture_output=True, timeout=300)
    files = {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "dicom").rglob("*")) if p.is_file()}
    # the truth names its label maps by absolute path; everything else must be identical
    for p in sorted((out / "truth").glob("*.json")):
        files[str(p.relative_to(out))] = hashlib.sha256(p.read_text(encoding="utf-8").replace(str(out), "<set>").encode()).hexdigest()
    for name in ("records/exams.jsonl", "records/charges.jsonl"):
        files[name] = hashlib.sha256((out / name).read_bytes()).hexdigest()
    return files


def test_same_seed_renders_identical_bytes_across_processes_and_threads(tmp_path: Path) -> None:
    """dx profile, seed 8345, 4 exams: radiographs with 立位/卧位 and one with a burned Chinese name."""
    a = _render(tmp_path / "a", "1", "1")
    b = _render(tmp_path / "b", "2", "2")
    assert any(k.endswith(".dcm") for k in a)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
