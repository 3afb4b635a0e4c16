"""The building blocks of the LeNets (LeCun, Bottou, Bengio & Haffner 1998; LeCun et al. 1989).

[1998] Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-based learning applied to document
       recognition", Proc. IEEE 86(11), 1998: Section II.B (LeNet-5's layers), Appendix A
       (squashing function, initialisation).
[1989] Y. LeCun et al., "Backpropagation applied to handwritten zip code recognition",
       Neural Computation 1(4), 1989 (one bias per unit, padding with the background).

- the activations a LeNet accepts (``ACTIVATIONS``, from the table in ``models/activations.py``,
  where the squashing function f(a) = 1.7159 tanh(2a/3) [1998, II.B eq. (6), App. A] is
  ``scaled_tanh``) and their squared derivatives (:func:`_act`, :func:`_act_prime_sq`);
- LeCun's uniform initialisation +-2.4/F_i [1998, App. A] (``INITS``);
- :class:`TableConv2d`, a convolution through a connection table ([1998] Table I for C3);
- :class:`Subsample`, the trainable 2x2 subsampling of [1998, II.B];
- :class:`Dense`, a fully connected layer; :class:`EuclideanRBF`, the output layer of
  [1998, II.B, eq. (7)] with its fixed 7x12 digit bitmaps (``DIGIT_BITMAPS``);
- :class:`Stage`, one linear operation followed by an activation;
- :func:`pad_to`, the padding of a smaller input up to the network's input field.

The networks built from them, with their connection tables, are in ``models/lenet.py``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .activations import SQUASH_A, SQUASH_S, activation as make_activation
from .checks import check_choice, check_positive_int, is_int
from .errors import ConfigError

# --------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------

# [1998] II.B eq. (6), Appendix A: the squashing f(a) = A tanh(S a), SQUASH_A = 1.7159, SQUASH_S = 2/3, is
# the activation "scaled_tanh" of the table every model shares (models/activations.py).

# [1998] II.B: input pixels scaled so the background (white) is -0.1 and the foreground
# (black) 1.175, making the mean roughly 0 and the variance roughly 1.
LECUN_BACKGROUND = -0.1
LECUN_FOREGROUND = 1.175

# [1998] Appendix A: weights drawn uniformly in (-2.4/F_i, 2.4/F_i), F_i the fan-in of the unit.
INIT_SCALE = 2.4

# [1998] II.B, Fig. 3: the output RBF centres are +-1 7x12 bitmaps of the digits (84 = F6 size),
# "stylized" characters. The paper's exact bitmaps are only shown as a figure; these are this
# project's drawings in that style ('#' = +1, '.' = -1), 12 rows of 7 columns each.
DIGIT_BITMAPS: tuple[tuple[str, ...], ...] = (
    ("..###..", ".#...#.", "#.....#", "#.....#", "#.....#", "#.....#",
     "#.....#", "#.....#", "#.....#", "#.....#", ".#...#.", "..###.."),  # 0
    ("...#...", "..##...", ".#.#...", "...#...", "...#...", "...#...",
     "...#...", "...#...", "...#...", "...#...", "...#...", ".#####."),  # 1
    (".#####.", "#.....#", "......#", "......#", ".....#.", "....#..",
     "...#...", "..#....", ".#.....", "#......", "#......", "#######"),  # 2
    (".#####.", "#.....#", "......#", "......#", "......#", "..####.",
     "......#", "......#", "......#", "......#", "#.....#", ".#####."),  # 3
    ("....##.", "...#.#.", "..#..#.", ".#...#.", "#....#.", "#....#.",
     "#######", ".....#.", ".....#.", ".....#.", ".....#.", ".....#."),  # 4
    ("#######", "#......", "#......", "#......", "######.", "......#",
     "......#", "......#", "......#", "......#", "#.....#", ".#####."),  # 5
    ("..####.", ".#.....", "#......", "#......", "######.", "#.....#",
     "#.....#", "#.....#", "#.....#", "#.....#", "#.....#", ".#####."),  # 6
    ("#######", "......#", "......#", ".....#.", ".....#.", "....#..",
     "....#..", "...#...", "...#...", "..#....", "..#....", "..#...."),  # 7
    (".#####.", "#.....#", "#.....#", "#.....#", ".#...#.", "..###..",
     ".#...#.", "#.....#", "#.....#", "#.....#", "#.....#", ".#####."),  # 8
    (".#####.", "#.....#", "#.....#", "#.....#", "#.....#", "#.....#",
     ".######", "......#", "......#", "......#", ".....#.", ".####.."),  # 9
)
BITMAP_ROWS, BITMAP_COLS = 12, 7

# Initialisation schemes (each unit's weights and bias drawn uniformly):
# "lecun" = +-2.4/F_i as printed in [1998] App. A; "lecun_sqrt" = +-2.4/sqrt(F_i) (keeps the
# summed input's spread near 1 whatever F_i); "pytorch" = PyTorch's default U(+-1/sqrt(F_i)).
# The builders default to "lecun_sqrt" (LeNet-1 and LeNet-4: "pytorch", docs/lenet.md). With the
# printed init a unit's summed input has spread 2.4/sqrt(3 F_i) for unit inputs (0.07 at C5).
# DEVIATION from the paper's text, kept selectable; docs/lenet.md says why.
INITS = ("lecun", "lecun_sqrt", "pytorch")
# The activations a LeNet accepts: those of models.activations.ACTIVATIONS whose f'(a) _act_prime_sq knows.
ACTIVATIONS = ("scaled_tanh", "tanh", "relu", "identity")
POOLINGS = ("trainable", "avg", "max")


def digit_bitmaps() -> torch.Tensor:
    """The 10 RBF centres as a (10, 84) tensor of +-1 (row-major 12x7 bitmaps)."""
    rows = [[1.0 if c == "#" else -1.0 for line in bmp for c in line] for bmp in DIGIT_BITMAPS]
    return torch.tensor(rows)


# --------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------


def _act(name: str, a: torch.Tensor) -> torch.Tensor:
    """f(a) for the activation ``name`` (one of ``ACTIVATIONS``)."""
    return make_activation(name)(a)


def _act_prime_sq(name: str, a: torch.Tensor) -> torch.Tensor:
    """f'(a)^2, for back-propagating diagonal second derivatives (f'' terms dropped)."""
    if name == "scaled_tanh":
        return (SQUASH_A * SQUASH_S * (1 - torch.tanh(SQUASH_S * a) ** 2)) ** 2
    if name == "tanh":
        return (1 - torch.tanh(a) ** 2) ** 2
    if name == "relu":
        return (a > 0).to(a.dtype)
    return torch.ones_like(a)


