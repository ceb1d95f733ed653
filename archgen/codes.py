"""Every diagnostic code with a short explanation and a tiny example (`archgen explain CODE`)."""

from __future__ import annotations

CODES: dict[str, tuple[str, str]] = {
    "E100": ("syntax error", """
A line could not be read as a statement. Each line holds one statement: a layer call such as
`conv2d(16, 3, padding=1)`, a header ending in ':' (`block name(args):`, `backbone:`, `add:`,
`repeat 3:`, `if cond:`), `network Name` or `input [3, 32, 32]`.

    conv2d(16 3)        # missing comma
    conv2d(16, 3)       # fixed
"""),
    "E101": ("indentation error", """
Blocks are marked by indentation, as in Python: the lines under a header ending in ':' are
indented further, and only those. Indent with spaces.

    backbone:
    conv2d(16, 3)       # not indented: the section is empty
    backbone:
        conv2d(16, 3)   # fixed
"""),
    "E200": ("unknown layer or block", """
The call names neither a layer kind nor a block defined in the file. Layer names are
PyTorch's, in lower case with underscores: conv2d, maxpool2d, batchnorm2d, linear, relu, ...

    maxpool(2)          # unknown
    maxpool2d(2)        # fixed
"""),
    "E201": ("unknown argument", """
The keyword is not an argument of that layer or block. archgen uses PyTorch's keyword names.

    conv2d(16, 3, pad=1)        # PyTorch calls it padding
    conv2d(16, 3, padding=1)
"""),
    "E202": ("undefined name", """
A bare word was used where a value is needed, but no block parameter of that name exists.
Inside a block, its parameters and in_channels / in_height / in_width (the block's input) are
defined.

    block b(out):
        conv2d(outt, 3)         # typo
"""),
    "E203": ("duplicate definition", """
A block is defined twice, or two layers of the same module carry the same name. Names become
attribute names in the generated PyTorch module, so they must be unique within it.

    conv1 = conv2d(16, 3)
    conv1 = conv2d(32, 3)       # rename to conv2
"""),
    "E204": ("invalid name", """
A network or layer name must become a safe Python identifier in generated code: no keywords
(class, import), nothing starting with '_', nothing that shadows nn.Module's own attributes
(forward, training, parameters, ...).

    forward = conv2d(16, 3)     # would shadow nn.Module.forward
    conv_in = conv2d(16, 3)
"""),
    "E205": ("recursive block", """
A block uses itself, directly or through other blocks: the expansion would never end. Stack
copies with repeat instead.

    block b(c):
        b(c)
"""),
    "E206": ("bad suppression comment", """
A `# archgen:` comment that archgen cannot use: an unknown directive, an unknown code, an
error code, or an ignore on a line of its own (it silences the line it ends). Only warnings can
be suppressed (an error means the network cannot be built), and a suppression that silently
suppressed nothing would hide a mistake. `# archgen: ignore` alone
suppresses every warning on its line; `--ignore` and `[tool.archgen] ignore = [...]` in
pyproject.toml suppress codes everywhere.

    linear(4096)  # archgen: ignore[W5O4]     # a letter O: no such code
    linear(4096)  # archgen: ignore[W504]
"""),
    "E208": ("keyword misspelt", """
A header word one slip away from a statement keyword (add, concat, branch, repeat, if, elif,
else, block, network, input) would otherwise silently become a group of that name, a plain
sequence: `concta:` would not concatenate, `ad:` would not add. Names with digits or
underscores (block1, branch_a) and plurals (blocks) are taken as meant. To use such a name on
purpose, quote it: `"ad":`.

    concta:                     # a typo: would be a sequence named concta
    concat:
"""),
    "E209": ("unknown function", """
An expression may call max() and min() of two or more numbers (as torchvision's
_make_divisible does); no other function exists in the language.

    conv2d(mx(8, c // 4), 1)    # a typo
    conv2d(max(8, c // 4), 1)
"""),
    "E210": ("a named repeat's call has a name of its own", """
`repeat N as NAME{k}` names its copies NAME{k}, NAME{k+1}, ... (the number in braces is the
first copy's), as torchvision's DenseNet names denselayer1..denselayer6 and RegNet block1-0..;
its call cannot carry another name.

    repeat 6 as denselayer{1}: layer = dense_layer(32)
    repeat 6 as denselayer{1}: dense_layer(32)
"""),
    "E211": ("`from` not at the head of a branch", """
`from NAME` makes a branch of add:, concat: or mul: start from the output of an earlier named
layer or group instead of the merge's input, so it is the first statement of such a branch
(a `branch:`, a named group in the merge, or the branch on its own line).

    c4 = conv2d(64, 3, stride=2, padding=1)
    ...
    conv2d(32, 1)
    from c4                     # not in a merge
    add:
        upsample(scale_factor=2)
        branch:
            from c4
            conv2d(32, 1)
"""),
    "E212": ("unknown name in `from` or `output`", """
`from NAME` and `output NAME` refer to a named layer, group or block instance that comes
earlier on the way to this point: in the same sequence, or in one that encloses it, of the same
body (the network, or a block's definition: a block sees only its own names). A name defined
later, inside another branch or group, or inside a block is not one.

    add:
        identity()
        from c5                 # c5 is defined below
    c5 = conv2d(128, 3, stride=2, padding=1)
"""),
    "E213": ("`output` not last", """
`output NAME, ...` lists the network's outputs (in this order; ONNX outputs carry the names).
It is the last statement of the file, at the top level.

    output p2, p3
    conv2d(8, 1)                # after the output line
"""),
    "E214": ("output listed twice or named input", """
Each name in `output NAME, ...` is one output of the network, an ONNX graph output of that
name: list each once, and none named input (the graph's input).

    output p2, p3, p2
    output p2, p3
"""),
    "E300": ("bad argument", """
An argument has the wrong type, is missing or is given twice. Positional arguments follow
PyTorch's order, with the inferred in_channels / in_features / num_features left out (E307
lists which ones may be positional).

    conv2d(16)                  # kernel_size is missing
    conv2d(16, 3)
"""),
    "E301": ("argument out of range", """
A value PyTorch refuses: a kernel or stride <= 0, negative padding, dropout p outside [0, 1],
an unknown padding mode, output_padding >= stride, flatten over the batch dimension, ...

    dropout(1.5)                # p is a probability
    dropout(0.5)
"""),
    "E302": ("arithmetic error", """
Block arguments may use integer arithmetic (+, -, *, //, %, parentheses, max(), min()).
Division by zero fails, and / must divide exactly (use // for floor division).

    conv2d(out / 3, 1)          # 64 / 3 is not whole
    conv2d(out // 3, 1)
"""),
    "E303": ("integer too large", """
Every integer a spec writes or computes must fit int64 (at most 2**63 - 1 =
9,223,372,036,854,775,807), the type PyTorch and ONNX store sizes in. Real sizes are far
smaller; a longer number is a typo, and refusing it keeps arithmetic and output bounded.

    conv2d(99999999999999999999, 3)   # 20 digits
    conv2d(64, 3)
"""),
    "E304": ("size beyond archgen's limit", """
A size argument (channels, features, kernel, stride, padding, dilation, groups, output size,
scale factor) or an input size is beyond 2**24 = 16,777,216: 64 times the widest layer of
VGG16 (25,088 features). No real CNN comes near it, and the limit keeps every later count and
receptive field finite.

    conv2d(1000000000, 1)       # a billion channels
    conv2d(1024, 1)
"""),
    "E305": ("too large or too deep to check", """
Checking is bounded, whatever the spec: expanding blocks, repeats and ifs may take at most
100,000 steps (a statement, an argument or a value computed is one step; DenseNet-121 takes
1,896) and give at most 1,000,000 layers (a layer call identical to an earlier one, as in a
repeat's copies, costs a layer but no step), and indentation, expressions (parentheses,
operators, signs) and blocks within blocks nest at most 32 deep. A repeat whose copies alone
would pass the limits is refused before anything is expanded.

    repeat 1000000000: relu()   # a billion layers
    repeat 4: relu()
"""),
    "E306": ("reads like PyTorch's signature", """
PyTorch's conv, linear and batchnorm start with the size archgen infers (in_channels,
in_features, num_features). A call that reads that way is taken so only when that is its one
possible meaning and the leading value is the inferred one: linear(4096, 10) after 4096
features, batchnorm2d(64) after 64 channels, conv2d(3, 32, kernel_size=3) on 3 channels.
It is an error when the value disagrees with the input, or when the call also reads as
archgen's own (out_channels, kernel_size, stride, ...): on 3 channels conv2d(3, 32, 3) could
be in=3, out=32, kernel 3 (PyTorch) or out=3, kernel 32, stride 3 (archgen).

    input [3, 32, 32]
    conv2d(3, 32, 3)            # ambiguous
    conv2d(32, 3)               # 32 channels out, kernel 3; in_channels is inferred
"""),
    "E307": ("keyword-only argument given positionally", """
Only the arguments that define a layer's shape may be written without their name, in
PyTorch's order; every other argument (eps, momentum, bias, dilation, groups, padding_mode,
inplace, ...) is keyword-only, so that a value can never land on another argument as
batchnorm2d(64) once landed on eps. `archgen explain LAYER` shows one layer's signature.

    relu(true)                  # inplace is keyword-only
    relu(inplace=true)
"""),
    "E400": ("channel mismatch", """
in_channels (or num_features) was given and disagrees with the channels that actually arrive.
It is inferred from the previous layer; give it only as a check.

    conv2d(16, 3)
    conv2d(32, 3, in_channels=8)    # 16 channels arrive
"""),
    "E401": ("in_features mismatch", """
in_features was given and disagrees with the features that arrive after flatten(): channels
times height times width of the last feature map.

    flatten()                       # [64, 4, 4] -> 64*4*4 = 1024
    linear(500, in_features=2048)   # should be 1024, or leave it out
"""),
    "E402": ("output size too small", """
The layer's output would have zero or negative height or width: the kernel (dilation
included) is larger than the padded input, or a pooling window does not fit.

    input [3, 4, 4]
    conv2d(8, 5)            # 4 - 5 + 1 = 0
    conv2d(8, 5, padding=same)
"""),
    "E403": ("invalid padding", """
Padding PyTorch refuses. Pooling padding may be at most half the kernel. reflect mirrors the
map without repeating the edge, so it pads at most size - 1 pixels; circular wraps around at
most once, so at most size pixels; replicate repeats the edge pixel and has no limit.

    input [3, 2, 2]
    conv2d(8, 5, padding=2, padding_mode=reflect)    # 2 >= 2: cannot mirror
    maxpool2d(2, padding=2)                          # 2 > 2 // 2
"""),
    "E404": ("groups do not divide the channels", """
Grouped convolutions split the input and output channels into `groups` equal parts, so both
counts must be divisible by groups. A depthwise convolution has groups = in_channels.

    conv2d(16, 3, groups=3)     # 16 channels in 3 groups
    conv2d(16, 3, groups=4)
"""),
    "E405": ("wrong input rank", """
A layer got an input of another rank than it takes: a layer for feature maps [C, H, W]
(conv2d, pooling, batchnorm2d, dropout2d, instancenorm2d, layernorm2d) got flat features, or
instancenorm1d/3d got a map of another rank. (linear takes any rank: it acts on the last
dimension, as nn.Linear does; see W507.)

    flatten()
    conv2d(16, 3)               # move it before flatten()
"""),
    "E406": ("add: shapes differ between branches", """
add sums its branches element by element, so every branch must give the same shape. A
shortcut that meets a strided or widened main path needs a projection.

    add:
        conv2d(64, 3, stride=2, padding=1)
        identity()              # keeps the input size: use conv2d(64, 1, stride=2)
"""),
    "E407": ("concat: spatial sizes differ between branches", """
concat joins its branches along the channels, so height and width must agree (the channel
counts may differ).

    concat:
        conv2d(16, 1)
        maxpool2d(2)            # halves the map: use maxpool2d(3, stride=1, padding=1)
"""),
    "E408": ("missing input or layers", """
A spec needs an input line (channels, height, width; the batch is implicit) and at least one
layer.

    input [3, 224, 224]
"""),
    "E409": ("merge with fewer than two branches", """
add: and concat: merge two or more branches; with one there is nothing to merge (and ONNX
refuses a one-input Sum). identity() is a branch that passes the input through.

    add:
        conv2d(64, 3, padding=1)
        identity()
"""),
    "E410": ("in-place layer on a shared input", """
The branches of add: and concat: all read the same input tensor. A layer with inplace=true at
the start of a branch (or after identity, flatten or dropout, which pass the same tensor on)
overwrites it before the other branches read it, so the network computes something else.
The same holds for a named value that a `from NAME` branch or `output` reads: no in-place
layer may read it first.

    add:
        relu(inplace=true)      # relu(x) + relu(x), not relu(x) + x
        identity()
"""),
    "E411": ("tensor too large", """
One output (or the input) would hold more than 2**32 elements per sample: 16 GiB in float32,
more than an accelerator holds for one sample. Usually a scale factor or a transposed
convolution's stride is far too large.

    input [3, 32, 32]
    upsample(scale_factor=100000)   # [3, 3200000, 3200000]
    upsample(scale_factor=2)
"""),
    "E412": ("layer too large", """
One layer would hold more than 2**32 weights (16 GiB in float32, beyond what ONNX stores in
one file and what any accelerator holds). Usually a channel or feature count is a typo.

    conv2d(100000, 1)
    conv2d(100000, 1)           # 10,000,000,000 weights
"""),
    "E413": ("no input size is valid", """
The input's sizes are symbols (`input [3, H, W]`) and no size of them satisfies every layer:
the error points at the layer or merge after which no size is left, and says which sizes the
layers before it accept.

    input [3, H, W]
    add:
        conv2d(8, 1)            # gives H
        conv2d(8, 2, stride=2)  # gives H // 2: equal only at H = 0
"""),
    "E414": ("sizes not analysable symbolically", """
A rule would decide on a symbolic input size other than by a requirement that archgen can
state as valid sizes: a layer argument computed from in_height, an `if` on a size, a
scale factor that is no simple fraction, or requirements that tie H and W together in a way
that is not "H in one set and W in another". Give concrete sizes (`--input 3,224,224`).

    input [3, H, W]
    block up():
        upsample(size=(in_height * 2, in_width * 2))
    up()
"""),
    "E415": ("a target needs a number that depends on the input size", """
The spec checks with symbolic sizes (`input [3, H, W]`), but compile, export and parity build
real layers, and one of them would need an argument that is an expression of the sizes: a
linear after flatten would have H * W * C inputs. `check` and `summary` accept the spec and
report such counts as expressions; the targets refuse it. Give concrete sizes with `--input`,
or pool to a fixed size before flatten.

    input [3, H, W]
    conv2d(8, 3)
    flatten()
    linear(10)          # in_features would be 8 * (H - 2) * (W - 2)
"""),
    "E416": ("mul: shapes do not broadcast", """
`mul:` multiplies its branches elementwise with PyTorch's broadcasting: in each dimension the
sizes are equal or one of them is 1 ([C, 1, 1] gates [C, H, W], as squeeze-excitation does).
The ranks must agree, since the batch dimension leads every tensor. The error points at the
first branch that does not broadcast with those before it.

    mul:
        identity()                      # [64, 28, 28]
        branch:
            adaptive_avgpool2d(1)
            flatten()                   # [64]: rank 1
            linear(64)
    mul:
        identity()
        branch:
            adaptive_avgpool2d(1)       # [64, 1, 1]
            conv2d(64, 1)
            sigmoid()
"""),
    "E426": ("padding=same with a stride outside conv2d", """
PyTorch pads `padding="same"` only for unstrided convolutions; nn.Conv1d and nn.Conv3d refuse
it with a stride, and so does archgen. (For conv2d archgen writes a Conv2dSame helper that
pads as TensorFlow's and ONNX's SAME_UPPER do.) Give the padding as a number instead.

    conv1d(32, 5, stride=2, padding=same)
    conv1d(32, 5, stride=2, padding=2)
"""),
    "E427": ("upsample's mode or sizes do not fit the input's rank", """
nn.Upsample interpolates [C, L] with mode=linear, [C, H, W] with bilinear and [C, D, H, W]
with trilinear (nearest fits every rank); PyTorch refuses the others. `size` and
`scale_factor` give one value for every spatial axis, or one per axis.

    input [1, 8000]
    upsample(scale_factor=2, mode=bilinear)
    upsample(scale_factor=2, mode=linear)
"""),
    "E428": ("avgpool3d: input smaller than the window", """
PyTorch's avg_pool3d checks that every axis of its input, before padding, is at least as
long as the kernel (avgpool1d and avgpool2d do not): a [C, 4, 1, 4] volume cannot take
avgpool3d(2) even with padding=1.

    adaptive_avgpool3d((4, 1, 4))
    avgpool3d(2)
    avgpool3d((2, 1, 2))
"""),
    "E430": ("normalized_shape does not match the input", """
layernorm(normalized_shape) normalises each sample over its LAST len(normalized_shape)
dimensions, which must have exactly those sizes; the batch is never among them. To normalise
over the channels of a [C, H, W] map use layernorm2d(), or permute the channels last first.

    conv2d(96, 4, stride=4)     # [96, 14, 14]
    layernorm(96)               # the last dim is 14
    permute(1, 2, 0)            # fixed: [14, 14, 96]
    layernorm(96)
"""),
    "E431": ("groupnorm's groups do not divide the channels", """
groupnorm(num_groups) normalises groups of channels of equal size, so num_groups must divide
the channel count (PyTorch: "num_channels must be divisible by num_groups").

    conv2d(48, 3)
    groupnorm(5)                # 48 channels do not split into 5 groups
    groupnorm(6)                # fixed
"""),
    "E432": ("instance norm over one element", """
Without running statistics an instance norm normalises each channel of each sample with its
own mean and variance, in eval mode too; over a single value (a 1x1 map, a length-1
sequence) PyTorch refuses it ("Expected more than 1 spatial element when training").

    adaptive_avgpool2d(1)
    instancenorm2d()            # one value per channel
"""),
    "E433": ("dims are not a permutation", """
permute(dims...) lists every dimension of the input once, WITHOUT the batch dimension:
permute(1, 2, 0) turns [C, H, W] into [H, W, C] (x.permute(0, 2, 3, 1) in PyTorch). Negative
dims count from the end.

    permute(0, 2, 3, 1)         # PyTorch's dims, batch included
    permute(1, 2, 0)            # fixed
"""),
    "E438": ("channel_shuffle: groups do not divide the channels", """
channel_shuffle(groups) splits the C channels into `groups` groups of C / groups and
interleaves them (ShuffleNet), so groups must divide the channel count, as PyTorch requires.

    conv2d(24, 3)
    channel_shuffle(5)          # 24 channels in 5 groups
    channel_shuffle(4)
"""),
    "E439": ("channel_slice beyond the input's channels", """
channel_slice(start, stop) is x[:, start:stop]: channels start..stop-1 of its input. stop may
be at most the input's channel count (Python would silently clip the slice). In a block,
in_channels is the input's count: channel_slice(in_channels // 2, in_channels).

    conv2d(16, 3)
    channel_slice(8, 24)        # only 16 channels
    channel_slice(8, 16)
"""),
    "E440": ("prelu: num_parameters is neither 1 nor the channel count", """
prelu learns one negative slope shared by every channel (num_parameters=1, the default) or
one per input channel (num_parameters = channels); PyTorch refuses any other count.

    conv2d(16, 3)
    prelu(8)                    # 16 channels
    prelu(16)
"""),
    "W500": ("stride drops pixels", """
Some input rows or columns are never read by any window of a conv or pooling layer: the
stride does not fit the padded input (the last rows are dropped), or the window is narrower
than the stride, or dilated so that the stride never shifts it onto the pixels it skips
(rows between windows are skipped). Exactly the pixels no window reads are counted. A 1x1
window that strides (a ResNet's projection shortcut) subsamples by design and is not
flagged. Pad, choose a size divisible by the stride, use ceil_mode=true (pooling) or
padding=same (conv), and keep the stride no larger than the kernel.

    input [3, 7, 7]
    maxpool2d(2)                # the last row and column are ignored
    maxpool2d(2, stride=3)      # on 28: rows 2, 5, 8, ... are skipped
"""),
    "W501": ("kernel covers the whole map", """
The kernel is as large as the (padded) input, so the layer has one output position: a global
pooling or a linear layer says this more directly. For adaptive pooling: the output is larger
than the input, so pixels are repeated.
"""),
    "W502": ("very high dropout", """
dropout's p is the probability of zeroing an activation (stochastic_depth's, of dropping a
residual branch). p >= 0.9 drops almost everything; did you mean the keep probability 1 - p?

    dropout(0.9)
"""),
    "W503": ("map collapsed to 1x1 early", """
A layer with a spatial kernel (wider than 1x1) receives a 1x1 map: it only sees one pixel
plus padding. Shrink less before it. A map pooled to 1x1 and restored (upsample) is fine, and
so is a squeeze-excitation branch: its 1x1 convs on the pooled map have no spatial kernel.
"""),
    "W504": ("one linear layer holds most parameters", """
A single linear layer holds more than half of the network's parameters, typically because it
flattens a large feature map. Pool more first (adaptive_avgpool2d(1) before flatten()).

    flatten()                   # [512, 7, 7] -> 25,088 features
    linear(4096)                # 102,764,544 parameters
"""),
    "W505": ("batch statistics on a 1x1 map", """
batchnorm2d(track_running_stats=false) normalises with the statistics of the batch itself, in
eval mode too. On a 1x1 map a batch of one sample has a single value per channel, and PyTorch
refuses it ("Expected more than 1 value per channel").

    adaptive_avgpool2d(1)
    batchnorm2d(track_running_stats=false)
"""),
    "W506": ("instance norm over one element in training", """
With track_running_stats=true an instance norm on a single value per channel (a 1x1 map)
runs in eval mode, with the running statistics, but PyTorch refuses it in training mode
("Expected more than 1 spatial element when training"): the network cannot be trained as
written.

    adaptive_avgpool2d(1)
    instancenorm2d(track_running_stats=true)
"""),
    "W507": ("linear on a last dimension of size 1", """
linear acts on the last dimension of its input, as nn.Linear does: on a map [C, 1, 1] (after
a global pool) it mixes a single value and leaves [C, 1, out_features], which is almost
always a missing flatten(). On a map permuted channels last (ConvNeXt) the last dimension is
the channels, as meant.

    adaptive_avgpool2d(1)
    linear(10)                  # [C, 1, 10]: add flatten() before it
"""),
    "W508": ("channel_shuffle that moves no channel", """
channel_shuffle(groups) interleaves `groups` groups of C / groups channels; with groups=1 or
groups = C the order does not change, so the layer does nothing. ShuffleNet shuffles the
concatenation of its two branches with groups=2.

    conv2d(16, 3)
    channel_shuffle(1)
"""),
    "W509": ("channel_slice that keeps every channel", """
channel_slice(0, C) on an input of C channels returns the whole input: the layer does nothing.
Split the channels (ShuffleNetV2: channel_slice(0, in_channels // 2) beside
channel_slice(in_channels // 2, in_channels)) or remove it.

    conv2d(16, 3)
    channel_slice(0, 16)
"""),
    "W510": ("in-place layer overwrites what backward reads", """
relu, sigmoid, tanh, softmax and log_softmax keep their output for their gradient (relu with
inplace=true keeps its result, the storage it overwrote). A later layer with inplace=true that
overwrites that tensor (directly, or through a view, dropout or identity) leaves inference
right, but training's backward raises "one of the variables needed for gradient computation
has been modified by an inplace operation". Drop inplace=true on the second layer; in place is
safe after a conv, a batch norm or a linear layer, which keep their input instead.

    conv2d(16, 3)
    relu(inplace=true)
    relu6(inplace=true)         # overwrites relu's result
"""),
}


