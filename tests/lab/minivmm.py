"""A minimal VMM written for the lab's own tests (independent of hv.sys):
VMXON, a VMCS whose guest is the machine's current ring-0 context, VMLAUNCH;
a host handler that answers CPUID (leaf 0x40000000 -> "mini") and VMCALL
(RAX <- 0x600D) and skips every other exiting instruction.

Values are computed from the machine's own layout; controls are adjusted with
the TRUE capability MSRs (SDM Vol.3 App. A.3: a bit may be 1 only if allowed-1,
must be 1 if allowed-0; IA32_VMX_BASIC[55] = 1 here).
"""
from emulated_lab.asm import assemble
from emulated_lab.machine import (CR0_INIT, CR4_INIT, CR4_VMXE, DIRECT_MAP, GDT_LIMIT, SEL_R0_CODE, SEL_R0_DATA,
                                  SEL_R3_CMTEB, SEL_R3_DATA, SEL_TSS, Machine)

MINI_VENDOR_EBX = 0x696E696D   # "mini"
VMCALL_REPLY = 0x600D

# SDM Vol.3 App. B encodings used here
ENC = {
    "GUEST_ES_SELECTOR": 0x800, "GUEST_CS_SELECTOR": 0x802, "GUEST_SS_SELECTOR": 0x804,
    "GUEST_DS_SELECTOR": 0x806, "GUEST_FS_SELECTOR": 0x808, "GUEST_GS_SELECTOR": 0x80A,
    "GUEST_LDTR_SELECTOR": 0x80C, "GUEST_TR_SELECTOR": 0x80E,
    "HOST_ES_SELECTOR": 0xC00, "HOST_CS_SELECTOR": 0xC02, "HOST_SS_SELECTOR": 0xC04, "HOST_DS_SELECTOR": 0xC06,
    "HOST_FS_SELECTOR": 0xC08, "HOST_GS_SELECTOR": 0xC0A, "HOST_TR_SELECTOR": 0xC0C,
    "MSR_BITMAP": 0x2004, "VMCS_LINK_POINTER": 0x2800, "GUEST_IA32_DEBUGCTL": 0x2802,
    "PIN_BASED": 0x4000, "PROC_BASED": 0x4002, "EXIT_CONTROLS": 0x400C, "ENTRY_CONTROLS": 0x4012,
    "GUEST_ES_LIMIT": 0x4800, "GUEST_CS_LIMIT": 0x4802, "GUEST_SS_LIMIT": 0x4804, "GUEST_DS_LIMIT": 0x4806,
    "GUEST_FS_LIMIT": 0x4808, "GUEST_GS_LIMIT": 0x480A, "GUEST_LDTR_LIMIT": 0x480C, "GUEST_TR_LIMIT": 0x480E,
    "GUEST_GDTR_LIMIT": 0x4810, "GUEST_IDTR_LIMIT": 0x4812,
    "GUEST_ES_AR": 0x4814, "GUEST_CS_AR": 0x4816, "GUEST_SS_AR": 0x4818, "GUEST_DS_AR": 0x481A,
    "GUEST_FS_AR": 0x481C, "GUEST_GS_AR": 0x481E, "GUEST_LDTR_AR": 0x4820, "GUEST_TR_AR": 0x4822,
    "CR0_READ_SHADOW": 0x6004, "CR4_READ_SHADOW": 0x6006,
    "GUEST_CR0": 0x6800, "GUEST_CR3": 0x6802, "GUEST_CR4": 0x6804,
    "GUEST_ES_BASE": 0x6806, "GUEST_CS_BASE": 0x6808, "GUEST_SS_BASE": 0x680A, "GUEST_DS_BASE": 0x680C,
    "GUEST_FS_BASE": 0x680E, "GUEST_GS_BASE": 0x6810, "GUEST_LDTR_BASE": 0x6812, "GUEST_TR_BASE": 0x6814,
    "GUEST_GDTR_BASE": 0x6816, "GUEST_IDTR_BASE": 0x6818, "GUEST_DR7": 0x681A, "GUEST_RSP": 0x681C,
    "GUEST_RIP": 0x681E, "GUEST_RFLAGS": 0x6820,
    "HOST_CR0": 0x6C00, "HOST_CR3": 0x6C02, "HOST_CR4": 0x6C04, "HOST_FS_BASE": 0x6C06, "HOST_GS_BASE": 0x6C08,
    "HOST_TR_BASE": 0x6C0A, "HOST_GDTR_BASE": 0x6C0C, "HOST_IDTR_BASE": 0x6C0E, "HOST_RSP": 0x6C14,
    "HOST_RIP": 0x6C16,
}
USE_MSR_BITMAPS = 1 << 28
HOST_ADDRESS_SPACE_SIZE = 1 << 9
IA32E_MODE_GUEST = 1 << 9


