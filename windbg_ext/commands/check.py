"""check [--cpu N | --all]: can this processor enter VMX operation? The
requirements a driver meets before VMXON (SDM Vol. 3 24.6 discovering VMX
support, 24.7 enabling VMX operation, 24.8 restrictions, Appendix A.1 / A.7
/ A.8), one PASS/FAIL table per processor.

Statuses: PASS, FAIL (VMXON cannot succeed until someone else acts: firmware,
hypervisor settings), WARN (the driver itself must act, e.g. lock
IA32_FEATURE_CONTROL), INFO, UNKNOWN (the target cannot say). A processor's
verdict is FAIL when a requirement fails, else UNKNOWN when one could not be
read (e.g. a crash dump holds no MSRs), else PASS.

On a processor hv.sys has virtualized (its vCPU is launched) a debugger's
view is the guest's: CR0/CR4 read through hv.sys's read shadows (SDM 25.6.6:
VMXE hidden), MSRs and CPUID as hv.sys lets the guest see them. There the
machine's truth comes from the VMCS (GUEST_CR0/GUEST_CR4 in hv.sys's
snapshot, with the snapshot's age said) and from the driver's own records
(capability MSRs it read at load), and VMX support is a fact, not derived.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

from windbg_ext.arch import capabilities as caps
from windbg_ext.arch.registers import CPUID1_ECX_BITS, CR0_BITS, CR4_BITS, bit_names, bit_of
from windbg_ext.commands.base import CommandError, parse_index
from windbg_ext.render.report import Link, Report
from windbg_ext.arch.vmcs_fields import lookup
from windbg_ext.hv.walker import DESCRIPTOR_SYMBOL, HvWalker
from windbg_ext.target.base import TargetError, optional_symbol

SUMMARY = "pre-VMXON requirements per processor (CPUID.VMX, FEATURE_CONTROL, CR0/CR4 fixed bits, revision id)"
NEEDS_TARGET = True

Row = Tuple[str, str, str]  # (requirement, status, detail)
Registers = Dict[str, Dict[str, Any]]  # "cr0"/"cr4" -> the structured fixed-bit check (docs/json.md)


def add_arguments(p) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--cpu", metavar="N", help="only processor N")
    g.add_argument("--all", action="store_true", help="every processor (the default)")


def _cpus(ctx, args) -> List[int]:
    count = ctx.target.processor_count()
    if args.cpu is None:
        return list(range(count))
    n = parse_index(args.cpu, "processor")
    if not 0 <= n < count:
        raise CommandError("--cpu %s: the target has %d processor(s) (0-%d)" % (args.cpu, count, count - 1))
    return [n]


def hv_view(target, cpu: int):
    """(vCPU, snapshot values, VMM) when hv.sys runs processor `cpu` as a guest, else None."""
    if optional_symbol(target, DESCRIPTOR_SYMBOL) is None:
        return None
    try:
        w = HvWalker(target)
        d = w.descriptor()
        if not (d.VmmContextVa and d.VcpuArrayVa) or cpu >= w.vcpu_count():
            return None
        v = w.vcpu(cpu)
        if v.state != "launched":
            return None
        return v, dict(v.snapshot().values), w.vmm()
    except TargetError:
        return None


def _bits(table, mask: int) -> List[Dict[str, Any]]:
    return [{"bit": b, "name": table[b][0] if b in table else "bit%d" % b}
            for b in range(64) if mask >> b & 1]


def register_state(reg: str, table, value, fixed0, fixed1, source: str) -> Dict[str, Any]:
    """One control register against its fixed-bit MSRs, for --json: every mask as "0x..", the
    violated bits by number and name; null where the target cannot say. `missing` is of the
    value as it is (CR4.VMXE included: VMXON needs it, SDM 24.7)."""
    out: Dict[str, Any] = {"register": reg, "value": None, "fixed0": None, "fixed1": None,
                           "must_be_one": None, "must_be_zero": None, "missing": None, "forbidden": None,
                           "source": source}
    if fixed0 is not None and fixed1 is not None:
        out.update(fixed0="0x%x" % fixed0, fixed1="0x%x" % fixed1)
    if value is not None:
        out["value"] = "0x%x" % value
    if value is None or fixed0 is None or fixed1 is None:
        return out
    v = caps.fixed_bit_violations(value, fixed0, fixed1)
    out.update(must_be_one="0x%x" % v["must_be_one"], must_be_zero="0x%x" % v["must_be_zero"],
               missing=_bits(table, v["missing"]), forbidden=_bits(table, v["forbidden"]))
    return out


def check_processor(target, cpu: int) -> Tuple[List[Row], Registers]:
    cpuid1_ecx_vmx = 1 << bit_of(CPUID1_ECX_BITS, "VMX")  # SDM 24.6
    cr4_vmxe = 1 << bit_of(CR4_BITS, "VMXE")              # SDM 24.7

    msrs = target.read_msrs([caps.IA32_FEATURE_CONTROL, caps.IA32_VMX_BASIC, caps.IA32_VMX_CR0_FIXED0,
                             caps.IA32_VMX_CR0_FIXED1, caps.IA32_VMX_CR4_FIXED0, caps.IA32_VMX_CR4_FIXED1], cpu)
    try:
        regs = target.register_values(("cr0", "cr4"), cpu)
    except TargetError:  # e.g. a crash dump holds the crashing processor's context only
        regs = {}
    rows: List[Row] = []
    registers: Registers = {}
    hv = hv_view(target, cpu)
    reg_source = ""
    if hv is not None:
        vcpu, values, vmm = hv
        snap = vcpu.snapshot()
        regs = {}
        for reg, field in (("cr0", "GUEST_CR0"), ("cr4", "GUEST_CR4")):
            enc = lookup(field)
            enc = (enc[0] if isinstance(enc, tuple) else enc).encoding
            if enc in values:
                regs[reg] = values[enc]
        # the guest's real CR0/CR4, not the read shadows a debugger sees
        reg_source = (" (VMCS snapshot: %s)" % snap.reason if regs else
                      " (hv.sys's VMCS snapshot is empty: vmcs %d --refresh, live)" % cpu)
        for msr, member in vmm.capability_members(vmm.vmx_basic or msrs.get(caps.IA32_VMX_BASIC, 0)).items():
            msrs.setdefault(msr, vmm.record.u(member))   # what hv.sys read at load, where the guest cannot

    # CPUID.1:ECX.VMX (SDM 24.6)
    leaf1 = target.cpuid(1, 0, cpu)
    if hv is not None:
        rows.append(("CPUID.1:ECX.VMX", "PASS", "supported: hv.sys runs this processor as a guest (VMX non-root)"))
    elif leaf1 is not None:
        if leaf1[2] & cpuid1_ecx_vmx:
            rows.append(("CPUID.1:ECX.VMX", "PASS", "VMX supported (ECX=0x%08x)" % leaf1[2]))
        else:
            rows.append(("CPUID.1:ECX.VMX", "FAIL", "VMX not reported: no VT-x, or a hypervisor hides it "
                         "(Hyper-V: Set-VMProcessor -ExposeVirtualizationExtensions $true)"))
    elif caps.IA32_VMX_BASIC in msrs:
        rows.append(("CPUID.1:ECX.VMX", "PASS", "derived: IA32_VMX_BASIC is readable, which needs "
                     "CPUID.1:ECX.VMX=1 (SDM A.1); the target records no CPUID"))
    else:
        rows.append(("CPUID.1:ECX.VMX", "UNKNOWN", "no CPUID recorded; IA32_VMX_BASIC unreadable%s"
                     % (": " + target.no_msrs_reason if target.no_msrs_reason else
                        " (#GP without VMX, SDM A.1, or a failed read)")))

    # IA32_FEATURE_CONTROL (SDM 24.7): VMXON #GPs unless locked with the outside-SMX bit set
    if caps.IA32_FEATURE_CONTROL in msrs:
        fc = msrs[caps.IA32_FEATURE_CONTROL]
        d = caps.decode_feature_control(fc)
        if d["lock"]:
            rows.append(("IA32_FEATURE_CONTROL.lock", "PASS", "locked (0x%x)" % fc))
        else:
            rows.append(("IA32_FEATURE_CONTROL.lock", "WARN", "unlocked (0x%x): VMXON #GPs until the driver "
                         "writes lock (bit 0) together with bit 2" % fc))
        if d["vmx_outside_smx"]:
            rows.append(("VMXON outside SMX", "PASS", "IA32_FEATURE_CONTROL bit 2 set"))
        elif d["lock"] and caps.IA32_VMX_BASIC not in msrs and not target.no_msrs_reason:
            # VT-x disabled in the firmware setup leaves CPUID.1:ECX.VMX and the capability MSRs in place;
            # without VMX (and SMX) bit 2 does not exist (SDM Vol.4 Table 2-2) and 0x480 raises #GP (A.1)
            rows.append(("VMXON outside SMX", "FAIL", "bit 2 clear and locked, IA32_VMX_BASIC unreadable: "
                         "likely no VMX at all (hidden?)"))
        elif d["lock"]:
            rows.append(("VMXON outside SMX", "FAIL", "bit 2 clear and locked: VT-x is disabled in the "
                         "firmware setup; enable it there (a reset is needed)"))
        else:
            rows.append(("VMXON outside SMX", "WARN", "bit 2 clear but unlocked: the driver must set bit 2 "
                         "before locking"))
    else:
        rows.append(("IA32_FEATURE_CONTROL", "UNKNOWN", "MSR 0x%x unreadable%s" % (
            caps.IA32_FEATURE_CONTROL, ": " + target.no_msrs_reason if target.no_msrs_reason else "")))

    # CR0/CR4 against the fixed-bit MSRs (SDM 24.8, A.7, A.8)
    for reg, fixed0, fixed1, table, assume in (
            ("cr0", caps.IA32_VMX_CR0_FIXED0, caps.IA32_VMX_CR0_FIXED1, CR0_BITS, 0),
            ("cr4", caps.IA32_VMX_CR4_FIXED0, caps.IA32_VMX_CR4_FIXED1, CR4_BITS, cr4_vmxe)):
        item = "%s vs FIXED0/FIXED1" % reg.upper()
        registers[reg] = register_state(reg, table, regs.get(reg), msrs.get(fixed0), msrs.get(fixed1),
                                        "VMCS snapshot" if hv is not None else "registers")
        if fixed0 not in msrs or fixed1 not in msrs or reg not in regs:
            rows.append((item, "UNKNOWN", "needs %s and MSRs 0x%x/0x%x%s" % (reg.upper(), fixed0, fixed1,
                                                                            reg_source)))
            continue
        must1, must0 = caps.fixed_bits(msrs[fixed0], msrs[fixed1])
        value = regs[reg] | assume  # CR4.VMXE is the driver's to set, checked on its own below
        missing, forbidden = must1 & ~value, value & must0
        if missing or forbidden:
            why = []
            if missing:
                why.append("must be 1: %s" % bit_names(table, missing))
            if forbidden:
                why.append("must be 0: %s" % bit_names(table, forbidden))
            rows.append((item, "FAIL", "%s=0x%x; %s%s" % (reg.upper(), regs[reg], "; ".join(why), reg_source)))
        else:
            rows.append((item, "PASS", "%s=0x%x; fixed-1 bits: %s%s" % (reg.upper(), regs[reg],
                                                                         bit_names(table, must1), reg_source)))

    if hv is not None:
        rows.append(("CR4.VMXE", "INFO", "set: hv.sys is in VMX operation here (a debugger reads its CR4 shadow)"))
    elif "cr4" in regs:
        if regs["cr4"] & cr4_vmxe:
            rows.append(("CR4.VMXE", "PASS", "set: VMX enabled on this processor (a hypervisor may already run)"))
        else:
            rows.append(("CR4.VMXE", "INFO", "clear: the driver sets it before VMXON (SDM 24.7)"))
    else:
        rows.append(("CR4.VMXE", "UNKNOWN", "the target gives no CR4"))

    # VMCS revision identifier (SDM A.1): written into the VMXON and VMCS regions
    if caps.IA32_VMX_BASIC in msrs:
        b = caps.decode_basic(msrs[caps.IA32_VMX_BASIC])
        ok = b["bit31_zero"] and 0 < b["region_size"] <= 4096
        rows.append(("VMCS revision id", "PASS" if ok else "FAIL",
                     "%d (0x%x); regions of %d bytes, %s; write it to dword 0 of the VMXON and VMCS regions"
                     % (b["revision_id"], b["revision_id"], b["region_size"], b["memtype_name"])))
    else:
        rows.append(("VMCS revision id", "UNKNOWN", "IA32_VMX_BASIC (0x%x) unreadable" % caps.IA32_VMX_BASIC))
    return rows, registers


def run(ctx, args) -> Report:
    cpus = _cpus(ctx, args)
    processors: List[Dict[str, Any]] = []
    report = Report()
    failed = False
    for cpu in cpus:
        rows, registers = check_processor(ctx.target, cpu)
        statuses = [s for _, s, _ in rows]
        # UNKNOWN when nothing failed but the target could not say everything (a crash dump has no MSRs)
        verdict = "FAIL" if "FAIL" in statuses else ("UNKNOWN" if "UNKNOWN" in statuses else "PASS")
        failed = failed or verdict == "FAIL"
        processors.append({"cpu": cpu, "verdict": verdict,
                           "checks": [{"requirement": r, "status": s, "detail": d} for r, s, d in rows],
                           "control_registers": registers})
        report.table(["requirement", "status", "detail"], [list(r) for r in rows],
                     title="processor %d: %s" % (cpu, verdict))
        if ctx.target.no_msrs_reason is None:  # a hint names only a command that works (a dump has no MSRs)
            report.text("next:", links=[Link("caps --cpu %d" % cpu, "caps --cpu %d" % cpu)])
    verdicts = {p["verdict"] for p in processors}
    report.data = {"processors": processors,
                   "verdict": "FAIL" if failed else ("UNKNOWN" if "UNKNOWN" in verdicts else "PASS")}
    report.exit_code = 1 if failed else 0
    return report
