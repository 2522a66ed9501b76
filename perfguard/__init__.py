"""perfguard: latency regression checks that catch a real slowdown on a busy CI runner and stay quiet otherwise.

Failure mode VIII (Reranker on the Request Path) has a CI half: a change that makes the request path
3x slower ships unnoticed because absolute milliseconds on a shared runner swing by more than 3x
between runs. The fix here is statistical, not a wider tolerance:

* **paired, matched reference** (:func:`measure`): each workload is timed interleaved, round by round,
  with a reference of the same kind of work and the same threading (a raw model forward for a
  model workload, a numpy + Python loop for a numpy kernel), so load that slows one slows both;
* **robust statistic**: the ratio of the *fastest* round of each (noise only ever adds time, so the
  minimum over many short rounds estimates the unloaded cost);
* **confirm before failing** (:class:`Guard`): a ratio over the limit is re-measured; only a
  regression that every confirmation repeats is reported;
* **baselines per machine class** (:class:`BaselineStore`): CPU model + the SIMD flags that change
  kernels (AVX2, AVX-512, BF16, AMX), recorded with ``record``; another class falls back to the
  closest recorded one with a wider tolerance, said in the report.

Proof under load: ``ragfix perf proof --runs 20 --load 1`` (catch rate of injected 1.5x/2x/3x
slowdowns and the false-failure rate of clean code, with one core kept busy).

Lift-out needs: nothing (numpy and the standard library; pytest only for ``pytest_plugin``). The
example below runs from a bare copy in ``tests/unit/test_liftout.py``.

Example::

    import numpy as np
    from perfguard import BaselineStore, Guard, slowed

    x = np.random.default_rng(0).standard_normal((64, 64))
    guard = Guard(BaselineStore("perf_baseline.json"))
    guard.record("my_matmul", lambda: x @ x @ x, reference=lambda: x @ x)   # once, on a quiet machine
    verdict = guard.check("my_matmul", lambda: x @ x @ x, reference=lambda: x @ x)
    print(verdict.message)   # my_matmul: ok, ratio 1.9... <= limit 3.0...
    regressed = guard.check("my_matmul", slowed(lambda: x @ x @ x, 3.0), reference=lambda: x @ x)
"""
from perfguard.baseline import BaselineStore, MachineClass, machine_class
from perfguard.guard import Guard, Verdict
from perfguard.inject import slowed
from perfguard.measure import Measurement, measure

__all__ = ["BaselineStore", "Guard", "MachineClass", "Measurement", "Verdict", "machine_class", "measure", "slowed"]
