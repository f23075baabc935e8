// TLS in front of a service, end to end (issue 14): a real superd
// terminates TLS for spawned programs, builtins and forwards, and real
// clients talk to it over loopback: openssl s_client, Python's ssl module,
// curl, and OpenSSL's library in this process. Each test makes its own
// certificates (tls_certs.h). What superd refuses (plaintext, a client
// without the certificate it must show, an old protocol, a handshake that
// stalls, a key others may read) is logged, counted, and costs no process.
#include "tests/harness.h"
#include "tests/tls_certs.h"

#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <openssl/x509.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <sstream>
#include <thread>

using namespace harness;
using Json = nlohmann::json;

namespace {

// One TLS connection as a program makes it with Python's ssl module:
// handshake, send the file --send, then (--half-close) close_notify, and
// read until the server's close_notify. The TLS object works on memory
// buffers and this loop moves the socket's traffic: Python's sockets can
// send a close_notify only by unwrapping, which then waits for the
// server's and drops what comes before it, while TLS lets a client that
// has said all it will say still read the answer. Reading comes first in
// each turn, so nothing waits in the incoming buffer when the close_notify
// goes out. Prints one JSON object (what was negotiated, the error if any);
// the reply goes to the file --out.
constexpr const char* kPythonClient = R"PY(
import argparse, hashlib, json, select, socket, ssl, time

parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("--ca", required=True)
parser.add_argument("--cert")
parser.add_argument("--key")
parser.add_argument("--sni")
parser.add_argument("--alpn")
parser.add_argument("--tls12", action="store_true")
parser.add_argument("--send")
parser.add_argument("--out", required=True)
parser.add_argument("--half-close", action="store_true")
args = parser.parse_args()

context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False  # the chain is verified; the name sent is the test's, not the certificate's
context.load_verify_locations(args.ca)
if args.cert:
    context.load_cert_chain(args.cert, args.key)
if args.alpn:
    context.set_alpn_protocols(args.alpn.split(","))
if args.tls12:
    context.maximum_version = ssl.TLSVersion.TLSv1_2

payload = open(args.send, "rb").read() if args.send else b""
report = {"handshake": False, "error": None}
reply = bytearray()
try:
    sock = socket.create_connection(("127.0.0.1", args.port), timeout=10)
    report["local_port"] = sock.getsockname()[1]
    sock.setblocking(False)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=args.sni)
    unsent = b""
    closed = eof = False
    deadline = time.monotonic() + 20
    while True:
        if not report["handshake"]:
            try:
                tls.do_handshake()
                report.update(handshake=True, version=tls.version(), cipher=tls.cipher()[0],
                              alpn=tls.selected_alpn_protocol(),
                              server_sha256=hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest())
            except ssl.SSLWantReadError:
                pass
        if report["handshake"]:
            try:
                while not eof:
                    data = tls.read(65536)
                    eof = not data
                    reply += data
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                eof = True
            while payload and len(unsent) + outgoing.pending < 1 << 18:
                payload = payload[tls.write(payload[:16384]):]
            if not payload and args.half_close and not closed:
                closed = True
                try:
                    tls.unwrap()
                except ssl.SSLWantReadError:
                    pass
        unsent += outgoing.read()
        if eof:
            break
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no close_notify within 20 s")
        readable, writable, _ = select.select([sock], [sock] if unsent else [], [], left)
        if writable:
            unsent = unsent[sock.send(unsent):]
        if readable:
            data = sock.recv(65536)
            if data:
                incoming.write(data)
            else:
                incoming.write_eof()
    sock.close()
except Exception as e:
    report["error"] = type(e).__name__ + ": " + str(e)
open(args.out, "wb").write(reply)
print(json.dumps(report))
)PY";

// A service that reports what it was given: the family of the socket on
// fd 0 and its peer's address, then its environment, a line each. Then it
// reads until the client's EOF, so that it is still there when the
// client's close_notify comes.
constexpr const char* kReport = R"PY(
import os, socket, sys
stdin = socket.socket(fileno=os.dup(0))
lines = ["family: " + stdin.family.name, "peer: " + repr(stdin.getpeername())]
lines += ["env: %s=%s" % item for item in sorted(os.environ.items())]
sys.stdout.write("".join(line + "\n" for line in lines))
sys.stdout.flush()
sys.stdin.buffer.read()
)PY";

const std::string kPython = "/usr/bin/python3"; // Debian's python3, with its ssl module
const std::string kOpenssl = "/usr/bin/openssl";

// What a Python client asks for.
struct PythonOptions {
    std::string sni{};
    std::string alpn{}; // "h2,http/1.1"
    std::string cert{}; // with key: the client's certificate
    std::string key{};
    bool tls12_only = false;
    std::string send{};
    bool half_close = false;
};

