"""Wide Residual Networks as trax layers: trax's stock model and the paper's.

Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016,
https://arxiv.org/abs/1605.07146 (Tables 2-4 are quoted in `paper_networks`).

Two families, both returning log-probabilities:

* `Stock`: `trax.models.resnet.WideResnet` followed by `tl.LogSoftmax`, the
  model of the seed notebooks. It differs from the paper (see its docstring).
* `WideResnetPaper`: the paper's pre-activation WRN-n-k, built from
  `trax.layers`, with every block type of the paper's Tables 2 and 3.

Names are read in one place, `parse`:

* `WRN-d-k` is the paper's WRN with block B(3,3), depth d, widen factor k.
* `WRN-d-k-B(3,1,3)` names the block by its kernel sizes.
* `stock-WRN-d-k` is `Stock(widen_factor=k, n_blocks=(d - 4) / 6)`; trax's own
  docstring counts its layers as 6n + 4.

Names are case-insensitive. The general rule for blocks per group is
N = (d - 4) / 6 for every block type, so d must be 6N + 4 (10, 16, 22, 28, 40,
...). It is the rule of the paper's Table 2, where WRN-40-2-B(1,3,1) has six
three-conv blocks per group (1.4M parameters): the depth there labels the
network, it does not count its convolutions. The paper's Table 3 (deepening
factor l = 1..4 of WRN-40-2 at a constant 2.2M parameters) does count them:
N = 12 / l, so its labels 'WRN-40-2-B(3)', 'WRN-40-2-B(3,3,3)' and
'WRN-40-2-B(3,3,3,3)' mean N = 12, 4 and 3, which the general rule cannot give.
Those three names are presets in `EXPLICIT_BLOCKS_PER_GROUP` and override the
rule; any other depth or width with those blocks follows the general rule.
`WideResnetPaper` takes N directly for anything else.

`count_params` and `count_flops` need no data: the first initialises the model
on a `ShapeDtype` under `jax.eval_shape`, the second is analytic.
`markdown_table()` (also run by `python -m wrn_trax.models`) prints the
README's table of the paper's networks.
"""
import functools
import math

from wrn_trax import _compat
from wrn_trax import _names
from wrn_trax import _markdown

_compat.ensure_trax()  # TF and gym quietly, then trax, patched: before trax

# pylint: disable=g-import-not-at-top,wrong-import-position,wrong-import-order
import jax
import numpy as np
import pandas as pd
import trax
from trax import fastmath
from trax import layers as tl
from trax.models import resnet

from wrn_trax import precision as precision_lib
# pylint: enable=g-import-not-at-top,wrong-import-position,wrong-import-order

# Names are read by `_names` (no trax needed, so the command line checks them
# before importing trax); they are part of this module's interface.
BLOCKS = _names.BLOCKS
EXPLICIT_BLOCKS_PER_GROUP = _names.EXPLICIT_BLOCKS_PER_GROUP
Spec = _names.Spec
parse = _names.parse
_block_str = _names._block_str  # pylint: disable=protected-access


# Group widths are 16k, 32k, 64k, after a 16-channel stem conv; the second and
# third groups halve the resolution (paper, Table 1).
_GROUP_WIDTHS = (16, 32, 64)
_GROUP_STRIDES = (1, 2, 2)
_STEM_CHANNELS = 16
# Torch's BatchNorm momentum 0.1 (the paper's code) is 0.9 in trax's
# convention; trax's WideResnet uses 0.9 too (trax's BatchNorm default: 0.999).
_BN_MOMENTUM = 0.9
_MODES = ('train', 'eval', 'predict')


# ----------------------------------------------------------------- stock ----


