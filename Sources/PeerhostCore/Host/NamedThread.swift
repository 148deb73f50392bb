// Threads the kernel can name: top -H, perf and /proc/<pid>/task/*/comm show who spends the CPU.
import Foundation
import CPeerhostShim

/// Starts a thread running `body` under `name` (at most 15 bytes reach the kernel). Foundation's
/// `Thread.name` stays inside Foundation on Linux, so without prctl(PR_SET_NAME) a new thread keeps
/// the name of the one that started it: the host's loop showed up as a dispatch worker,
/// "oot.default-qos".
func startNamedThread(_ name: String, _ body: @escaping @Sendable () -> Void) {
    let thread = Thread {
        _ = ph_set_name(name)
        body()
    }
    thread.name = name
    thread.start()
}
