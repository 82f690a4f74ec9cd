/*
 * hv_arch.h -- architectural registers, MSRs and VMX capability formats as
 * documented unions (Day 1). Each type names the SDM section that defines it
 * (Intel SDM, current numbering: Vol. 3 Ch. 25 VMCS, Ch. 27 VM entries,
 * Ch. 28 VM exits, Ch. 31 VMX instructions, App. A capability MSRs, App. C
 * exit reasons). Pure definitions: no code, no OS types.
 */
#ifndef HV_ARCH_H
#define HV_ARCH_H

#include "hv_types_base.h"

/* ---- MSR numbers (SDM Vol. 4 Ch. 2; VMX MSRs: Vol. 3 App. A) ----------- */
#define IA32_FEATURE_CONTROL 0x03Au
#define IA32_SYSENTER_CS 0x174u
#define IA32_SYSENTER_ESP 0x175u
#define IA32_SYSENTER_EIP 0x176u
#define IA32_DEBUGCTL 0x1D9u
#define IA32_VMX_BASIC 0x480u
#define IA32_VMX_PINBASED_CTLS 0x481u
#define IA32_VMX_PROCBASED_CTLS 0x482u
#define IA32_VMX_EXIT_CTLS 0x483u
#define IA32_VMX_ENTRY_CTLS 0x484u
#define IA32_VMX_MISC 0x485u
#define IA32_VMX_CR0_FIXED0 0x486u
#define IA32_VMX_CR0_FIXED1 0x487u
#define IA32_VMX_CR4_FIXED0 0x488u
#define IA32_VMX_CR4_FIXED1 0x489u
#define IA32_VMX_VMCS_ENUM 0x48Au
#define IA32_VMX_PROCBASED_CTLS2 0x48Bu
#define IA32_VMX_TRUE_PINBASED_CTLS 0x48Du
#define IA32_VMX_TRUE_PROCBASED_CTLS 0x48Eu
#define IA32_VMX_TRUE_EXIT_CTLS 0x48Fu
#define IA32_VMX_TRUE_ENTRY_CTLS 0x490u
#define IA32_EFER 0xC0000080u
#define IA32_FS_BASE 0xC0000100u
#define IA32_GS_BASE 0xC0000101u
#define IA32_KERNEL_GS_BASE 0xC0000102u

/* ---- IA32_FEATURE_CONTROL (Vol. 3 24.7 "Enabling and entering VMX") ---- */
typedef union {
    uint64_t Value;
    struct {
        uint64_t Lock : 1;                 /* 0: once set, WRMSR faults until reset */
        uint64_t EnableVmxInsideSmx : 1;   /* 1 */
        uint64_t EnableVmxOutsideSmx : 1;  /* 2: required for VMXON outside SMX */
        uint64_t Reserved : 61;
    } Bits;
} IA32_FEATURE_CONTROL_REGISTER;

/* ---- IA32_EFER (Vol. 3 2.2.1) ------------------------------------------ */
typedef union {
    uint64_t Value;
    struct {
        uint64_t SyscallEnable : 1;        /* 0 SCE */
        uint64_t Reserved1 : 7;
        uint64_t LongModeEnable : 1;       /* 8 LME */
        uint64_t Reserved2 : 1;
        uint64_t LongModeActive : 1;       /* 10 LMA */
        uint64_t NoExecute : 1;            /* 11 NXE */
        uint64_t Reserved3 : 52;
    } Bits;
} IA32_EFER_REGISTER;