// What it got.
struct PythonOutcome {
    bool handshake = false;
    std::string error; // empty when the exchange ended with the server's close_notify
    std::string version, cipher, alpn, server_sha256;
    uint16_t local_port = 0;
    std::string reply;
};

std::string read_file(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// One connection by the Python client to 127.0.0.1:`port`, trusting the
// Pki's CA.
PythonOutcome python_client(uint16_t port, const Pki& pki, const PythonOptions& options = {})
{
    TempDir dir;
    std::vector<std::string> argv{
        kPython, dir.write("client.py", kPythonClient), std::to_string(port), "--ca", pki.path("ca.pem"),
        "--out", (dir.path() / "reply").string()};
    auto add = [&](const std::string& flag, const std::string& value) {
        if (!value.empty())
            argv.insert(argv.end(), {flag, value});
    };
    add("--sni", options.sni);
    add("--alpn", options.alpn);
    add("--cert", options.cert);
    add("--key", options.key);
    if (!options.send.empty())
        add("--send", dir.write("payload", options.send));
    if (options.tls12_only)
        argv.push_back("--tls12");
    if (options.half_close)
        argv.push_back("--half-close");
    Finished done = run_command(argv, 40s);
    INFO(done.output);
    REQUIRE(done.status == 0);
    // The report is the last line; Python's complaints, if any, come before.
    std::string output = done.output.substr(0, done.output.find_last_not_of('\n') + 1);
    Json report = Json::parse(output.substr(output.rfind('\n') + 1), nullptr, false);
    REQUIRE_FALSE(report.is_discarded());
    PythonOutcome outcome;
    outcome.handshake = report.value("handshake", false);
    outcome.error = report["error"].is_string() ? report["error"].get<std::string>() : "";
    auto text = [&](const char* name) { return report[name].is_string() ? report[name].get<std::string>() : ""; };
    outcome.version = text("version");
    outcome.cipher = text("cipher");
    outcome.alpn = text("alpn");
    outcome.server_sha256 = text("server_sha256");
    outcome.local_port = report.value("local_port", uint16_t{0});
    outcome.reply = read_file((dir.path() / "reply").string());
    return outcome;
}

// A connection that must go through: handshake, reply, close_notify.
PythonOutcome python_served(uint16_t port, const Pki& pki, const PythonOptions& options = {})
{
    PythonOutcome outcome = python_client(port, pki, options);
    INFO(outcome.error);
    REQUIRE(outcome.handshake);
    REQUIRE(outcome.error.empty());
    return outcome;
}

// "program = ..." and "args = [...]" lines.
std::string program_toml(const std::string& program, const std::vector<std::string>& args = {})
{
    std::string text = "program = \"" + program + "\"\n";
    if (!args.empty()) {
        text += "args = [";
        for (size_t i = 0; i < args.size(); ++i)
            text += (i ? ", \"" : "\"") + args[i] + "\"";
        text += "]\n";
    }
    return text;
}

// A service that runs the report above.
std::string report_program(const TempDir& dir)
{
    return program_toml(kPython, {"python3", dir.write("report.py", kReport)});
}

// A [service.NAME] on 127.0.0.1:`port` with `body` (a program's or a
// builtin's lines), and its [service.NAME.tls] table: the Pki's server
// certificate and key, then `tls`.
std::string tls_service(const std::string& name, uint16_t port, const std::string& body, const Pki& pki,
                        const std::string& tls = "")
{
    return "[service." + name + "]\nlisten = [\"" + loopback(port) + "\"]\n" + body + "\n[service." + name
           + ".tls]\ncert = \"" + pki.path("server.pem") + "\"\nkey = \"" + pki.path("server.key") + "\"\n" + tls
           + "\n";
}

// The variables `names` among the "env: NAME=value" lines of a report, a
// line each in the order asked for, those unset left out: compared whole,
// a failure shows them all.
std::string env_of(const std::string& report, const std::vector<std::string>& names)
{
    std::vector<std::string> env = lines_with_prefix(report, "env: ");
    std::string out;
    for (const std::string& name : names)
        for (const std::string& entry : env)
            if (entry.rfind(name + "=", 0) == 0)
                out += entry + "\n";
    return out;
}

// The counters of `service` that tell what became of its TLS connections.
std::string tls_counters(Superd& superd, const std::string& service)
{
    std::string counters = superd.counters(service);
    std::string out;
    for (const char* name : {"accepted", "spawned", "refused_tls", "exited_ok"})
        out += std::string(out.empty() ? "" : " ") + name + "=" + std::to_string(counter(counters, name));
    return out;
}

// The line (from 1) of `text` on which `needle` first stands.
size_t line_of(const std::string& text, const std::string& needle)
{
    size_t at = text.find(needle);
    REQUIRE(at != std::string::npos);
    return 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + static_cast<long>(at), '\n'));
}

