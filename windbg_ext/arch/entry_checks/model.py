"""What a VM-entry check is, and the state it reads.

Pure: a check is a function of an `EntryState` (VMCS field values by
encoding, capability MSR values by number, a few facts about the processor)
that returns PASS (None), NOT_APPLICABLE, or a failure message. The table of
checks lives in controls.py, host.py and guest_*.py; evaluate.py runs them in
the processor's order (SDM Vol. 3, 27.1: controls, then host state, then guest
state).
"""
from __future__ import annotations

from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

from windbg_ext.arch import capabilities as caps_msr
from windbg_ext.arch import vmcs_fields
from windbg_ext.arch.controls import CAPABILITY_MSR, CONTROL_BITS, CONTROL_FIELD, capability_msr_for
from windbg_ext.arch.registers import bit_of


class _NotApplicable(object):
    """Returned by a check whose precondition does not hold (e.g. a control is 0)."""

    def __repr__(self) -> str:
        return "NOT_APPLICABLE"


NOT_APPLICABLE = _NotApplicable()


class NotChecked(object):
    """Returned by a check that needs something the state does not have (memory).
    `warning`: set when the value almost always fails the check on real
    hardware (e.g. a VMCS link pointer other than ~0 with VMCS shadowing off)."""

    def __init__(self, why: str, warning: str = "") -> None:
        self.why = why
        self.warning = warning

    def __repr__(self) -> str:
        return "NotChecked(%r)" % self.why


class Check(NamedTuple):
    id: str              # stable name, e.g. "guest.tr.type_ia32e"
    group: str           # "control" | "host" | "guest"
    sdm: str             # section of SDM Vol. 3, e.g. "27.3.1.2"
    fields: Tuple[str, ...]  # VMCS field names (and MSR names) it reads
    explain: str         # one sentence: the rule
    test: Callable[["EntryState"], object]
    qualification: int = 0  # guest checks: exit qualification on failure (SDM 28.2.1, Table 28-? "VM-entry failure")


GROUP_ORDER = ("control", "host", "guest")
WIDE_KINDS = ("proc3", "exit2")
CANONICAL_48, CANONICAL_57 = 48, 57
INVALID_LINK_POINTER = 0xFFFFFFFFFFFFFFFF
DEFAULT_MAXPHYADDR = 52  # architectural maximum: checks only the bits no processor implements


def field_encoding(name: str) -> int:
    return vmcs_fields.by_name(name).encoding


def field_width(name: str) -> str:
    return vmcs_fields.by_name(name).width


def control_bit(kind: str, name: str) -> int:
    """Bit position of a named control in arch.controls' table (the one source of Intel facts)."""
    try:
        return bit_of(CONTROL_BITS[kind], name)
    except KeyError:
        raise KeyError("no %s control named %s" % (kind, name))


