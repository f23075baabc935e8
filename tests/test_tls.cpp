// Tests for tls.h: what TlsContext::load accepts and refuses, with
// certificates made by the openssl command line for each test (none is
// checked in), and what tls_environment() reports after real handshakes
// between the server's context and an OpenSSL client, in process over a
// socketpair.
#include "superd/tls.h"

#include "tests/tls_certs.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using harness::Client;
using harness::client_context;
using harness::client_session;
using harness::lower_hex_fingerprint;
using harness::NoSigpipe;
using harness::openssl;
using harness::Pki;
using harness::thread_errors;
using harness::UniqueSslCtx;
using superd::TlsContext;
using superd::TlsSettings;
using superd::TlsVersion;
using superd::UniqueFd;
using superd::UniqueSsl;

namespace {

using namespace std::chrono_literals;

// The context `settings` load, which must load without a warning.
std::shared_ptr<TlsContext> loaded(const TlsSettings& settings)
{
    std::vector<std::string> warnings;
    auto context = TlsContext::load(settings, warnings);
    INFO((context.ok() ? "" : context.error()));
    REQUIRE(context.ok());
    CHECK(warnings.empty());
    return *context;
}

std::string load_error(const TlsSettings& settings)
{
    std::vector<std::string> warnings;
    auto context = TlsContext::load(settings, warnings);
    REQUIRE_FALSE(context.ok());
    return context.error();
}

std::optional<std::string> env_value(const std::vector<std::string>& env, const std::string& name)
{
    for (const std::string& entry : env)
        if (entry.rfind(name + "=", 0) == 0)
            return entry.substr(name.size() + 1);
    return std::nullopt;
}

struct HandshakeOutcome {
    bool server_ok = false;
    std::string server_errors;
    std::vector<std::string> env;
    bool client_ok = false; // handshake done and the server's byte read
    std::string client_errors;
    std::string client_protocol;
    std::string client_cipher;
    std::string client_alpn;
};

// One handshake: the server's session from `context` on one end of a
// socketpair in a thread, the client on the other end here. The server
// sends one byte after its handshake, and the client reads it: in TLS 1.3
// the client's handshake ends before the server has judged its
// certificate, and only that read sees a refusal. Both ends time out after
// 10 s, so a broken handshake fails the test instead of hanging it.
HandshakeOutcome handshake(const TlsContext& context, const Client& client)
{
    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    UniqueFd server_end(pair[0]), client_end(pair[1]);
    timeval limit{10, 0};
    for (int fd : {pair[0], pair[1]}) {
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
        ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
    }

    HandshakeOutcome outcome;
    UniqueSsl server = context.new_session();
    REQUIRE(server);
    REQUIRE(SSL_set_fd(server.get(), server_end.get()) == 1);
    NoSigpipe client_pipe;
    std::thread server_thread([&] {
        NoSigpipe server_pipe;
        if (SSL_accept(server.get()) == 1) {
            outcome.server_ok = true;
            outcome.env = superd::tls_environment(server.get());
            SSL_write(server.get(), "!", 1);
            SSL_shutdown(server.get());
        }
        outcome.server_errors = thread_errors();
        ::shutdown(server_end.get(), SHUT_RDWR); // the client reads EOF, not its timeout
    });

    UniqueSslCtx ctx = client_context(client);
    UniqueSsl ssl = ctx ? client_session(ctx.get(), client, client_end.get()) : nullptr;
    bool ready = ssl != nullptr;
    char byte = 0;
    if (ready && SSL_connect(ssl.get()) == 1) {
        outcome.client_protocol = SSL_get_version(ssl.get());
        outcome.client_cipher = SSL_CIPHER_get_name(SSL_get_current_cipher(ssl.get()));
        const unsigned char* alpn = nullptr;
        unsigned int alpn_length = 0;
        SSL_get0_alpn_selected(ssl.get(), &alpn, &alpn_length);
        outcome.client_alpn.assign(reinterpret_cast<const char*>(alpn), alpn_length);
        outcome.client_ok = SSL_read(ssl.get(), &byte, 1) == 1 && byte == '!';
    }
    outcome.client_errors = thread_errors();
    ::shutdown(client_end.get(), SHUT_RDWR); // the server's handshake ends, if it still waits
    server_thread.join();
    REQUIRE(ready);
    return outcome;
}

// A handshake that must succeed on both sides.
HandshakeOutcome served(const TlsContext& context, const Client& client)
{
    HandshakeOutcome outcome = handshake(context, client);
    INFO(outcome.server_errors << outcome.client_errors);
    REQUIRE(outcome.server_ok);
    REQUIRE(outcome.client_ok);
    return outcome;
}

} // namespace

