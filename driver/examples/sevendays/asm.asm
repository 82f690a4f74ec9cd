; asm.asm -- the few instructions C cannot say (MASM syntax: llvm-ml here,
; ml64 with the WDK). Prototypes: vmm.h.

EXTERN vmx_launch:PROC
EXTERN vmexit_handler:PROC

.code

asm_read_cs PROC
    mov ax, cs
    ret
asm_read_cs ENDP
asm_read_ss PROC
    mov ax, ss
    ret
asm_read_ss ENDP
asm_read_ds PROC
    mov ax, ds
    ret
asm_read_ds ENDP
asm_read_es PROC
    mov ax, es
    ret
asm_read_es ENDP
asm_read_fs PROC
    mov ax, fs
    ret
asm_read_fs ENDP
asm_read_gs PROC
    mov ax, gs
    ret
asm_read_gs ENDP
asm_read_tr PROC
    str ax
    ret
asm_read_tr ENDP
asm_read_ldtr PROC
    sldt ax
    ret
asm_read_ldtr ENDP
asm_load_ar PROC
    lar eax, ecx
    ret
asm_load_ar ENDP
asm_segment_limit PROC
    lsl eax, ecx
    ret
asm_segment_limit ENDP
asm_sgdt PROC
    sgdt [rcx]
    ret
asm_sgdt ENDP
asm_sidt PROC
    sidt [rcx]
    ret
asm_sidt ENDP

; int asm_launch(vcpu): saves what the MS x64 ABI says a callee keeps (the
; non-volatile GPRs, and with FXSAVE the x87/SSE state, XMM6-15 included),
; then vmx_launch(vcpu, rsp, rip) with rip = the instruction after "call setup".
; VMLAUNCH succeeds -> the guest starts there (eax = 1) and restores it all.
asm_launch PROC
    pushfq
    push rbx
    push rbp
    push rdi
    push rsi
    push r12
    push r13
    push r14
    push r15
    sub rsp, 200h               ; 16-byte aligned here: FXSAVE needs it
    fxsave [rsp]
    call setup
    mov eax, 1                  ; here we are a guest
    jmp done
setup:
    pop r8                      ; guest RIP
    mov rdx, rsp                ; guest RSP
    sub rsp, 20h
    call vmx_launch             ; returns only when VMLAUNCH failed
    add rsp, 20h
    xor eax, eax
done:
    fxrstor [rsp]
    add rsp, 200h
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
asm_launch ENDP

; HOST_RIP. RSP = HOST_RSP (16-byte aligned), [RSP] = the vCPU. Saves the
; guest GPRs as a struct __vmexit_guest_registers_t, and the x87/SSE state
; (the C handler may use XMM registers the guest was using).
asm_vmexit PROC
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
    push rbp                    ; rsp slot: the guest's RSP is in the VMCS
    push rbx
    push rdx
    push rcx
    push rax
    mov rcx, rsp                ; regs
    mov rdx, [rsp+80h]          ; vcpu
    sub rsp, 220h               ; home space (20h) + FXSAVE area (200h)
    fxsave [rsp+20h]
    call vmexit_handler
    fxrstor [rsp+20h]
    add rsp, 220h
    test eax, eax
    jz leave_vmx
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
    int 3                       ; VMRESUME failed: nothing sensible left to do
leave_vmx:
    ; vmexit_handler left VMX operation and put RFLAGS, RIP at regs->rsp
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
asm_vmexit ENDP

; uint64_t asm_hypercall(code): VMCALL with RCX = code.
asm_hypercall PROC
    vmcall
    ret
asm_hypercall ENDP

END
