"""A converted transformers model's own code, written beside its weights by save_pretrained.

transformers' custom-code convention: config.json's `auto_map` names, per Auto class, `<file>.<class>`, and
those files sit flat in the checkpoint folder; `from_pretrained(dir, trust_remote_code=True)` copies them,
with every file they import relatively (`from .x import`, one dot), into its module cache and imports them.
Only torch and transformers need to be installed there.

The package is the one source of the shipped code: at save time the module defining the model class and
every module of the package it imports relatively (transitively, lazy imports inside functions too) are
copied as they are, only their relative imports rewritten to the flat layout (`from ..attention.variants
import` -> `from .variants import`). transformers' own `custom_object_save` copies single-dot imports
only, which the package's two-level layout (attention/, backbones/) needs more than.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

RELATIVE_FROM = re.compile(r"\bfrom\s+\.+[\w.]*\s+import\b")


def flat_name(module_name: str) -> str:
    """The file (without .py) a module becomes in the checkpoint folder: its last name."""
    return module_name.rsplit(".", 1)[-1]


def relative_imports(module) -> list[tuple[int, str]]:
    """(line index, absolute module name) of each relative `from ... import` in the module's source."""
    found = []
    for node in ast.walk(ast.parse(Path(module.__file__).read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            if node.module is None:
                raise ValueError(
                    f"{module.__name__} line {node.lineno}: `from {'.' * node.level} import ...` cannot be shipped "
                    "as model code; import from the module by name (from .module import name)"
                )
            target = importlib.util.resolve_name("." * node.level + node.module, module.__package__)
            found.append((node.lineno - 1, target))
    return found


def model_code(entry: str) -> dict[str, str]:
    """{flat file name: source} for module `entry` and every module it imports relatively, transitively."""
    sources: dict[str, str] = {}
    owners: dict[str, str] = {}  # flat name -> the module it came from
    pending = [entry]
    while pending:
        name = pending.pop()
        flat = flat_name(name)
        if flat in owners:
            if owners[flat] != name:
                raise ValueError(f"{name} and {owners[flat]} would both ship as {flat}.py: rename one of them")
            continue
        owners[flat] = name
        module = importlib.import_module(name)
        lines = Path(module.__file__).read_text(encoding="utf-8").splitlines(keepends=True)
        for index, target in relative_imports(module):
            lines[index] = RELATIVE_FROM.sub(f"from .{flat_name(target)} import", lines[index], count=1)
            pending.append(target)
        sources[flat] = "".join(lines)
    return sources


def write_model_code(config_class: type, heads: dict[str, type], directory) -> dict[str, str]:
    """Write the code of `config_class` and of `heads` (Auto class name -> model class), with what it imports,
    into `directory`; return the `auto_map` that config.json needs for it."""
    for module in sorted({config_class.__module__, *(head.__module__ for head in heads.values())}):
        for flat, source in model_code(module).items():
            (Path(directory) / f"{flat}.py").write_text(source, encoding="utf-8")
    auto_map = {"AutoConfig": f"{flat_name(config_class.__module__)}.{config_class.__name__}"}
    auto_map.update({auto: f"{flat_name(head.__module__)}.{head.__name__}" for auto, head in heads.items()})
    return auto_map
