"""The test suite executes these notebooks (nbmake) at small sizes."""

import os

os.environ.setdefault("GFLOW_SMALL", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
