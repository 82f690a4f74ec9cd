"""The import rules of docs/architecture.md, checked on the source: each layer
imports only the layers below it, commands do not borrow each other's
helpers, and the lab uses the suite only through its public pieces."""
from __future__ import annotations

import ast
import os
from typing import Dict, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# package prefix -> the windbg_ext modules it may import (by prefix)
# the foundation under every layer: bad-input errors, the number syntax, checked paths
FOUNDATION = ("windbg_ext.errors", "windbg_ext.number_syntax", "windbg_ext.paths", "windbg_ext.stdout_pipe")
ALLOWED = {
    "windbg_ext.arch": ("windbg_ext.arch", "windbg_ext.number_syntax", "windbg_ext.errors"),
    "windbg_ext.errors": (),
    "windbg_ext.number_syntax": ("windbg_ext.errors",),
    "windbg_ext.paths": ("windbg_ext.errors",),
    "windbg_ext.stdout_pipe": (),
    "windbg_ext.render": ("windbg_ext.render",),
    "windbg_ext.target": ("windbg_ext.target", "windbg_ext.arch") + FOUNDATION,
    "windbg_ext.hv": ("windbg_ext.hv", "windbg_ext.target", "windbg_ext.arch") + FOUNDATION,
    "windbg_ext.state_files": ("windbg_ext.arch",) + FOUNDATION,
    "windbg_ext.commands": ("windbg_ext.commands.base", "windbg_ext.commands", "windbg_ext.hv", "windbg_ext.target",
                            "windbg_ext.arch", "windbg_ext.render", "windbg_ext.state_files",
                            "windbg_ext.cli") + FOUNDATION,
    "emulated_lab": ("windbg_ext.arch", "windbg_ext.target.image", "windbg_ext.state_files") + FOUNDATION,
}
# the exceptions, and why: `python -m emulated_lab demo` shows the suite's view by running its front end;
# `exercise selftest` answers each exercise from the suite's --json output by running its front end too
EXCEPTIONS = {("emulated_lab.__main__", "windbg_ext.cli"), ("emulated_lab.exercises.suite", "windbg_ext.cli")}


def _modules() -> List[Tuple[str, str]]:
    out = []
    for pkg in ("windbg_ext", "emulated_lab"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, pkg)):
            for f in files:
                if f.endswith(".py"):
                    path = os.path.join(dirpath, f)
                    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    out.append((rel[:-len(".__init__")] if rel.endswith(".__init__") else rel, path))
    return out


def _imports(path: str) -> List[str]:
    tree = ast.parse(open(path).read())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend("%s.%s" % (node.module, a.name) for a in node.names)
        elif isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
    return names


def _rule(module: str) -> Tuple[str, ...]:
    for prefix in sorted(ALLOWED, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return ALLOWED[prefix]
    return ()


def _violations() -> Dict[str, List[str]]:
    bad: Dict[str, List[str]] = {}
    for module, path in _modules():
        if module in ("windbg_ext", "windbg_ext.__main__", "windbg_ext.cli"):
            continue  # the front end may import any layer
        allowed = _rule(module)
        own_command = module if module.startswith("windbg_ext.commands.") else None
        for name in _imports(path):
            if not name.startswith("windbg_ext"):
                continue
            if (module, name) in EXCEPTIONS or any(name == a or name.startswith(a + ".") for a in allowed):
                if own_command and name.startswith("windbg_ext.commands.") and \
                        not name.startswith(("windbg_ext.commands.base", own_command)) and \
                        name != "windbg_ext.commands.COMMANDS":
                    bad.setdefault(module, []).append(name)  # another command's helper
                continue
            if name == "windbg_ext" or name == "windbg_ext.cli" and (module, name) in EXCEPTIONS:
                continue
            bad.setdefault(module, []).append(name)
    return bad


def test_every_module_imports_only_what_its_layer_may():
    assert _violations() == {}


def test_the_rule_check_can_fail():
    """The checker sees a forbidden import (so the test above means something)."""
    assert _rule("windbg_ext.arch.exits") == ("windbg_ext.arch", "windbg_ext.number_syntax", "windbg_ext.errors")
    assert not any("windbg_ext.hv.walker".startswith(a) for a in _rule("windbg_ext.arch.exits"))
    assert "windbg_ext.commands.verify" not in _rule("emulated_lab.lab")
