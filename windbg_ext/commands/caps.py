"""caps: read and decode every VMX capability MSR (SDM Appendix A), one
table per MSR like QEMU's vmxcap, with what a driver must set and clear.
Offline, `--msr 0x480=0x... --msr ...` decodes given values."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from windbg_ext.arch import capabilities as C
from windbg_ext.arch.capabilities import IA32_FEATURE_CONTROL, VMX_MSRS, VMX_MSR_SPAN
from windbg_ext.arch.capability_report import DECIDED_BY, FIRST_READ, dependent_msrs, describe
from windbg_ext.arch.controls import ACTIVATED_BY, CONTROL_FIELD, bit_name
from windbg_ext.arch.msr_names import msr_name
from windbg_ext.commands.base import CommandError, parse_index, parse_int
from windbg_ext.hv.processor import recorded_capabilities
from windbg_ext.render.report import Report
from windbg_ext.target.base import TargetMsrError

SUMMARY = "decode the VMX capability MSRs (allowed 0/1 per control bit, CR0/CR4 fixed bits) per processor"
NEEDS_TARGET = True


def add_arguments(p) -> None:
    p.add_argument("--cpu", metavar="N", help="processor to read (default 0)")
    p.add_argument("--all", action="store_true", help="read every processor (identical ones are summarised)")
    p.add_argument("--msr", action="append", default=[], metavar="MSR=VALUE",
                   help="decode this value instead of reading a target (e.g. 0x480=0x00d8100000000004); repeatable")


def _parse_msr_args(items: List[str]) -> Dict[int, int]:
    by_name = {name: msr for msr, (name, _) in VMX_MSRS.items()}
    by_name["IA32_FEATURE_CONTROL"] = IA32_FEATURE_CONTROL
    values: Dict[int, int] = {}
    for item in items:
        if "=" not in item:
            raise CommandError("--msr %r: write MSR=VALUE, e.g. --msr 0x480=0x00d8100000000004" % item)
        key, text = item.split("=", 1)
        k = key.strip().upper()
        msr = by_name[k] if k in by_name else parse_int(key, "MSR")
        if msr != IA32_FEATURE_CONTROL and msr not in VMX_MSRS:
            raise CommandError("--msr %s: 0x%x is not a VMX capability MSR (0x%x or %s)"
                               % (item, msr, IA32_FEATURE_CONTROL, VMX_MSR_SPAN))
        value = parse_int(text, "MSR value")
        if not 0 <= value <= 0xFFFFFFFFFFFFFFFF:
            raise CommandError("--msr %s: the value does not fit in 64 bits" % item)
        values[msr] = value
    return values


def _given_but_unused(values: Dict[int, int], rep: Dict[str, Any]) -> List[Tuple[int, str]]:
    """(msr, why) for each --msr value that no section decoded: a TRUE_* MSR is read in place of
    the original control MSR only when IA32_VMX_BASIC bit 55 says it exists (SDM A.1, A.2)."""
    from windbg_ext.arch import capabilities as C

    used = {int(str(c["msr"]), 16) for c in rep["controls"].values() if "missing" not in c}
    true_msrs = [m for m, (name, _) in C.VMX_MSRS.items() if name.startswith("IA32_VMX_TRUE_")]
    out = []
    for msr in sorted(values):
        if msr in true_msrs and msr not in used:
            if C.IA32_VMX_BASIC not in values:
                why = "a TRUE_* MSR is used only when IA32_VMX_BASIC bit 55 is 1: give --msr 0x480=... too"
            else:
                why = "IA32_VMX_BASIC bit 55 is 0: this processor has no TRUE_* MSRs"
            out.append((msr, why))
    return out


def read_capabilities(target, cpu: int) -> Tuple[Dict[int, int], Dict[int, str]]:
    """Reads the first batch, then only the MSRs the first batch says exist
    (reading an absent MSR faults on real hardware). Returns (values, why absent)."""
    values = dict(target.read_msrs(list(FIRST_READ), cpu))
    absent = {m: "could not be read on this target" for m in FIRST_READ if m not in values}
    deps = dependent_msrs(values)
    wanted = [m for m, (exists, _) in deps.items() if exists]
    got = target.read_msrs(wanted, cpu) if wanted else {}
    values.update(got)
    for m, (exists, why) in deps.items():
        # the MSR that decides whether this one exists: unread, it decides nothing
        if not exists and DECIDED_BY.get(m) is not None and DECIDED_BY[m] not in values:
            absent[m] = "unknown: MSR 0x%x, which says whether it exists, could not be read" % DECIDED_BY[m]
        elif not exists:
            absent[m] = "not supported: " + why
        elif m not in got:
            absent[m] = "could not be read on this target"
    return values, absent


def _yn(b: bool) -> str:
    return "yes" if b else "no"


def _name(msr: int) -> str:
    """"IA32_VMX_BASIC (0x480)": an MSR as the tables title it."""
    return "%s (0x%x)" % (msr_name(msr), msr)


def _render(r: Report, rep: Dict[str, Any], label: str, given: bool = False) -> None:
    """given: the values came from --msr: an MSR not given gets no section of its own
    (one line lists them at the end), not a "not given" paragraph each."""
    skipped: List[str] = []

    def absent(name: str, why: str, short: str) -> None:
        if given:
            skipped.append(short)
        else:
            r.text("%s: %s" % (name, why))

    fc = rep["feature_control"]

    def value(msr: int) -> str:  # describe() keys its "msrs" by "0x%x"
        return rep["msrs"]["0x%x" % msr]

    if "missing" in fc:
        absent(_name(C.IA32_FEATURE_CONTROL), fc["missing"], "0x%x" % C.IA32_FEATURE_CONTROL)
    else:
        rows = [[bit, key, _yn(fc[key]), meaning] for bit, (key, meaning) in sorted(C.FEATURE_CONTROL_BITS.items())]
        r.table(["bit", "name", "set", "meaning"], rows,
                title="%s%s = %s" % (label, _name(C.IA32_FEATURE_CONTROL), value(C.IA32_FEATURE_CONTROL)))
        if not fc["lock"]:
            r.text("  not locked: VMXON raises #GP until firmware (or the driver) sets bits 0 and 2")
        elif not fc["vmx_outside_smx"] and "missing" in rep["basic"]:
            # VT-x off in the firmware setup leaves IA32_VMX_BASIC readable; a CPU without VMX #GPs (SDM A.1)
            r.text("  locked with VMX outside SMX disabled, IA32_VMX_BASIC unreadable: likely no VMX at all (hidden?)")
        elif not fc["vmx_outside_smx"]:
            r.text("  locked with VMX outside SMX disabled: VMXON raises #GP; enable VT-x in the firmware setup")
    basic = rep["basic"]
    if "missing" in basic:
        absent(_name(C.IA32_VMX_BASIC), "%s; without it the TRUE_* MSRs (0x48d-0x490) are not used and the region "
                                       "size and revision id are unknown" % basic["missing"],
               "0x%x" % C.IA32_VMX_BASIC)
    else:
        rows = [["30:0", "VMCS revision identifier", "%d (0x%x)" % (basic["revision_id"], basic["revision_id"])],
                ["44:32", "VMXON/VMCS region size", "%d bytes" % basic["region_size"]],
                ["48", "physical addresses limited to 32 bits", _yn(basic["phys_addr_32bit_only"])],
                ["49", "dual-monitor treatment of SMIs and SMM", _yn(basic["dual_monitor_smm"])],
                ["53:50", "VMCS memory type", basic["memtype_name"]],
                ["54", "INS/OUTS instruction information on exits", _yn(basic["ins_outs_info"])],
                ["55", "TRUE_* control MSRs exist (default1 bits may be 0)", _yn(basic["true_controls"])],
                ["56", "hardware exceptions injectable without error-code check", _yn(basic["no_error_code_check"])]]
        r.table(["bit(s)", "meaning", "value"], rows, title="%s = %s" % (_name(C.IA32_VMX_BASIC), value(C.IA32_VMX_BASIC)))
    for kind, c in rep["controls"].items():
        if "missing" in c:
            absent("%s (%s %s)" % (c["title"], c["msr_name"], c["msr"]), c["missing"], c["msr"])
            continue
        rows = [[b["bit"], b["name"], _yn(b["allowed0"]), _yn(b["allowed1"]), b["setting"]] for b in c["bits"]]
        r.table(["bit", "control", "can be 0", "can be 1", "your driver"], rows,
                title="%s: %s (%s) = %s -> %s" % (c["title"], c["msr_name"], c["msr"], c["value"], c["field"]))
        must = c["must_set_names"]
        r.text("  your driver must set %s%s; must clear %s%s; may set %s" % (
            c["must_be_one"], (" (%s)" % " ".join(must)) if must else "", c["must_be_zero"],
            (" (incl. %s)" % " ".join(c["unavailable_names"])) if c["unavailable_names"] else "",
            c["may_be_one"]))
        clearable = int(c.get("default1_clearable", "0x0"), 16)
        if clearable:
            r.text("  the TRUE MSR lets these default1 controls be 0: %s" % " ".join(
                bit_name(kind, b) for b in range(32) if clearable >> b & 1))
        if kind in ACTIVATED_BY:
            parent, bit = ACTIVATED_BY[kind]
            r.text("  used only when %s bit %d (%s) is 1" % (CONTROL_FIELD[parent], bit, bit_name(parent, bit)))
    for reg in ("cr0", "cr4"):
        f = rep[reg]
        if "missing" in f:
            absent("%s fixed bits" % f["register"], f["missing"], "%s fixed bits" % f["register"])
            continue
        rows = [[b["bit"], b["name"], _yn(b["fixed0"]), _yn(b["fixed1"]), b["setting"]] for b in f["bits"]]
        r.table(["bit", "name", "FIXED0", "FIXED1", "in VMX operation"], rows,
                title="%s in VMX operation: FIXED0 = %s, FIXED1 = %s" % (f["register"], f["fixed0"], f["fixed1"]))
        r.text("  your driver must set %s: %s (%s); must clear: %s (mask %s)" % (
            f["register"], " ".join(f["must_set_names"]) or "nothing", f["must_be_one"],
            " ".join(f["must_clear_names"]) or "no named bit", f["must_be_zero"]))
    misc = rep["misc"]
    if "missing" in misc:
        absent(_name(C.IA32_VMX_MISC), misc["missing"], "0x%x" % C.IA32_VMX_MISC)
    else:
        rows = [[k.replace("_", " "), v if not isinstance(v, bool) else _yn(v)] for k, v in misc.items()]
        r.table(["capability", "value"], rows, title="%s = %s" % (_name(C.IA32_VMX_MISC), value(C.IA32_VMX_MISC)))
    enum = rep["vmcs_enum"]
    if "missing" in enum:
        absent(_name(C.IA32_VMX_VMCS_ENUM), enum["missing"], "0x%x" % C.IA32_VMX_VMCS_ENUM)
    else:
        r.text("%s: highest VMCS field index = %d (0x%x)" % (_name(C.IA32_VMX_VMCS_ENUM), enum["max_index"],
                                                             enum["max_index"]))
    for key, msr in (("ept_vpid", C.IA32_VMX_EPT_VPID_CAP), ("vmfunc", C.IA32_VMX_VMFUNC)):
        d = rep[key]
        if "missing" in d:
            absent(_name(msr), d["missing"], "0x%x" % msr)
            continue
        rows = [[k, _yn(v) if isinstance(v, bool) else v] for k, v in d.items()]
        r.table(["capability", "supported"], rows, title="%s = %s" % (_name(msr), value(msr)))
    if skipped:
        r.text("not given, so not decoded: " + ", ".join(skipped))


def run(ctx, args) -> Report:
    if args.msr:
        if args.cpu is not None or args.all:
            raise CommandError("--msr decodes the values you give; --cpu/--all read a target: use one or the other")
        values = _parse_msr_args(args.msr)
        rep = describe(values)
        unused = _given_but_unused(values, rep)
        r = Report(data={"source": "given", "cpus": [dict(rep, cpu=None)],
                         "not_decoded": [{"msr": "0x%x" % m, "why": why} for m, why in unused]})
        _render(r, rep, "", given=True)
        for msr, why in unused:  # before: silently ignored (e.g. --msr 0x48d=... alone)
            r.text("%s was given but not decoded: %s" % (_name(msr), why))
        return r
    if args.cpu is not None and args.all:
        raise CommandError("give --cpu N or --all, not both")
    target = ctx.target
    count = target.processor_count()
    if args.all:
        cpus = list(range(count))
    else:
        cpu = parse_index(args.cpu, "processor") if args.cpu is not None else 0
        if not 0 <= cpu < count:
            raise CommandError("processor %d does not exist: the target has %d (0..%d)" % (cpu, count, count - 1))
        cpus = [cpu]
    reports: List[Dict[str, Any]] = []
    r = Report(data={"source": "target", "cpus": reports})
    first: Optional[Dict[str, Any]] = None
    for cpu in cpus:
        try:
            values, absent = read_capabilities(target, cpu)
            unknown = ""
        except TargetMsrError as e:   # live: the MSRs could not be shown to be processor cpu's
            values = recorded_capabilities(target)
            if not values:
                raise CommandError("%s; hv.sys is not running, so it recorded none either" % e)
            absent = {m: "unknown on this processor; hv.sys did not record it" for m in FIRST_READ if m not in values}
            unknown = "%s: showing the capability MSRs hv.sys read at load instead" % e
        if not values:
            raise CommandError("no capability MSRs for processor %d (%s): run caps live, or caps --msr 0x480=0x..."
                               % (cpu, target.no_msrs_reason or "IA32_FEATURE_CONTROL and IA32_VMX_BASIC are absent"))
        rep = describe(values, absent)
        reports.append(dict(rep, cpu=cpu, source="hv.sys's VMM context" if unknown else "processor %d" % cpu))
        if unknown:
            r.text(unknown)
        if first is not None and rep["msrs"] == first["msrs"]:
            r.text("processor %d: the same capability MSR values as processor %d" % (cpu, first["cpu"]))
            continue
        if first is not None:
            diff = sorted(m for m in rep["msrs"] if rep["msrs"][m] != first["msrs"][m])
            r.text("processor %d differs from processor %d in %s:" % (cpu, first["cpu"], ", ".join(diff)))
        else:
            first = dict(rep, cpu=cpu)
            r.text("processor %d of %d" % (cpu, count))
        _render(r, rep, "")
    return r