def check_table(layer: str, table: Sequence[Sequence[int]], in_maps: int) -> tuple[tuple[int, ...], ...]:
    """Validate a connection table: one non-empty list of distinct input-map indices per output map."""
    if isinstance(table, str) or not isinstance(table, Sequence) or len(table) == 0:
        raise ConfigError(f"{layer}: the connection table must be a non-empty list of lists of map indices, got {table!r}")
    out = []
    for o, row in enumerate(table):
        if isinstance(row, (str, int)) or not isinstance(row, Sequence) or len(row) == 0:
            raise ConfigError(f"{layer}: table row {o} must be a non-empty list of input-map indices, got {row!r}")
        for j in row:
            if not is_int(j) or not 0 <= j < in_maps:
                raise ConfigError(
                    f"{layer}: table row {o} names input map {j!r}, but the layer has only {in_maps} input maps "
                    f"(valid indices 0..{in_maps - 1}); fix the table"
                )
        if len(set(row)) != len(row):
            raise ConfigError(f"{layer}: table row {o} names an input map twice: {list(row)}")
        out.append(tuple(int(j) for j in row))
    return tuple(out)


class TableConv2d(nn.Module):
    """A convolution whose output map ``o`` sees only the input maps ``table[o]`` [1998, Table I].

    Only the connected kernels are parameters (``weight`` has one 5x5 kernel per connection),
    so ``numel()`` counts what the paper counts. Forward scatters them into a full
    (out, in, k, k) kernel with one ``index_copy`` and runs a single ``conv2d`` (no loop over
    maps). ``bias="shared"`` gives one bias per map, ``"unshared"`` one per unit [1989].
    """

    def __init__(self, layer: str, in_maps: int, table, kernel: int, stride: int = 1,
                 bias: str = "shared", out_side: int | None = None, pad: int = 0, pad_value: float = 0.0):
        super().__init__()
        self.layer, self.in_maps, self.kernel, self.stride = layer, in_maps, kernel, stride
        self.pad, self.pad_value = pad, pad_value
        self.table = check_table(layer, table, in_maps)
        self.out_maps = len(self.table)
        flat = [o * in_maps + j for o, row in enumerate(self.table) for j in row]
        self.register_buffer("index", torch.tensor(flat, dtype=torch.long), persistent=False)
        self.register_buffer("fan_in", torch.tensor([len(r) * kernel * kernel for r in self.table],
                                                    dtype=torch.float32), persistent=False)
        self.register_buffer("conn_map", torch.tensor([o for o, row in enumerate(self.table) for _ in row]),
                             persistent=False)
        self.weight = nn.Parameter(torch.empty(len(flat), kernel, kernel))
        if bias == "shared":
            self.bias = nn.Parameter(torch.empty(self.out_maps))
        elif bias == "unshared":
            if out_side is None:
                raise ConfigError(f"{layer}: unshared biases need the output side")
            self.bias = nn.Parameter(torch.empty(self.out_maps, out_side, out_side))
        else:
            raise ConfigError(f"{layer}: bias must be 'shared' or 'unshared', got {bias!r}")
        self.reset_parameters()

    def reset_parameters(self, scheme: str = "lecun") -> None:
        with torch.no_grad():
            if scheme in ("lecun", "lecun_sqrt"):  # uniform +-2.4 / fan-in, per output map [1998, App. A]
                fan = self.fan_in if scheme == "lecun" else self.fan_in.sqrt()
                bound_w = INIT_SCALE / fan[self.conn_map]
                self.weight.uniform_(-1, 1).mul_(bound_w.view(-1, 1, 1))
                bound_b = INIT_SCALE / fan
                self.bias.uniform_(-1, 1).mul_(bound_b.view(-1, *([1] * (self.bias.dim() - 1))))
            else:  # PyTorch's default for Conv2d: kaiming_uniform(a=sqrt 5) == U(+-1/sqrt(fan_in))
                bound_w = 1.0 / self.fan_in[self.conn_map].sqrt()
                self.weight.uniform_(-1, 1).mul_(bound_w.view(-1, 1, 1))
                bound_b = 1.0 / self.fan_in.sqrt()
                self.bias.uniform_(-1, 1).mul_(bound_b.view(-1, *([1] * (self.bias.dim() - 1))))

    def full_weight(self) -> torch.Tensor:
        k = self.kernel
        w = self.weight.new_zeros(self.out_maps * self.in_maps, k, k).index_copy(0, self.index, self.weight)
        return w.view(self.out_maps, self.in_maps, k, k)

    def forward(self, x: torch.Tensor, squared: bool = False) -> torch.Tensor:
        """``squared=True`` (the second-derivative pass, whose input is x^2) pads with pad_value^2."""
        if self.pad:
            value = self.pad_value**2 if squared else self.pad_value
            x = F.pad(x, (self.pad,) * 4, value=value)
        y = F.conv2d(x, self.full_weight(), stride=self.stride)
        if self.bias.dim() == 1:
            return y + self.bias.view(1, -1, 1, 1)
        return y + self.bias

    def extra_repr(self) -> str:
        return f"{self.layer}: {self.in_maps}->{self.out_maps} maps, {self.kernel}x{self.kernel}, " \
               f"stride {self.stride}, {self.weight.shape[0]} kernels"


