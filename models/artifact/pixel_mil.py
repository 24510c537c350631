"""What the series pixel-CNNs of the artifact detector share (``mr_void``, ``ct_net``): resampling a
slice to the net's pixel size, the fully convolutional network, and multiple-instance training.

Why multiple-instance learning: the generator says which *series* carry an artifact (an implant's
void, a motion ghost, a metal streak), not which slice or where. Each net gives a logit map per
slice; a series reads the highest cell of any slice, and training pushes that maximum up for a
positive series and every cell down for a clean one. The place of the maximum is the evidence.

Why shared: the two nets differ in input (MR: one channel scaled per series; CT: HU through fixed
windows), output classes and augmentation; the map, the pooling over slices, the batching and the
training loop must not differ, or a fix to one (the bias prior of session 24) misses the other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def resample(img: np.ndarray, spacing: tuple[float, float], target_mm: float) -> np.ndarray:
    """One slice at ``target_mm`` per pixel: integer block means first (no aliasing of a fine real
    matrix), then a linear zoom for the remainder."""
    from scipy import ndimage

    a = np.asarray(img, dtype=np.float32)
    fr, fc = spacing[0] / target_mm, spacing[1] / target_mm
    br, bc = max(1, int(1.0 / fr)) if fr < 1 else 1, max(1, int(1.0 / fc)) if fc < 1 else 1
    if br > 1 or bc > 1:
        h, w = (a.shape[0] // br) * br, (a.shape[1] // bc) * bc
        a = a[:h, :w].reshape(h // br, br, w // bc, bc).mean(axis=(1, 3))
        fr, fc = fr * br, fc * bc
    if abs(fr - 1) > 0.02 or abs(fc - 1) > 0.02:
        a = ndimage.zoom(a, (fr, fc), order=1, prefilter=False)
    return a


def canvas(res: Sequence[np.ndarray], max_side: int, stride: int, fill: float) -> np.ndarray:
    """Resampled slices on one (N, 1, H, W) float32 canvas: H and W a multiple of ``stride``, at most
    ``max_side`` (larger slices are cropped centrally), ``fill`` where a slice does not reach."""
    if any(r.ndim != 2 for r in res):
        raise ValueError("slices must be 2-D")
    h = min(max_side, max(r.shape[0] for r in res))
    w = min(max_side, max(r.shape[1] for r in res))
    h, w = -(-h // stride) * stride, -(-w // stride) * stride
    out = np.full((len(res), 1, h, w), fill, dtype=np.float32)
    for i, r in enumerate(res):
        r0, c0 = max(0, (r.shape[0] - h) // 2), max(0, (r.shape[1] - w) // 2)
        crop = r[r0:r0 + h, c0:c0 + w]
        out[i, 0, :crop.shape[0], :crop.shape[1]] = crop
    return out


def build_fcn(in_channels: int = 1, outputs: int = 1, stem: Any = None) -> Any:
    """Fully convolutional: ``outputs`` logits per 4x4 block of the slice. ``stem`` (a module)
    goes first and turns the stored input into ``in_channels`` (CT: fixed HU windows), so the
    exported ONNX file takes what ``prepare`` gives."""
    from torch import nn

    def block(cin: int, cout: int) -> list[Any]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

    # narrow on purpose: a training step reads 8 whole series on 2 cores
    layers = [*block(in_channels, 8), *block(8, 8), nn.MaxPool2d(2), *block(8, 16), *block(16, 16), nn.MaxPool2d(2),
              *block(16, 32), *block(32, 32), nn.Conv2d(32, outputs, 1)]
    return nn.Sequential(*([stem] if stem is not None else []), *layers)


def batch(stacks: Sequence[np.ndarray], fill: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Series of (slices, H, W) on one (n, 1, H, W) batch and each slice's series index."""
    h = max(s.shape[1] for s in stacks)
    w = max(s.shape[2] for s in stacks)
    n = sum(s.shape[0] for s in stacks)
    x = np.full((n, 1, h, w), fill, dtype=np.float32)
    owner = np.empty(n, dtype=np.int64)
    i = 0
    for j, s in enumerate(stacks):
        x[i:i + s.shape[0], 0, :s.shape[1], :s.shape[2]] = s
        owner[i:i + s.shape[0]] = j
        i += s.shape[0]
    return x, owner


def series_logits(net: Any, x: Any, owner: Any, n_series: int) -> Any:
    """(n_series, outputs): per output, the highest cell of any slice of the series."""
    import torch

    per_slice = net(x).amax(dim=(2, 3))  # (slices, outputs)
    out = torch.full((n_series, per_slice.shape[1]), -1e4, dtype=per_slice.dtype)
    index = torch.as_tensor(owner)[:, None].expand_as(per_slice)
    return out.scatter_reduce(0, index, per_slice, reduce="amax")


def fit_mil(net: Any, stacks: Sequence[np.ndarray], y: np.ndarray, draw: Callable[[np.random.Generator, int], np.ndarray],
            augment: Callable[[np.ndarray, np.random.Generator], np.ndarray], steps: int, fill: float = 0.0,
            seed: int = 0, lr: float = 1e-3, init: Any = None) -> Any:
    """Train ``net`` (its last module a conv giving the logits) on series ``stacks`` with targets
    ``y`` (n_series, outputs) in {0, 1}; ``draw(rng, step)`` picks a batch's series indices.
    ``init``: a saved state dict (the ``.pt`` beside an exported net) to fine-tune from."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    rng = np.random.default_rng(seed)
    # the series logit is a maximum over thousands of map cells: started at 0, every cell of every
    # series is positive at 50%, the maximum sits on the same border cell for every series and
    # training stalls at chance (loss 0.69 for 800 steps, session 24); started well below, only an
    # artifact has to climb (the prior of one-stage detectors)
    if init is not None:
        net.load_state_dict(torch.load(init))
    else:
        torch.nn.init.constant_(net[-1].bias, -4.0)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=1e-5)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    target = torch.from_numpy(np.asarray(y, dtype=np.float32).reshape(len(stacks), -1))
    started = time.time()
    for step in range(steps):
        net.train()
        idx = draw(rng, step)
        x, owner = batch([augment(stacks[i], rng) for i in idx], fill)
        logits = series_logits(net, torch.from_numpy(x), owner, len(idx))
        loss = loss_fn(logits, target[torch.as_tensor(idx)])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 100 == 0:
            print(f"step {step + 1}/{steps} loss {loss.item():.3f} ({time.time() - started:.0f} s)", flush=True)
    return net


def export_fcn(net: Any, out: Any, input_name: str = "slices", output_name: str = "logit_map") -> None:
    """ONNX with free slice count, height and width."""
    import torch

    net.eval()
    example = torch.zeros(2, 1, 96, 80)
    torch.onnx.export(net, (example,), str(out), input_names=[input_name], output_names=[output_name],
                      dynamic_axes={input_name: {0: "slices", 2: "height", 3: "width"},
                                    output_name: {0: "slices", 2: "map_height", 3: "map_width"}},
                      opset_version=17, dynamo=False)
