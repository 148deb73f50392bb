/*
 * ph_sys.h — Linux calls that Swift's Glibc module does not import (memfd_create, eventfd, prctl,
 * pidfd_*, close_range, openat2) or imports awkwardly (variadic, macro-based). Each wrapper returns
 * -1 with errno set on failure, like the call it wraps.
 */
#ifndef PH_SYS_H
#define PH_SYS_H

#include <signal.h>   /* before anything that defines _XOPEN_SOURCE (see NOTES-swift-linux.md) */
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

/* memfd with sealing allowed; seal it against shrinking, growing and further sealing. */
int ph_memfd_create(const char *name);
int ph_memfd_seal(int fd);
/* Seal a memfd completely (F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL): its bytes can
 * never change again, through any fd or mapping (a verified plugin library image). */
int ph_memfd_seal_immutable(int fd);
/* F_GET_SEALS: the seals set on fd, or -1. */
int ph_memfd_get_seals(int fd);
/* The F_SEAL_* bits (the macros do not import into Swift). */
int ph_seal_bits_immutable(void);

/* argc/argv as glibc passed them to the program's constructors (.init_array). The Swift runtime
 * reads CommandLine.arguments from /proc/self/cmdline, which the runner's private root does not
 * have; the runner takes its arguments from here. */
int ph_saved_argc(void);
char **ph_saved_argv(void);

/* eventfd, non-blocking and close-on-exec. */
int ph_eventfd(unsigned int initval, int nonblock);
int ph_eventfd_signal(int fd);            /* adds 1; EAGAIN (counter saturated) counts as success */
int ph_eventfd_drain(int fd, uint64_t *value);

int ph_pidfd_open(pid_t pid);
int ph_pidfd_send_signal(int pidfd, int sig);
int ph_close_range(unsigned int first, unsigned int last, unsigned int flags);
int ph_set_no_new_privs(void);
int ph_get_no_new_privs(void);
int ph_set_pdeathsig(int sig);
int ph_set_name(const char *name);

/* openat2 with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS: `path` may not leave `dirfd` by "..",
 * an absolute path or a symlink. */
int ph_openat_beneath(int dirfd, const char *path, int flags, unsigned int mode);

/* ppoll on up to two fds with a timeout in nanoseconds (-1 = forever). Returns a bit mask of the
 * fds that are readable (bit 0: fd0, bit 1: fd1; bit 2: fd1 hung up), 0 on timeout, -1 on error. */
int ph_poll2(int fd0, int fd1, int64_t timeout_ns);

/* The peer address of an ACCEPT or DATAGRAM descriptor (ABI 1.2: both carry it the same way, in
 * the descriptor, never in a slot): `addr16` (ph_desc.reserved) gets the IPv6 address, an IPv4 one
 * as v4-mapped ::ffff:a.b.c.d; the return value goes in ph_desc.arg2: port | family << 16, family 4
 * or 6. 0 (no address) for anything but AF_INET/AF_INET6. `sa` is a struct sockaddr. */
uint64_t ph_peer_encode(const void *sa, uint8_t addr16[16]);
/* The plugin's text for an encoded peer: "<transport>:1.2.3.4:5555" or "<transport>:[::1]:80".
 * Returns its length (NUL-terminated in out), 0 when arg2 names no address or out is too small
 * (PH_PEER_TEXT_MAX bytes always fit). The one place the address becomes text. */
#define PH_PEER_TEXT_MAX 64
size_t ph_peer_format(const uint8_t addr16[16], uint64_t arg2, const char *transport, char *out, size_t cap);

#endif
