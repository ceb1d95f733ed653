"""Did-you-mean for names that are not archgen's: PyTorch's class names (Conv2d, BatchNorm2d)
and Keras's layers and arguments (Dense, Conv2D, filters=, units=), in one table each.

archgen's words are PyTorch's functional spellings in lower case; a Keras or PyTorch-class
word gets the exact archgen word, or the way to say the same thing, rather than the nearest
spelling (`activation=` is closest to `dilation`).
"""

from __future__ import annotations

from .diagnostics import did_you_mean

# Keras layer -> how archgen says it. Keys are compared in lower case without underscores.
KERAS_LAYERS = {
    "Dense": "linear(out_features), e.g. linear(10)",
    "Conv2D": "conv2d(out_channels, kernel_size), e.g. conv2d(32, 3)",
    "Convolution2D": "conv2d(out_channels, kernel_size), e.g. conv2d(32, 3)",
    "Conv2DTranspose": "conv_transpose2d(out_channels, kernel_size, stride)",
    "DepthwiseConv2D": "conv2d(in_channels, kernel_size, groups=in_channels) inside a block",
    "MaxPooling2D": "maxpool2d(kernel_size), e.g. maxpool2d(2)",
    "MaxPool2D": "maxpool2d(kernel_size), e.g. maxpool2d(2)",
    "AveragePooling2D": "avgpool2d(kernel_size), e.g. avgpool2d(2)",
    "AvgPool2D": "avgpool2d(kernel_size), e.g. avgpool2d(2)",
    "GlobalAveragePooling2D": "adaptive_avgpool2d(1) followed by flatten()",
    "GlobalAvgPool2D": "adaptive_avgpool2d(1) followed by flatten()",
    "GlobalMaxPooling2D": "adaptive_maxpool2d(1) followed by flatten()",
    "GlobalMaxPool2D": "adaptive_maxpool2d(1) followed by flatten()",
    "BatchNormalization": "batchnorm2d() (its channels are inferred)",
    "Flatten": "flatten()",
    "Dropout": "dropout(p), e.g. dropout(0.5)",
    "SpatialDropout2D": "dropout2d(p)",
    "Activation": "the activation as its own layer, e.g. relu()",
    "ReLU": "relu()",
    "LeakyReLU": "leaky_relu(negative_slope)",
    "ELU": "elu()",
    "Softmax": "softmax(dim=1)",
    "UpSampling2D": "upsample(scale_factor=2)",
    "ZeroPadding2D": "pad2d(padding)",
    "Add": "an add: group with one branch per input",
    "Concatenate": "a concat: group with one branch per input",
    "InputLayer": "the input line: input [3, 32, 32]",
    "Input": "the input line: input [3, 32, 32]",
}

# Keras argument -> archgen argument (or advice). `None` target: advice only.
KERAS_ARGS = {
    "filters": "out_channels",
    "units": "out_features",
    "rate": "p",
    "pool_size": "kernel_size",
    "strides": "stride",
    "dilation_rate": "dilation",
    "use_bias": "bias",
    "epsilon": "eps",
    "axis": "dim",
    "alpha": "negative_slope",
    "size": "scale_factor",
    "interpolation": "mode",
}
KERAS_ADVICE = {
    "activation": "add the activation as its own layer after this one, e.g. relu()",
    "input_shape": "give the input size once, on the input line: input [3, 32, 32] "
                   "(channels first)",
    "data_format": "archgen is always channels first: [C, H, W]",
    "kernel_initializer": "archgen checks shapes; initialise weights in PyTorch",
    "kernel_regularizer": "add weight decay to the optimiser in PyTorch",
    "name": "name a layer by assignment: conv1 = conv2d(64, 3)",
}


def _key(word: str) -> str:
    return word.lower().replace("_", "")


_LAYER_KEYS = {_key(k): (k, v) for k, v in KERAS_LAYERS.items()}


def layer_hint(name: str, known) -> str | None:
    """Help for an unknown layer or block name: Keras's words get archgen's, other names
    the closest known one (case and underscores ignored: Relu -> relu, MaxPool2d ->
    maxpool2d)."""
    known = list(known)
    if _key(name) in _LAYER_KEYS and _key(name) not in {_key(k) for k in known}:
        keras, text = _LAYER_KEYS[_key(name)]
        return f"{keras} is Keras's name; archgen writes {text}"
    return did_you_mean(name, known) or did_you_mean(
        _key(name), {_key(k): k for k in known})


def argument_hint(name: str, allowed) -> str | None:
    """Help for an unknown keyword argument: Keras's names get the PyTorch name archgen uses
    (filters= -> out_channels=), where the layer has it; activation= and the like get
    advice."""
    allowed = list(allowed)
    if name in KERAS_ADVICE:
        return f"{name}= is Keras's; {KERAS_ADVICE[name]}"
    target = KERAS_ARGS.get(name)
    if target in allowed:
        return f"{name}= is Keras's; archgen uses PyTorch's name: {target}="
    return did_you_mean(name, allowed)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance with adjacent transpositions (optimal string alignment).

    >>> edit_distance("concta", "concat"), edit_distance("ad", "add"), edit_distance("if", "fi")
    (1, 1, 1)
    """
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def keyword_typo(word: str, keywords) -> str | None:
    """The statement keyword a group name or header word is most likely a misspelling of:
    one edit away (two for keywords of six letters or more, with the first two letters
    right), or the keyword in other case (Add). Names with digits or underscores (block1,
    branch_a) and plurals (blocks, inputs) are taken as meant.

    >>> keyword_typo("brnach", {"branch", "block"}), keyword_typo("block1", {"block"})
    ('branch', None)
    """
    if len(word) < 2 or not word.isalpha() or word in keywords:
        return None
    low = word.lower()
    best = None
    for k in sorted(keywords):
        if low in (k, k + "s", k + "es"):
            if low == k:
                return k
            continue
        limit = 2 if len(k) >= 6 and low[:2] == k[:2] else 1
        if abs(len(low) - len(k)) > limit:  # the distance is at least that: skip the table
            continue
        d = edit_distance(low, k)
        if d <= limit and (best is None or d < best[0]):
            best = (d, k)
    return best[1] if best else None
