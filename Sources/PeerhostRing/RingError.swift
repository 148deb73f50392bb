/// Errors of the shared-memory transport. Each names what was wrong and, for system calls, errno.
public enum RingError: Error, Equatable, CustomStringConvertible {
    case badGeometry(String)
    case system(call: String, errno: Int32)
    case badHeader(String)

    public var description: String {
        switch self {
        case .badGeometry(let why): return "bad ring geometry: \(why)"
        case .system(let call, let errno): return "\(call) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case .badHeader(let why): return "bad region header: \(why)"
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
