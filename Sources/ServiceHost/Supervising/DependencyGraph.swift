/// The `requires` relation between services, as a pure value: who depends on
/// whom, in which order to stop dependents, and what can never start (an
/// unknown requirement, a cycle). No locks, no threads: the manager keeps one
/// and asks it questions under its own lock.
struct DependencyGraph: Sendable, Equatable {
    /// Each service's requirements, by name.
    private(set) var requirements: [String: [String]] = [:]
    /// Names in the order they were added, for stable answers.
    private(set) var order: [String] = []
    /// For each service, the services that require it directly, in the order they were added.
    private var directDependents: [String: [String]] = [:]

    init() {}

    init(_ services: [(name: String, requires: [String])]) {
        for service in services { add(service.name, requires: service.requires) }
    }

    mutating func add(_ name: String, requires: [String]) {
        precondition(requirements[name] == nil, "\(name) is already in the graph")
        requirements[name] = requires
        order.append(name)
        for requirement in requires { directDependents[requirement, default: []].append(name) }
    }

    mutating func remove(_ name: String) {
        guard let requires = requirements.removeValue(forKey: name) else { return }
        order.removeAll { $0 == name }
        for requirement in requires { directDependents[requirement]?.removeAll { $0 == name } }
    }

    func contains(_ name: String) -> Bool { requirements[name] != nil }

    /// The services that require `name` directly.
    func dependents(of name: String) -> [String] { directDependents[name] ?? [] }

    /// The services that require `name`, directly or through others, deepest
    /// first: the order to stop them in.
    func dependentsDeepestFirst(of name: String) -> [String] {
        var ordered: [String] = []
        var seen: Set<String> = [name]
        func visit(_ name: String) {
            for dependent in dependents(of: name) where !seen.contains(dependent) {
                seen.insert(dependent)
                visit(dependent)
                ordered.append(dependent)
            }
        }
        visit(name)
        return ordered
    }

    /// The names `name` requires that are not in the graph.
    func unknownRequirements(of name: String) -> [String] {
        (requirements[name] ?? []).filter { requirements[$0] == nil }
    }

    /// A path of requirements from `name` back to itself, if there is one.
    func cycle(through name: String) -> [String]? {
        var path: [String] = [name]
        var visited: Set<String> = []
        func search(from current: String) -> [String]? {
            for next in requirements[current] ?? [] {
                if next == name { return path + [name] }
                guard !visited.contains(next) else { continue }
                visited.insert(next)
                path.append(next)
                if let found = search(from: next) { return found }
                path.removeLast()
            }
            return nil
        }
        return search(from: name)
    }

    /// Why `name` can never start, if so: an unknown requirement or a cycle.
    func problem(of name: String) -> String? {
        let unknown = unknownRequirements(of: name)
        if !unknown.isEmpty {
            return "requires \(unknown.map { "'\($0)'" }.joined(separator: ", ")), which \(unknown.count == 1 ? "is not a known service" : "are not known services")"
        }
        if let found = cycle(through: name) {
            return "its requirements form a cycle: \(found.joined(separator: " -> "))"
        }
        return nil
    }

    /// Every service that can start (itself and everything it requires
    /// free of problems), each after everything it requires: the order a
    /// cold start brings them up in.
    var startOrder: [String] {
        var ordered: [String] = []
        var verdicts: [String: Bool] = [:]
        @discardableResult
        func place(_ name: String) -> Bool {
            if let verdict = verdicts[name] { return verdict }
            guard problem(of: name) == nil else {
                verdicts[name] = false
                return false
            }
            verdicts[name] = false  // provisional, while its requirements are placed
            let ready = (requirements[name] ?? []).allSatisfy { place($0) }
            verdicts[name] = ready
            if ready { ordered.append(name) }
            return ready
        }
        for name in order { place(name) }
        return ordered
    }

    /// Every service that can start, each before everything it requires: the
    /// order to stop them all in.
    var stopOrder: [String] { startOrder.reversed() }
}