class Subsample(nn.Module):
    """2x2 subsampling [1998, II.B]: ``trainable`` = sum of the block x one coefficient per map +
    one bias per map (the squashing follows as the stage's activation); ``avg`` / ``max`` =
    parameter-free pooling (modern variants). ``sources`` maps each output map to the input map
    it subsamples (LeNet-4's S2 has two subsampling maps per C1 map)."""

    def __init__(self, layer: str, maps: int, mode: str = "trainable", size: int = 2,
                 sources: Sequence[int] | None = None):
        super().__init__()
        check_choice(layer, "pooling", mode, POOLINGS)
        self.layer, self.mode, self.size = layer, mode, size
        if sources is not None:
            self.register_buffer("sources", torch.tensor(list(sources), dtype=torch.long), persistent=False)
            maps = len(sources)
        else:
            self.sources = None
        self.maps = maps
        if mode == "trainable":
            self.coef = nn.Parameter(torch.empty(maps))
            self.bias = nn.Parameter(torch.empty(maps))
        self.reset_parameters()

    def reset_parameters(self, scheme: str = "lecun") -> None:
        if self.mode != "trainable":
            return
        bound = {"lecun": INIT_SCALE / self.size**2, "lecun_sqrt": INIT_SCALE / self.size}.get(scheme, 1.0 / self.size)
        with torch.no_grad():
            self.coef.uniform_(-bound, bound)
            self.bias.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sources is not None:
            x = x.index_select(1, self.sources)
        s = self.size
        if self.mode == "max":
            return F.max_pool2d(x, s)
        pooled = F.avg_pool2d(x, s)
        if self.mode == "avg":
            return pooled
        return pooled * (s * s) * self.coef.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.layer}: {self.maps} maps, {self.size}x{self.size} {self.mode}"


