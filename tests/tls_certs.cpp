#include "tests/tls_certs.h"

#include <pthread.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <catch2/catch.hpp>

#include <cctype>
#include <cstdio>

namespace harness {

void openssl(std::vector<std::string> args) { openssl_output(std::move(args)); }

std::string openssl_output(std::vector<std::string> args)
{
    args.insert(args.begin(), "/usr/bin/openssl"); // Debian's openssl package
    Finished done = run_command(args);
    INFO(done.output);
    REQUIRE(done.status == 0);
    return done.output;
}

Pki::Pki(const std::string& ca_name)
{
    openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
             path("ca.key"), "-subj", "/CN=" + ca_name, "-days", "30", "-out", path("ca.pem")});
    ::chmod(path("ca.key").c_str(), 0600);
    issue("server", "/CN=localhost");
}

void Pki::issue(const std::string& name, const std::string& subject, int days, const std::string& serial)
{
    openssl({"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
             path(name + ".key"), "-subj", subject, "-utf8", "-out", path(name + ".csr")});
    ::chmod(path(name + ".key").c_str(), 0600);
    std::vector<std::string> sign{"x509",   "-req",         "-in",   path(name + ".csr"),  "-CA",  path("ca.pem"),
                                  "-CAkey", path("ca.key"), "-days", std::to_string(days), "-out", path(name + ".pem")};
    if (!serial.empty()) {
        sign.push_back("-set_serial");
        sign.push_back(serial);
    }
    openssl(sign);
}

superd::TlsSettings Pki::server(const std::string& name) const
{
    superd::TlsSettings settings;
    settings.cert = path(name + ".pem");
    settings.key = path(name + ".key");
    return settings;
}

std::string lower_hex_fingerprint(const std::string& cert)
{
    // "sha256 Fingerprint=AB:CD:..." (the case of the prefix varies by version)
    std::string output = openssl_output({"x509", "-in", cert, "-noout", "-fingerprint", "-sha256"});
    std::string hex;
    for (char c : output.substr(output.find('=') + 1))
        if (std::isxdigit(static_cast<unsigned char>(c)))
            hex += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return hex;
}

std::string lower_hex_fingerprint(X509* certificate)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (!certificate || X509_digest(certificate, EVP_sha256(), digest, &length) != 1)
        return "";
    std::string hex;
    for (unsigned int i = 0; i < length; ++i) {
        char pair[3];
        std::snprintf(pair, sizeof pair, "%02x", digest[i]);
        hex += pair;
    }
    return hex;
}

std::string thread_errors()
{
    std::string text;
    while (unsigned long code = ERR_get_error()) {
        char line[256];
        ERR_error_string_n(code, line, sizeof line);
        text += line;
        text += "\n";
    }
    return text;
}

NoSigpipe::NoSigpipe()
{
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, &old_);
}

NoSigpipe::~NoSigpipe()
{
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    timespec now{0, 0};
    while (sigtimedwait(&pipe, nullptr, &now) == SIGPIPE) {
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
}

UniqueSslCtx client_context(const Client& client)
{
    UniqueSslCtx ctx(SSL_CTX_new(TLS_client_method()));
    if (!ctx || SSL_CTX_load_verify_locations(ctx.get(), client.ca.c_str(), nullptr) != 1)
        return nullptr;
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    if (client.tls12_only && SSL_CTX_set_max_proto_version(ctx.get(), TLS1_2_VERSION) != 1)
        return nullptr;
    if (!client.cert.empty()
        && (SSL_CTX_use_certificate_file(ctx.get(), client.cert.c_str(), SSL_FILETYPE_PEM) != 1
            || SSL_CTX_use_PrivateKey_file(ctx.get(), client.key.c_str(), SSL_FILETYPE_PEM) != 1))
        return nullptr;
    return ctx;
}

superd::UniqueSsl client_session(SSL_CTX* ctx, const Client& client, int fd)
{
    superd::UniqueSsl ssl(SSL_new(ctx));
    if (!ssl || SSL_set_fd(ssl.get(), fd) != 1)
        return nullptr;
    // SSL_set_tlsext_host_name, whose macro casts in C's way.
    if (!client.sni.empty()
        && SSL_ctrl(ssl.get(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                    const_cast<char*>(client.sni.c_str()))
               != 1)
        return nullptr;
    if (!client.alpn.empty()) {
        std::string wire;
        for (const std::string& name : client.alpn)
            wire += static_cast<char>(name.size()) + name;
        if (SSL_set_alpn_protos(ssl.get(), reinterpret_cast<const unsigned char*>(wire.data()),
                                static_cast<unsigned int>(wire.size()))
            != 0) // 0 is success here
            return nullptr;
    }
    return ssl;
}

} // namespace harness
