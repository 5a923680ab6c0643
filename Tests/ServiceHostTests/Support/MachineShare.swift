import Testing

/// Keeps two kinds of test apart: those that put an upper bound on how long
/// the host took (a ratio of a configured timeout) and those that load the
/// machine on purpose (hundreds of reloads, crashes or threads). On a 2-core
/// machine a timer of the first kind, run beside several of the second, was
/// seen firing seconds late (load average 19), so a bound about the host's
/// own behaviour failed for a reason outside it. Tests of one kind run
/// together; a kind waits while the other runs, and once it waits no new
/// test of the running kind is let in, so neither starves.
actor MachineShare {
    enum Kind { case timed, loading }

    static let shared = MachineShare()

    private var running: Kind?
    private var inside = 0
    private var waiting: [(kind: Kind, resume: CheckedContinuation<Void, Never>)] = []

    func enter(_ kind: Kind) async {
        if waiting.isEmpty, running == nil || running == kind {
            running = kind
            inside += 1
            return
        }
        await withCheckedContinuation { waiting.append((kind, $0)) }
    }

    func leave() {
        inside -= 1
        guard inside == 0 else { return }
        running = nil
        guard let next = waiting.first?.kind else { return }
        // Lets in every waiter of the next kind, in one batch.
        running = next
        let admitted = waiting.filter { $0.kind == next }
        waiting.removeAll { $0.kind == next }
        inside = admitted.count
        for waiter in admitted { waiter.resume.resume() }
    }
}

/// A test trait running the test under ``MachineShare``.
struct MachineShareTrait: TestTrait, TestScoping {
    let kind: MachineShare.Kind

    /// Each case enters on its own; entering for the whole function as well
    /// would enter twice and could wait on itself.
    func scopeProvider(for test: Test, testCase: Test.Case?) -> Self? {
        testCase == nil ? nil : self
    }

    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        await MachineShare.shared.enter(kind)
        do {
            try await function()
        } catch {
            await MachineShare.shared.leave()
            throw error
        }
        await MachineShare.shared.leave()
    }
}

extension Trait where Self == MachineShareTrait {
    /// The test bounds how long the host took: never run beside a ``loadsTheMachine`` test.
    static var timed: Self { MachineShareTrait(kind: .timed) }
    /// The test loads the machine on purpose: never run beside a ``timed`` test.
    static var loadsTheMachine: Self { MachineShareTrait(kind: .loading) }
}
