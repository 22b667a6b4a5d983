"""Is a chain of ``Reshape`` / ``Transpose`` / ``Unsqueeze`` / ``Squeeze`` / ``DepthToSpace`` a
pixel shuffle? Decided by following where every element goes, for every input size.

A tensor ``(N, K, H, W)`` is described as *atoms*: ``n``, ``h``, ``w`` (sizes that may be
symbols) and the channel axis ``K`` (an int). Each axis of a later tensor is a row-major run
of atoms; a reshape regroups the run (splitting the channel atom into digits where a target
size falls inside it, never a spatial or batch atom), a transpose permutes the axes. The chain
is a pixel shuffle when it ends as ``(n | c-digits | h, α-digits | w, β-digits)``: output
``(n, c, h·rh + a, w·rw + b)`` then reads conv channel ``π[c, a, b]``, a fixed permutation of
the channel digits (``π`` is the identity for PyTorch's pixel shuffle / ONNX ``CRD``, and
``(a·rw + b)·C + c`` for ``DCR``). Anything else (a block index major to the row, H and W
swapped, the batch mixed in) is not one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import sympy

from .onnx_values import canon

_ids = itertools.count()


class NotAShuffle(Exception):
    """The chain does something a pixel shuffle does not; ``str()`` says what."""


@dataclass(frozen=True)
class Atom:
    kind: str  # "n", "c", "h" or "w"
    size: sympy.Expr
    key: int = field(default_factory=lambda: next(_ids))


@dataclass(frozen=True)
class ShuffleForm:
    """A proven pixel shuffle: scale ``(rh, rw)`` and ``perm`` ``(C, rh, rw)`` of conv channels."""

    scale: tuple[int, int]
    perm: np.ndarray

    @property
    def order(self) -> str:
        """``"CRD"``, ``"DCR"`` or ``"permuted"``: how conv channels map to (c, a, b)."""
        c, rh, rw = self.perm.shape
        crd = np.arange(c * rh * rw).reshape(c, rh, rw)
        if np.array_equal(self.perm, crd):
            return "CRD"
        if np.array_equal(self.perm, np.arange(c * rh * rw).reshape(rh, rw, c).transpose(2, 0, 1)):
            return "DCR"
        return "permuted channels"


def _whole(q: sympy.Expr) -> bool:
    """Is ``q`` a product of positive integers and size symbols (no division left)?"""
    q = canon(q)
    if q.is_Integer:
        return q >= 1
    num, den = sympy.fraction(q)
    return den == 1 and num.is_positive is True and not q.has(sympy.floor, sympy.ceiling)


class Layout:
    """Where the atoms of an ``(N, K, H, W)`` start tensor are after each op of a chain."""

    def __init__(self, dims: tuple) -> None:
        if len(dims) != 4:
            raise NotAShuffle(f"starts from a rank-{len(dims)} tensor, not (N, C, H, W)")
        n, k, h, w = (sympy.sympify(d) for d in dims)
        if not k.is_Integer:
            raise NotAShuffle("its input's channel count is not static")
        self.channels = int(k)
        atoms = [Atom("n", n), Atom("c", k), Atom("h", h), Atom("w", w)]
        self.groups: list[list[Atom]] = [[a] if a.size != 1 else [] for a in atoms]
        self.digits: list[Atom] = [atoms[1]]  # channel digits, most significant first

    # --- shapes ------------------------------------------------------------------------------

    def dims(self) -> tuple[sympy.Expr, ...]:
        return tuple(sympy.Mul(*(a.size for a in g)) for g in self.groups)

    # --- ops -----------------------------------------------------------------------------------

    def reshape(self, target: list, allowzero: bool = False) -> None:
        """``Reshape`` to ``target`` (sympy exprs; ONNX's 0 = copy and -1 = infer)."""
        current = self.dims()
        sizes: list = []
        for i, t in enumerate(target):
            t = sympy.sympify(t)
            if t == 0 and not allowzero:
                if i >= len(current):
                    raise NotAShuffle("reshape copies an axis the tensor does not have")
                t = current[i]
            sizes.append(t)
        if sum(1 for s in sizes if s == -1) > 1:
            raise NotAShuffle("reshape has more than one -1")
        if -1 in sizes:
            known = sympy.Mul(*(s for s in sizes if s != -1))
            rest = canon(sympy.Mul(*current) / known)
            if not _whole(rest):
                raise NotAShuffle(f"reshape's -1 is not a whole size ({rest})")
            sizes = [rest if s == -1 else s for s in sizes]
        queue = [a for g in self.groups for a in g]
        groups: list[list[Atom]] = []
        for size in sizes:
            group: list[Atom] = []
            rem = canon(size)
            while rem != 1:
                if not queue:
                    raise NotAShuffle("reshape to more elements than the tensor has")
                atom = queue[0]
                q = canon(rem / atom.size)
                if _whole(q):
                    group.append(queue.pop(0))
                    rem = q
                elif atom.kind == "c" and rem.is_Integer and int(atom.size) % int(rem) == 0:
                    major, minor = self._split(atom, int(rem))
                    group.append(major)
                    queue[0] = minor
                    rem = sympy.Integer(1)
                else:
                    what = "the batch" if atom.kind == "n" else (
                        "a channel digit" if atom.kind == "c" else f"the {atom.kind.upper()} axis")
                    raise NotAShuffle(f"reshape splits {what} (size {atom.size}) by {rem}")
            groups.append(group)
        if queue:
            raise NotAShuffle("reshape to fewer elements than the tensor has")
        self.groups = groups

    def _split(self, atom: Atom, size: int) -> tuple[Atom, Atom]:
        major = Atom("c", sympy.Integer(size))
        minor = Atom("c", sympy.Integer(int(atom.size) // size))
        i = self.digits.index(atom)
        self.digits[i:i + 1] = [major, minor]
        return major, minor

    def transpose(self, perm: list[int] | None) -> None:
        perm = list(range(len(self.groups)))[::-1] if perm is None else list(perm)
        if sorted(perm) != list(range(len(self.groups))):
            raise NotAShuffle(f"transpose perm {perm} does not fit rank {len(self.groups)}")
        self.groups = [self.groups[p] for p in perm]

    def unsqueeze(self, axes: list[int]) -> None:
        rank = len(self.groups) + len(axes)
        for ax in sorted(a % rank for a in axes):
            self.groups.insert(ax, [])

    def squeeze(self, axes: list[int] | None) -> None:
        rank = len(self.groups)
        drop = {a % rank for a in axes} if axes is not None else {
            i for i, g in enumerate(self.groups) if not g}
        if any(self.groups[a] for a in drop):
            raise NotAShuffle("squeeze of an axis not known to be 1")
        self.groups = [g for i, g in enumerate(self.groups) if i not in drop]

    def depth_to_space(self, r: int, mode: str) -> None:
        """ONNX ``DepthToSpace``, as the reshape → transpose → reshape its spec defines."""
        if len(self.groups) != 4:
            raise NotAShuffle("DepthToSpace of a tensor that is not 4-D")
        n, k, h, w = self.dims()
        c = canon(k / (r * r))
        if mode == "DCR":
            self.reshape([n, r, r, c, h, w])
            self.transpose([0, 3, 4, 1, 5, 2])
        else:
            self.reshape([n, c, r, r, h, w])
            self.transpose([0, 1, 4, 2, 5, 3])
        self.reshape([n, c, h * r, w * r])

    # --- the verdict -------------------------------------------------------------------------

    def moves_channels_into_space(self) -> bool:
        """Does a 4-D result interleave channel digits with a spatial axis (an upsampling of
        some kind, pixel shuffle or not)?"""
        if len(self.groups) != 4:
            return False
        h_axis, w_axis = ({a.kind for a in g} for g in self.groups[2:])
        return h_axis >= {"c", "h"} or w_axis >= {"c", "w"}

    def shuffle_form(self, allow_identity: bool = False) -> ShuffleForm:
        """The pixel shuffle this layout is, or :class:`NotAShuffle` saying why not.

        A ×1 "shuffle" (channels permuted at most) counts only with ``allow_identity``.
        """
        if len(self.groups) != 4:
            raise NotAShuffle(f"ends as a rank-{len(self.groups)} tensor")
        g_n, g_c, g_h, g_w = self.groups
        if any(a.kind != "n" for a in g_n):
            raise NotAShuffle("the batch axis is mixed with other axes")
        if any(a.kind != "c" for a in g_c):
            raise NotAShuffle("the channel axis holds spatial or batch positions")
        alpha = self._spatial_run(g_h, "h")
        beta = self._spatial_run(g_w, "w")
        rh = int(np.prod([int(a.size) for a in alpha], dtype=np.int64))
        rw = int(np.prod([int(a.size) for a in beta], dtype=np.int64))
        if rh == 1 and rw == 1 and not allow_identity:
            raise NotAShuffle("moves no channels into space")
        digits = [a for a in self.digits if a.size != 1]  # size-1 digits index nothing
        sizes = [int(a.size) for a in digits]
        where = {a.key: i for i, a in enumerate(digits)}
        order = [where[a.key] for a in (*g_c, *alpha, *beta)]
        c = self.channels // (rh * rw)
        perm = np.arange(self.channels).reshape(sizes).transpose(order).reshape(c, rh, rw)
        return ShuffleForm((rh, rw), perm)

    @staticmethod
    def _spatial_run(group: list[Atom], kind: str) -> list[Atom]:
        """The channel digits after the spatial atom ``kind`` in an output spatial axis."""
        other = "w" if kind == "h" else "h"
        if any(a.kind in ("n", other) for a in group):
            raise NotAShuffle(f"output axis {kind.upper()} holds batch or {other.upper()} "
                              "positions")
        spatial = [i for i, a in enumerate(group) if a.kind == kind]
        if spatial and spatial[0] != 0:
            raise NotAShuffle(f"the block offset is major to the {kind.upper()} position "
                              "(a tiling, not a pixel shuffle)")
        return [a for a in group if a.kind == "c"]
