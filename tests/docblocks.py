"""Executable documentation: the fenced shell blocks of a Markdown page (the learning path, the
SKILL.md files), their markers, and the `sme2` invocations inside them.

Conventions a page follows (HTML comments right before a block, invisible when rendered):

    <!-- not-run: needs an Android phone -->   the block is only syntax- and flag-checked
    <!-- expect: pipeline ok -->               its output must contain this text

Every other ```bash block runs, in page order."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

FENCE = re.compile(r"^```([\w-]*)\s*$")
MARKER = re.compile(r"^<!--\s*(not-run|expect):\s*(.*?)\s*-->\s*$")
SHELL = ("bash", "sh", "shell")
HEREDOC = re.compile(r"<<-?\s*'?\"?(\w+)'?\"?")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    not_run: str | None = None  # the reason, when marked
    expect: list[str] = field(default_factory=list)

    @property
    def shell(self) -> bool:
        return self.lang in SHELL

    @property
    def runs(self) -> bool:
        return self.shell and self.not_run is None

    def where(self) -> str:
        return f"{self.page.name}:{self.line}"


def front_matter(path: Path) -> tuple[dict, str]:
    """(front matter as a dict, body) of a Markdown file with YAML front matter."""
    text = Path(path).read_text()
    if not text.startswith("---\n"):
        return {}, text
    head, _, body = text[4:].partition("\n---\n")
    return yaml.safe_load(head) or {}, body


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a page with the markers written right before it."""
    lines = Path(path).read_text().splitlines()
    out, pending, i = [], {"not_run": None, "expect": []}, 0
    while i < len(lines):
        line = lines[i]
        marker = MARKER.match(line.strip())
        if marker:
            if marker[1] == "not-run":
                pending["not_run"] = marker[2] or "unspecified"
            else:
                pending["expect"].append(marker[2])
            i += 1
            continue
        fence = FENCE.match(line)
        if fence and line.startswith("```"):
            start, body = i, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            out.append(Block(Path(path), start + 1, fence[1], "\n".join(body) + "\n", **pending))
            pending = {"not_run": None, "expect": []}
        elif line.strip():
            pending = {"not_run": None, "expect": []}  # a marker applies to the very next block only
        i += 1
    return out


def _without_heredocs(script: str) -> list[str]:
    """The script's lines with backslash continuations joined and here-document bodies removed."""
    lines, out, skip_until = script.replace("\\\n", " ").splitlines(), [], None
    for line in lines:
        if skip_until is not None:
            if line.strip() == skip_until:
                skip_until = None
            continue
        out.append(line)
        m = HEREDOC.search(line)
        if m:
            skip_until = m[1]
    return out


def sme2_calls(script: str) -> list[list[str]]:
    """The argument lists of every `sme2 ...` command in a shell script (words after `sme2`, up
    to the next operator), found with a shell-like tokenizer so quoted text never counts."""
    calls = []
    for line in _without_heredocs(script):
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split, lexer.commenters = True, "#"
        try:
            tokens = list(lexer)
        except ValueError:  # an unbalanced quote: bash -n reports it
            continue
        for i, tok in enumerate(tokens):
            if tok != "sme2":
                continue
            prev = tokens[i - 1] if i else None
            at_command = (
                prev is None
                or set(prev) <= set("();<>|&")
                or prev in ("do", "then", "else", "$")
                or re.fullmatch(r"\w+=\S*", prev)
            )
            if not at_command:
                continue
            args = []
            for t in tokens[i + 1 :]:
                if set(t) <= set("();<>|&"):
                    break
                args.append(t)
            calls.append(args)
    return calls


def command_options(root) -> dict[tuple[str, ...], set[str]]:
    """{(command,) or (group, command): the option names it accepts}, from the same click
    command tree `--help` prints (the `sme2` group loads each command as it is asked for)."""
    ctx = root.context_class(root)
    out = {}

    def walk(cmd, path):
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), path + (name,))
            return
        opts = {"--help"}
        for p in cmd.params:
            opts |= set(getattr(p, "opts", [])) | set(getattr(p, "secondary_opts", []))
        out[path] = opts

    walk(root, ())
    return out


def unknown_flags(args: list[str], options: dict[tuple[str, ...], set[str]]) -> list[str]:
    """Problems with one `sme2` invocation: an unknown command, or flags the command lacks."""
    if not args or args[0] in ("--help", "-h"):
        return []
    path = (args[0],) if (args[0],) in options else tuple(args[:2])
    if path not in options:
        return [f"unknown command: sme2 {' '.join(args[:2])}"]
    rest = args[len(path) :]
    return [
        f"sme2 {' '.join(path)} has no option {flag}"
        for flag in (a.split("=", 1)[0] for a in rest if a.startswith("-") and a != "-")
        if flag not in options[path]
    ]
