"""Read YAML so that every validation error can name its file and line.

PyYAML's composed node tree knows where each value started; we index it by path (("practices", 0, "id"), ...)
and map pydantic's error locations back to the deepest known path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Path_ = tuple[str | int, ...]
ModelT = TypeVar("ModelT", bound=BaseModel)

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """An invalid configuration file; `problems` are 'file:line: where: what' strings."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.problems))


@dataclass(frozen=True)
class YamlDocument:
    path: Path
    data: Any
    lines: Mapping[Path_, int]

    def line_of(self, location: Sequence[str | int]) -> int:
        """Line (1-based) of the deepest known node on `location`."""
        loc = tuple(location)
        while loc and loc not in self.lines:
            loc = loc[:-1]
        return self.lines.get(loc, 1)

    def problem(self, location: Sequence[str | int], message: str) -> str:
        where = format_location(location)
        prefix = f"{self.path}:{self.line_of(location)}"
        return f"{prefix}: {where}: {message}" if where else f"{prefix}: {message}"


def format_location(location: Sequence[str | int]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def expand_environment(text: str, path: Path) -> str:
    """Replace ${NAME} and ${NAME:-fallback} with environment values; unset names are errors."""
    problems: list[str] = []

    def replace(match: re.Match[str], line_no: int) -> str:
        name, fallback = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value is not None and value != "":
            return value
        if fallback is not None:
            return fallback
        problems.append(f"{path}:{line_no}: environment variable {name} is not set")
        return ""

    lines = []
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        if line.lstrip().startswith("#"):
            lines.append(line)
        else:
            lines.append(ENV_REFERENCE.sub(lambda match, n=number: replace(match, n), line))  # type: ignore[misc]
    if problems:
        raise ConfigError(problems)
    return "".join(lines)


# libyaml's parser when PyYAML was built with it: ten times faster on a config of thousands of practices.
SafeBase = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ConfigLoader(SafeBase):  # type: ignore[misc,valid-type]
    """SafeLoader, except that a date-looking scalar that is no date (2026-13-01) stays a string, so that
    validation reports it with its line instead of PyYAML raising a bare ValueError."""

    def construct_lenient_timestamp(self, node: yaml.ScalarNode) -> object:
        try:
            return self.construct_yaml_timestamp(node)
        except ValueError:
            return self.construct_scalar(node)


ConfigLoader.add_constructor("tag:yaml.org,2002:timestamp", ConfigLoader.construct_lenient_timestamp)


def read_yaml(path: Path, *, expand_env: bool = False) -> YamlDocument:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    if expand_env:
        text = expand_environment(text, path)
    try:
        node, data = compose_and_construct(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise ConfigError([f"{path}:{line}: not valid YAML: {exc.problem}"]) from exc
    lines: dict[Path_, int] = {}
    if node is not None:
        index_lines(node, (), lines)
    return YamlDocument(path=path, data=data if data is not None else {}, lines=lines)


def compose_and_construct(text: str) -> tuple[yaml.Node | None, object]:
    """Parse once: the node tree (for line numbers) and the data built from that same tree."""
    loader = ConfigLoader(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


def index_lines(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[(*path, key)] = key_node.start_mark.line + 1
            index_lines(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            index_lines(item, (*path, position), lines)


def validate(document: YamlDocument, model: type[ModelT]) -> ModelT:
    try:
        return model.model_validate(document.data)
    except ValidationError as exc:
        raise ConfigError([document.problem(error["loc"], error["msg"]) for error in exc.errors()]) from exc
