import CPeerhostShim

/// One side's view of a ring: the mapped control block and descriptors, plus private copies of its
/// own index and a cache of the other side's (ph_ring_view). Use it from one thread.
///
/// Producer: `put` any number of descriptors, then `publish` once per batch, then `consumerWantsWakeup`
/// to decide on an eventfd write. Consumer: `ready`, `copy(at:)` each entry into private memory,
/// `consume`; before sleeping, `prepareSleep` (0 → safe to block on the eventfd), then `awake`.
public struct RingView: @unchecked Sendable {
    @usableFromInline var view = ph_ring_view()
    public let isProducer: Bool

    init(ctl: UnsafeMutableRawPointer, descs: UnsafeMutableRawPointer, entries: UInt32, producer: Bool) {
        isProducer = producer
        ph_ring_view_init(&view, ctl, descs, entries, producer ? 1 : 0)
    }

    public var entries: UInt32 { view.entries }

    // MARK: Producer

    /// Free entries (refreshing the consumer's index only when the cache says full).
    @inlinable public mutating func space() -> UInt32 { ph_ring_space(&view) }

    /// Writes one descriptor (not yet visible). False when the ring is full.
    @inlinable @discardableResult
    public mutating func put(_ desc: ph_desc) -> Bool {
        var d = desc
        return ph_ring_put(&view, &d) != 0
    }

    /// Makes every descriptor written so far visible to the consumer (release store).
    @inlinable public mutating func publish() { ph_ring_publish(&view) }

    /// After `publish`: did the consumer ask to be woken? (full fence, then the flag)
    @inlinable public mutating func consumerWantsWakeup() -> Bool { ph_ring_consumer_wants_wakeup(&view) != 0 }

    /// Before sleeping on a full ring: announces the wait and re-checks; returns free entries (0 →
    /// safe to sleep: the consumer writes the eventfd after it releases entries). Then `spaceAwake`.
    @inlinable public mutating func prepareWaitForSpace() -> UInt32 { ph_ring_prepare_wait_space(&view) }

    /// Clears the need-space flag after waking.
    @inlinable public mutating func spaceAwake() { ph_ring_space_awake(&view) }

    /// Entries written but not yet consumed, as the producer last saw them.
    public var pending: UInt32 { view.local &- view.cached }

    // MARK: Consumer

    /// Entries ready to read; nil when the producer's index is more than `entries` ahead — only a
    /// corrupt or hostile producer does that.
    @inlinable public mutating func ready() -> UInt32? {
        let n = ph_ring_ready(&view)
        return n == UInt32.max ? nil : n
    }

    /// Copies entry `i` (0-based from the next unconsumed one) into private memory. Validate the
    /// copy, never the shared entry: the producer may rewrite it at any time.
    @inlinable public mutating func copy(at i: UInt32) -> ph_desc {
        var d = ph_desc()
        ph_ring_peek_copy(&view, i, &d)
        return d
    }

    /// Gives `n` consumed entries back to the producer.
    @inlinable public mutating func consume(_ n: UInt32) { ph_ring_consume(&view, n) }

    /// After `consume`: did the producer ask to be told about room? (fence, flag; cleared when set)
    @inlinable public mutating func producerWantsSpace() -> Bool { ph_ring_producer_wants_space(&view) != 0 }

    /// Announces sleep and re-checks; returns entries that arrived meanwhile (nil: corrupt index).
    @inlinable public mutating func prepareSleep() -> UInt32? {
        let n = ph_ring_prepare_sleep(&view)
        return n == UInt32.max ? nil : n
    }

    /// Clears the need-wakeup flag after waking.
    @inlinable public mutating func awake() { ph_ring_awake(&view) }
}

extension ph_desc {
    /// A descriptor of `type` with no slot.
    @inlinable
    public init(type: ph_msg_type, id: UInt64 = 0, request: UInt64 = 0, arg: Int64 = 0,
                slot: UInt32 = PH_NO_SLOT, offset: UInt32 = 0, length: UInt32 = 0, status: Int16 = 0, arg2: UInt64 = 0) {
        self.init()
        self.type = UInt16(type.rawValue)
        self.status = status
        self.slot = slot
        self.offset = offset
        self.length = length
        self.id = id
        self.request = request
        self.arg = arg
        self.arg2 = arg2
    }

    /// The type, or nil for a number outside ph_msg_type.
    public var messageType: ph_msg_type { ph_msg_type(rawValue: UInt32(type)) }
}
