// peerhost-bench: servers for `make bench` (bench/run.sh drives them with the C load generator).
//   peerhost-bench uring-echo PORT [BUFSIZE] [NBUFS]   direct io_uring echo on the core's loop (no
//                                                     plugin): the baseline the plugin path is held to
//   peerhost-bench nio-echo PORT                      one-thread SwiftNIO echo server, for comparison
// Both listen on 127.0.0.1 only and print one "ready" line on stderr.

import NIOCore
import NIOPosix
import PeerhostCore
#if canImport(Glibc)
import Glibc
#endif

func fail(_ message: String) -> Never {
    var m = "peerhost-bench: " + message + "\n"
    m.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(1)
}
func say(_ message: String) {
    var m = message + "\n"
    m.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

let args = CommandLine.arguments
if args.count >= 2, args[1] == "kv" {   // the key-value store against raw SQLite (KVBench.swift)
    runKVBench(Array(args.dropFirst(2)))
    exit(0)
}
guard args.count >= 3, let port = UInt16(args[2]) else {
    fail("usage: peerhost-bench uring-echo PORT [BUFSIZE] [NBUFS] | nio-echo PORT | kv DIR [SECONDS]")
}

switch args[1] {
case "uring-echo":
    let bufferSize = args.count > 3 ? Int(args[3]) ?? 16384 : 16384
    let bufferCount = args.count > 4 ? Int(args[4]) ?? 2048 : 2048
    do {
        let loop = try IOUringLoop()
        let server = try DirectEchoServer(loop: loop, address: SocketAddress(ip: "127.0.0.1", port: port),
                                          bufferSize: bufferSize, bufferCount: bufferCount)
        say("uring-echo ready on \(server.address) (\(loop.setupMode), bufsz=\(bufferSize) nbufs=\(bufferCount))")
        loop.run()
        _ = server
    } catch {
        fail("\(error)")
    }

case "nio-echo":
    final class EchoHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            context.write(data, promise: nil)
        }
        func channelReadComplete(context: ChannelHandlerContext) {
            context.flush()
        }
        func errorCaught(context: ChannelHandlerContext, error: Error) {
            context.close(promise: nil)
        }
    }
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let bootstrap = ServerBootstrap(group: group)
        .serverChannelOption(.backlog, value: 4096)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(EchoHandler())
            }
        }
    do {
        let channel = try bootstrap.bind(host: "127.0.0.1", port: Int(port)).wait()
        say("nio-echo ready on 127.0.0.1:\(port) (1 thread)")
        try channel.closeFuture.wait()
    } catch {
        fail("nio-echo: \(error)")
    }

default:
    fail("unknown command \(args[1]); use uring-echo or nio-echo")
}
