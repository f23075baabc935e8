#include "superd/tls.h"

#include "superd/fd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <optional>

namespace superd {

namespace {

using SystemClock = std::chrono::system_clock;

struct CtxFree {
    void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
struct BioFree {
    void operator()(BIO* bio) const { BIO_free(bio); }
};
struct PkeyFree {
    void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct BnFree {
    void operator()(BIGNUM* bn) const { BN_free(bn); }
};
using UniqueCtx = std::unique_ptr<SSL_CTX, CtxFree>;
using UniqueBio = std::unique_ptr<BIO, BioFree>;
using UniquePkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using UniqueBn = std::unique_ptr<BIGNUM, BnFree>;

// A private key file is a few KB (an RSA-8192 key is under 7); more is not one.
constexpr size_t kMaxKeyFile = 1 << 20;

// OpenSSL's error queue, oldest first, as one line; the queue is left empty
// so that the next operation's reasons are its own.
std::string openssl_reasons()
{
    std::string reasons;
    while (unsigned long code = ERR_get_error()) {
        char text[256];
        ERR_error_string_n(code, text, sizeof text);
        if (!reasons.empty())
            reasons += "; ";
        reasons += text;
    }
    ERR_clear_error();
    return reasons.empty() ? "no reason given" : reasons;
}

Error failed(std::string_view file, std::string_view what)
{
    return Error{fmt::format("{}: {}: {}", file, what, openssl_reasons())};
}

// The memory BIO's contents, which are printable as OpenSSL wrote them.
std::string bio_text(BIO* bio)
{
    char* data = nullptr;
    long size = BIO_get_mem_data(bio, &data);
    return size > 0 ? std::string(data, static_cast<size_t>(size)) : std::string();
}

// A name in RFC 2253 form, as mod_ssl writes it: UTF-8 kept (multi-byte
// characters are not escaped), control bytes escaped as \XX. Empty when
// OpenSSL cannot print it (a UTF8String that is not UTF-8).
std::string rfc2253(const X509_NAME* name)
{
    UniqueBio bio(BIO_new(BIO_s_mem()));
    if (!bio || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
        ERR_clear_error();
        return {};
    }
    // ASN1_STRFLGS_ESC_CTRL escapes the C0 controls; DEL too, in case a
    // version does not, so the value is one line whatever the name holds.
    std::string text;
    for (char c : bio_text(bio.get())) {
        auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte == 0x7f)
            text += fmt::format("\\{:02X}", byte);
        else
            text += c;
    }
    return text;
}

std::string utc_text(const ASN1_TIME* time)
{
    std::tm tm{};
    if (ASN1_TIME_to_tm(time, &tm) != 1)
        return "an unreadable date";
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S UTC", &tm);
    return text;
}

// Opens `path` (`what`, for messages) to read, if it is a regular file.
// O_NONBLOCK: a FIFO put in its place must not hang a load (or a reload,
// with the daemon's loop) waiting for a writer; O_NOCTTY: nor a terminal
// become superd's. OpenSSL's own loaders are then given /proc/self/fd/N,
// the file checked here, whatever the path names by then.
Result<UniqueFd> open_regular(const std::string& path, std::string_view what)
{
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!fd)
        return Error{fmt::format("{}: cannot open {}: {}", path, what, std::strerror(errno))};
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
        return Error{fmt::format("{}: {}", path, std::strerror(errno))};
    if (!S_ISREG(st.st_mode))
        return Error{fmt::format("{}: {} is not a regular file", path, what)};
    return fd;
}

std::string fd_path(const UniqueFd& fd) { return "/proc/self/fd/" + std::to_string(fd.get()); }

// The certificate's validity against `now`: an error if it has ended or not
// begun, a warning if it ends within kTlsExpiryWarning (a chain's
// certificate that ends breaks every handshake as surely as the leaf).
std::optional<Error> check_validity(X509* cert, bool leaf, std::string_view file, SystemClock::time_point now,
                                    std::vector<std::string>& warnings)
{
    std::time_t at = SystemClock::to_time_t(now);
    std::string which = leaf ? std::string("the certificate")
                             : fmt::format("the chain's certificate {}", rfc2253(X509_get_subject_name(cert)));
    const ASN1_TIME* not_after = X509_get0_notAfter(cert);
    const ASN1_TIME* not_before = X509_get0_notBefore(cert);
    if (X509_cmp_time(not_after, &at) <= 0)
        return Error{fmt::format("{}: {} expired on {}", file, which, utc_text(not_after))};
    if (X509_cmp_time(not_before, &at) >= 0)
        return Error{fmt::format("{}: {} is not valid before {}", file, which, utc_text(not_before))};
    std::time_t soon = SystemClock::to_time_t(now + kTlsExpiryWarning);
    if (X509_cmp_time(not_after, &soon) <= 0) {
        std::tm end{};
        ASN1_TIME_to_tm(not_after, &end);
        auto left = std::chrono::duration_cast<std::chrono::hours>(SystemClock::from_time_t(timegm(&end)) - now);
        warnings.push_back(
            fmt::format("{}: {} expires in {} days, on {}", file, which, left.count() / 24, utc_text(not_after)));
    }
    return std::nullopt;
}

// Reads the key through a descriptor of our own, so that the mode checked
// is the mode of the file read. Never asks for a passphrase: superd runs
// with no one to type it, so an encrypted key is refused.
Result<UniquePkey> read_private_key(const std::string& path)
{
    auto fd = open_regular(path, "the private key");
    if (!fd)
        return Error{fd.error()};
    struct stat st {};
    if (::fstat(fd->get(), &st) != 0)
        return Error{fmt::format("{}: {}", path, std::strerror(errno))};
    if ((st.st_mode & 077) != 0)
        return Error{fmt::format("{}: mode {:04o} lets group or others read the private key; it must be 0600 or "
                                 "stricter (chmod 600 {})",
                                 path, st.st_mode & 07777, path)};
    if (static_cast<uint64_t>(st.st_size) > kMaxKeyFile)
        return Error{fmt::format("{}: {} bytes is too long for a private key", path, st.st_size)};
    std::string pem(static_cast<size_t>(st.st_size), '\0');
    size_t got = 0;
    while (got < pem.size()) {
        ssize_t n = ::read(fd->get(), pem.data() + got, pem.size() - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return Error{fmt::format("{}: {}", path, std::strerror(errno))};
        if (n == 0)
            break;
        got += static_cast<size_t>(n);
    }
    pem.resize(got);
    UniqueBio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    auto no_passphrase = [](char*, int, int, void*) { return 0; };
    UniquePkey key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr) : nullptr);
    OPENSSL_cleanse(pem.data(), pem.size());
    if (!key)
        return failed(path, "cannot read a private key (PEM, not encrypted)");
    return key;
}

// The ALPN list in its wire form: each name preceded by its length. Names
// are printable ASCII (the registered ones are), so that the one chosen can
// go into the environment as it is.
Result<std::string> alpn_wire(const std::vector<std::string>& names)
{
    std::string wire;
    for (const std::string& name : names) {
        if (name.empty() || name.size() > 255)
            return Error{fmt::format("tls alpn: \"{}\" must be 1 to 255 characters long", name)};
        for (char c : name)
            if (c <= 0x20 || c >= 0x7f)
                return Error{fmt::format("tls alpn: \"{}\" must be printable ASCII without spaces", name)};
        wire += static_cast<char>(name.size());
        wire += name;
    }
    return wire;
}

} // namespace