TEST_CASE("A TLS context loads a certificate and its key, and keeps its settings")
{
    Pki pki;
    TlsSettings settings = pki.server();
    settings.alpn = {"h2", "http/1.1"};
    std::shared_ptr<TlsContext> context = loaded(settings);
    CHECK(context->settings() == settings);
    CHECK(context->native() != nullptr);
    CHECK(context->new_session() != nullptr);
}

TEST_CASE("A private key that group or others may read is refused, naming the file and its mode")
{
    Pki pki;
    TlsSettings settings = pki.server();
    REQUIRE(::chmod(settings.key.c_str(), 0644) == 0);
    std::string error = load_error(settings);
    CHECK_THAT(error, Catch::Contains(settings.key) && Catch::Contains("mode 0644"));
    REQUIRE(::chmod(settings.key.c_str(), 0640) == 0);
    CHECK_THAT(load_error(settings), Catch::Contains("mode 0640"));
    REQUIRE(::chmod(settings.key.c_str(), 0400) == 0);
    loaded(settings);
}

TEST_CASE("A key that does not match the certificate is refused with OpenSSL's reason")
{
    Pki pki;
    pki.issue("other", "/CN=other");
    TlsSettings settings = pki.server();
    settings.key = pki.path("other.key");
    std::string error = load_error(settings);
    CHECK_THAT(error, Catch::Contains(settings.key) && Catch::Contains("does not match the certificate")
                          && Catch::Contains(settings.cert) && Catch::Contains("error:"));
}

TEST_CASE("An encrypted private key is refused: no one is there to type its passphrase")
{
    Pki pki;
    openssl(
        {"ec", "-in", pki.path("server.key"), "-aes256", "-passout", "pass:secret", "-out", pki.path("locked.key")});
    ::chmod(pki.path("locked.key").c_str(), 0600);
    TlsSettings settings = pki.server();
    settings.key = pki.path("locked.key");
    CHECK_THAT(load_error(settings), Catch::Contains(settings.key) && Catch::Contains("not encrypted"));
}

TEST_CASE("A certificate that has expired or is not yet valid is refused, one that expires soon warns")
{
    Pki pki;
    pki.issue("expired", "/CN=localhost", -1);
    pki.issue("week", "/CN=localhost", 7);
    std::vector<std::string> warnings;

    std::string error = load_error(pki.server("expired"));
    CHECK_THAT(error, Catch::Contains(pki.path("expired.pem")) && Catch::Contains("expired on"));

    // The server's certificate starts now: a day ago it was not valid yet,
    // and 29 days on it is about to end.
    auto now = std::chrono::system_clock::now();
    auto early = TlsContext::load(pki.server(), warnings, now - 24h);
    REQUIRE_FALSE(early.ok());
    CHECK_THAT(early.error(), Catch::Contains(pki.path("server.pem")) && Catch::Contains("is not valid before"));
    CHECK(warnings.empty());

    REQUIRE(TlsContext::load(pki.server("week"), warnings).ok());
    REQUIRE(warnings.size() == 1);
    CHECK_THAT(warnings[0], Catch::Contains(pki.path("week.pem")) && Catch::Contains("expires in 6 days"));

    warnings.clear();
    REQUIRE(TlsContext::load(pki.server(), warnings, now + 29 * 24h).ok());
    REQUIRE(warnings.size() == 1);
    CHECK_THAT(warnings[0], Catch::Contains("expires in 0 days"));
    warnings.clear();
    REQUIRE(TlsContext::load(pki.server(), warnings, now + 15 * 24h).ok());
    CHECK(warnings.empty());

    // The chain's other certificates are checked too, and named.
    std::ofstream(pki.path("chain.pem")) << std::ifstream(pki.path("server.pem")).rdbuf()
                                         << std::ifstream(pki.path("ca.pem")).rdbuf();
    TlsSettings chain = pki.server();
    chain.cert = pki.path("chain.pem");
    REQUIRE(TlsContext::load(chain, warnings, now + 20 * 24h).ok());
    REQUIRE(warnings.size() == 2);
    CHECK_THAT(warnings[1], Catch::Contains("the chain's certificate CN=Test CA expires in"));
    warnings.clear();
    REQUIRE(TlsContext::load(chain, warnings).ok());
    CHECK(warnings.empty());
}

