"""MkDocs hooks: the committed result pictures go into the site as they are.

The pages link the pictures as `../results/<study>/<name>.png`, which is where
they sit in the repository (so the Markdown also reads right on GitHub). The
site gets a copy of each `results/**/*.png` at `results/...`, and the links are
rewritten to that place; `mkdocs build --strict` then checks them like any
other link.
"""

import pathlib
import re

from mkdocs.structure.files import File

_ROOT = pathlib.Path(__file__).resolve().parent.parent


def on_files(files, config):
  for png in sorted((_ROOT / 'results').rglob('*.png')):
    files.append(
      File(
        str(png.relative_to(_ROOT)),
        src_dir=str(_ROOT),
        dest_dir=config['site_dir'],
        use_directory_urls=config['use_directory_urls'],
      )
    )
  return files


def on_page_markdown(markdown, page, config, files):
  depth = page.file.src_uri.count('/')
  return re.sub(r'\]\(\.\./results/', '](' + '../' * depth + 'results/', markdown)