def Stock(widen_factor, n_blocks=3, n_classes=10, mode='train'):
  """Trax's stock `WideResnet` with a `LogSoftmax` head (the seed notebooks').

  `trax.models.resnet.WideResnet` cites the WRN paper
  (https://arxiv.org/abs/1605.07146) but differs from it:

  * Residuals per group: the first block of a group has its own residual; the
    other n - 1 blocks are chained with no skip of their own and share ONE
    identity residual around all of them (`WideResnetGroup`). The paper has a
    residual around every block.
  * Shortcut: the first block of every group always has a 3x3 conv shortcut
    (with bias, on the raw block input, before BN-ReLU), even where the shape
    does not change (group 1 at k = 1). The paper uses identity shortcuts, and
    1x1 projections only where the shape changes.
  * Every conv, the stem included, has a bias; the paper's have none.
  * No dropout (the paper's best results use it between the convs of a block).
  * No input normalisation inside the model, like the paper's model; it is
    the data pipeline's job.
  * The head is a fixed 8x8 `AvgPool` ('VALID'), so only 32x32 inputs give
    the intended global pooling (24x24 fails, 64x64 changes the Dense size).

  BatchNorm momentum is 0.9 as in trax (the paper's Torch default).

  Args:
    widen_factor: int, k; the groups have 16k, 32k and 64k channels.
    n_blocks: int, blocks per group; trax counts 6 * n_blocks + 4 layers, so
      the default 3 is stock-WRN-22-k.
    n_classes: int, number of output classes.
    mode: 'train', 'eval' or 'predict'.

  Returns:
    A `tl.Serial` mapping NHWC images (32x32) to log-probabilities.
  """
  return tl.Serial(
      resnet.WideResnet(n_blocks=n_blocks, widen_factor=widen_factor,
                        n_output_classes=n_classes, mode=mode),
      tl.LogSoftmax(),
  )


# ---------------------------------------------------------------- paper ----


def _HeNormal(shape, rng):
  """He-normal kernel init, N(0, 2 / fan_in), fan_in = kh * kw * C_in (HWIO).

  As `kaiming_normal_` in the paper's code (He et al. 2015,
  https://arxiv.org/abs/1502.01852). Written out because trax 1.4.1's
  `KaimingNormalInitializer` leaves the receptive field out of fan_in for
  4-d kernels (its `_GetFans` multiplies by it only for 0-d shapes), which
  would give a 3x3 conv 3x the intended standard deviation.
  """
  shape = tuple(int(d) for d in shape)
  stddev = math.sqrt(2.0 / math.prod(shape[:-1]))
  return (fastmath.random.normal(rng, shape) * stddev).astype(np.float32)


def _Conv(channels, kernel, strides=(1, 1)):
  """Bias-free square 'SAME' conv with He-normal kernels (`_HeNormal`)."""
  return tl.Conv(channels, (kernel, kernel), strides, padding='SAME',
                 kernel_initializer=_HeNormal, use_bias=False)


def WideResnetPaperBlock(channels, strides=(1, 1), block=(3, 3), dropout=0.0,
                         projection=False, bn_momentum=_BN_MOMENTUM,
                         mode='train'):
  """A pre-activation residual block B(block) of the WRN paper.

  Each conv is preceded by BatchNorm and ReLU; dropout (if any) sits after the
  ReLU before every conv but the first, i.e. between the convs of the block
  (https://arxiv.org/abs/1605.07146, Sec. 2.4), so B(3) has no dropout.
  The stride goes on the first conv, also when that conv is 1x1 (B(1,3,1),
  B(1,3)), as the paper's Table 1 puts downsampling at the group's start.

  With `projection`, the shortcut is a bias-free 1x1 conv with the block's
  stride applied to the BN-ReLU'd input, as in the official code
  (szagoruyko/wide-residual-networks, pytorch/resnet.py); otherwise it is the
  identity on the raw input.

  Args:
    channels: int, output channels of every conv of the block.
    strides: pair of ints, stride of the first conv (and of the projection).
    block: tuple of kernel sizes, one per conv, e.g. (3, 1, 3).
    dropout: float in [0, 1), dropout rate between convs (train mode only).
    projection: bool, whether the shortcut is a 1x1 projection.
    bn_momentum: float, BatchNorm momentum (trax convention).
    mode: 'train', 'eval' or 'predict'.

  Returns:
    A list of layers computing one residual block.
  """
  first, *rest = block
  branch = [_Conv(channels, first, strides)]
  for kernel in rest:
    branch += [tl.BatchNorm(momentum=bn_momentum, mode=mode), tl.Relu()]
    if dropout:
      branch.append(tl.Dropout(rate=dropout, mode=mode))
    branch.append(_Conv(channels, kernel))
  preact = [tl.BatchNorm(momentum=bn_momentum, mode=mode), tl.Relu()]
  if projection:
    return [preact,
            tl.Residual(branch, shortcut=_Conv(channels, 1, strides))]
  return [tl.Residual(preact, branch)]


