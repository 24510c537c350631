"""Returning patients (profile ``regional``): the same person at a second hospital, for 互认."""

from __future__ import annotations

from radqc.datasets.synthetic.clinical.planner import Planner


def _plans(profile: str, n: int = 30) -> list:  # type: ignore[type-arg]
    planner = Planner(4242, profile)
    for i in range(n):
        planner.plans.append(planner.plan(i))
    return planner.plans


def test_regional_profile_has_cross_hospital_returning_patients() -> None:
    plans = _plans("regional")
    by_key = {p.exam_key: p for p in plans}
    returning = [p for p in plans if p.same_person_as]
    assert len(returning) >= 3
    for p in returning:
        earlier = by_key[p.same_person_as]
        assert earlier.index < p.index and earlier.hospital.code != p.hospital.code
        assert p.identity.id_number == earlier.identity.id_number and p.identity.name == earlier.identity.name
    # one hospital, one patient ID per person
    seen: dict[tuple[str, str], str] = {}
    for p in plans:
        key = (p.hospital.code, p.identity.id_number)
        assert seen.setdefault(key, p.patient_id) == p.patient_id


def test_other_profiles_unchanged_by_the_returning_stream() -> None:
    mixed = _plans("mixed")
    regional = _plans("regional")
    assert all(p.same_person_as is None for p in mixed)
    # everything but identities is drawn from the same streams: modalities, hospitals, items agree
    assert [(p.hospital.code, p.modality, p.accession) for p in mixed] == \
        [(p.hospital.code, p.modality, p.accession) for p in regional]
