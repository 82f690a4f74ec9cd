"""The driver's structures, known only through its debug descriptor.

descriptor.py parses the descriptor (pure), model.py turns bytes into VMM /
vCPU / snapshot objects (pure), regions.py checks VMXON/VMCS/MSR-bitmap pages
and decodes a VMCS region with the layout map (pure), walker.py is the only
module here that reads the target. Imported lazily: `!py` pays only for what
a command uses.
"""
from __future__ import annotations


def resolve_vcpu_bitmap(ctx, n: int) -> int:
    """Physical address of vCPU n's MSR bitmap (for `msrbitmap <n>`).
    Raises a TargetError subclass with one line when the driver state is unusable."""
    from windbg_ext.hv.foreign import uses_symbols
    from windbg_ext.hv.walker import HvError, walker_for

    if uses_symbols(ctx):  # a driver that is not hv.sys: its map names the bitmap
        from windbg_ext.hv.foreign import walker_for as foreign_walker

        fv = foreign_walker(ctx).vcpu(n)
        if not fv.pa.get("msr_bitmap"):
            raise HvError("vCPU %d has no MSR bitmap the map can find (vcpu.msr_bitmap_pa / msr_bitmap_va)" % n)
        return fv.pa["msr_bitmap"]
    v = walker_for(ctx).vcpu(n)
    pa = v.MsrBitmapPa
    if not pa:
        raise HvError("vCPU %d has no MSR bitmap (MsrBitmapPa is 0; state: %s)" % (n, v.state))
    return pa
