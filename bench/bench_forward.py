"""Forward time of archgen's generated modules against torchvision's models, on the same
weights (run by hand; not a test).

    python bench/bench_forward.py [--torchvision] [--rounds 40] [--rounds-large 16]
                                  [--threads 1] [--clock cpu|wall] [--control] [--models ...]

The reference is torchvision.models' own module with `--torchvision` (run it with a Python
that has torchvision, e.g. /work/tvenv/bin/python; archgen's environment has none), otherwise
torchvision's classes written out below statement for statement (in-place ReLUs, `out +=
identity`, one statement a layer, DenseNet's concatenation of the list of earlier features):
`bench/forward_ops.py` checks that both kinds of reference run the same ATen ops and free
their tensors between the same ops as the generated module. The generated module's weights
are copied into the reference in state_dict order (same shapes, checked) and the outputs are
compared before anything is timed.

Timing (eval, no_grad, CPU, a fixed thread count): after a warm-up, paired rounds each run
both modules once, back to back, alternating which goes first; the cyclic GC is off. The
default clock is the main thread's CPU time (time.thread_time): with one thread, the time the
process waits for a core on a loaded machine is not counted, which wall-clock time is. Per row:
the median time of each module, the median of the per-round ratios generated / reference, their
interquartile range, a distribution-free 95% confidence interval of that median (order
statistics of the binomial), the other clock's median ratio, and the median minor page faults
of one forward of each. `--control` adds an A/A row per model: the reference against a deep
copy of itself, the same code in other memory, which shows what the measurement alone gives.
"""

from __future__ import annotations

import argparse
import copy
import gc
import math
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# -- torchvision's definitions ------------------------------------------------------------------

class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)
        out = self.conv3(out)
        out = self.bn3(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class ResNet(nn.Module):
    def __init__(self, block, layers: list[int]) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, 1000)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # torchvision's _forward_impl, one statement a layer: `x = self.layer4(self.layer3(
        # ...(x)))` would hold the max pool's output until layer4 returns, which changes when
        # glibc returns heap memory to the system and so the page faults (3% at batch 32)
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def _conv_bn_act(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups,
                                   bias=False), nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = inp * expand_ratio
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_act(inp, hidden, kernel=1))
        layers += [_conv_bn_act(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        features: list[nn.Module] = [_conv_bn_act(3, 32, stride=2)]
        cin = 32
        for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                           (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
            for i in range(n):
                features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        features.append(_conv_bn_act(cin, 1280, kernel=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


class _DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int = 32, bn_size: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def bn_function(self, features: list[torch.Tensor]) -> torch.Tensor:
        concated = torch.cat(features, 1)  # freed when this returns, as in torchvision
        return self.conv1(self.relu1(self.norm1(concated)))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        bottleneck = self.bn_function(features)
        return self.conv2(self.relu2(self.norm2(bottleneck)))


class _DenseBlock(nn.ModuleDict):
    def __init__(self, num_layers: int, cin: int) -> None:
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}", _DenseLayer(cin + i * 32))

    def forward(self, init: torch.Tensor) -> torch.Tensor:
        features = [init]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


def _transition(cin: int, cout: int) -> nn.Sequential:
    t = nn.Sequential()
    t.add_module("norm", nn.BatchNorm2d(cin))
    t.add_module("relu", nn.ReLU(inplace=True))
    t.add_module("conv", nn.Conv2d(cin, cout, 1, bias=False))
    t.add_module("pool", nn.AvgPool2d(2, 2))
    return t


class DenseNet121(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential()
        for name, module in (("conv0", nn.Conv2d(3, 64, 7, 2, 3, bias=False)),
                             ("norm0", nn.BatchNorm2d(64)), ("relu0", nn.ReLU(inplace=True)),
                             ("pool0", nn.MaxPool2d(3, 2, 1))):
            self.features.add_module(name, module)
        c = 64
        for i, n in enumerate((6, 12, 24, 16)):
            self.features.add_module(f"denseblock{i + 1}", _DenseBlock(n, c))
            c += n * 32
            if i != 3:
                self.features.add_module(f"transition{i + 1}", _transition(c, c // 2))
                c //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(c))
        self.classifier = nn.Linear(c, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.features(x), inplace=True)
        out = torch.flatten(F.adaptive_avg_pool2d(out, (1, 1)), 1)
        return self.classifier(out)


class Fire(nn.Module):
    def __init__(self, inplanes: int, squeeze: int, e1: int, e3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(inplanes, squeeze, 1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], 1)


class SqueezeNet11(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, 2), nn.ReLU(inplace=True), pool, Fire(64, 16, 64, 64),
            Fire(128, 16, 64, 64), pool, Fire(128, 32, 128, 128), Fire(256, 32, 128, 128),
            pool, Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256),
            Fire(512, 64, 256, 256))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(512, 1000, 1),
                                        nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


class VGG16(nn.Module):
    def __init__(self, batch_norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                  512, 512, 512, "M"):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(nn.Conv2d(cin, v, 3, padding=1))
                layers += [nn.BatchNorm2d(v)] if batch_norm else []
                layers.append(nn.ReLU(inplace=True))
                cin = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 4096),
            nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 1000))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class AlexNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2))
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(p=0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 1000))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


