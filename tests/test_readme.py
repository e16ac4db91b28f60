"""The README and docs/: they start where a teacher starts, and every command and link in them works as written.

The README opens with "Start here" (install, `gpt-keras demo`, `gpt-keras lab --run ...`, `gpt-keras temperature
--run ...`) and stays short, the reference lives in docs/; no placeholder a reader must edit (a repository
address that does not exist); every relative link resolves; every `gpt-keras ...` command, in a code block or
in running text, is accepted by the command line's own parser; and the runs the examples open are the ones
the commands really make (`runs/run-YYYYMMDD-HHMMSS`, as `gpt-keras demo` prints) or a `--name` the same page
sets. Parsing only: nothing here trains or imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
# The address a reader would have had to fill in by hand; spelled in two pieces so this file does not hold it.
PLACEHOLDER = "OWNER" + "/"
# Where the placeholder would reach a reader: the pages, the notebook and the script that writes it, the package.
PLACEHOLDER_FILES = [*PAGES, *sorted((ROOT / "notebooks").glob("*.ipynb")), ROOT / "scripts" / "build_notebook.py",
                     ROOT / "pyproject.toml"]
DEMO_RUN = re.compile(r"runs/run-\d{8}-\d{6}")  # the name `gpt-keras demo` gives its run (rundir.new_run_dir)
FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
SHELL_SEPARATORS = {"&&", "||", ";", "|"}


def page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


# --- reading the pages ---------------------------------------------------------------------------------

def shell_blocks(text: str) -> list[str]:
    """The code blocks a reader types into a terminal (Python and JSON blocks are not shell)."""
    return [body for language, body in FENCE.findall(text) if language not in ("python", "json", "text")]


def inline_spans(text: str) -> list[str]:
    """The `code` spans of the running text (outside code blocks), with line breaks inside a span joined."""
    prose = FENCE.sub("", text)
    return [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]


def shell_commands(block: str) -> list[list[str]]:
    """Each command of a shell block as argv, comments dropped, `\\` continuations joined, `&&` chains split."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        command: list[str] = []
        for word in [*words, ";"]:
            if word in SHELL_SEPARATORS:
                if command:
                    commands.append(command)
                command = []
            else:
                command.append(word)
    return commands


def gpt_keras_argv(command: list[str]) -> list[str] | None:
    """The arguments after `gpt-keras` (or `python -m gpt_keras`), environment assignments skipped; None if
    the command is something else (pip, make, python)."""
    while command and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", command[0]):
        command = command[1:]
    if command and command[0].lstrip("!").rsplit("/", 1)[-1] == "gpt-keras":
        return command[1:]
    if command[:3] in (["python", "-m", "gpt_keras"], ["python3", "-m", "gpt_keras"]):
        return command[3:]
    return None


def page_commands(path: Path) -> list[tuple[str, list[str]]]:
    """Every `gpt-keras` command of a page: (where, argv); `where` is "block" or "inline"."""
    text = path.read_text(encoding="utf-8")
    found = [("block", argv) for block in shell_blocks(text) for command in shell_commands(block)
             if (argv := gpt_keras_argv(command)) is not None]
    for span in inline_spans(text):
        if span == "gpt-keras" or span.startswith("gpt-keras "):
            found.append(("inline", shlex.split(span)[1:]))
    return found


def all_commands() -> list[tuple[str, str, list[str]]]:
    return [(page_id(path), where, argv) for path in PAGES for where, argv in page_commands(path)]


def parse(argv: list[str]) -> tuple[int, str]:
    """The command line's parser on argv: (exit code, what it printed); 0 when it accepts the arguments."""
    from gpt_keras.tools.cli import build_parser

    printed = io.StringIO()
    with contextlib.redirect_stderr(printed), contextlib.redirect_stdout(printed):
        try:
            build_parser().parse_args(argv)
        except SystemExit as exit_:  # a usage error (2), or --help / --version (0)
            return (exit_.code if isinstance(exit_.code, int) else 0), printed.getvalue()
    return 0, printed.getvalue()


