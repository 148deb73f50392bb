// peerhost-runner: the sandboxed process that hosts one plugin (DESIGN.md "The runner's start-up
// sequence", team/PLAN.md Contracts 1–3). Single-threaded on purpose: no Dispatch, no Swift
// concurrency, no Foundation threads, so a small seccomp allowlist fits it later.
RunnerMain.run(CommandLine.arguments)
