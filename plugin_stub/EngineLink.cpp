// The worker thread: all ZeroMQ and msgpack work happens here, none on the audio thread.
#define MSGPACK_NO_BOOST 1

#include "EngineLink.hpp"

#include <chrono>
#include <cstring>
#include <iterator>
#include <memory>
#include <vector>

#include <msgpack.hpp>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "protocol.hpp"

namespace dm {
namespace {

namespace p = protocol;
using Clock = std::chrono::steady_clock;

constexpr auto kPingInterval = std::chrono::milliseconds(1000);
constexpr auto kSilenceTimeout = std::chrono::milliseconds(3000);  // then reconnect
constexpr auto kStartupGrace = std::chrono::milliseconds(500);  // for the first welcome
constexpr int kPollMs = 2;

using Packer = msgpack::packer<msgpack::sbuffer>;

void packStr(Packer& pk, const char* s) { pk.pack(std::string(s)); }

// Header common part: v, type, id; `extra` more map entries follow, then the caller packs frames.
void packHead(Packer& pk, const char* type, std::uint64_t id, std::uint32_t extra) {
    pk.pack_map(4 + extra);
    packStr(pk, "v"); pk.pack(p::kProtocolVersion);
    packStr(pk, "type"); packStr(pk, type);
    packStr(pk, "id"); pk.pack(id);
}

void sendSimple(zmq::socket_t& sock, const char* type, std::uint64_t id) {
    msgpack::sbuffer buf;
    Packer pk(buf);
    const bool hello = std::strcmp(type, p::request::kHello) == 0;
    packHead(pk, type, id, hello ? 1 : 0);
    if (hello) {
        packStr(pk, "client"); packStr(pk, "deep-musician-plugin");
    }
    packStr(pk, "frames"); pk.pack_array(0);
    sock.send(zmq::buffer(buf.data(), buf.size()), zmq::send_flags::dontwait);
}

// `ensemble` is sent with every block (the engine reads it on a session's first); `reset` after a
// transport jump, a new ensemble or a reconnect.
void sendLiveNotes(zmq::socket_t& sock, const std::string& session, std::uint64_t id,
                   std::int64_t positionTicks, double qpm, const char* ensemble, bool reset,
                   const std::vector<OutgoingEvent>& notes) {
    msgpack::sbuffer buf;
    Packer pk(buf);
    packHead(pk, p::request::kLiveNotes, id, reset ? 7 : 6);
    packStr(pk, "ensemble"); packStr(pk, ensemble);
    packStr(pk, "session"); pk.pack(session);
    packStr(pk, "position_ticks"); pk.pack(positionTicks < 0 ? std::int64_t(0) : positionTicks);
    packStr(pk, "resolution"); pk.pack(EngineLink::kResolution);
    packStr(pk, "qpm"); pk.pack(qpm > 0.0 ? qpm : p::kDefaultQpm);
    packStr(pk, "task"); packStr(pk, p::kLiveTaskArrange);
    if (reset) { packStr(pk, "reset"); pk.pack(true); }
    packStr(pk, "frames"); pk.pack_array(1);
    pk.pack_map(2);
    packStr(pk, "dtype"); packStr(pk, p::dtype::kNotes);
    packStr(pk, "shape"); pk.pack_array(1); pk.pack(static_cast<std::uint64_t>(notes.size()));

    // Note-ons only: a live note's length is not known when it is sent, so it goes as one beat.
    std::vector<std::uint8_t> frame(notes.size() * p::note::kSizeBytes);
    for (std::size_t i = 0; i < notes.size(); ++i) {
        std::uint8_t* rec = frame.data() + i * p::note::kSizeBytes;
        const std::int64_t time = notes[i].ticks < 0 ? 0 : notes[i].ticks;
        const std::int64_t duration = EngineLink::kResolution;
        std::memcpy(rec + p::note::kTimeOffset, &time, 8);  // little-endian hosts only (x86, arm64)
        rec[p::note::kPitchOffset] = notes[i].pitch;
        std::memcpy(rec + p::note::kDurationOffset, &duration, 8);
        rec[p::note::kVelocityOffset] = notes[i].velocity;
    }
    sock.send(zmq::buffer(buf.data(), buf.size()), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    sock.send(zmq::buffer(frame.data(), frame.size()), zmq::send_flags::dontwait);
}

struct Reply {
    std::string type;
    std::uint64_t id = 0;
    std::vector<std::string> frameDtypes;
};

bool parseHeader(const zmq::message_t& msg, Reply& out) {
    try {
        msgpack::object_handle oh = msgpack::unpack(static_cast<const char*>(msg.data()), msg.size());
        const msgpack::object& obj = oh.get();
        if (obj.type != msgpack::type::MAP)
            return false;
        for (std::uint32_t i = 0; i < obj.via.map.size; ++i) {
            const msgpack::object_kv& kv = obj.via.map.ptr[i];
            if (kv.key.type != msgpack::type::STR)
                continue;
            const std::string key = kv.key.as<std::string>();
            if (key == "type" && kv.val.type == msgpack::type::STR)
                out.type = kv.val.as<std::string>();
            else if (key == "id" && kv.val.type == msgpack::type::POSITIVE_INTEGER)
                out.id = kv.val.as<std::uint64_t>();
            else if (key == "v" && !(kv.val.type == msgpack::type::POSITIVE_INTEGER
                                     && kv.val.as<int>() == p::kProtocolVersion))
                return false;  // another protocol version: ignore the message
            else if (key == "frames" && kv.val.type == msgpack::type::ARRAY)
                for (std::uint32_t f = 0; f < kv.val.via.array.size; ++f) {
                    const msgpack::object& d = kv.val.via.array.ptr[f];
                    std::string dtype;
                    if (d.type == msgpack::type::MAP)
                        for (std::uint32_t j = 0; j < d.via.map.size; ++j)
                            if (d.via.map.ptr[j].key.type == msgpack::type::STR
                                && d.via.map.ptr[j].key.as<std::string>() == "dtype"
                                && d.via.map.ptr[j].val.type == msgpack::type::STR)
                                dtype = d.via.map.ptr[j].val.as<std::string>();
                    out.frameDtypes.push_back(dtype);
                }
        }
        return !out.type.empty();
    } catch (const std::exception&) {
        return false;  // never trust wire input: a malformed reply is dropped, the worker goes on
    }
}

}  // namespace

EngineLink::EngineLink(std::string endpoint, std::string session)
    : fEndpoint(std::move(endpoint)), fSession(std::move(session)) {}

EngineLink::~EngineLink() { stop(); }

void EngineLink::start() {
    if (fRunning.exchange(true))
        return;
    fThread = std::thread([this] { workerLoop(); });
}

void EngineLink::stop() {
    if (!fRunning.exchange(false))
        return;
    if (fThread.joinable())
        fThread.join();
    fConnected.store(false);
}

void EngineLink::workerLoop() {
    zmq::context_t context(1);
    std::unique_ptr<zmq::socket_t> sock;
    Clock::time_point lastHeard, lastPing, connectedAt;
    std::uint64_t nextId = 1ull << 40;  // ids of hello/ping; live_notes ids are block numbers
    std::vector<OutgoingEvent> notes;
    notes.reserve(4096);
    bool reset = true;
    const char* ensemble = kEnsembles[0];
    bool firstAttempt = true;  // until the first welcome or kStartupGrace: queue notes, let offline wait
    std::uint64_t lastBlock = 0;

    const auto connect = [&] {
        sock = std::make_unique<zmq::socket_t>(context, zmq::socket_type::dealer);
        sock->set(zmq::sockopt::linger, 0);
        sock->set(zmq::sockopt::sndhwm, 1000);
        sock->connect(fEndpoint);
        sendSimple(*sock, p::request::kHello, nextId++);
        lastHeard = lastPing = connectedAt = Clock::now();
        reset = true;  // a restarted engine has lost the session's state
    };
    connect();

    while (fRunning.load(std::memory_order_relaxed)) {
        zmq::pollitem_t items[] = {{static_cast<void*>(*sock), 0, ZMQ_POLLIN, 0}};
        zmq::poll(items, 1, std::chrono::milliseconds(kPollMs));

        std::vector<zmq::message_t> parts;
        while (true) {
            parts.clear();
            if (!zmq::recv_multipart(*sock, std::back_inserter(parts), zmq::recv_flags::dontwait))
                break;
            Reply reply;
            if (parts.empty() || !parseHeader(parts[0], reply))
                continue;
            lastHeard = Clock::now();
            fConnected.store(true, std::memory_order_relaxed);
            if (reply.type == p::reply::kNotes && parts.size() >= 2 && !reply.frameDtypes.empty()
                && reply.frameDtypes[0] == p::dtype::kNotes) {
                const zmq::message_t& noteFrame = parts[1];
                const std::size_t n = noteFrame.size() / p::note::kSizeBytes;
                const bool hasParts = parts.size() >= 3 && reply.frameDtypes.size() >= 2
                                      && reply.frameDtypes[1] == p::dtype::kUInt8 && parts[2].size() == n;
                const auto* bytes = static_cast<const std::uint8_t*>(noteFrame.data());
                for (std::size_t i = 0; i < n; ++i) {
                    const std::uint8_t* rec = bytes + i * p::note::kSizeBytes;
                    ArrangedNote note{};
                    std::memcpy(&note.timeTicks, rec + p::note::kTimeOffset, 8);
                    std::memcpy(&note.durationTicks, rec + p::note::kDurationOffset, 8);
                    note.pitch = rec[p::note::kPitchOffset];
                    note.velocity = rec[p::note::kVelocityOffset];
                    note.part = hasParts ? static_cast<const std::uint8_t*>(parts[2].data())[i] : 0;
                    fArranged.push(note);
                }
            } else if (reply.type == p::reply::kDone || reply.type == p::reply::kError) {
                if (reply.type == p::reply::kError)
                    fErrors.fetch_add(1, std::memory_order_relaxed);
                if (reply.id < (1ull << 40) && reply.id > fAnsweredBlock.load())
                    fAnsweredBlock.store(reply.id);
            }
        }

        OutgoingEvent ev;
        while (fOutgoing.pop(ev)) {
            if (ev.kind == OutgoingEvent::kNote) {
                notes.push_back(ev);
            } else if (ev.kind == OutgoingEvent::kReset) {
                reset = true;
                ensemble = kEnsembles[ev.pitch < kEnsembleCount ? ev.pitch : 0];
            } else {
                lastBlock = ev.blockSeq;
                const bool connected = fConnected.load(std::memory_order_relaxed);
                if (!notes.empty() && (connected || firstAttempt)) {
                    // Before the first welcome the DEALER queues the message until it connects.
                    sendLiveNotes(*sock, fSession, ev.blockSeq, ev.ticks, ev.qpm, ensemble, reset, notes);
                    reset = false;
                } else {
                    // Nothing to send, or no engine: answered at once, so an offline host never
                    // waits on an absent engine.
                    fAnsweredBlock.store(ev.blockSeq);
                }
                notes.clear();
            }
        }

        const auto now = Clock::now();
        if (firstAttempt && !fConnected.load(std::memory_order_relaxed) && now - connectedAt > kStartupGrace) {
            firstAttempt = false;  // no welcome yet: stop holding blocks for an engine that is not there
            fAnsweredBlock.store(lastBlock);
        }
        if (now - lastHeard > kSilenceTimeout) {
            fConnected.store(false, std::memory_order_relaxed);
            firstAttempt = false;  // from now on an absent engine is not waited for
            fAnsweredBlock.store(lastBlock);  // whatever was in flight is lost
            connect();  // a fresh socket: drops whatever the old one queued for a dead engine
        } else if (now - lastPing > kPingInterval) {
            sendSimple(*sock, p::request::kPing, nextId++);
            lastPing = now;
        }
    }
    sock.reset();
}

}  // namespace dm
