"""Every command the README and the docs/ pages show is accounted for.

A shell command in a code block is either run by this file (cheap ones:
`wrn-trax models`, `--help`), or listed in ELSEWHERE with the file that runs
it (CI, a test), and that file is checked to contain it. Every `wrn-trax`
command (in code blocks and in inline code) is parsed by the real argument
parser, so a flag the docs name and the CLI lacks fails here; every
`python bench/X.py` command names a script that exists and only flags that
script defines. Python blocks are compiled, every `wrn_trax` name they use is
looked up, and each call of a wrn_trax function binds to its signature.
A new command in the docs fails `test_every_shell_command_is_accounted_for`
until it is run here or listed in ELSEWHERE.
"""

import ast
import inspect
import pathlib
import re
import shlex

import pytest

from wrn_trax import cli

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / 'README.md'] + sorted((ROOT / 'docs').glob('*.md'))
FENCE = re.compile(r'^```(\w*)\n(.*?)^```', re.M | re.S)
# First words of a line that make a code block a list of commands (blocks
# without one show output: a table, an error message, a folder layout).
COMMAND_WORDS = (
  'wrn-trax',
  'python',
  'python3',
  'pip',
  'mkdir',
  'tar',
  'export',
  'time',
  'for',
  'done',
  'mkdocs',
  'bash',
)

# Commands not run here, each with the file that runs it (a regex on the
# command, the file, the text that file must contain).
ELSEWHERE = [
  (r'^python3 -m venv \.venv$', '.ci/run', 'python3 -m venv .venv'),
  (r'^\. \.venv/bin/activate$', '.ci/run', '. .venv/bin/activate'),
  (
    r'^pip install -e "\.\[dev\]" -c constraints\.txt$',
    '.ci/run',
    'pip install -e ".[dev]" -c constraints.txt',
  ),
  (
    r'^wrn-trax sweep --widen-factors 1 2 3 4 --dataset digits '
    r'--recipe smoke$',
    '.ci/run',
    'wrn-trax sweep --widen-factors 1 2 3 4 --dataset digits --recipe smoke',
  ),
  (
    r'^wrn-trax report --root runs --out runs/report$',
    '.ci/run',
    'wrn-trax report --root runs --out runs/report',
  ),
  (
    r'^python -m pytest -m "slow or not slow"$',
    '.ci/run',
    'python -m pytest -m "slow or not slow"',
  ),
  (r'^pip install -e "\.\[docs(,lint)?\]"', '.ci/run', 'pip install -e ".[docs,lint]"'),
  (r'^mkdocs (build|serve)', '.ci/run', 'mkdocs build --strict'),
  # Training commands: the CLI's train/sweep/report paths are run end to
  # end, at a tiny size, by this subprocess test.
  (
    r'^wrn-trax (train|sweep|report|data) ',
    'tests/test_package.py',
    'def test_cli_train_sweep_then_report',
  ),
  # Installing on Colab/Kaggle: `pip install -e .` without constraints over
  # the image's packages, as .ci/build_stack.sh does (and then checks that
  # it changed none of jax, jaxlib, TensorFlow, numpy, ...).
  (
    r'^pip install -e \.$',
    '.ci/build_stack.sh',
    'check_stack_unchanged.py check',
  ),
  # Building a wheel: the notebooks' install cell test builds the wheel
  # with `pip wheel --no-deps` and installs it.
  (r'^python -m (pip wheel|build) ', 'tests/test_notebooks.py', 'wheel'),
  # Unpacking the CIFAR-10 JPEG copy (a data step for the bench scripts).
  (r'^mkdir -p /tmp/cifar10-jpeg$', 'bench/gpu_check.py', 'cifar10-jpeg'),
  (r'^tar -xzf \.\./shared/data/cifar10-jpeg\.tar\.gz', 'bench/gpu_check.py', 'tar'),
  # The GPU check: .ci/run runs the rehearsal, which runs prepare.sh and
  # run.sh as they run on the GPU machine.
  (r'^bash bench/device/rehearse\.sh OUTDIR$', '.ci/run', 'bash bench/device/rehearse.sh'),
  (
    r'^bash bench/device/prepare\.sh$',
    'bench/device/rehearse.sh',
    'bash bench/device/prepare.sh',
  ),
  (
    r'^export XLA_PYTHON_CLIENT_PREALLOCATE=false$',
    'wrn_trax/cli.py',
    'XLA_PYTHON_CLIENT_PREALLOCATE',
  ),
]
# Benchmark scripts: tests/test_bench.py runs those of its SCRIPTS (`--help`,
# most at a tiny size); a bench command is accounted for when its script is
# one of them, or in BENCH_HELP_HERE, whose `--help` this file runs.
BENCH = re.compile(r'^python bench/(\w+)\.py( |$)')
BENCH_HELP_HERE = ['import_time']
# Cheap enough to run here, in this process.
CHEAP = [
  ['models'],
  ['--help'],
  ['models', '--help'],
  ['data', '--help'],
  ['train', '--help'],
  ['sweep', '--help'],
  ['report', '--help'],
]