TEST_CASE("A missing certificate, key or client CA file is named in the error")
{
    Pki pki;
    TlsSettings settings = pki.server();
    settings.cert = pki.path("absent.pem");
    CHECK_THAT(load_error(settings), Catch::Contains(settings.cert) && Catch::Contains("No such file"));

    settings = pki.server();
    settings.key = pki.path("absent.key");
    CHECK_THAT(load_error(settings), Catch::Contains(settings.key) && Catch::Contains("No such file"));

    settings = pki.server();
    settings.client_ca = pki.path("absent-ca.pem");
    CHECK_THAT(load_error(settings), Catch::Contains(settings.client_ca) && Catch::Contains("No such file"));

    settings = pki.server();
    settings.cert = settings.key; // a key where the certificate should be
    CHECK_THAT(load_error(settings), Catch::Contains(settings.key) && Catch::Contains("certificate chain"));
}

TEST_CASE("A FIFO in place of a certificate, key or client CA is refused at once, never waited on")
{
    Pki pki;
    std::string fifo = pki.path("fifo.pem");
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    // Opened to read, a FIFO would wait for a writer: superd's loop with it.
    for (std::string TlsSettings::*file : {&TlsSettings::cert, &TlsSettings::key, &TlsSettings::client_ca}) {
        TlsSettings settings = pki.server();
        settings.*file = fifo;
        CHECK_THAT(load_error(settings), Catch::Contains(fifo) && Catch::Contains("is not a regular file"));
    }
}

TEST_CASE("ALPN names must be printable and at most 255 bytes")
{
    Pki pki;
    TlsSettings settings = pki.server();
    settings.alpn = {"h2", ""};
    CHECK_THAT(load_error(settings), Catch::Contains("alpn"));
    settings.alpn = {"h2", "a b"};
    CHECK_THAT(load_error(settings), Catch::Contains("\"a b\""));
    settings.alpn = {std::string(256, 'x')};
    CHECK_THAT(load_error(settings), Catch::Contains("255"));
}

TEST_CASE("After a handshake the service learns the protocol, cipher, SNI and ALPN choice")
{
    Pki pki;
    TlsSettings settings = pki.server();
    settings.alpn = {"h2", "http/1.1"};
    std::shared_ptr<TlsContext> context = loaded(settings);

    // The server's order decides, not the client's.
    HandshakeOutcome outcome =
        served(*context, {.ca = pki.path("ca.pem"), .sni = "service.example", .alpn = {"spdy/1", "http/1.1", "h2"}});
    const auto& env = outcome.env;
    CHECK(env_value(env, "HTTPS") == "on");
    CHECK(env_value(env, "SSL_PROTOCOL") == "TLSv1.3");
    CHECK(env_value(env, "SSL_PROTOCOL") == outcome.client_protocol);
    CHECK(env_value(env, "SSL_CIPHER") == outcome.client_cipher);
    CHECK(env_value(env, "SSL_TLS_SNI") == "service.example");
    CHECK(env_value(env, "SSL_ALPN") == "h2");
    CHECK(outcome.client_alpn == "h2");
    CHECK(env_value(env, "SSL_CLIENT_VERIFY") == "NONE");
    CHECK_FALSE(env_value(env, "SSL_CLIENT_S_DN"));
    for (const std::string& entry : env) {
        std::string name = entry.substr(0, entry.find('='));
        CHECK(std::find(std::begin(superd::kTlsEnvironmentNames), std::end(superd::kTlsEnvironmentNames), name)
              != std::end(superd::kTlsEnvironmentNames));
    }

    // No protocol in common: the handshake goes on without ALPN; no SNI,
    // no variable.
    outcome = served(*context, {.ca = pki.path("ca.pem"), .alpn = {"spdy/1"}});
    CHECK_FALSE(env_value(outcome.env, "SSL_ALPN"));
    CHECK(outcome.client_alpn.empty());
    CHECK_FALSE(env_value(outcome.env, "SSL_TLS_SNI"));
}

