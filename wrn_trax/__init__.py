"""wrn_trax: Wide Residual Networks (Zagoruyko & Komodakis, 2016) with Trax.

Quick start::

  import wrn_trax
  frame = wrn_trax.sweep(widen_factors=[1, 2, 3, 4], dataset='digits',
                         recipe='smoke')
  wrn_trax.report.write_report('runs', out='results')

`wrn_trax.train(...)` trains one model; `wrn_trax.models`, `wrn_trax.data`
and `wrn_trax.report` hold the models, the data pipelines and the reports.

`import wrn_trax` is light: it imports none of TensorFlow, gym, trax or jax,
and each submodule is imported when it is first used (PEP 562). `report`,
`recipes`, `runio` and `data` (until it builds a pipeline or reads TFDS) stay
light. The first use of `models`, `train`, `sweep` or `optim` imports
TensorFlow, gym and trax, once, quietly, with trax's patches installed
(`_compat.ensure_trax`); importing trax yourself after that gets the same.
"""
import importlib

__version__ = '0.1.0'

# The submodules users reach as attributes of the package.
_SUBMODULES = ('models', 'data', 'report', 'train', 'sweep', 'recipes',
               'runio', 'optim', 'cli')

# What `from wrn_trax import *` gave before the imports became lazy.
__all__ = ('models', 'data', 'report', 'train', 'sweep')


def __getattr__(name):
  """Imports a submodule on first use: `wrn_trax.train(...)` works as before.

  `wrn_trax.train` and `wrn_trax.sweep` are modules you can call. Importing
  a submodule binds it as an attribute of the package, so this runs once per
  name.
  """
  if name in _SUBMODULES or name in ('_compat', '_quiet', '_names'):
    return importlib.import_module(f'{__name__}.{name}')
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
  return sorted(set(globals()) | set(_SUBMODULES))
