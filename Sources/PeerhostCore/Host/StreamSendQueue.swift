/// The bytes a plugin handed the core for one TCP connection and the kernel has not taken yet, in
/// the order the plugin sent them.
///
/// Invariant (protocols/abi/v1/README.md, "Stream order"): per
/// connection at most one send operation is in the kernel at a time, and it covers the first
/// `inFlight` entries of this queue. A completion of `n` bytes consumes exactly the first `n` bytes
/// of the queue; a short send leaves the rest of its entry at the head, where the next send starts.
/// So bytes leave in the plugin's order whatever the kernel accepts per call.
///
/// Why one send at a time, and not several in flight: io_uring starts every SQE on its own, and a
/// send that the socket takes only part of finishes later (poll-driven retry or io-wq) while the
/// next SQE may already have gone out — that is how the core reordered bytes before. Linked SQEs keep
/// the order only with MSG_WAITALL, and then one slow peer holds its whole chain, and a failure
/// cancels the rest of the link with errors to untangle. One sendmsg gathering the queue's head (up
/// to `maxGather` slots) costs one submission per batch, like SwiftNIO's pending-writes writev.
struct StreamSendQueue {
    struct Entry {
        var slot: UInt32
        var offset: UInt32
        var remaining: UInt32
        /// The bytes the plugin handed over with this send (what SEND_DONE gives back).
        let length: UInt32
        /// Taken from the shaper's buckets already (an entry is charged once, even when it is sent
        /// in several parts).
        var charged = false
    }

    /// Most slots in one gathered send (a 16 KiB slot each: 1 MiB).
    static let maxGather = 64

    private var entries: [Entry] = []
    private var head = 0
    /// Bytes handed over and not yet taken by the kernel.
    private(set) var queuedBytes = 0
    /// Entries (from the head) covered by the send in flight; 0 when none is.
    private(set) var inFlight = 0

    var isEmpty: Bool { head == entries.count }
    var count: Int { entries.count - head }
    var sendInFlight: Bool { inFlight > 0 }

    mutating func append(slot: UInt32, offset: UInt32, length: UInt32) {
        entries.append(Entry(slot: slot, offset: offset, remaining: length, length: length))
        queuedBytes += Int(length)
    }

    /// The head entry (nil when empty).
    var first: Entry? { isEmpty ? nil : entries[head] }

    /// Marks the head entry as charged to the shaper.
    mutating func markFirstCharged() { if !isEmpty { entries[head].charged = true } }

    /// Starts a send of up to `limit` entries from the head: `body` gets each entry's (slot,
    /// offset, length) in order and builds the iovec array. Returns how many entries it covers.
    mutating func startSend(limit: Int, _ body: (_ index: Int, _ entry: Entry) -> Void) -> Int {
        precondition(inFlight == 0, "one send in flight per connection")
        let n = min(limit, count, Self.maxGather)
        for i in 0..<n { body(i, entries[head + i]) }
        inFlight = n
        return n
    }

    /// The send in flight took `sent` bytes (0 or more): the entries it finished leave the queue,
    /// oldest first, through `finished`; a partly sent entry stays at the head with the rest.
    mutating func sendCompleted(sent: Int, finished: (Entry) -> Void) {
        var left = sent
        inFlight = 0
        while left > 0, !isEmpty {
            let take = min(left, Int(entries[head].remaining))
            left -= take
            queuedBytes -= take
            if take == Int(entries[head].remaining) {
                let done = entries[head]
                head += 1
                finished(done)
            } else {
                entries[head].offset += UInt32(take)
                entries[head].remaining -= UInt32(take)
            }
        }
        compact()
    }

    /// Removes every entry that no send covers (all of them when none is in flight), oldest first:
    /// an aborted connection gives its slots back; entries in flight stay until their completion.
    mutating func removeUnsent(_ removed: (Entry) -> Void) {
        let keep = head + inFlight
        for i in keep..<entries.count {
            queuedBytes -= Int(entries[i].remaining)
            removed(entries[i])
        }
        entries.removeSubrange(keep...)
        compact()
    }

    private mutating func compact() {
        if head == entries.count {
            entries.removeAll(keepingCapacity: entries.capacity <= 256)
            head = 0
        } else if head >= 64, head * 2 >= entries.count {
            entries.removeFirst(head)
            head = 0
        }
    }
}