class EntryState:
    """The inputs of the checks. `fields` maps VMCS encodings to values (a
    field that is absent reads as 0 and is remembered in `missing`); `caps`
    maps capability MSR numbers to values. `read_physical(addr, n)` (optional)
    lets the few checks that read memory (VMCS link pointer revision,
    PDPTEs, VTPR) run; without it they say "not checked". It returns the
    bytes, or None when the memory is not there (an exception it raises is a
    bug and is not hidden)."""

    def __init__(self, fields: Dict[int, int], caps: Dict[int, int], maxphyaddr: int = DEFAULT_MAXPHYADDR,
                 read_physical: Optional[Callable[[int, int], Optional[bytes]]] = None,
                 vmcs_address: Optional[int] = None, host_in_ia32e: bool = True, in_smm: bool = False,
                 sgx: Optional[bool] = None, linear_address_bits: int = CANONICAL_48) -> None:
        self.fields = dict(fields)
        self.caps = dict(caps)
        self.maxphyaddr = maxphyaddr
        self.read_physical = read_physical
        self.vmcs_address = vmcs_address
        self.host_in_ia32e = host_in_ia32e  # VMLAUNCH executed with EFER.LMA=1 (a 64-bit OS)
        self.in_smm = in_smm
        self.sgx = sgx  # CPUID.(EAX=07H,ECX=0):EBX[2]; None = unknown
        # the processor's linear-address width (CPUID.80000008H:EAX[15:8]): 48, or 57 with 5-level paging
        self.linear_address_bits = linear_address_bits
        self.missing: List[str] = []
        self.named: List[str] = []  # fields hexv() wrote into the current check's message, in order
        self._cache: Dict[str, int] = {}

    # -- raw values -----------------------------------------------------------
    def f(self, name: str) -> int:
        try:
            return self._cache[name]
        except KeyError:
            pass
        enc = field_encoding(name)
        if enc in self.fields:
            v = self.fields[enc]
        else:
            v = 0
            self.missing.append(name)
        self._cache[name] = v
        return v

    def read(self, address: int, size: int) -> Optional[bytes]:
        """`size` bytes of physical memory, or None when there is no memory to read or it lacks them."""
        if self.read_physical is None:
            return None
        data = self.read_physical(address, size)
        return data if data is not None and len(data) == size else None

    def cap(self, msr: int) -> int:
        return self.caps.get(msr, 0)

    # -- controls as the processor sees them ----------------------------------
    def controls(self, kind: str) -> int:
        """The value of a control field, or 0 where the processor ignores it
        (secondary/tertiary/secondary-exit controls whose activate bit is 0)."""
        if kind == "proc2" and not self.ctl("proc", "ACTIVATE_SECONDARY_CONTROLS"):
            return 0
        if kind == "proc3" and not self.ctl("proc", "ACTIVATE_TERTIARY_CONTROLS"):
            return 0
        if kind == "exit2" and not self.ctl("exit", "ACTIVATE_SECONDARY_CONTROLS"):
            return 0
        return self.f(CONTROL_FIELD[kind])

    def ctl(self, kind: str, name: str) -> bool:
        return bool((self.controls(kind) >> control_bit(kind, name)) & 1)

    def allowed(self, kind: str) -> Tuple[int, int]:
        """(must_be_one, may_be_one) for a control kind, from the TRUE_ MSR when
        IA32_VMX_BASIC bit 55 says it exists (SDM A.2-A.5)."""
        # 64-bit allowed-1 MSRs have no allowed-0 half (SDM A.3.4, A.4.2)
        return caps_msr.allowed_settings(self.cap(self.allowed_msr(kind)), wide=kind in WIDE_KINDS)

    def allowed_msr(self, kind: str) -> int:
        if kind in WIDE_KINDS:
            return CAPABILITY_MSR[kind][0]
        return capability_msr_for(kind, self.cap(caps_msr.IA32_VMX_BASIC))

    # -- derived facts ----------------------------------------------------------
    @property
    def ia32e_guest(self) -> bool:
        return self.ctl("entry", "IA32E_MODE_GUEST")

    @property
    def host_64(self) -> bool:
        return self.ctl("exit", "HOST_ADDRESS_SPACE_SIZE")

    @property
    def unrestricted(self) -> bool:
        return self.ctl("proc2", "UNRESTRICTED_GUEST")

    @property
    def ept(self) -> bool:
        return self.ctl("proc2", "ENABLE_EPT")

    @property
    def v8086(self) -> bool:
        return bool((self.f("GUEST_RFLAGS") >> 17) & 1)

    def phys_ok(self, addr: int) -> bool:
        """No bit at or above the physical-address width is set."""
        return (addr >> self.maxphyaddr) == 0

    def guest_linear_bits(self) -> int:
        return CANONICAL_57 if (self.f("GUEST_CR4") >> 12) & 1 else CANONICAL_48

    def host_linear_bits(self) -> int:
        return CANONICAL_57 if (self.f("HOST_CR4") >> 12) & 1 else CANONICAL_48


def canonical(value: int, bits: int = CANONICAL_48) -> bool:
    """Bits 63:bits-1 all equal (SDM Vol. 1, 3.3.7.1)."""
    top = value >> (bits - 1)
    return top == 0 or top == (1 << (65 - bits)) - 1


def hexv(state: EntryState, name: str, value: Optional[int] = None) -> str:
    """`NAME = 0x....` with the field's natural width; remembers that the message names NAME."""
    state.named.append(name)
    v = state.f(name) if value is None else value
    width = field_width(name)
    digits = {"16": 4, "32": 8, "64": 16, "natural": 16}.get(width, 8)
    if name.endswith("_AR_BYTES") and v <= 0xFFFF:  # access rights: the 16 bits that matter
        digits = 4
    return "%s = 0x%0*x" % (name, digits, v)


def bits_text(mask: int) -> str:
    """0x8005 -> 'bits 15, 2, 0'."""
    bits = [str(b) for b in range(63, -1, -1) if (mask >> b) & 1]
    if not bits:
        return "no bits"
    return ("bit " if len(bits) == 1 else "bits ") + ", ".join(bits)


class Registry:
    """Collects the checks of one module in definition order."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.checks: List[Check] = []

    def add(self, id: str, sdm: str, fields, explain: str, test, qualification: int = 0) -> None:
        self.checks.append(Check(id, self.group, sdm, tuple(fields), explain, test, qualification))

    def rule(self, id: str, sdm: str, fields, explain: str, qualification: int = 0):
        """Decorator form of add()."""
        def deco(fn):
            self.add(id, sdm, fields, explain, fn, qualification)
            return fn
        return deco
