"""Reading checkpoints with numpy alone: torch.save's zip format and safetensors.

`archgen export --weights` needs the tensors' values, not PyTorch: importing torch is most of a
small network's export. This reader gives each tensor as a `Stored`: its shape, its dtype as
PyTorch names it, and its values as a numpy array mapped from the file (nothing is read until
the values are used, and float32 values are never copied).

torch.save's zip holds `data.pkl`, a pickle that describes the tensors, and `data/<key>`, each
storage's raw bytes. The pickle is read by an unpickler that admits, like torch.load's
weights_only, only containers (dict, OrderedDict, list, tuple, set) and plain values, tensors'
rebuild functions and storage types: any other global is refused, so a checkpoint never runs
code. Tensors that do not hold real numbers (sparse, quantised, meta) are still read as far as
their shape, so that weights.check_state can refuse them with the same words as for PyTorch's
own loader.

safetensors is a little-endian u64 header length, a JSON header (name -> dtype, shape,
data_offsets) and the raw little-endian data.

Corrupt files raise CheckpointError (one line), never another exception.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import struct
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class CheckpointError(Exception):
    """A file that is not a readable checkpoint. `code_refused` marks a pickle that names a
    global outside the allowed set (the weights-only refusal)."""

    def __init__(self, message: str, *, code_refused: bool = False):
        super().__init__(message)
        self.code_refused = code_refused


class LegacyFormat(CheckpointError):
    """torch.save's format before PyTorch 1.6 (a bare pickle stream), which this reader leaves
    to torch.load."""


# PyTorch's dtype names -> numpy's dtype (None: no numpy counterpart, converted or refused)
_NUMPY = {"float32": "<f4", "float64": "<f8", "float16": "<f2", "bfloat16": None,
          "int64": "<i8", "int32": "<i4", "int16": "<i2", "int8": "i1", "uint8": "u1",
          "uint16": "<u2", "uint32": "<u4", "uint64": "<u8", "bool": "?",
          "complex64": "<c8", "complex128": "<c16", "complex32": None}
_ITEMSIZE = {"bfloat16": 2, "complex32": 4, "qint8": 1, "quint8": 1, "qint32": 4,
             "quint4x2": 1, "quint2x4": 1}
# torch's legacy typed storage classes (what torch.save names in the pickle) -> dtype name
_STORAGES = {"FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
             "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
             "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
             "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
             "ComplexDoubleStorage": "complex128", "QInt8Storage": "qint8",
             "QUInt8Storage": "quint8", "QInt32Storage": "qint32",
             "QUInt4x2Storage": "quint4x2", "QUInt2x4Storage": "quint2x4",
             "UntypedStorage": "uint8"}
_DTYPES = set(_NUMPY) | set(_ITEMSIZE) | {
    "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "cfloat", "cdouble",
    "half", "float", "double", "long", "int", "short", "bool", "uint16", "uint32", "uint64"}
_SAFETENSORS = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
                "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
                "U16": "uint16", "U32": "uint32", "U64": "uint64", "BOOL": "bool",
                "C64": "complex64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


@dataclass
class Stored:
    """One tensor of a checkpoint. `dtype` is PyTorch's name for it; `problem` says why it holds
    no real numbers (sparse, quantised, meta), in weights.check_state's words; `values()` is the
    data as a numpy array (bfloat16 and complex32 widened to float32 and complex64)."""

    shape: tuple[int, ...]
    dtype: str
    problem: str | None = None
    _array: object = None  # numpy array over the storage, or a function making it

    def values(self):
        if callable(self._array):
            self._array = self._array()
        return self._array

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * _itemsize(self.dtype)


def _itemsize(dtype: str) -> int:
    if dtype in _ITEMSIZE:
        return _ITEMSIZE[dtype]
    return np.dtype(_NUMPY[dtype]).itemsize if _NUMPY.get(dtype) else 1


def read_checkpoint(path: str | Path):
    """The object saved in `path` (a torch.save zip or a safetensors file), tensors as
    `Stored`; CheckpointError (LegacyFormat for pre-1.6 torch.save files) otherwise."""
    try:
        return _read(Path(path))
    except (CheckpointError, OSError, MemoryError):
        raise
    except RecursionError:
        raise CheckpointError("a structure nested too deeply") from None
    except Exception as e:  # noqa: BLE001 -- zipfile and json raise anything on damaged files
        raise CheckpointError(f"a damaged file ({type(e).__name__}: {_first_line(e)})"
                              ) from None


def _read(path: Path):
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError("too short to be a checkpoint")
        if head[:4] == b"PK\x03\x04":
            return _read_zip(path)
        n = struct.unpack("<Q", head)[0]
        first = f.read(1)
        if first == b"{" and 2 <= n <= 100_000_000:
            return _read_safetensors(path, f, n)
    if head[:1] == b"\x80":
        raise LegacyFormat("a bare pickle, not torch.save's zip format")
    raise CheckpointError("neither torch.save's zip format nor safetensors")


# -- mapping the file ----------------------------------------------------------------------------

def _map(path: Path):
    """The whole file, read-only and mapped (pages are read when a tensor's values are used)."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        if size == 0:
            raise CheckpointError("the file is empty")
        return np.memmap(f, dtype=np.uint8, mode="r", shape=(size,))


def _view(data, start: int, count: int, dtype: str):
    """`count` elements of `dtype` from byte `start` of the mapped file, as a numpy array."""
    size = count * _itemsize(dtype)
    if start < 0 or count < 0 or start + size > data.shape[0]:
        raise CheckpointError("a tensor's data lies beyond the end of the file")
    raw = data[start:start + size]
    if dtype == "bfloat16":  # the upper half of a float32
        out = np.zeros(count, dtype="<u4")
        out[:] = raw.view("<u2")
        out <<= 16
        return out.view("<f4")
    if dtype == "complex32":
        return raw.view("<f2").astype(np.float32).view(np.complex64)
    return raw.view(_NUMPY[dtype])


# -- torch.save's zip ------------------------------------------------------------------------------

class _Global:
    """A global the pickle may name: a storage type, a dtype, a layout, a qscheme, torch.Size."""

    def __init__(self, kind: str, name: str):
        self.kind, self.name = kind, name

    def __call__(self, *args):
        if self.kind == "size":
            return tuple(args[0]) if args else ()
        if self.kind == "layout":  # torch.serialization._get_layout("torch.sparse_coo")
            return _Global("layout", str(args[0]).removeprefix("torch."))
        raise CheckpointError(f"unexpected call of torch.{self.name}", code_refused=True)


_ALLOWED = {("collections", "OrderedDict"): OrderedDict, ("builtins", "set"): set,
            ("builtins", "frozenset"): frozenset, ("builtins", "dict"): dict,
            ("builtins", "list"): list, ("builtins", "tuple"): tuple}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storage):
        super().__init__(file, encoding="utf-8")
        self._storage = storage

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[module, name]
        if module == "torch._utils" and name in _REBUILD:
            return _REBUILD[name]
        if module == "torch" and name in _STORAGES:
            return _Global("storage", name)
        if module == "torch.storage" and name in ("UntypedStorage", "TypedStorage"):
            return _Global("storage", "UntypedStorage")
        if module == "torch" and name in _DTYPES:
            return _Global("dtype", name)
        if module == "torch" and name == "Size":
            return _Global("size", name)
        if module == "torch" and name.startswith("per_"):  # a quantisation scheme
            return _Global("qscheme", name)
        if module == "torch.serialization" and name == "_get_layout":
            return _Global("layout", name)
        if module == "torch" and name == "device":
            return str
        raise CheckpointError(f"Unsupported global: GLOBAL {module}.{name}", code_refused=True)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], _Global) and pid[1].kind in ("storage", "dtype")):
            raise CheckpointError("a storage reference that torch.save does not write")
        _, kind, key, _location, numel = pid[:5]
        dtype = _STORAGES.get(kind.name, kind.name)
        if not isinstance(numel, int) or numel < 0:
            raise CheckpointError("a storage of a negative or unknown size")
        return self._storage(str(key), dtype, numel)