// The error superd reports about `config` at some line: the rest of the
// first line of `output` with "CONFIG:LINE: ", from LINE on; empty if none.
std::string config_error(const std::string& output, const std::string& config)
{
    std::istringstream lines(output);
    for (std::string line; std::getline(lines, line);) {
        size_t at = line.find(config + ":");
        if (at != std::string::npos && std::isdigit(static_cast<unsigned char>(line[at + config.size() + 1])))
            return line.substr(at + config.size() + 1);
    }
    return "";
}

// Whether superd logged the refusal of a TLS handshake on `service`, from
// `peer_port` (any when 0), with OpenSSL's reason or the timeout.
bool refused_tls(const Superd& superd, const std::string& service, uint16_t peer_port = 0)
{
    std::regex line("refused service=" + service + R"( peer=127\.0\.0\.1:)"
                    + (peer_port ? std::to_string(peer_port) : std::string(R"(\d+)"))
                    + R"( reason=tls error="[^"\n]+")");
    return eventually([&] { return std::regex_search(superd.log(), line); });
}

// A blocking TLS connection made by OpenSSL's library in this process,
// with the harness's 10 s deadlines on its socket.
class TlsConnection {
public:
    // `before` goes out in plaintext first: a PROXY header, as a balancer
    // sends it.
    TlsConnection(uint16_t port, const Client& client, const std::string& before = "")
        : fd_(connect_tcp(port)), ctx_(client_context(client))
    {
        send_all(fd_.get(), before);
        if (ctx_)
            ssl_ = client_session(ctx_.get(), client, fd_.get());
    }

    bool handshake() { return ssl_ && SSL_connect(ssl_.get()) == 1; }

    bool send(const std::string& data)
    {
        return SSL_write(ssl_.get(), data.data(), static_cast<int>(data.size())) == static_cast<int>(data.size());
    }

    // Up to `n` bytes: fewer at the server's close_notify or an error.
    std::string read(size_t n)
    {
        std::string out;
        char buffer[16384];
        while (out.size() < n) {
            int got = SSL_read(ssl_.get(), buffer, static_cast<int>(std::min(sizeof buffer, n - out.size())));
            if (got <= 0)
                break;
            out.append(buffer, static_cast<size_t>(got));
        }
        return out;
    }

    // True when what comes next is the server's close_notify.
    bool at_close_notify()
    {
        char byte;
        int got = SSL_read(ssl_.get(), &byte, 1);
        return got <= 0 && SSL_get_error(ssl_.get(), got) == SSL_ERROR_ZERO_RETURN;
    }

    // Sends close_notify, then reads until the server's: true when it came
    // with nothing before it.
    bool close() { return SSL_shutdown(ssl_.get()) >= 0 && at_close_notify(); }

    SSL* native() const { return ssl_.get(); }
    int fd() const { return fd_.get(); }

    std::string server_fingerprint() const
    {
        X509* certificate = SSL_get1_peer_certificate(ssl_.get());
        std::string hex = lower_hex_fingerprint(certificate);
        X509_free(certificate);
        return hex;
    }

private:
    UniqueFd fd_;
    UniqueSslCtx ctx_;
    superd::UniqueSsl ssl_;
};

} // namespace

TEST_CASE("TLS echo with Python's ssl module: bytes round-trip, and the client's close_notify is the program's EOF",
          "[tls][integration]")
{
    Pki pki;
    uint16_t echo = free_port(), cat = free_port();
    Superd superd(tls_service("echo", echo, program_toml(service_binary("echo")), pki)
                  + tls_service("cat", cat, program_toml("/bin/cat"), pki));
    std::string payload = random_bytes(1 << 20, 14);

    for (auto [name, port] : {std::pair{"echo", echo}, std::pair{"cat", cat}}) {
        INFO(name);
        PythonOutcome outcome = python_served(port, pki, {.send = payload, .half_close = true});
        CHECK(outcome.version == "TLSv1.3");
        CHECK(outcome.server_sha256 == lower_hex_fingerprint(pki.path("server.pem")));
        CHECK(outcome.reply.size() == payload.size());
        CHECK((outcome.reply == payload));
        // The program read EOF, not an error, and exited by itself.
        REQUIRE(superd.wait_for_log(std::string("exited service=") + name));
        CHECK(tls_counters(superd, name) == "accepted=1 spawned=1 refused_tls=0 exited_ok=1");
    }
}