def WideResnetPaperGroup(n, in_channels, channels, strides=(1, 1),
                         block=(3, 3), dropout=0.0, bn_momentum=_BN_MOMENTUM,
                         mode='train'):
  """A group of `n` blocks at one width; only the first may project/stride.

  Args:
    n: int, number of blocks (N in the paper).
    in_channels: int, channels of the group's input.
    channels: int, channels of every block.
    strides: pair of ints, stride of the first block.
    block: tuple of kernel sizes of each block.
    dropout: float, dropout rate between convs.
    bn_momentum: float, BatchNorm momentum (trax convention).
    mode: 'train', 'eval' or 'predict'.

  Returns:
    A list of `n` blocks.
  """
  projection = in_channels != channels or tuple(strides) != (1, 1)
  kwargs = dict(block=block, dropout=dropout, bn_momentum=bn_momentum,
                mode=mode)
  return ([WideResnetPaperBlock(channels, strides, projection=projection,
                                **kwargs)] +
          [WideResnetPaperBlock(channels, **kwargs) for _ in range(n - 1)])


def WideResnetPaper(n_blocks, widen_factor, block=(3, 3), dropout=0.0,
                    n_classes=10, bn_momentum=_BN_MOMENTUM, mode='train'):
  """WRN-n-k of https://arxiv.org/abs/1605.07146 (Table 1), from trax layers.

  A bias-free 3x3 stem conv with 16 channels; three groups of `n_blocks`
  pre-activation blocks (`WideResnetPaperBlock`) with 16k, 32k and 64k
  channels and strides 1, 2, 2; BN-ReLU; global average pooling (any input
  size works); Dense; LogSoftmax. Shortcuts are identities except a 1x1
  projection where the shape changes. For a 2-conv block the depth is
  6 * n_blocks + 4. Conv kernels are He-normal initialised as in the paper's
  code; the Dense layer keeps trax's defaults.

  Args:
    n_blocks: int >= 1, blocks per group (N).
    widen_factor: int >= 1, k.
    block: tuple of kernel sizes, one of `BLOCKS`.
    dropout: float in [0, 1), dropout between the convs of each block.
    n_classes: int, number of output classes.
    bn_momentum: float, BatchNorm momentum (trax convention).
    mode: 'train', 'eval' or 'predict'; dropout is active only in 'train'.

  Returns:
    A `tl.Serial` mapping NHWC images to log-probabilities.

  Raises:
    ValueError: for arguments outside those listed above.
  """
  _check_args(n_blocks, widen_factor, block, dropout, n_classes, mode)
  block = tuple(block)
  groups = []
  in_channels = _STEM_CHANNELS
  for width, stride in zip(_GROUP_WIDTHS, _GROUP_STRIDES):
    channels = width * widen_factor
    groups.append(WideResnetPaperGroup(
        n_blocks, in_channels, channels, (stride, stride), block=block,
        dropout=dropout, bn_momentum=bn_momentum, mode=mode))
    in_channels = channels
  return tl.Serial(
      tl.ToFloat(),
      _Conv(_STEM_CHANNELS, 3),
      groups,
      tl.BatchNorm(momentum=bn_momentum, mode=mode),
      tl.Relu(),
      tl.Mean(axis=(1, 2)),  # global average pooling over H, W
      tl.Dense(n_classes),
      tl.LogSoftmax(),
  )


