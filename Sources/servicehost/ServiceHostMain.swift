import ArgumentParser
import Foundation
import ServiceHost

#if canImport(Glibc)
import Glibc
#endif

@main
enum ServiceHostMain {
    static func main() async {
        // Before anything else, while the process is still single-threaded: a
        // `servicehost` started as the fork server of another one never returns from here.
        ForkServer.runIfRequested()
        do {
            var command = try ServiceHostCommand.parseAsRoot()
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            // A usage error exits 2, as LSB tools and supervisorctl do (ArgumentParser's own is 64).
            if ServiceHostCommand.exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((ServiceHostCommand.fullMessage(for: error) + "\n").utf8))
                exit(2)
            }
            ServiceHostCommand.exit(withError: error)
        }
    }
}
