"""Network names, read without trax: `parse` and the names of a sweep's grid.

The rules are those of `wrn_trax.models` (see its docstring), which re-exports
`parse`, `Spec`, `BLOCKS` and `EXPLICIT_BLOCKS_PER_GROUP`; `wrn_trax.sweep`
re-exports `FAMILIES` and `member_models`. They live here, apart from the
trax layers, so that the command line checks a model name or a grid before
it imports TensorFlow, trax or jax.
"""
import dataclasses
import itertools
import re

# Block types of the paper's Table 2 (B(3,3) first: the default) and the
# deepening series of Table 3; a block is the kernel sizes of its convs.
BLOCKS = ((3, 3), (3, 1, 3), (1, 3, 1), (1, 3), (3, 1), (3, 1, 1),
          (3,), (3, 3, 3), (3, 3, 3, 3))

# Table 3 labels that count convolutions (N = 12 / l at d = 40, k = 2) rather
# than following the general N = (d - 4) / 6; see wrn_trax.models' docstring.
EXPLICIT_BLOCKS_PER_GROUP = {
    'WRN-40-2-B(3)': 12,
    'WRN-40-2-B(3,3,3)': 4,
    'WRN-40-2-B(3,3,3,3)': 3,
}

_NAME_RE = re.compile(
    r'^(?P<stock>stock-)?wrn-(?P<depth>\d+)-(?P<k>-?\d+)'
    r'(?:-b\((?P<block>[^)]*)\))?$', re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Spec:
  """A parsed network name.

  Attributes:
    family: 'paper' (`WideResnetPaper`) or 'stock' (`Stock`).
    depth: int, d in the name.
    widen_factor: int, k.
    block: tuple of kernel sizes; (3, 3) for stock.
    blocks_per_group: int, N.
  """
  family: str
  depth: int
  widen_factor: int
  block: tuple
  blocks_per_group: int

  @property
  def name(self):
    """The canonical name; `parse(spec.name) == spec`."""
    if self.family == 'stock':
      return f'stock-WRN-{self.depth}-{self.widen_factor}'
    base = f'WRN-{self.depth}-{self.widen_factor}'
    return base if self.block == (3, 3) else f'{base}-{_block_str(self.block)}'


def _block_str(block):
  return 'B(' + ','.join(str(k) for k in block) + ')'


def parse(name):
  """Reads a network name; the only place names are interpreted.

  Args:
    name: 'WRN-d-k', 'WRN-d-k-B(a,b,...)' or 'stock-WRN-d-k'
      (case-insensitive), or a `Spec` (returned as is).

  Returns:
    A `Spec`. N = (d - 4) / 6, except the Table 3 presets in
    `EXPLICIT_BLOCKS_PER_GROUP` (see the module docstring).

  Raises:
    ValueError: unparseable name, depth not 6N + 4, k <= 0, unknown block,
      or a block given for a stock name.
  """
  if isinstance(name, Spec):
    return name
  if not isinstance(name, str):
    raise ValueError(f'a network name must be a string; got {name!r}')
  match = _NAME_RE.match(name.strip().replace(' ', ''))
  if not match:
    raise ValueError(
        f'cannot parse network name {name!r}; expected WRN-d-k, '
        'WRN-d-k-B(3,1,3) or stock-WRN-d-k, e.g. WRN-28-10')
  depth, k = int(match['depth']), int(match['k'])
  family = 'stock' if match['stock'] else 'paper'
  if k < 1:
    raise ValueError(f'widen factor k must be an int >= 1; got {k} in {name!r}')
  if depth < 10 or (depth - 4) % 6:
    raise ValueError(f'depth must be 6N+4 with N >= 1, e.g. 16, 22, 28, 40; '
                     f'got {depth} in {name!r}')
  block = (3, 3)
  if match['block'] is not None:
    if family == 'stock':
      raise ValueError(f'stock names take no block (stock is B(3,3)): {name!r}')
    try:
      block = tuple(int(kernel) for kernel in match['block'].split(','))
    except ValueError:
      block = None
    if block not in BLOCKS:
      raise ValueError(f'unknown block in {name!r}; allowed: '
                       + ', '.join(_block_str(b) for b in BLOCKS))
  n = EXPLICIT_BLOCKS_PER_GROUP.get(
      f'WRN-{depth}-{k}-{_block_str(block)}', (depth - 4) // 6)
  if family == 'stock':
    n = (depth - 4) // 6
  return Spec(family, depth, k, block, n)


# ------------------------------------------------------------------ grids ----

FAMILIES = ('stock', 'paper')


def member_models(widen_factors, depths=None, blocks=None, family='stock'):
  """Model names of a grid, e.g. ['stock-WRN-22-1', ...] or ['WRN-28-10']."""
  if family not in FAMILIES:
    raise ValueError(f'unknown family {family!r}; choose one of {FAMILIES}')
  widen_factors = nonempty('widen_factors', widen_factors)
  depths = nonempty('depths', depths or [22])
  if family == 'stock':
    if blocks not in (None, [], ['B(3,3)'], [(3, 3)]):
      raise ValueError("family='stock' has trax's own basic block; blocks= "
                       "needs family='paper'")
    names = [f'stock-WRN-{d}-{k}' for d in depths for k in widen_factors]
  else:
    blocks = nonempty('blocks', blocks or [(3, 3)])
    names = []
    for d, k, b in itertools.product(depths, widen_factors, blocks):
      b = _grid_block_str(b)
      names.append(f'WRN-{d}-{k}' + ('' if b == 'B(3,3)' else f'-{b}'))
  for n in names:
    parse(n)  # a depth that fits no WRN, k <= 0, a bad block: ValueError
  return names


def _grid_block_str(b):
  if isinstance(b, str):
    return b if b.upper().startswith('B(') else f'B({b})'
  return 'B(' + ','.join(str(int(x)) for x in b) + ')'


def nonempty(name, values):
  """`values` as a list; ValueError naming `name` if there are none."""
  values = list(values) if values is not None else []
  if not values:
    raise ValueError(f'{name} must name at least one value')
  return values
