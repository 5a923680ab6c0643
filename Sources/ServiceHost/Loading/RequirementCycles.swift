/// The problems in a set of `requires` lists that `check` reports without
/// starting anything: names that no service has, and cycles.
enum RequirementCycles {
    /// For each service that requires a name no service has: (service, missing name).
    static func unknown(in requires: [String: [String]]) -> [(service: String, missing: String)] {
        requires.keys.sorted().flatMap { service in
            (requires[service] ?? []).filter { requires[$0] == nil }.map { (service, $0) }
        }
    }

    /// Each cycle once, as the names along it starting from its smallest name.
    static func cycles(in requires: [String: [String]]) -> [[String]] {
        var found: Set<[String]> = []
        var state: [String: Int] = [:]  // 1 on the path, 2 done
        var path: [String] = []
        func visit(_ name: String) {
            state[name] = 1
            path.append(name)
            for next in (requires[name] ?? []) where requires[next] != nil {
                if state[next] == 1, let start = path.firstIndex(of: next) {
                    var cycle = Array(path[start...])
                    let smallest = cycle.indices.min { cycle[$0] < cycle[$1] }!
                    cycle = Array(cycle[smallest...] + cycle[..<smallest])
                    found.insert(cycle)
                } else if state[next] == nil {
                    visit(next)
                }
            }
            path.removeLast()
            state[name] = 2
        }
        for name in requires.keys.sorted() where state[name] == nil { visit(name) }
        return found.sorted { $0.joined(separator: " ") < $1.joined(separator: " ") }
    }
}