/* ---- IA32_VMX_BASIC (App. A.1) ------------------------------------------ */
typedef union {
    uint64_t Value;
    struct {
        uint64_t RevisionId : 31;          /* 30:0 written to dword 0 of VMXON/VMCS regions */
        uint64_t Zero : 1;                 /* 31 always 0 */
        uint64_t RegionSize : 13;          /* 44:32 bytes to allocate (<= 4096) */
        uint64_t Reserved1 : 3;
        uint64_t PhysicalAddressWidth32 : 1; /* 48 regions limited to 4 GiB */
        uint64_t DualMonitorSmm : 1;       /* 49 */
        uint64_t MemoryType : 4;           /* 53:50 6 = write-back */
        uint64_t InsOutsReporting : 1;     /* 54 */
        uint64_t TrueControls : 1;         /* 55 IA32_VMX_TRUE_*_CTLS exist (A.2) */
        uint64_t NoErrorCodeOk : 1;        /* 56 deliver hw exceptions without error code */
        uint64_t Reserved2 : 7;
    } Bits;
} IA32_VMX_BASIC_REGISTER;

/* ---- IA32_VMX_MISC (App. A.6) ------------------------------------------- */
typedef union {
    uint64_t Value;
    struct {
        uint64_t PreemptionTimerRate : 5;  /* 4:0 (the driver never enables the timer) */
        uint64_t StoreEferLma : 1;         /* 5 */
        uint64_t ActivityStates : 3;       /* 8:6 HLT, shutdown, wait-for-SIPI */
        uint64_t Reserved1 : 5;
        uint64_t IntelPtInVmx : 1;         /* 14 */
        uint64_t RdmsrSmbase : 1;          /* 15 */
        uint64_t Cr3TargetCount : 9;       /* 24:16 */
        uint64_t MaxMsrListCount : 3;      /* 27:25 512 * (N + 1) */
        uint64_t SmmMonitorCtlBit2 : 1;    /* 28 */
        uint64_t VmwriteAnyField : 1;      /* 29 VMWRITE to exit-information fields */
        uint64_t ZeroLengthInjection : 1;  /* 30 */
        uint64_t Reserved2 : 1;
        uint64_t MsegRevisionId : 32;      /* 63:32 */
    } Bits;
} IA32_VMX_MISC_REGISTER;

/* ---- VMX control capability MSRs (App. A.3-A.5): allowed-0 settings in
 * bits 31:0 (1 = the control must be 1), allowed-1 settings in bits 63:32
 * (0 = the control must be 0). ------------------------------------------- */
typedef union {
    uint64_t Value;
    struct {
        uint32_t Allowed0;                 /* 31:0 */
        uint32_t Allowed1;                 /* 63:32 */
    } Parts;
} IA32_VMX_CONTROLS_CAPABILITY;

/* Pin-based VM-execution controls (25.6.1, Table 25-5). */
#define PIN_EXTERNAL_INTERRUPT_EXITING (1u << 0)
#define PIN_NMI_EXITING (1u << 3)
#define PIN_VIRTUAL_NMIS (1u << 5)
#define PIN_ACTIVATE_PREEMPTION_TIMER (1u << 6) /* never set: crashes the emulator */
#define PIN_PROCESS_POSTED_INTERRUPTS (1u << 7)

/* Primary processor-based VM-execution controls (25.6.2, Table 25-6). */
#define CPU_HLT_EXITING (1u << 7)
#define CPU_CR3_LOAD_EXITING (1u << 15)
#define CPU_CR3_STORE_EXITING (1u << 16)
#define CPU_MOV_DR_EXITING (1u << 23)
#define CPU_UNCONDITIONAL_IO_EXITING (1u << 24)
#define CPU_USE_IO_BITMAPS (1u << 25)
#define CPU_MONITOR_TRAP_FLAG (1u << 27)
#define CPU_USE_MSR_BITMAPS (1u << 28)
#define CPU_ACTIVATE_SECONDARY_CONTROLS (1u << 31)

/* Secondary processor-based VM-execution controls (25.6.2, Table 25-7). */
#define CPU2_ENABLE_EPT (1u << 1)
#define CPU2_ENABLE_RDTSCP (1u << 3)
#define CPU2_ENABLE_VPID (1u << 5)
#define CPU2_UNRESTRICTED_GUEST (1u << 7)
#define CPU2_ENABLE_INVPCID (1u << 12)
#define CPU2_ENABLE_XSAVES_XRSTORS (1u << 20)
#define CPU2_ENABLE_USER_WAIT_PAUSE (1u << 26)   /* TPAUSE, UMONITOR, UMWAIT */

