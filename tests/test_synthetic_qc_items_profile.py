"""The ``qc-items`` profile deals every item combination equally often (generator 0.1.8).

The tenders judge image-QC accuracy item by item (>= 25 exam items); the realistic ``qc`` mix
draws some items about once in 300 exams, so an item-by-item table needs a balanced set."""

from __future__ import annotations

from collections import Counter

from radqc.datasets.synthetic.clinical._data import load
from radqc.datasets.synthetic.clinical.planner import Planner, balanced_combo, profile

MODALITIES = ("CT", "MR", "DX")


def _all_combos() -> list[tuple[str, tuple[str, ...]]]:
    return sorted((m, tuple(c["items"])) for m in MODALITIES for c in load("items")["combos"][m])


def test_each_block_holds_each_combination_once() -> None:
    combos = _all_combos()
    n = len(combos)
    for block in range(3):
        dealt = sorted((m, tuple(codes)) for m, codes, _ in
                       (balanced_combo(9999, block * n + i, MODALITIES) for i in range(n)))
        assert dealt == combos
    # seeded per block: another seed or block gives another order, the same seed the same one
    first = [balanced_combo(1, i, MODALITIES)[1] for i in range(n)]
    assert first == [balanced_combo(1, i, MODALITIES)[1] for i in range(n)]
    assert first != [balanced_combo(2, i, MODALITIES)[1] for i in range(n)]


def test_planned_exams_follow_the_balanced_combinations() -> None:
    assert profile("qc-items")["item_balanced"] is True and not profile("qc").get("item_balanced")
    planner = Planner(4242, "qc-items")
    n = len(_all_combos())
    items: Counter[str] = Counter()
    followed = 0
    for i in range(n):
        plan = planner.plan(i)
        planner.plans.append(plan)
        codes = [oi.item.code for oi in plan.imaged]
        items.update(codes)
        modality, expected, _ = balanced_combo(4242, i, MODALITIES)
        followed += int(codes == expected and plan.modality == modality)
    # exams partnered with an earlier one for a cross-exam charge pattern copy its items instead
    assert followed >= n - 4
    all_items = {c for _, codes in _all_combos() for c in codes}
    assert len(set(items)) >= len(all_items) - 2
