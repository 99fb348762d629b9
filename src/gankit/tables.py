"""Layer tables in the report's format (that of torchsummary 1.5.1).

One row per call of a layer during one forward pass, numbered in the order the calls
finish, with its output shape (batch shown as -1) and its parameter count; then the
totals and the size estimates in MB. The model is neither changed nor trained: the pass
runs on a copy in eval mode under ``torch.no_grad``, and torch's RNG is left alone.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["LayerRow", "LayerTable", "layer_table", "summary"]

_RULE = "-" * 64
_DOUBLE = "=" * 64


@dataclass(frozen=True)
class LayerRow:
    """One row of a layer table.

    Args:
        name: layer type and call index, e.g. ``"Conv2d-1"``.
        output_shape: output shape with the batch as -1.
        params: parameter count of the layer.
        trainable: whether its parameters require gradients.
    """

    name: str
    output_shape: tuple[int, ...]
    params: int
    trainable: bool


@dataclass(frozen=True)
class LayerTable:
    """A model's layer table; ``str(table)`` prints it in the report's format.

    Args:
        rows: the layer rows.
        input_size: input shape without the batch.
    """

    rows: tuple[LayerRow, ...]
    input_size: tuple[int, ...]

    @property
    def total_params(self) -> int:
        """Sum of the rows' parameter counts."""
        return sum(r.params for r in self.rows)

    @property
    def trainable_params(self) -> int:
        """Parameters of the rows whose parameters require gradients."""
        return sum(r.params for r in self.rows if r.trainable)

    @property
    def input_mb(self) -> float:
        """Input size in MB (float32, batch of one)."""
        return abs(math.prod(self.input_size) * 4.0 / 2**20)

    @property
    def forward_backward_mb(self) -> float:
        """Twice the sum of every row's output size in MB (activations and their gradients)."""
        return abs(2.0 * sum(math.prod(r.output_shape) for r in self.rows) * 4.0 / 2**20)

    @property
    def params_mb(self) -> float:
        """Parameter size in MB (float32)."""
        return abs(self.total_params * 4.0 / 2**20)

    @property
    def total_mb(self) -> float:
        """Sum of the three sizes above."""
        return self.input_mb + self.forward_backward_mb + self.params_mb

    def __str__(self) -> str:
        lines = [_RULE, f"{'Layer (type)':>20}  {'Output Shape':>25} {'Param #':>15}", _DOUBLE]
        for r in self.rows:
            shape = "[" + ", ".join(str(x) for x in r.output_shape) + "]"
            lines.append(f"{r.name:>20}  {shape:>25} {r.params:>15,}")
        lines += [
            _DOUBLE,
            f"Total params: {self.total_params:,}",
            f"Trainable params: {self.trainable_params:,}",
            f"Non-trainable params: {self.total_params - self.trainable_params:,}",
            _RULE,
            f"Input size (MB): {self.input_mb:0.2f}",
            f"Forward/backward pass size (MB): {self.forward_backward_mb:0.2f}",
            f"Params size (MB): {self.params_mb:0.2f}",
            f"Estimated Total Size (MB): {self.total_mb:0.2f}",
            _RULE,
        ]
        return "\n".join(lines)


def _is_row(module: nn.Module) -> bool:
    # A layer is a module without children; a parametrized layer (e.g. spectral norm)
    # holds only its ``parametrizations`` container and still counts as one layer.
    # Containers are never rows, even when empty (as in torchsummary).
    if isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
        return False
    names = [n for n, _ in module.named_children()]
    return not names or names == ["parametrizations"]


def layer_table(model: nn.Module, input_size: Sequence[int]) -> LayerTable:
    """Build a model's layer table by running one forward pass on a batch of two zeros.

    Args:
        model: the network.
        input_size: the input shape without the batch, e.g. ``(100,)`` or ``(3, 64, 64)``.

    Returns:
        The :class:`LayerTable`.

    Example:
        >>> table = layer_table(nn.Sequential(nn.Linear(4, 2), nn.ReLU()), (4,))
        >>> table.total_params
        10
    """
    probe = copy.deepcopy(model).eval()
    rows: list[LayerRow] = []

    def hook(module: nn.Module, _inputs, output) -> None:
        cls = type(module).__name__
        params = list(module.parameters())
        rows.append(
            LayerRow(
                f"{cls}-{len(rows) + 1}",
                (-1, *tuple(output.shape)[1:]),
                sum(p.numel() for p in params),
                any(p.requires_grad for p in params),
            )
        )

    handles = [m.register_forward_hook(hook) for m in probe.modules() if _is_row(m) and m is not probe]
    try:
        param = next(probe.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            probe(torch.zeros(2, *input_size, device=device))
    finally:
        for h in handles:
            h.remove()
    return LayerTable(tuple(rows), tuple(int(x) for x in input_size))


def summary(model: nn.Module, input_size: Sequence[int], *, print_fn=print) -> LayerTable:
    """Print a model's layer table in the report's (torchsummary) format and return it.

    Args:
        model: the network.
        input_size: the input shape without the batch, e.g. ``(3, 64, 64)``.
        print_fn: where the text goes (``print`` by default; pass ``None`` to stay silent).

    Returns:
        The :class:`LayerTable` (``str(table)`` is the printed text).

    Example:
        >>> from gankit.presets import dcgan_task1
        >>> table = summary(dcgan_task1().discriminator, (3, 64, 64), print_fn=None)
        >>> table.total_params
        4316545
    """
    table = layer_table(model, input_size)
    if print_fn is not None:
        print_fn(str(table))
    return table