TEST_CASE("TLS echo with openssl s_client: lines round-trip, and its EOF ends the program", "[tls][integration]")
{
    Pki pki;
    uint16_t port = free_port();
    Superd superd(tls_service("echo", port, program_toml(service_binary("echo")), pki));

    // -quiet alone would ignore the end of its input; -no_ign_eof after it
    // makes that end its close_notify.
    Process client({kOpenssl, "s_client", "-connect", loopback(port), "-CAfile", pki.path("ca.pem"),
                    "-verify_return_error", "-quiet", "-no_ign_eof"},
                   true);
    send_all(client.input(), "one line\n");
    CHECK(eventually([&] { return client.output().find("one line\n") != std::string::npos; }));
    send_all(client.input(), "and another\n");
    CHECK(eventually([&] { return client.output().find("and another\n") != std::string::npos; }));
    client.close_input();
    CHECK(eventually([&] { return client.exited(); }));
    REQUIRE(superd.wait_for_log("exited service=echo"));
    CHECK(tls_counters(superd, "echo") == "accepted=1 spawned=1 refused_tls=0 exited_ok=1");
    INFO(client.output());
    CHECK(client.output().find("verify error") == std::string::npos);
}

TEST_CASE("A program that shuts down its write side gives the client close_notify, and still reads the client",
          "[tls][integration]")
{
    Pki pki;
    TempDir scripts;
    std::string received = (scripts.path() / "received").string();
    // Says one line, shuts its socket's write side, then keeps what the
    // client sends until the client's EOF.
    std::string program = scripts.write("half.py", R"PY(
import os, socket, sys
peer = socket.socket(fileno=os.dup(0))
peer.sendall(b"ready\n")
peer.shutdown(socket.SHUT_WR)
data = b""
while chunk := peer.recv(65536):
    data += chunk
open(sys.argv[1], "wb").write(data)
)PY");
    uint16_t port = free_port();
    Superd superd(tls_service("half", port, program_toml(kPython, {"python3", program, received}), pki));
    NoSigpipe no_sigpipe;

    TlsConnection connection(port, {.ca = pki.path("ca.pem")});
    REQUIRE(connection.handshake());
    CHECK(connection.read(6) == "ready\n");
    CHECK(connection.at_close_notify());
    CHECK(connection.send("after your close_notify\n"));
    CHECK(SSL_shutdown(connection.native()) >= 0);
    REQUIRE(superd.wait_for_log("exited service=half"));
    CHECK(tls_counters(superd, "half") == "accepted=1 spawned=1 refused_tls=0 exited_ok=1");
    CHECK(read_file(received) == "after your close_notify\n");
}

TEST_CASE("A TLS program sees HTTPS, the protocol, cipher, SNI, ALPN and the real client, and a socketpair on fd 0",
          "[tls][integration]")
{
    Pki pki;
    TempDir scripts;
    uint16_t port = free_port();
    Superd superd(tls_service("report", port, report_program(scripts), pki, "alpn = [\"h2\", \"http/1.1\"]\n"));

    // The server's order of ALPN names decides, not the client's.
    PythonOutcome outcome =
        python_served(port, pki, {.sni = "service.example", .alpn = "http/1.1,h2", .half_close = true});
    const std::string& report = outcome.reply;
    INFO(report);
    CHECK(outcome.version == "TLSv1.3");
    CHECK(outcome.alpn == "h2");
    CHECK(env_of(report, {"HTTPS", "SSL_PROTOCOL", "SSL_CIPHER", "SSL_TLS_SNI", "SSL_ALPN", "SSL_CLIENT_VERIFY",
                          "SSL_CLIENT_S_DN"})
          == "HTTPS=on\nSSL_PROTOCOL=" + outcome.version + "\nSSL_CIPHER=" + outcome.cipher
                 + "\nSSL_TLS_SNI=service.example\nSSL_ALPN=h2\nSSL_CLIENT_VERIFY=NONE\n");
    // The client is the TCP client, not superd's end of the relay...
    REQUIRE(outcome.local_port != 0);
    std::string client_port = std::to_string(outcome.local_port);
    CHECK(env_of(report, {"REMOTE_ADDR", "REMOTE_PORT", "TCPREMOTEIP", "TCPREMOTEPORT", "TCPLOCALIP", "TCPLOCALPORT"})
          == "REMOTE_ADDR=127.0.0.1\nREMOTE_PORT=" + client_port + "\nTCPREMOTEIP=127.0.0.1\nTCPREMOTEPORT="
                 + client_port + "\nTCPLOCALIP=127.0.0.1\nTCPLOCALPORT=" + std::to_string(port) + "\n");
    // ...while fd 0 is one end of a unix socketpair: its peer has no
    // address, and the variables are the only way to the client.
    CHECK(lines_with_prefix(report, "family: ") == std::vector<std::string>{"AF_UNIX"});
    CHECK(lines_with_prefix(report, "peer: ") == std::vector<std::string>{"''"});

    // No SNI and no ALPN offered: no variable for either.
    outcome = python_served(port, pki, {.half_close = true});
    CHECK(env_of(outcome.reply, {"HTTPS", "SSL_TLS_SNI", "SSL_ALPN"}) == "HTTPS=on\n");
    CHECK(outcome.alpn.empty());
}