@dataclass
class _Storage:
    dtype: str
    numel: int
    start: int  # byte offset in the file
    data: object  # the mapped file


def _tensor(storage, offset, size, stride, dtype: str | None = None) -> Stored:
    if not isinstance(storage, _Storage):
        raise CheckpointError("a tensor without a storage")
    size, stride = _ints(size), _ints(stride)
    if len(size) != len(stride) or not isinstance(offset, int) or offset < 0:
        raise CheckpointError("a tensor whose size, stride and offset do not fit together")
    dtype = dtype or storage.dtype
    if dtype in ("qint8", "quint8", "qint32", "quint4x2", "quint2x4"):
        return Stored(size, dtype, f"is a quantised tensor ({dtype}): export the float model "
                                   f"(dequantise it first)")
    if dtype not in _NUMPY:
        return Stored(size, dtype, None, lambda: _unreadable(dtype))
    numel_storage = storage.numel
    if dtype != storage.dtype:  # an untyped (byte) storage read as dtype
        numel_storage = storage.numel * _itemsize(storage.dtype) // _itemsize(dtype)
    count = math.prod(size)
    extent = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1 if count else 0
    if any(s < 0 for s in stride) or extent > numel_storage:
        raise CheckpointError("a tensor reaches beyond its storage")

    def values():
        flat = _view(storage.data, storage.start, numel_storage, dtype)
        if count == 0:
            return np.zeros(size, dtype=flat.dtype)
        item = flat.dtype.itemsize
        arr = np.lib.stride_tricks.as_strided(flat[offset:], size, [s * item for s in stride],
                                              writeable=False)
        return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)

    return Stored(size, dtype, None, values)


