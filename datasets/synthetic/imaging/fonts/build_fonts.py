"""Rebuild the bundled font subsets the renderer burns text with (run by hand, not at render time).

    .venv/bin/python datasets/synthetic/imaging/fonts/build_fonts.py [--latin TTF] [--cjk TTF]

Why bundled: the renderer used to take the first system font it found. Installing
``fonts-droid-fallback`` (pulled in by dcmtk on 2026-11-23 16:28) changed every burned-in
Chinese text (the radiograph annotation 立位/卧位, Chinese patient names) from Pillow's default
font to Droid Sans Fallback, so the same seed rendered different pixels before and after
(docs/synthetic-data.md, "Determinism"). The renderer now reads only these two files.

The subsets keep the glyph outlines, hinting and layout tables of the sources unchanged, so
their bitmaps equal the full fonts' (checked by ``tests/test_synth_determinism.py`` where the
system fonts are installed). The character set is printable ASCII, every character of
``clinical/data/names.yaml`` and the annotation words below; the test fails when a text the
generator can burn has a character outside it (then add it here and rebuild).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
NAMES = HERE.parents[1] / "clinical" / "data" / "names.yaml"
SOURCES = {
    "latin": "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",  # fonts-dejavu-core 2.37
    "cjk": "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",  # fonts-droid-fallback 6.0.1r16
}
TARGETS = {"latin": "radqc-latin.ttf", "cjk": "radqc-cjk.ttf"}
# CJK words burned by the renderer besides names (radiograph annotations)
WORDS = "立位卧位"


def characters() -> str:
    chars = {chr(c) for c in range(0x20, 0x7F)}
    data = yaml.safe_load(NAMES.read_text(encoding="utf-8"))

    def walk(v: object) -> None:
        if isinstance(v, str):
            chars.update(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(data)
    chars.update(WORDS)
    return "".join(sorted(c for c in chars if c.isprintable()))


def build(kind: str, source: str) -> Path:
    from fontTools import subset

    opts = subset.Options()
    opts.hinting = True  # keep TrueType instructions: the bitmaps must not change
    opts.layout_features = ["*"]  # keep kerning and every other layout feature
    opts.name_IDs = ["*"]
    opts.name_languages = ["*"]
    opts.notdef_outline = True
    opts.glyph_names = False
    opts.drop_tables = []  # keep everything else as it was
    font = subset.load_font(source, opts)
    sub = subset.Subsetter(opts)
    sub.populate(text=characters())
    sub.subset(font)
    out = HERE / TARGETS[kind]
    subset.save_font(font, str(out), opts)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latin", default=SOURCES["latin"])
    ap.add_argument("--cjk", default=SOURCES["cjk"])
    a = ap.parse_args()
    for kind, src in (("latin", a.latin), ("cjk", a.cjk)):
        out = build(kind, src)
        print(f"{out.name}: {out.stat().st_size} bytes from {src}")


if __name__ == "__main__":
    main()
