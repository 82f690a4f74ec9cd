/* HV_STATUS in words: the message column of include/hv_status.h. */
#include "hv_types_base.h"
#include "hv_status.h"

#define HV_STATUS_MESSAGE_ENTRY(name, os_code, message) message,
static const char *const HvStatusMessages[HV_STATUS_COUNT] = { HV_STATUS_TABLE(HV_STATUS_MESSAGE_ENTRY) };

const char *HvStatusMessage(HV_STATUS status)
{
    if ((uint32_t)status >= (uint32_t)HV_STATUS_COUNT)
        return "unknown status";
    return HvStatusMessages[status];
}
