/*
 * hv_load.h -- load, unload and power transitions (core/hv_load.c): what the
 * platform layer calls from its entry points. Everything here runs at the
 * OS's normal thread level (Windows: PASSIVE_LEVEL) and reaches the OS only
 * through include/hv_platform.h.
 */
#ifndef HV_LOAD_H
#define HV_LOAD_H

#include "hv_status.h"
#include "hv_context.h"

/* Checks the processor, allocates, virtualizes every processor one after
 * another; on any failure undoes every processor already virtualized and
 * frees everything. Publishes the VMM in the debug descriptor and records the
 * outcome there (DriverState, LoadStatus). *out = the running VMM. */
HV_STATUS HvLoad(HV_VMM_CONTEXT **out);
/* Devirtualizes every processor and frees all (vmm may be NULL) -- except
 * what a processor that could not leave VMX still uses (leaked on purpose, and
 * said). Marks the descriptor unloaded. */
void HvUnload(HV_VMM_CONTEXT *vmm);
/* Before a sleep state: leave VMX everywhere (the firmware resumes the
 * processors with VMX off, SDM Vol. 3 25.11.1). */
void HvBeforeSleep(HV_VMM_CONTEXT *vmm);
/* After resume: enter VMX again on every processor, or stay out if that fails. */
void HvAfterResume(HV_VMM_CONTEXT *vmm);

#endif
