"""`Helper`: a fixed class the generated PyTorch file may need (Conv2dSame, a kind's own
module such as LayerNorm2d). A kind declares the ones its lowering may call in its class
attribute `torch_helpers`, so this lives apart from the lowering vocabulary (torch_calls) and
is light to import: importing the layer kinds, as `archgen check` does, imports neither
torch_calls nor onnx_graph (kinds import those inside lower_torch/lower_onnx)."""

from __future__ import annotations

from .record import record


@record
class Helper:
    """Its template in templates/torch/, and the imports, base class and calls its code uses
    (emit_torch's allow-lists for the generated file)."""

    template: str
    imports: tuple[str, ...]
    base: str
    calls: tuple[str, ...]