TlsContext::TlsContext(SSL_CTX* ctx, TlsSettings settings, std::string alpn_wire)
    : ctx_(ctx), settings_(std::move(settings)), alpn_wire_(std::move(alpn_wire))
{
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

Result<std::shared_ptr<TlsContext>> TlsContext::load(const TlsSettings& settings, std::vector<std::string>& warnings,
                                                     SystemClock::time_point now)
{
    ERR_clear_error();
    Result<std::string> wire = alpn_wire(settings.alpn);
    if (!wire)
        return Error{wire.error()};

    UniqueCtx ctx(SSL_CTX_new(TLS_server_method()));
    if (!ctx)
        return failed("tls", "cannot make a TLS context");
    int min_version = settings.min_version == TlsVersion::k1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
    if (SSL_CTX_set_min_proto_version(ctx.get(), min_version) != 1)
        return failed("tls", "cannot set the lowest protocol version");
    // Compression leaks plaintext lengths (CRIME); renegotiation is an
    // attack surface no service behind superd needs. Session tickets stay:
    // resumption saves returning clients a full handshake.
    // A client that closes without close_notify (many HTTP clients do) ends
    // its input as a plain TCP client does: the service reads EOF, as it
    // would without TLS, rather than the connection failing.
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    // The relay (tls_stage.h) writes what it has and carries on with the
    // rest; OpenSSL's own buffers go back while a connection is idle.
    SSL_CTX_set_mode(ctx.get(),
                     SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);

    auto cert = open_regular(settings.cert, "the certificate chain");
    if (!cert)
        return Error{cert.error()};
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), fd_path(*cert).c_str()) != 1)
        return failed(settings.cert, "cannot load the certificate chain");
    Result<UniquePkey> key = read_private_key(settings.key);
    if (!key)
        return Error{key.error()};
    // Matched first, for the message: SSL_CTX_use_PrivateKey refuses a
    // mismatch too, but says only "key values mismatch".
    std::string mismatch = fmt::format("the key does not match the certificate in {}", settings.cert);
    if (X509_check_private_key(SSL_CTX_get0_certificate(ctx.get()), key->get()) != 1)
        return failed(settings.key, mismatch);
    if (SSL_CTX_use_PrivateKey(ctx.get(), key->get()) != 1)
        return failed(settings.key, "cannot use the private key");
    if (SSL_CTX_check_private_key(ctx.get()) != 1)
        return failed(settings.key, mismatch);

    if (auto error = check_validity(SSL_CTX_get0_certificate(ctx.get()), true, settings.cert, now, warnings))
        return *error;
    STACK_OF(X509)* chain = nullptr;
    SSL_CTX_get0_chain_certs(ctx.get(), &chain);
    for (int i = 0; chain && i < sk_X509_num(chain); ++i)
        if (auto error = check_validity(sk_X509_value(chain, i), false, settings.cert, now, warnings))
            return *error;

    if (!settings.client_ca.empty()) {
        auto file = open_regular(settings.client_ca, "the client CA certificates");
        if (!file)
            return Error{file.error()};
        std::string path = fd_path(*file);
        const char* ca = path.c_str();
        if (SSL_CTX_load_verify_locations(ctx.get(), ca, nullptr) != 1)
            return failed(settings.client_ca, "cannot load the client CA certificates");
        // The CAs the server names in its request, so that a client with
        // several certificates offers one these can verify.
        STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(ca);
        if (!names)
            return failed(settings.client_ca, "cannot read the client CA names");
        SSL_CTX_set_client_CA_list(ctx.get(), names);
        SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    }
    // A session resumed under verification must come from this context
    // (OpenSSL refuses resumption without one when it verifies clients).
    static constexpr unsigned char kSessionContext[] = "superd";
    SSL_CTX_set_session_id_context(ctx.get(), kSessionContext, sizeof kSessionContext - 1);

    std::shared_ptr<TlsContext> context(new TlsContext(ctx.release(), settings, std::move(*wire)));
    if (!context->alpn_wire_.empty())
        SSL_CTX_set_alpn_select_cb(context->ctx_, select_alpn, context.get());
    return context;
}

