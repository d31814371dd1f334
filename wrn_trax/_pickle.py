"""One restricted unpickler for the pickles wrn_trax reads from disk.

Two file formats are pickles: trax's checkpoint (`model.pkl.gz`, read by
`runio`) and the CIFAR "python version" batch files (read by `data`). A
pickle can name any importable global and call it, so both are read with
`RestrictedUnpickler`, which looks up only the globals its format needs and
refuses every other one before it is imported, so nothing in the file runs.

Each format is a small subclass that sets `allowed` (which globals, and what
each resolves to) and `refusal` (the error, with its advice, for anything
else).
"""

import pickle
from typing import Any, Callable, Mapping, Optional, Tuple

# (module, name) -> None: import it as pickle would; or a zero-argument
# callable that returns the object to use instead (a checked stand-in).
Allowed = Mapping[Tuple[str, str], Optional[Callable[[], Any]]]


class RestrictedUnpickler(pickle.Unpickler):
  """An Unpickler that resolves only the globals in `allowed`.

  Attributes:
    allowed: (module, name) -> None to import that global as pickle would, or
      a zero-argument callable returning what to use in its place.
    path: the file being read, for error messages.
  """

  allowed: Allowed = {}

  def __init__(self, file, path, encoding='ASCII'):
    super().__init__(file, encoding=encoding)
    self.path = path

  def refusal(self, module: str, name: str) -> Exception:
    """The error for a global not in `allowed`; subclasses give advice."""
    return pickle.UnpicklingError(f'{self.path}: refusing to load global {module}.{name}')

  def find_class(self, module, name):
    key = (module, name)
    if key not in self.allowed:
      raise self.refusal(module, name)
    stand_in = self.allowed[key]
    if stand_in is None:
      return super().find_class(module, name)
    return stand_in()
