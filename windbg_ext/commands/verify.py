"""verify <n> | verify --fields F.json --caps C.json: which VM-entry check fails.

Runs the SDM Vol. 3 Chapter 27 checks (windbg_ext/arch/entry_checks) in the
processor's order over a VMCS state: vCPU n's snapshot (the driver VMREADs
every field when VMLAUNCH or VM entry fails; capability MSRs read from that
processor) or two JSON files. The first failure named is the one the
processor reports: controls -> VMfailValid 7, host -> VMfailValid 8,
guest -> VM exit 0x80000021.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from windbg_ext.arch import capabilities as C
from windbg_ext.arch import entry_checks as ec
from windbg_ext.arch.capability_report import dependent_msrs
from windbg_ext.arch.controls import CAPABILITY_MSR
from windbg_ext.arch.entry_checks import EntryState, FAIL, NOT_CHECKED
from windbg_ext.arch.entry_checks.model import CANONICAL_48, control_bit
from windbg_ext.arch.exits import ENTRY_FAILURE_BIT
from windbg_ext.arch.msr_names import MSR_NAMES
from windbg_ext.arch.vm_errors import VM_INSTRUCTION_ERRORS
from windbg_ext.commands.base import CommandError, add_refresh_argument, fresh_snapshot, parse_index, parse_int
from windbg_ext.hv.foreign import uses_symbols, walker_for as foreign_walker_for
from windbg_ext.hv.foreign_views import region_layout
from windbg_ext.hv.scan import field_evidence, plausible
from windbg_ext.hv.model import NO_EXIT, failure_snapshot
from windbg_ext.hv.processor import linear_address_bits, maxphyaddr, sgx_supported
from windbg_ext.hv.vmcs_source import load_values
from windbg_ext.hv.walker import HvError, walker_for
from windbg_ext.render.report import Link, Report, Text
from windbg_ext.state_files import load_caps, load_fields
from windbg_ext.target.base import TargetError

SUMMARY = "name the VM-entry check (SDM 27.2-27.3) that fails for a vCPU's VMCS snapshot or a field/caps JSON pair"
NEEDS_TARGET = False  # only `verify <n>` reads the target; --fields/--caps is offline

# The pin/proc/exit/entry controls: a TRUE_* MSR replaces the original one when IA32_VMX_BASIC bit 55 is 1 (SDM A.1)
ORIGINAL_CONTROL_CAPS = tuple(msr for msr, true_msr in CAPABILITY_MSR.values() if true_msr is not None)
TRUE_CAPS = tuple(true_msr for _, true_msr in CAPABILITY_MSR.values() if true_msr is not None)
REQUIRED_CAPS = tuple(sorted(ORIGINAL_CONTROL_CAPS + (  # BASIC .. CR4_FIXED1: every state needs them
    C.IA32_VMX_BASIC, C.IA32_VMX_MISC, C.IA32_VMX_CR0_FIXED0, C.IA32_VMX_CR0_FIXED1, C.IA32_VMX_CR4_FIXED0,
    C.IA32_VMX_CR4_FIXED1)))
# Read from the target in one batch (not the tertiary / secondary-exit control MSRs)
TARGET_CAPS = list(C.VMX_MSRS_BEFORE_WIDE)
WIDE_CAPS = (C.IA32_VMX_PROCBASED_CTLS3, C.IA32_VMX_EXIT_CTLS2)


def _wide_caps(ctx, caps, n):
    """PROCBASED_CTLS3 / EXIT_CTLS2 exist only when the first batch says so (App. A.3.4, A.4.2): reading
    them otherwise faults, so they cost a second batch only on CPUs that have them."""
    exists = dependent_msrs(caps)
    wanted = [msr for msr in WIDE_CAPS if exists.get(msr, (False, ""))[0]]
    if not wanted:
        return {}
    try:
        return ctx.target.read_msrs(wanted, n)
    except TargetError:
        return {}


def add_arguments(p) -> None:
    p.add_argument("n", nargs="?", help="vCPU index: check that vCPU's VMCS snapshot (see vcpu, vmcs)")
    p.add_argument("--fields", metavar="F.json", help='VMCS fields: {"0x681e": "0x...", ...} (encodings or names)')
    p.add_argument("--caps", metavar="C.json", help='capability MSRs: {"0x480": "0x...", ...} (optional "maxphyaddr")')
    p.add_argument("--source", choices=("snapshot", "region"),
                   help="with <n>: snapshot = the driver's VMREAD values (default when it has any), region = the "
                        "VMCS page decoded with the driver's layout map (implementation-specific)")
    p.add_argument("--all", action="store_true", help="list every check with PASS / FAIL / n/a")
    add_refresh_argument(p)
    p.add_argument("--maxphyaddr", metavar="BITS", help="physical-address width (CPUID.80000008H:EAX[7:0]); "
                   "default: the target's, else 52")


def required_caps(fields: Dict[int, int], caps: Dict[int, int]) -> List[tuple]:
    """(msr, why) for every capability MSR the checks of this state need."""
    s = EntryState(fields, caps)  # the controls as the processor reads them
    if C.decode_basic(s.cap(C.IA32_VMX_BASIC))["true_controls"]:
        # The TRUE_* MSRs replace the four original control MSRs for the checks (SDM A.2-A.5):
        # the driver's VMM context records only the ones it used.
        need = [(m, "the checks always read it") for m in REQUIRED_CAPS if m not in ORIGINAL_CONTROL_CAPS]
        need += [(m, "IA32_VMX_BASIC bit 55 says the TRUE_* controls exist") for m in TRUE_CAPS]
    else:
        need = [(m, "the checks always read it") for m in REQUIRED_CAPS]

    def activates(kind: str, name: str) -> bool:
        """The state sets an activate control that its capability MSR allows. When the MSR forbids
        it, the control check fails first (VM-instruction error 7, SDM 27.2.1.1) and the next
        level's MSR is never read; when the capability MSR itself is absent, it is reported first."""
        if not s.ctl(kind, name):
            return False
        if s.allowed_msr(kind) not in caps:
            return True
        return bool(s.allowed(kind)[1] >> control_bit(kind, name) & 1)

    secondary = activates("proc", "ACTIVATE_SECONDARY_CONTROLS")
    if secondary:
        need.append((C.IA32_VMX_PROCBASED_CTLS2, "the state activates secondary controls"))
    if secondary and (activates("proc2", "ENABLE_EPT") or activates("proc2", "ENABLE_VPID")):
        need.append((C.IA32_VMX_EPT_VPID_CAP, "the state enables EPT or VPID"))
    if secondary and activates("proc2", "ENABLE_VM_FUNCTIONS"):
        need.append((C.IA32_VMX_VMFUNC, "the state enables VM functions"))
    if activates("proc", "ACTIVATE_TERTIARY_CONTROLS"):
        need.append((C.IA32_VMX_PROCBASED_CTLS3, "the state activates tertiary controls"))
    if activates("exit", "ACTIVATE_SECONDARY_CONTROLS"):
        need.append((C.IA32_VMX_EXIT_CTLS2, "the state activates secondary VM-exit controls"))
    return need


