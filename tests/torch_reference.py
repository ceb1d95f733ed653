"""A PyTorch module built straight from the resolved model with torch.nn's own layers, one module
per layer at the layer's path, its forward walking the IR. The ONNX tests use it as the oracle
where archgen.emit_torch is not available (and to cross-check it where it is)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archgen.ir import Layer, Merge, Network, Node, Seq
from archgen.layers.conv import Conv2d as ConvKind


class _SamePadConv2d(nn.Conv2d):
    """padding=same with a stride > 1 (SAME_UPPER), which nn.Conv2d refuses."""

    def __init__(self, pads, mode, **kw):
        super().__init__(padding=0, **kw)
        (t, b), (left, r) = pads
        self.pad4 = (left, r, t, b)
        self.pad_mode = "constant" if mode == "zeros" else mode

    def forward(self, x):
        return super().forward(F.pad(x, self.pad4, mode=self.pad_mode))


def layer_module(layer: Layer) -> nn.Module:
    a = layer.args
    op = layer.op
    if op == "conv2d":
        kw = {"in_channels": a["in_channels"], "out_channels": a["out_channels"],
              "kernel_size": a["kernel_size"], "stride": a["stride"],
              "dilation": a["dilation"], "groups": a["groups"], "bias": a["bias"]}
        if ConvKind.same_stride(a):
            return _SamePadConv2d(a["pads"], a["padding_mode"], **kw)
        return nn.Conv2d(padding=a["padding"], padding_mode=a["padding_mode"], **kw)
    if op == "conv_transpose2d":
        return nn.ConvTranspose2d(a["in_channels"], a["out_channels"], a["kernel_size"],
                                  a["stride"], a["padding"], a["output_padding"], a["groups"],
                                  a["bias"], a["dilation"])
    if op == "maxpool2d":
        return nn.MaxPool2d(a["kernel_size"], a["stride"], a["padding"], a["dilation"],
                            ceil_mode=a["ceil_mode"])
    if op == "avgpool2d":
        return nn.AvgPool2d(a["kernel_size"], a["stride"], a["padding"], a["ceil_mode"],
                            a["count_include_pad"], a["divisor_override"])
    if op == "adaptive_avgpool2d":
        return nn.AdaptiveAvgPool2d(a["output_size"])
    if op == "adaptive_maxpool2d":
        return nn.AdaptiveMaxPool2d(a["output_size"])
    if op == "batchnorm2d":
        return nn.BatchNorm2d(a["num_features"], a["eps"], a["momentum"], a["affine"],
                              a["track_running_stats"])
    simple = {"relu": lambda: nn.ReLU(a["inplace"]), "relu6": lambda: nn.ReLU6(a["inplace"]),
              "leaky_relu": lambda: nn.LeakyReLU(a["negative_slope"], a["inplace"]),
              "elu": lambda: nn.ELU(a["alpha"], a["inplace"]),
              "gelu": lambda: nn.GELU(a["approximate"]), "silu": lambda: nn.SiLU(a["inplace"]),
              "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
              "hardswish": lambda: nn.Hardswish(a["inplace"]),
              "softmax": lambda: nn.Softmax(a["dim"]),
              "dropout": lambda: nn.Dropout(a["p"]), "dropout2d": lambda: nn.Dropout2d(a["p"]),
              "flatten": lambda: nn.Flatten(a["start_dim"], a["end_dim"]),
              "linear": lambda: nn.Linear(a["in_features"], a["out_features"], a["bias"]),
              "identity": nn.Identity}
    if op in simple:
        return simple[op]()
    if op == "pad2d":
        mode = a["mode"]
        if mode == "zeros":
            return nn.ConstantPad2d(a["padding"], a["value"])
        return {"reflect": nn.ReflectionPad2d, "replicate": nn.ReplicationPad2d,
                "circular": nn.CircularPad2d}[mode](a["padding"])
    if op == "upsample":
        return nn.Upsample(a["size"], a["scale_factor"], a["mode"], a["align_corners"])
    raise NotImplementedError(op)


class ReferenceModule(nn.Module):
    def __init__(self, net: Network):
        super().__init__()
        self._net = net
        for layer in net.layers():
            parent = self
            *outer, attr = layer.path.split(".")
            for part in outer:
                if not hasattr(parent, part):
                    parent.add_module(part, nn.Module())
                parent = getattr(parent, part)
            parent.add_module(attr, layer_module(layer))

    def forward(self, x):
        return self._run(self._net.root, x)

    def _run(self, node: Node, x):
        if isinstance(node, Layer):
            return self.get_submodule(node.path)(x)
        if isinstance(node, Seq):
            for item in node.items:
                x = self._run(item, x)
            return x
        assert isinstance(node, Merge)
        ys = [self._run(b, x) for b in node.branches]
        if node.mode == "concat":
            return torch.cat(ys, 1)
        out = ys[0]
        for y in ys[1:]:
            out = out + y
        return out


def build_reference(net: Network) -> nn.Module:
    return ReferenceModule(net)
