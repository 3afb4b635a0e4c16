"""US4, the labelled top layer of Fukushima's network (:mod:`models.neocognitron_fukushima`): its
rules, one function each, on unit-length feature vectors ``f`` (UC3's output) and unit-length
reference vectors ``refs`` with class labels ``labels``.

* :func:`interpolated_similarity` (recognition, 2007 interpolating vectors): per class, the
  largest cosine between ``f`` and the cone spanned by the class's ``k`` vectors most similar to
  ``f``; the best class wins.
* :func:`margin_misses` (learning, the margined winner-take-all, 2018): the patterns the top
  layer gets wrong, and those it gets right by less than the margin; both become new vectors.
* :func:`reinforce` (learning, supervised competitive learning, 2003): a pattern the layer
  recognises adds itself to the most similar vector of its own class, which becomes the
  normalised sum of the patterns it has taken (``mass`` is the length of that sum), so that a
  vector stands for a cluster of patterns, not one.
* :func:`adjust` (the adjusting phase after learning, 2007): a pattern near the border between
  its class and another pulls the nearest vector of its class towards itself and pushes the
  nearest vector of the other class away. The 2007 paper adjusts its vectors after learning; its
  exact rule is not in our sources, and this is Kohonen's LVQ2.1 rule on cosines (T. Kohonen,
  "Improved versions of learning vector quantization", IJCNN 1990), with a window on the
  difference of the two cosines.

Each is checked against a hand-worked example in ``tests/test_top_layer.py``.
"""

from __future__ import annotations

from itertools import combinations

import torch
import torch.nn.functional as F

NONE = -2.0  # below any cosine: "no vector of this class"


def interpolated_similarity(f: torch.Tensor, refs: torch.Tensor, labels: torch.Tensor, num_classes: int, k: int,
                            sims: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, num_classes)``: per class, the length of ``f``'s projection on the cone of the class's
    ``k`` reference vectors most similar to ``f`` (the best over subsets ``S`` of them of
    ``sqrt(b^T G^-1 b)``, ``G`` the Gram matrix of ``S`` and ``b`` their cosines with ``f``, among
    the ``S`` with ``G^-1 b >= 0``, and of the single cosines); -1 where a class has no vectors.
    ``k = 1`` is plain winner-take-all. ``sims``: ``f @ refs.T`` when the caller has it already."""
    out = f.new_full((f.shape[0], num_classes), -1.0)
    if refs.shape[0] == 0 or refs.shape[1] != f.shape[1]:
        return out
    if sims is None:
        sims = f @ refs.t()  # (B, N), cosines (both unit length)
    for c in range(num_classes):
        idx = (labels == c).nonzero().squeeze(1)
        if len(idx) == 0:
            continue
        kc = min(k, len(idx))
        top, arg = sims[:, idx].topk(kc, dim=1)
        best = top[:, 0].clone()
        if kc > 1:
            vecs = refs[idx][arg]  # (B, kc, D)
            gram = vecs @ vecs.transpose(1, 2)
            for r in range(2, kc + 1):
                for sub in combinations(range(kc), r):
                    s = list(sub)
                    g = gram[:, s][:, :, s] + 1e-6 * torch.eye(r, device=f.device)
                    b = top[:, s]
                    alpha = torch.linalg.solve(g, b.unsqueeze(-1)).squeeze(-1)
                    cos = (alpha * b).sum(1).clamp_min(0).sqrt()  # |projection| / |f|
                    inside = (alpha >= 0).all(1)  # inside the cone of the vectors
                    best = torch.where(inside & (cos > best), cos, best)
        out[:, c] = best
    return out


def margin_misses(scores: torch.Tensor, y: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(wrong, close)``: the patterns whose class does not win, and those it wins by less than
    ``margin`` over the best other class, from the class scores ``(B, C)`` (``margin = 0``: none
    is close)."""
    own = scores.gather(1, y[:, None]).squeeze(1)
    rival = scores.scatter(1, y[:, None], NONE).amax(1)
    wrong = scores.argmax(1) != y
    return wrong, ~wrong & (own - rival < margin)


def _nearest(sims: torch.Tensor, labels: torch.Tensor, y: torch.Tensor, same: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pattern, the cosine and index of its most similar vector of its own class (``same``) or
    of any other class; the cosine is ``NONE`` where there is none."""
    own = labels[None, :] == y[:, None]
    return sims.masked_fill(~own if same else own, NONE).max(1)


def reinforce(refs: torch.Tensor, mass: torch.Tensor, labels: torch.Tensor, f: torch.Tensor, y: torch.Tensor,
              sims: torch.Tensor) -> int:
    """Each pattern ``f[i]`` adds itself to the most similar vector of its class ``y[i]`` (``sims``:
    ``f @ refs.T``): ``refs`` become the normalised sums, ``mass`` their lengths (in place; a vector
    made from one pattern has mass 1). Returns the number of vectors changed."""
    cos, win = _nearest(sims, labels, y, same=True)
    ok = cos > NONE
    if not ok.any():
        return 0
    rows = win[ok].unique()
    total = refs[rows] * mass[rows, None]
    total.index_add_(0, torch.searchsorted(rows, win[ok]), f[ok])
    mass[rows] = total.norm(dim=1)
    refs[rows] = total / mass[rows, None].clamp_min(1e-12)
    return len(rows)


def adjust(refs: torch.Tensor, labels: torch.Tensor, f: torch.Tensor, y: torch.Tensor, rate: float,
           window: float, sims: torch.Tensor | None = None) -> int:
    """One step of the adjusting phase (LVQ2.1 on cosines, in place): a pattern whose nearest vector
    of another class is within ``window`` of its nearest vector of its own class (``cos_other >
    cos_own - window``: misclassified, or right by less than the window) moves the own-class vector
    by ``rate * (f - r)`` and the other one by ``-rate * (f - r)``; the moved vectors are
    normalised again. Returns the number of patterns that moved vectors. ``sims``: ``f @ refs.T``
    when the caller has it already."""
    sims = f @ refs.t() if sims is None else sims
    c_own, w_own = _nearest(sims, labels, y, same=True)
    c_other, w_other = _nearest(sims, labels, y, same=False)
    near = (c_own > NONE) & (c_other > NONE) & (c_other > c_own - window)
    if not near.any():
        return 0
    fn, a, b = f[near], w_own[near], w_other[near]
    step = torch.zeros_like(refs)
    step.index_add_(0, a, rate * (fn - refs[a]))
    step.index_add_(0, b, -rate * (fn - refs[b]))
    rows = torch.cat([a, b]).unique()
    refs[rows] = F.normalize(refs[rows] + step[rows], dim=1)
    return int(near.sum())