def _check_caps(fields: Dict[int, int], caps: Dict[int, int], where: str) -> None:
    for msr, why in required_caps(fields, caps):
        if msr not in caps:
            raise CommandError("%s lacks MSR 0x%x (%s), needed because %s; add it (see: caps)"
                               % (where, msr, MSR_NAMES.get(msr, "VMX capability"), why))


# -- target mode ----------------------------------------------------------------------
def _target_caps(ctx, n: int):
    """(capability MSRs of processor n as the target holds them, {where from})."""
    try:  # one batch: over KDNET every processor switch and read is a round trip
        caps = ctx.target.read_msrs(list(TARGET_CAPS), n)
    except TargetError:
        caps = {}
    caps.update(_wide_caps(ctx, caps, n))
    return caps, ({"processor %d" % n} if caps else set())


def _physical_reader(ctx):
    def read_physical(addr: int, size: int) -> Optional[bytes]:
        try:
            return ctx.target.read_physical(addr, size)
        except TargetError:  # not in the target (a dump without that page, a bad pointer)
            return None
    return read_physical


class _NoSnapshot:
    """A driver walked from its symbols records nothing to compare the verdict with."""
    count = 0


def _foreign_state(ctx, n: int, source: Optional[str]) -> Dict[str, Any]:
    """vCPU n of a driver walked from its symbols (no snapshot): its VMCS region decoded with the layout
    file of the same revision id, region-derived; caps from the target."""
    if source in ("snapshot", "failure"):
        raise CommandError("a driver walked from its symbols keeps no VMCS snapshot: verify %d checks its VMCS "
                           "region (drop --source)" % n)
    w = foreign_walker_for(ctx)
    v = w.vcpu(n)
    values, layout_from = region_layout(ctx.target, v)
    if not values:
        raise HvError("vCPU %d of %s: no VMCS values to check: %s" % (n, w.table.module, layout_from))
    _region_usable(w.table.module, n, v.pa.get("vmcs"), values)
    caps, sources = _target_caps(ctx, n)
    note = "region* values: the VMCS page decoded with %s, implementation-specific (SDM 25.11.1)" % (
        os.path.basename(layout_from))
    # they look like a VMCS in use (_region_usable), yet an active VMCS's page may lag its processor
    note += "; the page of an active VMCS may be older than the processor's copy (25.11.1)"
    return {"fields": values, "note": note, "caps": caps, "maxphyaddr": maxphyaddr(ctx.target, n),
            "read_physical": _physical_reader(ctx), "sgx": sgx_supported(ctx.target, n),
            "linear_address_bits": linear_address_bits(ctx.target, n),
            "vmcs_address": v.pa.get("vmcs"), "snapshot": _NoSnapshot, "what": "vCPU %d of %s, VMCS region* (%s"
            % (n, w.table.module, os.path.basename(layout_from)),
            "caps_source": " and ".join(sorted(sources)) or "nowhere", "driver_state": "walked from its symbols"}