REFERENCES = {
    "alexnet": AlexNet,
    "resnet18": lambda: ResNet(BasicBlock, [2, 2, 2, 2]),
    "resnet34": lambda: ResNet(BasicBlock, [3, 4, 6, 3]),
    "resnet50": lambda: ResNet(Bottleneck, [3, 4, 6, 3]),
    "mobilenet_v2": MobileNetV2,
    "densenet121": DenseNet121,
    "squeezenet1_1": SqueezeNet11,
    "vgg16": VGG16,
    "vgg16_bn": lambda: VGG16(batch_norm=True),
}

# The zoo of issue 10, measured against torchvision's own modules only (`--torchvision`), built
# as tests/fixtures/make_torchvision_fixtures.py builds them: googlenet and inception_v3
# without their auxiliary heads (their specs have none).
TORCHVISION_ONLY = {
    "efficientnet_b0": {}, "mobilenet_v3_small": {}, "convnext_tiny": {},
    "shufflenet_v2_x1_0": {}, "regnet_y_400mf": {},
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True}, "r3d_18": {},
}


# -- the measurement ----------------------------------------------------------------------------

def pair(name: str, inplace: bool = False, use_torchvision: bool = False):
    """(network, generated module, reference module) with the generated module's weights.

    The reference is bench_forward's transcription, or with `use_torchvision` the model from
    torchvision.models (weights=None; torchvision must be installed). The weights are copied
    in state_dict order after checking that every shape lines up, and the outputs are compared
    before anything is timed (`check_outputs`)."""
    import archgen
    from archgen.emit_torch import load_module
    path = ROOT / "examples" / f"{name}.cnn"
    text = path.read_text()
    if inplace:
        text = text.replace("relu()", "relu(inplace=true)").replace("relu6()",
                                                                      "relu6(inplace=true)")
    net = archgen.parse(text, str(path)).network
    torch.manual_seed(0)
    generated = load_module(net).eval()
    if use_torchvision:
        import torchvision
        kwargs = TORCHVISION_ONLY.get(name, {})
        reference = torchvision.models.get_model(name, weights=None, **kwargs).eval()
    elif name in REFERENCES:
        reference = REFERENCES[name]().eval()
    else:
        raise SystemExit(f"{name}: no transcription here; measure it with --torchvision")
    ours, theirs = generated.state_dict(), reference.state_dict()
    shapes = [(v.shape, w.shape) for v, w in zip(ours.values(), theirs.values())]
    if len(ours) != len(theirs) or any(a != b for a, b in shapes):
        raise SystemExit(f"{name}: the reference's state_dict does not line up")
    reference.load_state_dict(dict(zip(theirs, ours.values())))
    return net, generated, reference


def check_outputs(name: str, generated: nn.Module, reference: nn.Module, x: torch.Tensor):
    with torch.no_grad():
        err = (generated(x) - reference(x)).abs().max().item()
    if err > 1e-3:
        raise SystemExit(f"{name}: outputs differ by {err}")


def _run(model: nn.Module, x: torch.Tensor) -> tuple[float, float, int]:
    """(wall seconds, this thread's CPU seconds, minor page faults) of one forward."""
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    cpu, wall = time.thread_time(), time.perf_counter()
    model(x)
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    return wall, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


def measure(generated: nn.Module, reference: nn.Module, x: torch.Tensor, rounds: int,
            warmup: int = 1) -> dict[str, list[float]]:
    """Paired rounds: each round runs both modules once, back to back, the generated one first
    in even rounds and second in odd ones (so neither always meets the cache or allocator state
    the other leaves). The cyclic garbage collector is off while timing."""
    out: dict[str, list[float]] = {k: [] for k in ("g_wall", "r_wall", "g_cpu", "r_cpu",
                                                    "g_flt", "r_flt")}
    gc.collect()
    gc.disable()
    try:
        with torch.no_grad():
            for _ in range(warmup):
                generated(x)
                reference(x)
            for i in range(rounds):
                order = (("g", generated), ("r", reference))
                for side, model in order if i % 2 == 0 else order[::-1]:
                    wall, cpu, flt = _run(model, x)
                    out[side + "_wall"].append(wall)
                    out[side + "_cpu"].append(cpu)
                    out[side + "_flt"].append(flt)
    finally:
        gc.enable()
    return out