TEST_CASE("client_ca: a client certificate from the CA is verified and described, a client without one refused",
          "[tls][integration]")
{
    Pki pki;
    pki.issue("alice", "/O=Example/CN=alice");
    Pki stranger("Stranger CA");
    stranger.issue("mallory", "/CN=mallory");
    TempDir scripts;
    uint16_t port = free_port();
    Superd superd(
        tls_service("whoami", port, report_program(scripts), pki, "client_ca = \"" + pki.path("ca.pem") + "\"\n"));

    PythonOutcome alice =
        python_served(port, pki, {.cert = pki.path("alice.pem"), .key = pki.path("alice.key"), .half_close = true});
    INFO(alice.reply);
    std::string fingerprint = lower_hex_fingerprint(pki.path("alice.pem"));
    REQUIRE(fingerprint.size() == 64);
    CHECK(env_of(alice.reply, {"SSL_CLIENT_VERIFY", "SSL_CLIENT_S_DN", "SSL_CLIENT_I_DN", "SSL_CLIENT_CERT_SHA256"})
          == "SSL_CLIENT_VERIFY=SUCCESS\nSSL_CLIENT_S_DN=CN=alice,O=Example\nSSL_CLIENT_I_DN=CN=Test CA\n"
             "SSL_CLIENT_CERT_SHA256="
                 + fingerprint + "\n");

    // In TLS 1.3 the client's handshake ends before the server has judged
    // it: the refusal comes as the first thing it reads.
    PythonOutcome anonymous = python_client(port, pki, {.half_close = true});
    CHECK_FALSE(anonymous.error.empty());
    CHECK(anonymous.reply.empty());
    REQUIRE(anonymous.local_port != 0);
    CHECK(refused_tls(superd, "whoami", anonymous.local_port));

    PythonOutcome mallory = python_client(
        port, pki, {.cert = stranger.path("mallory.pem"), .key = stranger.path("mallory.key"), .half_close = true});
    CHECK_FALSE(mallory.error.empty());
    CHECK(mallory.reply.empty());
    CHECK(refused_tls(superd, "whoami", mallory.local_port));

    REQUIRE(superd.wait_for_log("exited service=whoami"));
    CHECK(tls_counters(superd, "whoami") == "accepted=3 spawned=1 refused_tls=2 exited_ok=1");
}

TEST_CASE("Plaintext sent to a TLS port is refused, logged and counted, and nothing is spawned", "[tls][integration]")
{
    Pki pki;
    uint16_t port = free_port();
    Superd superd(tls_service("secure", port, program_toml(service_binary("echo")), pki));

    UniqueFd fd = connect_tcp(port);
    send_all(fd.get(), "GET / HTTP/1.0\r\n\r\n");
    // superd may answer with an alert; never with the request echoed.
    std::string answer = read_to_eof(fd.get());
    CHECK(answer.find("GET") == std::string::npos);
    CHECK(refused_tls(superd, "secure"));
    CHECK(tls_counters(superd, "secure") == "accepted=1 spawned=0 refused_tls=1 exited_ok=0");
    CHECK(superd.children().empty());
}

TEST_CASE("A stalled handshake is dropped at handshake_timeout, and no process is spawned", "[tls][integration]")
{
    Pki pki;
    uint16_t port = free_port();
    Superd superd(tls_service("slow", port, program_toml(service_binary("echo")), pki, "handshake_timeout = \"1s\"\n"));

    // One client says nothing, the other half a ClientHello: a handshake
    // record announcing 512 bytes, of which come 11.
    UniqueFd silent = connect_tcp(port);
    UniqueFd halfway = connect_tcp(port);
    send_all(halfway.get(), std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11));
    // Both are closed by superd (the deadline of the reads is 10 s).
    read_to_eof(silent.get());
    read_to_eof(halfway.get());
    size_t timed_out = superd.settled_count("reason=tls error=\"handshake timed out after 1000ms\"", 2);
    INFO(superd.log());
    CHECK(timed_out == 2);
    CHECK(tls_counters(superd, "slow") == "accepted=2 spawned=0 refused_tls=2 exited_ok=0");
    CHECK(superd.children().empty());
}

