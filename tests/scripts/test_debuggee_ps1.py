"""setup-debuggee.ps1, statically: PowerShell cannot be installed here, so the
script is parsed with the tree-sitter PowerShell grammar (a syntax check, not
PowerShell's own parser) and held to the settings table:

- every table kind has a handler, and the script hard-codes no table data
  (so every entry -- present or future -- is applied from the table);
- every field the script reads from an entry exists in the table;
- its parameters are the table's parameters, with the same defaults;
- every change goes through Invoke-Change, which asks ShouldProcess (-WhatIf);
- every command is a known cmdlet/tool or a function it defines, and every
  variable it reads is assigned somewhere (catches typos PowerShell would
  only find at run time).
"""
import json
import os
import re

import tree_sitter as ts
import tree_sitter_powershell as tsp  # dev extra in setup.cfg: a PowerShell grammar, installable from PyPI

from debuggee_hives import SCRIPTS
from debuggee import settings

PS1 = os.path.join(SCRIPTS, "setup-debuggee.ps1")
SRC = open(PS1, "rb").read()
TABLE = settings.load()
TREE = ts.Parser(ts.Language(tsp.language())).parse(SRC)

PS1_ONLY_PARAMS = {"DebugViewPath", "UseKdnet", "SettingsPath"}
MUTATORS = {"new-item", "new-itemproperty", "set-itemproperty", "remove-itemproperty", "set-content",
            "set-mppreference", "reg.exe", "reg"}
KNOWN_COMMANDS = {  # PowerShell 5.1 built-ins and Windows tools the script may call
    "convertfrom-json", "foreach-object", "get-command", "get-content", "get-itemproperty",
    "get-mpcomputerstatus", "join-path", "new-item", "new-itemproperty", "new-object", "out-null",
    "select-object", "set-content", "set-mppreference", "set-strictmode", "test-path", "write-host",
    "bcdedit.exe",
}
AUTOMATIC = {"_", "true", "false", "null", "matches", "lastexitcode", "pscmdlet", "psscriptroot",
             "whatifpreference", "erroractionpreference"}


def text(node):
    return SRC[node.start_byte:node.end_byte].decode()


def nodes(node=None, kind=None):
    node = node or TREE.root_node
    if kind is None or node.type == kind:
        yield node
    for c in node.children:
        yield from nodes(c, kind)


def var_name(node):
    name = text(node)[1:].lower()  # strip $
    return name.split(":", 1)[1] if ":" in name else name


def commands():
    for cmd in nodes(kind="command"):
        head = [c for c in cmd.children if c.type in ("command_name", "command_name_expr")][0]
        yield cmd, text(head)  # a call through a variable (& $kdnet.Source) yields its expression


def test_parses_without_syntax_errors():
    bad = [(n.start_point, text(n)[:60]) for n in nodes() if n.type == "ERROR" or n.is_missing]
    assert not TREE.root_node.has_error and not bad, bad


def test_the_check_sees_syntax_errors():
    broken = SRC.replace(b"if ($dbgFields.Count -gt 0) {", b"if ($dbgFields.Count -gt 0 {")
    assert ts.Parser(ts.Language(tsp.language())).parse(broken).root_node.has_error


def test_requires_admin_and_supports_whatif():
    assert SRC.startswith(b"#Requires -RunAsAdministrator")
    assert re.search(rb"\[CmdletBinding\(SupportsShouldProcess = \$true\)\]", SRC)
    fn = [f for f in nodes(kind="function_statement") if text(f.child_by_field_name("name") or f.children[1]) == "Invoke-Change"]
    assert len(fn) == 1 and "$script:Cmdlet.ShouldProcess($What)" in text(fn[0])


def _params():
    block = list(nodes(kind="param_block"))[0]
    out = {}
    for p in nodes(block, "script_parameter"):
        name = text([c for c in p.children if c.type == "variable"][0])[1:]
        default = [c for c in p.children if c.type == "script_parameter_default"]
        out[name] = text(default[0])[1:].strip().strip("'\"") if default else None
    return out


def test_parameters_are_the_tables():
    params = _params()
    assert set(params) - PS1_ONLY_PARAMS == set(TABLE["parameters"])
    for name, spec in TABLE["parameters"].items():
        assert params[name] == spec["default"], name
    # the {Name} substitution map names every table parameter
    values = re.search(r"\$script:Values = @\{(.*?)\}", SRC.decode()).group(1)
    assert set(re.findall(r"(\w+) = ", values)) == set(TABLE["parameters"])


def test_every_kind_has_a_handler():
    sw = [s for s in nodes(kind="switch_statement") if "$entry.kind" in text(s)]
    assert len(sw) == 1
    clauses = {text(c).strip("'") for c in nodes(sw[0], "switch_clause_condition")}
    assert clauses == set(settings.KINDS) | {"default"}
    used = {s["kind"] for s in TABLE["settings"]}
    assert used <= clauses