/* VM-exit controls (25.7.1, Table 25-13). */
#define EXIT_SAVE_DEBUG_CONTROLS (1u << 2)
#define EXIT_HOST_ADDRESS_SPACE_SIZE (1u << 9)   /* 64-bit host */
#define EXIT_ACK_INTERRUPT_ON_EXIT (1u << 15)
#define EXIT_SAVE_IA32_EFER (1u << 20)
#define EXIT_LOAD_IA32_EFER (1u << 21)
#define EXIT_SAVE_PREEMPTION_TIMER (1u << 22)

/* VM-entry controls (25.8.1, Table 25-15). */
#define ENTRY_LOAD_DEBUG_CONTROLS (1u << 2)
#define ENTRY_IA32E_MODE_GUEST (1u << 9)
#define ENTRY_LOAD_IA32_EFER (1u << 15)

/* ---- Control registers (Vol. 3 2.5) -------------------------------------- */
typedef union {
    uint64_t Value;
    struct {
        uint64_t ProtectionEnable : 1;     /* 0 PE */
        uint64_t MonitorCoprocessor : 1;   /* 1 MP */
        uint64_t Emulation : 1;            /* 2 EM */
        uint64_t TaskSwitched : 1;         /* 3 TS */
        uint64_t ExtensionType : 1;        /* 4 ET */
        uint64_t NumericError : 1;         /* 5 NE (fixed to 1 in VMX operation) */
        uint64_t Reserved1 : 10;
        uint64_t WriteProtect : 1;         /* 16 WP */
        uint64_t Reserved2 : 1;
        uint64_t AlignmentMask : 1;        /* 18 AM */
        uint64_t Reserved3 : 10;
        uint64_t NotWriteThrough : 1;      /* 29 NW */
        uint64_t CacheDisable : 1;         /* 30 CD */
        uint64_t Paging : 1;               /* 31 PG */
        uint64_t Reserved4 : 32;
    } Bits;
} CR0_REGISTER;

typedef union {
    uint64_t Value;
    struct {
        uint64_t Pcid : 12;                /* 11:0 when CR4.PCIDE = 1 (4.10.1) */
        uint64_t PageFrameNumber : 51;     /* PML4 table physical page */
        uint64_t NoFlush : 1;              /* 63 on MOV to CR3 with PCIDE: do not invalidate */
    } Bits;
} CR3_REGISTER;

typedef union {
    uint64_t Value;
    struct {
        uint64_t Vme : 1;                  /* 0 */
        uint64_t Pvi : 1;                  /* 1 */
        uint64_t Tsd : 1;                  /* 2 */
        uint64_t De : 1;                   /* 3 */
        uint64_t Pse : 1;                  /* 4 */
        uint64_t Pae : 1;                  /* 5 */
        uint64_t Mce : 1;                  /* 6 */
        uint64_t Pge : 1;                  /* 7 */
        uint64_t Pce : 1;                  /* 8 */
        uint64_t OsFxsr : 1;               /* 9 */
        uint64_t OsXmmExcpt : 1;           /* 10 */
        uint64_t Umip : 1;                 /* 11 */
        uint64_t La57 : 1;                 /* 12 */
        uint64_t Vmxe : 1;                 /* 13 VMX enable: required before VMXON */
        uint64_t Smxe : 1;                 /* 14 */
        uint64_t Reserved1 : 1;
        uint64_t FsGsBase : 1;             /* 16 */
        uint64_t Pcide : 1;                /* 17 */
        uint64_t OsXsave : 1;              /* 18 */
        uint64_t Reserved2 : 1;
        uint64_t Smep : 1;                 /* 20 */
        uint64_t Smap : 1;                 /* 21 */
        uint64_t Pke : 1;                  /* 22 */
        uint64_t Reserved3 : 41;
    } Bits;
} CR4_REGISTER;
#define CR4_VMXE (1ull << 13)