class Dense(nn.Linear):
    """A fully connected layer that flattens its input first."""

    def __init__(self, layer: str, in_features: int, out_features: int):
        super().__init__(in_features, out_features)
        self.layer = layer

    def reset_parameters(self, scheme: str = "pytorch") -> None:
        if scheme in ("lecun", "lecun_sqrt"):
            bound = INIT_SCALE / (self.in_features if scheme == "lecun" else self.in_features**0.5)
            with torch.no_grad():
                self.weight.uniform_(-bound, bound)
                self.bias.uniform_(-bound, bound)
        else:
            super().reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.flatten(1))


class EuclideanRBF(nn.Module):
    """Output layer of [1998, II.B, eq. (7)]: y_i = sum_j (x_j - w_ij)^2 with fixed centres w (a buffer)."""

    def __init__(self, centres: torch.Tensor):
        super().__init__()
        self.register_buffer("centres", centres.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return (x * x).sum(1, keepdim=True) - 2 * x @ self.centres.t() + (self.centres**2).sum(1)


class Stage(nn.Module):
    """One stage of a LeNet: a linear operation ``op`` followed by the activation ``activation``
    (one of ``ACTIVATIONS``, the module ``act``; ``scaled_tanh`` is [1998]'s squashing function)."""

    def __init__(self, name: str, op: nn.Module, activation: str):
        super().__init__()
        check_choice(name, "activation", activation, ACTIVATIONS)
        self.name, self.op, self.activation = name, op, activation
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.op(x))

    def extra_repr(self) -> str:
        return f"activation={self.activation}"


def pad_to(name: str, input_size: int, side: int, resize_hint: int) -> tuple[int, int]:
    """Padding (before, after) that centres an ``input_size`` image in a ``side`` x ``side`` input
    field (28x28 MNIST in LeNet-5's 32x32 field [1998, II.B]); larger inputs are refused."""
    check_positive_int(name, "input_size", input_size)
    if input_size > side:
        raise ConfigError(
            f"{name}: input_size {input_size} is larger than the network's {side}x{side} input field; "
            f"set data.resize={resize_hint} (smaller inputs are padded with the background)"
        )
    extra = side - input_size
    return extra // 2, extra - extra // 2
