import ServiceLifecycle

/// A scheduler is a swift-service-lifecycle `Service`, so that a program can
/// run it in a `ServiceGroup` beside, say, an HTTP server, and have one
/// graceful shutdown (SIGTERM, through the group) stop both.
extension Scheduler: Service {
    /// Starts every service, runs until the group's graceful shutdown (or
    /// until cancelled), then shuts down: every service stopped, dependents
    /// first, the worker processes ended, the runtime directory removed.
    public func run() async throws {
        startAll()
        // Cancelled or shut down gracefully: the services are stopped the same way.
        try? await gracefulShutdown()
        await shutdown()
    }
}
