"""The lab's own machine code: firmware helpers and probes (GNU as, Intel syntax).

Each snippet is called with a return address on the stack (the run sentinel)
and ends with RET.
"""
from emulated_lab.asm import assemble

# Firmware at Session start: IA32_FEATURE_CONTROL <- rax (SDM Vol.3 24.7);
# returns IA32_VMX_BASIC[31:0] (the VMCS revision identifier, App. A.1) in eax.
FW_LOCK = assemble("""
    mov ecx, 0x3a
    xor edx, edx
    wrmsr
    mov ecx, 0x480
    rdmsr
    ret
""")

# Firmware re-establishing VMX operation of a parked processor: lock feature
# control, VMXON [rdi] (lab region), VMPTRLD [rsi] (the processor's VMCS).
# rax = 0 on success, 1 if VMXON failed, 2 if VMPTRLD failed.
FW_REESTABLISH = assemble("""
    mov ecx, 0x3a
    xor edx, edx
    wrmsr
    mov ecx, 0x480
    rdmsr
    mov [rbx], eax
    mov rax, cr4
    bts rax, 13
    mov cr4, rax
    push rdi
    vmxon [rsp]
    pop rdi
    mov eax, 1
    jbe 1f
    xor eax, eax
    cmp rsi, -1
    je 1f
    push rsi
    vmptrld [rsp]
    pop rsi
    mov eax, 2
    jbe 1f
    xor eax, eax
1:  ret
""")

# The idle loop a parked processor's guest runs: CPUID exits unconditionally
# in VMX non-root (SDM Vol.3 26.1.2), which brings the processor to VMX root.
IDLE = assemble("""
    xor eax, eax
    xor ecx, ecx
    cpuid
    ret
""")

VMPTRST = assemble("""
    sub rsp, 8
    vmptrst [rsp]
    pop rax
    ret
""")

VMREAD = assemble("""
    xor eax, eax
    vmread rax, rcx
    ret
""")

# VMWRITE rdx into field rcx of the current VMCS; rax = 1 when it took (the
# conditional jump reads the flags the CPU set, SDM Vol.3 31.2)
VMWRITE = assemble("""
    xor eax, eax
    vmwrite rcx, rdx
    jbe 1f
    mov eax, 1
1:  ret
""")

RDMSR = assemble("""
    rdmsr
    shl rdx, 32
    or rax, rdx
    ret
""")

CPUID = assemble("""
    cpuid
    ret
""")