def _bench_tested():
  text = (ROOT / 'tests/test_bench.py').read_text()
  listed = re.search(r'^SCRIPTS = \[(.*?)\]', text, re.M | re.S).group(1)
  return re.findall(r"'(\w+)'", listed)


def _blocks():
  for page in PAGES:
    for match in FENCE.finditer(page.read_text()):
      yield page, match.group(1), match.group(2)


def _shell_commands():
  """(page, command) for every command line of the shell blocks."""
  out = []
  for page, lang, text in _blocks():
    if lang == 'python':
      continue
    text = re.sub(r'\\\n\s*', ' ', text)  # continuation lines
    lines = [l.strip() for l in text.splitlines()]
    if not any(l.split(' ', 1)[0] in COMMAND_WORDS for l in lines if l):
      continue  # output, not commands
    for line in lines:
      line = re.sub(r'\s+#.*$', '', line).strip()
      if not line or line.startswith('#'):
        continue
      for part in re.split(r'\s*(?:&&|;)\s*', line):
        part = re.sub(r'^time\s+', '', part.strip())
        if part and part not in ('done', 'do') and not part.startswith('for '):
          out.append((page.name, part))
  return out


def _inline_cli_commands():
  """`wrn-trax ...` in inline code, where it is one whole command."""
  out = []
  for page in PAGES:
    text = FENCE.sub('', page.read_text())
    for span in re.findall(r'`(wrn-trax [^`]+)`', text.replace('\n', ' ')):
      if re.match(r'wrn-trax \S+:', span):  # a message it prints
        continue
      if not re.search(r'[|<>]|\.\.\.', span):
        out.append((page.name, span))
  return out


def _argv(command):
  words = shlex.split(command)
  if words[:3] == ['python', '-m', 'wrn_trax']:
    return words[3:]
  assert words[0] == 'wrn-trax', command
  return words[1:]


def test_the_docs_have_commands():
  commands = _shell_commands()
  assert len(commands) >= 20, commands
  assert (
    'README.md',
    'wrn-trax sweep --widen-factors 1 2 3 4 --dataset digits --recipe smoke',
  ) in commands


def test_every_shell_command_is_accounted_for():
  missing = []
  for page, command in _shell_commands():
    if command.startswith('wrn-trax ') and _argv(command) in CHEAP:
      continue
    bench = BENCH.match(command)
    if bench:
      if bench.group(1) not in _bench_tested() + BENCH_HELP_HERE:
        missing.append((page, command, 'script not run by test_bench.py'))
      continue
    for pattern, where, needle in ELSEWHERE:
      if re.search(pattern, command):
        assert needle in (ROOT / where).read_text(), (command, where)
        break
    else:
      missing.append((page, command))
  assert not missing, (
    'commands in the docs that no test or CI runs; run '
    'them in tests/test_docs.py or list them in ELSEWHERE: '
    f'{missing}'
  )


@pytest.mark.parametrize(
  'page,command',
  sorted({c for c in _shell_commands() if c[1].startswith(('wrn-trax ', 'python -m wrn_trax '))}),
)
def test_cli_commands_parse(page, command):
  """Every wrn-trax command shown parses: its subcommand and flags exist."""
  argv = _argv(command)
  if argv and argv[-1] == '--help':
    return  # run by test_cheap_commands_run
  try:
    args = cli.parser().parse_args(argv)
  except SystemExit as e:
    pytest.fail(f'{page}: `{command}` does not parse (exit {e.code})')
  assert args.command == argv[0]


