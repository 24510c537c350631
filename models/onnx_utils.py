"""ONNX export helpers shared by every model's ``export.py`` (torch needed only here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def export_onnx(net: Any, example: np.ndarray, path: Path, *, dynamic_batch: bool = True, opset: int = 17) -> None:
    """Export ``net`` (eval mode) to ``path`` with input ``input`` and output ``logits``."""
    import torch

    net.eval()
    x = torch.from_numpy(example)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"input_names": ["input"], "output_names": ["logits"], "opset_version": opset}
    if dynamic_batch:
        kwargs["dynamic_axes"] = {"input": {0: "batch"}, "logits": {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(net, (x,), str(path), dynamo=False, **kwargs)


def store_weights_fp16(path: Path, min_elements: int = 256) -> None:
    """Halve the file size: large float32 initializers stored as float16 with a Cast back.

    Computation stays float32 (fp16 kernels are slow on CPU); only the stored weights lose
    precision, which the export check bounds (see :func:`max_abs_difference`)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    new_inits = []
    casts = []
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT and int(np.prod(init.dims)) >= min_elements:
            arr = numpy_helper.to_array(init).astype(np.float16)
            half_name = init.name + "__fp16"
            new_inits.append(numpy_helper.from_array(arr, half_name))
            casts.append(helper.make_node("Cast", [half_name], [init.name], to=TensorProto.FLOAT))
        else:
            new_inits.append(init)
    del graph.initializer[:]
    graph.initializer.extend(new_inits)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def max_abs_difference(net: Any, path: Path, example: np.ndarray) -> float:
    """Largest |torch - onnxruntime| output difference on ``example`` (export sanity check)."""
    import onnxruntime as ort
    import torch

    net.eval()
    with torch.no_grad():
        ref = net(torch.from_numpy(example)).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: example})[0]
    return float(np.abs(ref - got).max())
