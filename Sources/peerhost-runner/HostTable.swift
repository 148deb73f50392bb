import CPeerhostABI
import CPeerhostShim
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The ph_host table handed to the plugin: C function pointers (closures that capture nothing) that
/// recover the Runner from ctx and turn each call into a TX descriptor (ph_ring.h message types).
enum HostTable {
    static func make(ctx: UnsafeMutableRawPointer) -> ph_host {
        var h = ph_host()
        h.size = UInt32(MemoryLayout<ph_host>.size)
        h.abi_version = ABI.version
        h.features = ABI.allFeatures
        h.ctx = ctx

        h.log = { ctx, level, msg, len in
            let r = Runner.from(ctx)
            guard let msg, len > 0 else { return }
            let n = min(len, Int(r.region.slotSize))
            guard r.backlog.count - r.backlogHead < 1024, let slot = r.allocSlot() else { r.droppedLogs += 1; return }
            UnsafeMutableRawPointer(r.region.slotPointer(slot)).copyMemory(from: msg, byteCount: n)
            var d = ph_desc()
            d.type = UInt16(PH_MSG_LOG.rawValue)
            d.slot = slot
            d.length = UInt32(n)
            d.arg = Int64(level.rawValue)
            r.pushInternal(d)   // log is void: it may not fail, so it queues behind a full ring
        }
        h.metric_add = { ctx, name, len, value in
            let r = Runner.from(ctx)
            guard let name, len > 0, len <= 48 else { return PH_EINVAL }
            let rc = r.textRequest(PH_MSG_METRIC, name, len, kind: .slotOnly, arg: Int64(bitPattern: value.bitPattern))
            if rc > 0 { r.pending.removeValue(forKey: UInt64(rc)) }  // no COMPLETE for metrics
            return rc > 0 ? PH_OK : ph_status(rawValue: Int32(rc))
        }
        h.buffer_alloc = { ctx, out in
            let r = Runner.from(ctx)
            guard let out else { return PH_EINVAL }
            guard let slot = r.allocSlot() else { return PH_ENOMEM }
            out.pointee = r.buffer(slot: slot, offset: 0, length: 0)
            return PH_OK
        }
        h.buffer_free = { ctx, buf in
            guard let buf else { return }
            Runner.from(ctx).releaseSlot(buf.pointee.slot)
        }
        h.listen = { ctx, addr, len in
            let r = Runner.from(ctx)
            guard r.declared(PH_FEAT_STREAMS, for: "listen") else { return Int64(PH_ENOTSUP.rawValue) }
            return r.textRequest(PH_MSG_LISTEN, addr, len, kind: .slotOnly, opens: .conn)
        }
        h.connect = { ctx, addr, len in
            let r = Runner.from(ctx)
            guard r.declared(PH_FEAT_STREAMS, for: "connect") else { return Int64(PH_ENOTSUP.rawValue) }
            return r.textRequest(PH_MSG_CONNECT, addr, len, kind: .slotOnly, opens: .conn)
        }
        h.send = { ctx, conn, buf in
            let r = Runner.from(ctx)
            guard r.declared(PH_FEAT_STREAMS, for: "send") else { return PH_ENOTSUP }
            guard r.liveConns.contains(conn) else { return PH_ENOTCONN }
            guard let b = buf?.pointee, b.slot < r.region.slotCount,
                  UInt64(b.offset) + UInt64(b.length) <= UInt64(r.region.slotSize) else { return PH_EINVAL }
            var d = ph_desc()
            d.type = UInt16(PH_MSG_SEND.rawValue)
            d.id = conn
            d.slot = b.slot
            d.offset = b.offset
            d.length = b.length
            return r.send(d)
        }
        // close serves streams, listeners and UDP sockets alike: no feature gate, the id decides.
        h.close = { ctx, conn in Runner.from(ctx).end(conn, with: PH_MSG_CLOSE) }
        h.udp_bind = { ctx, addr, len in
            let r = Runner.from(ctx)
            guard r.declared(PH_FEAT_DATAGRAMS, for: "udp_bind") else { return Int64(PH_ENOTSUP.rawValue) }
            return r.textRequest(PH_MSG_UDP_BIND, addr, len, kind: .slotOnly, opens: .conn)
        }
        h.udp_send = { ctx, sock, to, toLen, buf in
            let r = Runner.from(ctx)
            guard r.declared(PH_FEAT_DATAGRAMS, for: "udp_send") else { return PH_ENOTSUP }
            guard r.liveConns.contains(sock) else { return PH_ENOTCONN }
            guard let b = buf?.pointee, let to, toLen > 0, b.slot < r.region.slotCount,
                  UInt64(b.offset) + UInt64(b.length) + UInt64(toLen) <= UInt64(r.region.slotSize) else { return PH_EINVAL }
            // ABI 1.2: refusals the grants decide alone come back here (UDPSendRules.swift).
            if let rules = r.udpRules {
                switch rules.judge(String(decoding: UnsafeRawBufferPointer(start: to, count: toLen), as: UTF8.self)) {
                case .malformed: return PH_EINVAL
                case .denied(let dest): r.reportUDPRefusal(socket: sock, dest); return PH_EDENIED
                case .allowed: break
                }
            }
            guard r.canSubmit() else { r.markBlocked(sock); return PH_EAGAIN }
            // The peer address goes at the very end of the slot: [capacity - len, capacity).
            UnsafeMutableRawPointer(r.region.slotPointer(b.slot) + Int(r.region.slotSize) - toLen).copyMemory(from: to, byteCount: toLen)
            var d = ph_desc()
            d.type = UInt16(PH_MSG_UDP_SEND.rawValue)
            d.id = sock
            d.slot = b.slot
            d.offset = b.offset
            d.length = b.length
            d.arg = Int64(toLen)
            return r.simple(d, blockOn: sock)
        }
        h.resolve = { ctx, name, len in
            let r = Runner.from(ctx)
            guard r.declared(PH_FEAT_RESOLVE, for: "resolve") else { return Int64(PH_ENOTSUP.rawValue) }
            return r.textRequest(PH_MSG_RESOLVE, name, len, kind: .resultInSlot)
        }
        h.timer = { ctx, delay, tag in
            let r = Runner.from(ctx)
            guard r.declared(PH_FEAT_TIMERS, for: "timer") else { return Int64(PH_ENOTSUP.rawValue) }
            if r.timerBudget > 0, r.timerTags.count >= r.timerBudget { return Int64(PH_EQUOTA.rawValue) }
            let id = r.nextTimer
            var d = ph_desc()
            d.type = UInt16(PH_MSG_TIMER_SET.rawValue)
            d.id = UInt64(id)
            d.arg = Int64(bitPattern: delay)
            d.arg2 = tag
            d.slot = PH_NO_SLOT
            let s = r.simple(d)
            guard s == PH_OK else { return Int64(s.rawValue) }
            r.nextTimer += 1
            r.timerTags[id] = tag   // on_timer gets the tag from here: the core need not echo it
            return id
        }
        h.timer_cancel = { ctx, id in
            let r = Runner.from(ctx)
            guard r.declared(PH_FEAT_TIMERS, for: "timer_cancel") else { return PH_ENOTSUP }
            guard r.timerTags.removeValue(forKey: id) != nil else { return PH_EINVAL }
            var d = ph_desc()
            d.type = UInt16(PH_MSG_TIMER_CANCEL.rawValue)
            d.id = UInt64(id)
            d.slot = PH_NO_SLOT
            // Even if the cancel must wait for ring space, the timer is already dead to the plugin.
            r.pushInternal(d)
            return PH_OK
        }
        h.file_open = { ctx, path, len, flags in
            let r = Runner.from(ctx)
            guard r.declared(PH_FEAT_FILES, for: "file_open") else { return Int64(PH_ENOTSUP.rawValue) }
            return r.textRequest(PH_MSG_FILE_OPEN, path, len, kind: .slotOnly, arg: Int64(flags), opens: .file)
        }
        h.file_read = { ctx, file, offset, buf in
            let r = Runner.from(ctx)
            guard r.declared(PH_FEAT_FILES, for: "file_read") else { return Int64(PH_ENOTSUP.rawValue) }
            guard buf != nil, r.openFiles.contains(file) else { return Int64(PH_EINVAL.rawValue) }
            return r.plainRequest(PH_MSG_FILE_READ, id: file, arg: Int64(bitPattern: offset), buf: buf, kind: .pluginBuffer)
        }
        h.file_write = { ctx, file, offset, buf in
            let r = Runner.from(ctx)
            guard r.declared(PH_FEAT_FILES, for: "file_write") else { return Int64(PH_ENOTSUP.rawValue) }
            guard buf != nil, r.openFiles.contains(file) else { return Int64(PH_EINVAL.rawValue) }
            return r.plainRequest(PH_MSG_FILE_WRITE, id: file, arg: Int64(bitPattern: offset), buf: buf, kind: .slotOnly)
        }
        h.file_sync = { ctx, file in
            let r = Runner.from(ctx)
            guard r.declared(PH_FEAT_FILES, for: "file_sync") else { return Int64(PH_ENOTSUP.rawValue) }
            guard r.openFiles.contains(file) else { return Int64(PH_EINVAL.rawValue) }
            return r.plainRequest(PH_MSG_FILE_SYNC, id: file, arg: 0, buf: nil, kind: .slotOnly)
        }
        h.file_close = { ctx, file in
            let r = Runner.from(ctx)
            guard r.declared(PH_FEAT_FILES, for: "file_close") else { return PH_ENOTSUP }
            guard r.openFiles.contains(file) else { return PH_EINVAL }
            var d = ph_desc()
            d.type = UInt16(PH_MSG_FILE_CLOSE.rawValue)
            d.id = file
            d.slot = PH_NO_SLOT
            let status = r.simple(d)
            if status == PH_OK { r.openFiles.remove(file) }
            return status
        }
        h.kv_get = { ctx, key, len in
            let r = Runner.from(ctx)
            guard r.declared(PH_FEAT_KV, for: "kv_get") else { return Int64(PH_ENOTSUP.rawValue) }
            guard len > 0 else { return Int64(PH_EINVAL.rawValue) }
            return r.textRequest(PH_MSG_KV_GET, key, len, kind: .resultInSlot)
        }
        h.kv_put = { ctx, key, klen, value, vlen in
            let r = Runner.from(ctx)
            guard r.declared(PH_FEAT_KV, for: "kv_put") else { return Int64(PH_ENOTSUP.rawValue) }
            guard klen > 0 else { return Int64(PH_EINVAL.rawValue) }
            return r.textRequest(PH_MSG_KV_PUT, key, klen, kind: .slotOnly, arg: Int64(klen),
                                 extra: value.map { UnsafeRawPointer($0) }, extraLen: vlen)
        }
        h.kv_delete = { ctx, key, len in
            let r = Runner.from(ctx)
            guard r.declared(PH_FEAT_KV, for: "kv_delete") else { return Int64(PH_ENOTSUP.rawValue) }
            guard len > 0 else { return Int64(PH_EINVAL.rawValue) }
            return r.textRequest(PH_MSG_KV_DELETE, key, len, kind: .slotOnly)
        }
        h.kv_scan = { ctx, prefix, len, limit in
            let r = Runner.from(ctx)
            guard r.declared(PH_FEAT_KV, for: "kv_scan") else { return Int64(PH_ENOTSUP.rawValue) }
            return r.textRequest(PH_MSG_KV_SCAN, prefix, len, kind: .resultInSlot, arg: Int64(limit))
        }
        // ABI 1.2: prefix then start in one slot; arg2 = prefix length + 1 tells the core where the
        // prefix ends (0, as kv_scan sends, means the whole slot is the prefix).
        h.kv_scan_from = { ctx, prefix, prefixLen, start, startLen, limit in
            let r = Runner.from(ctx)
            guard r.declared(PH_FEAT_KV, for: "kv_scan_from") else { return Int64(PH_ENOTSUP.rawValue) }
            guard prefixLen == 0 || prefix != nil, startLen == 0 || start != nil else { return Int64(PH_EINVAL.rawValue) }
            return r.textRequest(PH_MSG_KV_SCAN, prefix, prefixLen, kind: .resultInSlot, arg: Int64(limit),
                                 arg2: UInt64(prefixLen) + 1, extra: start.map { UnsafeRawPointer($0) }, extraLen: startLen)
        }
        // ABI 1.2: an answer to an async control method, written to the control socket at once
        // (the core's reader thread takes it; it is not on the data path).
        h.control_reply = { ctx, call, data, len, flags in
            let r = Runner.from(ctx)
            guard r.declared(PH_FEAT_CONTROL, for: "control_reply") else { return PH_ENOTSUP }
            guard r.openCalls.contains(call) else { return PH_ENOTCONN }
            guard len <= ControlChannel.maxFrame / 2, len == 0 || data != nil, flags & ~(PH_REPLY_MORE | PH_REPLY_ERROR) == 0 else { return PH_EINVAL }
            let bytes = len == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: len))
            let more = flags & PH_REPLY_MORE != 0 && flags & PH_REPLY_ERROR == 0
            var frame: [String: Any] = ["type": "reply", "id": NSNumber(value: call), "more": more]
            if flags & PH_REPLY_ERROR != 0 {
                frame["ok"] = false
                frame["error"] = String(decoding: bytes, as: UTF8.self)
            } else {
                frame["ok"] = true
                frame["value"] = ControlValue.bytes(bytes).json
            }
            if !more { r.openCalls.remove(call) }
            do { try r.control.writeFrame(frame) } catch { r.openCalls.remove(call); return PH_EIO }
            return PH_OK
        }
        h.conn_set_rate = { ctx, conn, up, down in
            let r = Runner.from(ctx)
            guard r.declared(PH_FEAT_SHAPING, for: "conn_set_rate") else { return PH_ENOTSUP }
            guard r.liveConns.contains(conn) else { return PH_ENOTCONN }
            var d = ph_desc()
            d.type = UInt16(PH_MSG_CONN_RATE.rawValue)
            d.id = conn
            d.arg = Int64(bitPattern: up)
            d.arg2 = down
            d.slot = PH_NO_SLOT
            return r.simple(d, blockOn: conn)
        }
        h.conn_set_weight = { ctx, conn, weight in
            let r = Runner.from(ctx)
            guard r.declared(PH_FEAT_SHAPING, for: "conn_set_weight") else { return PH_ENOTSUP }
            guard r.liveConns.contains(conn) else { return PH_ENOTCONN }
            guard (1...1000).contains(weight) else { return PH_EINVAL }
            var d = ph_desc()
            d.type = UInt16(PH_MSG_CONN_WEIGHT.rawValue)
            d.id = conn
            d.arg = Int64(weight)
            d.slot = PH_NO_SLOT
            return r.simple(d, blockOn: conn)
        }
        // ABI 1.1. The id rides in the descriptor itself (from `request` on, PH_PEER_ID_MAX bytes),
        // so there is no slot to own and nothing to complete.
        h.conn_set_peer = { ctx, conn, id, len in
            let r = Runner.from(ctx)
            guard r.declared(PH_FEAT_PEER_TAGS, for: "conn_set_peer") else { return PH_ENOTSUP }
            guard r.liveConns.contains(conn) else { return PH_ENOTCONN }
            guard let id, len > 0, len <= Int(PH_PEER_ID_MAX) else { return PH_EINVAL }
            var d = ph_desc()
            d.type = UInt16(PH_MSG_CONN_PEER.rawValue)
            d.id = conn
            d.slot = PH_NO_SLOT
            d.length = UInt32(len)
            withUnsafeMutableBytes(of: &d) { raw in
                (raw.baseAddress! + MemoryLayout<ph_desc>.offset(of: \ph_desc.request)!).copyMemory(from: id, byteCount: len)
            }
            return r.simple(d, blockOn: conn)
        }
        // ABI 1.2.
        h.conn_reset = { ctx, conn in Runner.from(ctx).end(conn, with: PH_MSG_RESET) }
        return h
    }
}
