/* The VMCS field catalogue (names and encodings from HV_VMCS_FIELDS). */
#include "hv_vmcs.h"

#define HV_VMCS_CATALOGUE_ENTRY(name, width, type, index) \
    { VMCS_ENCODE(VMCS_ACCESS_FULL, index, type, width), #name },

const HV_VMCS_FIELD_INFO HvVmcsFieldCatalogue[HV_VMCS_FIELD_COUNT] = {
    HV_VMCS_FIELDS(HV_VMCS_CATALOGUE_ENTRY)
};