def median_ci(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval for the median: the order statistics k and
    n+1-k, where k is the largest with P(Binomial(n, 1/2) < k) <= (1 - level) / 2."""
    v, n = sorted(values), len(values)
    k, below = 0, 0.0
    while True:
        below_next = below + math.comb(n, k) / 2 ** n  # P(B <= k) = P(B < k + 1)
        if below_next > (1 - level) / 2:
            break
        below, k = below_next, k + 1
    if k == 0:
        return v[0], v[-1]  # too few rounds for the level: the whole range
    return v[k - 1], v[n - k]


def summary(t: dict[str, list[float]], clock: str) -> dict[str, float]:
    """Medians of each side, and the median, quartiles and 95% interval of the paired ratios
    generated / reference of one clock ('wall' or 'cpu')."""
    g, r = t["g_" + clock], t["r_" + clock]
    ratios = [a / b for a, b in zip(g, r)]
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    lo, hi = median_ci(ratios)
    return {"g": statistics.median(g) * 1e3, "r": statistics.median(r) * 1e3,
            "ratio": statistics.median(ratios), "q1": q1, "q3": q3, "lo": lo, "hi": hi}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40,
                        help="paired rounds at batch 1 (even: each module goes first as often)")
    parser.add_argument("--rounds-large", type=int, default=16,
                        help="paired rounds at the large batch")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", help="comma-separated (default: every model the "
                        "reference has; with --torchvision the issue-10 zoo too)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="the clock of the table's times and ratios (the other clock's "
                             "median ratio is printed beside)")
    parser.add_argument("--torchvision", action="store_true",
                        help="references from torchvision.models (it must be installed)")
    parser.add_argument("--inplace", action="store_true",
                        help="compile the specs with every relu()/relu6() in place")
    parser.add_argument("--steady-malloc", action="store_true",
                        help="fix glibc's mmap threshold at 32 MiB and never trim the heap, so "
                             "that a forward's page faults do not depend on what ran before it")
    parser.add_argument("--control", action="store_true",
                        help="after each row, an A/A row: the reference against a deep copy of "
                             "itself (same code, other memory), the noise floor of the ratio")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    if args.steady_malloc:
        _steady_malloc()
    other = "wall" if args.clock == "cpu" else "cpu"
    load = os.getloadavg()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU, eval, "
          f"no_grad; reference: "
          f"{'torchvision ' + _version('torchvision') if args.torchvision else 'transcribed'}; "
          f"clock: {args.clock}; load average at start {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}; {os.cpu_count()} CPUs"
          f"{'; glibc malloc thresholds fixed' if args.steady_malloc else ''}")
    print(f"| model | batch | rounds | generated ms | reference ms | ratio (median of paired) "
          f"| IQR of ratios | 95% CI of median | {other} ratio | page faults g/r |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    models = args.models.split(",") if args.models else \
        [*REFERENCES, *(TORCHVISION_ONLY if args.torchvision else ())]
    for name in models:
        net, generated, reference = pair(name, args.inplace, args.torchvision)
        rows = [(name, generated)]
        if args.control:
            rows.append((f"{name} A/A", copy.deepcopy(reference)))
        for batch in (int(b) for b in args.batches.split(",")):
            rounds = args.rounds if batch == 1 else args.rounds_large
            x = torch.randn(batch, *net.input_shape, generator=torch.Generator().manual_seed(1))
            for label, model in rows:
                check_outputs(name, model, reference, x)
                t = measure(model, reference, x, rounds, warmup=2 if batch == 1 else 1)
                s, o = summary(t, args.clock), summary(t, other)
                flt = (statistics.median(t["g_flt"]), statistics.median(t["r_flt"]))
                print(f"| {label} | {batch} | {rounds} | {s['g']:.1f} | {s['r']:.1f} | "
                      f"{s['ratio']:.3f} | {s['q1']:.3f}-{s['q3']:.3f} | "
                      f"{s['lo']:.3f}-{s['hi']:.3f} | {o['ratio']:.3f} | "
                      f"{flt[0]:.0f}/{flt[1]:.0f} |", flush=True)
    load = os.getloadavg()
    print(f"load average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def _steady_malloc() -> None:
    """glibc adapts its mmap threshold to the largest mmapped block freed so far and gives the
    heap's top back to the system beyond twice that, so whether a 25 MB activation is served
    from mapped heap or faulted in afresh (6,272 page faults at ResNet's layer1, batch 32)
    depends on the allocations before it, of either module. Fixed thresholds take that out:
    blocks under 32 MiB always come from the heap, which is never trimmed."""
    import ctypes
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3
    if not (libc.mallopt(m_mmap_threshold, 32 << 20) and libc.mallopt(m_trim_threshold,
                                                                       2 ** 31 - 1)):
        raise SystemExit("mallopt failed")


def _version(package: str) -> str:
    from importlib.metadata import version
    return version(package)


if __name__ == "__main__":
    main()