def _check_args(n_blocks, widen_factor, block, dropout, n_classes, mode):
  """Raises ValueError naming what is allowed."""
  if not isinstance(n_blocks, (int, np.integer)) or n_blocks < 1:
    raise ValueError(f'blocks per group must be an int >= 1; got {n_blocks!r}')
  if not isinstance(widen_factor, (int, np.integer)) or widen_factor < 1:
    raise ValueError(
        f'widen factor k must be an int >= 1; got {widen_factor!r}')
  if tuple(block) not in BLOCKS:
    raise ValueError(f'unknown block B{tuple(block)}; allowed: '
                     + ', '.join(_block_str(b) for b in BLOCKS))
  if not 0.0 <= dropout < 1.0:
    raise ValueError(f'dropout must be in [0, 1); got {dropout!r}')
  if not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
    raise ValueError(f'n_classes must be an int >= 1; got {n_classes!r}')
  if mode not in _MODES:
    raise ValueError(f'mode must be one of {_MODES}; got {mode!r}')


# ----------------------------------------------------------------- build ----


def build(name, n_classes=10, dropout=0.0, mode='train', precision='float32'):
  """Builds the network a name stands for.

  Args:
    name: a name `parse` reads, e.g. 'WRN-28-10', 'WRN-22-2-B(3,1,3)',
      'stock-WRN-22-1'.
    n_classes: int, number of output classes.
    dropout: float in [0, 1), dropout between convs; must be 0 for stock.
    mode: 'train', 'eval' or 'predict'.
    precision: 'float32', 'bfloat16' or 'float16': the dtype the convs and
      the Dense layer compute in (`wrn_trax.precision.cast_compute`; weights
      and everything else stay float32).

  Returns:
    A trax layer mapping NHWC images to log-probabilities.

  Raises:
    ValueError: for a bad name or argument.
  """
  spec = parse(name)
  if spec.family == 'stock':
    if dropout != 0:
      raise ValueError(f'stock models have no dropout; got dropout={dropout!r} '
                       f'for {spec.name} (use a WRN-d-k name)')
    _check_args(spec.blocks_per_group, spec.widen_factor, spec.block, 0.0,
                n_classes, mode)
    model = Stock(spec.widen_factor, n_blocks=spec.blocks_per_group,
                  n_classes=n_classes, mode=mode)
  else:
    model = WideResnetPaper(spec.blocks_per_group, spec.widen_factor,
                            block=spec.block, dropout=dropout,
                            n_classes=n_classes, mode=mode)
  return precision_lib.cast_compute(model, precision)


# ------------------------------------------------------- paper's tables ----

# (table, label, paper params in M, CIFAR-10 error %, CIFAR-100 error %),
# arXiv 1605.07146 Tables 2-4 (median of 5 runs; NaN where none is given).
_nan = float('nan')
PAPER_TABLES = (
    (2, 'WRN-40-2-B(1,3,1)', 1.4, 6.06, _nan),
    (2, 'WRN-40-2-B(3,1)', 1.2, 5.78, _nan),
    (2, 'WRN-40-2-B(1,3)', 1.3, 6.42, _nan),
    (2, 'WRN-40-2-B(3,1,1)', 1.3, 5.86, _nan),
    (2, 'WRN-28-2-B(3,3)', 1.5, 5.73, _nan),
    (2, 'WRN-22-2-B(3,1,3)', 1.1, 5.78, _nan),
    (3, 'WRN-40-2-B(3)', 2.2, 6.69, _nan),
    (3, 'WRN-40-2-B(3,3)', 2.2, 5.43, _nan),
    (3, 'WRN-40-2-B(3,3,3)', 2.2, 5.65, _nan),
    (3, 'WRN-40-2-B(3,3,3,3)', 2.2, 5.93, _nan),
    (4, 'WRN-40-1', 0.6, 6.85, 30.89),
    (4, 'WRN-40-2', 2.2, 5.33, 26.04),
    (4, 'WRN-40-4', 8.9, 4.97, 22.89),
    (4, 'WRN-40-8', 35.7, 4.66, _nan),
    (4, 'WRN-28-10', 36.5, 4.17, 20.50),
    (4, 'WRN-28-12', 52.5, 4.33, 20.43),
    (4, 'WRN-22-8', 17.2, 4.38, 21.22),
    (4, 'WRN-22-10', 26.8, 4.44, 20.75),
    (4, 'WRN-16-8', 11.0, 4.81, 22.07),
    (4, 'WRN-16-10', 17.1, 4.56, 21.59),
)

