@preconcurrency import CFFI
import CPeerhostABI
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Control methods (Contract 3): parse the signature, check the arguments against it, call the
/// exported symbol through libffi, copy the result. Every failure is a CallError whose text goes
/// back in the result frame; nothing here may crash the runner.
struct CallError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

enum ArgType: String { case i64, f64, bool, string, bytes }
enum ResultType: String { case i64, f64, bytes }

struct Signature: Equatable {
    let args: [ArgType]
    let result: ResultType

    /// "(" [type {"," type}] ")" "->" rtype, whitespace anywhere.
    static func parse(_ text: String) throws(CallError) -> Signature {
        let s = text.filter { !$0.isWhitespace }
        guard s.hasPrefix("("), let close = s.firstIndex(of: ")") else {
            throw CallError(message: "bad signature \"\(text)\": expected \"(types) -> type\"")
        }
        let inner = s[s.index(after: s.startIndex)..<close]
        let rest = s[s.index(after: close)...]
        guard rest.hasPrefix("->") else { throw CallError(message: "bad signature \"\(text)\": missing \"->\"") }
        let rname = String(rest.dropFirst(2))
        guard let r = ResultType(rawValue: rname) else {
            throw CallError(message: "bad signature \"\(text)\": result type \"\(rname)\" is not i64, f64 or bytes")
        }
        var args: [ArgType] = []
        if !inner.isEmpty {
            for part in inner.split(separator: ",", omittingEmptySubsequences: false) {
                guard let t = ArgType(rawValue: String(part)) else {
                    throw CallError(message: "bad signature \"\(text)\": argument type \"\(part)\" is not i64, f64, bool, string or bytes")
                }
                args.append(t)
            }
        }
        return Signature(args: args, result: r)
    }
}

/// Our own ffi_type descriptions (rather than libffi's mutable globals, which Swift 6 flags):
/// libffi reads only size, alignment and the type code for scalars.
enum FFITypes {
    nonisolated(unsafe) static let sint64 = make(8, 8, FFI_TYPE_SINT64)
    nonisolated(unsafe) static let sint32 = make(4, 4, FFI_TYPE_SINT32)
    nonisolated(unsafe) static let uint64 = make(8, 8, FFI_TYPE_UINT64)
    nonisolated(unsafe) static let double = make(8, 8, FFI_TYPE_DOUBLE)
    nonisolated(unsafe) static let uint8 = make(1, 1, FFI_TYPE_UINT8)      // _Bool
    nonisolated(unsafe) static let pointer = make(8, 8, FFI_TYPE_POINTER)
    /// ph_bytes { uint8_t *data; size_t len; } returned by value (two INTEGER eightbytes: rax:rdx).
    nonisolated(unsafe) static let bytes: UnsafeMutablePointer<ffi_type> = {
        let elems = UnsafeMutablePointer<UnsafeMutablePointer<ffi_type>?>.allocate(capacity: 3)
        elems[0] = pointer
        elems[1] = uint64
        elems[2] = nil
        let t = UnsafeMutablePointer<ffi_type>.allocate(capacity: 1)
        t.initialize(to: ffi_type(size: 0, alignment: 0, type: UInt16(FFI_TYPE_STRUCT), elements: elems))
        return t
    }()

    static func make(_ size: Int, _ align: UInt16, _ code: Int32) -> UnsafeMutablePointer<ffi_type> {
        let t = UnsafeMutablePointer<ffi_type>.allocate(capacity: 1)
        t.initialize(to: ffi_type(size: size, alignment: align, type: UInt16(code), elements: nil))
        return t
    }
}

enum ControlValue {
    case i64(Int64), f64(Double), bytes([UInt8])

    var json: [String: Any] {
        switch self {
        case .i64(let v): return ["i64": NSNumber(value: v)]
        case .f64(let v): return ["f64": NSNumber(value: v)]
        case .bytes(let b): return ["bytes": Data(b).base64EncodedString()]
        }
    }
}

/// JSON true/false decode as a boolean NSNumber (objCType "c"); plain numbers `is Bool` too on
/// Linux (NSNumber bridging), so the type code is the only reliable test.
func isJSONBool(_ n: NSNumber) -> Bool { String(cString: n.objCType) == "c" }

/// An integer-typed number as is; a floating one only when it is integral and in range.
func exactInt64(_ n: NSNumber) -> Int64? {
    switch String(cString: n.objCType) {
    case "d", "f": return Int64(exactly: n.doubleValue)
    case "Q": return n.uint64Value <= UInt64(Int64.max) ? Int64(n.uint64Value) : nil
    default: return n.int64Value
    }
}

struct ControlCaller {
    let plugin: LoadedPlugin

