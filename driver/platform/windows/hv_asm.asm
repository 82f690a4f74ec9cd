; hv_asm.asm -- the assembly hv.sys needs (MASM syntax: llvm-ml here, ml64 on
; Windows). Prototypes and contracts: include/hv_asm.h.
;
; Note for llvm-ml 14: it encodes "lea reg, label" as a 32-bit absolute
; address, which breaks in a kernel image above 4 GiB; this file therefore
; never takes a label's address: the launch resume point comes from CALL.

EXTERN HvCoreLaunchFromStub:PROC
EXTERN HvCoreHandleExit:PROC
EXTERN HvCoreHandleResumeFailure:PROC

HV_HYPERCALL_SIGNATURE EQU 4D4D5662616C7668h   ; "hvlabVMM", include/hv_hypercall.h

.code

; ---- selectors and descriptor tables (SDM Vol. 3 3.4.2, 2.4) -------------
HvAsmReadCs PROC
    mov ax, cs
    ret
HvAsmReadCs ENDP
HvAsmReadSs PROC
    mov ax, ss
    ret
HvAsmReadSs ENDP
HvAsmReadDs PROC
    mov ax, ds
    ret
HvAsmReadDs ENDP
HvAsmReadEs PROC
    mov ax, es
    ret
HvAsmReadEs ENDP
HvAsmReadFs PROC
    mov ax, fs
    ret
HvAsmReadFs ENDP
HvAsmReadGs PROC
    mov ax, gs
    ret
HvAsmReadGs ENDP
HvAsmReadTr PROC
    str ax
    ret
HvAsmReadTr ENDP
HvAsmReadLdtr PROC
    sldt ax
    ret
HvAsmReadLdtr ENDP
HvAsmSgdt PROC
    sgdt [rcx]
    ret
HvAsmSgdt ENDP
HvAsmSidt PROC
    sidt [rcx]
    ret
HvAsmSidt ENDP
HvAsmLgdt PROC
    lgdt fword ptr [rcx]
    ret
HvAsmLgdt ENDP
HvAsmLidt PROC
    lidt fword ptr [rcx]
    ret
HvAsmLidt ENDP
; DS, ES, FS, GS <- cx, dx, r8w, r9w. Loading FS/GS reloads their bases from
; the GDT: the caller writes IA32_FS_BASE / IA32_GS_BASE afterwards.
HvAsmLoadDataSelectors PROC
    mov ds, cx
    mov es, dx
    mov fs, r8w
    mov gs, r9w
    ret
HvAsmLoadDataSelectors ENDP

; XMM6-15 (non-volatile in the MS x64 ABI) saved at [rsp+base], with unwind
; codes: inside a PROC FRAME prolog only.
SAVE_XMM6_15 MACRO base
    movaps xmmword ptr [rsp+base+000h], xmm6
    .savexmm128 xmm6, base+000h
    movaps xmmword ptr [rsp+base+010h], xmm7
    .savexmm128 xmm7, base+010h
    movaps xmmword ptr [rsp+base+020h], xmm8
    .savexmm128 xmm8, base+020h
    movaps xmmword ptr [rsp+base+030h], xmm9
    .savexmm128 xmm9, base+030h
    movaps xmmword ptr [rsp+base+040h], xmm10
    .savexmm128 xmm10, base+040h
    movaps xmmword ptr [rsp+base+050h], xmm11
    .savexmm128 xmm11, base+050h
    movaps xmmword ptr [rsp+base+060h], xmm12
    .savexmm128 xmm12, base+060h
    movaps xmmword ptr [rsp+base+070h], xmm13
    .savexmm128 xmm13, base+070h
    movaps xmmword ptr [rsp+base+080h], xmm14
    .savexmm128 xmm14, base+080h
    movaps xmmword ptr [rsp+base+090h], xmm15
    .savexmm128 xmm15, base+090h
ENDM

