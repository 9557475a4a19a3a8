r"""Fused float64 kernels for tanh on the CPU, compiled on first use with the machine's C compiler.

Why: on the CPU the elementwise work of one evaluation — σ = tanh(H), r = α σᵀc − y, σ′ = 1 − σ² and
P = c σ′ r (eq. (10), EQUATIONS.md E3/E4), which weight and feature space share — took about 2.7 ns per entry
through torch (five to seven passes over (m, n), each a dispatch; float64 tanh through torch's sigmoid, as MKL's
tanh takes a slow generic path on AMD CPUs), as long as the (m, n)×(n, n) product itself at Experiment 1 sizes.
:func:`tanh_P_into` does it row by row in L1 — per training point a, tanh of H's column a with the dot product
c·σ in one vectorised loop, then P's column a in a second loop over the same 8 KB — one read of H and one write
of P: 56 → 21 µs at (m, n) = (1024, 20), 146 → 63 µs at (1024, 64), 1.9 → 0.8 ms at (2048, 400) (one thread,
AMD EPYC Zen 4).

tanh: e = exp(2u) = 2ᵏ (Q + rP)/(Q − rP) after the reduction 2u = k ln 2 + r, |r| ≤ ln 2 / 2 (the Padé form of
Cephes' exp, accurate to an ulp there), and tanh = (e − 1)/(e + 1) written as
((2ᵏ − 1)(Q + rP) + 2rP) / ((2ᵏ + 1)(Q + rP) − 2rP) — one division, and, at k = 0, rP/Q without cancellation,
so the error is a few ulp *relative* to tanh(u) everywhere (the sigmoid route's 2σ(2u) − 1 is only accurate
absolutely, near u = 0).  |u| is clamped to 20 (tanh(20) rounds to 1); NaN propagates.  No libm call: the loops
vectorise with the compiler's own instructions (``-O3 -march=native``; no ``-ffast-math``, so NaN and the order of
operations are kept; the compiler may contract a·b + c into fused multiply-adds).

The library is built once per machine (source, flags and CPU features in the file name) into
:func:`cache_dir` and loaded with :mod:`ctypes`, which releases the GIL during the calls.  Where no compiler
is found or the build fails, :func:`status` says why and gflow takes torch's route
(:func:`gflow.model.activations.float64_tanh_route`); ``GFLOW_NATIVE=0`` turns the kernels off.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from .._platform import cpuinfo

#: "0" turns the native kernels off in this process and the ones it starts
NATIVE_ENV = "GFLOW_NATIVE"
#: where the built library is kept (default: $XDG_CACHE_HOME/gflow or ~/.cache/gflow)
CACHE_ENV = "GFLOW_CACHE_DIR"

_SOURCE = r"""
#include <stdint.h>
#include <string.h>

static inline double gf_as_double(uint64_t u) { double d; memcpy(&d, &u, 8); return d; }
static inline uint64_t gf_as_bits(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }

/* tanh(x): with z = x clamped to [-20, 20], e = exp(2z) = 2^k a/b, a = q + p, b = q - p, p = r P(r^2), q = Q(r^2)
   (Cephes' exp on |r| <= ln2/2), tanh = (e - 1)/(e + 1) = N/D with N = (2^k - 1) a + 2p (= 2p at k = 0: no
   cancellation near 0) and D = 2^k a + b, kept to [-1, 1] (N/D rounds to 1 + 2^-52 near saturation: 1 - s^2 < 0) */