TEST_CASE("min_version 1.3 refuses a client that speaks only TLS 1.2", "[tls][integration]")
{
    Pki pki;
    uint16_t strict = free_port(), lenient = free_port();
    Superd superd(tls_service("strict", strict, program_toml(service_binary("echo")), pki, "min_version = \"1.3\"\n")
                  + tls_service("lenient", lenient, program_toml(service_binary("echo")), pki));

    Finished old_client = run_command({kOpenssl, "s_client", "-connect", loopback(strict), "-CAfile",
                                       pki.path("ca.pem"), "-verify_return_error", "-tls1_2"},
                                      20s);
    INFO(old_client.output);
    CHECK(old_client.status != 0);
    PythonOutcome python12 = python_client(strict, pki, {.tls12_only = true, .half_close = true});
    CHECK_FALSE(python12.handshake);
    CHECK(refused_tls(superd, "strict", python12.local_port));
    CHECK(superd.settled_count("refused service=strict ", 2) == 2);
    CHECK_THAT(superd.log(), Catch::Contains("unsupported protocol"));
    CHECK(tls_counters(superd, "strict") == "accepted=2 spawned=0 refused_tls=2 exited_ok=0");

    // TLS 1.3 gets through; and where 1.2 is the minimum, so does 1.2.
    CHECK(python_served(strict, pki, {.send = "new\n", .half_close = true}).reply == "new\n");
    PythonOutcome lenient12 = python_served(lenient, pki, {.tls12_only = true, .send = "old\n", .half_close = true});
    CHECK(lenient12.version == "TLSv1.2");
    CHECK(lenient12.reply == "old\n");
}

TEST_CASE("builtin echo behind TLS answers Python's ssl module", "[tls][integration]")
{
    Pki pki;
    uint16_t port = free_port();
    Superd superd(tls_service("echo", port, "builtin = \"echo\"\n", pki));
    std::string payload = random_bytes(256 * 1024, 7);
    PythonOutcome outcome = python_served(port, pki, {.send = payload, .half_close = true});
    CHECK(outcome.reply.size() == payload.size());
    CHECK((outcome.reply == payload));
    CHECK(tls_counters(superd, "echo") == "accepted=1 spawned=0 refused_tls=0 exited_ok=0");
}

TEST_CASE("forward behind TLS takes curl to a plain HTTP backend", "[tls][integration]")
{
    Pki pki;
    TempDir site;
    site.write("hello.txt", "hello from behind TLS\n");
    uint16_t backend = free_port(), port = free_port();
    Process http({kPython, "-m", "http.server", "--bind", "127.0.0.1", "--directory", site.path().string(),
                  std::to_string(backend)});
    REQUIRE(eventually([&] { return !refused(backend); }));
    Superd superd(
        tls_service("https", port, "builtin = \"forward\"\nforward_to = \"" + loopback(backend) + "\"\n", pki));

    auto fetch = [&](const Pki& trusted) {
        std::string host = "localhost:" + std::to_string(port);
        return run_command({"/usr/bin/curl", "--silent", "--show-error", "--max-time", "10", "--resolve",
                            host + ":127.0.0.1", "--cacert", trusted.path("ca.pem"), "https://" + host + "/hello.txt"},
                           20s);
    };
    Finished fetched = fetch(pki);
    INFO(fetched.output);
    CHECK(fetched.status == 0);
    CHECK(fetched.output == "hello from behind TLS\n");

    // curl trusts only that CA: a certificate from another is refused by it.
    CHECK(fetch(Pki("Other CA")).status != 0);
}

