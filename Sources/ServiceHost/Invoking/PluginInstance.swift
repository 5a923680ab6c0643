/// One created service: a plugin image, the context its `svc_create`
/// returned, and the argument memory for calling into it.
///
/// Holds the image and the binding alive until `stop()` has returned, so
/// neither can be released while the plugin may still use them.
final class PluginInstance: @unchecked Sendable {
    let image: PluginImage
    private let binding: HostBinding
    private let arguments: CallArguments
    private let entryPoints: PluginEntryPoints
    private var stopped = false

    /// Calls `svc_create`; returns the instance, or the plugin's negative code.
    static func create(image: PluginImage, binding: HostBinding) -> Result<PluginInstance, CreateFailure> {
        let instance = PluginInstance(image: image, binding: binding)
        let code = image.entryPoints.create(instance.arguments)
        guard code >= 0 else {
            instance.stopped = true  // svc_stop is never called after a failed create
            return .failure(CreateFailure(code: code))
        }
        return .success(instance)
    }

    struct CreateFailure: Error { let code: Int32 }

    private init(image: PluginImage, binding: HostBinding) {
        self.image = image
        self.binding = binding
        self.entryPoints = image.entryPoints
        self.arguments = CallArguments(host: binding.host)
    }

    /// The hot path's handle on `svc_loop`; valid while this instance lives.
    var loopCall: LoopCall { entryPoints.loopCall(arguments) }

    /// Calls `svc_stop` once; later calls do nothing.
    func stop() {
        guard !stopped else { return }
        stopped = true
        entryPoints.stop(arguments)
    }
}
