"""``python -m radqc.datasets.real_variants OUT [--samples DIR]``: write the real-derived variants."""

from __future__ import annotations

import argparse
import json

from radqc.datasets.real_variants.make import make_variants


def main() -> None:
    parser = argparse.ArgumentParser(description="Write defective variants of the real samples / 生成真实图像的缺陷变体")
    parser.add_argument("out")
    parser.add_argument("--samples", default=None, help="samples folder (default: radqc demo's cache)")
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    print(json.dumps(make_variants(args.out, args.samples, args.only), ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