def _region_usable(module: str, n: int, pa: Optional[int], values: Dict[int, int]) -> None:
    """A processor may keep its current VMCS on chip, the page stale or in a private format (SDM 25.11.1):
    live, and in a dump taken while it was active, alike. Values that do not look like a VMCS in use
    (scan's field evidence) are not checked at all: a verdict on them would be about scrambled bytes
    (e.g. 'secondary exit controls active, caps lack 0x493')."""
    if plausible(values):
        return
    evidence = field_evidence(values)[1]
    why = next((e for e in evidence if "not ~0" in e), "its host and guest fields are implausible")
    raise HvError("verify %d: the VMCS page of vCPU %d of %s (0x%x) does not hold its values (%s): a processor "
                  "keeps its current VMCS on chip, the page stale (SDM 25.11.1), live and in a dump alike; without "
                  "a snapshot from %s (VMREAD) there is nothing to verify"
                  % (n, n, module, pa or 0, why, module))


def _target_state(ctx, n: int, source: Optional[str] = None, refresh: bool = False) -> Dict[str, Any]:
    """vCPU n's VMCS values: the running driver's per-vCPU snapshot, or, after a
    failed load, the snapshot in the descriptor's last-failure record."""
    w = walker_for(ctx)
    d = w.descriptor()
    running = bool(d.VmmContextVa and d.VcpuArrayVa)
    vmm = v = None
    note = ""
    if running:
        fresh = fresh_snapshot(w, n) if refresh else ""
        v = w.vcpu(n)
        snap = v.snapshot()
        vmm = w.vmm()
        vals = load_values(w, v, source)
        values, note = vals.values, (fresh or vals.note)
        if not values:
            raise HvError("vCPU %d has no VMCS snapshot (state: %s, reason: %s): the driver takes one when VMLAUNCH "
                          "or VM entry fails, or at every exit when enabled; try --source region" % (n, v.state, snap.reason))
        if vals.source == "region":
            _region_usable("hv.sys", n, v.VmcsRegionPa, values)
            what = "vCPU %d VMCS region* (decoded with the driver's layout map" % n
            note = note or "region* values are the processor's implementation-specific VMCS memory (SDM 25.11.1)"
        else:
            what = "vCPU %d VMCS snapshot (%s" % (n, snap.reason)
    else:
        if refresh:
            raise HvError("--refresh: hv.sys is not running (driver state: %s): no vCPU can take a snapshot"
                          % d.driver_state)
        if source == "region":
            raise HvError("hv.sys is not running (driver state: %s): there is no VMCS region to decode; "
                          "run verify %d without --source" % (d.driver_state, n))
        f = d.failure
        snap = failure_snapshot(d)
        if snap is None or f is None:
            raise HvError("hv.sys is not running (driver state: %s) and left no failure record, so no VMCS to "
                          "verify: run check" % d.driver_state)
        if f.processor != n:
            raise HvError("the recorded failure is on processor %d, not %d: run verify %d" % (f.processor, n, f.processor))
        if snap.count == 0:
            raise HvError("the failure record of processor %d holds no VMCS fields (no VMCS was current)" % n)
        what = "processor %d failure record (%s" % (n, snap.reason)
        values = dict(snap.values)
    caps, sources = _target_caps(ctx, n)
    if vmm is not None:
        basic = caps.get(C.IA32_VMX_BASIC) or vmm.vmx_basic
        # What the driver recorded at load (the control MSRs it used: TRUE_* when bit 55 is set).
        for msr, member in vmm.capability_members(basic).items():
            if msr not in caps:
                caps[msr] = vmm.record.u(member)
                sources.add("the driver's VMM context")
    return {"fields": values, "note": note, "caps": caps, "maxphyaddr": maxphyaddr(ctx.target, n),
            "read_physical": _physical_reader(ctx), "sgx": sgx_supported(ctx.target, n),
            "linear_address_bits": linear_address_bits(ctx.target, n),
            "vmcs_address": (v.VmcsRegionPa or None) if v is not None else None, "snapshot": snap,
            "what": what,
            "caps_source": " and ".join(sorted(sources)) or "nowhere", "driver_state": d.driver_state}


