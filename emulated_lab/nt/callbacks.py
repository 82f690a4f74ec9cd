"""Executive callback objects (ExCreateCallback, ExRegisterCallback,
ExUnregisterCallback, ExNotifyCallback) and the object reference count
services a driver uses with them (ObfReferenceObject, ObfDereferenceObject).

The kernel creates `\\Callback\\PowerState` at start-up, as Windows does; a
driver opens it with ExCreateCallback(Create = FALSE), registers a routine
`VOID Cb(PVOID Context, PVOID Argument1, PVOID Argument2)`, and drops its
reference with ObDereferenceObject. The lab notifies it around a sleep
state with `NtKernel.notify_callback(name, Argument1, Argument2)`:
Argument1 = PO_CB_SYSTEM_STATE_LOCK, Argument2 = 0 before the transition
and 1 after resume (wdm.h; MSDN "ExRegisterCallback"). A registration or an
object reference still held after the driver unloaded is reported as a leak.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Tuple

from emulated_lab.nt.services import STATUS_SUCCESS, service

if TYPE_CHECKING:
    from emulated_lab.nt.kernel import Call, NtKernel

STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
POWER_STATE = "\\Callback\\PowerState"
PO_CB_SYSTEM_STATE_LOCK = 3          # wdm.h
KERNEL_OBJECTS = (POWER_STATE, "\\Callback\\ProcessorAdd", "\\Callback\\SetSystemTime")


class CallbackObject:
    def __init__(self, name: str, va: int, allow_multiple: bool = True) -> None:
        self.name, self.va, self.allow_multiple = name, va, allow_multiple
        self.references = 1              # the kernel's own (permanent object)
        self.registrations: List[Tuple[int, int, int]] = []   # (handle VA, routine, context)


class Callbacks:
    """The callback objects of one NtKernel."""

    def __init__(self, kernel: "NtKernel") -> None:
        self.k = kernel
        self.by_name: Dict[str, CallbackObject] = {}
        self.by_va: Dict[int, CallbackObject] = {}
        self.handles: Dict[int, CallbackObject] = {}
        for name in KERNEL_OBJECTS:
            self.create(name)

    def _object_va(self) -> int:
        va, _ = self.k.m.alloc_page()          # object body: never read by a driver
        return va

    def create(self, name: str, allow_multiple: bool = True) -> CallbackObject:
        obj = CallbackObject(name, self._object_va(), allow_multiple)
        self.by_name[name.lower()] = obj
        self.by_va[obj.va] = obj
        return obj

    def held(self) -> List[str]:
        """What drivers still hold: references beyond the kernel's, registrations."""
        out = []
        for obj in self.by_name.values():
            if obj.references > 1:
                out.append("%d reference(s) to %s" % (obj.references - 1, obj.name))
            for handle, routine, _ctx in obj.registrations:
                out.append("callback 0x%x registered on %s (handle 0x%x)" % (routine, obj.name, handle))
        return out


def _callbacks(k: "NtKernel") -> Callbacks:
    return k.callbacks


def _object(k: "NtKernel", va: int, what: str) -> CallbackObject:
    obj = _callbacks(k).by_va.get(va)
    if obj is None:
        raise k._bugcheck(0x18, [0, va, 0, 0], "%s(0x%x): not a callback object" % (what, va))
    return obj


@service("ExCreateCallback")
def _create(k: "NtKernel", c: "Call") -> int:
    out, attributes, create, multiple = c.arg(0), c.arg(1), c.arg(2) & 0xFF, c.arg(3) & 0xFF
    # OBJECT_ATTRIBUTES (x64): Length, RootDirectory +0x8, ObjectName +0x10, Attributes +0x18
    name_ptr = k.m.read_u64(attributes + 0x10) if attributes else 0
    name = k.read_unicode_string(name_ptr) if name_ptr else ""
    cbs = _callbacks(k)
    obj = cbs.by_name.get(name.lower())
    if obj is None:
        if not create:
            return STATUS_OBJECT_NAME_NOT_FOUND
        obj = cbs.create(name, bool(multiple))
        obj.references = 0
    obj.references += 1
    k.m.write_u64(out, obj.va)
    return STATUS_SUCCESS


@service("ExRegisterCallback")
def _register(k: "NtKernel", c: "Call") -> int:
    obj = _object(k, c.arg(0), "ExRegisterCallback")
    if obj.registrations and not obj.allow_multiple:
        return 0
    handle, _ = k.m.alloc_page()
    obj.registrations.append((handle, c.arg(1), c.arg(2)))
    obj.references += 1                  # a registration references the object
    _callbacks(k).handles[handle] = obj
    return handle


@service("ExUnregisterCallback")
def _unregister(k: "NtKernel", c: "Call") -> int:
    handle = c.arg(0)
    obj = _callbacks(k).handles.pop(handle, None)
    if obj is None:
        raise k._bugcheck(0x18, [0, handle, 0, 0], "ExUnregisterCallback(0x%x): not a registration" % handle)
    obj.registrations = [r for r in obj.registrations if r[0] != handle]
    obj.references -= 1
    return 0


@service("ObfReferenceObject", "ObReferenceObject")
def _reference(k: "NtKernel", c: "Call") -> int:
    obj = _object(k, c.arg(0), "ObReferenceObject")
    obj.references += 1
    return obj.references


@service("ObfDereferenceObject", "ObDereferenceObject")
def _dereference(k: "NtKernel", c: "Call") -> int:
    obj = _object(k, c.arg(0), "ObDereferenceObject")
    if obj.references <= 0:
        raise k._bugcheck(0x18, [0, obj.va, 1, obj.references], "reference count of %s below zero" % obj.name)
    obj.references -= 1
    return obj.references


@service("ExNotifyCallback")
def _notify(k: "NtKernel", c: "Call") -> int:
    obj = _object(k, c.arg(0), "ExNotifyCallback")
    routines = [(r, ctx) for _h, r, ctx in obj.registrations]
    a1, a2 = c.arg(1), c.arg(2)
    me = k.m.current

    def run_all() -> None:
        regs = k.m.thread_regs()
        for routine, ctx in routines:
            r = k.m.run(me, routine, args=(ctx, a1, a2))
            if r.stop != "return":
                raise k._bugcheck(0x1E, [0, routine, 0, 0], "callback 0x%x stopped: %s" % (routine, r.fault or r.stop))
        k.m.switch_to(me)
        k.m.set_thread_regs(regs)
    c.then = run_all
    return 0


def notify(k: "NtKernel", name: str, argument1: int, argument2: int) -> List[int]:
    """The kernel notifies callback object `name` (e.g. the power manager around
    a sleep state): each registered routine runs on the system thread, in
    registration order. Returns the routines called."""
    obj = _callbacks(k).by_name.get(name.lower())
    if obj is None:
        raise KeyError(name)
    called = []
    for _h, routine, ctx in list(obj.registrations):
        r = k.call_on_thread(routine, (ctx, argument1, argument2))
        if r.stop != "return":
            from emulated_lab.machine import MachineError
            raise MachineError("callback 0x%x on %s (%d, %d) did not return: %s"
                               % (routine, name, argument1, argument2, r.fault or r.stop))
        called.append(routine)
    return called
