// Plugin status details and protocol metrics (manifest `[status]`, docs/manifest.md): every
// `status_interval_s` the host calls each running plugin's status method through the ordinary
// control-call path (RunnerControlChannel: the runner calls it between callbacks, never on the
// io_uring loop thread), checks the answer (PluginStatusAnswer: bounded size, declared metric
// prefix, allowed labels, at most 500 series), and keeps the latest good one: `details` goes into
// /status as plugins[i].details, the series onto /metrics. A bad answer is logged and the previous
// values stay. One task per plugin, so a slow plugin never delays another's status.

import Foundation
import Logging

extension Host {
    func statusLoop() async {
        let interval = config.tuning.statusIntervalSeconds
        guard interval > 0 else { return }
        let plugins = config.enabledPlugins.filter { $0.manifest.status != nil }
        await withTaskGroup(of: Void.self) { group in
            for plugin in plugins {
                group.addTask { await self.statusLoop(plugin, every: interval) }
            }
        }
    }

    private func statusLoop(_ plugin: HostConfig.PluginConfig, every interval: Int) async {
        guard let settings = plugin.manifest.status else { return }
        let name = plugin.name
        let metrics = self.metrics.plugin(named: name)
        var lastProblemLog: ContinuousClock.Instant?
        var lastProblem = ""
        var droppedLogged: [String] = []
        // Not every failure is worth a line every 2 s: a new problem is logged at once, the same
        // one again after a minute.
        func problem(_ text: String) {
            let now = ContinuousClock.now
            if text != lastProblem || lastProblemLog.map({ now - $0 > .seconds(60) }) ?? true {
                logger.warning("plugin status answer not used; keeping the previous one",
                               metadata: ["plugin": "\(name)", "method": "\(settings.method)", "problem": "\(text)"])
                lastProblemLog = now
                lastProblem = text
            }
        }
        while !Task.isCancelled {
            do { try await Task.sleep(for: .seconds(interval)) } catch { return }
            let running: Bool = await onLoop { [self] in supervisor(named: name)?.state == .running }
            guard running else { continue }
            let value: ControlValue
            do {
                value = try await callControl(plugin: name, method: settings.method, args: [])
            } catch {
                problem("the call failed: \(error)")
                continue
            }
            guard case .bytes(let bytes) = value else { problem("the method did not return bytes"); continue }
            let answer: PluginStatusAnswer
            do throws(PluginStatusError) {
                answer = try PluginStatusAnswer.parse(bytes, metricPrefix: settings.metricPrefix)
            } catch {
                problem(error.description)
                continue
            }
            lastProblem = ""
            if !answer.dropped.isEmpty, answer.dropped != droppedLogged {
                logger.warning("plugin status: series left out", metadata: ["plugin": "\(name)", "dropped": "\(answer.dropped.joined(separator: "; "))"])
            }
            droppedLogged = answer.dropped
            metrics.setStatusSeries(answer.series)
            await onLoop { [self] in supervisor(named: name)?.statusDetails = answer.details }
        }
    }
}
