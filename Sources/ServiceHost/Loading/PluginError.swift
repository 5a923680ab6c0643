/// Why a plugin file or its sidecar could not be used.
///
/// Every plugin error names the file it is about, so that one log line tells
/// an operator which file to fix and why.
public struct PluginError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What kind of problem this is; stable across releases, for tests and tooling.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case notFound = "not found"
            case unreadable
            case notSharedObject = "not a shared object"
            case truncated
            case incompatibleImage = "incompatible image"
            case loadFailed = "load failed"
            case missingSymbol = "missing symbol"
            case abiMismatch = "ABI mismatch"
            case createFailed = "create failed"
            case duplicateName = "duplicate name"
            case invalidConfiguration = "invalid configuration"
            case insecure
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The file does not exist.
        public static let notFound = Code(.notFound)
        /// The file exists but cannot be read (permissions, a directory, an I/O error).
        public static let unreadable = Code(.unreadable)
        /// The file is not an ELF shared object at all (text, random bytes, an executable).
        public static let notSharedObject = Code(.notSharedObject)
        /// The file is an ELF shared object whose headers or segments reach past its end.
        public static let truncated = Code(.truncated)
        /// The file is a shared object for another class, byte order or machine.
        public static let incompatibleImage = Code(.incompatibleImage)
        /// `dlopen` refused the file (e.g. an unresolved symbol); the reason is `dlerror()`'s.
        public static let loadFailed = Code(.loadFailed)
        /// A required entry point is not exported.
        public static let missingSymbol = Code(.missingSymbol)
        /// `svc_abi_version()` returned a version this host does not implement.
        public static let abiMismatch = Code(.abiMismatch)
        /// `svc_create` returned a negative code.
        public static let createFailed = Code(.createFailed)
        /// Two files map to the same service name.
        public static let duplicateName = Code(.duplicateName)
        /// The sidecar TOML is malformed, has an unknown key or a value of the wrong type.
        public static let invalidConfiguration = Code(.invalidConfiguration)
        /// The file or directory may be written by others than the host's user.
        public static let insecure = Code(.insecure)

        /// The code whose ``description`` is `name`; how a code crosses a process boundary.
        init?(named name: String) {
            guard let base = Base(rawValue: name) else { return nil }
            self.init(base)
        }

        public var description: String { base.rawValue }
    }

    public let code: Code
    /// The path of the file the error is about.
    public let file: String
    /// A sentence saying what is wrong, without the file name.
    public let reason: String

    public init(_ code: Code, file: String, reason: String) {
        self.code = code
        self.file = file
        self.reason = reason
    }

    public var description: String { "\(file): \(reason)" }
}
