"""The package as a user meets it: a quiet import, the command line, the README."""
import os
import re
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(python, env, *args, **kwargs):
  return subprocess.run([python, *args], env=env, capture_output=True,
                        text=True, timeout=300, **kwargs)


_HEAVY = ('tensorflow', 'trax', 'jax', 'gym')

_LIGHT_IMPORT = """
import sys
import wrn_trax
import wrn_trax.report
from wrn_trax import recipes, runio, data
assert wrn_trax.report.load_runs is not None
print(sorted(m for m in sys.modules if m.split('.')[0] in sys.argv[1:]))
"""


def test_package_and_report_import_no_tensorflow_trax_or_jax(
    python, subprocess_env):
  """`import wrn_trax` and `import wrn_trax.report` stay light (PEP 562)."""
  r = _run(python, subprocess_env, '-c', _LIGHT_IMPORT, *_HEAVY)
  assert r.returncode == 0, r.stderr
  assert r.stdout == '[]\n', r.stdout
  assert r.stderr == ''


_CLI_LIGHT = """
import runpy, sys
heavy = sys.argv[1:]
sys.argv = ['wrn-trax'] + heavy.pop().split()
try:
  runpy.run_module('wrn_trax', run_name='__main__')
except SystemExit as e:
  code = e.code
print(sorted(m for m in sys.modules if m.split('.')[0] in heavy), code,
      file=sys.stderr)
"""


@pytest.mark.parametrize('args, code', [
    ('--help', 0),
    ('train --help', 0),
    ('train --set lr=abc', 2),
    ('train --model WRN-27-2', 2),
    ('train --dataset imagenet', 2),
    ('sweep --family resnet', 2),
    ('sweep --widen-factors 2 --dropouts 0.3', 2),
    ('models --name WRN-9-1', 2),
    ('report --root /nonexistent/runs', 2),
])
def test_cli_parses_and_checks_arguments_before_importing_trax(
    python, subprocess_env, tmp_path, args, code):
  """`wrn-trax --help` and argument errors import no TF, trax or jax."""
  r = _run(python, subprocess_env, '-c', _CLI_LIGHT, *_HEAVY, args,
           cwd=tmp_path)
  assert r.returncode == 0, r.stderr
  assert r.stderr.splitlines()[-1] == f'[] {code}', r.stderr
  assert 'Traceback' not in r.stderr
  assert list(tmp_path.iterdir()) == []


_FIRST_USE = """
import sys, warnings
warnings.simplefilter('default')
import wrn_trax
assert 'trax' not in sys.modules
spec = wrn_trax.models.parse('WRN-16-4')   # the first use imports trax
assert 'trax' in sys.modules and 'tensorflow' in sys.modules
assert callable(wrn_trax.train) and callable(wrn_trax.sweep)
from wrn_trax import _compat
import jax
assert 'tree_unflatten' in _compat.installed()
assert 'shallow_inspect_stack' in _compat.installed()
assert hasattr(jax, 'device_put_replicated')
print(spec.blocks_per_group, wrn_trax.models.count_flops('WRN-10-1') > 0,
      wrn_trax.data.DATASETS[0], wrn_trax.sweep.member_models([1]))
"""


def test_first_use_imports_trax_quietly_and_patched(python, subprocess_env):
  """`wrn_trax.models` etc. import TF, gym and trax once, silently."""
  r = _run(python, subprocess_env, '-c', _FIRST_USE)
  assert r.returncode == 0, r.stderr
  assert r.stdout == "2 True digits ['stock-WRN-22-1']\n", r.stdout
  assert r.stderr == ''


def test_import_prints_nothing(python, subprocess_env):
  """No TF/absl lines, no gym notice, no jax warnings from trax at import:
  neither from the first use of a heavy module nor from the user's own
  `import trax` after it."""
  code = ('import warnings; warnings.simplefilter("default"); '
          'import wrn_trax; wrn_trax.models; '
          'import trax; from trax.supervised import training; '
          'print("ok")')
  r = _run(python, subprocess_env, '-c', code)
  assert r.returncode == 0, r.stderr
  assert r.stdout == 'ok\n'
  assert r.stderr == ''


_TRAIN_QUIETLY = """
import os, sys, warnings
import wrn_trax
with warnings.catch_warnings(record=True) as log:
  # The filters as a user has them after `import wrn_trax`: the user's
  # defaults plus wrn_trax._quiet.KNOWN_WARNINGS. Whatever gets through is
  # recorded, not printed.
  s = wrn_trax.train('WRN-10-1', 'digits', 'smoke', steps=2, eval_every=2,
                     checkpoint_every=2, workdir=sys.argv[1], verbose=False)
print(s['status'])
for w in log:
  print('WARNING', w.category.__name__, w.filename, w.lineno, w.message)
"""


@pytest.mark.slow
def test_training_warns_nothing_we_did_not_mean(python, subprocess_env,
                                                tmp_path):
  """A tiny train(): no jax rename, int64, gzip or other warning gets out."""
  r = _run(python, subprocess_env, '-c', _TRAIN_QUIETLY,
           str(tmp_path / 'run'))
  assert r.returncode == 0, r.stderr
  assert r.stdout == 'done\n', r.stdout
  assert r.stderr == ''


