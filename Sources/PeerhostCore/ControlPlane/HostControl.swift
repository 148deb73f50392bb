// The seam between the control plane (HTTP /status, the Unix control socket) and the host that
// owns the plugins (Contract 4). The host implements it; tests use a fake.

/// What the control plane asks of the running host.
public protocol HostControl: Sendable {
    /// The current status document (served on /status and to `peerhost status`).
    func statusDocument() async -> StatusDocument

    /// Calls control method `method` of `plugin` with the operator's arguments.
    ///
    /// The host looks up the plugin's manifest and converts with
    /// `PluginManifest.prepareControlCall(method:arguments:)` (which gives the CLI's exact error
    /// texts), sends the call to the runner and returns its result. Throw `ControlCallError` for
    /// errors the operator should read verbatim; any other error is shown by its description.
    func callControl(plugin: String, method: String, args: [ControlArgument]) async throws -> ControlValue

    /// The same for a caller that can stream: answers of an async method (ABI 1.2) that are not
    /// its last go to `partial` as they come; `partial` returns false once the caller has gone,
    /// which cancels the call.
    func callControl(plugin: String, method: String, args: [ControlArgument],
                     partial: @escaping @Sendable (ControlValue) -> Bool) async throws -> ControlValue
}

extension HostControl {
    /// A host that cannot stream gives the last answer only.
    public func callControl(plugin: String, method: String, args: [ControlArgument],
                            partial: @escaping @Sendable (ControlValue) -> Bool) async throws -> ControlValue {
        try await callControl(plugin: plugin, method: method, args: args)
    }
}

/// The version reported in /status and run.json.
public enum PeerhostVersion {
    public static let current = "0.1.0"
}
