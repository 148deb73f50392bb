// `peerhost new-plugin NAME --lang c`: the files of a plugin that builds, tests, signs and runs as
// written (docs/writing-a-plugin.md explains each step they take).

import Foundation

public enum PluginSkeleton {
    public struct File: Sendable, Equatable {
        public var path: String        // relative to the plugin's folder
        public var contents: String
        public var executable = false
    }

    public enum Language: String, Sendable, CaseIterable { case c }

    /// Why a skeleton cannot be written; the text names the bad input.
    public struct Refusal: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// The plugin name rule of manifests (lowercase letters, digits, - and _; 1…64; not "host").
    public static func validate(name: String) throws(Refusal) {
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789-_")
        guard !name.isEmpty, name.count <= 64, name.allSatisfy({ allowed.contains($0) }), name != "host",
              let first = name.first, first.isLetter else {
            throw Refusal(description: "'\(name)' is not a plugin name: lowercase letters, digits, - and _, starting with a letter, at most 64 ('host' is reserved)")
        }
    }

    public static func files(name: String, language: Language, port: UInt16) throws(Refusal) -> [File] {
        try validate(name: name)
        let symbol = name.replacingOccurrences(of: "-", with: "_")
        switch language {
        case .c: return cFiles(name: name, symbol: symbol, port: port)
        }
    }

