"""Fails when the README or a page of docs/ points at something that is not there (`make lint`).

Checked, in README.md, CHANGELOG.md and docs/*.md:
- every markdown link to a file of the repository: the file exists, and its `#anchor`, if any, is a heading
  of that file (GitHub's slugs) or an explicit `<a id="...">`;
- every path in backticks that starts with a top-level folder of the repository (`pipelines/chain.py`,
  `bench/`, `data/rsvps/*.jsonl`): it exists, or its glob matches. Paths with a placeholder (`<name>`, `...`)
  and those under folders the project makes at run time (`.stack/`, `.venv/`, `bench/results/`) are not
  checked.

    python tools/check_docs.py          # prints each broken reference as FILE:LINE: what; exit 1 if any
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MADE_AT_RUN_TIME = ("bench/results/", "tests/artifacts/")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\n]+)`")
ANCHOR = re.compile(r'<a id="([^"]+)"></a>')


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            found.add(slug(line.lstrip("#")))
        found.update(ANCHOR.findall(line))
    return found


def pages() -> list[Path]:
    return [p for p in [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))] if p.exists()]


def top_folders() -> set[str]:
    return {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")}


def check_link(page: Path, target: str) -> str | None:
    if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
        return None
    file_part, _, anchor = target.partition("#")
    path = (page.parent / file_part).resolve() if file_part else page
    if not path.exists():
        return f"link to {target}: no file {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}"
    if anchor and path.suffix == ".md" and anchor not in anchors(path):
        return f"link to {target}: no heading or anchor #{anchor} in {path.relative_to(ROOT)}"
    return None


def check_code_path(text: str, folders: set[str]) -> str | None:
    candidate = text.split()[0].rstrip(":,.)") if text.split() else ""
    candidate = candidate.split("::")[0]
    first = candidate.split("/")[0]
    if "/" not in candidate or first not in folders:
        return None
    if any(mark in candidate for mark in ("<", ">", "...", "…", "{", "$")) or candidate.startswith(MADE_AT_RUN_TIME):
        return None
    if any(ch in candidate for ch in "*?["):
        return None if list(ROOT.glob(candidate)) else f"`{candidate}` matches no file"
    if (ROOT / candidate).exists():
        return None
    module, _, name = candidate.rpartition("/")[2].partition(".")
    source = ROOT / candidate.rpartition("/")[0] / f"{module}.py"
    if name and source.exists():  # `ml/features.name_words`: a name defined in ml/features.py
        defined = re.search(
            rf"^\s*(def|class)\s+{re.escape(name)}\b|^{re.escape(name)}\s*[:=]", source.read_text(), re.M
        )
        return None if defined else f"`{candidate}`: {source.relative_to(ROOT)} defines no {name}"
    return f"`{candidate}` does not exist"


def problems() -> list[str]:
    folders = top_folders()
    found = []
    for page in pages():
        in_code = False
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if line.startswith("```"):
                in_code = not in_code
                continue
            if in_code:
                continue
            where = f"{page.relative_to(ROOT)}:{number}"
            for target in LINK.findall(line):
                if problem := check_link(page, target):
                    found.append(f"{where}: {problem}")
            for code in CODE.findall(line):
                if problem := check_code_path(code, folders):
                    found.append(f"{where}: {problem}")
    return found


def main() -> int:
    found = problems()
    for line in found:
        print(line)
    checked = ", ".join(str(p.relative_to(ROOT)) for p in pages())
    print(
        f"docs: {len(found)} broken reference(s) in {checked}"
        if found
        else f"docs: every reference resolves ({checked})"
    )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