static inline double gf_tanh1(double x) {
    double z = x > 20.0 ? 20.0 : (x < -20.0 ? -20.0 : x);     /* NaN passes through */
    const double shift = 0x1.8p52, two_log2e = 0x1.71547652b82fep1;
    const double ln2hi = 0x1.62e42fefa39efp-1, ln2lo = 0x1.abc9e3b39803fp-56;
    double kd = z * two_log2e + shift;
    uint64_t ki = gf_as_bits(kd);                               /* k in the low bits */
    kd -= shift;
    double r = 2.0 * z - kd * ln2hi;
    r = r - kd * ln2lo;
    double rr = r * r;
    double p = r * ((1.26177193074810590878e-4 * rr + 3.02994407707441961300e-2) * rr
                    + 9.99999999999999999910e-1);
    double q = ((3.00198505138664455042e-6 * rr + 2.52448340349684104192e-3) * rr
                + 2.27265548208155028766e-1) * rr + 2.00000000000000000009e0;
    double scale = gf_as_double((ki + 1023u) << 52);           /* 2^k, |k| <= 58 */
    double a = q + p;
    double t = ((scale - 1.0) * a + 2.0 * p) / (scale * a + (q - p));
    return t > 1.0 ? 1.0 : (t < -1.0 ? -1.0 : t);             /* rounding must not leave [-1, 1] */
}

/* s = tanh(u) and, if ds, ds = 1 - s^2 over n entries (u may be s) */
void gf_tanh(const double *u, double *s, double *ds, int64_t n) {
    if (ds) {
        #pragma omp simd
        for (int64_t i = 0; i < n; i++) { double v = gf_tanh1(u[i]); s[i] = v; ds[i] = 1.0 - v * v; }
    } else {
        #pragma omp simd
        for (int64_t i = 0; i < n; i++) s[i] = gf_tanh1(u[i]);
    }
}

/* s = tanh(u) and d = |u - u0| over n entries in one pass (d may be u; the recorder's test block: sigma of the test
   features for the outputs, and their movement from t = 0, without two more passes over them) */
void gf_tanh_absdiff(const double *u, const double *u0, double *s, double *d, int64_t n) {
    #pragma omp simd
    for (int64_t i = 0; i < n; i++) { double v = u[i], w = v - u0[i]; s[i] = gf_tanh1(v); d[i] = __builtin_fabs(w); }
}

/* For each a < n (entries i < m of H's column a at H + a*ldh, unit stride): s = tanh(H_a), r_a = alpha c.s - y_a,
   P_a = c (1 - s^2) r_a (times_r) or c (1 - s^2), and, if ds, ds_a = 1 - s^2 (s kept in P between the loops) */
void gf_tanh_P(const double *H, int64_t ldh, double *P, int64_t ldp, double *ds, int64_t ldd, const double *c,
               const double *y, double alpha, double *r, int64_t m, int64_t n, int times_r) {
    for (int64_t a = 0; a < n; a++) {
        const double *h = H + a * ldh;
        double *p = P + a * ldp;
        double acc = 0.0;
        #pragma omp simd reduction(+:acc)
        for (int64_t i = 0; i < m; i++) { double v = gf_tanh1(h[i]); p[i] = v; acc += c[i] * v; }
        double ra = alpha * acc - y[a];
        r[a] = ra;
        double f = times_r ? ra : 1.0;
        if (ds) {
            double *d = ds + a * ldd;
            #pragma omp simd
            for (int64_t i = 0; i < m; i++) { double v = p[i], g = 1.0 - v * v; d[i] = g; p[i] = c[i] * g * f; }
        } else {
            #pragma omp simd
            for (int64_t i = 0; i < m; i++) { double v = p[i]; p[i] = c[i] * (1.0 - v * v) * f; }
        }
    }
}

/* DOP853's error sums (Engine._error, RMS norm): absy1 = |y1| + a (a = atol/rtol: av[i] if av, else as), and with
   sc = max(absy, absy1) (NaN if either is), out[0] = sum (e5/sc)^2, out[1] = sum (e3/sc)^2 */