/* ---- DR7 (Vol. 3 18.2.4) ------------------------------------------------ */
typedef union {
    uint64_t Value;
    struct {
        uint64_t LocalAndGlobalEnables : 8; /* L0 G0 .. L3 G3 */
        uint64_t LocalExact : 1;           /* 8 LE */
        uint64_t GlobalExact : 1;          /* 9 GE */
        uint64_t Reserved1 : 1;            /* 10 reads as 1 */
        uint64_t Rtm : 1;                  /* 11 */
        uint64_t Reserved2 : 1;
        uint64_t GeneralDetect : 1;        /* 13 GD */
        uint64_t Reserved3 : 2;
        uint64_t ConditionsAndLengths : 16; /* R/W0 LEN0 .. R/W3 LEN3 */
        uint64_t Reserved4 : 32;           /* must be 0 for VM entry (27.3.1.1) */
    } Bits;
} DR7_REGISTER;

/* ---- RFLAGS (Vol. 1 3.4.3) ---------------------------------------------- */
typedef union {
    uint64_t Value;
    struct {
        uint64_t CarryFlag : 1;            /* 0 CF: VMfailInvalid (31.2) */
        uint64_t ReadAs1 : 1;              /* 1 */
        uint64_t ParityFlag : 1;           /* 2 */
        uint64_t Reserved1 : 1;
        uint64_t AuxiliaryCarryFlag : 1;   /* 4 */
        uint64_t Reserved2 : 1;
        uint64_t ZeroFlag : 1;             /* 6 ZF: VMfailValid (31.2) */
        uint64_t SignFlag : 1;             /* 7 */
        uint64_t TrapFlag : 1;             /* 8 */
        uint64_t InterruptEnableFlag : 1;  /* 9 */
        uint64_t DirectionFlag : 1;        /* 10 */
        uint64_t OverflowFlag : 1;         /* 11 */
        uint64_t IoPrivilegeLevel : 2;     /* 13:12 */
        uint64_t NestedTask : 1;           /* 14 */
        uint64_t Reserved3 : 1;
        uint64_t ResumeFlag : 1;           /* 16 */
        uint64_t Virtual8086Mode : 1;      /* 17 */
        uint64_t AlignmentCheck : 1;       /* 18 */
        uint64_t VirtualInterruptFlag : 1; /* 19 */
        uint64_t VirtualInterruptPending : 1; /* 20 */
        uint64_t IdentificationFlag : 1;   /* 21 */
        uint64_t Reserved4 : 42;
    } Bits;
} RFLAGS_REGISTER;

/* ---- CPUID.01H:ECX feature bits (Vol. 2A CPUID, Table 3-10) ------------- */
typedef union {
    uint32_t Value;
    struct {
        uint32_t Sse3 : 1;                 /* 0 */
        uint32_t Pclmulqdq : 1;            /* 1 */
        uint32_t Dtes64 : 1;               /* 2 */
        uint32_t Monitor : 1;              /* 3 */
        uint32_t DsCpl : 1;                /* 4 */
        uint32_t Vmx : 1;                  /* 5 Virtual Machine Extensions */
        uint32_t Smx : 1;                  /* 6 */
        uint32_t Reserved1 : 19;
        uint32_t Xsave : 1;                /* 26 */
        uint32_t OsXsave : 1;              /* 27 */
        uint32_t Reserved2 : 3;
        uint32_t HypervisorPresent : 1;    /* 31 reserved for VMMs (always 0 on hardware) */
    } Bits;
} CPUID_FEATURE_ECX;
#define CPUID_ECX_VMX (1u << 5)
#define CPUID_ECX_HYPERVISOR (1u << 31)

/* CPUID feature flags a guest OS uses when they are advertised, each usable in
 * VMX non-root only with its secondary control set (Vol. 3 26.3 / Table 25-7;
 * Vol. 2 CPUID). Listed once in core/features.c (HvGuestFeatures). */
