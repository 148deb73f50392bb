import BitTorrentProtocol

/// The block requests sent to one peer and not answered yet, in the order sent. A peer answers
/// in that order, so the block that arrives is nearly always the first: taking it off moves a
/// head index, where an array's remove(at: 0) shifted up to max_queue_depth (256) requests down
/// by one for every 16 KiB block received.
struct RequestQueue: Sequence {
    private var items: [BlockRequest] = []
    private var head = 0

    var count: Int { items.count - head }
    var isEmpty: Bool { head == items.count }

    mutating func append(_ r: BlockRequest) { items.append(r) }

    /// Takes `r` off the queue; false when it is not on it (never asked for, or cancelled).
    mutating func remove(_ r: BlockRequest) -> Bool {
        guard let i = items[head...].firstIndex(of: r) else { return false }
        if i == head { head += 1 } else { items.remove(at: i) }
        if head == items.count {
            removeAll()
        } else if head >= 64 && head >= items.count - head {
            // Compact once the answered prefix outgrows what is left: amortized O(1) per removal.
            items.removeFirst(head)
            head = 0
        }
        return true
    }

    mutating func removeAll() {
        items.removeAll(keepingCapacity: true)
        head = 0
    }

    func makeIterator() -> ArraySlice<BlockRequest>.Iterator { items[head...].makeIterator() }
}