static inline void gf_err853_1(const double *absy, const double *y1, const double *e5, const double *e3, double a,
                               double *absy1, int64_t i, double *s5, double *s3) {
    double v = y1[i];
    double b = (v < 0.0 ? -v : v) + a;
    absy1[i] = b;
    double x = absy[i];
    double sc = (x != x || b != b) ? x + b : (x > b ? x : b);
    double u = e5[i] / sc, w = e3[i] / sc;                      /* (not one reciprocal: 1/sc overflows for a
                                                                   subnormal sc, and torch divides) */
    *s5 += u * u;
    *s3 += w * w;
}

void gf_err853(const double *absy, const double *y1, const double *e5, const double *e3, const double *av,
               double as, double *absy1, double *out, int64_t n) {
    double s5 = 0.0, s3 = 0.0;
    if (av) {
        #pragma omp simd reduction(+:s5, s3)
        for (int64_t i = 0; i < n; i++) gf_err853_1(absy, y1, e5, e3, av[i], absy1, i, &s5, &s3);
    } else {
        #pragma omp simd reduction(+:s5, s3)
        for (int64_t i = 0; i < n; i++) gf_err853_1(absy, y1, e5, e3, as, absy1, i, &s5, &s3);
    }
    out[0] = s5;
    out[1] = s3;
}

/* out[0] = sum (a1 - b1)^2, out[1] = sum (a2 - b2)^2 (Hairer's stiffness estimate: two distances, one pass) */
void gf_dist2(const double *a1, const double *b1, const double *a2, const double *b2, double *out, int64_t n) {
    double s1 = 0.0, s2 = 0.0;
    #pragma omp simd reduction(+:s1, s2)
    for (int64_t i = 0; i < n; i++) {
        double u = a1[i] - b1[i], w = a2[i] - b2[i];
        s1 += u * u;
        s2 += w * w;
    }
    out[0] = s1;
    out[1] = s2;
}
"""

_FLAGS = ("-O3", "-fno-math-errno", "-fopenmp-simd", "-fPIC", "-shared")
_NATIVE_ARCH = ("-march=native",)  # tried first; without it where the compiler refuses it


def cache_dir() -> Path:
    """Where the library is built: :data:`CACHE_ENV`, else $XDG_CACHE_HOME/gflow, else ~/.cache/gflow."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gflow"


def _compiler() -> str | None:
    """$CC where set (and only it), else Python's own compiler, cc, gcc or clang, whichever is found first."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"].split(" ")[0])
    for name in ((sysconfig.get_config_var("CC") or "").split(" ")[0], "cc", "gcc", "clang"):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def _cpu_flags() -> str:
    """The CPU's feature flags from /proc/cpuinfo ("" where unknown: not Linux)."""
    info = cpuinfo()
    return info.get("flags", "") or info.get("Features", "")


def _machine_key() -> str:
    """The CPU's identity as far as ``-march=native`` cares (a shared home directory may see several machines)."""
    parts = [platform.machine(), sys.platform, _cpu_flags(), cpuinfo().get("model name", "") or platform.processor()]
    return "|".join(parts)


