"""The pykd backend (and all of windbg_ext) calls only what the real pykd
0.3.4.15 exports (pykd_api.txt, a copy of shared/pykd_api.txt), and the
stand-in defines nothing beyond it."""
from __future__ import annotations

import ast
import inspect
import os

from tests.support import ROOT, STANDIN_DIR as STANDIN

API = set(open(os.path.join(STANDIN, "pykd_api.txt")).read().split())
# pykd's exception classes: exported by the module, but pykd_api.txt lists functions only
PYKD_EXCEPTIONS = {"DbgException", "MemoryException", "SymbolException", "TypeException", "CPUException"}


def _pykd_references(path):
    """Names used as pykd.X / self._pykd.X / pykd_module.X, and `from pykd import X`."""
    tree = ast.parse(open(path).read(), path)
    refs = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            v = node.value
            if (isinstance(v, ast.Name) and v.id in ("pykd", "pykd_module")) or \
                    (isinstance(v, ast.Attribute) and v.attr == "_pykd"):
                refs.add((node.attr, node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.module == "pykd":
            refs.update((a.name, node.lineno) for a in node.names)
    return refs


def test_windbg_ext_calls_only_real_pykd_functions():
    used = {}
    for base, _, files in os.walk(os.path.join(ROOT, "windbg_ext")):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(base, f)
                for name, line in _pykd_references(path):
                    used.setdefault(name, []).append("%s:%d" % (os.path.relpath(path, ROOT), line))
    unknown = {k: v for k, v in used.items() if k not in API}
    assert not unknown, "not in the real pykd: %r" % unknown
    # the walk really sees the backend's calls (a broken walk would pass vacuously)
    assert {"loadBytes", "getOffset", "rdmsr", "reg", "getNumberThreads", "getCurrentThreadId",
            "setCurrentThreadId", "dprintln", "isWindbgExt"} <= set(used)


def test_the_walk_catches_an_invented_function(tmp_path):
    p = tmp_path / "bad.py"
    p.write_text("import pykd\nclass T:\n    def f(self):\n        return self._pykd.getNumberProcessors()\n")
    assert {n for n, _ in _pykd_references(str(p))} - API == {"getNumberProcessors"}


def test_standin_defines_nothing_outside_the_real_module(standin):
    public = {n for n in vars(standin) if not n.startswith("_")}
    functions = {n for n in public if inspect.isfunction(getattr(standin, n))}
    classes = {n for n in public if inspect.isclass(getattr(standin, n))}
    assert functions <= API, functions - API
    assert classes <= PYKD_EXCEPTIONS, classes - PYKD_EXCEPTIONS
    assert public == functions | classes, public - functions - classes
    for n in classes:
        assert issubclass(getattr(standin, n), standin.DbgException)


def test_standin_signatures_match_pykd():
    """Parameter names as pykd documents them (keyword calls must work the same)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("pykd_sig", os.path.join(STANDIN, "pykd.py"))
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    assert list(inspect.signature(m.loadBytes).parameters) == ["offset", "count", "phyAddr"]
    assert inspect.signature(m.loadBytes).parameters["phyAddr"].default is False
    assert list(inspect.signature(m.dprintln).parameters) == ["str", "dml"]
    assert list(inspect.signature(m.rdmsr).parameters) == ["msrIndex"]
    assert list(inspect.signature(m.setCurrentThreadId).parameters) == ["id"]
    assert list(inspect.signature(m.dbgCommand).parameters) == ["command", "suppressOutput"]
    # pykd defines these without argument names (Boost.Python): positional only
    for name in ("rdmsr", "setCurrentThreadId", "getOffset", "reg"):
        kinds = {p.kind for p in inspect.signature(getattr(m, name)).parameters.values()}
        assert kinds == {inspect.Parameter.POSITIONAL_ONLY}, name
    assert issubclass(m.TypeException, m.SymbolException) and issubclass(m.CPUException, m.DbgException)
