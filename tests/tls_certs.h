// TLS for the tests: certificates made by the openssl command line for
// each test, and the client side of a handshake set up with OpenSSL's API
// as a real client sets it up.
//
// No private key is ever checked in: a Pki makes its CA and every
// certificate in a temporary folder of its own, removed with it. The
// client functions return what OpenSSL made, or null with the reasons in
// this thread's error queue (thread_errors()); the caller owns the socket.
#pragma once

#include "superd/tls.h"
#include "tests/harness.h"

#include <openssl/ssl.h>

#include <signal.h>

#include <memory>
#include <string>
#include <vector>

namespace harness {

// Runs Debian's openssl command line with `args`; fails the test unless it
// succeeds. openssl_output() returns what it printed.
void openssl(std::vector<std::string> args);
std::string openssl_output(std::vector<std::string> args);

// A CA and the certificates it signs, all ECDSA P-256, in a folder of
// their own, starting with server.pem for CN=localhost. Keys are made 0600,
// as a careful administrator's are.
class Pki {
public:
    Pki() : Pki("Test CA") {}
    explicit Pki(const std::string& ca_name);

    std::string path(const std::string& name) const { return (dir_.path() / name).string(); }

    // NAME.pem and NAME.key: `subject` ("/O=Example/CN=alice") signed by
    // the CA, valid from now for `days` (negative: ended already).
    void issue(const std::string& name, const std::string& subject, int days = 30, const std::string& serial = "");

    // The settings of a service that serves NAME.pem with NAME.key.
    superd::TlsSettings server(const std::string& name = "server") const;

private:
    TempDir dir_;
};

// The SHA-256 fingerprint of the PEM certificate in `cert` as openssl
// x509 -fingerprint prints it, in lower case without colons.
std::string lower_hex_fingerprint(const std::string& cert);
// The same fingerprint of `certificate`, computed by OpenSSL's library.
std::string lower_hex_fingerprint(X509* certificate);

// This thread's OpenSSL errors, as one line each, the queue emptied.
std::string thread_errors();

// While it lives, a write to a closed socket on this thread fails with
// EPIPE instead of killing the test process: either side of a refused
// handshake may still be writing when the other closes. SIGPIPE is blocked
// (a write's SIGPIPE goes to the thread that wrote), and one left pending
// is taken before the mask is restored.
class NoSigpipe {
public:
    NoSigpipe();
    NoSigpipe(const NoSigpipe&) = delete;
    NoSigpipe& operator=(const NoSigpipe&) = delete;
    ~NoSigpipe();

private:
    sigset_t old_;
};

// What a TLS client offers.
struct Client {
    std::string ca{};   // trusted for the server's certificate
    std::string cert{}; // with key: the client's certificate
    std::string key{};
    std::string sni{};
    std::vector<std::string> alpn{};
    bool tls12_only = false;
};

struct CtxFree {
    void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using UniqueSslCtx = std::unique_ptr<SSL_CTX, CtxFree>;

// A client context that verifies the server against client.ca and presents
// client.cert, if any; null on failure.
UniqueSslCtx client_context(const Client& client);
// A client session from `ctx` on the connected socket `fd`, asking for
// client.sni and offering client.alpn; null on failure.
superd::UniqueSsl client_session(SSL_CTX* ctx, const Client& client, int fd);

} // namespace harness