TEST_CASE("Reload rotates the certificate under load: no connection fails, new ones get the new certificate",
          "[tls][integration]")
{
    Pki pki;
    pki.issue("next", "/CN=localhost");
    std::string old_fingerprint = lower_hex_fingerprint(pki.path("server.pem"));
    std::string new_fingerprint = lower_hex_fingerprint(pki.path("next.pem"));
    REQUIRE(old_fingerprint != new_fingerprint);
    uint16_t port = free_port();
    Superd superd(tls_service("rotating", port, program_toml(service_binary("echo")), pki));
    Client client{.ca = pki.path("ca.pem")};
    NoSigpipe no_sigpipe;

    TlsConnection established(port, client);
    REQUIRE(established.handshake());
    REQUIRE(established.send("before\n"));
    REQUIRE(established.read(7) == "before\n");

    // Each connection notes the phase it started in: 0 before the files
    // are replaced, 1 until the reload has been applied, 2 after.
    struct Outcome {
        int phase;
        std::string fingerprint;
        std::string error;
    };
    std::atomic<int> phase{0};
    std::atomic<bool> stop{false};
    std::mutex mutex;
    std::vector<Outcome> outcomes;
    auto count = [&](int in_phase) {
        std::lock_guard lock(mutex);
        return std::count_if(outcomes.begin(), outcomes.end(), [&](const Outcome& o) { return o.phase == in_phase; });
    };
    std::vector<std::thread> clients;
    for (int i = 0; i < 4; ++i)
        clients.emplace_back([&] {
            NoSigpipe thread_no_sigpipe;
            while (!stop) {
                Outcome outcome{phase, "", ""};
                try {
                    TlsConnection connection(port, client);
                    if (!connection.handshake())
                        outcome.error = "handshake: " + thread_errors();
                    else if (!connection.send("ping\n") || connection.read(5) != "ping\n")
                        outcome.error = "echo: " + thread_errors();
                    else if (!connection.close())
                        outcome.error = "close: " + thread_errors();
                    else
                        outcome.fingerprint = connection.server_fingerprint();
                } catch (const std::exception& e) {
                    outcome.error = e.what();
                }
                std::lock_guard lock(mutex);
                outcomes.push_back(outcome);
            }
        });
    struct Joiner {
        std::atomic<bool>& stop;
        std::vector<std::thread>& threads;
        ~Joiner()
        {
            stop = true;
            for (std::thread& t : threads)
                t.join();
        }
    } joiner{stop, clients};

    CHECK(eventually([&] { return count(0) >= 20; }, 30s));
    // As certbot does: the new files beside the old, renamed over them.
    std::filesystem::copy_file(pki.path("next.pem"), pki.path("server.pem.new"));
    std::filesystem::copy_file(pki.path("next.key"), pki.path("server.key.new"));
    REQUIRE(::chmod(pki.path("server.key.new").c_str(), 0600) == 0);
    std::filesystem::rename(pki.path("server.pem.new"), pki.path("server.pem"));
    std::filesystem::rename(pki.path("server.key.new"), pki.path("server.key"));
    phase = 1;
    REQUIRE(superd.reload());
    phase = 2;
    CHECK(eventually([&] { return count(2) >= 20; }, 30s));
    stop = true;
    for (std::thread& t : clients)
        t.join();
    clients.clear();

    size_t failed = 0;
    for (const Outcome& o : outcomes) {
        INFO("phase " << o.phase << ": " << o.error);
        if (!o.error.empty())
            ++failed;
        CHECK(o.error.empty());
        if (o.phase == 0)
            CHECK(o.fingerprint == old_fingerprint);
        if (o.phase == 2)
            CHECK(o.fingerprint == new_fingerprint);
        if (failed > 5)
            break; // the first few say enough
    }

    // The connection made before the reload goes on with its certificate.
    CHECK(established.send("after\n"));
    CHECK(established.read(6) == "after\n");
    CHECK(established.server_fingerprint() == old_fingerprint);
    CHECK(established.close());
}

TEST_CASE("A private key others may read is refused at load with FILE:LINE, and a reload keeps the old config",
          "[tls][integration]")
{
    Pki pki;
    uint16_t port = free_port();
    std::string config = tls_service("secure", port, program_toml(service_binary("echo")), pki);
    // The error is at the line of the tls table, and names the key file.
    std::string tls_line = std::to_string(line_of(config, "[service.secure.tls]"));
    std::string key_error = pki.path("server.key") + ": mode 0644";

    REQUIRE(::chmod(pki.path("server.key").c_str(), 0644) == 0);
    TempDir dir;
    std::string path = dir.write("superd.toml", config);
    Finished check = run_superd({"--check", "--config", path});
    INFO(check.output);
    CHECK(check.status == 2);
    std::string error = config_error(check.output, path);
    CHECK_THAT(error, Catch::StartsWith(tls_line + ": ") && Catch::Contains(key_error));

    // Started with a good key, then the key's mode is widened: the reload
    // is refused, and the service goes on with what it had.
    REQUIRE(::chmod(pki.path("server.key").c_str(), 0600) == 0);
    Superd superd(config);
    REQUIRE(::chmod(pki.path("server.key").c_str(), 0644) == 0);
    CHECK_FALSE(superd.reload());
    std::string superd_config = (superd.dir().path() / "superd.toml").string();
    CHECK_THAT(superd.log(), Catch::Contains("reload failed reason=\"" + superd_config + ":" + tls_line + ": ")
                                 && Catch::Contains(key_error));
    CHECK(python_served(port, pki, {.send = "still here\n", .half_close = true}).reply == "still here\n");
}

