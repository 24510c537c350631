"""CT motion (运动) by its axis: the edge-doubling band of a moving patient runs along the shift
only (a second angular harmonic of the band's width, coherent over a run of slices), while blur
widens every edge alike and the field-of-view circle cuts the body where it touches it.
``_ct_motion_axis_rule`` (qc_rules/image_qc/artifact.yaml ``ct_ghost_axis_*``) uses it to drop the
net's motion calls on bodies at the circle with no axis, and to raise motion the net ranks first
below its threshold when the axis is there."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from radqc.datasets.synthetic.imaging.defects import motion_double
from radqc.pipelines.image_qc import artifact as art
from tests.test_image_qc_artifact import N, _body, _ct, _series
from tests.test_image_qc_artifact_unconfirmed import Fixed


def _axis(img: np.ndarray) -> tuple[float, float, float]:
    f = art.ct_slice_features(img.astype(np.float32), art.DEFAULTS)
    return f["ghost_axis"], f["ghost_axis_phi"], f["ghost_axis_ok"]


def test_a_doubled_edge_has_an_axis_and_blur_has_none() -> None:
    rng = np.random.default_rng(1)
    clean = _body(rng, ry=18, rx=20)
    moved = motion_double(clean, (0.0, 4.0), 0.45)  # shifted along the columns
    a_clean, _, ok = _axis(clean)
    a_moved, phi, ok_moved = _axis(moved)
    a_blur, _, _ = _axis(ndi.gaussian_filter(clean, 1.5))
    assert ok == 1.0 and ok_moved == 1.0
    assert a_moved > 1.0 > 0.3 > max(a_clean, a_blur)
    assert abs(phi) < 0.3  # phase = twice the shift axis (columns: angle 0)
    a_vert, phi_v, _ = _axis(motion_double(clean, (4.0, 0.0), 0.45))
    assert a_vert > 1.0 and abs(abs(phi_v) - np.pi) < 0.3  # rows: axis pi/2, phase pi


def test_a_body_cut_by_the_field_circle_is_not_measured() -> None:
    """Most of the outline on the circle: too few sectors are clear of it to judge an axis."""
    img = _body(np.random.default_rng(2), ry=31.5, rx=31.5)
    assert _axis(img)[2] == 0.0


def test_the_coherence_needs_one_axis_over_a_run_of_slices() -> None:
    run = [{"ghost_axis": 0.0, "ghost_axis_phi": 0.0}] * 8 + [{"ghost_axis": 1.5, "ghost_axis_phi": 0.2}] * 6 + [{"ghost_axis": 0.0, "ghost_axis_phi": 0.0}] * 6
    # as many strong slices, scattered, on crossing axes (phase 0 and pi): they cancel
    scattered = [{"ghost_axis": 1.5, "ghost_axis_phi": float(np.pi * (k // 3 % 2))} if k % 3 == 0 else {"ghost_axis": 0.0, "ghost_axis_phi": 0.0}
                 for k in range(20)]
    assert art.ct_ghost_axis_coherence(run) > 1.0
    assert art.ct_ghost_axis_coherence(scattered) < 0.5
    assert art.ct_ghost_axis_coherence([]) == 0.0


def test_series_features_carry_the_axis_but_the_net_does_not_read_it() -> None:
    from radqc.models.artifact.data import FEATURES

    moved = art.measure_series(_ct("motion", n=12), "CT", art.DEFAULTS)
    clean = art.measure_series(_ct("clean", n=12), "CT", art.DEFAULTS)
    assert moved.features["ghost_axis_coh"] > 0.3 > clean.features["ghost_axis_coh"]
    assert moved.features["ghost_axis_measured"] == 1.0
    assert not any(k.startswith("ghost_axis") for k in FEATURES["CT"])


def _off_centre(n: int = 12) -> list[np.ndarray]:
    """A small clean body pushed against the bottom of the field circle (touches it on every
    slice; the rest of its outline is clear of the circle, so the axis is measured)."""
    rng = np.random.default_rng(5)
    return [_body(rng, ry=11, rx=10, cy=N / 2 + 20.5) for _ in range(n)]


def test_a_net_motion_call_on_a_body_at_the_circle_without_an_axis_reads_none() -> None:
    s = _series(_off_centre())
    m = art.measure_series(s, "CT", art.DEFAULTS)
    assert m.features["rim_touch_med"] >= art.DEFAULTS["ct_ghost_axis_touch"]
    assert m.features["ghost_axis_measured"] >= art.DEFAULTS["ct_ghost_axis_measured"]
    res = art.analyse_series(s, "CT", art.DEFAULTS, Fixed([0.02, 0.97, 0.01, 0.0]))
    assert res.value == "无" and res.extra["learned_value"] == "运动"
    assert res.extra["dropped"]["kind"] == "motion_without_axis"
    off = {**art.DEFAULTS, "ct_ghost_axis_min": None}
    assert art.analyse_series(s, "CT", off, Fixed([0.02, 0.97, 0.01, 0.0])).value == "运动"


def test_the_file_ships_the_veto_on_and_the_rescue_off() -> None:
    assert art.DEFAULTS["ct_ghost_axis_min"] is not None and art.DEFAULTS["ct_ghost_axis_measured"] is not None
    assert art.DEFAULTS["ct_ghost_axis_motion"] is None


def test_a_net_motion_call_with_an_axis_stays() -> None:
    res = art.analyse_series(_ct("motion"), "CT", art.DEFAULTS, Fixed([0.02, 0.97, 0.01, 0.0]))
    assert res.value == "运动"


def test_motion_the_net_ranks_below_its_threshold_reads_motion_with_an_axis() -> None:
    """Net 0.6 for motion on an unconfirmed series (limit 0.9): 无; the axis raises it."""
    p = {**art.DEFAULTS, "model_confirmed_threshold": None, "model_unconfirmed_threshold": {"CT": 0.9},
         "ct_ghost_axis_motion": 0.4, "ct_ghost_axis_prob": 0.5,  # the rescue (off in the file)
         "ct_echo_t": None}  # the axis alone (the cepstral echo is tested below)
    probs = [0.38, 0.6, 0.02, 0.0]

    class Net(Fixed):
        threshold = 0.8

    res = art.analyse_series(_ct("motion"), "CT", p, Net(probs))
    assert res.value == "运动" and res.kind == "ghosting" and res.extra.get("learned_value") == "无"
    assert res.measured is not None and res.measured >= p["ct_ghost_axis_motion"]
    # (the axis step with the weighted echo, session 20, reads this series too: off here)
    assert art.analyse_series(_ct("motion"), "CT", {**p, "ct_ghost_axis_motion": None, "ct_axis_step_t": None}, Net(probs)).value == "无"
    # a clean series with the same net reading has no axis: stays 无
    assert art.analyse_series(_ct("clean"), "CT", p, Net(probs)).value == "无"


# ------------------------------------------------------------------ the cepstral echo (ct_motion.py)

def _echo_series(n: int = 24, run: tuple[int, int] | None = (8, 16), shift: tuple[float, float] = (0.0, 2.0), blur: float = 0.0,
                 seed: int = 11) -> list[np.ndarray]:
    """``n`` slices of the phantom body (N px), the ones in ``run`` doubled by ``shift`` at weight 0.4
    (the generator's motion), then an optional blurring kernel (Gaussian, px)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        img = _body(rng, ry=16 + 2 * np.sin(k / 5), rx=22)
        if run is not None and run[0] <= k < run[1]:
            img = motion_double(img, shift, 0.4)
        out.append(ndi.gaussian_filter(img, blur) if blur else img)
    return out


def test_the_cepstrum_peaks_at_the_shift_of_a_doubled_slice() -> None:
    from radqc.pipelines.image_qc import ct_motion as cm

    clean = _body(np.random.default_rng(3))
    j = cm.ECHO_OFFSETS.index((0, 2))
    c_clean = cm.slice_cepstrum(clean)
    c_moved = cm.slice_cepstrum(motion_double(clean, (0.0, 2.0), 0.4))
    assert c_moved[j] - c_clean[j] > 0.2
    assert int(np.argmax(c_moved - c_clean)) == j
    # blurred after the doubling (the kernel comes after the motion): the echo is still there
    # (half a pixel here: the phantom's ellipse has few edges and 6-mm pixels)
    c_blur = cm.slice_cepstrum(ndi.gaussian_filter(motion_double(clean, (0.0, 2.0), 0.4), 0.5))
    assert c_blur[j] - cm.slice_cepstrum(ndi.gaussian_filter(clean, 0.5))[j] > 0.2


def test_the_echo_step_finds_the_run_and_not_a_clean_or_blurred_series() -> None:
    from radqc.pipelines.image_qc import ct_motion as cm

    moved = cm.series_echo(_echo_series())
    assert moved["echo_t"] > 5.0 and moved["echo_step"] > 0.15
    assert moved["echo_first"] == 8.0 and abs(moved["echo_run"] - 8 / 24) < 1e-9
    assert (moved["echo_dy"], moved["echo_dx"]) == (0.0, 2.0)
    for clean in (_echo_series(run=None), _echo_series(run=None, blur=1.5)):
        f = cm.series_echo(clean)
        assert f["echo_step"] < 0.15
    # a run on every slice is no step; too few slices are not measured
    assert cm.series_echo(_echo_series(run=(0, 24)))["echo_step"] < 0.15
    assert cm.series_echo(_echo_series(n=5, run=(2, 4)))["echo_t"] == 0.0
    assert cm.series_echo([])["echo_t"] == 0.0


def test_an_echo_on_a_run_of_slices_raises_a_net_none_to_motion() -> None:
    from radqc.models.artifact.data import FEATURES

    none = [0.97, 0.01, 0.01, 0.01]
    s = _series(_echo_series(blur=0.5))
    res = art.analyse_series(s, "CT", art.DEFAULTS, Fixed(none))
    assert res.value == "运动" and res.kind == "ghosting" and res.extra["learned_value"] == "无"
    assert res.extra["echo"]["echo_t"] >= art.DEFAULTS["ct_echo_t"] and res.slice_index is not None
    # (the axis step with the weighted echo, session 20, off: it reads this series too)
    assert art.analyse_series(s, "CT", {**art.DEFAULTS, "ct_echo_t": None, "ct_axis_step_t": None}, Fixed(none)).value == "无"
    # the same net reading on the clean (blurred) series stays 无
    assert art.analyse_series(_series(_echo_series(run=None, blur=0.5)), "CT", art.DEFAULTS, Fixed(none)).value == "无"
    # fewer measured slices than ct_echo_min_slices: the rule does not judge (with the short-series
    # reading of session 19 off; tests/test_image_qc_ct_motion2.py covers it)
    short = _series(_echo_series(n=12, run=(4, 8), blur=0.5))
    assert art.analyse_series(short, "CT", {**art.DEFAULTS, "ct_echo_short_min_slices": None, "ct_axis_step_t": None}, Fixed(none)).value == "无"
    assert art.analyse_series(_series(_echo_series(n=7, run=(2, 4), blur=0.5)), "CT", art.DEFAULTS, Fixed(none)).value == "无"
    assert not any(k.startswith("echo") for k in FEATURES["CT"])


def test_a_net_motion_call_on_a_four_slice_series_needs_a_sure_net() -> None:
    """Motion moves one or two slices of a 4-slice series: the ghost features' spread is their
    range there, so a confirmed call below ``ct_short_motion_prob`` reads 无 (the long series of
    the same acquisition carries the motion)."""
    short = _ct("motion", n=4)
    res = art.analyse_series(short, "CT", art.DEFAULTS, Fixed([0.3, 0.66, 0.02, 0.02]))
    assert res.value == "无" and res.extra["dropped"]["kind"] == "motion_on_a_short_series"
    assert art.analyse_series(short, "CT", art.DEFAULTS, Fixed([0.005, 0.995, 0.0, 0.0])).value == "运动"
    off = {**art.DEFAULTS, "ct_motion_min_slices": None}
    assert art.analyse_series(short, "CT", off, Fixed([0.3, 0.66, 0.02, 0.02])).value == "运动"
    # the same net reading on a 12-slice series keeps its call
    assert art.analyse_series(_ct("motion"), "CT", art.DEFAULTS, Fixed([0.3, 0.66, 0.02, 0.02])).value == "运动"


def test_the_weighted_echo_reads_the_signal_band_under_heavy_noise() -> None:
    """Noise-only bins scatter the plain cepstrum; read on the signal band only, the echo of the
    run stands clearer (series_echo_weighted), and a clean noisy series stays low."""
    from radqc.pipelines.image_qc import ct_motion as cm

    def noisy(run: tuple[int, int] | None) -> list[np.ndarray]:
        rng = np.random.default_rng(5)
        return [s + rng.normal(0.0, 100.0, s.shape) for s in _echo_series(run=run, blur=0.5)]

    moved, clean = noisy((8, 16)), noisy(None)
    w, plain = cm.series_echo_weighted(moved), cm.series_echo(moved)
    assert w["echo_wt"] > plain["echo_t"] + 0.4
    assert w["echo_wfirst"] == 8.0 and abs(w["echo_wrun"] - 8 / 24) < 1e-9
    assert cm.series_echo_weighted(clean)["echo_wt"] < 0.6 * w["echo_wt"]
    assert cm.series_echo_weighted(_echo_series(n=5, run=(2, 4)))["echo_wt"] == 0.0
    assert cm.series_echo_weighted([])["echo_wt"] == 0.0


def test_the_weighted_echo_alone_raises_a_net_none_to_motion() -> None:
    none = [0.97, 0.01, 0.01, 0.01]
    s = _series(_echo_series(blur=0.5))
    only_w = {**art.DEFAULTS, "ct_echo_t": 99.0, "ct_echo_axis_t": None}  # the plain reading cannot fire (nor the axis-backed one)
    res = art.analyse_series(s, "CT", only_w, Fixed(none))
    assert res.value == "运动" and res.extra["echo"]["echo_wt"] >= art.DEFAULTS["ct_echo_wt"]
    assert res.slice_index is not None
    assert art.analyse_series(s, "CT", {**only_w, "ct_echo_wt": None, "ct_axis_step_t": None}, Fixed(none)).value == "无"
    assert art.analyse_series(_series(_echo_series(run=None, blur=0.5)), "CT", only_w, Fixed(none)).value == "无"
    assert art.DEFAULTS["ct_echo_wt"] >= 6.0 and art.DEFAULTS["ct_echo_wstep"] >= 0.2