def explain(code: str) -> str | None:
    """A code's explanation, or a layer kind's signature (`archgen explain conv2d`)."""
    entry = CODES.get(code.upper())
    if entry is None:
        return explain_layer(code)
    title, text = entry
    kind = "warning" if code.upper().startswith("W") else "error"
    if code.upper() == "E307":
        text = (text.rstrip() + "\n\nThe positional arguments of each layer:\n\n" +
                "\n".join("    " + line for line in positional_table().splitlines()))
    return f"{code.upper()} ({kind}): {title}\n{text.rstrip()}\n"


def explain_layer(name: str) -> str | None:
    """One layer kind: its signature, which arguments may be positional, PyTorch's class."""
    from .layers import REGISTRY  # light: the kinds import nothing heavy
    kind = REGISTRY.get(name)
    if kind is None:
        return None
    inferred = kind.inferred
    positional = ", ".join(kind.positional_args) or "none"
    keyword = ", ".join(p.name for p in kind.keyword_only) or "none"
    lines = [f"{kind.name}: {kind.doc} ({kind.torch_class})", "",
             f"    {kind.signature()}", "",
             f"positional (they define the shape): {positional}",
             f"keyword-only: {keyword}"]
    if inferred:
        lines.append(f"inferred from the input: {inferred.name} (leave it out; a leading value "
                     f"equal to it is accepted as PyTorch writes it, see E306)")
    lines.append(f"example: {kind.example}")
    return "\n".join(lines) + "\n"


def positional_table() -> str:
    """Every layer kind and the arguments it takes positionally (README, explain E307)."""
    from .layers import REGISTRY
    return "\n".join(f"{k.name}({', '.join(k.positional_args)})"
                     for k in sorted(REGISTRY.values(), key=lambda k: k.name))

