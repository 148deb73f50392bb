// The operations of IOUringLoop. Each queues one SQE (submitted with the next iteration's single
// io_uring_enter) whose completion goes to `handler.complete` with the given tag. Loop thread only
// (or before run(), see IOUringLoop). None of them allocates on the heap: addresses, paths and
// headers the kernel reads at submission go to the loop's scratch arena.

import CLiburing
#if canImport(Glibc)
import Glibc
#endif

extension IOUringLoop {
    // MARK: TCP

    /// Multishot accept on a listening socket: one completion per connection (result = new fd,
    /// non-blocking, close-on-exec). Re-armed by the loop if the kernel ends it; the handler sees a
    /// final completion only on error or cancellation. Use a distinct (handler, tag) per listener.
    public func accept(_ h: HandlerID, listener fd: Int32, tag: UInt32 = 0) {
        let ud = begin(h, .accept, tag: tag, fd: fd)
        armed[ud] = Armed(fd: fd, group: nil, isAccept: true)
        prepAccept(ud, fd: fd)
    }

    /// Multishot receive into buffers of `group`: each completion carries `bufferID` and
    /// result = bytes (0 = EOF, final). ENOBUFS never reaches the handler: the loop parks the
    /// receive and re-arms it once buffers are committed to the group again. Use a distinct
    /// (handler, tag) per armed receive. `oneShot`: one buffer, one completion, then it ends (an
    /// ENOBUFS still parks and re-arms it): the shaper's way to take exactly one slot per admission.
    public func recv(_ h: HandlerID, fd: Int32, group: BufferGroup, tag: UInt32 = 0, oneShot: Bool = false) {
        let ud = begin(h, .recv, tag: tag, fd: fd)
        cancelledFDs[h.slot]?.remove(fd)
        stoppedRecvs.remove(ud)
        armed[ud] = Armed(fd: fd, group: group, isAccept: false, oneShot: oneShot)
        prepRecvGroup(ud, fd: fd, group: group, oneShot: oneShot)
    }

    /// Stops the multishot receive armed with (h, tag) without touching other operations on its
    /// fd (the shaper pauses a connection this way; the socket buffer keeps what arrives and TCP
    /// pushes back on the peer). It ends with one final completion — -ECANCELED, or a last data
    /// completion without the MORE flag — and is not re-armed by the loop. Call `recv` again for
    /// the same tag only after that final completion.
    public func stopRecv(_ h: HandlerID, tag: UInt32) {
        let slot = check(h)
        let ud = UserData.encode(slot: UInt32(slot), generation: h.generation, op: .recv, tag: tag)
        failParked(slot: slot) { $0.userData == ud }   // parked on ENOBUFS: it ends at once
        guard armed[ud] != nil else { return }
        stoppedRecvs.insert(ud)
        let s = sqe()
        io_uring_prep_cancel64(s, ud, 0)
        io_uring_sqe_set_data64(s, UserData.encode(slot: UInt32(slot), generation: h.generation, op: .cancelRequest, tag: 0))
    }

    /// Single receive into a given buffer.
    public func recv(_ h: HandlerID, fd: Int32, into buffer: UnsafeMutableRawPointer, length: Int, tag: UInt32 = 0) {
        let ud = begin(h, .recv, tag: tag, fd: fd)
        let s = sqe()
        io_uring_prep_recv(s, fd, buffer, length, 0)
        io_uring_sqe_set_data64(s, ud)
    }

    /// Send from a given buffer (MSG_NOSIGNAL). result = bytes sent; a short send is the caller's
    /// to continue. The buffer must stay untouched until the completion.
    public func send(_ h: HandlerID, fd: Int32, from buffer: UnsafeRawPointer, length: Int, tag: UInt32 = 0) {
        let ud = begin(h, .send, tag: tag, fd: fd)
        let s = sqe()
        io_uring_prep_send(s, fd, buffer, length, Int32(MSG_NOSIGNAL))
        io_uring_sqe_set_data64(s, ud)
    }

