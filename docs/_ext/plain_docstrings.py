"""Our docstrings, as written, into the reStructuredText that autodoc expects; tidier signatures.

dcrn_jax's docstrings are plain text (see docs/contributing.md): `code` in single backquotes,
tables and formulas laid out with indentation, `*`, `|` and `name_` as ordinary characters, and
Google-style `Args:`, `Attributes:`, `Returns:`, `Yields:`, `Raises:` sections. Read as
reStructuredText they would lose their layout (and warn, which fails the strict build), so
before autodoc parses a docstring this turns it into reStructuredText that shows it as written:

  `code`               -> ``code``
  * | \\ and word_      -> escaped
  an indented block    -> a text block (its layout kept to the character)
  - a bullet           -> a bullet list (continuation lines indented under its text)
  Args: / Attributes:  -> a rubric and a list of ``name``: text
  Returns: and others  -> a rubric and a paragraph
"""

import re

SECTIONS = ("Args", "Arguments", "Attributes", "Returns", "Yields", "Raises")
_SECTION = re.compile(r"(\s*)(" + "|".join(SECTIONS) + r"):\s*$")
_CODE = re.compile(r"`([^`]+)`")
_ITEM = re.compile(r"(\*{0,2}[A-Za-z_][\w.]*(?: \([^)]*\))?):\s*(.*)$")
_BULLET = re.compile(r"([-*] )")


def _escape_text(text: str) -> str:
  text = text.replace("\\", "\\\\").replace("*", "\\*").replace("|", "\\|")
  return re.sub(r"(?<=\w)_(?=\W|$)", r"\\_", text)


def inline(line: str) -> str:
  """One line of prose: backquoted spans become literals, the rest is escaped."""
  out, pos = [], 0
  for m in _CODE.finditer(line):
    before = line[pos:m.start()]
    out.append(_escape_text(before))
    if before and before[-1].isalnum():
      out.append("\\ ")
    out.append(f"``{m.group(1)}``")
    after = line[m.end():m.end() + 1]
    if after and after.isalnum():
      out.append("\\ ")
    pos = m.end()
  out.append(_escape_text(line[pos:]))
  return "".join(out)


def _indent(line: str) -> int:
  return len(line) - len(line.lstrip())


def _section(title: str, body: list[str]) -> list[str]:
  """A Google-style section: a rubric, then items (Args, Attributes) or one paragraph."""
  out = ["", f".. rubric:: {title}", ""]
  lines = [line for line in body if line.strip()]
  if not lines:
    return out
  if title not in ("Args", "Arguments", "Attributes"):
    return out + [" ".join(inline(line.strip()) for line in lines), ""]
  base = min(_indent(line) for line in lines)
  items = []
  for line in lines:
    if _indent(line) == base or not items:
      items.append([line.strip()])
    else:
      items[-1].append(line.strip())
  for first, *rest in items:
    m = _ITEM.match(first)
    text = " ".join([m.group(2)] + rest) if m else " ".join([first] + rest)
    name = f"``{m.group(1)}``: " if m else ""
    out.append(f"- {name}{inline(text)}")
  return out + [""]


def to_rst(lines: list[str]) -> list[str]:
  """A docstring's lines (dedented, as autodoc gives them) -> reStructuredText lines."""
  out, i, bullet = [], 0, 0
  while i < len(lines):
    line = lines[i]
    section = _SECTION.match(line)
    if section and _indent(line) == 0:
      body, i = [], i + 1
      while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > 0):
        body.append(lines[i])
        i += 1
      out += _section(section.group(2), body)
      bullet = 0
      continue
    if not line.strip():
      out.append("")
      i += 1
      continue
    indent = _indent(line)
    if indent == 0:
      m = _BULLET.match(line)
      after_text = bool(out and out[-1])
      if m:
        if after_text and not bullet:
          out.append("")  # A list needs a blank line before it...
        bullet = len(m.group(1))
        out.append(m.group(1) + inline(line[bullet:]))
      else:
        if after_text and bullet:
          out.append("")  # ... and after it.
        bullet = 0
        out.append(inline(line))
      i += 1
      continue
    if bullet and indent == bullet:  # A bullet's continuation line.
      out.append(" " * bullet + inline(line.strip()))
      i += 1
      continue
    # An indented block: kept as written, in a literal block.
    block = []
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > 0):
      block.append(lines[i])
      i += 1
    while block and not block[-1].strip():
      block.pop()
    out += ["", ".. code-block:: text", ""] + ["   " + b if b.strip() else "" for b in block] + [""]
    bullet = 0
  return out


def _process(app, what, name, obj, options, lines):
  del app, what, name, obj, options
  lines[:] = to_rst(list(lines))


# Flax modules' signatures name every dataclass field's default as Python prints it.
_SIGNATURE_NOISE = [
    (re.compile(r",? *parent=<[^>]*>"), ""),
    (re.compile(r",? *name=None"), ""),
    (re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>"), r"\1"),
    (re.compile(r"<function ([\w.]+?)(?:\.<locals>\.\w+)?(?: at 0x[0-9a-f]+)?>"), r"\1"),
]


def _signature(app, what, name, obj, options, signature, return_annotation):
  del app, what, name, obj, options
  if signature:
    for pattern, replacement in _SIGNATURE_NOISE:
      signature = pattern.sub(replacement, signature)
  return signature, return_annotation


def _skip(app, what, name, obj, skip, options):
  """Leaves out class attributes that are only another library's type (a Flax field's dtype
  default would show as "alias of float32")."""
  del app, name, options
  if what == "class" and isinstance(obj, type) and not obj.__module__.startswith("dcrn_jax"):
    return True
  return skip


def setup(app):
  app.connect("autodoc-process-docstring", _process)
  app.connect("autodoc-process-signature", _signature)
  app.connect("autodoc-skip-member", _skip)
  return {"parallel_read_safe": True, "parallel_write_safe": True}
