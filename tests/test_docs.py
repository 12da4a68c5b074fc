"""The documentation site: every code block is marked and the runnable ones run (so the docs
cannot drift from the code), and the site builds in strict mode and opens in headless Chromium.

How blocks are marked: docs/contributing.md ("How to write docs here"); tests/docs_blocks.py
finds and runs them.
"""

import pathlib
import shutil
import subprocess
import sys

import pytest

import docs_blocks

pytest.importorskip("markdown_it", reason="in the test extra: pip install -e '.[test]'")
PAGES = docs_blocks.pages()
BLOCKS = [b for page in PAGES for b in docs_blocks.blocks(page)]


def _with(marker: str) -> list[str]:
  return sorted({b.page for b in BLOCKS if b.marker == marker})


def test_every_code_block_is_marked_run_slow_or_skipped_with_a_known_reason():
  problems = [f"{b.where}: {b.problem()}" for b in BLOCKS if b.problem()]
  assert not problems, "\n".join(problems)
  assert len(BLOCKS) > 30 and {"run", "slow"} <= {b.marker for b in BLOCKS}


def test_the_marker_check_finds_what_is_wrong(tmp_path, monkeypatch):
  monkeypatch.setattr(docs_blocks, "ROOT", tmp_path)
  page = tmp_path / "docs" / "page.md"
  page.parent.mkdir()
  page.write_text("```python\nx = 1\n```\n\n<!-- test: run -->\n```text\nout\n```\n\n"
                  "<!-- test: skip (lazy) -->\n```bash\ntrue\n```\n\n"
                  "<!-- test: skip (gpu) -->\n```bash\nnvidia-smi\n```\n\n    indented\n")
  found = docs_blocks.blocks(page)
  assert [(b.line, b.marker) for b in found] == [(1, None), (6, "run"), (11, "skip (lazy)"),
                                                   (16, "skip (gpu)"), (20, None)]
  assert ["no <!-- test" in str(b.problem()) for b in found] == [True, False, False, False, True]
  assert "language is 'text'" in found[1].problem() and "'lazy'" in found[2].problem()
  assert found[3].problem() is None


@pytest.mark.needs_tf  # the pages' blocks train on moving_digits (TFDS).
@pytest.mark.parametrize("page", _with("run"))
def test_the_run_blocks_of_a_page_run(page, tmp_path):
  docs_blocks.run([b for b in BLOCKS if b.page == page and b.marker == "run"], tmp_path)


def test_a_failing_block_fails_and_names_itself(tmp_path):
  bad = docs_blocks.Block(page="docs/x.md", line=7, lang="python", code=">>> 1 + 1\n3\n",
                          marker="run")
  with pytest.raises(AssertionError, match=r"docs/x.md:7 failed"):
    docs_blocks.run([bad], tmp_path)


@pytest.mark.needs_tf  # the pages' blocks train on moving_digits (TFDS).
@pytest.mark.slow
def test_every_run_and_slow_block_runs_in_the_order_of_the_site(tmp_path):
  """One folder for the whole site: the default run of Getting started is what the report, the
  predictor and the export of later pages read."""
  docs_blocks.run([b for b in BLOCKS if b.marker in ("run", "slow")], tmp_path, timeout=1800)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> pathlib.Path:
  """The site built as CI builds it: strict (-W -n), every warning an error."""
  pytest.importorskip("sphinx", reason="the docs extra: pip install -e '.[docs]'")
  out = tmp_path_factory.mktemp("site")
  r = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b",
                      "html", str(docs_blocks.DOCS), str(out)], capture_output=True, text=True,
                     cwd=docs_blocks.ROOT, timeout=600)
  assert r.returncode == 0, r.stderr[-5000:]
  return out


@pytest.mark.parametrize("page,min_images", [("index.html", 0), ("guides/report.html", 1)])
def test_the_site_opens_in_headless_chromium(site, chromium, page, min_images):
  chromium.get((site / page).as_uri())
  images = chromium.execute_script(
      "return Array.from(document.images).map(i => [i.src, i.complete, i.naturalWidth])")
  errors = [e for e in chromium.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
  text = chromium.find_element("tag name", "body").text
  assert not errors, errors
  assert len(images) >= min_images
  assert all(complete and width > 0 for _, complete, width in images), images
  assert "Getting started" in text and "API reference" in text  # The navigation is there.


def test_the_strict_build_fails_on_a_broken_link_or_anchor(tmp_path):
  """Our conf.py on a two-page site: a link to a missing page or heading is an error."""
  pytest.importorskip("sphinx", reason="the docs extra: pip install -e '.[docs]'")
  docs = tmp_path / "docs"
  shutil.copytree(docs_blocks.DOCS, docs, ignore=shutil.ignore_patterns("*.md", "_build", "*.png"))
  (docs / "index.md").write_text("# Home\n\n```{toctree}\npage\n```\n")
  (docs / "page.md").write_text("# Page\n\n[a](no-such-page.md), [b](index.md#no-such-heading), "
                                "[c](index.md#home)\n")
  r = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b",
                      "html", str(docs), str(tmp_path / "out")], capture_output=True, text=True,
                     cwd=tmp_path, timeout=600)
  assert r.returncode != 0
  assert "no-such-page.md" in r.stderr and "no-such-heading" in r.stderr
  assert "#home" not in r.stderr