TEST_CASE("tls on a UDP service or a wait service is an error at load with FILE:LINE", "[tls][integration]")
{
    Pki pki;
    TempDir dir;
    uint16_t port = free_port();
    std::string udp = tls_service("udp", port, "protocol = \"udp\"\nbuiltin = \"echo\"\n", pki);
    std::string wait = tls_service("wait", port, program_toml(waiter_binary()) + "mode = \"wait\"\n", pki);
    for (const std::string& config : {udp, wait}) {
        std::string path = dir.write("superd.toml", config);
        Finished check = run_superd({"--check", "--config", path});
        INFO(config << check.output);
        CHECK(check.status == 2);
        CHECK_THAT(config_error(check.output, path), Catch::Matches("[0-9]+: .*tls.*"));
    }
    // tls itself is known: on a TCP service that spawns per connection it
    // loads, and so do the same services without it.
    std::string stream = tls_service("stream", port, program_toml(service_binary("echo")), pki);
    std::string plain = udp.substr(0, udp.find("[service.udp.tls]")) + wait.substr(0, wait.find("[service.wait.tls]"));
    for (const std::string& config : {stream, plain}) {
        Finished check = run_superd({"--check", "--config", dir.write("superd.toml", config)});
        INFO(config << check.output);
        CHECK(check.status == 0);
    }
}

TEST_CASE("A client's reset, or a client idling after its program has gone, leaves no connection or descriptor",
          "[tls][integration]")
{
    Pki pki;
    uint16_t cat = free_port(), bye = free_port();
    Superd superd(tls_service("cat", cat, program_toml("/bin/cat"), pki)
                  + tls_service("bye", bye, program_toml("/bin/sh", {"sh", "-c", "echo bye"}), pki));
    size_t baseline = fd_count(superd.pid());
    Client client{pki.path("ca.pem")};

    // Reset in the middle of a transfer: the relay resets too, closes its
    // end, and cat reads EOF and exits.
    {
        NoSigpipe quiet;
        TlsConnection c(cat, client);
        REQUIRE(c.handshake());
        REQUIRE(c.send(random_bytes(200000, 7)));
        CHECK(c.read(1000).size() == 1000);
        linger hard{1, 0};
        ::setsockopt(c.fd(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    }
    CHECK(eventually([&] { return counter(superd.counters("cat"), "running") == 0; }));
    CHECK(eventually([&] { return superd.children().empty(); }));

    // The program says its line and exits; the client reads to the
    // close_notify and then neither sends nor closes. As with a TCP
    // connection its program closed, superd closes it: it is not counted
    // for ever, and the client sees the end of the socket.
    TlsConnection idle(bye, client);
    REQUIRE(idle.handshake());
    CHECK(idle.read(100) == "bye\n");
    CHECK(eventually([&] { return counter(superd.counters("bye"), "running") == 0; }));
    char byte;
    CHECK(::recv(idle.fd(), &byte, 1, 0) == 0); // its FIN, after the close_notify

    CHECK(eventually([&] { return fd_count(superd.pid()) == baseline; }));
}

TEST_CASE("A PROXY header comes before the handshake: behind both, a program and a builtin serve the header's client",
          "[tls][proxy][integration]")
{
    Pki pki;
    uint16_t program = free_port(), builtin = free_port();
    std::string proxy = "proxy_protocol = \"v1\"\nproxy_from = [\"127.0.0.1\"]\n";
    Superd superd(
        tls_service("env", program,
                    program_toml("/bin/sh", {"sh", "-c", "echo $REMOTE_ADDR $REMOTE_PORT $PROXY_ADDR $HTTPS"}) + proxy,
                    pki)
        + tls_service("becho", builtin, "builtin = \"echo\"\n" + proxy, pki));
    Client client{pki.path("ca.pem")};

    TlsConnection env(program, client, "PROXY TCP4 192.0.2.7 127.0.0.1 4711 443\r\n");
    REQUIRE(env.handshake());
    CHECK(env.read(100) == "192.0.2.7 4711 127.0.0.1 on\n");
    TlsConnection echo(builtin, client, "PROXY TCP4 192.0.2.8 127.0.0.1 4712 443\r\n");
    REQUIRE(echo.handshake());
    REQUIRE(echo.send("through both\n"));
    CHECK(echo.read(13) == "through both\n");
    CHECK(echo.close());
    // The handshake where the header should be is no header.
    NoSigpipe quiet;
    TlsConnection bare(program, client);
    CHECK_FALSE(bare.handshake());
    std::string counters = superd.counters("env");
    CHECK(counter(counters, "refused_proxy") == 1);
    CHECK(counter(counters, "refused_tls") == 0);
    CHECK(counter(counters, "spawned") == 1);
}
