import ArgumentParser
import ServiceHost

@main
enum ServiceHostMain {
    static func main() async {
        // Before anything else, while the process is still single-threaded: a
        // `servicehost` started as the fork server of another one never returns from here.
        ForkServer.runIfRequested()
        await ServiceHostCommand.main()
    }
}