    /// Executes one call frame's content. `args` is the decoded JSON array. `async`: an ABI 1.2
    /// async method, called as `ph_status fn(void *user, ph_call call, ARGS…)`; its ph_status comes
    /// back as `.i64` and its answers later, through control_reply.
    func call(symbol: String, signature: String, args: [Any],
              async: (user: UnsafeMutableRawPointer?, call: UInt64)? = nil) throws(CallError) -> ControlValue {
        let sig = try Signature.parse(signature)
        guard args.count == sig.args.count else {
            throw CallError(message: "\(symbol) takes \(sig.args.count) argument(s), got \(args.count)")
        }
        guard let sym = dlsym(plugin.handle, symbol) else {
            throw CallError(message: "symbol \(symbol) not found in \((plugin.libraryPath as NSString).lastPathComponent)")
        }

        // All argument storage lives until after ffi_call; freed by `defer`.
        var storage: [UnsafeMutableRawPointer] = []
        defer { for p in storage { p.deallocate() } }
        func cell<T>(_ v: T) -> UnsafeMutableRawPointer {
            let p = UnsafeMutableRawPointer.allocate(byteCount: max(MemoryLayout<T>.size, 8), alignment: 16)
            p.initializeMemory(as: T.self, repeating: v, count: 1)
            storage.append(p)
            return p
        }
        var types: [UnsafeMutablePointer<ffi_type>?] = []
        var values: [UnsafeMutableRawPointer?] = []
        if let async {
            types.append(FFITypes.pointer); values.append(cell(async.user))
            types.append(FFITypes.uint64); values.append(cell(async.call))
        }

        for (i, (type, raw)) in zip(sig.args, args).enumerated() {
            let n = i + 1
            guard let obj = raw as? [String: Any], obj.count == 1, let (key, value) = obj.first else {
                throw CallError(message: "argument \(n) of \(symbol): expected an object like {\"\(type.rawValue)\": …}")
            }
            guard key == type.rawValue else {
                throw CallError(message: "argument \(n) of \(symbol): expected \(type.rawValue), got \(key)")
            }
            switch type {
            case .i64:
                guard let num = value as? NSNumber, !isJSONBool(num), let v = exactInt64(num) else {
                    throw CallError(message: "argument \(n) of \(symbol): \(value) is not an i64")
                }
                types.append(FFITypes.sint64); values.append(cell(v))
            case .f64:
                guard let num = value as? NSNumber, !isJSONBool(num) else {
                    throw CallError(message: "argument \(n) of \(symbol): \(value) is not an f64")
                }
                types.append(FFITypes.double); values.append(cell(num.doubleValue))
            case .bool:
                guard let num = value as? NSNumber, isJSONBool(num) else {
                    throw CallError(message: "argument \(n) of \(symbol): \(value) is not a bool")
                }
                types.append(FFITypes.uint8); values.append(cell(UInt8(num.boolValue ? 1 : 0)))
            case .string:
                guard let s = value as? String else {
                    throw CallError(message: "argument \(n) of \(symbol): expected a JSON string")
                }
                let utf8 = Array(s.utf8)
                guard !utf8.contains(0) else {
                    throw CallError(message: "argument \(n) of \(symbol): a string argument may not contain NUL (use bytes)")
                }
                let cstr = UnsafeMutableRawPointer.allocate(byteCount: utf8.count + 1, alignment: 1)
                storage.append(cstr)
                cstr.copyMemory(from: utf8, byteCount: utf8.count)
                cstr.storeBytes(of: 0, toByteOffset: utf8.count, as: UInt8.self)
                types.append(FFITypes.pointer); values.append(cell(cstr))
            case .bytes:
                guard let s = value as? String, let data = Data(base64Encoded: s) else {
                    throw CallError(message: "argument \(n) of \(symbol): bytes must be base64 text")
                }
                let buf = UnsafeMutableRawPointer.allocate(byteCount: max(data.count, 1), alignment: 16)
                storage.append(buf)
                data.copyBytes(to: buf.assumingMemoryBound(to: UInt8.self), count: data.count)
                types.append(FFITypes.pointer); values.append(cell(buf))
                types.append(FFITypes.uint64); values.append(cell(UInt64(data.count)))
            }
        }

        let rtype: UnsafeMutablePointer<ffi_type>
        switch sig.result {
        case _ where async != nil: rtype = FFITypes.sint32   // ph_status
        case .i64: rtype = FFITypes.sint64
        case .f64: rtype = FFITypes.double
        case .bytes: rtype = FFITypes.bytes
        }
        var cif = ffi_cif()
        let status = types.withUnsafeMutableBufferPointer { tp in
            ffi_prep_cif(&cif, FFI_DEFAULT_ABI, UInt32(tp.count), rtype, tp.baseAddress)
        }
        guard status == FFI_OK else { throw CallError(message: "ffi_prep_cif for \(symbol) \(signature) failed (\(status.rawValue))") }

        let ret = UnsafeMutableRawPointer.allocate(byteCount: 32, alignment: 16)
        ret.initializeMemory(as: UInt8.self, repeating: 0, count: 32)
        storage.append(ret)
        let fn = unsafeBitCast(sym, to: (@convention(c) () -> Void).self)
        values.withUnsafeMutableBufferPointer { vp in
            ffi_call(&cif, fn, ret, vp.baseAddress)
        }

        if async != nil { return .i64(Int64(ret.load(as: Int32.self))) }
        switch sig.result {
        case .i64: return .i64(ret.load(as: Int64.self))
        case .f64: return .f64(ret.load(as: Double.self))
        case .bytes:
            let b = ret.load(as: ph_bytes.self)
            guard let data = b.data else { return .bytes([]) }
            // Copy at once, then give the memory back the way the plugin allocated it.
            defer { if let freeResult = plugin.descriptor.free_result { freeResult(data) } else { free(data) } }
            guard b.len <= ControlChannel.maxFrame / 2 else {
                throw CallError(message: "\(symbol) returned \(b.len) bytes; the limit is \(ControlChannel.maxFrame / 2)")
            }
            let copy = Array(UnsafeBufferPointer(start: data, count: b.len))
            return .bytes(copy)
        }
    }
}
