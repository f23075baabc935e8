// PROXY protocol on ingress: the stage that reads the header a load
// balancer (HAProxy's send-proxy, send-proxy-v2) puts before a
// connection's first byte, so that superd and its service see the client
// and not the balancer.
//
//     [service.echo]
//     listen         = ["0.0.0.0:7007"]
//     program        = "/usr/libexec/superd/echo"
//     proxy_protocol = "v2"            # "v1", "v2" or "any"
//     proxy_from     = ["10.0.0.0/8"]  # who may send it: required
//     proxy_timeout  = "5s"            # the default
//
// It runs before admission: the daemon first checks that the connection
// comes from proxy_from (anyone else could name any client), then this
// stage reads the header, and admission (allow/deny, per-source limits and
// rates), the log, the counters and the environment all use the client it
// names. Bytes are read as proxy_header.h says: peeked, then exactly the
// header's taken, so that not one byte of the payload is consumed and the
// service reads the client's first byte first.
//
// Done, the connection's peer is the header's source, its local address
// the header's destination, and a program's environment gets PROXY_ADDR
// and PROXY_PORT (the balancer), and PROXY_AUTHORITY and PROXY_UNIQUE_ID
// when the v2 header carries them. A header without addresses (v2 LOCAL:
// the balancer's health checks; v1 UNKNOWN) leaves the connection's own.
// A malformed or truncated header, or one that does not come within
// proxy_timeout, fails the stage with what was wrong.
#pragma once

#include "superd/connection.h"
#include "superd/proxy_header.h"

#include <chrono>
#include <memory>

namespace superd {

class ProxyStage final : public Stage {
public:
    ProxyStage(ProxyAccept accept, std::chrono::milliseconds timeout) : accept_(accept), timeout_(timeout) {}

    const char* name() const override { return "proxy"; }
    const char* awaiting() const override { return "header"; }
    std::chrono::milliseconds deadline() const override { return timeout_; }
    std::unique_ptr<Run> start(event_base* base, Connection& connection, Done done) override;

private:
    ProxyAccept accept_;
    std::chrono::milliseconds timeout_;
};

// The header's facts applied to `connection`: its client, the address it
// reached and the variables above.
void apply_proxy_header(const ProxyHeader& header, Connection& connection);

} // namespace superd
