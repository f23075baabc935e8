#include "superd/listener.h"

#include "superd/log.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

namespace superd {

namespace {

// One turn of accepting drains a burst, but never starves the other
// listeners, signals (a reload) and reaping: it stops after 64 connections
// or 5 ms, whichever comes first. Each accept may spawn, which waits for the
// child's exec; on a loaded machine 64 spawns took over a second.
constexpr int kAcceptBatch = 64;
constexpr std::chrono::milliseconds kAcceptBatchTime{5};

// How long a listener without a shortage hook rests.
constexpr std::chrono::milliseconds kShortagePause{1000};

// listen() caps the backlog at net.core.somaxconn, so asking for the most
// gives the system's maximum.
constexpr int kBacklog = INT_MAX;

// The longest superd's own accept can wait on a socket it once lent.
constexpr std::chrono::microseconds kLentAcceptLimit(10'000);

// accept() honours SO_RCVTIMEO on Linux: a bound on an accept that blocks.
void set_receive_timeout(int fd, std::chrono::microseconds limit)
{
    timeval tv{static_cast<time_t>(limit.count() / 1000000), static_cast<suseconds_t>(limit.count() % 1000000)};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

Error failure(const char* what, const SocketSpec& spec, int err)
{
    return Error{"cannot " + std::string(what) + " " + spec.address.to_string() + ": " + std::strerror(err)};
}

// Makes room for a unix socket at `path`: nothing there, or a socket nobody
// answers on (left by a superd that died), which is removed.
std::optional<Error> clear_unix_path(const SocketSpec& spec)
{
    std::string path(spec.address.path());
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0)
        return errno == ENOENT ? std::nullopt : std::optional<Error>(failure("inspect", spec, errno));
    if (!S_ISSOCK(st.st_mode))
        return Error{"cannot listen on " + spec.address.to_string() + ": the file exists and is not a socket"};
    // Non-blocking: a listener whose backlog is full would hold a blocking
    // connect, and superd with it; it answers EAGAIN instead.
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (probe && (::connect(probe.get(), spec.address.get(), spec.address.length) == 0 || errno == EAGAIN))
        return Error{"cannot listen on " + spec.address.to_string() + ": another process is listening there"};
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        return failure("remove the stale socket", spec, errno);
    return std::nullopt;
}

// A unix socket file is bound at its own path, so that the name the kernel
// keeps for the socket (getsockname, a client's getpeername, ss -x) is the
// path programs check (sd_is_socket_unix with a path). It is born with its
// mode and group, so it is never reachable by those its mode leaves out:
// Linux creates the file with the socket inode's mode less the umask, and
// with the fsgid as its group. bind() never follows a symlink (anything at
// the path makes it fail with EADDRINUSE).
std::optional<Error> bind_unix(int socket, const SocketSpec& spec)
{
    if (spec.mode && ::fchmod(socket, *spec.mode) != 0)
        return failure("chmod", spec, errno);
    // Only with CAP_SETGID (or for one of superd's own gids) does the fsgid
    // change; the group is then set after bind, as the owner always is.
    // setfsgid() returns the previous fsgid whether or not it changed it: an
    // invalid id changes nothing and tells the current one.
    std::optional<int> fsgid;
    if (spec.gid) {
        int previous = ::setfsgid(*spec.gid);
        if (::setfsgid(static_cast<gid_t>(-1)) == static_cast<int>(*spec.gid))
            fsgid = previous;
        else
            ::setfsgid(static_cast<gid_t>(previous));
    }
    // superd is single-threaded: nothing else creates files meanwhile.
    mode_t saved_umask = spec.mode ? ::umask(0) : 0;
    int rc = ::bind(socket, spec.address.get(), spec.address.length);
    int err = errno;
    if (spec.mode)
        ::umask(saved_umask);
    if (fsgid)
        ::setfsgid(static_cast<gid_t>(*fsgid));
    if (rc != 0)
        return failure("bind", spec, err);
    return std::nullopt;
}

// Opens the socket file at the path of `spec` without following a symlink,
// or says what is there instead.
Result<UniqueFd> open_socket_file(const SocketSpec& spec)
{
    std::string path(spec.address.path());
    UniqueFd file(move_high(::open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC)));
    struct stat st;
    if (!file || ::fstat(file.get(), &st) != 0)
        return failure("open", spec, errno);
    if (!S_ISSOCK(st.st_mode))
        return Error{"cannot set the mode of " + spec.address.to_string()
                     + ": the file there is no longer a socket (left as it is)"};
    return file;
}

// Whether two descriptors refer to the same file.
bool same_file(int a, int b)
{
    struct stat sa;
    struct stat sb;
    return ::fstat(a, &sa) == 0 && ::fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

// Mode and owner of the file `file` (opened O_PATH) refers to, never of
// where a symlink points: chmod() through /proc/self/fd names the inode
// itself (fchmod does not take O_PATH descriptors), fchownat() takes the
// descriptor.
std::optional<Error> set_mode_and_owner(int file, std::optional<mode_t> mode, std::optional<uid_t> uid,
                                        std::optional<gid_t> gid, const SocketSpec& spec)
{
    std::string self = "/proc/self/fd/" + std::to_string(file);
    if (mode && ::chmod(self.c_str(), *mode) != 0)
        return failure("chmod", spec, errno);
    if ((uid || gid)
        && ::fchownat(file, "", uid.value_or(static_cast<uid_t>(-1)), gid.value_or(static_cast<gid_t>(-1)),
                      AT_EMPTY_PATH)
               != 0)
        return failure("chown", spec, errno);
    return std::nullopt;
}

// UDP builtins answer from the address a datagram was sent to, which the
// kernel tells with each datagram once asked.
void ask_packet_info(int fd, const SocketSpec& spec)
{
    int one = 1;
    if (spec.protocol == Protocol::kUdp && spec.address.family() == AF_INET)
        ::setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
    if (spec.protocol == Protocol::kUdp && spec.address.family() == AF_INET6)
        ::setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one);
}

} // namespace

static int bit_index(Hold reason)
{
    int i = 0;
    while ((1u << i) != reason)
        ++i;
    return i;
}

std::string SocketSpec::key() const { return std::string(to_string(protocol)) + " " + address.to_string(); }

Result<std::unique_ptr<Listener>> Listener::open(const SocketSpec& spec)
{
    const SocketAddress& address = spec.address;
    int type = spec.protocol == Protocol::kUdp ? SOCK_DGRAM : SOCK_STREAM;

    if (address.family() == AF_UNIX)
        if (auto e = clear_unix_path(spec))
            return *e;

    UniqueFd fd(move_high(::socket(address.family(), type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)));
    if (!fd)
        return failure("create a socket for", spec, errno);
    int one = 1;
    if (address.family() != AF_UNIX && ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        return failure("set SO_REUSEADDR on", spec, errno);
    // Before bind: the kernel lets a second socket bind the address only if
    // both have it (and one user owns both).
    if (spec.reuse_port && ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        return failure("set SO_REUSEPORT on", spec, errno);
    // An IPv6 socket takes IPv6 only, whatever net.ipv6.bindv6only says, so
    // that "PORT" can bind 0.0.0.0 and :: side by side on any host.
    if (address.family() == AF_INET6 && ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0)
        return failure("set IPV6_V6ONLY on", spec, errno);
    ask_packet_info(fd.get(), spec);
    if (address.family() == AF_UNIX) {
        if (auto e = bind_unix(fd.get(), spec))
            return *e;
    } else if (::bind(fd.get(), address.get(), address.length) != 0) {
        return failure("bind", spec, errno);
    }
    std::unique_ptr<Listener> listener(new Listener(std::move(fd), spec));
    if (address.family() == AF_UNIX) {
        // Opened right after bind, the file is ours (or, were it swapped in
        // between, at least a socket, never followed). Owned by the listener
        // from here, it is removed should a step below fail.
        auto file = open_socket_file(spec);
        if (!file)
            return Error{file.error()};
        listener->unix_file_ = std::move(*file);
        // The owner can only be set now; the group too, when the fsgid could
        // not be set to it.
        struct stat st;
        std::optional<gid_t> gid = spec.gid;
        if (gid && ::fstat(listener->unix_file_.get(), &st) == 0 && st.st_gid == *gid)
            gid.reset();
        if (auto e = set_mode_and_owner(listener->unix_file_.get(), std::nullopt, spec.uid, gid, spec))
            return *e;
    }
    if (type == SOCK_STREAM && ::listen(listener->fd(), spec.backlog.value_or(kBacklog)) != 0)
        return failure("listen on", spec, errno);
    return listener;
}

Result<std::unique_ptr<Listener>> Listener::adopt(UniqueFd socket, const SocketSpec& spec)
{
    // Up high, as open() puts its own; move_high keeps it where it is, and
    // as it was, when there is no room up there.
    UniqueFd fd(move_high(socket.release()));
    if (::fcntl(fd.get(), F_SETFD, FD_CLOEXEC) != 0)
        return failure("set close-on-exec on", spec, errno);
    set_nonblocking(fd.get(), true);
    ask_packet_info(fd.get(), spec);
    // The backlog its maker chose stays unless the config sets one.
    if (spec.protocol != Protocol::kUdp && spec.backlog && ::listen(fd.get(), *spec.backlog) != 0)
        return failure("set the backlog of", spec, errno);
    return std::unique_ptr<Listener>(new Listener(std::move(fd), spec));
}

Listener::~Listener()
{
    // Remove our socket file, unless something else has taken its place.
    if (unix_file_) {
        std::string path(spec_.address.path());
        UniqueFd there(::open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
        if (there && same_file(there.get(), unix_file_.get()))
            ::unlink(path.c_str());
    }
}

std::optional<Error> Listener::apply_settings(const SocketSpec& spec)
{
    spec_.mode = spec.mode;
    spec_.uid = spec.uid;
    spec_.gid = spec.gid;
    if (spec_.protocol != Protocol::kUdp && spec.backlog != spec_.backlog) {
        spec_.backlog = spec.backlog;
        if (::listen(fd_.get(), spec_.backlog.value_or(kBacklog)) != 0)
            return failure("set the backlog of", spec_, errno);
    }
    // The kernel decides at bind time (and caches it for the port), so a
    // socket kept by a reload keeps what it was opened with.
    if (spec.reuse_port != spec_.reuse_port)
        return Error{"reuse_port = " + std::string(spec.reuse_port ? "true" : "false") + " on "
                     + spec_.address.to_string() + " takes effect when the socket is opened again (a restart)"};
    // An adopted socket's file is its maker's (see adopt()).
    if (spec_.address.family() != AF_UNIX || !unix_file_)
        return std::nullopt;
    // Whoever can write to the folder may have put a symlink or another
    // file in our socket's place: only our own socket file is changed.
    auto file = open_socket_file(spec_);
    if (!file)
        return Error{file.error()};
    if (!same_file(file->get(), unix_file_.get()))
        return Error{"cannot set the mode of " + spec_.address.to_string()
                     + ": another socket has taken its place (left as it is)"};
    return set_mode_and_owner(unix_file_.get(), spec_.mode, spec_.uid, spec_.gid, spec_);
}

void Listener::accept_with(event_base* base, Timers& timers, AcceptHooks hooks)
{
    accept_ = std::move(hooks);
    on_ready_ = nullptr;
    start(base, timers);
}

void Listener::watch_with(event_base* base, Timers& timers, ReadyHandler handler)
{
    on_ready_ = std::move(handler);
    accept_ = AcceptHooks{};
    start(base, timers);
}

// The first start watches the socket; later ones (a reload) only swap the
// handler, and holds stay on: a wait child may still run.
void Listener::start(event_base* base, Timers& timers)
{
    if (read_event_ || !fd_)
        return;
    base_ = base;
    timers_ = &timers;
    read_event_.reset(event_new(base, fd_.get(), EV_READ | EV_PERSIST, on_readable, this));
    if (!read_event_) {
        spdlog::critical("cannot watch listen={}: out of memory", address());
        return;
    }
    update();
}

void Listener::hand_over()
{
    read_event_.reset();
    watching_ = false;
    unix_file_.reset();
    fd_.reset();
}

void Listener::update()
{
    bool watch = holds_ == 0 && read_event_;
    if (watch == watching_)
        return;
    watching_ = watch;
    if (watch)
        event_add(read_event_.get(), nullptr);
    else if (read_event_)
        event_del(read_event_.get());
}

void Listener::hold(Hold reason)
{
    holds_ |= reason;
    update();
}

void Listener::release(Hold reason)
{
    if (auto& timer = releases_[static_cast<size_t>(bit_index(reason))])
        timer->cancel();
    holds_ &= ~static_cast<unsigned>(reason);
    update();
}

void Listener::hold_for(Hold reason, std::chrono::milliseconds delay)
{
    hold(reason);
    auto& timer = releases_[static_cast<size_t>(bit_index(reason))];
    if (!timer && timers_)
        timer = timers_->timer([this, reason] { release(reason); });
    if (!timer || !timer->valid()) {
        release(reason); // never stay held for want of a timer
        return;
    }
    timer->arm(delay);
}

void Listener::on_readable(evutil_socket_t, short, void* self)
{
    auto* listener = static_cast<Listener*>(self);
    if (listener->on_ready_)
        listener->on_ready_();
    else
        listener->accept_batch();
}

void Listener::lend()
{
    set_nonblocking(fd_.get(), false);
    set_receive_timeout(fd_.get(), std::chrono::microseconds(0)); // the child's accept waits for good
    lent_ = true;
}

void Listener::accept_batch()
{
    // On a socket that went blocking, the accept that should say EAGAIN
    // would wait for the next client, and the whole daemon with it. A
    // process the wait child left behind can clear O_NONBLOCK between
    // this check and an accept: the timeout then ends that accept.
    if (lent_) {
        set_nonblocking(fd_.get(), true);
        set_receive_timeout(fd_.get(), kLentAcceptLimit);
    }
    const auto until = std::chrono::steady_clock::now() + kAcceptBatchTime;
    for (int i = 0; i < kAcceptBatch && !held(); ++i) {
        if (i > 0 && std::chrono::steady_clock::now() >= until)
            return; // still readable: the next turn goes on
        if (accept_.gate && !accept_.gate())
            return;
        SocketAddress peer;
        peer.length = sizeof peer.storage;
        int fd =
            ::accept4(fd_.get(), peer.get(), &peer.length, SOCK_CLOEXEC | (accept_.nonblocking ? SOCK_NONBLOCK : 0));
        if (fd >= 0) {
            accept_.on_connection(UniqueFd(fd), peer);
            continue;
        }
        switch (errno) {
        case EAGAIN:
            return;
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
        // Linux reports a connection's pending network errors on accept();
        // the listener itself is fine (accept(2), "Error handling").
        case ENETDOWN:
        case ENOPROTOOPT:
        case EHOSTDOWN:
        case ENONET:
        case EHOSTUNREACH:
        case EOPNOTSUPP:
        case ENETUNREACH:
        case EPERM: // a firewall rule refused this connection
            continue;
        default:
            if (accept_.on_shortage)
                accept_.on_shortage(errno);
            else
                hold_for(kHoldShortage, kShortagePause);
            return;
        }
    }
}

} // namespace superd