def test_known_warnings_are_matched_by_category_and_module():
  """Each known warning is ignored from trax (or jax), in every jax wording,
  and the same message from the user's own code still shows."""
  import warnings  # pylint: disable=g-import-not-at-top
  from wrn_trax import _quiet  # pylint: disable=g-import-not-at-top
  cases = [
      (UserWarning, 'trax.supervised.training',
       'jax.host_count has been renamed to jax.process_count.'),
      (UserWarning, 'jax._src.xla_bridge',
       'jax.process_count has been renamed to jax.process_count.'),
      (UserWarning, 'trax.layers.normalization',
       'Explicitly requested dtype int64 requested in zeros is not available'),
      (FutureWarning, 'trax.layers.base',
       'GzipFile was opened for writing, but this will change'),
  ]
  for category, module, message in cases:
    for source, ignored in ((module, True), ('mine', False)):
      with warnings.catch_warnings(record=True) as log:
        warnings.resetwarnings()
        warnings.simplefilter('always')
        _quiet.add_warning_filters()
        warnings.warn_explicit(message, category, source.replace('.', '/'),
                               1, module=source)
      assert (not log) == ignored, (category, source, message)


@pytest.mark.slow
def test_users_own_warnings_still_show(python, subprocess_env):
  code = ('import wrn_trax, warnings; '
          'warnings.warn("mine", UserWarning)')
  r = _run(python, subprocess_env, '-W', 'default', '-c', code)
  assert 'UserWarning: mine' in r.stderr


def test_help_of_every_command(python, subprocess_env):
  top = _run(python, subprocess_env, '-m', 'wrn_trax', '--help')
  assert top.returncode == 0 and top.stderr == ''
  for command in ('models', 'data', 'train', 'sweep', 'report'):
    assert command in top.stdout
    r = _run(python, subprocess_env, '-m', 'wrn_trax', command, '--help')
    assert r.returncode == 0, r.stderr
    assert r.stderr == ''
    assert 'example: wrn-trax ' + command in r.stdout


@pytest.mark.slow
def test_cli_models_and_data(python, subprocess_env):
  r = _run(python, subprocess_env, '-m', 'wrn_trax', 'models')
  assert r.returncode == 0, r.stderr
  assert re.search(r'WRN-28-10 .*36\.5', r.stdout)
  r = _run(python, subprocess_env, '-m', 'wrn_trax', 'data', '--dataset',
           'digits')
  assert r.returncode == 0, r.stderr
  assert '"train": [\n    1437,' in r.stdout


@pytest.mark.parametrize('args, message', [
    (['sweep', '--family', 'resnet'], 'unknown family'),
    (['train', '--model', 'WRN-27-2'], '6N+4'),
    (['data', '--dataset', 'cifar10', '--data-dir', '/nonexistent/cifar'],
     'cifar10'),
    (['report', '--root', '/nonexistent/runs'], '/nonexistent/runs'),
])
def test_cli_errors_are_one_clear_line(python, subprocess_env, tmp_path, args,
                                       message):
  r = _run(python, subprocess_env, '-m', 'wrn_trax', *args, cwd=tmp_path)
  assert r.returncode == 2
  assert 'Traceback' not in r.stderr
  assert message in r.stderr
  assert not (tmp_path / 'runs').exists()


@pytest.mark.slow
def test_cli_train_sweep_then_report(python, subprocess_env, tmp_path):
  r = _run(python, subprocess_env, '-m', 'wrn_trax', 'train', '--model',
           'WRN-10-1', '--recipe', 'smoke', '--steps', '6', '--set',
           'eval_every=3', '--workdir', 'runs/a', '--quiet', cwd=tmp_path)
  assert r.returncode == 0, r.stderr
  assert '"status": "done"' in r.stdout
  r = _run(python, subprocess_env, '-m', 'wrn_trax', 'sweep', '--family',
           'paper', '--depths', '10', '--widen-factors', '2', '--dataset',
           'digits', '--recipe', 'smoke', '--steps', '4', '--set',
           'eval_every=2', '--quiet', cwd=tmp_path)
  assert r.returncode == 0, r.stderr
  assert re.search(r'^WRN-10-2 ', r.stdout, re.M), r.stdout
  r = _run(python, subprocess_env, '-m', 'wrn_trax', 'report', '--root',
           'runs', '--out', 'results', cwd=tmp_path)
  assert r.returncode == 0, r.stderr
  assert 'WRN-10-1' in r.stdout
  assert (tmp_path / 'results' / 'README.md').exists()
  assert (tmp_path / 'results' / 'summary.csv').exists()


def _readme_commands():
  text = open(os.path.join(REPO, 'README.md')).read()
  blocks = re.findall(r'```(?:bash|sh)\n(.*?)```', text, re.S)
  return text, blocks


def test_ci_runs_exactly_the_readme_commands():
  """.ci/run builds the environment as the README says and runs its tests."""
  _, blocks = _readme_commands()
  ci = open(os.path.join(REPO, '.ci', 'run')).read()
  install, tests = blocks[0].strip(), blocks[1].strip()
  for command in (install, tests):
    for line in command.splitlines():
      assert line.strip() in ci, f'.ci/run lacks README line: {line}'
