import ArgumentParser
import ServiceHostControl

/// Where `run` serves its control API, and who may use it.
struct ControlOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "The control API's Unix socket, or 'none' for no control API.",
        discussion: ControlSocketPath.defaultDescription,
        valueName: "path"))
    var controlSocket: String?

    @Option(name: .long, help: ArgumentHelp("A group whose members may read the control API (status, logs); the socket becomes 0660.",
                                            valueName: "group"))
    var controlGroup: String?

    func validate() throws {
        if let controlGroup, PeerAccess.groupID(named: controlGroup) == nil {
            throw ValidationError("'\(controlGroup)' is not a group on this system.")
        }
        if controlSocket == "none", controlGroup != nil {
            throw ValidationError("--control-group needs a control socket; it cannot go with --control-socket none.")
        }
    }

    /// The socket path, or `nil` when the control API is off.
    var path: String? {
        switch controlSocket {
        case "none": nil
        case let path?: path
        case nil: ControlSocketPath.defaultPath()
        }
    }
}
