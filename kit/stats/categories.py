"""Operator categories as data: one rules table (kit/stats/data/categories.toml, plus the user's
$SME2_HOME/categories.toml tried first), two schemes: `blog` (the case study's five) and `fine`."""

from __future__ import annotations

import re
from kit.core.compat import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from kit.core.errors import Sme2Error

RULES_FILE = Path(__file__).resolve().parent / "data" / "categories.toml"
SCHEMES = ("blog", "fine")
BLOG_ORDER = ("Convolution", "GEMM", "Data Movement", "Elementwise", "Other")


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern
    delegated: bool | None
    blog: str | None
    fine: str | None


class RuleEntry(BaseModel):
    """One `[[rule]]` of a categories.toml, as written (TOML types, no coercion)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    match: str
    delegated: bool | None = None
    blog: str | None = None
    fine: str | None = None

    @field_validator("match")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v, re.I)
        except re.error as e:
            raise ValueError(f"not a regular expression ({e})") from None
        return v


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    rule: list[dict] = []


def load_rules(user_file: Path | None = None) -> tuple[Rule, ...]:
    files = [f for f in (user_file, RULES_FILE) if f is not None and Path(f).exists()]
    return _load(tuple(str(f) for f in files))


@lru_cache(maxsize=8)
def _load(files: tuple[str, ...]) -> tuple[Rule, ...]:
    rules = []
    for f in files:
        try:
            data = RulesFile.model_validate(tomllib.loads(Path(f).read_text()))
        except tomllib.TOMLDecodeError as e:
            raise Sme2Error(
                f"category rules file {f} is not valid TOML: {e}",
                "fix the file; see kit/stats/data/categories.toml for the format",
            ) from e
        except ValidationError as e:
            raise Sme2Error(
                f"category rules file {f}: {_first_problem(e)[0]}",
                "the file holds only [[rule]] tables; see kit/stats/data/categories.toml for the format",
            ) from None
        for i, raw in enumerate(data.rule):
            try:
                r = RuleEntry.model_validate(raw)
            except ValidationError as e:
                problem, key = _first_problem(e)
                if key == "match":
                    raise Sme2Error(
                        f"rule {i + 1} in {f} has a bad or missing `match`: {problem}",
                        "give each [[rule]] a valid regular expression in `match`",
                    ) from None
                raise Sme2Error(
                    f"rule {i + 1} in {f}: {problem}",
                    "a [[rule]] has `match` (a regular expression) and optionally `delegated` (true or false), "
                    "`blog` and `fine` (category names)",
                ) from None
            rules.append(Rule(re.compile(r.match, re.I), r.delegated, r.blog, r.fine))
    return tuple(rules)


def _first_problem(e: ValidationError) -> tuple[str, str]:
    """(what is wrong, which key): unknown keys first, since a misspelt key also looks missing."""
    err = sorted(e.errors(), key=lambda x: x["type"] != "extra_forbidden")[0]
    key = ".".join(str(part) for part in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unknown key `{key}`", key
    if err["type"] == "missing":
        return f"`{key}` is missing", key
    return f"`{key}` = {err['input']!r}: {err['msg'].removeprefix('Value error, ')}", key


def categorize(op_type: str, delegated: bool, rules: tuple[Rule, ...]) -> dict[str, str]:
    """{'blog': ..., 'fine': ...} for one operator type; 'Other'/'OTHER' when nothing matches."""
    out: dict[str, str] = {}
    for r in rules:
        if r.delegated is not None and r.delegated != delegated:
            continue
        if not r.pattern.search(op_type):
            continue
        for scheme in SCHEMES:
            value = getattr(r, scheme)
            if value and scheme not in out:
                out[scheme] = value
        if len(out) == len(SCHEMES):
            break
    return {"blog": out.get("blog", "Other"), "fine": out.get("fine", "OTHER")}


def label(frame: pd.DataFrame, rules: tuple[Rule, ...]) -> pd.DataFrame:
    """Add `category` (blog) and `fine_category` columns to a frame with op_type and delegated."""
    keys = frame[["op_type", "delegated"]].drop_duplicates()
    table = {(t, bool(d)): categorize(t, bool(d), rules) for t, d in keys.itertuples(index=False)}
    out = frame.copy()
    pairs = list(zip(out["op_type"], out["delegated"].astype(bool)))
    out["category"] = [table[p]["blog"] for p in pairs]
    out["fine_category"] = [table[p]["fine"] for p in pairs]
    return out
