// `peerhost ctl host reload PLUGIN`: one plugin's new bytes and manifest, while the others run.

import Foundation

extension Host {
    /// Re-reads the config file the host started from (for this plugin's manifest and its config
    /// table as they are now), loads and verifies the library's bytes as at start, and only then
    /// stops the running plugin and starts the new one; a refusal leaves the old one running.
    /// What stays the host's: its data dir, tuning and the operator's grants; only this plugin is
    /// reloaded (other changes to the file wait for a restart of the host).
    func reload(_ words: [String]) async throws -> ControlValue {
        guard words.count == 1 else {
            throw HostMethodError(description: "reload takes 1 argument (PLUGIN, e.g. reload echo-c), got \(words.count)")
        }
        let name = words[0]
        guard config.plugins.contains(where: { $0.name == name }) else {
            throw ControlCallError.unknownPlugin(name, known: config.plugins.map(\.name))
        }
        let fresh: HostConfig
        do {
            fresh = try HostConfig.load(origin: config.origin, currentDirectory: startDirectory)
        } catch {
            throw HostMethodError(description: "reload \(name): the config no longer loads, nothing changed: \(error)")
        }
        guard var found = fresh.plugins.first(where: { $0.name == name }) else {
            throw HostMethodError(description: "reload \(name): the config no longer has a plugin \(name); nothing changed")
        }
        guard found.enabled else {
            throw HostMethodError(description: "reload \(name): the config now disables it; restart the host to stop it")
        }
        found.dataDirectory = config.host.dataDirectory   // the host's, whatever the file says now
        let plugin = found
        let outcome: Result<String, HostMethodError> = await withCheckedContinuation { continuation in
            loop.execute { [self] in
                let prepared = prepare(plugin)
                guard case .success(let ready) = prepared else {
                    if case .failure(let failure) = prepared {
                        continuation.resume(returning: .failure(HostMethodError(description: "reload \(name) refused, the running plugin keeps running: \(failure)")))
                    }
                    return
                }
                guard let old = supervisor(named: name) else {
                    ready.0.close()
                    continuation.resume(returning: .failure(HostMethodError(description: "reload \(name): it is not configured in this host")))
                    return
                }
                audit.record(plugin: name, pid: 0, action: "reload", object: plugin.manifest.path, decision: .allowed,
                             reason: "version \(old.config.manifest.version) → \(plugin.manifest.version), sha256 \(ready.0.sha256)")
                old.stop { [self] in
                    // On the loop thread, once the old runner is gone and its sockets are closed.
                    let rate = plugin.effectiveBandwidth
                    let shaping = old.shaping ?? shaper.addPlugin(name, weight: plugin.weight, up: rate.up, down: rate.down, now: monotonicNanoseconds())
                    let supervisor = makeSupervisor(plugin, .success(ready), shaping: shaping, grants: old.operatorGrants)
                    supervisor.inheritCounters(from: old)
                    replaceSupervisor(named: name, with: supervisor)
                    old.library?.close()   // the old bytes' sealed memfd: no incarnation copies them again
                    supervisor.start()
                    logger.info("plugin reloaded", metadata: ["plugin": "\(name)", "version": "\(plugin.manifest.version)",
                                                              "sha256": "\(ready.0.sha256)"])
                    continuation.resume(returning: .success("reloaded \(name) \(plugin.manifest.version) (sha256 \(ready.0.sha256.prefix(16))…)"))
                }
            }
        }
        return .bytes(Array(try outcome.get().utf8))
    }
}
