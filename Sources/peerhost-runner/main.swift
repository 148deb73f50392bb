// peerhost-runner: the sandboxed process that hosts one plugin (DESIGN.md "The runner's start-up
// sequence", team/PLAN.md Contracts 1–3). Single-threaded on purpose: no Dispatch, no Swift
// concurrency, no Foundation threads, so a small seccomp allowlist fits it later.
import CPeerhostShim

// Not CommandLine.arguments: the Swift runtime reads those from /proc/self/cmdline, and the
// runner's private root has no /proc. The C shim keeps what glibc passed to the constructors.
let argv = (0..<Int(ph_saved_argc())).map { String(cString: ph_saved_argv()![$0]!) }
RunnerMain.run(argv)
