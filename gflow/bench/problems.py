r"""The fixed problem set of ``gflow bench accuracy`` (and the Experiment-1 sizes of ``gflow bench speed``).

* Experiment 1 (EQUATIONS.md §13.1): shallow tanh net, x ~ N(0, I_d), d = 20, y ~ U[−½, ½], n = 20, 40, 80;
* P-3L with a smooth activation: erf on random features (D = m), the wei2019 data;
* a long horizon: Experiment 1 at n = 40 run to t = 2000, where explicit methods work at their stability
  limit 2/λ_max(M) (the flow is mildly stiff once the loss has converged);
* ReLU (non-smooth): the Experiment 3 setting (P-3L, ReLU, wei2019 data) at a reduced size, against a
  ``method="filippov"`` reference.

Each problem has its error times (multiples of every GD step δ ≤ 1 used), a seed, and a wall-time budget for
all its solves (the benchmark records what did not fit instead of stopping).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.network import Network
from ._common import check_mode


KINKED = ("relu", "leaky_relu")
#: the methods run on a kinked problem (adaptive smooth solvers only stall there: see the tests and docs/guide.md)
KINKED_METHODS = ("gd", "euler", "sliding", "filippov")


@dataclass(frozen=True)
class BenchProblem:
    """One benchmark problem.

    Attributes:
        key: short identifier;  name: a label for tables and figures.
        n, d: data size;  width: m;  D: random-feature width (None: identity embedding, D = d).
        activation: σ;  data: ``"random_labels"`` (Experiment 1) or ``"wei2019"``;  seed: data and network seed.
        t1: final time;  times: the times at which errors are measured (multiples of every step used).
        budget_s: wall-time budget for all the solves on this problem.
    """

    key: str
    name: str
    n: int
    d: int
    width: int
    t1: float
    times: tuple[float, ...]
    activation: str = "tanh"
    D: int | None = None
    data: str = "random_labels"
    seed: int = 0
    budget_s: float = 180.0

    def build(self) -> tuple[Network, np.ndarray, np.ndarray]:
        """(net, X, y), seeded."""
        from .. import data as gdata
        from ..model.embeddings import RandomFeatures

        X, y = getattr(gdata, self.data)(n=self.n, d=self.d, seed=self.seed)
        emb = {} if self.D is None else {"embedding": RandomFeatures(D=self.D)}
        net = Network(d=self.d, width=self.width, activation=self.activation, seed=self.seed, **emb)
        return net, X, y

    @property
    def kinked(self) -> bool:
        """ReLU-type σ: the flow is non-smooth, the reference is ``method="filippov"``."""
        return self.activation in KINKED

    def describe(self) -> dict:
        return {"key": self.key, "name": self.name, "n": self.n, "d": self.d, "m": self.width,
                "D": self.D or self.d, "activation": self.activation, "data": self.data, "seed": self.seed,
                "t1": self.t1, "times": list(self.times), "budget_s": self.budget_s}


def accuracy_problems(mode: str) -> list[BenchProblem]:
    """The problem set for ``mode`` in ("tiny", "quick", "full")."""
    check_mode(mode)
    if mode == "tiny":
        return [BenchProblem("tiny", "tiny tanh (d=8, n=6, m=32)", n=6, d=8, width=32, t1=4.0,
                             times=(1.0, 2.0, 4.0), budget_s=60.0)]
    if mode == "quick":
        return [
            BenchProblem("exp1_n20", "Exp 1 tanh n=20 (m=256)", n=20, d=20, width=256, t1=20.0,
                         times=(4.0, 10.0, 20.0), budget_s=45.0),
            BenchProblem("p3l_erf", "P-3L erf (n=40, m=D=128)", n=40, d=20, width=128, D=128, activation="erf",
                         data="wei2019", t1=20.0, times=(4.0, 10.0, 20.0), budget_s=45.0),
            BenchProblem("long", "long horizon: Exp 1 n=20, t=500 (m=128)", n=20, d=20, width=128, t1=500.0,
                         times=(100.0, 250.0, 500.0), budget_s=60.0),
            BenchProblem("p3l_relu", "P-3L ReLU (Exp 3 setting, n=20, m=D=64)", n=20, d=50, width=64, D=64,
                         activation="relu", data="wei2019", t1=20.0, times=(4.0, 10.0, 20.0), budget_s=60.0),
        ]
    exp1 = [BenchProblem(f"exp1_n{n}", f"Exp 1 tanh n={n} (m=512)", n=n, d=20, width=512, t1=50.0,
                         times=(10.0, 25.0, 50.0), budget_s=170.0) for n in (20, 40, 80)]
    return exp1 + [
        BenchProblem("p3l_erf", "P-3L erf (n=100, m=D=256)", n=100, d=20, width=256, D=256, activation="erf",
                     data="wei2019", t1=50.0, times=(10.0, 25.0, 50.0), budget_s=170.0),
        BenchProblem("long", "long horizon: Exp 1 n=40, t=2000 (m=256)", n=40, d=20, width=256, t1=2000.0,
                     times=(400.0, 1000.0, 2000.0), budget_s=260.0),
        BenchProblem("p3l_relu", "P-3L ReLU (Exp 3 setting, n=50, m=D=128)", n=50, d=50, width=128, D=128,
                     activation="relu", data="wei2019", t1=50.0, times=(10.0, 25.0, 50.0), budget_s=240.0),
    ]


def experiment1_demo(mode: str) -> BenchProblem:
    """Experiment-1 sizes for the solver-overhead measurement (the demo problem: m = 1024, n = d = 20)."""
    check_mode(mode)
    if mode == "tiny":
        return BenchProblem("demo_tiny", "tiny tanh (d=8, n=6, m=32)", n=6, d=8, width=32, t1=4.0, times=(4.0,))
    return BenchProblem("demo", "Exp 1 demo (d=n=20, m=1024)", n=20, d=20, width=1024,
                        t1=100.0 if mode == "full" else 30.0, times=(100.0,) if mode == "full" else (30.0,))


__all__ = ["BenchProblem", "accuracy_problems", "experiment1_demo"]