; ---- launch (Day 4): the guest continues where the driver left off --------
; PROC FRAME: unwind data, so WinDbg walks a stack through it (the body's
; RSP is the same in launch_setup after POP R8, where the home space is).
; Saves RFLAGS, the non-volatile GPRs and XMM6-15 (MS x64 ABI), then calls
; HvCoreLaunchFromStub(vcpu, guest_rsp, guest_rip) with guest_rip = the
; instruction after "call launch_setup". On success VMLAUNCH never returns
; there: the guest (this same processor, now in VMX non-root operation)
; starts at the resume point with RSP = guest_rsp and restores everything.
HvAsmLaunch PROC FRAME
    pushfq
    .allocstack 8
    push rbx
    .pushreg rbx
    push rbp
    .pushreg rbp
    push rdi
    .pushreg rdi
    push rsi
    .pushreg rsi
    push r12
    .pushreg r12
    push r13
    .pushreg r13
    push r14
    .pushreg r14
    push r15
    .pushreg r15
    sub rsp, 0C0h               ; home space (20h) + XMM6-15
    .allocstack 0C0h
    SAVE_XMM6_15 020h
    .endprolog
    call launch_setup
    ; ---- resume point: running as a guest ----
    mov eax, 1
    jmp launch_done
launch_setup:
    pop r8                      ; r8 = resume point (guest RIP); RSP is the body's again
    mov rdx, rsp                ; guest RSP
    call HvCoreLaunchFromStub   ; returns only if VMLAUNCH failed
    xor eax, eax
launch_done:
    movaps xmm6, xmmword ptr [rsp+020h]
    movaps xmm7, xmmword ptr [rsp+030h]
    movaps xmm8, xmmword ptr [rsp+040h]
    movaps xmm9, xmmword ptr [rsp+050h]
    movaps xmm10, xmmword ptr [rsp+060h]
    movaps xmm11, xmmword ptr [rsp+070h]
    movaps xmm12, xmmword ptr [rsp+080h]
    movaps xmm13, xmmword ptr [rsp+090h]
    movaps xmm14, xmmword ptr [rsp+0A0h]
    movaps xmm15, xmmword ptr [rsp+0B0h]
    add rsp, 0C0h
    pop r15
    pop r14
    pop r13
    pop r12
    pop rsi
    pop rdi
    pop rbp
    pop rbx
    popfq
    ret
HvAsmLaunch ENDP

; ---- VM exit (Day 5) -------------------------------------------------------
; At entry RSP = HOST_RSP (16-byte aligned) and [RSP] = the vCPU pointer the
; driver stored at the top of the host stack. The prolog is described as
; unwind data (pushes, allocation, XMM6-15), so WinDbg can walk from the C
; handler into HvAsmVmExit and read the saved guest registers; there is no
; caller above it (a VM exit is not a call): the walk ends there.
SAVE_GUEST MACRO
    push r15
    .pushreg r15
    push r14
    .pushreg r14
    push r13
    .pushreg r13
    push r12
    .pushreg r12
    push r11
    .pushreg r11
    push r10
    .pushreg r10
    push r9
    .pushreg r9
    push r8
    .pushreg r8
    push rdi
    .pushreg rdi
    push rsi
    .pushreg rsi
    push rbp
    .pushreg rbp
    push rbp                    ; RSP slot (guest RSP is in the VMCS)
    .pushreg rbp
    push rbx
    .pushreg rbx
    push rdx
    .pushreg rdx
    push rcx
    .pushreg rcx
    push rax
    .pushreg rax
    ; Only the volatile XMM0-5 (MS x64 ABI): the C handler may change them,
    ; while XMM6-15 are callee-saved, kept by every function it calls. Saving
    ; those too cost 20 instructions per exit (docs/lab.md "Benchmark").
    sub rsp, 80h                ; XMM0-5, then home space at the bottom
    .allocstack 80h
    movaps xmmword ptr [rsp+020h], xmm0
    movaps xmmword ptr [rsp+030h], xmm1
    movaps xmmword ptr [rsp+040h], xmm2
    movaps xmmword ptr [rsp+050h], xmm3
    movaps xmmword ptr [rsp+060h], xmm4
    movaps xmmword ptr [rsp+070h], xmm5
    .endprolog
    lea rcx, [rsp+80h]          ; HV_GUEST_REGISTERS*
    mov rdx, [rsp+100h]         ; HV_VCPU* stored at HOST_RSP
ENDM

RESTORE_XMM MACRO
    movaps xmm0, xmmword ptr [rsp+020h]
    movaps xmm1, xmmword ptr [rsp+030h]
    movaps xmm2, xmmword ptr [rsp+040h]
    movaps xmm3, xmmword ptr [rsp+050h]
    movaps xmm4, xmmword ptr [rsp+060h]
    movaps xmm5, xmmword ptr [rsp+070h]
    add rsp, 80h
ENDM