# -- the command ----------------------------------------------------------------------
def run(ctx, args) -> Report:
    if args.n is not None and (args.fields or args.caps):
        raise CommandError("give either a vCPU index or --fields/--caps, not both")
    maxphy_opt = parse_int(args.maxphyaddr, "--maxphyaddr", "decimal") if args.maxphyaddr is not None else None
    if maxphy_opt is not None and not 32 <= maxphy_opt <= 52:
        raise CommandError("--maxphyaddr %d is out of range: a physical-address width is 32-52 bits" % maxphy_opt)
    recorded = None
    if args.n is not None:
        n = parse_index(args.n, "vCPU index")
        if uses_symbols(ctx) and args.refresh:
            raise CommandError("--refresh makes hv.sys take a snapshot through its hypercall; a driver walked "
                               "from its symbols has none: drop --refresh (its VMCS region is what can be read)")
        t = _foreign_state(ctx, n, args.source) if uses_symbols(ctx) else _target_state(ctx, n, args.source, args.refresh)
        fields, caps = t["fields"], t["caps"]
        if not t["caps"]:
            raise CommandError("no capability MSRs for processor %d: the target holds no MSR values (a crash dump "
                               "records none) and hv.sys's VMM context, which records the ones it used, is gone "
                               "(driver state: %s); run verify %d live in WinDbg, or give --fields/--caps"
                               % (n, t["driver_state"], n))
        _check_caps(fields, caps, "the target (caps from %s)" % t["caps_source"])
        maxphy = maxphy_opt or t["maxphyaddr"]
        state = ec.EntryState(fields, caps, maxphyaddr=maxphy or ec.DEFAULT_MAXPHYADDR,
                              read_physical=t["read_physical"], vmcs_address=t["vmcs_address"], sgx=t["sgx"],
                              linear_address_bits=t["linear_address_bits"] or CANONICAL_48)
        snap = t["snapshot"]
        recorded = None
        if snap.count:  # what the driver recorded with its snapshot (compared with the verdict)
            recorded = {"snapshot_reason": snap.reason, "vm_instruction_error": snap.vm_instruction_error or None,
                        "exit_reason": None if snap.exit_reason in (0, NO_EXIT) else snap.exit_reason}
        source = "%s, %d fields); caps from %s" % (t["what"], len(fields), t["caps_source"])
    else:
        if args.refresh:
            raise CommandError("--refresh applies to `verify <vcpu>` on a live target, not to --fields/--caps")
        if args.source:
            raise CommandError("--source applies to `verify <vcpu>` on a target, not to --fields/--caps")
        if not args.fields or not args.caps:
            raise CommandError("say what to check: `verify <vcpu>` on a target, or `verify --fields F.json --caps C.json`")
        fields = load_fields(args.fields)
        caps, maxphy_file = load_caps(args.caps)
        _check_caps(fields, caps, "caps file %s" % args.caps)
        maxphy = maxphy_opt or maxphy_file
        if maxphy is not None and not 32 <= maxphy <= 52:
            raise CommandError("caps file %s: maxphyaddr %d is out of range (32-52)" % (args.caps, maxphy))
        state = ec.EntryState(fields, caps, maxphyaddr=maxphy or ec.DEFAULT_MAXPHYADDR)
        source = "%s (%d fields), caps %s" % (args.fields, len(fields), args.caps)
    verdict = ec.evaluate(state)
    report = _report(verdict, source, maxphy, recorded, args.all)
    report.data["notes"] = [t["note"]] if args.n is not None and t["note"] else []  # "notes", as vmcs/msrbitmap
    if report.data["notes"]:
        report.blocks.insert(1, Text("note: " + t["note"]))
    return report