def _subparsers():
  top = cli.parser()
  action = next(
    a
    for a in top._actions  # pylint: disable=protected-access
    if a.__class__.__name__ == '_SubParsersAction'
  )
  return top, action.choices


@pytest.mark.parametrize('page,span', sorted(set(_inline_cli_commands())))
def test_cli_flags_in_the_text_exist(page, span):
  """Inline `wrn-trax CMD --flag ...` may be a fragment: its command and
  every flag it names must exist."""
  top, commands = _subparsers()
  words = shlex.split(span)[1:]
  if words[0].startswith('-'):
    options = top._option_string_actions  # pylint: disable=protected-access
  else:
    assert words[0] in commands, f'{page}: no command {words[0]!r}: {span}'
    options = commands[words[0]]._option_string_actions  # pylint: disable=protected-access
  flags = [w.split('=')[0] for w in words if w.startswith('--')]
  unknown = [f for f in flags if f not in options]
  assert not unknown, f'{page}: `{span}`: no such option {unknown}'


@pytest.mark.parametrize('argv', CHEAP, ids=' '.join)
def test_cheap_commands_run(argv, run_cli):
  code, out, err = run_cli(argv)
  assert code == 0, err
  if argv == ['models']:
    assert 'WRN-28-10' in out and '36,479,194' in out
  else:
    assert 'usage: wrn-trax' in out


def _script_flags(script):
  return set(re.findall(r"""['"](--[a-z0-9][a-z0-9-]*)['"]""", (ROOT / script).read_text()))


@pytest.mark.parametrize(
  'page,command', sorted({c for c in _shell_commands() if BENCH.match(c[1])})
)
def test_bench_commands_name_real_flags(page, command):
  script = f'bench/{BENCH.match(command).group(1)}.py'
  assert (ROOT / script).exists(), f'{page}: {script} does not exist'
  named = set(re.findall(r'(?<![\w-])(--[a-z0-9][a-z0-9-]*)', command))
  unknown = named - _script_flags(script) - {'--help'}
  assert not unknown, f'{page}: {script} has no {sorted(unknown)}'