// The first configured protocol the client offers, so the configuration's
// order is the preference. With no overlap the handshake goes on without
// ALPN rather than ending with no_application_protocol as RFC 7301 asks:
// superd fronts services of every kind and cannot know that one would not
// serve such a client (an HTTP/1.1 service configured for "h2" still
// speaks HTTP/1.1 to a client that offered only that); the service sees
// SSL_ALPN unset and decides, and a client that needs ALPN aborts itself.
// nginx does the same.
int TlsContext::select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                            unsigned int inlen, void* arg)
{
    const auto* self = static_cast<const TlsContext*>(arg);
    const auto* server = reinterpret_cast<const unsigned char*>(self->alpn_wire_.data());
    unsigned char* chosen = nullptr;
    if (SSL_select_next_proto(&chosen, outlen, server, static_cast<unsigned int>(self->alpn_wire_.size()), in, inlen)
        != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}

UniqueSsl TlsContext::new_session() const { return UniqueSsl(SSL_new(ctx_)); }

std::string tls_failure(SSL* ssl, int result)
{
    int saved = errno;
    int code = SSL_get_error(ssl, result);
    std::string reasons;
    while (unsigned long error = ERR_get_error()) {
        const char* reason = ERR_reason_error_string(error);
        if (!reasons.empty())
            reasons += "; ";
        reasons += reason ? reason : fmt::format("error {:08X}", error);
    }
    ERR_clear_error();
    long verified = SSL_get_verify_result(ssl);
    if (verified != X509_V_OK)
        reasons += fmt::format("{}({})", reasons.empty() ? "" : " ", X509_verify_cert_error_string(verified));
    if (!reasons.empty())
        return reasons;
    if (code == SSL_ERROR_SYSCALL)
        return saved != 0 ? std::string(std::strerror(saved)) : "the client closed the connection";
    if (code == SSL_ERROR_ZERO_RETURN)
        return "the client closed the connection";
    return fmt::format("TLS error {}", code);
}

std::vector<std::string> tls_environment(SSL* ssl)
{
    std::vector<std::string> env;
    env.push_back("HTTPS=on");
    env.push_back(fmt::format("SSL_PROTOCOL={}", SSL_get_version(ssl)));
    if (const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl))
        env.push_back(fmt::format("SSL_CIPHER={}", SSL_CIPHER_get_name(cipher)));

    if (const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)) {
        std::string_view name(sni);
        bool printable = !name.empty();
        for (char c : name)
            printable = printable && c > 0x20 && c < 0x7f;
        if (printable)
            env.push_back(fmt::format("SSL_TLS_SNI={}", name));
    }

    const unsigned char* alpn = nullptr;
    unsigned int alpn_length = 0;
    SSL_get0_alpn_selected(ssl, &alpn, &alpn_length);
    if (alpn_length > 0) // one of the configured names, checked at load
        env.push_back(fmt::format("SSL_ALPN={}", std::string_view(reinterpret_cast<const char*>(alpn), alpn_length)));

    X509* cert = SSL_get0_peer_certificate(ssl);
    if (!cert) {
        env.push_back("SSL_CLIENT_VERIFY=NONE");
        return env;
    }
    long verified = SSL_get_verify_result(ssl);
    env.push_back(verified == X509_V_OK
                      ? std::string("SSL_CLIENT_VERIFY=SUCCESS")
                      : fmt::format("SSL_CLIENT_VERIFY=FAILED:{}", X509_verify_cert_error_string(verified)));
    if (std::string dn = rfc2253(X509_get_subject_name(cert)); !dn.empty())
        env.push_back("SSL_CLIENT_S_DN=" + dn);
    if (std::string dn = rfc2253(X509_get_issuer_name(cert)); !dn.empty())
        env.push_back("SSL_CLIENT_I_DN=" + dn);
    if (UniqueBn serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr)); serial) {
        if (char* hex = BN_bn2hex(serial.get())) {
            env.push_back(fmt::format("SSL_CLIENT_M_SERIAL={}", hex));
            OPENSSL_free(hex);
        }
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_length = 0;
    if (X509_digest(cert, EVP_sha256(), digest, &digest_length) == 1) {
        std::string hex;
        for (unsigned int i = 0; i < digest_length; ++i)
            hex += fmt::format("{:02x}", digest[i]);
        env.push_back("SSL_CLIENT_CERT_SHA256=" + hex);
    }
    ERR_clear_error();
    return env;
}

} // namespace superd