def heading_anchors(path: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    anchors = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", FENCE.sub("", path.read_text(encoding="utf-8")), re.MULTILINE):
        anchors.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return anchors


# --- the README starts where a teacher starts ------------------------------------------------------------

def test_the_readme_starts_with_the_four_commands_of_a_first_class():
    opening = README.read_text(encoding="utf-8").splitlines()[:40]
    text = "\n".join(opening)
    assert re.search(r"^## Start here", text, re.MULTILINE), "no 'Start here' section in the README's first 40 lines"
    for command in ("pip install", "gpt-keras demo", "gpt-keras lab --run runs/run-",
                    "gpt-keras temperature --run runs/run-"):
        assert command in text, f"{command!r} is not in the README's first 40 lines"
    # The lab and the temperature lab open the run the demo printed, under the name the demo gives it.
    lab_run = re.search(r"gpt-keras lab --run (\S+)", text).group(1)
    temperature_run = re.search(r"gpt-keras temperature --run (\S+)", text).group(1)
    assert DEMO_RUN.fullmatch(lab_run) and lab_run == temperature_run


def test_the_readme_is_short_and_keeps_the_two_contract_commands():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250, "the README is over 250 lines: move reference parts into docs/"
    section = text.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    block = shell_blocks(section)[0]
    assert [command[:2] for command in shell_commands(block)] == [["make", "demo"], ["make", "test"]]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo:", makefile, re.MULTILINE) and re.search(r"^test:", makefile, re.MULTILINE)


@pytest.mark.parametrize("path", PLACEHOLDER_FILES, ids=page_id)
def test_no_placeholder_address_a_reader_must_edit(path):
    lines = [number for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if PLACEHOLDER in line]
    assert not lines, f"{page_id(path)}: {PLACEHOLDER!r} on line(s) {lines}"


# --- links and commands work as written ------------------------------------------------------------------

@pytest.mark.parametrize("path", PAGES, ids=page_id)
def test_every_relative_link_resolves(path):
    broken = []
    for target in LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page_id(path)}: broken links {broken}"


def test_the_pages_hold_commands_to_check():
    commands = all_commands()
    assert len(commands) > 40 and {argv[0] for _, _, argv in commands if argv} >= {"demo", "lab", "temperature",
                                                                                      "train", "generate"}


@pytest.mark.parametrize("page, where, argv", all_commands(),
                         ids=[f"{page}:{where}:{' '.join(argv)[:60]}" for page, where, argv in all_commands()])
def test_every_gpt_keras_command_is_accepted_by_the_parser(page, where, argv):
    if where == "inline" and not argv:
        return  # the program named in running text
    if where == "inline" and len(argv) == 1 and not argv[0].startswith("-"):
        assert parse([argv[0], "--help"])[0] == 0, f"{page}: `gpt-keras {argv[0]}` is no subcommand"
        return  # a subcommand named in running text, not a command to run
    code, printed = parse(argv)
    assert code == 0, f"{page}: `gpt-keras {shlex.join(argv)}` is refused: {printed.strip()}"


@pytest.mark.parametrize("path", PAGES, ids=page_id)
def test_the_runs_the_examples_open_are_the_ones_the_commands_make(path):
    commands = [argv for _, argv in page_commands(path)]
    made = {f"runs/{argv[argv.index('--name') + 1]}" for argv in commands if "--name" in argv}
    made |= {argv[argv.index("--out") + 1] for argv in commands if argv[:1] == ["finetune-gpt2"] and "--out" in argv}
    opened = [argv[argv.index("--run") + 1] for argv in commands if "--run" in argv[:-1]]
    unknown = [run for run in opened if not DEMO_RUN.fullmatch(run) and run not in made]
    assert not unknown, f"{page_id(path)}: runs no command on the page makes: {unknown}"
