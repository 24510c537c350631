"""CT motion (运动) by its echo: the displaced copy of the slice that a moving patient leaves.

Why: a patient who moves during the gantry rotation leaves a faint copy of the slice displaced
along the motion (the generator's ``motion_double``: the slice shifted 4-9 mm, i.e. 1-3 px at the
128-px working scale, at weight 0.35-0.5, on a contiguous 25-50% of an acquisition's slices,
before the kernel). A copy at offset s multiplies the slice's spectrum by (1 - w) + w e^(-i k.s):
its log power spectrum gains a ripple along s, and the power cepstrum (the inverse transform of
the log power) a peak at +-s. This reads every edge of the slice (bones, lungs, the body outline),
not only the outline the ghost-band measures see, and the log makes it independent of the
kernel's blur (a blurring kernel multiplies the spectrum by a smooth, isotropic factor, which
the log turns into a term near the cepstrum's origin).

The series measure is a step: the motion switches the echo on for one contiguous run of slices
and off again, so the cepstrum at the shift's offset stands on a plateau above the other slices.
Anatomy changes the cepstrum slowly along the scan, noise from slice to slice; the step is scored
as its height over the pooled slice-to-slice spread (a t-like ratio), and the height itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import fft as sfft

#: cepstrum offsets (dy, dx) read, one of each +-s pair: 1 to 3.2 px at the working scale
ECHO_OFFSETS: tuple[tuple[int, int], ...] = tuple(
    (dy, dx) for dy in range(0, 4) for dx in range(-3, 4) if (dy > 0 or dx > 0) and 1.0 <= float(np.hypot(dy, dx)) <= 3.2
)
#: HU window of the cepstrum: air-tissue edges (lungs, the body outline) carry the echo; bone
#: and metal above 400 HU would dominate the spectrum with a few bright pixels
ECHO_HU = (-1000.0, 400.0)
#: the step's spread floor (cepstrum units): a plateau flat to the last digit is not infinitely sure
ECHO_SPREAD_FLOOR = 0.02


def work_slice(hu: np.ndarray, work_px: int = 128) -> np.ndarray:
    """The slice block-averaged to about ``work_px`` columns (as :func:`artifact.ct_slice_features`):
    the shift in mm is then 1-3 px on every matrix."""
    factor = max(1, hu.shape[1] // work_px) if hu.shape[1] > work_px * 1.25 else 1
    if factor == 1:
        return np.asarray(hu, dtype=np.float32)
    h, w = hu.shape[0] // factor * factor, hu.shape[1] // factor * factor
    x = np.asarray(hu[:h, :w], dtype=np.float32)
    blocks = x.reshape(h // factor, factor, w // factor, factor)
    # Speed (CTSP, 2026-11-24): the mean over axes (1, 3) is ~1.5 ms on a 512² slice (~0.5 s of a
    # 310-slice exam); factor² strided adds are ~3x faster. Bit-identical where every partial sum
    # is exact in float32 (integral HU, |x| factor² < 2**24: stored CT values), else the mean.
    if factor <= 8 and float(np.abs(x).max(initial=0.0)) * factor * factor < 2.0 ** 24 and np.array_equal(x, np.rint(x)):
        total = blocks[:, 0, :, 0].copy()
        for a in range(factor):
            for b in range(factor):
                if a or b:
                    total += blocks[:, a, :, b]
        return total / np.float32(factor * factor)
    return blocks.mean(axis=(1, 3))


def slice_cepstrum(hu: np.ndarray) -> np.ndarray:
    """The power cepstrum of one slice (HU, working scale) at :data:`ECHO_OFFSETS`."""
    x = np.clip(np.asarray(hu, dtype=np.float32), *ECHO_HU)
    x = x - float(x.mean())
    # the real transform in single precision: half the spectrum (the power is symmetric), ~3x faster
    power = np.abs(sfft.rfft2(x)) ** 2
    # means over the full spectrum, from the half spectrum (columns 1..nx/2-1 stand for two)
    nx = x.shape[1]
    wcol = np.full(power.shape[1], 2.0, dtype=np.float64)
    wcol[0] = 1.0
    if nx % 2 == 0:
        wcol[-1] = 1.0
    full_mean = lambda a: float((a.sum(axis=0, dtype=np.float64) * wcol).sum()) / (x.shape[0] * nx)  # noqa: E731
    logp = np.log(power + np.float32(1e-3 * full_mean(power) + 1e-12))
    mean = full_mean(logp)
    c = sfft.irfft2(logp - np.float32(mean), s=x.shape)
    ny, nx = c.shape
    return np.array([c[dy % ny, dx % nx] for dy, dx in ECHO_OFFSETS], dtype=np.float64)


def echo_step(ceps: np.ndarray, min_frac: float = 0.15, max_frac: float = 0.6, min_len: int = 3,
              min_slices: int = 6, floor: float | None = None) -> tuple[float, float, tuple[int, int, tuple[int, int]] | None]:
    """The strongest plateau of the slices' cepstra (``ceps``: slices x offsets): (height, t, (first
    slice, end slice, offset)) over contiguous runs of ``min_frac``-``max_frac`` of the slices (at
    least ``min_len``); t is the height over the pooled spread inside and outside the run (+
    :data:`ECHO_SPREAD_FLOOR`, or ``floor`` when given). (0, 0, None) with fewer than ``min_slices``
    slices: a run of one or two slices cannot be told from anatomy."""
    spread_floor = ECHO_SPREAD_FLOOR if floor is None else float(floor)
    c = np.asarray(ceps, dtype=np.float64)
    n = c.shape[0] if c.ndim == 2 else 0
    if n < max(min_slices, 2 * min_len):
        return 0.0, 0.0, None
    d = c - np.median(c, axis=0)
    cs = np.vstack([np.zeros(d.shape[1]), np.cumsum(d, axis=0)])
    cs2 = np.vstack([np.zeros(d.shape[1]), np.cumsum(d * d, axis=0)])
    best: tuple[float, float, tuple[int, int, tuple[int, int]] | None] = (0.0, 0.0, None)
    lo, hi = max(min_len, int(np.ceil(min_frac * n))), min(n - min_len, int(max_frac * n))
    for length in range(lo, hi + 1):
        si = cs[length:] - cs[:-length]  # every run of this length: (n - length + 1) x offsets
        si2 = cs2[length:] - cs2[:-length]
        so, so2 = cs[-1] - si, cs2[-1] - si2
        mi, mo = si / length, so / (n - length)
        vi = np.maximum(si2 / length - mi * mi, 0.0)
        vo = np.maximum(so2 / (n - length) - mo * mo, 0.0)
        step = mi - mo
        t = step / (np.sqrt((vi * length + vo * (n - length)) / n) + spread_floor)
        a, j = np.unravel_index(int(np.argmax(t)), t.shape)
        if float(t[a, j]) > best[1]:
            best = (float(step[a, j]), float(t[a, j]), (int(a), int(a) + length, ECHO_OFFSETS[int(j)]))
    return best


def series_echo(slices: Sequence[np.ndarray], work_px: int = 128) -> dict[str, float]:
    """Series features: ``echo_step`` (the plateau's height), ``echo_t`` (its height over the
    spread), ``echo_run`` (its length as a fraction of the slices), ``echo_first`` (its first slice,
    position in ``slices``), ``echo_dy``/``echo_dx`` (the offset, px at the working scale)."""
    if not slices:
        return {"echo_step": 0.0, "echo_t": 0.0, "echo_run": 0.0, "echo_first": -1.0, "echo_dy": 0.0, "echo_dx": 0.0}
    ceps = np.stack([slice_cepstrum(work_slice(s, work_px)) for s in slices])
    step, t, where = echo_step(ceps)
    if where is None:
        return {"echo_step": 0.0, "echo_t": 0.0, "echo_run": 0.0, "echo_first": -1.0, "echo_dy": 0.0, "echo_dx": 0.0}
    a, b, (dy, dx) = where
    return {"echo_step": step, "echo_t": t, "echo_run": (b - a) / len(slices), "echo_first": float(a),
            "echo_dy": float(dy), "echo_dx": float(dx)}


#: the weighted echo's signal band: spectral bins whose series-median log power stands this far
#: (natural log, ~2.7x) above the noise floor (the median log power beyond ECHO_FLOOR_RADIUS cycles
#: per pixel) are read, the rest left out
ECHO_SIGNAL_MARGIN = 1.0
ECHO_FLOOR_RADIUS = 0.4


def series_echo_weighted(slices: Sequence[np.ndarray], work_px: int = 128) -> dict[str, float]:
    """The echo read on the slices' signal band only: ``echo_wt`` (plateau over spread),
    ``echo_wstep`` (its height), ``echo_wrun`` and ``echo_wfirst`` (the run), as :func:`series_echo`.

    Why: the plain cepstrum averages the log power over every spectral bin. Under heavy noise or
    a blurring kernel most bins hold noise only (their log power scatters by ~1.3 from slice to
    slice and carries no ripple), which dilutes the copy's ripple and adds spread: worn i9210
    E00061 (6.9 mm shift) read t 4.1, under the plain rule's 5.0. Here the ripple is projected on
    the offsets' cosines over the bins where the series' median spectrum stands clear of the noise
    floor, and normalised by their number (one band for the whole series, so the slices stay
    comparable). E00061 reads 7.7; clean series of 16+ slices read up to 5.4 (worn i9206 E00108),
    truncated or metal series up to 5.8 (8501 E00095)."""
    zero = {"echo_wstep": 0.0, "echo_wt": 0.0, "echo_wrun": 0.0, "echo_wfirst": -1.0}
    if not slices:
        return zero
    logs = []
    for s in slices:
        x = np.clip(np.asarray(work_slice(s, work_px), dtype=np.float32), *ECHO_HU)
        x = x - float(x.mean())
        pw = np.abs(np.fft.fft2(x)) ** 2
        logs.append(np.log(pw + 1e-3 * float(pw.mean()) + 1e-12))
    if len({lg.shape for lg in logs}) != 1:
        return zero
    stack = np.stack(logs)
    ny, nx = stack.shape[1:]
    ky, kx = np.fft.fftfreq(ny)[:, None], np.fft.fftfreq(nx)[None, :]
    radius = np.hypot(ky, kx)
    med = np.median(stack, axis=0)
    outer = med[radius > ECHO_FLOOR_RADIUS]
    if outer.size == 0:
        return zero
    band = (med > float(np.median(outer)) + ECHO_SIGNAL_MARGIN) & (radius > 0)
    nb = float(band.sum())
    if nb < 16:
        return zero
    ceps = []
    for lg in stack:
        d = np.where(band, lg - float(lg[band].mean()), 0.0)
        c = np.real(np.fft.ifft2(d)) * (d.size / nb)  # sum over the band of d cos(k.s), / band size
        ceps.append([c[dy % ny, dx % nx] for dy, dx in ECHO_OFFSETS])
    step, t, where = echo_step(np.asarray(ceps, dtype=np.float64))
    if where is None:
        return zero
    a, b, _ = where
    return {"echo_wstep": step, "echo_wt": t, "echo_wrun": (b - a) / len(slices), "echo_wfirst": float(a)}


#: the axis step's spread floor (px of band width per outline px): a flat harmonic is not infinitely sure
AXIS_SPREAD_FLOOR = 0.1


def series_axis_step(per: Sequence[dict[str, float]], min_frac: float = 0.15, max_frac: float = 0.6, min_len: int = 3,
                     min_slices: int = 6) -> dict[str, float]:
    """The motion axis read as a step over a run of slices: ``ghost_axis_t`` (the run's mean
    second-harmonic vector, projected on its own direction, above the other slices' mean, over the
    pooled spread of the projections + :data:`AXIS_SPREAD_FLOOR`), ``ghost_axis_step`` (that height,
    px), ``ghost_axis_run`` (the run's length as a fraction of the measured slices) and
    ``ghost_axis_first`` (its first slice, position in ``per``). Read on the slices whose axis was
    measured (``ghost_axis_ok``: half the sectors clear of the field circle) only; zeros with fewer
    than ``min_slices`` of them.

    Why: :func:`artifact.ct_ghost_axis` gives each slice the edge-doubling band's second angular
    harmonic (the copy displaced along one axis widens the band on both sides along it). A blurring
    kernel widens every edge, and on a blurred series the band's amplitude and the coherence
    (:func:`artifact.ct_ghost_axis_coherence`: the run's mean vector minus the median amplitude)
    read as high on clean bodies as on moving ones (worn i9206 E00318: coherence 1.64, clean). The
    motion switches the axis on for one contiguous run and off again, as it does the cepstral echo
    (:func:`echo_step`); a body's own shape changes the harmonic slowly along the scan and the blur's
    noise from slice to slice. Scored like the echo: the plateau's height over its spread. Runs of
    ``min_frac``-``max_frac`` of the slices (at least ``min_len``); cumulative sums over the run
    (x, y, x², y², xy of the harmonic vectors) make it one pass per run length (~1 ms on 48 slices)."""
    zero = {"ghost_axis_step": 0.0, "ghost_axis_t": 0.0, "ghost_axis_run": 0.0, "ghost_axis_first": -1.0}
    ok = [k for k, x in enumerate(per) if float(x.get("ghost_axis_ok", 0.0)) > 0]
    n = len(ok)
    if n < max(min_slices, 2 * min_len):
        return zero
    amp = np.array([float(per[k].get("ghost_axis", 0.0)) for k in ok])
    phi = np.array([float(per[k].get("ghost_axis_phi", 0.0)) for k in ok])
    x, y = amp * np.cos(phi), amp * np.sin(phi)

    def cum(v: np.ndarray) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(v)])

    cx, cy, cxx, cyy, cxy = cum(x), cum(y), cum(x * x), cum(y * y), cum(x * y)
    best: tuple[float, float, int, int] = (0.0, 0.0, -1, 0)
    lo, hi = max(min_len, int(np.ceil(min_frac * n))), min(n - min_len, int(max_frac * n))
    for length in range(lo, hi + 1):
        m = n - length
        sx, sy = cx[length:] - cx[:-length], cy[length:] - cy[:-length]
        sxx, syy, sxy = cxx[length:] - cxx[:-length], cyy[length:] - cyy[:-length], cxy[length:] - cxy[:-length]
        ox, oy, oxx, oyy, oxy = cx[-1] - sx, cy[-1] - sy, cxx[-1] - sxx, cyy[-1] - syy, cxy[-1] - sxy
        mix, miy, mox, moy = sx / length, sy / length, ox / m, oy / m
        r = np.hypot(mix, miy) + 1e-12
        c, s = mix / r, miy / r  # the run's own axis
        step = (mix - mox) * c + (miy - moy) * s
        vin = c * c * (sxx / length - mix ** 2) + s * s * (syy / length - miy ** 2) + 2 * c * s * (sxy / length - mix * miy)
        vout = c * c * (oxx / m - mox ** 2) + s * s * (oyy / m - moy ** 2) + 2 * c * s * (oxy / m - mox * moy)
        t = step / (np.sqrt(np.maximum((vin * length + vout * m) / n, 0.0)) + AXIS_SPREAD_FLOOR)
        j = int(np.argmax(t))
        if float(t[j]) > best[1]:
            best = (float(step[j]), float(t[j]), ok[j], length)
    if best[2] < 0:
        return zero
    return {"ghost_axis_step": best[0], "ghost_axis_t": best[1], "ghost_axis_run": best[3] / n, "ghost_axis_first": float(best[2])}


#: the ghost-width step's spread floor (px at the working scale): a band flat to the last digit
#: (clean slices read 0.00-0.02 px) is not infinitely sure
WIDTH_SPREAD_FLOOR = 0.05


def series_width_step(per: Sequence[dict[str, float]], min_frac: float = 0.15, max_frac: float = 0.6, min_len: int = 3,
                      min_slices: int = 6) -> dict[str, float]:
    """The edge-doubling band's width (``ghost_width``, px of intermediate HU outside the outline,
    per slice) read as a step over a contiguous run of slices: ``ghost_width_t`` (the run's mean
    above the other slices' mean over the pooled spread + :data:`WIDTH_SPREAD_FLOOR`),
    ``ghost_width_step`` (that height, px), ``ghost_width_run`` (the run's length, fraction of the
    slices) and ``ghost_width_first`` (its first slice). Zeros with fewer than ``min_slices``
    slices. Scored as :func:`echo_step` scores the echo (runs of ``min_frac``-``max_frac`` of the
    slices, at least ``min_len``; one pass per run length on cumulative sums).

    Why: where the field circle cuts the body (lumbar and thoracic spine fields) the outline's
    band is unmeasured along the cut and the motion axis reads nothing, and the echo's plateau is
    weak; but the generator's motion widens the band on the moving run only (i9218 E00771: 1.05 px
    on slices 9-14, 0.00-0.02 elsewhere; E00381 0.87-1.08 on 7 slices), while a cut edge widens it
    on every slice of the body it cuts. Reads only the per-slice features the pipeline has."""
    zero = {"ghost_width_step": 0.0, "ghost_width_t": 0.0, "ghost_width_run": 0.0, "ghost_width_first": -1.0}
    g = np.array([float(x.get("ghost_width", 0.0)) for x in per], dtype=np.float64)[:, None]
    if len(g) < max(min_slices, 2 * min_len):
        return zero
    step, t, run = echo_step(g, min_frac, max_frac, min_len, min_slices, floor=WIDTH_SPREAD_FLOOR)
    if run is None:
        return zero
    return {"ghost_width_step": step, "ghost_width_t": t, "ghost_width_run": (run[1] - run[0]) / len(g), "ghost_width_first": float(run[0])}
