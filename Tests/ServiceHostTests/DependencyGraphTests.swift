import Testing
@testable import ServiceHost

/// The dependency graph as a pure value: no scheduler, threads or sleeps.
@Suite("Dependency graph")
struct DependencyGraphTests {
    private let chain = DependencyGraph([
        (name: "App", requires: ["Cache", "Database"]),
        (name: "Cache", requires: ["Database"]),
        (name: "Database", requires: []),
        (name: "Other", requires: []),
    ])

    @Test func dependentsComeDeepestFirst() {
        #expect(chain.dependents(of: "Database") == ["App", "Cache"])
        #expect(chain.dependentsDeepestFirst(of: "Database") == ["App", "Cache"])
        #expect(chain.dependentsDeepestFirst(of: "Cache") == ["App"])
        #expect(chain.dependentsDeepestFirst(of: "Other").isEmpty)
    }

    @Test func startOrderPutsRequirementsFirstAndStopOrderIsItsReverse() {
        #expect(chain.startOrder == ["Database", "Cache", "App", "Other"])
        #expect(chain.stopOrder == ["Other", "App", "Cache", "Database"])
    }

    @Test func unknownNamesAndCyclesAreProblemsAndKeepTheirDependentsOutOfTheStartOrder() {
        let graph = DependencyGraph([
            (name: "A", requires: ["B"]), (name: "B", requires: ["C"]), (name: "C", requires: ["A"]),
            (name: "Lost", requires: ["Ghost", "Spook"]), (name: "Follower", requires: ["Lost"]),
            (name: "Free", requires: []),
        ])
        #expect(graph.problem(of: "A") == "its requirements form a cycle: A -> B -> C -> A")
        #expect(graph.problem(of: "C") == "its requirements form a cycle: C -> A -> B -> C")
        #expect(graph.problem(of: "Lost") == "requires 'Ghost', 'Spook', which are not known services")
        #expect(graph.problem(of: "Follower") == nil)
        #expect(graph.problem(of: "Free") == nil)
        #expect(graph.startOrder == ["Free"])
    }

    @Test func removingAServiceForgetsItAsADependent() {
        var graph = chain
        graph.remove("Cache")
        #expect(graph.dependents(of: "Database") == ["App"])
        #expect(graph.order == ["App", "Database", "Other"])
        #expect(graph.problem(of: "App") == "requires 'Cache', which is not a known service")
    }
}
