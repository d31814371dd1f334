"""wrn_trax: Wide Residual Networks (Zagoruyko & Komodakis, 2016) with Trax.

Quick start::

  import wrn_trax
  frame = wrn_trax.sweep(widen_factors=[1, 2, 3, 4], dataset='digits',
                         recipe='smoke')
  wrn_trax.report.write_report('runs', out='results')

`wrn_trax.train(...)` trains one model; `wrn_trax.models`, `wrn_trax.data`
and `wrn_trax.report` hold the models, the data pipelines and the reports.
"""
from wrn_trax import _quiet

_quiet.silence_imports()

from wrn_trax import _compat  # pylint: disable=g-import-not-at-top

_compat.patch_jax()

__version__ = '0.1.0'

# pylint: disable=g-import-not-at-top,wrong-import-position
from wrn_trax import models
from wrn_trax import data
from wrn_trax import report
from wrn_trax import train  # a module you can call: wrn_trax.train(...)
from wrn_trax import sweep  # a module you can call: wrn_trax.sweep(...)