    static func cFiles(name: String, symbol: String, port: UInt16) -> [File] {
        [
            File(path: "include/peerhost.h", contents: EmbeddedABIHeader.text + "\n"),
            File(path: "\(name).c", contents: """
                /*
                 * \(name): a Peerhost plugin (written by `peerhost new-plugin`). It listens on the first
                 * address of its config's "listen" and answers every chunk it receives with "\(name): "
                 * and the same bytes. Control method `stats` (async: it reaches the plugin's state
                 * through `user`) answers with the chunks answered so far. docs/writing-a-plugin.md.
                 */
                #include <stdio.h>
                #include <string.h>
                #include "peerhost.h"

                #define EXPORT __attribute__((visibility("default")))

                struct state {
                    const ph_host *host;
                    unsigned long long answered;
                };
                static struct state the_state;

                /* The first string of "listen": [...] in the config JSON the host passes to start. */
                static int first_listen(const char *cfg, size_t len, char *out, size_t cap) {
                    const char *key = "\\"listen\\"";
                    for (size_t i = 0; i + 8 <= len; i++) {
                        if (memcmp(cfg + i, key, 8) != 0) continue;
                        size_t j = i + 8;
                        while (j < len && (cfg[j] == ' ' || cfg[j] == ':' || cfg[j] == '[')) j++;
                        if (j >= len || cfg[j] != '"') return 0;
                        size_t start = ++j;
                        while (j < len && cfg[j] != '"') j++;
                        if (j >= len || j - start >= cap) return 0;
                        memcpy(out, cfg + start, j - start);
                        out[j - start] = 0;
                        return 1;
                    }
                    return 0;
                }

                static ph_status plugin_start(const ph_host *host, const char *config, size_t len, void **user) {
                    the_state.host = host;
                    *user = &the_state;
                    char addr[256];
                    if (!first_listen(config, len, addr, sizeof addr)) return PH_EINVAL;
                    int64_t r = host->listen(host->ctx, addr, strlen(addr));
                    return r > 0 ? PH_OK : (ph_status)r;
                }

                static void plugin_on_data(void *user, ph_conn conn, ph_buffer *in) {
                    struct state *s = user;
                    ph_buffer out;
                    const char *prefix = "\(name): ";
                    size_t n = strlen(prefix);
                    if (s->host->buffer_alloc(s->host->ctx, &out) == PH_OK && n + in->length <= out.capacity) {
                        memcpy(out.data, prefix, n);
                        memcpy(out.data + n, in->data + in->offset, in->length);
                        out.length = (uint32_t)(n + in->length);
                        /* A refused call took nothing: the buffer is still ours to free. */
                        if (s->host->send(s->host->ctx, conn, &out) == PH_OK) s->answered++;
                        else s->host->buffer_free(s->host->ctx, &out);
                    }
                    s->host->buffer_free(s->host->ctx, in);
                }

                static void plugin_on_complete(void *user, ph_request request, ph_status status, int64_t value, ph_buffer *buf) {
                    struct state *s = user;
                    (void)request; (void)value;
                    if (status != PH_OK) {
                        char line[64];
                        int n = snprintf(line, sizeof line, "\(name): a request failed: %s", ph_status_name(status));
                        s->host->log(s->host->ctx, PH_LOG_WARN, line, (size_t)n);
                    }
                    if (buf) s->host->buffer_free(s->host->ctx, buf);
                }

                EXPORT ph_status \(symbol)_stats(void *user, ph_call call) {
                    struct state *s = user;
                    char json[64];
                    int n = snprintf(json, sizeof json, "{\\"answered\\":%llu}", s->answered);
                    return s->host->control_reply(s->host->ctx, call, (const uint8_t *)json, (size_t)n, 0);
                }

                static const ph_plugin plugin = {
                    .size = sizeof(ph_plugin),
                    .abi_version = PH_ABI_VERSION,
                    .name = "\(name)",
                    .version = "0.1.0",
                    .features = PH_FEAT_STREAMS | PH_FEAT_CONTROL,
                    .start = plugin_start,
                    .on_data = plugin_on_data,
                    .on_complete = plugin_on_complete,
                };

                EXPORT const ph_plugin *peerhost_plugin_v1(void) { return &plugin; }

                """),
            File(path: "manifest.toml", contents: """
                # \(name): what the plugin may do (docs/manifest.md). Signing covers every line and the
                # library's bytes: change either and run `make sign` again.
                [plugin]
                name = "\(name)"
                version = "0.1.0"
                library = "lib\(name).so"
                abi = "1"

                [net]
                listen = ["tcp:127.0.0.1:\(port)"]

                [limits]
                memory = "64MiB"
                open_files = 64

                [[control]]
                name = "stats"
                symbol = "\(symbol)_stats"
                signature = "() -> bytes"
                async = true
                description = "chunks answered since start, as JSON"

                """),
            File(path: "dev.toml", contents: """
                # A host for developing \(name): `make run` starts it, `make test` drives it. It trusts only
                # the key in keys/ (made by `make sign`). docs/config.md.
                [host]
                data_dir = "data"
                http = "127.0.0.1:0"

                [security]
                trust = ["keys"]

                [[plugin]]
                name = "\(name)"
                manifest = "manifest.toml"

                """),
            File(path: "Makefile", contents: """
                # \(name): build, check, sign, test and run the plugin (docs/writing-a-plugin.md).
                # PEERHOST is the peerhost CLI; `make PEERHOST=/path/to/peerhost`.
                PEERHOST ?= peerhost
                CC ?= cc
                CFLAGS ?= -std=c11 -O2 -Wall -Wextra -Werror

                lib\(name).so: \(name).c include/peerhost.h
                \t$(CC) $(CFLAGS) -fPIC -shared -fvisibility=hidden -Iinclude -o $@ \(name).c

                check: lib\(name).so
                \t$(PEERHOST) check .

                keys/dev.key:
                \t$(PEERHOST) keygen --out keys/dev

                sign: lib\(name).so keys/dev.key
                \t$(PEERHOST) sign manifest.toml --key keys/dev.key

                test: sign
                \tPEERHOST=$(PEERHOST) ./test.sh

                run: sign
                \t$(PEERHOST) run --config dev.toml

                clean:
                \trm -rf lib\(name).so data

                .PHONY: check sign test run clean

                """),
            File(path: "test.sh", contents: """
                #!/bin/sh
                # Starts a host on dev.toml, sends a line to \(name) and checks the answer and its stats.
                set -eu
                PEERHOST=${PEERHOST:-peerhost}
                cd "$(dirname "$0")"
                rm -rf data
                "$PEERHOST" run --config dev.toml > data.log 2>&1 &
                host=$!
                trap 'kill $host 2>/dev/null; wait $host 2>/dev/null || true' EXIT
                for i in $(seq 1 100); do [ -f data/run.json ] && break; sleep 0.1; done
                [ -f data/run.json ] || { echo "the host did not start:"; cat data.log; exit 1; }
                python3 - <<'PY'
                import socket, sys, time
                for attempt in range(50):
                    try:
                        s = socket.create_connection(("127.0.0.1", \(port)), timeout=5)
                        break
                    except OSError:
                        time.sleep(0.1)
                else:
                    sys.exit("\(name) does not listen on \(port)")
                s.sendall(b"ping\\n")
                got = s.recv(100)
                if got != b"\(name): ping\\n":
                    sys.exit("unexpected answer %r" % got)
                PY
                stats=$("$PEERHOST" ctl \(name) stats --config dev.toml)
                [ "$stats" = '{"answered":1}' ] || { echo "unexpected stats: $stats"; exit 1; }
                echo "ok: \(name) answered and counted"

                """, executable: true),
        ]
    }
}