#define CPUID_REG_EAX 0u
#define CPUID_REG_EBX 1u
#define CPUID_REG_ECX 2u
#define CPUID_REG_EDX 3u

/* A parent hypervisor (Hyper-V TLFS "Hypervisor Discovery"): CPUID.1:ECX[31],
 * vendor at 0x40000000, synthetic MSRs, hypercalls by VMCALL. */
#define CPUID_HV_RANGE_MASK 0xF0000000u
#define CPUID_HV_RANGE_BASE 0x40000000u
#define HYPERV_VENDOR_EBX 0x7263694Du   /* "Micr" */
#define HYPERV_VENDOR_ECX 0x666F736Fu   /* "osof" */
#define HYPERV_VENDOR_EDX 0x76482074u   /* "t Hv" */
#define HYPERV_SYNTHETIC_MSR_FIRST 0x40000000u
#define HYPERV_SYNTHETIC_MSR_LAST 0x400000FFu

/* RFLAGS.TF and the single-step bit (BS) of the pending-debug-exceptions
 * field (Vol. 3 25.4.2 Table 25-4, 27.3.1.5). */
#define RFLAGS_TF (1ull << 8)
#define PENDING_DEBUG_BS (1ull << 14)

/* ---- Segment selector (Vol. 3 3.4.2) ------------------------------------- */
typedef union {
    uint16_t Value;
    struct {
        uint16_t Rpl : 2;                  /* requested privilege level */
        uint16_t Table : 1;                /* TI: 0 GDT, 1 LDT */
        uint16_t Index : 13;
    } Bits;
} SEGMENT_SELECTOR;
#define SELECTOR_RPL_TI_MASK 0x7u          /* host selectors need RPL = TI = 0 (27.2.3) */

/* ---- Segment descriptor (Vol. 3 3.4.5; 16-byte system descriptors 8.2.3) - */
typedef union {
    uint64_t Value;
    struct {
        uint64_t LimitLow : 16;            /* 15:0 */
        uint64_t BaseLow : 16;             /* base 15:0 */
        uint64_t BaseMiddle : 8;           /* base 23:16 */
        uint64_t Type : 4;                 /* 43:40 */
        uint64_t DescriptorType : 1;       /* 44 S: 0 system, 1 code/data */
        uint64_t Dpl : 2;                  /* 46:45 */
        uint64_t Present : 1;              /* 47 */
        uint64_t LimitHigh : 4;            /* 51:48 limit 19:16 */
        uint64_t Available : 1;            /* 52 AVL */
        uint64_t LongMode : 1;             /* 53 L */
        uint64_t DefaultBig : 1;           /* 54 D/B */
        uint64_t Granularity : 1;          /* 55 G: limit in 4 KiB units */
        uint64_t BaseHigh : 8;             /* base 31:24 */
    } Bits;
} SEGMENT_DESCRIPTOR;

/* ---- VMX access rights, the VMCS guest segment format (25.4.1, Table 25-2) */
typedef union {
    uint32_t Value;
    struct {
        uint32_t Type : 4;                 /* 3:0 */
        uint32_t DescriptorType : 1;       /* 4 S */
        uint32_t Dpl : 2;                  /* 6:5 */
        uint32_t Present : 1;              /* 7 P */
        uint32_t Reserved1 : 4;            /* 11:8 */
        uint32_t Available : 1;            /* 12 AVL */
        uint32_t LongMode : 1;             /* 13 L (CS only) */
        uint32_t DefaultBig : 1;           /* 14 D/B */
        uint32_t Granularity : 1;          /* 15 G */
        uint32_t Unusable : 1;             /* 16 segment unusable (null selector) */
        uint32_t Reserved2 : 15;
    } Bits;
} VMX_ACCESS_RIGHTS;
#define VMX_AR_UNUSABLE (1u << 16)

