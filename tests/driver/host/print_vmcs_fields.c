/* The driver's VMCS catalogue as the host compiler builds it from the one
 * encoding macro: "name encoding access index type width" per line. */
#include <stdio.h>
#include "hv_vmcs.h"

#define PRINT_FIELD(name, width, type, index)                                          \
    printf("%s %u %u %u %u %u\n", #name, (unsigned)VMCS_##name,                       \
           (unsigned)VMCS_ENCODING_ACCESS(VMCS_##name), (unsigned)VMCS_ENCODING_INDEX(VMCS_##name), \
           (unsigned)VMCS_ENCODING_TYPE(VMCS_##name), (unsigned)VMCS_ENCODING_WIDTH(VMCS_##name));

int main(void)
{
    HV_VMCS_FIELDS(PRINT_FIELD)
    return 0;
}
