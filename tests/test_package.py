"""The package as a user meets it: a quiet import, the command line, the README."""
import os
import re
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(python, env, *args, **kwargs):
  return subprocess.run([python, *args], env=env, capture_output=True,
                        text=True, timeout=300, **kwargs)


def test_import_prints_nothing(python, subprocess_env):
  """No TF/absl lines, no gym notice, no jax warnings from trax at import."""
  code = ('import warnings; warnings.simplefilter("default"); '
          'import wrn_trax, trax; from trax.supervised import training; '
          'print("ok")')
  r = _run(python, subprocess_env, '-c', code)
  assert r.returncode == 0, r.stderr
  assert r.stdout == 'ok\n'
  assert r.stderr == ''


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
  assert re.search(r'\| *WRN-10-2 *\|', r.stdout), r.stdout
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
