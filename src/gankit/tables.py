"""Layer tables in the report's format: those of torchsummary 1.5.1, by its own rule.

The report's tables are torchsummary 1.5.1 output, and :func:`layer_table` computes the
same table by the same rule, so the two never disagree (``tests/test_summary.py``
compares them byte for byte on the presets and row for row on other models):

* **Which modules are rows.** Every module that is not an :class:`torch.nn.Sequential`,
  not an :class:`torch.nn.ModuleList` and not the model itself is hooked, visited as
  :meth:`torch.nn.Module.apply` visits them (a module held by two parents is hooked
  twice). So a custom container written as a plain ``nn.Module`` is a row of its own;
  gankit's blocks derive from :class:`~gankit.blocks.LayerContainer` (an
  ``nn.Sequential``) to stay out of the table.
* **One row per call**, numbered when the call's forward has finished. A module called
  twice gives two rows. A parametrized weight (e.g. spectral norm) is computed by a
  module call each time it is read, so the parametrization itself gives a row each time:
  one while the layer runs (before the layer's row) and one per read of the layer's
  ``weight`` when its row is filled in (after it).
* **Output shape** with the batch as -1; a list or tuple of outputs is shown as a list of
  shapes, each with its batch as -1 (``[[-1, 4], [-1, 2]]``).
* **Parameters**: only the layer's own ``weight`` and ``bias``, each when it has a
  ``size`` (other parameters, such as a parametrization's ``original``, are not counted).
  A row is trainable when its ``weight`` requires gradients; a row without a weight is
  never trainable, even with a bias.
* **Sizes** (float32, 4 bytes a number, MB = 2^20 bytes): input = prod(input_size) x 4;
  forward/backward pass = 2 x the absolute value of the sum, over rows, of the product of
  each row's shape entries, the -1s included, x 4 (the x2 counts gradients; a row with two
  output shapes has two -1s, so its product is positive while the others are negative);
  params = total params x 4; the total adds params, forward/backward and input in that
  order, as torchsummary does.

Where torchsummary stops with an error (a model without any weight or bias, a list of
outputs whose shapes differ in length) the table is still built; a module whose output
is neither a tensor nor a list or tuple of tensors raises ``TypeError`` in both.

Unlike torchsummary, the model is neither changed nor trained and torch's RNG is left
alone: the pass runs on a deep copy in eval mode under ``torch.no_grad``, on a batch of
two zeros (torchsummary runs the model itself in its current mode, usually train, on
``torch.rand`` inputs, and so updates batch-norm statistics and spectral-norm vectors and
draws from the global generator). Eval mode changes no row for gankit's networks, the
presets included: their forward calls the same modules in both modes (dropout and batch
norm change values, not shapes), and the tests compare against torchsummary's train-mode
pass. Only a model whose forward calls different modules depending on ``self.training``
would get different rows. The ``weight`` reads that decide "trainable" run with gradients
enabled, as in torchsummary's pass, so a parametrized weight reports its parameter's
``requires_grad``.
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
_MB = 1024**2.0

Shape = tuple[int, ...]


@dataclass(frozen=True)
class LayerRow:
    """One row of a layer table.

    Args:
        name: layer type and row number, e.g. ``"Conv2d-1"``.
        output_shape: output shape with the batch as -1; for a layer that returns a list
            or tuple of tensors, a tuple of such shapes.
        params: the number of entries of the layer's ``weight`` and ``bias``.
        trainable: whether the layer has a ``weight`` that requires gradients.
    """

    name: str
    output_shape: Shape | tuple[Shape, ...]
    params: int
    trainable: bool

    @property
    def shape_entries(self) -> int:
        """Product of every entry of :attr:`output_shape`, -1s included (torchsummary's)."""
        shape = self.output_shape
        if shape and isinstance(shape[0], tuple):
            return math.prod(x for s in shape for x in s)
        return math.prod(shape)


def _format_shape(shape: Shape | tuple[Shape, ...]) -> str:
    # The text of the same shape held as a Python list: "[-1, 8192]", "[[-1, 4], [-1, 2]]".
    return "[" + ", ".join(_format_shape(x) if isinstance(x, tuple) else str(x) for x in shape) + "]"


@dataclass(frozen=True)
class LayerTable:
    """A model's layer table; ``str(table)`` prints it in the report's format.

    ``print(table)`` writes exactly what ``torchsummary.summary`` prints for the model.

    Args:
        rows: the layer rows.
        input_size: input shape without the batch.
    """

    rows: tuple[LayerRow, ...]
    input_size: tuple[int, ...]

    @property
    def total_params(self) -> int:
        """Sum of the rows' parameter counts (a layer called twice counts twice)."""
        return sum(r.params for r in self.rows)

    @property
    def trainable_params(self) -> int:
        """Parameter counts of the rows whose weight requires gradients."""
        return sum(r.params for r in self.rows if r.trainable)

    @property
    def input_mb(self) -> float:
        """Input size in MB (float32, batch of one)."""
        return abs(math.prod(self.input_size) * -1 * 4.0 / _MB)

    @property
    def forward_backward_mb(self) -> float:
        """Twice the rows' output sizes in MB (activations and their gradients)."""
        return abs(2.0 * sum(r.shape_entries for r in self.rows) * 4.0 / _MB)

    @property
    def params_mb(self) -> float:
        """Parameter size in MB (float32)."""
        return abs(self.total_params * 4.0 / _MB)

    @property
    def total_mb(self) -> float:
        """Params, forward/backward and input sizes added in torchsummary's order."""
        return self.params_mb + self.forward_backward_mb + self.input_mb

    def __str__(self) -> str:
        lines = [_RULE, f"{'Layer (type)':>20}  {'Output Shape':>25} {'Param #':>15}", _DOUBLE]
        for r in self.rows:
            lines.append(f"{r.name:>20}  {_format_shape(r.output_shape):>25} {r.params:>15,}")
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


def _type_name(module: nn.Module) -> str:
    # torchsummary takes the text after the last dot of str(type(module)), i.e. the last
    # part of the qualified name ("ParametrizedConv2d" for a parametrized Conv2d).
    return type(module).__qualname__.rpartition(".")[2]


def _output_shape(module: nn.Module, output) -> Shape | tuple[Shape, ...]:
    def one(t) -> Shape:
        if not isinstance(t, torch.Tensor):
            raise TypeError(
                f"{_type_name(module)} returned {type(t).__name__}; a layer table needs "
                "each module to return a tensor or a list or tuple of tensors."
            )
        return (-1, *tuple(t.shape)[1:])

    if isinstance(output, (list, tuple)):
        return tuple(one(t) for t in output)
    return one(output)


def _weight_and_bias(module: nn.Module) -> tuple[int, bool]:
    # Read ``weight`` and ``bias`` exactly as often as torchsummary does (four reads and
    # three): a parametrized attribute runs its parametrization, a module call, on every
    # read, and each of those calls is a row of its own. Gradients are on for the reads,
    # as in torchsummary's pass, so a computed weight carries its parameter's flag.
    params, trainable = 0, False
    with torch.enable_grad():
        if hasattr(module, "weight") and hasattr(module.weight, "size"):
            params += math.prod(module.weight.size())
            trainable = bool(module.weight.requires_grad)
        if hasattr(module, "bias") and hasattr(module.bias, "size"):
            params += math.prod(module.bias.size())
    return params, trainable


def _probe_labels(model: nn.Module, device) -> dict:
    """``labels=`` (class 0) for a network that takes labels (a class-conditional one)."""
    if int(getattr(model, "num_classes", 0) or 0) and (getattr(model, "takes_labels", True)):
        return {"labels": torch.zeros(2, dtype=torch.long, device=device)}
    return {}


def layer_table(model: nn.Module, input_size: Sequence[int]) -> LayerTable:
    """Build a model's layer table by running one forward pass on a batch of two zeros.

    The rows are those torchsummary 1.5.1 prints (see the module docstring for the
    rule); the pass runs on a deep copy in eval mode under ``torch.no_grad``, so the model
    and torch's RNG are left as they were.

    Args:
        model: the network.
        input_size: the input shape without the batch, e.g. ``(100,)`` or ``(3, 64, 64)``.

    Returns:
        The :class:`LayerTable`.

    Raises:
        TypeError: when a hooked module returns something other than a tensor or a list
            or tuple of tensors.

    Example:
        >>> table = layer_table(nn.Sequential(nn.Linear(4, 2), nn.ReLU()), (4,))
        >>> [r.name for r in table.rows], table.total_params
        (['Linear-1', 'ReLU-2'], 10)
    """
    probe = copy.deepcopy(model).eval()
    rows: list[LayerRow | None] = []

    def hook(module: nn.Module, _inputs, output) -> None:
        # The row's number is taken before the weight reads, whose own rows follow it.
        index = len(rows)
        rows.append(None)
        name, shape = f"{_type_name(module)}-{index + 1}", _output_shape(module, output)
        rows[index] = LayerRow(name, shape, *_weight_and_bias(module))

    handles = []

    def register(module: nn.Module) -> None:
        if not isinstance(module, (nn.Sequential, nn.ModuleList)) and module is not probe:
            handles.append(module.register_forward_hook(hook))

    try:
        probe.apply(register)
        param = next(probe.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            probe(torch.zeros(2, *input_size, device=device), **_probe_labels(probe, device))
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
