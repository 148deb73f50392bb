// Generated from protocols/abi/peerhost.h; keep them identical (a test compares them byte for byte).
// Compiled in so `peerhost new-plugin` can give a plugin its header without the source tree.
// Regenerate: paste the header between the delimiters.

public enum EmbeddedABIHeader {
    public static let text = #"""
/*
 * peerhost.h — the Peerhost plugin ABI, version 1.
 *
 * This header is the whole contract between the Peerhost host and a plugin. It depends on nothing
 * but <stdint.h> and <stddef.h>. A plugin is a shared library that exports one symbol,
 *
 *     const ph_plugin *peerhost_plugin_v1(void);
 *
 * and is loaded into its own sandboxed process (the runner). The runner hands the plugin a host
 * table (ph_host) whose calls become messages on a shared-memory ring to the core; results come
 * back as callbacks. Everything below runs on one thread: callbacks are never concurrent, and they
 * must not block (there is no file system, no network and no clock the plugin may wait on).
 *
 * Versioning (semver): PH_ABI_MAJOR changes on a break, PH_ABI_MINOR when a host call or callback
 * is added, PH_ABI_PATCH when an enum value is added. The host refuses a plugin whose major differs.
 * Every struct starts with `size`, filled with sizeof() as the side that owns it was compiled: a newer
 * host reads only the fields an older plugin's struct has, so upgrading the host within a major never
 * forces a rebuild. See protocols/abi/v1/README.md for the status of each version.
 */
#ifndef PEERHOST_H
#define PEERHOST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PH_ABI_MAJOR 1
#define PH_ABI_MINOR 2
#define PH_ABI_PATCH 0
/* One number for comparisons: 0x00MMmmpp. */
#define PH_ABI_VERSION ((PH_ABI_MAJOR << 16) | (PH_ABI_MINOR << 8) | PH_ABI_PATCH)
/* The name of the one symbol a plugin exports. */
#define PH_PLUGIN_ENTRY "peerhost_plugin_v1"

/* ---------------------------------------------------------------------------------------------
 * Status codes. Numbers never change; new ones are appended (a patch release).
 * Host calls return PH_OK (0) or a negative ph_status; calls that start an operation return a
 * positive id instead of PH_OK. A call that returns an error took nothing: a buffer passed to it
 * stays with the plugin. protocols/abi/v1/README.md, "Calls", lists per call what it may return.
 * ------------------------------------------------------------------------------------------- */
typedef enum ph_status {
    PH_OK = 0,
    PH_EAGAIN = -1,       /* the TX ring is full, or the connection's send bound is reached;
                             on_writable follows when it is not */
    PH_EDENIED = -2,      /* the manifest (or the operator's config) does not grant this */
    PH_EQUOTA = -3,       /* a quota would be exceeded: key-value bytes, the plugin's descriptor or timer budget */
    PH_ENOTSUP = -4,      /* the host does not serve this call, or (plugins built against 1.2 or
                             later) the plugin did not declare the call's feature bit */
    PH_EINVAL = -5,       /* a malformed argument: bad address, empty key, length out of range, an
                             unknown or closed file id */
    PH_ENOMEM = -6,       /* no free buffer slot; on_writable(0) follows once one is free again */
    PH_ENOTCONN = -7,     /* the connection, listener or socket id is unknown or already closed
                             (after close, conn_reset, or once on_closed returned) */
    PH_ECLOSED = -8,      /* reserved: 1.x hosts never return it (on_closed reports a FIN as PH_OK) */
    PH_EIO = -9,          /* an I/O error in the core (disk, socket) */
    PH_ENOENT = -10,      /* no such file or key */
    PH_ETIMEDOUT = -11,   /* connect or resolve timed out */
    PH_ECONNREFUSED = -12,/* the remote refused the connection */
    PH_EADDRINUSE = -13,  /* listen: the address is taken */
    PH_ERESET = -14,      /* the peer reset the connection */
    PH_ESTOPPING = -15    /* the host is shutting the plugin down */
} ph_status;

/* A static name for a status ("PH_EDENIED"), for logs; "PH_E?" for a number this header does not
 * know. Defined here (ABI 1.2), so a plugin needs no symbol from the host for it. */
static inline const char *ph_status_name(int64_t status) {
    static const char *const names[] = {
        "PH_OK", "PH_EAGAIN", "PH_EDENIED", "PH_EQUOTA", "PH_ENOTSUP", "PH_EINVAL", "PH_ENOMEM",
        "PH_ENOTCONN", "PH_ECLOSED", "PH_EIO", "PH_ENOENT", "PH_ETIMEDOUT", "PH_ECONNREFUSED",
        "PH_EADDRINUSE", "PH_ERESET", "PH_ESTOPPING",
    };
    if (status > 0) return "PH_OK";   /* a positive id: the call was taken */
    if (-status < (int64_t)(sizeof names / sizeof names[0])) return names[-status];
    return "PH_E?";
}

/* ---------------------------------------------------------------------------------------------
 * Feature bits, both ways. The plugin declares what it implements (ph_plugin.features); the host
 * declares what it serves (ph_host.features). Both are strict gates: the host never calls a
 * callback for a feature the plugin did not declare, and a host call for a feature the host did
 * not declare returns PH_ENOTSUP. From ABI 1.2 the plugin's own bits gate its calls too: a plugin
 * built against 1.2 or later that calls timer() without PH_FEAT_TIMERS gets PH_ENOTSUP (logged
 * once per feature); plugins built against 1.0/1.1 keep the old behaviour. log, metric_add,
 * buffer_alloc/free and close need no bit; control methods need PH_FEAT_CONTROL.
 * ------------------------------------------------------------------------------------------- */
#define PH_FEAT_STREAMS   (1ull << 0)  /* TCP: listen, connect, send, close; on_accept..on_closed */
#define PH_FEAT_DATAGRAMS (1ull << 1)  /* UDP: udp_bind, udp_send; on_datagram */
#define PH_FEAT_TIMERS    (1ull << 2)  /* timer, timer_cancel; on_timer */
#define PH_FEAT_FILES     (1ull << 3)  /* file_open/read/write/sync/close; on_complete */
#define PH_FEAT_KV        (1ull << 4)  /* kv_get/put/delete/scan; on_complete */
#define PH_FEAT_RESOLVE   (1ull << 5)  /* resolve (DNS done by the core); on_complete */
#define PH_FEAT_CONTROL   (1ull << 6)  /* control methods declared in the manifest */
#define PH_FEAT_SHAPING   (1ull << 7)  /* conn_set_rate / conn_set_weight */
#define PH_FEAT_ALL_V1    ((1ull << 8) - 1)
/* ABI 1.1 */
#define PH_FEAT_PEER_TAGS (1ull << 8)  /* conn_set_peer: per-peer accounting */
#define PH_FEAT_ALL_V1_1  ((1ull << 9) - 1)

/* kv_scan_from's on_complete value: the record count in the low 32 bits, PH_KV_MORE when matching
 * keys remain past the last record returned. */
#define PH_KV_MORE (1ll << 32)
#define PH_KV_COUNT(value) ((uint32_t)((value) & 0xffffffffll))

/* control_reply flags. */
#define PH_REPLY_MORE  (1u << 0)
#define PH_REPLY_ERROR (1u << 1)

/* The longest peer id conn_set_peer takes: it travels inside one ring descriptor (no buffer slot,
 * no completion), and 40 bytes hold a BitTorrent peer id (20) and a libp2p Ed25519 peer id (38).
 * A plugin with longer ids passes a digest of them. */
#define PH_PEER_ID_MAX 40

/* ---------------------------------------------------------------------------------------------
 * Buffers. Payload lives in a pool of fixed-size slots shared with the core; the core receives
 * from sockets and files straight into a slot and sends straight from one, so bytes are never
 * copied between core and plugin. A ph_buffer names one slot and a byte range inside it.
 *
 * Ownership: a buffer handed to the plugin (on_data, on_datagram, on_complete) belongs to the
 * plugin until it passes it back with send/udp_send/file_write (the core then owns it until the
 * operation completes) or frees it with buffer_free. Using a buffer after giving it away is a
 * violation; the host kills the plugin.
 * ------------------------------------------------------------------------------------------- */
typedef struct ph_buffer {
    uint8_t *data;      /* start of the slot in this process's mapping */
    uint32_t slot;      /* slot index in the pool */
    uint32_t offset;    /* first byte of payload inside the slot */
    uint32_t length;    /* payload bytes starting at data + offset */
    uint32_t capacity;  /* slot size: offset + length must stay <= capacity */
} ph_buffer;

typedef uint64_t ph_conn;      /* a TCP connection, a TCP listener or a UDP socket; never 0 */
typedef uint64_t ph_request;   /* an asynchronous operation; its on_complete carries the same id */
typedef uint64_t ph_file;      /* an open file, from on_complete of file_open */
typedef uint64_t ph_call;      /* ABI 1.2: one call of an async control method; never 0 */

/* Log levels for ph_host.log. */
typedef enum ph_log_level {
    PH_LOG_DEBUG = 0,
    PH_LOG_INFO = 1,
    PH_LOG_WARN = 2,
    PH_LOG_ERROR = 3
} ph_log_level;

/* file_open flags. Paths are relative to a directory the manifest grants ("downloads/a.bin"). */
#define PH_FILE_READ   (1u << 0)
#define PH_FILE_WRITE  (1u << 1)
#define PH_FILE_CREATE (1u << 2)
#define PH_FILE_TRUNC  (1u << 3)
/* ABI 1.1.1: create missing parent directories (beneath the granted directory, mode 0700) before
 * opening; needs PH_FILE_CREATE. A multi-file torrent lands in "<dir>/<name>/<path…>". */
#define PH_FILE_MKDIRS (1u << 4)

/* ---------------------------------------------------------------------------------------------
 * The host table: what a plugin may ask of the host. Every call is non-blocking. `ctx` is the
 * host's own pointer; pass it back unchanged. Addresses are text: "tcp:127.0.0.1:7000",
 * "udp:0.0.0.0:6881", "tcp:[::1]:80", "tcp:example.org:6881" (connect only; resolved by the core).
 * Calls that carry text or keys copy them before returning: the plugin may reuse its memory at once.
 * ------------------------------------------------------------------------------------------- */
typedef struct ph_host {
    uint32_t size;          /* sizeof(ph_host) as the host was compiled */
    uint32_t abi_version;   /* PH_ABI_VERSION of the host */
    uint64_t features;      /* PH_FEAT_* the host serves */
    void *ctx;

    /* Diagnostics. log goes to the host's log with the plugin's name; metric_add adds `value` to a
     * plugin counter exported as peerhost_plugin_<name>_total (name: [a-z0-9_]{1,48}). */
    void (*log)(void *ctx, ph_log_level level, const char *msg, size_t len);
    ph_status (*metric_add)(void *ctx, const char *name, size_t name_len, double value);

    /* Buffers: take a free slot (length 0, offset 0) or give one back. */
    ph_status (*buffer_alloc)(void *ctx, ph_buffer *out);
    void (*buffer_free)(void *ctx, const ph_buffer *buf);

    /* Streams. listen/connect return a positive ph_request; on_complete(value = listener or
     * connection id) follows. send takes ownership of buf; PH_EAGAIN leaves it with the plugin.
     * Bytes leave in the order they were sent, whatever the kernel takes per call. The core holds at
     * most a bounded number of bytes per connection (the host's [tuning] send_queue_per_connection,
     * 512 KiB by default): past it send returns PH_EAGAIN and on_writable(conn) follows once half of
     * them went out (a single send is always taken when nothing of that connection is queued).
     * close is graceful: what was sent before it still goes out, then FIN; a peer that takes
     * nothing for the host's linger time ([tuning] close_linger_s) is reset instead. */
    int64_t (*listen)(void *ctx, const char *addr, size_t len);
    int64_t (*connect)(void *ctx, const char *addr, size_t len);
    ph_status (*send)(void *ctx, ph_conn conn, const ph_buffer *buf);
    ph_status (*close)(void *ctx, ph_conn conn);

    /* Datagrams. udp_bind → on_complete(value = socket id); udp_send takes ownership of buf. The
     * destination is numeric ("udp:1.2.3.4:6881", "udp:[::1]:6881"); one no connect grant covers
     * answers PH_EDENIED (ABI 1.2; the core also drops, and audits, sends to the host's own
     * addresses and to multicast groups from a socket that is not the group's). */
    int64_t (*udp_bind)(void *ctx, const char *addr, size_t len);
    ph_status (*udp_send)(void *ctx, ph_conn sock, const char *to, size_t to_len, const ph_buffer *buf);

    /* DNS, done by the core: on_complete carries a buffer of addresses, one per line. */
    int64_t (*resolve)(void *ctx, const char *name, size_t len);

    /* Timers: on_timer(id, tag) after delay_ns on the host's monotonic clock, once. At most the
     * host's [tuning] plugin_timers (65536) may be pending: past it timer() returns PH_EQUOTA. */
    int64_t (*timer)(void *ctx, uint64_t delay_ns, uint64_t tag);
    ph_status (*timer_cancel)(void *ctx, int64_t timer_id);

    /* Files, opened by the core under a granted directory (no "..", no symlink escape). file_read
     * fills buf (up to its capacity) and returns it in on_complete; file_write takes ownership. */
    int64_t (*file_open)(void *ctx, const char *path, size_t len, uint32_t flags);
    int64_t (*file_read)(void *ctx, ph_file file, uint64_t offset, const ph_buffer *buf);
    int64_t (*file_write)(void *ctx, ph_file file, uint64_t offset, const ph_buffer *buf);
    int64_t (*file_sync)(void *ctx, ph_file file);
    ph_status (*file_close)(void *ctx, ph_file file);

    /* Key-value store, one namespace per plugin, durable once on_complete reports PH_OK.
     * kv_get/kv_scan results arrive in on_complete's buffer; kv_scan's buffer holds records of
     * (u32 key_len, key, u32 value_len, value), little-endian. */
    int64_t (*kv_get)(void *ctx, const uint8_t *key, size_t key_len);
    int64_t (*kv_put)(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value, size_t value_len);
    int64_t (*kv_delete)(void *ctx, const uint8_t *key, size_t key_len);
    int64_t (*kv_scan)(void *ctx, const uint8_t *prefix, size_t prefix_len, uint32_t limit);

    /* Shaping inside the plugin's own grant: bytes/s each way (0 = no per-connection limit), and a
     * weight for fair share among the plugin's connections (1..1000, default 100). */
    ph_status (*conn_set_rate)(void *ctx, ph_conn conn, uint64_t up, uint64_t down);
    ph_status (*conn_set_weight)(void *ctx, ph_conn conn, uint32_t weight);

    /* ---- ABI 1.1: present when size covers it and features has the bit ---- */

    /* Tags a stream or UDP socket with the remote peer's id (1..PH_PEER_ID_MAX opaque bytes, e.g.
     * the BitTorrent peer id from the handshake), so the host accounts its bytes and messages per
     * peer (PH_FEAT_PEER_TAGS). What the connection carried before its first tag (bytes received
     * before on_accept returned) counts for that first id; calling it again re-tags the connection
     * and traffic counted before stays with the previous id. PH_EINVAL for an empty or too long id, PH_ENOTCONN for an
     * unknown connection (the core checks ownership too). Check `size` before calling:
     *   host->size >= offsetof(ph_host, conn_set_peer) + sizeof(host->conn_set_peer)
     *   && (host->features & PH_FEAT_PEER_TAGS) */
    ph_status (*conn_set_peer)(void *ctx, ph_conn conn, const uint8_t *id, size_t len);

    /* ---- ABI 1.2: present when size covers it ---- */

    /* Abortive close: the connection is reset (RST) at once and whatever is still queued for it is
     * dropped, its buffers come back as after a send. For a listener or UDP socket it is close.
     *   host->size >= offsetof(ph_host, conn_reset) + sizeof(host->conn_reset) */
    ph_status (*conn_reset)(void *ctx, ph_conn conn);

    /* kv_scan that pages: the keys starting with `prefix` that are not below `start` (bytewise),
     * ascending, at most `limit` (0: as many as fit one buffer). on_complete's value is the number
     * of records, with PH_KV_MORE set when matching keys remain; the next page starts just after
     * the last key returned (that key with a 0x00 byte appended). Prefix and start together must
     * fit one buffer slot. PH_FEAT_KV.
     *   host->size >= offsetof(ph_host, kv_scan_from) + sizeof(host->kv_scan_from) */
    int64_t (*kv_scan_from)(void *ctx, const uint8_t *prefix, size_t prefix_len,
                            const uint8_t *start, size_t start_len, uint32_t limit);

    /* Answers a call of an async control method (below): `data` is a bytes result, copied before
     * the call returns. flags 0: the last answer, the call is over. PH_REPLY_MORE: more answers
     * follow (a stream, such as a subscription; the caller sees each as it comes). PH_REPLY_ERROR:
     * the call failed, `data` is the message (UTF-8), the call is over. PH_ENOTCONN when the call is
     * unknown or over (answered, timed out, or its caller went away: stop streaming), PH_EINVAL for
     * more than 32 MiB. PH_FEAT_CONTROL.
     *   host->size >= offsetof(ph_host, control_reply) + sizeof(host->control_reply) */
    ph_status (*control_reply)(void *ctx, ph_call call, const uint8_t *data, size_t len, uint32_t flags);
} ph_host;

/* ---------------------------------------------------------------------------------------------
 * The plugin: name, version, ABI version, features and callbacks. Any callback may be NULL when
 * its feature bit is not set. `user` is the pointer start() stored; it is passed to every callback.
 * ------------------------------------------------------------------------------------------- */
typedef struct ph_plugin {
    uint32_t size;            /* sizeof(ph_plugin) as the plugin was compiled */
    uint32_t abi_version;     /* PH_ABI_VERSION the plugin was built against */
    const char *name;         /* must equal the manifest's [plugin] name */
    const char *version;      /* the plugin's own version, shown by peerhost status */
    uint64_t features;        /* PH_FEAT_* the plugin implements */

    /* Called once, after the sandbox is in place. config is the plugin's table from the operator's
     * config as JSON (may be empty). Returning an error stops the plugin with that status. */
    ph_status (*start)(const ph_host *host, const char *config, size_t config_len, void **user);
    /* Called once before the process exits; no host call may follow. */
    void (*stop)(void *user);

    /* Streams. on_accept: a listener accepted conn from peer ("tcp:1.2.3.4:5555").
     * on_data: buf belongs to the plugin now. on_writable: a send that returned PH_EAGAIN may be
     * retried (conn 0: a call that is not a send met a full ring, or a call met PH_ENOMEM and a
     * slot is free again). The core produces it when it has made room; nothing polls, so a plugin
     * waits for it without a timer. on_closed: the peer closed
     * (reason PH_OK, a FIN: every byte it sent came before) or the connection failed (PH_ERESET,
     * PH_EIO); no on_data follows. Sends made before on_closed returns still go out in order, then
     * the core closes its side: the plugin need not call close. */
    void (*on_accept)(void *user, ph_conn listener, ph_conn conn, const char *peer, size_t peer_len);
    void (*on_data)(void *user, ph_conn conn, ph_buffer *buf);
    void (*on_writable)(void *user, ph_conn conn);
    void (*on_closed)(void *user, ph_conn conn, ph_status reason);

    /* Datagrams: buf belongs to the plugin now. */
    void (*on_datagram)(void *user, ph_conn sock, const char *from, size_t from_len, ph_buffer *buf);

    /* Timers. */
    void (*on_timer)(void *user, int64_t timer_id, uint64_t tag);

    /* Completion of an asynchronous call: the request id the call returned, its status, a value
     * (connection, listener, socket or file id; bytes written; 0) and, for calls that return data,
     * a buffer that belongs to the plugin now (NULL otherwise). */
    void (*on_complete)(void *user, ph_request request, ph_status status, int64_t value, ph_buffer *buf);

    /* Frees the memory of a `bytes` control result (see below). NULL means free(3). */
    void (*free_result)(void *ptr);
} ph_plugin;

/* ---------------------------------------------------------------------------------------------
 * Control methods: plain exported C functions named in the manifest's [[control]] tables, called by
 * the runner through libffi on the plugin's thread, between callbacks. Argument types map to C as
 *   i64 → int64_t, f64 → double, bool → _Bool, string → const char * (NUL-terminated UTF-8),
 *   bytes → const uint8_t *, size_t (two C parameters);
 * results as
 *   i64 → int64_t, f64 → double, bytes → ph_bytes (returned by value; the runner copies the bytes at
 *   once and frees them with ph_plugin.free_result). Structured results are JSON by convention.
 *
 * ABI 1.2: a method declared `async = true` reaches the plugin's state and may answer later or
 * several times. Its C function takes the `user` pointer start() stored and the call first,
 *   ph_status method(void *user, ph_call call, <arguments as above>);
 * and returns PH_OK once it has answered or will answer with host->control_reply (until it does,
 * the caller waits; a call with no first answer within 10 s fails for the caller, and a later
 * reply gets PH_ENOTCONN). Any other status fails the call at once with that status's name.
 * Its signature's result is `bytes` (each reply is bytes).
 * ------------------------------------------------------------------------------------------- */
typedef struct ph_bytes {
    uint8_t *data;
    size_t len;
} ph_bytes;

/* The entry point's type. */
typedef const ph_plugin *(*ph_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* PEERHOST_H */
"""#
}
