r"""Data generators for the paper's experiments (EQUATIONS.md §13).  Each returns ``(X, y)`` numpy arrays.

Use different ``seed`` values for training and test sets; the teacher of :func:`quadratic_teacher` is fixed
by ``teacher_seed`` so that both sets share it.
"""

from __future__ import annotations

import numpy as np

from ._validate import check_positive_int as _check_positive_int


def _check_size(n: int, d: int) -> None:
    """Refuse an (n, d) draw that would take more than half the machine's memory (n = 10¹²: numpy's bare
    MemoryError "Unable to allocate 29.1 TiB", naming neither n nor d)."""
    from .model.network import _physical_memory

    need = 8.0 * n * (d + 2)  # X, y and a draw's temporary
    if need > 0.5 * _physical_memory():
        raise ValueError(f"n = {n} points of dimension d = {d} need {need / 2**30:.3g} GiB, more than half this "
                         f"machine's {_physical_memory() / 2**30:.3g} GiB of memory; use a smaller n or d")


def _rng(seed: int) -> np.random.Generator:
    _check_positive_int(seed, "seed", minimum=0)
    return np.random.default_rng(int(seed))


def random_labels(n: int, d: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Experiment 1: x_a ~ N(0, I_d), y_a ~ U[−½, ½] independent (random labels).

    Returns:
        X: (n, d), y: (n,).
    """
    n = _check_positive_int(n, "n")
    d = _check_positive_int(d, "d")
    _check_size(n, d)
    rng = _rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.uniform(-0.5, 0.5, size=n)
    return X, y


def quadratic_teacher(n: int, d: int = 30, seed: int = 0, *, teacher_width: int = 5,
                      teacher_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    r"""Experiment 2: y = f*(x) = (1/k) Σ_{i≤k} c*_i ReLU((1/d) Σ_{k,l} W*_{i,kl} x_k x_l), x ~ N(0, I_d).

    The teacher is a quadratic-embedding net of width ``teacher_width`` (5 in the paper) with c* Rademacher
    and W* ~ N(0, 1), drawn from ``teacher_seed`` (EQUATIONS.md §13.2: the paper leaves these unspecified).
    No label noise.

    Returns:
        X: (n, d), y: (n,).
    """
    n = _check_positive_int(n, "n")
    d = _check_positive_int(d, "d")
    k = _check_positive_int(teacher_width, "teacher_width")
    _check_size(n, d)
    _check_size(k, d * d)  # (the teacher's W*: k·d² entries)
    trng = _rng(teacher_seed)
    c_star = trng.choice([-1.0, 1.0], size=k)
    W_star = trng.standard_normal((k, d, d))
    X = _rng(seed).standard_normal((n, d))
    h = np.einsum("ikl,ak,al->ai", W_star, X, X) / d
    y = np.maximum(h, 0.0) @ c_star / k
    return X, y


def wei2019(n: int, d: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    r"""Experiment 3 (Wei, Lee, Liu & Ma 2019; eqs. (93)–(97)).

    (x₁, x₂, y) is one of (1, 0, +1), (−1, 0, +1), (0, 1, −1), (0, −1, −1) with probability ¼ each, and
    x₃..x_d ~ U[−1, 1] i.i.d.; so y = x₁² − x₂².

    Returns:
        X: (n, d), y: (n,) with entries ±1.
    """
    n = _check_positive_int(n, "n")
    d = _check_positive_int(d, "d", minimum=2)
    _check_size(n, d)
    rng = _rng(seed)
    table = np.array([[1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], [0.0, 1.0, -1.0], [0.0, -1.0, -1.0]])
    pick = table[rng.integers(0, 4, size=n)]
    X = np.empty((n, d))
    X[:, :2] = pick[:, :2]
    X[:, 2:] = rng.uniform(-1.0, 1.0, size=(n, d - 2))
    return X, pick[:, 2].copy()


GENERATORS = {"random_labels": random_labels, "quadratic_teacher": quadratic_teacher, "wei2019": wei2019}

__all__ = ["random_labels", "quadratic_teacher", "wei2019", "GENERATORS"]
