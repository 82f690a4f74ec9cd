"""The command registry: name -> module. Modules are imported only when run,
so `!py -m windbg_ext field ...` pays for one command, not all of them.

Each module defines SUMMARY (one line), add_arguments(parser) and
run(ctx, args) -> Report, and NEEDS_TARGET (True when it reads the target).
"""
COMMANDS = {
    # foundation (offline knowledge and target checks)
    "field": "windbg_ext.commands.field",
    "exit": "windbg_ext.commands.exit_reason",
    "vmerror": "windbg_ext.commands.vmerror",
    "caps": "windbg_ext.commands.caps",
    "check": "windbg_ext.commands.check",
    "msrbitmap": "windbg_ext.commands.msrbitmap",
    "dbgfilter": "windbg_ext.commands.dbgfilter",
    # the hv walker (issue 5)
    "vmm": "windbg_ext.commands.vmm",
    "vcpu": "windbg_ext.commands.vcpu",
    "vmcs": "windbg_ext.commands.vmcs",
    "regions": "windbg_ext.commands.regions",
    # VM-entry checks (issue 6)
    "verify": "windbg_ext.commands.verify",
    # drivers other than hv.sys: symbols + a map of roles, VMCS discovery, layout files (issue 12)
    "map": "windbg_ext.commands.map",
    "scan": "windbg_ext.commands.scan",
    "layout": "windbg_ext.commands.layout",
    "help": "windbg_ext.commands.help",
}
