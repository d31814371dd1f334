"""The one writer of Markdown pipe tables (GitHub's `| a | b |` tables).

The report's tables (`report.markdown_table`, the budget study), the models
table (`models.markdown_table`) and the benches' tables all come from
`pipe_table`; this module imports nothing heavy, so the benches and the
command line can use it before trax or pandas are imported.
"""


def escape_cell(text):
  """A cell's text with its pipes escaped and newlines made spaces."""
  return str(text).replace('|', r'\|').replace('\n', ' ')


def pipe_table(header, rows, right=None, pad=False):
  """A Markdown pipe table: a header line, the rule, one line per row.

  Args:
    header: the column names.
    rows: the rows, each a sequence of cells as long as `header`; each cell is
      written as `str(cell)`, its pipes escaped and newlines made spaces, so
      no cell breaks the table.
    right: per column, whether it is right-aligned (its rule ends in ':');
      None: every column left-aligned (rule '---').
    pad: pad each cell to its column's width (at least 3) so that the columns
      line up in plain text; else cells are written as they are.

  Returns:
    The table's lines joined by newlines, without a final newline.

  Raises:
    ValueError: a row or `right` is not as long as `header`.
  """
  header = [escape_cell(h) for h in header]
  body = [[escape_cell(c) for c in row] for row in rows]
  right = [False] * len(header) if right is None else [bool(r) for r in right]
  for cells in body + [right]:
    if len(cells) != len(header):
      raise ValueError(
        f'pipe_table: {len(header)} columns in the header, but a row (or right=) has {len(cells)}.'
      )
  if pad:
    widths = [max([len(h)] + [len(r[j]) for r in body] + [3]) for j, h in enumerate(header)]
    rule = [('-' * (w + 1) + ':') if r else ('-' * (w + 2)) for w, r in zip(widths, right)]

    def line(cells):
      padded = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
      return '| ' + ' | '.join(padded) + ' |'

    rule_line = '|' + '|'.join(rule) + '|'
  else:

    def line(cells):
      return '| ' + ' | '.join(cells) + ' |'

    rule_line = '|' + '|'.join('---:' if r else '---' for r in right) + '|'
  return '\n'.join([line(header), rule_line] + [line(r) for r in body])