def _unreadable(dtype: str):
    raise CheckpointError(f"{dtype} values cannot be read without PyTorch")


def _ints(values) -> tuple[int, ...]:
    if not isinstance(values, (tuple, list)) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise CheckpointError("a tensor's size or stride is not a list of sizes")
    return tuple(values)


def _rebuild_v2(storage, offset, size, stride, requires_grad=False, hooks=None, *rest):
    return _tensor(storage, offset, size, stride)


def _rebuild_v3(storage, offset, size, stride, requires_grad, hooks, dtype, *rest):
    if not isinstance(dtype, _Global) or dtype.kind != "dtype":
        raise CheckpointError("a tensor without a dtype")
    return _tensor(storage, offset, size, stride, dtype.name)


def _rebuild_parameter(data, requires_grad=False, hooks=None, *rest):
    if not isinstance(data, Stored):
        raise CheckpointError("a parameter without a tensor")
    return data


def _rebuild_sparse(layout, data, *rest):
    size = next((v for v in (data if isinstance(data, tuple) else ())
                 if isinstance(v, tuple) and all(isinstance(i, int) for i in v)), None)
    name = layout.name if isinstance(layout, _Global) else "sparse"
    return Stored(_ints(size) if size is not None else (), "float32",
                  f"is a sparse tensor ({name}): save it dense (tensor.to_dense())")


def _rebuild_meta(dtype, size, stride, *rest):
    return Stored(_ints(size), getattr(dtype, "name", "float32"),
                  "is a meta tensor, which has a shape but no values: save the state_dict after "
                  "the weights are materialised")


def _rebuild_qtensor(storage, offset, size, stride, *rest):
    dtype = storage.dtype if isinstance(storage, _Storage) else "qint8"
    return Stored(_ints(size), dtype, f"is a quantised tensor ({dtype}): export the float "
                                      f"model (dequantise it first)")


_REBUILD = {"_rebuild_tensor_v2": _rebuild_v2, "_rebuild_tensor_v3": _rebuild_v3,
            "_rebuild_parameter": _rebuild_parameter,
            "_rebuild_parameter_with_state": _rebuild_parameter,
            "_rebuild_sparse_tensor": _rebuild_sparse,
            "_rebuild_meta_tensor_no_storage": _rebuild_meta,
            "_rebuild_qtensor": _rebuild_qtensor}


