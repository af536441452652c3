"""The most probable readings of a number that satisfy constraints, searched over segmentation's
lattice.

Try: `digitrec predict card.png --digits 16 --checksum luhn --alternatives 3`.

Segmentation cuts every group of ink in several ways (`Slot`); joined left to right, the slots'
candidate cuts are the nodes of a lattice and each segment is an edge that reads as any digit
with its piece probability. A reading is a path from the first node to the last with a digit on
each edge; its probability is the product of its pieces' probabilities. `best_readings` finds
the most probable readings that `Compiled` constraints accept, best first, with A*: the bound on
what a partial reading can still gain is the best unconstrained completion of the lattice with
the digit counts the constraints allow, which never underestimates, so readings come out in
order of probability and the first is exact. Only a search that runs past MAX_EXPANSIONS stops
early, and says so (`Search.exact`).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..constants import NUM_CLASSES
from ..image.segmentation import Slot
from .constraints import Compiled

__all__ = ["DEFAULT_ALTERNATIVES", "MAX_ALTERNATIVES", "MAX_EXPANSIONS", "Candidate", "Search", "best_readings"]

DEFAULT_ALTERNATIVES = 3  # readings listed besides the best, by default
MAX_ALTERNATIVES = 20  # --alternatives is at most this
# Partial readings taken from the queue before the search stops: a 16-digit number with a wrong
# check digit needs a few hundred; the bound keeps a hopeless image from costing more than ~0.2 s.
MAX_EXPANSIONS = 20_000
LOG_FLOOR = math.log(1e-12)  # a digit's log-probability is never below this (a probability of 0)


@dataclass(frozen=True)
class Candidate:
    """One reading: its digits, the log of its probability, and the index of each piece among
    the lattice's crops (the slots' crops, flattened in order)."""

    text: str
    log_probability: float
    pieces: tuple[int, ...]

    @property
    def probability(self) -> float:
        return math.exp(self.log_probability)


@dataclass(frozen=True)
class Search:
    """The readings found, best first; whether the search was exact (False when it stopped at
    MAX_EXPANSIONS, so a better valid reading may have gone unseen); the partial readings it
    took from its queue."""

    candidates: tuple[Candidate, ...]
    exact: bool
    expansions: int
    # The log-probability of the best reading of the lattice with a digit count the constraints
    # allow, valid or not: how much the constraints cost the best valid one.
    ceiling: float = -math.inf


@dataclass(frozen=True)
class _Edge:
    to: int
    crop: int  # index among the flattened crops
    order: tuple[int, ...]  # digits, most probable first
    log_p: tuple[float, ...]  # (10,) log piece probability of each digit


def _edges(slots: Sequence[Slot], probabilities: np.ndarray) -> list[list[_Edge]]:
    """Out-edges of every lattice node. Slot k's cut c is node offset[k] + c; its last cut is the
    next slot's first."""
    log_p = np.log(np.maximum(probabilities[:, :NUM_CLASSES], math.exp(LOG_FLOOR)))
    ends = [max(b for _, b in slot.segments) for slot in slots]
    offsets = np.concatenate([[0], np.cumsum(ends)]).astype(int)
    out: list[list[_Edge]] = [[] for _ in range(int(offsets[-1]) + 1)]
    crop = 0
    for k, slot in enumerate(slots):
        for a, b in slot.segments:
            row = log_p[crop]
            order = tuple(int(d) for d in np.argsort(-row, kind="stable"))
            out[offsets[k] + a].append(_Edge(int(offsets[k] + b), crop, order, tuple(float(v) for v in row)))
            crop += 1
    return out


def _completion(edges: list[list[_Edge]]) -> np.ndarray:
    """(nodes, longest + 1): the best log-probability of reaching the last node from each node
    with exactly r more digits (-inf: impossible), ignoring the constraints."""
    nodes = len(edges)
    best = np.full((nodes, nodes), -np.inf)
    best[nodes - 1, 0] = 0.0
    for node in range(nodes - 2, -1, -1):  # every edge goes right: a node's successors are done
        for e in edges[node]:
            gain = e.log_p[e.order[0]]
            np.maximum(best[node, 1:], best[e.to, :-1] + gain, out=best[node, 1:])
    return best