def _build(target: Path, arch: tuple[str, ...]) -> str | None:
    """Compile :data:`_SOURCE` into ``target`` (atomically: concurrent builders each write their own file and
    rename it); None on success, else why not."""
    cc = _compiler()
    if cc is None:
        cc_env = os.environ.get("CC")
        return f"no C compiler found (CC={cc_env!r})" if cc_env else "no C compiler found (set CC)"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, src = tempfile.mkstemp(suffix=".c", dir=target.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(_SOURCE)
    out = src[:-2] + ".so"
    why = "?"
    try:
        for flags in dict.fromkeys((arch, ())):  # (without -march=native where the compiler refuses it)
            try:
                proc = subprocess.run([cc, *flags, *_FLAGS, src, "-o", out], capture_output=True, text=True,
                                      timeout=120)
            except (OSError, subprocess.SubprocessError) as exc:
                why = f"{cc} failed: {type(exc).__name__}: {exc}"
                continue
            if proc.returncode == 0:
                os.replace(out, target)
                return None
            why = f"{cc} exited with {proc.returncode}: {proc.stderr.strip()[-400:]}"
        return why
    finally:
        for f in (src, out):
            try:
                os.unlink(f)
            except OSError:
                pass


def _private_temp_dir() -> Path:
    """A per-user folder in the temporary directory, created with mode 0700; refused (OSError) if it exists but is
    not this user's or others may write to it (a predictable name in a world-writable place: another user could
    plant a library there)."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    folder = Path(tempfile.gettempdir()) / f"gflow-{uid if uid is not None else 'user'}"
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = folder.lstat()
    if not stat.S_ISDIR(st.st_mode) or (uid is not None and st.st_uid != uid) or st.st_mode & 0o022:
        raise PermissionError(f"{folder} is not a private folder of this user")
    return folder


@functools.lru_cache(maxsize=1)
def _library() -> tuple[object | None, str]:
    """(the loaded library or None, a line saying where it came from or why it is off); once per process."""
    if os.environ.get(NATIVE_ENV, "1").strip() == "0":
        return None, f"off ({NATIVE_ENV}=0)"
    try:
        import ctypes
    except ImportError as exc:  # (a Python built without _ctypes)
        return None, f"off (no ctypes: {exc})"
    # -march=native only where the CPU's features are known (and in the file name): a library built for a newer
    # CPU, found in a shared cache directory by an older one, would die of an illegal instruction
    arch = _NATIVE_ARCH if _cpu_flags() else ()
    key = hashlib.sha256("\n".join([_SOURCE, " ".join(_FLAGS + arch), _machine_key()]).encode()).hexdigest()
    name = f"gflow_native_{key[:20]}.so"
    errors = []
    for where in (cache_dir, _private_temp_dir):  # the cache directory, else (read-only) a private temporary one
        try:
            folder = where()
            target = folder / name
            if not target.exists():
                why = _build(target, arch)
                if why is not None:
                    return None, f"off (build failed: {why})"
            lib = ctypes.CDLL(str(target))
            break
        except OSError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    else:
        return None, f"off ({'; '.join(errors)})"
    vp, lg, db = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
    lib.gf_tanh.argtypes = [vp, vp, vp, lg]
    lib.gf_tanh.restype = None
    lib.gf_tanh_absdiff.argtypes = [vp, vp, vp, vp, lg]
    lib.gf_tanh_absdiff.restype = None
    lib.gf_tanh_P.argtypes = [vp, lg, vp, lg, vp, lg, vp, vp, db, vp, lg, lg, ctypes.c_int]
    lib.gf_tanh_P.restype = None
    lib.gf_err853.argtypes = [vp, vp, vp, vp, vp, db, vp, vp, lg]
    lib.gf_err853.restype = None
    lib.gf_dist2.argtypes = [vp, vp, vp, vp, vp, lg]
    lib.gf_dist2.restype = None
    return lib, f"on ({target})"


def available() -> bool:
    """Whether the native kernels are built and loaded in this process (builds them on the first call)."""
    return _library()[0] is not None


def status(path: bool = True) -> str:
    """"on (path)" or "off (why)" — or "not loaded" where nothing in this process has asked for the kernels (no
    build for the provenance alone).  ``path=False``: the library's file name only, "on (gflow_native_<key>.so)" —
    what run files record (the key hashes the source, flags and CPU features; the folder is the user's home)."""
    if _library.cache_info().currsize == 0:
        return "not loaded"
    lib, line = _library()
    if lib is not None and not path:
        return f"on ({Path(lib._name).name})"  # (ctypes keeps the path it loaded)
    return line


def _dense_like(u: torch.Tensor, v: torch.Tensor) -> bool:
    """u and v are float64 CPU tensors of one shape and strides whose entries fill their span (any order)."""
    if v.dtype != torch.float64 or v.device.type != "cpu" or v.shape != u.shape or v.stride() != u.stride():
        return False
    expected = 1
    for st, sz in sorted(zip(u.stride(), u.shape)):
        if sz == 1:
            continue
        if st != expected:
            return False
        expected *= sz
    return True


def tanh_into(u: torch.Tensor, s: torch.Tensor, ds: torch.Tensor | None = None) -> bool:
    """s = tanh(u) and, given ``ds``, ds = 1 − s²; False (nothing written) where the tensors do not suit: not
    float64 on the CPU, or not of one dense layout."""
    lib = _library()[0]
    if lib is None or u.dtype != torch.float64 or u.device.type != "cpu" or not _dense_like(u, s):
        return False
    if ds is not None and not _dense_like(u, ds):
        return False
    lib.gf_tanh(u.data_ptr(), s.data_ptr(), None if ds is None else ds.data_ptr(), u.numel())
    return True


def tanh_absdiff_into(u: torch.Tensor, u0: torch.Tensor, s: torch.Tensor, d: torch.Tensor) -> bool:
    """s = tanh(u) and d = |u − u0| in one pass (``d`` may be ``u``), the same values as :func:`tanh_into` and
    ``torch.sub(u, u0).abs_()``; False (nothing written) where the tensors do not suit: not float64 on the CPU, or
    not of one dense layout."""
    lib = _library()[0]
    if lib is None or u.dtype != torch.float64 or u.device.type != "cpu" or not all(
            _dense_like(u, x) for x in (u0, s, d)):
        return False
    lib.gf_tanh_absdiff(u.data_ptr(), u0.data_ptr(), s.data_ptr(), d.data_ptr(), u.numel())
    return True


_F64 = torch.float64


def _columns(x: torch.Tensor, m: int, n: int) -> bool:
    """x is a float64 CPU (m, n) tensor whose columns are contiguous and do not overlap."""
    if x.dtype is not _F64 or not x.is_cpu or x.shape != (m, n):
        return False
    s0, s1 = x.stride()
    return (s0 == 1 or m == 1) and (s1 >= m or n == 1)


def _vector(v: torch.Tensor, k: int) -> bool:
    return v.dtype is _F64 and v.is_cpu and v.shape == (k,) and (v.stride(0) == 1 or k == 1)


#: from this many entries of H on, the columns are split over torch's thread count (each column's r, P and σ′ are
#: its own: the result is the same bit for bit); below it the pool's hand-off costs more than it saves
PARALLEL_MIN_ENTRIES = 1 << 20
_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, pool): rebuilt in a forked child


def _pool(workers: int) -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] != workers:
        if _POOL is not None and _POOL[0] == os.getpid():
            _POOL[2].shutdown(wait=False)
        _POOL = (os.getpid(), workers, ThreadPoolExecutor(workers, thread_name_prefix="gflow-native"))
    return _POOL[2]


