// `peerhost ctl host set-rate PLUGIN|global UP DOWN`: run-time bandwidth limits (Shaper.swift).

import Foundation

/// A bad `ctl host` call; the text is what the operator reads.
public struct HostMethodError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

extension Host {
    static let hostMethods = ["set-rate", "grant", "revoke", "reload"]

    func hostMethod(_ method: String, args: [ControlArgument]) async throws -> ControlValue {
        let words: [String] = args.map {
            switch $0 {
            case .text(let t): return t
            case .file(let literal, _), .unreadableFile(let literal, _): return literal
            }
        }
        switch method {
        case "set-rate": return try await setRate(words)
        case "grant", "revoke": return try await grantMethod(method, words)   // Host+Grants.swift
        case "reload": return try await reload(words)                        // Host+Reload.swift
        default:
            throw HostMethodError(description: "the host has no method '\(method)' (methods: \(Self.hostMethods.joined(separator: ", ")))")
        }
    }

    private func setRate(_ words: [String]) async throws -> ControlValue {
        guard words.count == 3 else {
            throw HostMethodError(description: "set-rate takes 3 arguments (PLUGIN|global UP DOWN, e.g. set-rate echo-c 10MiB 0), got \(words.count)")
        }
        let target = words[0]
        let up = try Self.parseRate(words[1], position: 2)
        let down = try Self.parseRate(words[2], position: 3)
        if target != "global" {
            guard let plugin = config.plugins.first(where: { $0.name == target }) else {
                throw ControlCallError.unknownPlugin(target, known: ["global"] + config.plugins.map(\.name))
            }
            // Like the config, the operator may lower a manifest's limit, never raise it.
            for (name, value, granted) in [("up", up, plugin.manifest.limits.bandwidthUp), ("down", down, plugin.manifest.limits.bandwidthDown)] {
                if let granted, granted != 0, value == 0 || value > granted {
                    throw HostMethodError(description: "set-rate \(target): \(name) \(Self.formatRate(value)) exceeds the manifest's [limits] bandwidth.\(name) (\(Self.formatRate(granted)))")
                }
            }
        }
        let result: String? = await onLoop { [self] in
            let now = monotonicNanoseconds()
            if target == "global" {
                shaper.setGlobal(up: up, down: down, now: now)
            } else {
                guard let node = shaper.plugins[target] else { return nil }
                node.setLimit(up: up, down: down, now: now)
            }
            return "\(target): up \(Self.formatRate(up)), down \(Self.formatRate(down))"
        }
        guard let result else {
            throw ControlCallError.pluginUnavailable(plugin: target, reason: "disabled in config")
        }
        audit.record(plugin: target == "global" ? "host" : target, pid: 0, action: "set-rate", object: target,
                     decision: .allowed, reason: "operator set up \(Self.formatRate(up)), down \(Self.formatRate(down))")
        logger.info("bandwidth limit changed", metadata: ["target": "\(target)", "up": "\(up)", "down": "\(down)"])
        return .bytes(Array(result.utf8))
    }

    /// "10MiB" or "10MiB/s" (bytes per second), "0" = unlimited.
    static func parseRate(_ text: String, position: Int) throws -> UInt64 {
        var body = text
        if body.hasSuffix("/s") { body.removeLast(2) }
        do {
            return try ByteSize.parse(body)
        } catch {
            throw HostMethodError(description: "set-rate argument \(position) '\(text)': \(error.description) per second, or 0 for unlimited")
        }
    }

    static func formatRate(_ bytes: UInt64) -> String { bytes == 0 ? "unlimited" : ByteSize.format(bytes) + "/s" }
}