def test_no_table_data_is_hard_coded():
    """The script reads what to set from the table; only hook ids may appear."""
    body = SRC.decode()
    strings = " ".join(text(n) for n in nodes(kind="string_literal")) + " " + \
        " ".join(text(n) for n in nodes(kind="generic_token"))
    for s in TABLE["settings"]:
        for field in ("value", "option", "key"):
            if field in s:
                word = r"(?<![\w-])%s(?![\w-])" % re.escape(s[field])
                assert not re.search(word, strings, re.I), "%s.%s hard-coded in the .ps1" % (s["id"], field)
    hooks = set(re.findall(r"\$entry\.id -eq '(\w+)'", body))
    assert hooks and hooks <= {s["id"] for s in TABLE["settings"]}


def test_every_entry_field_read_exists_in_the_table():
    fields = {k for s in TABLE["settings"] for k in s} | {"PSObject"}
    read = set()
    for m in nodes(kind="member_access"):
        obj = m.children[0]
        if obj.type == "variable" and var_name(obj) == "entry":
            read.add(text(m.children[-1]))
    assert read and read <= fields, read - fields
    table_level = set(re.findall(r"\$table\.(\w+)", SRC.decode()))
    assert table_level <= set(TABLE), table_level - set(TABLE)


def _inside_invoke_change(node):
    p = node.parent
    while p is not None:
        if p.type == "command":
            head = [c for c in p.children if c.type in ("command_name", "command_name_expr")][0]
            if text(head) == "Invoke-Change":
                return True
        p = p.parent
    return False


def test_every_change_goes_through_invoke_change():
    seen = set()
    for cmd, name in commands():
        low = name.lower()
        args = text(cmd)
        if low in MUTATORS:
            seen.add(low)
            assert _inside_invoke_change(cmd), "%s outside Invoke-Change: %s" % (name, args[:80])
        if low == "bcdedit.exe" and not _inside_invoke_change(cmd):
            assert re.search(r"bcdedit\.exe (/enum '\{current\}'|/dbgsettings)\)?$", args), args  # reads only
        if low == "bcdedit.exe" and "/set" in args:
            assert _inside_invoke_change(cmd)
    assert {"new-itemproperty", "set-content", "set-mppreference"} <= seen
    # the kdnet.exe / bcdedit /dbgsettings writes are calls through variables: inside Invoke-Change too
    for call in ("& $kdnet.Source", "& bcdedit.exe @cmdArgs"):
        node = [c for c, _ in commands() if text(c).startswith(call[2:]) or text(c).startswith(call)]
        assert node and all(_inside_invoke_change(c) for c in node), call


def test_commands_are_known_or_defined_here():
    defined = {text(f.children[1]).lower() for f in nodes(kind="function_statement")}
    used = {name.lower() for _, name in commands() if not name.startswith("$")}  # & $var: checked elsewhere
    unknown = used - defined - KNOWN_COMMANDS
    assert not unknown, unknown
    assert defined <= used, "functions never called: %s" % (defined - used)


def test_variables_read_are_assigned():
    assigned = set(AUTOMATIC) | {p.lower() for p in _params()}
    for a in nodes(kind="left_assignment_expression"):
        assigned |= {var_name(v) for v in nodes(a, "variable")}
    for f in nodes(kind="foreach_statement"):
        assigned.add(var_name([c for c in f.children if c.type == "variable"][0]))
    for fp in nodes(kind="function_parameter_declaration"):
        assigned |= {var_name(v) for v in nodes(fp, "variable")}
    read = {var_name(v) for v in nodes(kind="variable")}
    assert not read - assigned, read - assigned


def test_bcdedit_in_powershell_quotes_current():
    # unquoted {current} is a script block in PowerShell: every bcdedit call must quote it
    for cmd, name in commands():
        if name.lower() == "bcdedit.exe":
            assert "{current}" not in text(cmd) or "'{current}'" in text(cmd), text(cmd)


def test_table_on_disk_is_the_one_the_script_loads():
    assert "Join-Path $PSScriptRoot 'debuggee-settings.json'" in SRC.decode()
    with open(os.path.join(SCRIPTS, "debuggee-settings.json")) as f:
        assert json.load(f)["format"] == "hvlab-debuggee-settings"


def test_change_blocks_do_not_read_invoke_changes_own_parameters():
    # the block runs inside Invoke-Change (dynamic scoping): its parameter names would shadow the caller's
    fn = [f for f in nodes(kind="function_statement") if text(f.children[1]) == "Invoke-Change"][0]
    own = {var_name(v) for v in nodes(fn.children[2] if fn.children[2].type == "function_parameter_declaration"
                                      else fn, "variable")} & {"what", "needsreboot", "action"}
    assert own == {"what", "needsreboot", "action"}
    blocks = 0
    for cmd, name in commands():
        if name == "Invoke-Change":
            for sb in nodes(cmd, "script_block_expression"):
                blocks += 1
                assert not {var_name(v) for v in nodes(sb, "variable")} & own, text(sb)[:80]
    assert blocks >= 5
