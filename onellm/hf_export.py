"""The code a model directory carries for ``trust_remote_code``: the library's model, config and processor modules,
flattened into one folder, so ``AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)`` and
``AutoProcessor.from_pretrained(dir, trust_remote_code=True)`` work where ``import onellm`` does not.

``transformers`` loads remote code as single-folder modules that import each other relatively
(``from .x import y``), and finds the files to copy with a regular expression over such imports. The library is
a package, so each module it needs (the transitive closure of relative imports, found from the AST, function-level
imports included) is written as ``onellm_<dotted_path>.py`` with its relative imports rewritten to those names.
The library keeps to two rules this relies on, checked here: no absolute ``import onellm`` in those modules, and
no ``from . import <submodule>`` (only names defined inside a module are imported).
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

from .version import __version__

PACKAGE_ROOT = Path(__file__).resolve().parent
ENTRY_MODULES = {  # file written in the model directory -> (module, class)
    "configuration_onellm.py": ("onellm.config", "OneLLMConfig"),
    "modeling_onellm.py": ("onellm.model.onellm", "OneLLMForConditionalGeneration"),
    "processing_onellm.py": ("onellm.processing", "OneLLMProcessor"),
}
AUTO_MAP = {
    "AutoConfig": "configuration_onellm.OneLLMConfig",
    "AutoModel": "modeling_onellm.OneLLMForConditionalGeneration",
    "AutoModelForCausalLM": "modeling_onellm.OneLLMForConditionalGeneration",
    "AutoModelForImageTextToText": "modeling_onellm.OneLLMForConditionalGeneration",
}
PROCESSOR_AUTO_MAP = {"AutoProcessor": "processing_onellm.OneLLMProcessor"}
MANIFEST = "onellm_remote_code.json"


class ExportError(RuntimeError):
    pass


def module_path(module: str) -> Path:
    """The source file of a library module (a package's ``__init__.py``)."""
    rel = Path(*module.split(".")[1:])
    package = PACKAGE_ROOT / rel / "__init__.py"
    return package if package.is_file() else (PACKAGE_ROOT / rel).with_suffix(".py")


def _is_package(module: str) -> bool:
    return module_path(module).name == "__init__.py"


def flat_name(module: str) -> str:
    return module.replace(".", "_")


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """Absolute module name of a relative ``from ... import``."""
    base = module.split(".")
    if not _is_package(module):
        base = base[:-1]  # a module's level-1 import refers to its package
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def relative_imports(module: str) -> list[tuple[ast.ImportFrom, str]]:
    """Every relative import of a module (any depth in the file) with its absolute target."""
    tree = ast.parse(module_path(module).read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "onellm" for a in node.names):
            raise ExportError(f"{module}: absolute 'import onellm' cannot be shipped as remote code")
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").split(".")[0] == "onellm":
                raise ExportError(f"{module}: absolute 'from onellm... import' cannot be shipped as remote code")
            if node.level > 0:
                target = _resolve(module, node)
                for alias in node.names:
                    if module_path(f"{target}.{alias.name}").is_file():
                        raise ExportError(f"{module}: 'from {'.' * node.level}{node.module or ''} import "
                                          f"{alias.name}' imports a submodule; import names from it instead")
                out.append((node, target))
    return out


def closure(entries=None) -> list[str]:
    """The library modules the entry modules need, transitively."""
    todo = [m for m, _ in (entries or ENTRY_MODULES).values()]
    seen: list[str] = []
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        if not module_path(module).is_file():
            raise ExportError(f"no source for module {module}")
        seen.append(module)
        todo += [target for _, target in relative_imports(module)]
        parts = module.split(".")  # importing a submodule runs its packages' __init__ too
        todo += [".".join(parts[:k]) for k in range(2, len(parts))]
    return sorted(seen)


def flattened_source(module: str) -> str:
    """The module's source with each relative import rewritten to the flat module it needs."""
    lines = module_path(module).read_text(encoding="utf-8").splitlines(keepends=True)
    edits = []
    for node, target in relative_imports(module):
        names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in node.names)
        indent = " " * node.col_offset
        edits.append((node.lineno, node.end_lineno, f"{indent}from .{flat_name(target)} import {names}\n"))
    for start, end, text in sorted(edits, reverse=True):
        lines[start - 1:end] = [text]
    header = f"# Generated from the onellm library module {module} (version {__version__}); do not edit.\n"
    return header + "".join(lines)


def export_remote_code(directory: str | Path) -> list[str]:
    """Write the flattened modules and the entry files into a model directory; returns the file names."""
    directory = Path(directory)
    written = []
    for module in closure():
        name = f"{flat_name(module)}.py"
        (directory / name).write_text(flattened_source(module), encoding="utf-8")
        written.append(name)
    for file, (module, cls) in ENTRY_MODULES.items():
        (directory / file).write_text(f'"""Entry point for transformers\' trust_remote_code."""\n'
                                      f"from .{flat_name(module)} import {cls}\n\n__all__ = [\"{cls}\"]\n",
                                      encoding="utf-8")
        written.append(file)
    (directory / MANIFEST).write_text(json.dumps({"onellm_version": __version__, "files": sorted(written)},
                                                 indent=2) + "\n", encoding="utf-8")
    return sorted(written)