def tanh_P_into(H: torch.Tensor, P: torch.Tensor, r: torch.Tensor, c: torch.Tensor, y: torch.Tensor,
                alpha: float, ds: torch.Tensor | None = None, times_r: bool = True,
                threads: int | None = None) -> bool:
    """P = c σ′(H) r (``times_r``) or c σ′(H), r = α σ(H)ᵀc − y, with σ = tanh, and σ′ into ``ds`` when given, in
    one read of H and one write of P (columns in L1); False (nothing written) where the tensors do not suit: not
    float64 on the CPU, or H, P, ds not column-major (m, n) — as the feature state's "nm" layout and weight space's
    CPU buffers are — or c (m,), y, r (n,) not contiguous.  From :data:`PARALLEL_MIN_ENTRIES` on, the columns are
    split over ``threads`` (default: torch's thread count) Python threads (ctypes releases the GIL): (4096, 600)
    3.6 → 3.2 ms with 2 threads on a 2-vCPU machine (one core's two hyperthreads; the kernel is compute-bound)."""
    lib = _library()[0]
    if lib is None or H.dim() != 2:
        return False
    m, n = H.shape
    if not (_columns(H, m, n) and _columns(P, m, n) and (ds is None or _columns(ds, m, n))
            and _vector(c, m) and _vector(y, n) and _vector(r, n)):
        return False
    hs, ps, dstride = H.stride(1), P.stride(1), 0 if ds is None else ds.stride(1)
    hp, pp, dp, rp, yp, cp = (H.data_ptr(), P.data_ptr(), 0 if ds is None else ds.data_ptr(), r.data_ptr(),
                              y.data_ptr(), c.data_ptr())
    tr = 1 if times_r else 0

    def columns(a0: int, a1: int) -> None:  # (byte offsets: 8 per float64)
        lib.gf_tanh_P(hp + 8 * a0 * hs, hs, pp + 8 * a0 * ps, ps, (dp + 8 * a0 * dstride) if dp else None,
                      dstride, cp, yp + 8 * a0, alpha, rp + 8 * a0, m, a1 - a0, tr)

    workers = torch.get_num_threads() if threads is None else threads
    k = min(n, workers)
    if k <= 1 or m * n < PARALLEL_MIN_ENTRIES:
        columns(0, n)
        return True
    bounds = [n * j // k for j in range(k + 1)]
    pool = _pool(workers - 1)
    futures = [pool.submit(columns, bounds[j], bounds[j + 1]) for j in range(1, k)]
    columns(bounds[0], bounds[1])
    for f in futures:
        f.result()
    return True


def _flat64(*xs: torch.Tensor) -> bool:
    """Every x is a contiguous float64 CPU vector of one length."""
    n = xs[0].shape
    return all(x.dtype is _F64 and x.is_cpu and x.dim() == 1 and x.shape == n and x.is_contiguous() for x in xs)


class Sums:
    """A reusable pair of float64 sums written by :func:`err853_into` and :func:`dist2_into` (read without a
    device sync: they are host memory)."""

    def __init__(self):
        try:
            import ctypes
        except ImportError:  # (no native library then: err853_into and dist2_into return False)
            self.buf, self.ptr = [0.0, 0.0], None
            return
        self.buf = (ctypes.c_double * 2)()
        self.ptr = ctypes.addressof(self.buf)

    def values(self) -> tuple[float, float]:
        return self.buf[0], self.buf[1]


def err853_into(absy: torch.Tensor, y1: torch.Tensor, e5: torch.Tensor, e3: torch.Tensor, a,
                absy1: torch.Tensor, sums: Sums) -> bool:
    """DOP853's error sums in one pass (see the C source): absy1 = |y1| + a, Σ (e5/sc)², Σ (e3/sc)² into ``sums``
    with sc = max(absy, absy1); ``a`` a float or a vector like y1.  False (nothing written) where the tensors do
    not suit (not contiguous float64 CPU vectors of one length)."""
    lib = _library()[0]
    vec = isinstance(a, torch.Tensor)
    if lib is None or not (_flat64(absy, y1, e5, e3, absy1, a) if vec else _flat64(absy, y1, e5, e3, absy1)):
        return False
    lib.gf_err853(absy.data_ptr(), y1.data_ptr(), e5.data_ptr(), e3.data_ptr(), a.data_ptr() if vec else None,
                  0.0 if vec else float(a), absy1.data_ptr(), sums.ptr, y1.shape[0])
    return True


def dist2_into(a1: torch.Tensor, b1: torch.Tensor, a2: torch.Tensor, b2: torch.Tensor, sums: Sums) -> bool:
    """Σ (a1 − b1)² and Σ (a2 − b2)² into ``sums`` in one pass; False where the tensors do not suit."""
    lib = _library()[0]
    if lib is None or not _flat64(a1, b1, a2, b2):
        return False
    lib.gf_dist2(a1.data_ptr(), b1.data_ptr(), a2.data_ptr(), b2.data_ptr(), sums.ptr, a1.shape[0])
    return True