    /// One gathered send of `buffers` in order (sendmsg, MSG_NOSIGNAL; completes as `.send`,
    /// result = bytes sent, possibly fewer than all). The msghdr and iovec array go to scratch
    /// memory (the kernel copies them at submission: IORING_FEAT_SUBMIT_STABLE); the buffers
    /// themselves must stay untouched until the completion.
    public func sendv(_ h: HandlerID, fd: Int32, buffers: UnsafeBufferPointer<iovec>, tag: UInt32 = 0) {
        let ud = begin(h, .send, tag: tag, fd: fd)
        // One scratch block for both: a second scratch() call may flush and reuse the arena.
        let headerSize = (MemoryLayout<msghdr>.size + 15) & ~15
        let block = scratch(headerSize + MemoryLayout<iovec>.stride * buffers.count)
        let hdr = block.bindMemory(to: msghdr.self, capacity: 1)
        let vectors = (block + headerSize).bindMemory(to: iovec.self, capacity: buffers.count)
        vectors.initialize(from: buffers.baseAddress!, count: buffers.count)
        var m = msghdr()
        m.msg_iov = vectors
        m.msg_iovlen = buffers.count
        hdr.initialize(to: m)
        let s = sqe()
        io_uring_prep_sendmsg(s, fd, hdr, UInt32(MSG_NOSIGNAL))
        io_uring_sqe_set_data64(s, ud)
    }

    /// Connect a (non-blocking) socket; result 0 or -errno (ECONNREFUSED, ETIMEDOUT, …).
    public func connect(_ h: HandlerID, fd: Int32, to address: SocketAddress, tag: UInt32 = 0) {
        let ud = begin(h, .connect, tag: tag, fd: fd)
        let addr = scratch(Int(address.length))
        address.write(to: addr)
        let s = sqe()
        io_uring_prep_connect(s, fd, addr.assumingMemoryBound(to: sockaddr.self), address.length)
        io_uring_sqe_set_data64(s, ud)
    }

    /// shutdown(2) through the ring (how = SHUT_RD/SHUT_WR/SHUT_RDWR). Ends a multishot receive
    /// on that socket with EOF.
    public func shutdown(_ h: HandlerID, fd: Int32, how: Int32 = Int32(SHUT_RDWR), tag: UInt32 = 0) {
        let ud = begin(h, .shutdown, tag: tag, fd: fd)
        let s = sqe()
        io_uring_prep_shutdown(s, fd, how)
        io_uring_sqe_set_data64(s, ud)
    }

    /// close(2) through the ring. Operations still pending on the fd keep their file reference:
    /// cancel them first (`cancel(_:fd:)`) or shut the socket down.
    public func close(_ h: HandlerID, fd: Int32, tag: UInt32 = 0) {
        let ud = begin(h, .close, tag: tag, fd: nil)
        let s = sqe()
        io_uring_prep_close(s, fd)
        io_uring_sqe_set_data64(s, ud)
    }

    // MARK: Timers

    /// A one-shot timer: completes with -ETIME after `nanoseconds`, or -ECANCELED if cancelled.
    /// (handler, tag) names the timer for `cancelTimeout`, so keep it unique while pending.
    public func timeout(_ h: HandlerID, nanoseconds: UInt64, tag: UInt32 = 0) {
        let ud = begin(h, .timeout, tag: tag, fd: nil)
        handlerTimeouts[Int(h.slot)].insert(ud)
        let ts = scratch(MemoryLayout<__kernel_timespec>.size).bindMemory(to: __kernel_timespec.self, capacity: 1)
        let s = sqe()
        ph_prep_timeout_rel(s, ts, nanoseconds)
        io_uring_sqe_set_data64(s, ud)
    }

