import SwiftCompilerPlugin
import SwiftDiagnostics
import SwiftSyntax
import SwiftSyntaxMacros

/// `#servicePlugin(Greeter.self, version: "1.0.0")`: the plugin ABI's five
/// C entry points for a ``ServicePlugin`` type, each a one-line call into
/// the SDK (`ServicePluginExport`), exported with `@c` where the compiler
/// has it (SE-0495, Swift 6.3) and `@_cdecl` before. The author's code holds
/// no pointer, `Unmanaged` or attribute of its own.
public struct ServicePluginMacro: DeclarationMacro {
    public static func expansion(of node: some FreestandingMacroExpansionSyntax,
                                 in context: some MacroExpansionContext) throws -> [DeclSyntax] {
        let arguments = Array(node.arguments)
        guard let first = arguments.first, first.label == nil,
              let member = first.expression.as(MemberAccessExprSyntax.self), member.declName.baseName.text == "self",
              let base = member.base else {
            throw MacroError("#servicePlugin takes the plugin's type first, as in #servicePlugin(Greeter.self)")
        }
        let type = base.trimmedDescription
        var version = "nil"
        for argument in arguments.dropFirst() {
            guard argument.label?.text == "version",
                  let literal = argument.expression.as(StringLiteralExprSyntax.self),
                  literal.segments.allSatisfy({ $0.is(StringSegmentSyntax.self) }) else {
                throw MacroError("#servicePlugin's version must be a plain string literal, as in version: \"1.0.0\"")
            }
            version = literal.trimmedDescription
        }
        let entryPoints: [(cName: String, declaration: String)] = [
            ("svc_abi_version", "func __servicePluginABIVersion() -> UInt32 { ServicePluginExport.abiVersion() }"),
            ("svc_create", """
                func __servicePluginCreate(_ host: ServicePluginExport.HostPointer?, _ instance: ServicePluginExport.InstanceSlot?) -> Int32 {
                    ServicePluginExport.create(\(type).self, host: host, into: instance)
                }
                """),
            ("svc_loop", """
                func __servicePluginLoop(_ instance: ServicePluginExport.Instance?) -> Int32 {
                    ServicePluginExport.loop(\(type).self, instance)
                }
                """),
            ("svc_stop", """
                func __servicePluginStop(_ instance: ServicePluginExport.Instance?) {
                    ServicePluginExport.stop(\(type).self, instance)
                }
                """),
            ("svc_plugin_version", """
                func __servicePluginVersion() -> ServicePluginExport.VersionPointer? {
                    ServicePluginExport.version(\(version))
                }
                """),
        ]
        return entryPoints.map { cName, declaration in
            """
            #if hasAttribute(c)
            @c(\(raw: cName)) public \(raw: declaration)
            #else
            @_cdecl("\(raw: cName)") public \(raw: declaration)
            #endif
            """
        }
    }
}

struct MacroError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

@main
struct ServiceHostPluginMacros: CompilerPlugin {
    let providingMacros: [any Macro.Type] = [ServicePluginMacro.self]
}
