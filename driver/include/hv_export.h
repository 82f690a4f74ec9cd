/* Marks the symbols hv.sys exports by name (the debug descriptor), so the lab
 * finds them in the PE export table and WinDbg/pykd as hv!<name>. */
#ifndef HV_EXPORT_H
#define HV_EXPORT_H
#if defined(_WIN32)
#define HV_EXPORT __declspec(dllexport)
#else
#define HV_EXPORT /* host-side unit tests */
#endif
#endif