    /// Cancels the timer (handler, tag); it completes with -ECANCELED (or -ETIME if it already fired).
    public func cancelTimeout(_ h: HandlerID, tag: UInt32) {
        let slot = check(h)
        let target = UserData.encode(slot: UInt32(slot), generation: h.generation, op: .timeout, tag: tag)
        let s = sqe()
        ph_prep_timeout_remove(s, target)
        io_uring_sqe_set_data64(s, UserData.encode(slot: UInt32(slot), generation: h.generation, op: .timeoutRemove, tag: tag))
    }

    // MARK: Files and eventfds

    /// read at `offset` (UInt64.max = current position: eventfds, pipes). result = bytes read.
    /// For an eventfd pass an 8-byte buffer; re-arm from the completion to keep reading it.
    public func read(_ h: HandlerID, fd: Int32, into buffer: UnsafeMutableRawPointer, length: UInt32,
                     offset: UInt64 = .max, tag: UInt32 = 0) {
        let ud = begin(h, .read, tag: tag, fd: fd)
        let s = sqe()
        io_uring_prep_read(s, fd, buffer, length, offset)
        io_uring_sqe_set_data64(s, ud)
    }

    /// write at `offset` (UInt64.max = current position). result = bytes written.
    public func write(_ h: HandlerID, fd: Int32, from buffer: UnsafeRawPointer, length: UInt32,
                      offset: UInt64 = .max, tag: UInt32 = 0) {
        let ud = begin(h, .write, tag: tag, fd: fd)
        let s = sqe()
        io_uring_prep_write(s, fd, buffer, length, offset)
        io_uring_sqe_set_data64(s, ud)
    }

    /// pwritev of `count` buffers at `offset`; completes as `.write`, result = bytes written. The
    /// iovec array is copied into scratch memory (the kernel reads it at submission:
    /// IORING_FEAT_SUBMIT_STABLE), so the caller's array may go away after the call.
    public func writev(_ h: HandlerID, fd: Int32, buffers: UnsafeBufferPointer<iovec>, offset: UInt64, tag: UInt32 = 0) {
        let ud = begin(h, .write, tag: tag, fd: fd)
        let vectors = scratch(MemoryLayout<iovec>.stride * buffers.count, alignment: MemoryLayout<iovec>.alignment)
            .bindMemory(to: iovec.self, capacity: buffers.count)
        vectors.initialize(from: buffers.baseAddress!, count: buffers.count)
        let s = sqe()
        io_uring_prep_writev(s, fd, vectors, UInt32(buffers.count), offset)
        io_uring_sqe_set_data64(s, ud)
    }

    /// fsync (or fdatasync when `dataOnly`).
    public func fsync(_ h: HandlerID, fd: Int32, dataOnly: Bool = false, tag: UInt32 = 0) {
        let ud = begin(h, .fsync, tag: tag, fd: fd)
        let s = sqe()
        io_uring_prep_fsync(s, fd, dataOnly ? UInt32(IORING_FSYNC_DATASYNC) : 0)
        io_uring_sqe_set_data64(s, ud)
    }

    /// openat2 under `directory` with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS (and O_CLOEXEC):
    /// "..", an absolute path or a symlink leading out fails with -EXDEV (or -ELOOP for magic
    /// links). result = the new fd. `path` is copied, so the caller's copy can be plugin memory
    /// that was already validated. Throws only for a path that cannot be a C string.
    public func openBeneath(_ h: HandlerID, directory: Int32, path: String, flags: Int32,
                            mode: UInt32 = 0o644, tag: UInt32 = 0) throws {
        var bytes = Array(path.utf8)
        guard !bytes.contains(0), bytes.count < Int(PATH_MAX) else {
            throw EventLoopError.invalidArgument("path for openat2 contains NUL or exceeds PATH_MAX")
        }
        bytes.append(0)
        try openBeneath(h, directory: directory, pathBytes: bytes, flags: flags, mode: mode, tag: tag)
    }

