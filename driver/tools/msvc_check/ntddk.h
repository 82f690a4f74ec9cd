/*
 * ntddk.h for `make -C driver msvc-check` only: the WDK declarations the
 * driver uses, written from the WDK reference (wdm.h / ntdef.h / ntddk.h
 * pages on learn.microsoft.com), declarations only. It lets clang check the
 * sources the way MSVC sees them (_MSC_VER, _KERNEL_MODE, LLP64) where no WDK
 * is installed. It is not the WDK: the Windows build (CMakeLists.txt) uses
 * the real one. Add a declaration here when platform/windows/ uses a new
 * kernel routine (and list the import in docs/driver.md).
 */
#ifndef HV_MSVC_CHECK_NTDDK_H
#define HV_MSVC_CHECK_NTDDK_H

#include <stddef.h>
#include <stdarg.h>

#define NTAPI __stdcall
#define NTSYSAPI __declspec(dllimport)
#define DECLSPEC_NORETURN __declspec(noreturn)
#define VOID void
#define FALSE 0
#define TRUE 1
#define UNREFERENCED_PARAMETER(p) (p)

typedef void *PVOID;
typedef char CHAR;
typedef const char *PCSTR, *PCCH;
typedef unsigned char UCHAR, BOOLEAN;
typedef unsigned short USHORT, WORD;
typedef wchar_t WCHAR, *PWCH, *PWSTR;
typedef long LONG, NTSTATUS;
typedef unsigned long ULONG, *PULONG;
typedef __int64 LONGLONG;
typedef unsigned __int64 ULONGLONG, ULONG_PTR, SIZE_T, KAFFINITY;
typedef UCHAR KIRQL, *PKIRQL;
typedef void *HANDLE;

#define NT_SUCCESS(status) (((NTSTATUS)(status)) >= 0)
#define STATUS_SUCCESS ((NTSTATUS)0x00000000L)
#define STATUS_UNSUCCESSFUL ((NTSTATUS)0xC0000001L)
#define STATUS_INVALID_PARAMETER ((NTSTATUS)0xC000000DL)
#define STATUS_INSUFFICIENT_RESOURCES ((NTSTATUS)0xC000009AL)
#define STATUS_NOT_SUPPORTED ((NTSTATUS)0xC00000BBL)
#define STATUS_HV_FEATURE_UNAVAILABLE ((NTSTATUS)0xC035001EL)

typedef union _LARGE_INTEGER {
    struct {
        ULONG LowPart;
        LONG HighPart;
    } u;
    LONGLONG QuadPart;
} LARGE_INTEGER, PHYSICAL_ADDRESS;

typedef struct _UNICODE_STRING {
    USHORT Length;
    USHORT MaximumLength;
    PWCH Buffer;
} UNICODE_STRING, *PUNICODE_STRING;

typedef struct _OBJECT_ATTRIBUTES {
    ULONG Length;
    HANDLE RootDirectory;
    PUNICODE_STRING ObjectName;
    ULONG Attributes;
    PVOID SecurityDescriptor;
    PVOID SecurityQualityOfService;
} OBJECT_ATTRIBUTES, *POBJECT_ATTRIBUTES;
#define OBJ_CASE_INSENSITIVE 0x00000040L
#define InitializeObjectAttributes(p, n, a, r, s) \
    { (p)->Length = sizeof(OBJECT_ATTRIBUTES); (p)->RootDirectory = r; (p)->Attributes = a; \
      (p)->ObjectName = n; (p)->SecurityDescriptor = s; (p)->SecurityQualityOfService = NULL; }

/* ---- driver object (only the member the driver sets) ---- */
struct _DRIVER_OBJECT;
typedef NTSTATUS DRIVER_INITIALIZE(struct _DRIVER_OBJECT *DriverObject, PUNICODE_STRING RegistryPath);
typedef VOID DRIVER_UNLOAD(struct _DRIVER_OBJECT *DriverObject);
typedef struct _DRIVER_OBJECT {
    short Type;
    short Size;
    PVOID DeviceObject;
    ULONG Flags;
    PVOID DriverStart;
    ULONG DriverSize;
    PVOID DriverSection;
    PVOID DriverExtension;
    UNICODE_STRING DriverName;
    PUNICODE_STRING HardwareDatabase;
    PVOID FastIoDispatch;
    DRIVER_INITIALIZE *DriverInit;
    PVOID DriverStartIo;
    DRIVER_UNLOAD *DriverUnload;
    PVOID MajorFunction[28];
} DRIVER_OBJECT, *PDRIVER_OBJECT;