TEST_CASE("A required client certificate is verified and described, and a client without one is refused")
{
    Pki pki;
    pki.issue("alice", "/O=Example, Inc./CN=alice", 30, "0x1234ABCD");
    TlsSettings settings = pki.server();
    settings.client_ca = pki.path("ca.pem");
    std::shared_ptr<TlsContext> context = loaded(settings);

    Client alice{.ca = pki.path("ca.pem"), .cert = pki.path("alice.pem"), .key = pki.path("alice.key")};
    HandshakeOutcome outcome = served(*context, alice);
    const auto& env = outcome.env;
    CHECK(env_value(env, "SSL_CLIENT_VERIFY") == "SUCCESS");
    CHECK(env_value(env, "SSL_CLIENT_S_DN") == "CN=alice,O=Example\\, Inc.");
    CHECK(env_value(env, "SSL_CLIENT_I_DN") == "CN=Test CA");
    CHECK(env_value(env, "SSL_CLIENT_M_SERIAL") == "1234ABCD");
    std::string fingerprint = lower_hex_fingerprint(pki.path("alice.pem"));
    CHECK(fingerprint.size() == 64);
    CHECK(env_value(env, "SSL_CLIENT_CERT_SHA256") == fingerprint);

    outcome = handshake(*context, {.ca = pki.path("ca.pem")});
    CHECK_FALSE(outcome.server_ok);
    CHECK_FALSE(outcome.client_ok);
    CHECK_THAT(outcome.server_errors, Catch::Contains("peer did not return a certificate"));

    // A certificate from a CA the service does not trust.
    Pki stranger("Stranger CA");
    stranger.issue("mallory", "/CN=mallory");
    outcome = handshake(
        *context,
        {.ca = pki.path("ca.pem"), .cert = stranger.path("mallory.pem"), .key = stranger.path("mallory.key")});
    CHECK_FALSE(outcome.server_ok);
    CHECK_FALSE(outcome.client_ok);
    CHECK_THAT(outcome.server_errors, Catch::Contains("certificate verify failed"));
}

TEST_CASE("A client certificate's names cannot add a line to the environment")
{
    Pki pki;
    pki.issue("evil", "/CN=evil\nSSL_CLIENT_VERIFY=SUCCESS\x01");
    TlsSettings settings = pki.server();
    settings.client_ca = pki.path("ca.pem");
    std::shared_ptr<TlsContext> context = loaded(settings);

    HandshakeOutcome outcome =
        handshake(*context, {.ca = pki.path("ca.pem"), .cert = pki.path("evil.pem"), .key = pki.path("evil.key")});
    INFO(outcome.server_errors << outcome.client_errors);
    REQUIRE(outcome.server_ok);
    CHECK(env_value(outcome.env, "SSL_CLIENT_S_DN") == "CN=evil\\0ASSL_CLIENT_VERIFY=SUCCESS\\01");
    for (const std::string& entry : outcome.env)
        CHECK(std::none_of(entry.begin(), entry.end(), [](char c) { return c == '\n' || c == '\0' || c == '\x01'; }));
}

TEST_CASE("min_version 1.3 refuses a client that speaks only TLS 1.2, which 1.2 accepts")
{
    Pki pki;
    TlsSettings settings = pki.server();
    std::shared_ptr<TlsContext> context = loaded(settings);
    Client old_client{.ca = pki.path("ca.pem"), .tls12_only = true};
    HandshakeOutcome outcome = handshake(*context, old_client);
    INFO(outcome.server_errors << outcome.client_errors);
    REQUIRE(outcome.server_ok);
    CHECK(env_value(outcome.env, "SSL_PROTOCOL") == "TLSv1.2");
    CHECK(env_value(outcome.env, "SSL_CIPHER") == outcome.client_cipher);

    settings.min_version = TlsVersion::k1_3;
    context = loaded(settings);
    outcome = handshake(*context, old_client);
    CHECK_FALSE(outcome.server_ok);
    CHECK_FALSE(outcome.client_ok);
    CHECK_THAT(outcome.server_errors, Catch::Contains("unsupported protocol"));
}