def best_readings(
    slots: Sequence[Slot], probabilities: np.ndarray, constraints: Compiled, n: int = 1 + DEFAULT_ALTERNATIVES
) -> Search:
    """Up to `n` readings of `slots` that `constraints` accept, most probable first.

    Parameters
    ----------
    slots : sequence of Slot
        Segmentation's groups of ink, left to right, each with its candidate segments.
    probabilities : (crops, 10 or more) array
        Each crop's piece probabilities (`probabilities.piece_probabilities`), the slots' crops
        flattened in order; columns past the ten digits are ignored.
    constraints : Compiled
        What a reading must satisfy (`Constraints.compile()`).
    n : int
        How many readings to find.

    Examples
    --------
    >>> import numpy as np
    >>> from digitrec.image.segmentation import DigitCrop, Slot
    >>> from digitrec.recognition.constraints import Constraints
    >>> crop = DigitCrop(np.zeros((28, 28), np.float32), (0, 0, 1, 1))
    >>> slots = [Slot(((0, 1),), (crop,), (0,))] * 2  # two digits
    >>> p = np.full((2, 10), 0.01)
    >>> p[0, 4], p[0, 9], p[1, 2] = 0.6, 0.3, 0.9  # "42" reads best; "92" next
    >>> [c.text for c in best_readings(slots, p, Constraints(pattern="9.").compile()).candidates]
    ['92', '90', '91', '93']
    """
    edges = _edges(slots, probabilities)
    last = len(edges) - 1
    bound = _bounds(_completion(edges), constraints.lengths)  # bound[node, digits so far]
    # A queue entry is a digit on an edge after a partial reading, pushed before it is checked
    # against the constraints; the next most probable digit on that edge is pushed when it pops,
    # so each pop pushes about two entries, not ten per edge.
    queue: list[tuple[float, int, int, _Edge, str, tuple[int, int, int], float, tuple[int, ...]]] = []
    tick = 0  # ties pop in the order pushed, and no two entries compare further
    seen: set[tuple[int, str]] = set()
    found: list[Candidate] = []
    expansions = 0

    def expand(node: int, text: str, state: tuple[int, int, int], g: float, pieces: tuple[int, ...]) -> None:
        nonlocal tick
        for e in edges[node]:
            h = bound[e.to, len(text) + 1] if len(text) + 1 < bound.shape[1] else -math.inf
            if h > -math.inf:
                tick += 1
                heapq.heappush(queue, (-(g + e.log_p[e.order[0]] + h), tick, 0, e, text, state, g, pieces))

    if bound[0, 0] > -math.inf:
        if last == 0:
            found = [Candidate("", 0.0, ())] if constraints.accepts(constraints.start(), "") else []
            return Search(tuple(found), True, 0, 0.0)
        expand(0, "", constraints.start(), 0.0, ())
    while queue and len(found) < n:
        if expansions >= MAX_EXPANSIONS:
            return Search(tuple(found), False, expansions, float(bound[0, 0]))
        f, _, rank, e, text, state, g, pieces = heapq.heappop(queue)
        if rank + 1 < NUM_CLASSES:  # the edge's next digit, less probable, same bound
            nxt = e.order[rank + 1]
            tick += 1
            step = e.log_p[nxt] - e.log_p[e.order[rank]]
            heapq.heappush(queue, (f - step, tick, rank + 1, e, text, state, g, pieces))
        digit = e.order[rank]
        longer = text + str(digit)
        if (e.to, longer) in seen:  # the same digits by another cut, less probable
            continue
        after = constraints.step(state, longer)
        if after is None:
            continue
        seen.add((e.to, longer))
        expansions += 1
        g2 = g + e.log_p[digit]
        if e.to == last:
            if constraints.accepts(after, longer):
                found.append(Candidate(longer, g2, (*pieces, e.crop)))
            continue
        expand(e.to, longer, after, g2, (*pieces, e.crop))
    return Search(tuple(found), True, expansions, float(bound[0, 0]))


def _bounds(completion: np.ndarray, lengths: frozenset[int] | None) -> np.ndarray:
    """(nodes, longest + 1): the most a reading at each node with `done` digits can still gain,
    given the digit counts `lengths` allows (None: any); -inf where it cannot end valid."""
    nodes, width = completion.shape
    if lengths is None:
        return np.repeat(completion.max(axis=1, keepdims=True), width, axis=1)
    out = np.full((nodes, width), -np.inf)
    for k in lengths:
        for done in range(min(k, width - 1) + 1):
            if k - done < width:
                np.maximum(out[:, done], completion[:, k - done], out=out[:, done])
    return out
