// The TLS client side of the measuring tools (loadgen --tls, fetch --tls),
// on OpenSSL 3: one context per run, one session per connection over a
// non-blocking socket the tool owns. Every connection makes a full
// handshake: the context keeps no session cache and asks for no tickets,
// so nothing is resumed and each connection costs the server what a new
// client costs it. The server's certificate must chain to CAFILE and name
// "localhost", which is also the SNI sent.
//
// Header-only, apart from the tools that do not speak TLS: only loadgen and
// fetch include it, and only they link OpenSSL.
#pragma once

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

namespace bench {

inline constexpr const char* kTlsServerName = "localhost";

struct SslCtxFree {
    void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using UniqueSslCtx = std::unique_ptr<SSL_CTX, SslCtxFree>;

struct SslFree {
    void operator()(SSL* ssl) const { SSL_free(ssl); }
};
using UniqueSsl = std::unique_ptr<SSL, SslFree>;

// OpenSSL's oldest queued reason (and clears the queue), or `fallback`.
inline std::string tls_reason(const char* fallback)
{
    unsigned long code = ERR_get_error();
    ERR_clear_error();
    if (code == 0)
        return fallback;
    char text[256];
    ERR_error_string_n(code, text, sizeof text);
    return text;
}

// A client context that trusts CAFILE alone; null (said, with `tool`) when
// the file cannot be read.
inline UniqueSslCtx tls_client_context(const std::string& cafile, const char* tool)
{
    UniqueSslCtx ctx(SSL_CTX_new(TLS_client_method()));
    if (!ctx) {
        std::fprintf(stderr, "%s: SSL_CTX_new: %s\n", tool, tls_reason("out of memory").c_str());
        return nullptr;
    }
    if (SSL_CTX_load_verify_locations(ctx.get(), cafile.c_str(), nullptr) != 1) {
        std::fprintf(stderr, "%s: %s: %s\n", tool, cafile.c_str(), tls_reason("cannot load").c_str());
        return nullptr;
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
    // A write may take part of a buffer and be retried from elsewhere: the
    // tools resend from a cursor, as with send().
    SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return ctx;
}

// A client session over the connected (or connecting) socket `fd`, with SNI
// and the host name to verify; the caller still owns `fd`. Null only when
// OpenSSL is out of memory.
inline UniqueSsl tls_client_session(SSL_CTX* ctx, int fd)
{
    UniqueSsl ssl(SSL_new(ctx));
    // SSL_ctrl rather than SSL_set_tlsext_host_name, whose macro casts in C's way.
    if (!ssl || SSL_set_fd(ssl.get(), fd) != 1
        || SSL_ctrl(ssl.get(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                    const_cast<char*>(kTlsServerName))
               != 1
        || SSL_set1_host(ssl.get(), kTlsServerName) != 1)
        return nullptr;
    SSL_set_connect_state(ssl.get());
    return ssl;
}

// What a TLS call's result `ret` on `ssl` means for a non-blocking loop.
enum class TlsIo {
    Done,   // the call did its work
    Again,  // the socket would block: wait for its next event
    Closed, // the peer's close_notify
    Eof,    // the TCP connection ended without a close_notify
    Failed, // a TLS error (tls_reason() says which) or a socket error (errno)
};

inline TlsIo tls_io(SSL* ssl, int ret)
{
    if (ret > 0)
        return TlsIo::Done;
    switch (SSL_get_error(ssl, ret)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return TlsIo::Again;
    case SSL_ERROR_ZERO_RETURN:
        return TlsIo::Closed;
    case SSL_ERROR_SSL:
        // OpenSSL 3 reports a connection that ends without a close_notify
        // as this error (SSL_ERROR_SYSCALL with errno 0 before it).
        if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            ERR_clear_error();
            return TlsIo::Eof;
        }
        return TlsIo::Failed;
    default:
        return TlsIo::Failed;
    }
}

} // namespace bench
