/* Host-side view of the driver's structures: what offsetof/sizeof say here,
 * to compare with the member table the cross-built hv.sys carries. */
#include <stdio.h>
#include "hv_context.h"

#define PRINT_MEMBER(prefix, type, member) \
    printf("MEMBER %s.%s %zu %zu\n", #prefix, #member, offsetof(type, member), sizeof(((type *)0)->member));

int main(void)
{
    printf("SIZE HV_DEBUG_DESCRIPTOR %zu\n", sizeof(HV_DEBUG_DESCRIPTOR));
    printf("SIZE HV_VMM_CONTEXT %zu\n", sizeof(HV_VMM_CONTEXT));
    printf("SIZE HV_VCPU %zu\n", sizeof(HV_VCPU));
    printf("SIZE HV_VMCS_SNAPSHOT %zu\n", sizeof(HV_VMCS_SNAPSHOT));
    printf("SIZE HV_FAILURE_RECORD %zu\n", sizeof(HV_FAILURE_RECORD));
    printf("OFFSET Members %zu\n", offsetof(HV_DEBUG_DESCRIPTOR, Members));
    printf("OFFSET Layout %zu\n", offsetof(HV_DEBUG_DESCRIPTOR, Layout));
    printf("OFFSET LastFailure %zu\n", offsetof(HV_DEBUG_DESCRIPTOR, LastFailure));
    printf("CONST MAGIC %llu\n", (unsigned long long)HV_DEBUG_MAGIC);
    printf("CONST VERSION %u\n", HV_DEBUG_VERSION);
    printf("CONST HOST_STACK_SIZE %u\n", HV_HOST_STACK_SIZE);
    printf("CONST HOST_STACK_PATTERN %llu\n", (unsigned long long)HV_HOST_STACK_PATTERN);
    HV_DEBUG_MEMBERS(PRINT_MEMBER)
    return 0;
}