    /// Same, with the path as raw bytes (no terminating NUL required, none allowed inside).
    public func openBeneath(_ h: HandlerID, directory: Int32, pathBytes: some Collection<UInt8>, flags: Int32,
                            mode: UInt32 = 0o644, tag: UInt32 = 0) throws {
        let pathBytes = Array(pathBytes)     // control path: one copy is fine
        var n = pathBytes.count
        if pathBytes.last == 0 { n -= 1 }
        guard n > 0, n < Int(PATH_MAX), !pathBytes.prefix(n).contains(0) else {
            throw EventLoopError.invalidArgument("path for openat2 is empty, contains NUL or exceeds PATH_MAX")
        }
        let ud = begin(h, .openat, tag: tag, fd: directory)
        let how = scratch(MemoryLayout<open_how>.size).bindMemory(to: open_how.self, capacity: 1)
        let p = scratch(n + 1, alignment: 1)
        var i = 0
        for b in pathBytes.prefix(n) { p.storeBytes(of: b, toByteOffset: i, as: UInt8.self); i += 1 }
        p.storeBytes(of: 0, toByteOffset: n, as: UInt8.self)
        let s = sqe()
        ph_prep_openat2_beneath(s, directory, p.assumingMemoryBound(to: CChar.self), how, flags, mode)
        io_uring_sqe_set_data64(s, ud)
    }

    // MARK: UDP

    /// Receives one datagram into `buffer`; the sender's address is written to `peer` (which must
    /// hold a sockaddr_storage and stay valid until completion; nil = not wanted).
    /// result = datagram bytes. `flags` are recvmsg(2) flags: with MSG_TRUNC the result is the
    /// datagram's real length even when it was longer than `length` (so the caller can tell a
    /// truncated datagram from a full one). Throws when all message contexts are in use.
    public func recvmsg(_ h: HandlerID, fd: Int32, into buffer: UnsafeMutableRawPointer, length: Int,
                        peer: UnsafeMutableRawPointer?, flags: Int32 = 0, tag: UInt32 = 0) throws {
        guard let ctx = freeMessageContexts.popLast() else {
            throw EventLoopError.exhausted("recvmsg contexts (\(freeMessageContexts.capacity) in use)")
        }
        // The tag field carries the context index; the caller's tag is kept in the context.
        let ud = begin(h, .recvmsg, tag: ctx, fd: fd)
        let c = messageContexts + Int(ctx)
        c.pointer(to: \.tag)!.initialize(to: tag)
        c.pointer(to: \.iov)!.initialize(to: iovec(iov_base: buffer, iov_len: length))
        var m = msghdr()
        m.msg_name = peer
        m.msg_namelen = peer == nil ? 0 : socklen_t(MemoryLayout<sockaddr_storage>.size)
        m.msg_iov = c.pointer(to: \.iov)!
        m.msg_iovlen = 1
        c.pointer(to: \.header)!.initialize(to: m)
        let s = sqe()
        io_uring_prep_recvmsg(s, fd, c.pointer(to: \.header)!, UInt32(bitPattern: flags))
        io_uring_sqe_set_data64(s, ud)
    }

    /// Sends one datagram from `buffer` to `address` (copied privately). result = bytes.
    public func sendmsg(_ h: HandlerID, fd: Int32, from buffer: UnsafeRawPointer, length: Int,
                        to address: SocketAddress, tag: UInt32 = 0) {
        let ud = begin(h, .sendmsg, tag: tag, fd: fd)
        // One scratch block for header, iovec and address, as in sendv: a second scratch() call
        // may flush and reuse the arena under the first.
        let headerSize = (MemoryLayout<msghdr>.size + 15) & ~15
        let iovSize = (MemoryLayout<iovec>.size + 15) & ~15
        let block = scratch(headerSize + iovSize + Int(address.length))
        let hdr = block.bindMemory(to: msghdr.self, capacity: 1)
        let iov = (block + headerSize).bindMemory(to: iovec.self, capacity: 1)
        iov.initialize(to: iovec(iov_base: UnsafeMutableRawPointer(mutating: buffer), iov_len: length))
        let addr = block + headerSize + iovSize
        address.write(to: addr)
        var m = msghdr()
        m.msg_name = addr
        m.msg_namelen = address.length
        m.msg_iov = iov
        m.msg_iovlen = 1
        hdr.initialize(to: m)
        let s = sqe()
        io_uring_prep_sendmsg(s, fd, hdr, UInt32(MSG_NOSIGNAL))
        io_uring_sqe_set_data64(s, ud)
    }

