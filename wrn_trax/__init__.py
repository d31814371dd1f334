"""wrn_trax: Wide Residual Networks (Zagoruyko & Komodakis, 2016) with Trax.

Quick start::

  import wrn_trax
  df = wrn_trax.sweep(widen_factors=[1, 2, 3, 4])
"""
from wrn_trax import _quiet

_quiet.silence_imports()

__version__ = '0.1.0'