# The seed notebooks' stock models and the usual headline stock size.
_STOCK_NAMES = ('stock-WRN-22-1', 'stock-WRN-22-2', 'stock-WRN-28-10')


def _preset(name):
  spec = parse(name)
  if spec.family == 'stock':
    return functools.partial(Stock, spec.widen_factor,
                             n_blocks=spec.blocks_per_group)
  return functools.partial(WideResnetPaper, spec.blocks_per_group,
                           spec.widen_factor, block=spec.block)


# Name -> partial of the parametric builder; call with n_classes/dropout/mode.
PRESETS = {name: _preset(name)
           for name in [row[1] for row in PAPER_TABLES] + list(_STOCK_NAMES)}


def names():
  """Returns the preset names: the paper's Tables 2-4, then stock ones."""
  return list(PRESETS)


# ------------------------------------------------------ params and FLOPs ----


@functools.lru_cache(maxsize=None)
def _count_params(spec, n_classes):
  model = build(spec, n_classes=n_classes)
  signature = trax.shapes.ShapeDtype((1, 32, 32, 3), np.float32)
  shapes = jax.eval_shape(lambda rng: model.init(signature, rng=rng)[0],
                          jax.random.PRNGKey(0))
  return int(sum(math.prod(leaf.shape)
                 for leaf in jax.tree_util.tree_leaves(shapes)))


def count_params(name, n_classes=10):
  """Number of trainable weights, as trax counts them, without any data.

  Initialises the model on a (1, 32, 32, 3) `ShapeDtype` under
  `jax.eval_shape`, so only shapes are computed, and sums the sizes of the
  leaves of its weights (conv kernels and biases, BatchNorm scales and
  offsets, Dense). BatchNorm running statistics are state, not weights.

  Args:
    name: a network name (see `parse`).
    n_classes: int, number of output classes.

  Returns:
    int, the number of weights.
  """
  return _count_params(parse(name), n_classes)


