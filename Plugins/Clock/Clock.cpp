/*
 * Clock -- a C++ service whose loop blocks: it waits for the next tick in
 * poll() on the host's stop descriptor, so a stop order ends the wait at
 * once instead of after the tick (or after stop_timeout_ms). It shows the
 * C++ rules of servicehost.h: entry points through SVC_EXPORT (extern "C"),
 * and no exception ever leaves one.
 */
#include "servicehost.h"

#include <chrono>
#include <cstdint>
#include <ctime>
#include <exception>
#include <poll.h>
#include <stdexcept>
#include <string>

namespace {

class Clock {
public:
    explicit Clock(const svc_host *host) : host_(host) {
        int64_t every = 0;
        if (svc_config_int(host, "every_ms", 1000, &every) == SVC_CONFIG_INVALID || every <= 0 || every > 86400000) {
            throw std::invalid_argument("every_ms must be a whole number from 1 to 86400000 (a day)");
        }
        every_ms_ = static_cast<int>(every);
        // A host older than the stop descriptor: poll() then just sleeps.
        stop_ = SVC_HOST_HAS(host, stop_descriptor) ? host->stop_descriptor() : -1;
    }

    int32_t loop() {
        pollfd stop = {stop_, POLLIN, 0};
        if (poll(&stop, stop_ >= 0 ? 1 : 0, every_ms_) > 0) {
            svc_logf(host_, SVC_LOG_INFO, "stop ordered: leaving the wait at once");
            return SVC_CONTINUE; // the host ends the run
        }
        std::time_t now = std::time(nullptr);
        std::tm parts{};
        gmtime_r(&now, &parts); // not std::gmtime: its buffer is shared by every thread
        char text[32];
        std::strftime(text, sizeof text, "%H:%M:%S", &parts);
        svc_logf(host_, SVC_LOG_INFO, "%s UTC", text);
        return SVC_CONTINUE;
    }

    const svc_host *host() const { return host_; }

private:
    const svc_host *host_;
    int every_ms_ = 1000;
    int stop_ = -1;
};

} // namespace

SVC_EXPORT uint32_t svc_abi_version(void) { return SVC_ABI_VERSION; }
SVC_EXPORT const char *svc_plugin_version(void) { return "1.0.0"; }

SVC_EXPORT int32_t svc_create(const svc_host *host, void **ctx) {
    try {
        *ctx = new Clock(host);
        return 0;
    } catch (const std::exception &error) {
        svc_logf(host, SVC_LOG_ERROR, "cannot start: %s", error.what());
        return -22;
    } catch (...) {
        return -1;
    }
}

SVC_EXPORT int32_t svc_loop(void *ctx) {
    auto *clock = static_cast<Clock *>(ctx);
    try {
        return clock->loop();
    } catch (const std::exception &error) {
        svc_logf(clock->host(), SVC_LOG_ERROR, "svc_loop: %s", error.what());
        return -1;
    } catch (...) {
        return -1;
    }
}

SVC_EXPORT void svc_stop(void *ctx) {
    delete static_cast<Clock *>(ctx);
}
