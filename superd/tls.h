// TLS for a service, on OpenSSL 3: the server's context, built from one
// service's [service.X.tls] settings, and the facts a finished handshake
// hands to the service's environment. No sockets and no event loop here:
// the connection path drives the handshake and owns the connection.
//
// TlsContext owns one SSL_CTX: the certificate chain and key, the client
// CAs, the ALPN list, the lowest protocol version. It is loaded whole or
// not at all, and never changed after load: a reload loads a new one (the
// files may have changed under the same settings: certbot rotates them in
// place) and swaps the service's shared_ptr; each connection keeps the
// shared_ptr it started with beside its SSL, so established connections
// are untouched and the context outlives every session made from it.
//
// Load refuses what would fail or leak later: a key that does not match
// the certificate; a key file that group or others may read (as OpenSSH
// refuses one); a certificate of the chain that has expired or is not yet
// valid. A certificate of the chain that expires within kTlsExpiryWarning is
// loaded with a warning. Every error names the file and carries OpenSSL's reasons.
//
// tls_environment(): the handshake's facts under mod_ssl's names, as
// "NAME=value" strings for a spawned program's environment. Every value is
// one line of printable text: what the client chose (SNI, the names in its
// certificate) cannot add a variable or a line.
#pragma once

#include "superd/config.h"
#include "superd/result.h"

#include <openssl/ssl.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace superd {

// A certificate of the chain closer than this to its end is loaded with a warning.
inline constexpr std::chrono::hours kTlsExpiryWarning{14 * 24};

struct SslFree {
    void operator()(SSL* ssl) const { SSL_free(ssl); }
};
using UniqueSsl = std::unique_ptr<SSL, SslFree>;

class TlsContext {
public:
    // Reads the files now (before superd drops privileges: the key is
    // usually root's alone). Warnings (a certificate about to expire) go to
    // `warnings`, each a line naming the file. `now` is the time validity
    // is checked against.
    static Result<std::shared_ptr<TlsContext>>
    load(const TlsSettings& settings, std::vector<std::string>& warnings,
         std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

    ~TlsContext();
    TlsContext(const TlsContext&) = delete;
    TlsContext& operator=(const TlsContext&) = delete;

    // A server-side session for one connection, not yet bound to a socket;
    // null only when OpenSSL is out of memory. The context must outlive it:
    // keep the shared_ptr beside it.
    UniqueSsl new_session() const;

    const TlsSettings& settings() const { return settings_; }
    // For a caller that needs OpenSSL's own API (libevent's bufferevents).
    SSL_CTX* native() const { return ctx_; }

private:
    TlsContext(SSL_CTX* ctx, TlsSettings settings, std::string alpn_wire);
    static int select_alpn(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                           unsigned int inlen, void* arg);

    SSL_CTX* ctx_;
    TlsSettings settings_;
    std::string alpn_wire_; // the ALPN list in the protocol's encoding: length-prefixed names
};

// Why an operation on `ssl` that returned `result` failed, as one line:
// OpenSSL's reasons in their short form ("wrong version number"), with the
// verification's result when a certificate failed it, or the system's
// error. Call it at once (it reads errno and OpenSSL's error queue, which it
// leaves empty).
std::string tls_failure(SSL* ssl, int result);

// Every name tls_environment() may set, for the list of variables a
// service's configuration may not set itself.
inline constexpr std::string_view kTlsEnvironmentNames[] = {
    "HTTPS",
    "SSL_PROTOCOL",
    "SSL_CIPHER",
    "SSL_TLS_SNI",
    "SSL_ALPN",
    "SSL_CLIENT_VERIFY",
    "SSL_CLIENT_S_DN",
    "SSL_CLIENT_I_DN",
    "SSL_CLIENT_M_SERIAL",
    "SSL_CLIENT_CERT_SHA256",
};

// After a successful handshake on `ssl` (server side):
//   HTTPS=on
//   SSL_PROTOCOL            TLSv1.2 or TLSv1.3, as mod_ssl
//   SSL_CIPHER              OpenSSL's name of the suite, as mod_ssl (TLS_AES_128_GCM_SHA256)
//   SSL_TLS_SNI             the host name the client asked for; unset without one, or when it is
//                           not printable ASCII without spaces (then it is no host name)
//   SSL_ALPN                the protocol chosen by ALPN; unset without one (mod_ssl has no such
//                           variable; HAProxy's ssl_fc_alpn is the same fact)
//   SSL_CLIENT_VERIFY       SUCCESS, NONE (no certificate) or FAILED:reason, as mod_ssl; with
//                           client_ca a failed verification ends the handshake, so it is SUCCESS
//   and with a client certificate:
//   SSL_CLIENT_S_DN         subject, RFC 2253 (CN=alice,O=Example), as mod_ssl; UTF-8 kept,
//   SSL_CLIENT_I_DN         issuer, the same; control bytes escaped \XX as RFC 2253 allows
//   SSL_CLIENT_M_SERIAL     serial number, upper-case hex, as mod_ssl
//   SSL_CLIENT_CERT_SHA256  SHA-256 of the certificate's DER, lower-case hex without separators
//                           (sha256sum's form): mod_ssl has only the whole PEM (SSL_CLIENT_CERT),
//                           which spans lines; the fingerprint is what pins a client
std::vector<std::string> tls_environment(SSL* ssl);

} // namespace superd
