/*
 * Test and benchmark support: a ring peer that runs in a forked child process. The child only makes
 * async-signal-safe calls (the parent is a multithreaded Swift process), touches nothing but the
 * mapped region and two eventfds, and reports through its exit status.
 */
#ifndef PH_TEST_SUPPORT_H
#define PH_TEST_SUPPORT_H
#include <stdint.h>
#include <sys/types.h>

typedef struct ph_peer_config {
    void *rx_ctl, *rx_descs;   /* the peer consumes RX */
    void *tx_ctl, *tx_descs;   /* the peer produces TX */
    uint32_t entries;
    uint64_t receive_count;    /* messages expected on RX, in sequence order */
    uint64_t send_count;       /* messages to produce on TX */
    int rx_wakeup_fd;          /* eventfd the peer sleeps on (blocking read), -1: busy-poll only */
    int tx_wakeup_fd;          /* eventfd the peer writes when the parent asked for a wake-up */
    uint64_t seed;
    uint32_t batch;            /* descriptors per publish */
    int echo;                  /* 1: answer each RX message with one TX message of the same id */
    uint64_t spin_ns;          /* with a wake-up fd: keep polling this long after the last message
                                  before sleeping (0: sleep after 64 idle polls) */
    int pin_cpu;               /* 0: no pinning; n: pin the peer to CPU n-1 */
} ph_peer_config;

/* Pins the calling thread to one CPU (benchmarks: producer and consumer on different cores). */
int ph_test_pin_cpu(int cpu);

/* Timer slack of the calling thread (benchmarks: a 50 µs default slack would add to every timed
 * sleep). */
int ph_test_set_timerslack_ns(unsigned long ns);

/* utime+stime of a process in seconds, from /proc (benchmarks: a forked peer's CPU while alive). */
double ph_test_process_cpu_seconds(pid_t pid);

/* Monotonic nanoseconds. */
uint64_t ph_test_now_ns(void);

/* Checksum the producer puts in `arg` so the consumer can tell a torn or mixed-up descriptor. */
static inline int64_t ph_test_check(uint64_t seq, uint32_t length) {
    return (int64_t)((seq * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)length << 17));
}

/* Forks; the child runs the peer and _exits: 0 = every message in order with a good checksum,
 * 2 = out of order, 3 = bad checksum, 4 = corrupt index, 5 = wake-up read failed. */
pid_t ph_test_fork_ring_peer(const ph_peer_config *cfg);

/* Forks a child that echoes 8-byte messages on `fd` (blocking reads) until EOF: the socketpair
 * baseline for the ring's open-loop benchmark. The child closes `close_fd` (the parent's end). */
pid_t ph_test_fork_socket_echo(int fd, int close_fd, int pin_cpu);

/* Waits for a child; returns its exit status, or 128+signal. */
int ph_test_wait(pid_t pid);

#endif