def _convs(spec, input_shape=(32, 32, 3), n_classes=10):
  """Lists the network's convs and Dense as (H_out, W_out, kh, kw, c_in, c_out).

  Mirrors `WideResnetPaper` and trax's `WideResnet`; a Dense is a 1x1 'conv'
  on a 1x1 map. 'SAME' convs give ceil(H / stride) outputs.
  """
  h, w, c_in = input_shape
  out = [(h, w, 3, 3, c_in, _STEM_CHANNELS)]
  c_in = _STEM_CHANNELS
  for width, stride in zip(_GROUP_WIDTHS, _GROUP_STRIDES):
    c = width * spec.widen_factor
    for i in range(spec.blocks_per_group):
      s = stride if i == 0 else 1
      h_out, w_out = -(-h // s), -(-w // s)
      if spec.family == 'stock':
        if i == 0:  # 3x3 conv shortcut on every group's first block
          out.append((h_out, w_out, 3, 3, c_in, c))
      elif c_in != c or s != 1:  # 1x1 projection where the shape changes
        out.append((h_out, w_out, 1, 1, c_in, c))
      x = c_in
      for kernel in spec.block:
        out.append((h_out, w_out, kernel, kernel, x, c))
        x = c
      h, w, c_in = h_out, w_out, c
  out.append((1, 1, 1, 1, c_in, n_classes))
  return out


def count_flops(name, input_shape=(32, 32, 3), n_classes=10):
  """Multiply-adds per image of the convs and the Dense layer (analytic).

  Each conv costs H_out * W_out * kh * kw * C_in * C_out multiply-adds
  ('SAME' padding counted as if the padded zeros were multiplied); the Dense
  costs C_in * n_classes. Excluded: BatchNorm, ReLU, bias and residual adds,
  dropout, pooling and the softmax (all linear in the activations, a few
  percent at most).

  Args:
    name: a network name (see `parse`).
    input_shape: (H, W, C) of one image; stock models need (32, 32, C).
    n_classes: int, number of output classes.

  Returns:
    int, multiply-adds per image.

  Raises:
    ValueError: for a stock model on an input other than 32x32.
  """
  spec = parse(name)
  if spec.family == 'stock' and tuple(input_shape[:2]) != (32, 32):
    raise ValueError('stock models pool a fixed 8x8 map and need 32x32 input; '
                     f'got {tuple(input_shape)}')
  return int(sum(h * w * kh * kw * ci * co
                 for h, w, kh, kw, ci, co in _convs(spec, input_shape,
                                                    n_classes)))


def describe(name):
  """One line: canonical name, family, N, block, params and FLOPs at 32x32."""
  spec = parse(name)
  return (f'{spec.name}: {spec.family}, N={spec.blocks_per_group} '
          f'{_block_str(spec.block)} blocks per group, k={spec.widen_factor}, '
          f'{count_params(spec):,} params, {count_flops(spec) / 1e9:.2f} '
          'GMAC/image (32x32x3)')


def paper_networks(counts=True):
  """The networks of the paper's Tables 2, 3 and 4 with our counts.

  Zagoruyko & Komodakis, https://arxiv.org/abs/1605.07146: Table 2 (block
  types, k = 2, CIFAR-10), Table 3 (deepening factor of WRN-40-2, CIFAR-10),
  Table 4 (B(3,3) without dropout, CIFAR-10 and CIFAR-100). Errors are the
  paper's test error %, median of 5 runs.

  Args:
    counts: also count our parameters (builds each network's shapes: about a
      second apiece on a CPU). With False, `params` and `params_m` are None;
      reports that only need the paper's figures pass False.

  Returns:
    A DataFrame with one row per network and columns table, name, block,
    depth, widen_factor, blocks_per_group, paper_params_m, params, params_m,
    flops, paper_cifar10_error, paper_cifar100_error (NaN where none).
  """
  rows = []
  for table, name, paper_m, err10, err100 in PAPER_TABLES:
    spec = parse(name)
    params = count_params(spec) if counts else None
    rows.append(dict(
        table=table, name=name, block=_block_str(spec.block),
        depth=spec.depth, widen_factor=spec.widen_factor,
        blocks_per_group=spec.blocks_per_group, paper_params_m=paper_m,
        params=params, params_m=None if params is None else round(params / 1e6, 3),
        flops=count_flops(spec), paper_cifar10_error=err10,
        paper_cifar100_error=err100))
  return pd.DataFrame(rows)


def markdown_table(df=None):
  """The README's models table (table, name, N, params, FLOPs, errors)."""
  df = paper_networks() if df is None else df
  header = ['table', 'name', 'N', 'paper params', 'our params', 'GMAC/image',
            'paper C10 / C100 error %']
  rows = []
  for row in df.itertuples():
    c100 = '–' if np.isnan(row.paper_cifar100_error) else (
        f'{row.paper_cifar100_error:.2f}')
    rows.append([row.table, row.name, row.blocks_per_group,
                 f'{row.paper_params_m:.1f}M', f'{row.params:,}',
                 f'{row.flops / 1e9:.2f}',
                 f'{row.paper_cifar10_error:.2f} / {c100}'])
  return _markdown.pipe_table(header, rows)


if __name__ == '__main__':
  print(markdown_table())