HvAsmVmExit PROC FRAME
    SAVE_GUEST
    call HvCoreHandleExit
    test al, al
    jz leave_vmx
    RESTORE_XMM
    pop rax
    pop rcx
    pop rdx
    pop rbx
    add rsp, 8
    pop rbp
    pop rsi
    pop rdi
    pop r8
    pop r9
    pop r10
    pop r11
    pop r12
    pop r13
    pop r14
    pop r15
    vmresume
    ; VMRESUME failed (SDM 31.3): still in VMX root with the guest's GPRs and
    ; RSP = HOST_RSP again: the same frame, built by HvAsmVmResumeFailed.
    jmp HvAsmVmResumeFailed
leave_vmx:
    ; The handler executed VMXOFF and put RFLAGS, RIP at regs->Rsp.
    RESTORE_XMM
    mov rax, [rsp+00h]
    mov rcx, [rsp+08h]
    mov rdx, [rsp+10h]
    mov rbx, [rsp+18h]
    mov rbp, [rsp+28h]
    mov rsi, [rsp+30h]
    mov rdi, [rsp+38h]
    mov r8,  [rsp+40h]
    mov r9,  [rsp+48h]
    mov r10, [rsp+50h]
    mov r11, [rsp+58h]
    mov r12, [rsp+60h]
    mov r13, [rsp+68h]
    mov r14, [rsp+70h]
    mov r15, [rsp+78h]
    mov rsp, [rsp+20h]
    popfq
    ret
HvAsmVmExit ENDP

; The VMRESUME-failure path with its own unwind data (same frame layout):
; HvCoreHandleResumeFailure records the error and bugchecks (no return).
HvAsmVmResumeFailed PROC FRAME
    SAVE_GUEST
    call HvCoreHandleResumeFailure
    int 3
HvAsmVmResumeFailed ENDP

; ---- hypercall (include/hv_hypercall.h) -------------------------------------
HvAsmHypercall PROC
    mov rax, HV_HYPERCALL_SIGNATURE
    vmcall
    ret
HvAsmHypercall ENDP

; ---- hypercall to a parent hypervisor (Hyper-V TLFS 3.7) ---------------------
; RCX = the guest's HV_GUEST_REGISTERS as HvAsmVmExit saved them; its XMM0-5
; are the 60h bytes just below. The guest's RCX (input value), RDX and R8
; (input/output GPAs or fast-call data) and XMM0-5 (extended fast calls) go
; to the parent; RAX (status), RDX, R8 and XMM0-5 come back into the saved
; state, so the guest sees the parent's answer. XMM0-5 are volatile here.
HvAsmParentHypercall PROC
    mov r9, rcx
IFNDEF HV_REVERT_XMM_FAST_HYPERCALL     ; (the driver before: GPRs only; make -C driver revert)
    movaps xmm0, xmmword ptr [r9-60h]
    movaps xmm1, xmmword ptr [r9-50h]
    movaps xmm2, xmmword ptr [r9-40h]
    movaps xmm3, xmmword ptr [r9-30h]
    movaps xmm4, xmmword ptr [r9-20h]
    movaps xmm5, xmmword ptr [r9-10h]
ENDIF
    mov rcx, [r9+08h]
    mov rdx, [r9+10h]
    mov r8, [r9+40h]
    vmcall
    mov [r9+00h], rax
    mov [r9+10h], rdx
    mov [r9+40h], r8
IFNDEF HV_REVERT_XMM_FAST_HYPERCALL
    movaps xmmword ptr [r9-60h], xmm0
    movaps xmmword ptr [r9-50h], xmm1
    movaps xmmword ptr [r9-40h], xmm2
    movaps xmmword ptr [r9-30h], xmm3
    movaps xmmword ptr [r9-20h], xmm4
    movaps xmmword ptr [r9-10h], xmm5
ENDIF
    ret
HvAsmParentHypercall ENDP

; ---- the debugger's snapshot gadget (docs/debug-descriptor.md) ----------------
; Exported by name (hv.def) and never called by the driver. A kernel debugger
; that has broken in on a virtualized processor points RIP here with
; RAX = HV_HYPERCALL_SIGNATURE and RCX = HV_HYPERCALL_SNAPSHOT, and steps:
; the VMCALL exits to hv.sys, which VMREADs every field into this vCPU's
; snapshot (RAX = status, RCX = count) and resumes the guest at the INT3, which
; breaks back into the debugger. The debugger then restores every register.
HvSnapshotGadget PROC
    vmcall
    int 3
HvSnapshotGadget ENDP

END
