#include <signal.h>
#include <seccomp.h>
/* SCMP_ACT_ERRNO/SCMP_ACT_TRACE are macros with arguments: not importable. */
static inline uint32_t ph_scmp_act_errno(uint16_t e) { return SCMP_ACT_ERRNO(e); }
/* AUDIT_ARCH_X86_64 is built from other macros: not importable. */
static inline uint32_t ph_scmp_arch_x86_64(void) { return SCMP_ARCH_X86_64; }