def _adjust(desired, cap):
    allowed0, allowed1 = cap & 0xFFFFFFFF, cap >> 32
    return (desired | allowed0) & allowed1


HOST = assemble("""
    push rcx
    push rdx
    push rbx
    push rax
    call 2f
    pop rax
    pop rbx
    pop rdx
    pop rcx
    vmresume
    hlt
2:  mov ecx, 0x4402
    vmread rax, rcx
    cmp eax, 10
    je 4f
    cmp eax, 18
    je 5f
3:  mov ecx, 0x681E
    vmread rax, rcx
    mov ecx, 0x440C
    vmread rdx, rcx
    add rax, rdx
    mov ecx, 0x681E
    vmwrite rcx, rax
    ret
4:  mov eax, [rsp + 8]
    mov ecx, [rsp + 32]
    push rax
    cpuid
    pop r8
    cmp r8d, 0x40000000
    jne 6f
    mov ebx, 0x696E696D
6:  mov [rsp + 8], rax
    mov [rsp + 16], rbx
    mov [rsp + 24], rdx
    mov [rsp + 32], rcx
    jmp 3b
5:  mov qword ptr [rsp + 8], 0x600D
    jmp 3b
""")


def launch(m: Machine, k: int, exit_controls: int = 0, entry_controls: int = 0, extra=()):
    """Virtualizes processor k (the guest continues where `launch` returns).
    Returns the RunResult; regs['rax'] is 0 in the guest, else 0x1000 | VM-instruction error.
    exit_controls / entry_controls: bits wanted besides the 64-bit ones; extra: (name, value) to VMWRITE."""
    p = m.processors[k]
    caps = m.read_msrs(k, [0x480, 0x48D, 0x48E, 0x48F, 0x490])
    revision = caps[0x480] & 0x7FFFFFFF
    vmxon_va, vmxon_pa = m.alloc_page()
    vmcs_va, vmcs_pa = m.alloc_page()
    bitmap_va, bitmap_pa = m.alloc_page()
    host_stack_pa = m.alloc_phys(4)
    for va in (vmxon_va, vmcs_va):
        m.write_virt(va, revision.to_bytes(4, "little"))
    host_rip = m.place_code(HOST)
    flat = 0xFFFFFFFF
    fields = [
        ("GUEST_ES_SELECTOR", SEL_R3_DATA | 3), ("GUEST_CS_SELECTOR", SEL_R0_CODE),
        ("GUEST_SS_SELECTOR", SEL_R0_DATA), ("GUEST_DS_SELECTOR", SEL_R3_DATA | 3),
        ("GUEST_FS_SELECTOR", SEL_R3_CMTEB | 3), ("GUEST_GS_SELECTOR", SEL_R3_DATA | 3),
        ("GUEST_LDTR_SELECTOR", 0), ("GUEST_TR_SELECTOR", SEL_TSS),
        ("HOST_ES_SELECTOR", SEL_R0_DATA), ("HOST_CS_SELECTOR", SEL_R0_CODE), ("HOST_SS_SELECTOR", SEL_R0_DATA),
        ("HOST_DS_SELECTOR", SEL_R0_DATA), ("HOST_FS_SELECTOR", SEL_R0_DATA), ("HOST_GS_SELECTOR", SEL_R0_DATA),
        ("HOST_TR_SELECTOR", SEL_TSS),
        ("MSR_BITMAP", bitmap_pa), ("VMCS_LINK_POINTER", 0xFFFFFFFFFFFFFFFF),
        ("PIN_BASED", _adjust(0, caps[0x48D])), ("PROC_BASED", _adjust(USE_MSR_BITMAPS, caps[0x48E])),
        ("EXIT_CONTROLS", _adjust(HOST_ADDRESS_SPACE_SIZE | exit_controls, caps[0x48F])),
        ("ENTRY_CONTROLS", _adjust(IA32E_MODE_GUEST | entry_controls, caps[0x490])),
        ("GUEST_ES_LIMIT", flat), ("GUEST_CS_LIMIT", flat), ("GUEST_SS_LIMIT", flat), ("GUEST_DS_LIMIT", flat),
        ("GUEST_FS_LIMIT", 0x3C00), ("GUEST_GS_LIMIT", flat), ("GUEST_LDTR_LIMIT", 0), ("GUEST_TR_LIMIT", 0x67),
        ("GUEST_GDTR_LIMIT", GDT_LIMIT), ("GUEST_IDTR_LIMIT", 0xFFF),
        # VMX access rights: descriptor bits 40..47 and 52..55 (SDM Vol.3 25.4.1, Table 25-2)
        ("GUEST_ES_AR", 0xC0F3), ("GUEST_CS_AR", 0xA09B), ("GUEST_SS_AR", 0xC093), ("GUEST_DS_AR", 0xC0F3),
        ("GUEST_FS_AR", 0x40F3), ("GUEST_GS_AR", 0xC0F3), ("GUEST_LDTR_AR", 0x10000), ("GUEST_TR_AR", 0x8B),
        ("CR0_READ_SHADOW", CR0_INIT), ("CR4_READ_SHADOW", CR4_INIT),
        ("GUEST_CR0", CR0_INIT), ("GUEST_CR3", m.pml4), ("GUEST_CR4", CR4_INIT | CR4_VMXE),
        ("GUEST_ES_BASE", 0), ("GUEST_CS_BASE", 0), ("GUEST_SS_BASE", 0), ("GUEST_DS_BASE", 0),
        ("GUEST_FS_BASE", 0), ("GUEST_GS_BASE", p.kpcr), ("GUEST_LDTR_BASE", 0), ("GUEST_TR_BASE", p.tss),
        ("GUEST_GDTR_BASE", p.gdt), ("GUEST_IDTR_BASE", p.idt), ("GUEST_DR7", 0x400), ("GUEST_RFLAGS", 0x2),
        ("HOST_CR0", CR0_INIT), ("HOST_CR3", m.pml4), ("HOST_CR4", CR4_INIT | CR4_VMXE),
        ("HOST_FS_BASE", 0), ("HOST_GS_BASE", p.kpcr), ("HOST_TR_BASE", p.tss), ("HOST_GDTR_BASE", p.gdt),
        ("HOST_IDTR_BASE", p.idt), ("HOST_RSP", DIRECT_MAP + host_stack_pa + 4 * 0x1000 - 0x40),
        ("HOST_RIP", host_rip),
    ] + list(extra)
    writes = "\n".join("    mov rax, 0x%x\n    mov rcx, 0x%x\n    vmwrite rcx, rax\n    jbe 9f" % (v, ENC[n])
                       for n, v in fields)
    code = assemble("""
    mov rax, cr4
    bts rax, 13
    mov cr4, rax
    mov rax, 0x%x
    push rax
    vmxon [rsp]
    pop rax
    jbe 9f
    mov rax, 0x%x
    push rax
    vmclear [rsp]
    vmptrld [rsp]
    pop rax
    jbe 9f
%s
    mov rcx, 0x681C
    vmwrite rcx, rsp
    lea rax, [rip + 8f]
    mov rcx, 0x681E
    vmwrite rcx, rax
    vmlaunch
9:  mov ecx, 0x4400
    vmread rax, rcx
    or rax, 0x1000
    ret
8:  xor eax, eax
    ret
""" % (vmxon_pa, vmcs_pa, writes))
    return m.run(k, m.place_code(code))
