"""The code blocks of the documentation: found, classified by their marker, and run.

Every fenced code block of docs/ and of the README carries a marker on the line above its fence
(the convention is in docs/contributing.md, "How to write docs here"):

  <!-- test: run -->            run in the default suite
  <!-- test: slow -->           run with -m slow
  <!-- test: skip (REASON) -->  never run; REASON is one of SKIP_REASONS

A page's blocks run in order in one folder; consecutive python blocks share one process (and
their variables). To run a page's blocks by hand, from the repository root:

  python tests/docs_blocks.py docs/guides/models.md [--slow]
"""

import dataclasses
import doctest
import json
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SKIP_REASONS = ("output", "install", "long", "gpu", "multi-host", "data")
RUNNABLE = ("python", "bash")
_MARKER = re.compile(r"<!--\s*test:\s*(.*?)\s*-->\s*$")
_SKIP = re.compile(r"skip \((.+)\)")


@dataclasses.dataclass(frozen=True)
class Block:
  page: str  # Relative to the repository root.
  line: int  # 1-based line of the opening fence.
  lang: str  # '' for an indented code block.
  code: str
  marker: str | None  # 'run', 'slow', 'skip (reason)', or None when missing.

  @property
  def where(self) -> str:
    return f"{self.page}:{self.line}"

  def problem(self) -> str | None:
    """What is wrong with the block's marking (None: nothing)."""
    if self.marker is None:
      return "no <!-- test: ... --> marker on the line above the block"
    if self.marker in ("run", "slow"):
      if self.lang not in RUNNABLE:
        return f"marked {self.marker} but its language is {self.lang!r}, not one of {RUNNABLE}"
      return None
    skip = _SKIP.fullmatch(self.marker)
    if not skip:
      return f"unknown marker {self.marker!r}: run, slow or skip (REASON)"
    if skip.group(1) not in SKIP_REASONS:
      return f"unknown reason {skip.group(1)!r}: one of {', '.join(SKIP_REASONS)}"
    if self.page.startswith("docs/") and not self.lang:
      return "no language after the fence (text for output)"
    return None


def pages() -> list[pathlib.Path]:
  """Every page: the site's in the order of its tables of contents, then the rest, the README."""
  order = [DOCS / "index.md"]
  for toctree in re.findall(r"```\{toctree\}\n(.*?)```", order[0].read_text(), re.S):
    for entry in toctree.splitlines():
      if entry.strip() and not entry.startswith(":"):
        order.append(DOCS / f"{entry.strip()}.md")
  rest = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts and p not in order)
  return order + rest + [ROOT / "README.md"]


def blocks(path: pathlib.Path) -> list[Block]:
  """The page's code blocks, directives ({toctree}, {eval-rst}) left out."""
  from markdown_it import MarkdownIt  # pylint: disable=g-import-not-at-top
  tokens = MarkdownIt("commonmark").parse(path.read_text())
  found = []
  for i, token in enumerate(tokens):
    if token.type not in ("fence", "code_block") or token.info.startswith("{"):
      continue
    before = tokens[i - 1] if i else None
    marker = None
    if before is not None and before.type == "html_block":
      m = _MARKER.match(before.content.strip().splitlines()[-1])
      marker = m.group(1) if m else None
    found.append(Block(page=str(path.relative_to(ROOT)), line=token.map[0] + 1,
                       lang=token.info.split()[0] if token.info else "", code=token.content,
                       marker=marker))
  return found


def _run_python(group: list[Block], folder: pathlib.Path, env: dict, timeout: float):
  spec = folder / ".docs_blocks.json"
  spec.write_text(json.dumps([dataclasses.asdict(b) for b in group]))
  return subprocess.run([sys.executable, __file__, "--exec", str(spec)], cwd=folder, env=env,
                        capture_output=True, text=True, timeout=timeout)


def run(to_run: list[Block], folder: pathlib.Path, *, timeout: float = 600) -> None:
  """Runs blocks in order in `folder`; AssertionError naming the block that failed."""
  folder.mkdir(parents=True, exist_ok=True)
  if not (folder / "configs").exists():
    (folder / "configs").symlink_to(ROOT / "configs")
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu",
             TFDS_DATA_DIR=str(folder / "tensorflow_datasets"))
  i = 0
  while i < len(to_run):
    if to_run[i].lang == "python":
      group = [to_run[i]]
      while i + len(group) < len(to_run) and to_run[i + len(group)].lang == "python":
        group.append(to_run[i + len(group)])
      r = _run_python(group, folder, env, timeout)
      where = ", ".join(b.where for b in group)
    else:
      group = [to_run[i]]
      r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", to_run[i].code], cwd=folder,
                         env=env, capture_output=True, text=True, timeout=timeout)
      where = to_run[i].where
    assert r.returncode == 0, (f"the block(s) at {where} failed (exit {r.returncode}):\n"
                               f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    i += len(group)


def _exec(spec: str) -> int:
  """In the child process: runs python blocks in one namespace; doctest blocks check output."""
  namespace = {"__name__": "__main__"}
  for b in map(lambda d: Block(**d), json.loads(pathlib.Path(spec).read_text())):
    if b.code.lstrip().startswith(">>>"):
      test = doctest.DocTestParser().get_doctest(b.code, namespace, b.where, b.page, b.line - 1)
      runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
      if runner.run(test, clear_globs=False).failed:
        return 1
    else:
      exec(compile(b.code, b.where, "exec"), namespace)  # pylint: disable=exec-used
  return 0


if __name__ == "__main__":
  if sys.argv[1] == "--exec":
    sys.exit(_exec(sys.argv[2]))
  wanted = ("run", "slow") if "--slow" in sys.argv else ("run",)
  page = ROOT / sys.argv[1]
  run([b for b in blocks(page) if b.marker in wanted], pathlib.Path.cwd() / "docs_blocks_run")
  print(f"ran the {'/'.join(wanted)} blocks of {sys.argv[1]} in docs_blocks_run/")