/* Descriptor-table register image as stored by SGDT/SIDT (Vol. 3 2.4). */
#pragma pack(push, 1)
typedef struct {
    uint16_t Limit;
    uint64_t Base;
} DESCRIPTOR_TABLE_REGISTER;
#pragma pack(pop)

/* ---- Exit reasons, basic (bits 15:0 of the exit-reason field; App. C) --- */
#define EXIT_REASON_EXCEPTION_NMI 0u
#define EXIT_REASON_EXTERNAL_INTERRUPT 1u
#define EXIT_REASON_TRIPLE_FAULT 2u
#define EXIT_REASON_INIT 3u
#define EXIT_REASON_SIPI 4u
#define EXIT_REASON_CPUID 10u
#define EXIT_REASON_GETSEC 11u
#define EXIT_REASON_HLT 12u
#define EXIT_REASON_INVD 13u
#define EXIT_REASON_VMCALL 18u
#define EXIT_REASON_VMCLEAR 19u
#define EXIT_REASON_VMLAUNCH 20u
#define EXIT_REASON_VMPTRLD 21u
#define EXIT_REASON_VMPTRST 22u
#define EXIT_REASON_VMREAD 23u
#define EXIT_REASON_VMRESUME 24u
#define EXIT_REASON_VMWRITE 25u
#define EXIT_REASON_VMXOFF 26u
#define EXIT_REASON_VMXON 27u
#define EXIT_REASON_CR_ACCESS 28u
#define EXIT_REASON_MOV_DR 29u
#define EXIT_REASON_IO_INSTRUCTION 30u
#define EXIT_REASON_RDMSR 31u
#define EXIT_REASON_WRMSR 32u
#define EXIT_REASON_INVALID_GUEST_STATE 33u
#define EXIT_REASON_MSR_LOADING 34u
#define EXIT_REASON_MACHINE_CHECK 41u
#define EXIT_REASON_INVEPT 50u
#define EXIT_REASON_INVVPID 53u
#define EXIT_REASON_XSETBV 55u
#define EXIT_REASON_VMFUNC 59u
#define EXIT_REASON_ENTRY_FAILURE_BIT (1u << 31) /* 25.9.1: VM-entry failure */

/* Exit qualification for control-register accesses (28.2.1, Table 28-3). */
typedef union {
    uint64_t Value;
    struct {
        uint64_t ControlRegister : 4;      /* 3:0 */
        uint64_t AccessType : 2;           /* 5:4 0 MOV to CR, 1 MOV from CR, 2 CLTS, 3 LMSW */
        uint64_t LmswOperandType : 1;      /* 6 */
        uint64_t Reserved1 : 1;
        uint64_t GeneralRegister : 4;      /* 11:8 0 RAX .. 4 RSP .. 15 R15 */
        uint64_t Reserved2 : 4;
        uint64_t LmswSourceData : 16;      /* 31:16 */
        uint64_t Reserved3 : 32;
    } Bits;
} CR_ACCESS_QUALIFICATION;
#define CR_ACCESS_MOV_TO_CR 0u
#define CR_ACCESS_MOV_FROM_CR 1u
#define CR_ACCESS_CLTS 2u
#define CR_ACCESS_LMSW 3u

/* VM-entry interruption-information field (25.8.3, Table 25-17). */
#define INTR_INFO_VALID (1u << 31)
#define INTR_INFO_DELIVER_ERROR_CODE (1u << 11)
#define INTR_TYPE_HARDWARE_EXCEPTION (3u << 8)
#define VECTOR_INVALID_OPCODE 6u   /* #UD */
#define VECTOR_GENERAL_PROTECTION 13u /* #GP */

/* VM-instruction error numbers used by name (31.4, Table 31-1). */
#define VMX_ERROR_VMLAUNCH_NONCLEAR_VMCS 4u
#define VMX_ERROR_ENTRY_INVALID_CONTROLS 7u
#define VMX_ERROR_ENTRY_INVALID_HOST_STATE 8u

#endif