def _verdict_line(v) -> str:
    if v.result == "success":
        return "VM entry passes every check: the processor would enter the guest"
    if v.result == "unverified":
        n = len(v.not_checked)
        return ("UNVERIFIED: no check fails, but %d check%s could not run (below): the processor may still refuse "
                "this state" % (n, "" if n == 1 else "s"))
    if v.result == "vmfail_valid":
        name, meaning = VM_INSTRUCTION_ERRORS.get(v.vm_instruction_error, ("?", "?"))
        return "VMLAUNCH fails: VMfailValid, VM-instruction error %d (%s)" % (v.vm_instruction_error, meaning)
    return "VM entry fails: VM exit 0x%08x (invalid guest state), exit qualification %d" % (
        v.exit_reason, v.exit_qualification)


def _report(v, source: str, maxphy: Optional[int], recorded, show_all: bool) -> Report:
    failures = v.failures
    not_checked = [o for o in v.outcomes if o.status == NOT_CHECKED]
    data: Dict[str, Any] = {
        "result": v.result,
        "vm_instruction_error": v.vm_instruction_error,
        "exit_reason": "0x%08x" % v.exit_reason if v.exit_reason is not None else None,
        "exit_qualification": "0x%x" % v.exit_qualification if v.exit_qualification is not None else None,
        "failures": [{"id": o.check.id, "group": o.check.group, "sdm": o.check.sdm, "message": o.message,
                      "fields": list(o.check.fields)} for o in failures],
        "source": source,
        "maxphyaddr": maxphy,
        "checks_run": len(v.outcomes),
        "not_checked": [{"id": o.check.id, "sdm": o.check.sdm, "why": o.message, "warning": o.warning or None}
                        for o in not_checked],
        "warnings": [o.warning for o in not_checked if o.warning],
        "missing_fields": v.missing_fields,
    }
    r = Report(data=data)
    r.text("verify: %s" % source)
    r.text(_verdict_line(v))
    if recorded is not None:
        data["recorded"] = dict(recorded, agrees=_recorded_agrees(recorded, v),
                                exit_reason=None if recorded["exit_reason"] is None else "0x%08x" % recorded["exit_reason"])
        r.text("the driver recorded: %s" % _recorded_line(recorded, v))
    if failures:
        first = failures[0]
        r.text("first failure (what the processor reports): %s" % first.message)
        # in WinDbg the field cell runs `field <name>` (what the field is, its encoding)
        r.table(["#", "check", "group", "SDM", "field", "what is wrong"],
                [[i + 1, o.check.id, o.check.group, o.check.sdm, Link(_first_field(o), "field " + _first_field(o)),
                  o.message] for i, o in enumerate(failures)],
                title="%d failing check(s), in the processor's order" % len(failures))
        r.exit_code = 1
    notes = []
    if maxphy is None:
        notes.append("physical-address width unknown: assumed 52 bits (give --maxphyaddr)")
    for o in not_checked:
        notes.append("not checked: %s (SDM %s): %s" % (o.check.id, o.check.sdm, o.message))
    for o in not_checked:
        if o.warning:
            r.text("warning: " + o.warning)
    if not_checked and not failures:
        r.exit_code = 1  # not a pass: the verdict is incomplete
    if v.missing_fields:
        shown = ", ".join(v.missing_fields[:8]) + (" ..." if len(v.missing_fields) > 8 else "")
        notes.append("%d field(s) read as 0 because the input lacks them: %s" % (len(v.missing_fields), shown))
    for n in notes:
        r.text("note: " + n)
    if show_all:
        rows = [[o.check.id, o.check.group, o.check.sdm, o.status, o.message if o.status in (FAIL, NOT_CHECKED)
                 else o.check.explain] for o in v.outcomes]
        r.table(["check", "group", "SDM", "result", "rule / finding"], rows,
                title="all %d checks (%d PASS, %d FAIL, %d n/a)" % (
                    len(rows), sum(o.status == "PASS" for o in v.outcomes), len(failures),
                    sum(o.status == "n/a" for o in v.outcomes)))
        data["checks"] = [{"id": o.check.id, "group": o.check.group, "sdm": o.check.sdm, "status": o.status,
                           "fields": list(o.check.fields), "explain": o.check.explain, "message": o.message}
                          for o in v.outcomes]
    return r


def _first_field(outcome) -> str:
    """The field the failure names first (the one to fix), else the first the check reads."""
    return outcome.field or outcome.check.fields[0]


def _entry_failure(rec) -> bool:
    """The driver recorded a VM-entry failure (exit reason bit 31, SDM 28.2.1)."""
    return rec["exit_reason"] is not None and bool(rec["exit_reason"] >> ENTRY_FAILURE_BIT & 1)


def _recorded_agrees(rec, v) -> bool:
    if rec["vm_instruction_error"]:
        return v.result == "vmfail_valid" and v.vm_instruction_error == rec["vm_instruction_error"]
    if _entry_failure(rec):
        return v.result == "entry_failure" and v.exit_reason == rec["exit_reason"]
    return v.result == "success"


def _recorded_line(rec, v) -> str:
    if rec["vm_instruction_error"]:
        got = "VMfailValid, VM-instruction error %d" % rec["vm_instruction_error"]
    elif _entry_failure(rec):
        got = "VM-entry failure, exit reason 0x%08x" % rec["exit_reason"]
    else:
        got = "no failure (%s)" % rec["snapshot_reason"]
    return "%s: %s" % (got, "agrees with the checks" if _recorded_agrees(rec, v) else "DISAGREES with the checks")