@pytest.mark.slow
@pytest.mark.parametrize('name', BENCH_HELP_HERE)
def test_bench_help_here(name):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  r = subprocess.run(
    [sys.executable, str(ROOT / 'bench' / f'{name}.py'), '--help'],
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  assert r.returncode == 0, r.stderr
  assert r.stdout.startswith('usage:')


def test_pytest_markers_named_in_the_docs_are_declared():
  declared = set(re.findall(r'^    (\w+): ', (ROOT / 'setup.cfg').read_text(), re.M))
  for page, command in _shell_commands():
    match = re.match(r'python -m pytest -m "([^"]+)"', command)
    if match:
      words = set(re.findall(r'\w+', match.group(1))) - {'and', 'or', 'not'}
      assert words <= declared, (page, command, declared)


def _python_blocks():
  return [(page.name, text) for page, lang, text in _blocks() if lang == 'python']


def _resolve(node, names):
  """The object an ast Name/Attribute chain stands for, or None."""
  if isinstance(node, ast.Name):
    return names.get(node.id)
  if isinstance(node, ast.Attribute):
    base = _resolve(node.value, names)
    if base is None:
      return None
    assert hasattr(base, node.attr), (
      f'{getattr(base, "__name__", base)} has no attribute {node.attr!r}'
    )
    return getattr(base, node.attr)
  return None


@pytest.mark.parametrize('page,text', _python_blocks())
def test_python_blocks_use_real_names_and_arguments(page, text):
  """Compiled, every wrn_trax name looked up, every call bound to the
  function's signature (placeholder values: nothing runs)."""
  import importlib  # pylint: disable=g-import-not-at-top

  tree = ast.parse(text)
  names = {}
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.split('.')[0] == 'wrn_trax':
          names[alias.asname or 'wrn_trax'] = importlib.import_module('wrn_trax')
    elif isinstance(node, ast.ImportFrom) and node.module == 'wrn_trax':
      for alias in node.names:
        names[alias.asname or alias.name] = importlib.import_module(f'wrn_trax.{alias.name}')
  # A block may continue an earlier one that imported wrn_trax.
  names.setdefault('wrn_trax', importlib.import_module('wrn_trax'))
  calls = 0
  for node in ast.walk(tree):
    if isinstance(node, ast.Attribute):
      _resolve(node, names)
    if isinstance(node, ast.Call):
      func = _resolve(node.func, names)
      if inspect.ismodule(func):  # wrn_trax.train, wrn_trax.sweep: callable
        func = type(func).__dict__['__call__'].__func__  # modules
      if callable(func) and not inspect.isclass(func):
        signature = inspect.signature(func)
        kwargs = {k.arg: None for k in node.keywords if k.arg}
        signature.bind(*[None] * len(node.args), **kwargs)
        calls += 1
  assert calls, f'{page}: no wrn_trax call checked in {text}'


# Arguments of `train`/`sweep` that say where and how loudly, not what.
_NOT_CONFIG = {'workdir', 'root', 'verbose', 'executor', 'address', 'gpus_per_member', 'gpus'}
_NOT_CONFIG |= {'max_retries', 'live'}


def _literal_calls(text, name):
  """(args, kwargs) of each `wrn_trax.<name>(...)` call in `text` whose
  arguments are literals, or loop variables over a literal (their first
  value); arguments in _NOT_CONFIG are left out."""
  tree = ast.parse(text)
  loops = {}
  for node in ast.walk(tree):
    if isinstance(node, ast.For) and isinstance(node.target, ast.Name):
      try:
        loops[node.target.id] = list(ast.literal_eval(node.iter))[0]
      except ValueError:
        pass

  def value(node):
    if isinstance(node, ast.Name) and node.id in loops:
      return loops[node.id]
    return ast.literal_eval(node)

  calls = []
  for node in ast.walk(tree):
    func = getattr(node, 'func', None)
    if not (
      isinstance(func, ast.Attribute)
      and func.attr == name
      and isinstance(func.value, ast.Name)
      and func.value.id == 'wrn_trax'
    ):
      continue
    try:
      args = [value(a) for a in node.args]
      kwargs = {k.arg: value(k.value) for k in node.keywords if k.arg not in _NOT_CONFIG}
    except ValueError:
      continue  # an argument computed at run time
    calls.append((args, kwargs))
  return calls


def test_train_and_sweep_examples_make_valid_configs(tmp_path):
  """Each `wrn_trax.train(...)` and `wrn_trax.sweep(...)` example builds its
  config(s) as the real call would (recipe fields and values checked),
  without training: `make_config` and `sweep.plan`."""
  from wrn_trax import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
  from wrn_trax import train as train_lib  # pylint: disable=g-import-not-at-top

  checked = 0
  for page, text in _python_blocks():
    for args, kwargs in _literal_calls(text, 'train'):
      try:
        train_lib.make_config(*args, **kwargs)
      except ValueError as e:
        pytest.fail(f'{page}: wrn_trax.train(*{args}, **{kwargs}): {e}')
      checked += 1
    for args, kwargs in _literal_calls(text, 'sweep'):
      try:
        sweep_lib.plan(*args, root=str(tmp_path / 'runs'), **kwargs)
      except ValueError as e:
        pytest.fail(f'{page}: wrn_trax.sweep(*{args}, **{kwargs}): {e}')
      checked += 1
  assert checked >= 4, checked


def test_the_readme_is_short_and_shows_the_two_commands_first():
  text = (ROOT / 'README.md').read_text()
  assert len(text) <= 12_000, len(text)
  first_screen = text[: text.index('The second command')]
  assert 'results/' in first_screen and '.png)' in first_screen
  assert 'wrn-trax sweep --widen-factors 1 2 3 4' in first_screen
  assert 'python -m pytest -m "slow or not slow"' in text
  for link in re.findall(r'\]\((docs/[\w-]+\.md)\)', text):
    assert (ROOT / link).exists(), link
