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

; ---- launch (Day 4): the guest continues where the driver left off --------
; Saves RFLAGS, the non-volatile GPRs and XMM6-15 (MS x64 ABI), then calls
; HvCoreLaunchFromStub(vcpu, guest_rsp, guest_rip) with guest_rip = the
; instruction after "call launch_setup". On success VMLAUNCH never returns
; there: the guest (this same processor, now in VMX non-root operation)
; starts at the resume point with RSP = guest_rsp and restores everything.
HvAsmLaunch PROC
    pushfq
    push rbx
    push rbp
    push rdi
    push rsi
    push r12
    push r13
    push r14
    push r15
    sub rsp, 0A0h
    movaps xmmword ptr [rsp+000h], xmm6
    movaps xmmword ptr [rsp+010h], xmm7
    movaps xmmword ptr [rsp+020h], xmm8
    movaps xmmword ptr [rsp+030h], xmm9
    movaps xmmword ptr [rsp+040h], xmm10
    movaps xmmword ptr [rsp+050h], xmm11
    movaps xmmword ptr [rsp+060h], xmm12
    movaps xmmword ptr [rsp+070h], xmm13
    movaps xmmword ptr [rsp+080h], xmm14
    movaps xmmword ptr [rsp+090h], xmm15
    call launch_setup
    ; ---- resume point: running as a guest ----
    mov eax, 1
    jmp launch_done
launch_setup:
    pop r8                      ; r8 = resume point (guest RIP)
    mov rdx, rsp                ; guest RSP
    sub rsp, 20h                ; home space
    call HvCoreLaunchFromStub   ; returns only if VMLAUNCH failed
    add rsp, 20h
    xor eax, eax
launch_done:
    movaps xmm6, xmmword ptr [rsp+000h]
    movaps xmm7, xmmword ptr [rsp+010h]
    movaps xmm8, xmmword ptr [rsp+020h]
    movaps xmm9, xmmword ptr [rsp+030h]
    movaps xmm10, xmmword ptr [rsp+040h]
    movaps xmm11, xmmword ptr [rsp+050h]
    movaps xmm12, xmmword ptr [rsp+060h]
    movaps xmm13, xmmword ptr [rsp+070h]
    movaps xmm14, xmmword ptr [rsp+080h]
    movaps xmm15, xmmword ptr [rsp+090h]
    add rsp, 0A0h
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
; driver stored at the top of the host stack.
SAVE_GUEST MACRO
    push r15
    push r14
    push r13
    push r12
    push r11
    push r10
    push r9
    push r8
    push rdi
    push rsi
    push rbp
    push rbp                    ; RSP slot (guest RSP is in the VMCS)
    push rbx
    push rdx
    push rcx
    push rax
    sub rsp, 100h
    movaps xmmword ptr [rsp+000h], xmm0
    movaps xmmword ptr [rsp+010h], xmm1
    movaps xmmword ptr [rsp+020h], xmm2
    movaps xmmword ptr [rsp+030h], xmm3
    movaps xmmword ptr [rsp+040h], xmm4
    movaps xmmword ptr [rsp+050h], xmm5
    movaps xmmword ptr [rsp+060h], xmm6
    movaps xmmword ptr [rsp+070h], xmm7
    movaps xmmword ptr [rsp+080h], xmm8
    movaps xmmword ptr [rsp+090h], xmm9
    movaps xmmword ptr [rsp+0A0h], xmm10
    movaps xmmword ptr [rsp+0B0h], xmm11
    movaps xmmword ptr [rsp+0C0h], xmm12
    movaps xmmword ptr [rsp+0D0h], xmm13
    movaps xmmword ptr [rsp+0E0h], xmm14
    movaps xmmword ptr [rsp+0F0h], xmm15
    lea rcx, [rsp+100h]         ; HV_GUEST_REGISTERS*
    mov rdx, [rsp+180h]         ; HV_VCPU* stored at HOST_RSP
    sub rsp, 20h
ENDM

RESTORE_XMM MACRO
    movaps xmm0, xmmword ptr [rsp+000h]
    movaps xmm1, xmmword ptr [rsp+010h]
    movaps xmm2, xmmword ptr [rsp+020h]
    movaps xmm3, xmmword ptr [rsp+030h]
    movaps xmm4, xmmword ptr [rsp+040h]
    movaps xmm5, xmmword ptr [rsp+050h]
    movaps xmm6, xmmword ptr [rsp+060h]
    movaps xmm7, xmmword ptr [rsp+070h]
    movaps xmm8, xmmword ptr [rsp+080h]
    movaps xmm9, xmmword ptr [rsp+090h]
    movaps xmm10, xmmword ptr [rsp+0A0h]
    movaps xmm11, xmmword ptr [rsp+0B0h]
    movaps xmm12, xmmword ptr [rsp+0C0h]
    movaps xmm13, xmmword ptr [rsp+0D0h]
    movaps xmm14, xmmword ptr [rsp+0E0h]
    movaps xmm15, xmmword ptr [rsp+0F0h]
    add rsp, 100h
ENDM

HvAsmVmExit PROC
    SAVE_GUEST
    call HvCoreHandleExit
    add rsp, 20h
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
    ; VMRESUME failed (SDM 31.3): still in VMX root with the guest's GPRs.
    SAVE_GUEST
    call HvCoreHandleResumeFailure
    add rsp, 20h
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

; ---- hypercall (include/hv_hypercall.h) -------------------------------------
HvAsmHypercall PROC
    mov rax, HV_HYPERCALL_SIGNATURE
    vmcall
    ret
HvAsmHypercall ENDP

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
