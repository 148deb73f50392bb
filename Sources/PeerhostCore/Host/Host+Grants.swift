// `peerhost ctl host grant PLUGIN DIR [rw|ro]` and `peerhost ctl host revoke PLUGIN DIR`: directory
// grants the operator adds at run time (OperatorGrants.swift, docs/grants.md). Order of a grant:
// check the directory (off the loop), commit it to the store (durable before we say yes), write the
// audit line, then apply it to the plugin's live session on the loop thread so the next file_open
// may use it without a restart.

import Foundation

extension Host {
    func grantMethod(_ method: String, _ words: [String]) async throws -> ControlValue {
        let usage = method == "grant" ? "grant PLUGIN DIR [rw|ro]" : "revoke PLUGIN DIR"
        guard method == "grant" ? (2...3).contains(words.count) : words.count == 2 else {
            throw HostMethodError(description: "\(method) takes \(usage), got \(words.count) argument(s)")
        }
        let plugin = words[0]
        guard config.plugins.contains(where: { $0.name == plugin }) else {
            throw ControlCallError.unknownPlugin(plugin, known: config.plugins.map(\.name))
        }
        let store = try await grantStore()
        if method == "revoke" {
            let directory = "/" + words[1].split(separator: "/").joined(separator: "/")
            let existed = await Self.storeCall(store, .delete(key: OperatorGrants.key(plugin: plugin, directory: directory)))
            switch existed {
            case .done(true): break
            case .done(false):
                throw HostMethodError(description: "\(plugin) has no operator grant for \(directory) (see `peerhost status` or `peerhost audit \(plugin)`)")
            default:
                throw HostMethodError(description: "revoke \(directory): the store failed: \(existed)")
            }
            _ = await onLoop { [self] in supervisor(named: plugin)?.revokeOperatorGrant(directory: directory) }
            audit.record(plugin: plugin, pid: 0, action: "revoke", object: directory, decision: .allowed, reason: "operator")
            logger.info("operator grant revoked", metadata: ["plugin": "\(plugin)", "directory": "\(directory)"])
            return .bytes(Array("revoked \(plugin): \(directory)".utf8))
        }
        let directory = try OperatorGrants.validate(directory: words[1], dataDirectory: config.host.dataDirectory)
        let writable = try words.count == 3 ? OperatorGrants.parseMode(words[2]) : true
        let grant = OperatorGrant(plugin: plugin, directory: directory, writable: writable)
        let existing: Int = await onLoop { [self] in supervisor(named: plugin)?.operatorGrants.count ?? 0 }
        if existing >= OperatorGrants.perPluginLimit {
            throw HostMethodError(description: "\(plugin) already has \(existing) operator grants (limit \(OperatorGrants.perPluginLimit)); revoke some first")
        }
        let result = await Self.storeCall(store, .put(key: OperatorGrants.key(grant), value: Array(grant.mode.utf8)))
        guard case .done = result else {
            throw HostMethodError(description: "grant \(directory): the store refused it: \(result)")
        }
        audit.record(plugin: plugin, pid: 0, action: "grant", object: directory, decision: .allowed,
                     reason: "operator (mode \(grant.mode))")
        logger.info("operator grant added", metadata: ["plugin": "\(plugin)", "directory": "\(directory)", "mode": "\(grant.mode)"])
        let problem: String? = await onLoop { [self] in supervisor(named: plugin)?.applyOperatorGrant(grant) }
        var text = "granted \(plugin): \(directory) \(grant.mode)"
        if let problem { text += " (stored; the running plugin could not open it now: \(problem))" }
        return .bytes(Array(text.utf8))
    }

    /// The store that keeps operator grants. A host whose config gave no plugin a kv grant has not
    /// opened one yet: the first grant creates it (off the loop thread).
    private func grantStore() async throws -> KVStore {
        let current: Result<KVStore, StoreError>? = await onLoop { [self] in store }
        switch current {
        case .success(let kv)?:
            return kv
        case .failure(let error)?:
            throw HostMethodError(description: "operator grants are kept in the store, which is unusable: \(error)")
        case nil:
            let opened: Result<KVStore, StoreError>
            do throws(StoreError) {
                opened = .success(try KVStore.open(dataDirectory: config.host.dataDirectory))
            } catch {
                opened = .failure(error)
            }
            let kept: Result<KVStore, StoreError> = await onLoop { [self] in
                if let already = store { return already }   // a concurrent grant opened it first
                store = opened
                return opened
            }
            switch kept {
            case .success(let kv): return kv
            case .failure(let error): throw HostMethodError(description: "operator grants are kept in the store, which cannot be opened: \(error)")
            }
        }
    }

    private static func storeCall(_ store: KVStore, _ op: KVOperation) async -> KVResult {
        await withCheckedContinuation { continuation in
            store.submit(plugin: OperatorGrants.namespace, quota: OperatorGrants.quota, op) { continuation.resume(returning: $0) }
        }
    }
}
