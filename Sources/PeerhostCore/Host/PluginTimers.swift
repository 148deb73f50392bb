/// A plugin's pending timers, kept in user space: a binary min-heap of deadlines behind one
/// io_uring timeout per session (PluginSession arms it for `earliest`).
///
/// Why not one io_uring timeout per timer: the kernel keeps a session's timeouts in one list, and
/// removing them one by one at teardown searches it each time — 80,000 removes took 59 s on this
/// kernel, with the loop thread stuck in the kernel and every plugin frozen. Here a teardown is
/// dropping two collections, and a cancel is O(1) (the heap entry is skipped when it comes up).
struct PluginTimers {
    private struct Entry {
        var deadline: UInt64
        var id: UInt64
    }

    private var heap: [Entry] = []
    /// Live timers: id → deadline. A heap entry whose id is missing here (or has another deadline:
    /// an id set again) was cancelled and is skipped.
    private var live: [UInt64: UInt64] = [:]

    var count: Int { live.count }
    var isEmpty: Bool { live.isEmpty }

    /// Sets (or resets) timer `id` to fire at `deadline` (monotonic ns).
    mutating func set(_ id: UInt64, deadline: UInt64) {
        live[id] = deadline
        heap.append(Entry(deadline: deadline, id: id))
        siftUp(heap.count - 1)
        // Cancelled entries wait in the heap until they reach the top; keep them from piling up.
        if heap.count > 64, heap.count > 2 * live.count { rebuild() }
    }

    /// Returns true when the timer was pending.
    @discardableResult
    mutating func cancel(_ id: UInt64) -> Bool { live.removeValue(forKey: id) != nil }

    /// The earliest live deadline, dropping cancelled entries on the way.
    mutating func earliest() -> UInt64? {
        while let top = heap.first {
            if live[top.id] == top.deadline { return top.deadline }
            popTop()
        }
        return nil
    }

    /// Removes and returns, in deadline order, every live timer due at `now`.
    mutating func popDue(now: UInt64) -> [UInt64] {
        var due: [UInt64] = []
        while let deadline = earliest(), deadline <= now {
            let id = heap[0].id
            popTop()
            live[id] = nil
            due.append(id)
        }
        return due
    }

    mutating func removeAll() {
        heap = []
        live = [:]
    }

    private mutating func popTop() {
        let last = heap.removeLast()
        guard !heap.isEmpty else { return }
        heap[0] = last
        siftDown(0)
    }

    private mutating func rebuild() {
        heap.removeAll { live[$0.id] != $0.deadline }
        for i in stride(from: heap.count / 2 - 1, through: 0, by: -1) { siftDown(i) }
    }

    private mutating func siftUp(_ start: Int) {
        var i = start
        while i > 0 {
            let parent = (i - 1) / 2
            guard heap[i].deadline < heap[parent].deadline else { return }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var i = start
        while true {
            let l = 2 * i + 1, r = l + 1
            var smallest = i
            if l < heap.count, heap[l].deadline < heap[smallest].deadline { smallest = l }
            if r < heap.count, heap[r].deadline < heap[smallest].deadline { smallest = r }
            guard smallest != i else { return }
            heap.swapAt(i, smallest)
            i = smallest
        }
    }
}
