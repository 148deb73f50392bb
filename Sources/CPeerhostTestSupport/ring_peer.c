#define _GNU_SOURCE
#include "ph_test_support.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ph_ring.h"

static uint64_t xorshift(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    return *s = x;
}

static int sleep_on(int fd) {
    uint64_t v;
    for (;;) {
        ssize_t n = read(fd, &v, sizeof v);
        if (n == (ssize_t)sizeof v) return 0;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return 0;
        return -1;
    }
}

int ph_test_set_timerslack_ns(unsigned long ns) { return prctl(PR_SET_TIMERSLACK, ns, 0, 0, 0); }

double ph_test_process_cpu_seconds(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    unsigned long utime = 0, stime = 0;
    /* after ") ": state(3) ... utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2) return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

int ph_test_pin_cpu(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set);
}

uint64_t ph_test_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int run_peer(const ph_peer_config *c) {
    ph_ring_view rx, tx;
    ph_ring_view_init(&rx, c->rx_ctl, c->rx_descs, c->entries, 0);
    ph_ring_view_init(&tx, c->tx_ctl, c->tx_descs, c->entries, 1);
    uint64_t received = 0, sent = 0, seed = c->seed | 1;
    uint32_t batch = c->batch ? c->batch : 1;
    uint64_t idle = 0, last_work = ph_test_now_ns();
    while (received < c->receive_count || sent < c->send_count) {
        int progressed = 0;
        uint32_t n = ph_ring_ready(&rx);
        if (n == UINT32_MAX) return 4;
        for (uint32_t i = 0; i < n; i++) {
            ph_desc d;
            ph_ring_peek_copy(&rx, i, &d);
            if (d.id != received) return 2;
            if (d.arg != ph_test_check(d.id, d.length)) return 3;
            received++;
            if (c->echo) {
                d.arg = ph_test_check(d.id, d.length);
                while (!ph_ring_put(&tx, &d)) { ph_ring_publish(&tx); ph_cpu_relax(); }
                sent++;
            }
        }
        if (n) { ph_ring_consume(&rx, n); progressed = 1; }
        if (c->echo && n) {
            ph_ring_publish(&tx);
            if (c->tx_wakeup_fd >= 0 && ph_ring_consumer_wants_wakeup(&tx)) {
                uint64_t one = 1;
                (void)!write(c->tx_wakeup_fd, &one, sizeof one);
            }
        }
        if (!c->echo && sent < c->send_count) {
            uint32_t put = 0;
            while (put < batch && sent < c->send_count) {
                ph_desc d = {0};
                d.type = PH_MSG_DATA;
                d.id = sent;
                d.length = (uint32_t)(xorshift(&seed) % 16384);
                d.slot = (uint32_t)(xorshift(&seed) % 1024);
                d.arg = ph_test_check(d.id, d.length);
                if (!ph_ring_put(&tx, &d)) break;
                put++; sent++;
            }
            if (put) {
                ph_ring_publish(&tx);
                progressed = 1;
                if (c->tx_wakeup_fd >= 0 && ph_ring_consumer_wants_wakeup(&tx)) {
                    uint64_t one = 1;
                    (void)!write(c->tx_wakeup_fd, &one, sizeof one);
                }
            }
        }
        if (progressed) { idle = 0; if (c->spin_ns) last_work = ph_test_now_ns(); continue; }
        int may_sleep = c->spin_ns ? (ph_test_now_ns() - last_work > c->spin_ns) : (++idle > 64);
        if (c->rx_wakeup_fd >= 0 && received < c->receive_count && may_sleep) {
            uint32_t m = ph_ring_prepare_sleep(&rx);
            if (m == UINT32_MAX) return 4;
            if (m == 0 && sleep_on(c->rx_wakeup_fd) != 0) return 5;
            ph_ring_awake(&rx);
            idle = 0;
            last_work = ph_test_now_ns();
        } else {
            ph_cpu_relax();
        }
    }
    return 0;
}

pid_t ph_test_fork_ring_peer(const ph_peer_config *cfg) {
    pid_t pid = fork();
    if (pid == 0) {
        if (cfg->pin_cpu > 0) ph_test_pin_cpu(cfg->pin_cpu - 1);
        ph_test_set_timerslack_ns(1);
        _exit(run_peer(cfg));
    }
    return pid;
}

pid_t ph_test_fork_socket_echo(int fd, int close_fd, int pin_cpu) {
    pid_t pid = fork();
    if (pid != 0) return pid;
    close(close_fd);
    if (pin_cpu > 0) ph_test_pin_cpu(pin_cpu - 1);
    ph_test_set_timerslack_ns(1);
    uint64_t v;
    for (;;) {
        ssize_t n = read(fd, &v, sizeof v);
        if (n == 0) _exit(0);
        if (n < 0) { if (errno == EINTR) continue; _exit(1); }
        if (write(fd, &v, (size_t)n) != n) _exit(1);
    }
}

int ph_test_wait(pid_t pid) {
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}
