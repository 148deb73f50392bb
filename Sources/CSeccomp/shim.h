#include <signal.h>
#include <seccomp.h>
/* SCMP_ACT_ERRNO/SCMP_ACT_TRACE are macros with arguments: not importable. */
static inline uint32_t ph_scmp_act_errno(uint16_t e) { return SCMP_ACT_ERRNO(e); }