/* ---- memory ---- */
typedef enum _POOL_TYPE { NonPagedPool = 0, NonPagedPoolNx = 512 } POOL_TYPE;
typedef enum _MEMORY_CACHING_TYPE { MmNonCached = 0, MmCached = 1, MmWriteCombined = 2 } MEMORY_CACHING_TYPE;
NTSYSAPI PVOID NTAPI ExAllocatePoolWithTag(POOL_TYPE PoolType, SIZE_T NumberOfBytes, ULONG Tag);
NTSYSAPI VOID NTAPI ExFreePoolWithTag(PVOID P, ULONG Tag);
NTSYSAPI PVOID NTAPI MmAllocateContiguousMemorySpecifyCache(SIZE_T NumberOfBytes,
                                                           PHYSICAL_ADDRESS LowestAcceptableAddress,
                                                           PHYSICAL_ADDRESS HighestAcceptableAddress,
                                                           PHYSICAL_ADDRESS BoundaryAddressMultiple,
                                                           MEMORY_CACHING_TYPE CacheType);
NTSYSAPI VOID NTAPI MmFreeContiguousMemory(PVOID BaseAddress);
NTSYSAPI PHYSICAL_ADDRESS NTAPI MmGetPhysicalAddress(PVOID BaseAddress);
void *__cdecl memset(void *dest, int c, size_t count);
#define RtlZeroMemory(d, n) memset((d), 0, (n))

/* ---- processors, affinity, IRQL ---- */
typedef struct _PROCESSOR_NUMBER {
    USHORT Group;
    UCHAR Number;
    UCHAR Reserved;
} PROCESSOR_NUMBER, *PPROCESSOR_NUMBER;
typedef struct _GROUP_AFFINITY {
    KAFFINITY Mask;
    USHORT Group;
    USHORT Reserved[3];
} GROUP_AFFINITY, *PGROUP_AFFINITY;
#define ALL_PROCESSOR_GROUPS 0xffff
NTSYSAPI ULONG NTAPI KeQueryActiveProcessorCountEx(USHORT GroupNumber);
NTSYSAPI NTSTATUS NTAPI KeGetProcessorNumberFromIndex(ULONG ProcIndex, PPROCESSOR_NUMBER ProcNumber);
NTSYSAPI VOID NTAPI KeSetSystemGroupAffinityThread(PGROUP_AFFINITY Affinity, PGROUP_AFFINITY PreviousAffinity);
NTSYSAPI VOID NTAPI KeRevertToUserGroupAffinityThread(PGROUP_AFFINITY PreviousAffinity);
#define DISPATCH_LEVEL 2
/* x64 wdm.h: inline functions writing CR8; declared here only. */
KIRQL KfRaiseIrql(KIRQL NewIrql);
VOID KeLowerIrql(KIRQL NewIrql);
#define KeRaiseIrql(a, b) *(b) = KfRaiseIrql(a)

/* ---- callbacks and objects ---- */
typedef struct _CALLBACK_OBJECT *PCALLBACK_OBJECT;
typedef VOID CALLBACK_FUNCTION(PVOID CallbackContext, PVOID Argument1, PVOID Argument2);
typedef CALLBACK_FUNCTION *PCALLBACK_FUNCTION;
#define PO_CB_SYSTEM_STATE_LOCK 3
NTSYSAPI NTSTATUS NTAPI ExCreateCallback(PCALLBACK_OBJECT *CallbackObject, POBJECT_ATTRIBUTES ObjectAttributes,
                                         BOOLEAN Create, BOOLEAN AllowMultipleCallbacks);
NTSYSAPI PVOID NTAPI ExRegisterCallback(PCALLBACK_OBJECT CallbackObject, PCALLBACK_FUNCTION CallbackFunction,
                                        PVOID CallbackContext);
NTSYSAPI VOID NTAPI ExUnregisterCallback(PVOID CallbackRegistration);
typedef __int64 LONG_PTR;
NTSYSAPI LONG_PTR __fastcall ObfDereferenceObject(PVOID Object);
#define ObDereferenceObject(o) ObfDereferenceObject(o)

/* ---- debug output, bugcheck ---- */
#define DPFLTR_IHVDRIVER_ID 77
NTSYSAPI ULONG NTAPI vDbgPrintEx(ULONG ComponentId, ULONG Level, PCCH Format, va_list arglist);
NTSYSAPI DECLSPEC_NORETURN VOID NTAPI KeBugCheckEx(ULONG BugCheckCode, ULONG_PTR BugCheckParameter1,
                                                   ULONG_PTR BugCheckParameter2, ULONG_PTR BugCheckParameter3,
                                                   ULONG_PTR BugCheckParameter4);
#endif