def _read_zip(path: Path):
    try:
        z = zipfile.ZipFile(path)
        infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error) as e:
        raise CheckpointError(f"a damaged zip file ({_first_line(e)})") from None
    with z:
        pickles = [i for i in infos if i.filename.endswith("/data.pkl") or i.filename == "data.pkl"]
        if len(pickles) != 1:
            raise CheckpointError("a zip file without torch.save's data.pkl")
        root = pickles[0].filename[:-len("data.pkl")]
        by_name = {i.filename: i for i in infos}
        order = z.read(f"{root}byteorder").decode("ascii", "replace") \
            if f"{root}byteorder" in by_name else "little"
        if order != "little":
            raise CheckpointError(f"a checkpoint saved {order}-endian, which this reader does "
                                  f"not convert")
        data = _map(path)
        storages: dict[str, _Storage] = {}

        def storage(key: str, dtype: str, numel: int) -> _Storage:
            if key in storages:
                return storages[key]
            info = by_name.get(f"{root}data/{key}")
            if info is None:
                raise CheckpointError(f"the storage data/{key} is missing")
            if info.compress_type != zipfile.ZIP_STORED:
                raise CheckpointError("a compressed storage (torch.save never compresses)")
            if numel * _itemsize(dtype) != info.file_size:
                raise CheckpointError(f"the storage data/{key} has {info.file_size} bytes, "
                                      f"not the {numel * _itemsize(dtype)} its tensors need")
            storages[key] = _Storage(dtype, numel, _data_start(data, info), data)
            return storages[key]

        try:
            blob = z.read(pickles[0])
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error) as e:
            raise CheckpointError(f"a damaged zip file ({_first_line(e)})") from None
        try:
            return _Unpickler(io.BytesIO(blob), storage).load()
        except CheckpointError:
            raise
        except RecursionError:
            raise CheckpointError("a pickle nested too deeply") from None
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 -- a corrupt pickle raises anything
            raise CheckpointError(f"a damaged pickle ({_first_line(e)})") from None


def _data_start(data, info: zipfile.ZipInfo) -> int:
    """Where a stored member's bytes begin: after its local header, whose name and extra field
    lengths may differ from the central directory's."""
    at = info.header_offset
    header = bytes(data[at:at + 30])
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise CheckpointError("a damaged zip file (bad local header)")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return at + 30 + name_len + extra_len


# -- safetensors -----------------------------------------------------------------------------------

def _read_safetensors(path: Path, f, n: int):
    f.seek(8)
    raw = f.read(n)
    if len(raw) != n:
        raise CheckpointError("a safetensors header longer than the file")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointError(f"a safetensors header that is not JSON ({_first_line(e)})"
                              ) from None
    if not isinstance(header, dict):
        raise CheckpointError("a safetensors header that is not a JSON object")
    data = _map(path)
    base = 8 + n
    out: dict = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        if not (isinstance(spec, dict) and isinstance(spec.get("dtype"), str)
                and isinstance(spec.get("shape"), list)
                and isinstance(spec.get("data_offsets"), list)
                and len(spec["data_offsets"]) == 2):
            raise CheckpointError(f"the safetensors entry {name!r} lacks dtype, shape or "
                                  f"data_offsets")
        dtype = _SAFETENSORS.get(spec["dtype"])
        if dtype is None:
            raise CheckpointError(f"the safetensors entry {name!r} has the unknown dtype "
                                  f"{spec['dtype']!r}")
        shape = _ints(spec["shape"])
        begin, end = _ints(spec["data_offsets"])
        if end < begin or end - begin != math.prod(shape) * _itemsize(dtype):
            raise CheckpointError(f"the safetensors entry {name!r} has {end - begin} bytes for "
                                  f"the shape {list(shape)} of {dtype}")
        if base + end > data.shape[0]:
            raise CheckpointError(f"the safetensors entry {name!r} lies beyond the end of the "
                                  f"file")
        if dtype not in _NUMPY:
            out[name] = Stored(shape, dtype, None, lambda dtype=dtype: _unreadable(dtype))
            continue

        def values(start=base + begin, shape=shape, dtype=dtype):
            return _view(data, start, math.prod(shape), dtype).reshape(shape)

        out[name] = Stored(shape, dtype, None, values)
    return out


def save_safetensors(path: str | Path, arrays: dict) -> None:
    """Write numpy arrays as a safetensors file (for tests and benchmarks)."""
    names = {np.dtype(v).str: k for k, v in _NUMPY.items() if v}
    codes = {v: k for k, v in _SAFETENSORS.items()}
    header, offset = {}, 0
    for key, arr in arrays.items():
        arr = np.asarray(arr)
        header[key] = {"dtype": codes[names[arr.dtype.newbyteorder("<").str]],
                       "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for arr in arrays.values():
            f.write(np.ascontiguousarray(arr, dtype=np.asarray(arr).dtype.newbyteorder("<"))
                    .tobytes())


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = lines[0] if lines else type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."