    // MARK: Cancellation

    /// Cancels every pending operation of `h` on `fd` (IORING_ASYNC_CANCEL_FD|ALL). Each completes
    /// (usually with -ECANCELED); a multishot receive parked on ENOBUFS completes with -ECANCELED.
    public func cancel(_ h: HandlerID, fd: Int32) {
        let slot = check(h)
        cancelledFDs[UInt32(slot), default: []].insert(fd)
        failParked(slot: slot) { $0.fd == fd }
        let s = sqe()
        ph_prep_cancel_fd_all(s, fd)
        io_uring_sqe_set_data64(s, UserData.encode(slot: UInt32(slot), generation: h.generation, op: .cancelRequest, tag: 0))
    }

    /// Cancels everything `h` has in flight: receives, accepts, sends, connects, timers (file I/O
    /// already running in the kernel cannot be cancelled and simply completes). `whenDrained`
    /// runs on the loop thread once the handler has no outstanding operation — the point at which
    /// memory those operations used (a plugin's pool) may be unmapped. Runs at once if none.
    public func cancelAll(_ h: HandlerID, whenDrained: (() -> Void)? = nil) {
        let slot = check(h)
        if outstanding[slot] == 0 { whenDrained?(); return }
        if let w = whenDrained { drainWaiters[UInt32(slot), default: []].append(w) }
        cancelling[slot] = true
        failParked(slot: slot) { _ in true }
        let marker = UserData.encode(slot: UInt32(slot), generation: h.generation, op: .cancelRequest, tag: 0)
        for fd in handlerFDs[slot] {
            let s = sqe()
            ph_prep_cancel_fd_all(s, fd)
            io_uring_sqe_set_data64(s, marker)
        }
        for t in handlerTimeouts[slot] {
            let s = sqe()
            ph_prep_timeout_remove(s, t)
            io_uring_sqe_set_data64(s, marker)
        }
    }

    /// Parked receives (ENOBUFS, waiting for buffers) of `slot` matching `match` complete with
    /// -ECANCELED in the next reap step.
    private func failParked(slot: Int, _ match: (BufferGroup.Parked) -> Bool) {
        for g in groupsWithParked {
            let removed = g.removeParked { UserData.slot($0.userData) == UInt32(slot) && match($0) }
            for p in removed {
                armed[p.userData] = nil
                synthetic.append((p.userData, -ECANCELED, 0))
            }
        }
        groupsWithParked.removeAll { $0.parkedCount == 0 }
    }

    // MARK: Buffer groups

    /// Creates a provided-buffer group (ring metadata in core-private memory). Add buffers with
    /// `BufferGroup.add` and `commit`.
    public func makeBufferGroup(id: UInt16, entries: UInt32) throws -> BufferGroup {
        guard bufferGroups[id] == nil else { throw EventLoopError.bufferGroup("group \(id) already exists") }
        let g = try BufferGroup(loop: self, groupID: id, entries: entries)
        bufferGroups[id] = g
        return g
    }

    /// Unregisters a group. Every receive using it must have finished (cancel first).
    public func removeBufferGroup(_ group: BufferGroup) {
        _ = io_uring_unregister_buf_ring(ring, Int32(group.groupID))
        bufferGroups[group.groupID] = nil
        group.releaseMemory()
    }
}
