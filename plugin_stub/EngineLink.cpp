// The worker thread: all ZeroMQ and msgpack work happens here, none on the audio thread.
#define MSGPACK_NO_BOOST 1

#include "EngineLink.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <memory>
#include <random>
#include <cmath>
#include <climits>
#include <vector>

#include <msgpack.hpp>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "protocol.hpp"

#ifdef __linux__
#include <sys/eventfd.h>
#include <unistd.h>
#endif

namespace dm {
namespace {

namespace p = protocol;
using Clock = std::chrono::steady_clock;

constexpr auto kPingInterval = std::chrono::milliseconds(1000);
constexpr auto kSilenceTimeout = std::chrono::milliseconds(3000);  // then reconnect
constexpr auto kStartupGrace = std::chrono::milliseconds(500);  // for the first welcome
constexpr int kPollMs = 1;  // without an eventfd (not Linux) the wake-up granularity

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

void packNotes(Packer& pk, std::vector<std::uint8_t>& frame, const std::vector<OutgoingEvent>& notes,
               std::int64_t durationTicks) {
    pk.pack_map(2);
    packStr(pk, "dtype"); packStr(pk, p::dtype::kNotes);
    packStr(pk, "shape"); pk.pack_array(1); pk.pack(static_cast<std::uint64_t>(notes.size()));
    frame.assign(notes.size() * p::note::kSizeBytes, 0);
    for (std::size_t i = 0; i < notes.size(); ++i) {
        std::uint8_t* rec = frame.data() + i * p::note::kSizeBytes;
        const std::int64_t time = notes[i].ticks < 0 ? 0 : notes[i].ticks;
        std::memcpy(rec + p::note::kTimeOffset, &time, 8);  // little-endian hosts only (x86, arm64)
        rec[p::note::kPitchOffset] = notes[i].pitch;
        std::memcpy(rec + p::note::kDurationOffset, &durationTicks, 8);
        rec[p::note::kVelocityOffset] = notes[i].velocity;
    }
}

// The frames after the notes: parts (all zeros: the plugin plays one part) and releases rows
// (tick, pitch, part 0). Returns what to send after the header and the notes frame.
void packPartsAndReleases(Packer& pk, std::size_t noteCount, const std::vector<OutgoingEvent>& releases,
                          std::vector<std::uint8_t>& partFrame, std::vector<std::int64_t>& releaseFrame) {
    pk.pack_map(2);
    packStr(pk, "dtype"); packStr(pk, p::dtype::kUInt8);
    packStr(pk, "shape"); pk.pack_array(1); pk.pack(static_cast<std::uint64_t>(noteCount));
    partFrame.assign(noteCount, 0);
    pk.pack_map(2);
    packStr(pk, "dtype"); packStr(pk, p::dtype::kInt64);
    packStr(pk, "shape"); pk.pack_array(2); pk.pack(static_cast<std::uint64_t>(releases.size())); pk.pack(3);
    releaseFrame.clear();
    for (const OutgoingEvent& r : releases) {
        releaseFrame.push_back(r.ticks < 0 ? 0 : r.ticks);
        releaseFrame.push_back(r.pitch);
        releaseFrame.push_back(0);
    }
}

void sendFrames(zmq::socket_t& sock, const msgpack::sbuffer& header, const std::vector<std::uint8_t>& notes,
                const std::vector<std::uint8_t>& parts, const std::vector<std::int64_t>& releases) {
    const auto more = zmq::send_flags::sndmore | zmq::send_flags::dontwait;
    sock.send(zmq::buffer(header.data(), header.size()), more);
    sock.send(zmq::buffer(notes.data(), notes.size()), more);
    sock.send(zmq::buffer(parts.data(), parts.size()), more);
    sock.send(zmq::buffer(releases.data(), releases.size() * 8), zmq::send_flags::dontwait);
}

// The fields every live block (live_notes, live_perform) carries, in the order both send them.
void packLiveFields(Packer& pk, const std::string& session, std::int64_t positionTicks, double qpm) {
    packStr(pk, "session"); pk.pack(session);
    packStr(pk, "position_ticks"); pk.pack(positionTicks < 0 ? std::int64_t(0) : positionTicks);
    packStr(pk, "resolution"); pk.pack(EngineLink::kResolution);
    packStr(pk, "qpm"); pk.pack(qpm > 0.0 ? qpm : p::kDefaultQpm);
}

// Ends a live block's header (`reset`, the frame descriptions) and sends it with its frames: the
// notes with duration 0 (they sound, or keep their part busy, until released), parts, releases.
void finishLiveBlock(zmq::socket_t& sock, msgpack::sbuffer& buf, Packer& pk, bool reset,
                     const std::vector<OutgoingEvent>& notes, const std::vector<OutgoingEvent>& releases) {
    if (reset) { packStr(pk, "reset"); pk.pack(true); }
    packStr(pk, "frames"); pk.pack_array(3);
    std::vector<std::uint8_t> noteFrame, partFrame;
    std::vector<std::int64_t> releaseFrame;
    packNotes(pk, noteFrame, notes, 0);
    packPartsAndReleases(pk, notes.size(), releases, partFrame, releaseFrame);
    sendFrames(sock, buf, noteFrame, partFrame, releaseFrame);
}

// Arrange: `ensemble` is sent with every block (the engine reads it on a session's first); `reset`
// after a transport jump, a new ensemble or a reconnect. Notes go with duration 0 (their length is
// not known at note-on) and keep their part busy in the engine until their release arrives.
void sendLiveArrange(zmq::socket_t& sock, const std::string& session, std::uint64_t id,
                     std::int64_t positionTicks, double qpm, const char* ensemble, bool reset,
                     const std::vector<OutgoingEvent>& notes, const std::vector<OutgoingEvent>& releases) {
    msgpack::sbuffer buf;
    Packer pk(buf);
    packHead(pk, p::request::kLiveNotes, id, reset ? 6 : 5);
    packStr(pk, "ensemble"); packStr(pk, ensemble);
    packLiveFields(pk, session, positionTicks, qpm);
    finishLiveBlock(sock, buf, pk, reset, notes, releases);
}

// Perform: one block's note-ons (duration 0: they sound until released) and note-offs (releases
// rows: tick, pitch, part 0), answered with exactly `blockSamples` samples of audio. `renderer` > 0
// asks for the neural performer (`renderer: neural`, and `model` where kRendererModels names one):
// it renders at its models' rate (22,050 Hz) and the engine resamples to the host's; its audio comes
// `latency_samples` (done's stats) late, in host frames.
void sendLivePerform(zmq::socket_t& sock, const std::string& session, std::uint64_t id,
                     const OutgoingEvent& block, double sampleRateHz, int program, int renderer, bool reset,
                     const std::vector<OutgoingEvent>& notes, const std::vector<OutgoingEvent>& releases) {
    msgpack::sbuffer buf;
    Packer pk(buf);
    const bool neural = renderer > 0 && renderer < kRendererCount;
    const char* model = neural ? kRendererModels[renderer] : nullptr;
    packHead(pk, p::request::kLivePerform, id, (reset ? 8 : 7) + (neural ? 1 : 0) + (model ? 1 : 0));
    if (neural) { packStr(pk, "renderer"); packStr(pk, "neural"); }
    if (model) { packStr(pk, "model"); packStr(pk, model); }
    packLiveFields(pk, session, block.ticks, block.qpm);
    packStr(pk, "sample_rate_hz"); pk.pack(static_cast<std::int64_t>(sampleRateHz + 0.5));
    packStr(pk, "block_samples"); pk.pack(block.frames);
    packStr(pk, "programs"); pk.pack_array(1); pk.pack(program);
    finishLiveBlock(sock, buf, pk, reset, notes, releases);
}

// A played note Generate keeps as context: ticks on the plugin's timeline, `end` -1 while held.
struct PlayedNote {
    std::int64_t start, end;
    std::uint8_t pitch, velocity;
};

// Generate: `bars` bars to write after `contextBars` bars of the played notes (given, kept as the
// model's `instrument`), from a bar line at tick `startTicks`.
void sendCompose(zmq::socket_t& sock, std::uint64_t id, const OutgoingEvent& ev, std::uint32_t seed,
                 const std::vector<PlayedNote>& context, int contextBars, std::int64_t barTicks,
                 const std::string& instrument, int low, int high) {
    msgpack::sbuffer buf;
    Packer pk(buf);
    const bool given = !context.empty() && !instrument.empty();
    packHead(pk, p::request::kCompose, id, 6 + (given ? 2 : 0));
    packStr(pk, "bars"); pk.pack(static_cast<int>(ev.frames) + (given ? contextBars : 0));
    packStr(pk, "meter"); pk.pack_array(2); pk.pack(static_cast<int>(ev.pitch)); pk.pack(static_cast<int>(ev.velocity));
    packStr(pk, "qpm"); pk.pack(ev.qpm > 0.0 ? ev.qpm : p::kDefaultQpm);
    packStr(pk, "temperature"); pk.pack(static_cast<double>(ev.temperature));
    packStr(pk, "seed"); pk.pack(seed);
    packStr(pk, "resolution"); pk.pack(EngineLink::kResolution);
    if (!given) {
        packStr(pk, "frames"); pk.pack_array(0);
        sock.send(zmq::buffer(buf.data(), buf.size()), zmq::send_flags::dontwait);
        return;
    }
    packStr(pk, "parts"); pk.pack_array(1); pk.pack(instrument);
    packStr(pk, "given_bars"); pk.pack_array(2); pk.pack(0); pk.pack(contextBars);
    packStr(pk, "frames"); pk.pack_array(2);
    const std::int64_t origin = ev.ticks - contextBars * barTicks;
    std::vector<std::uint8_t> noteFrame(context.size() * p::note::kSizeBytes, 0);
    for (std::size_t i = 0; i < context.size(); ++i) {
        const PlayedNote& n = context[i];
        std::uint8_t* rec = noteFrame.data() + i * p::note::kSizeBytes;
        const std::int64_t time = n.start - origin;
        const std::int64_t end = n.end < 0 || n.end > ev.ticks ? ev.ticks : n.end;
        const std::int64_t duration = std::max<std::int64_t>(1, end - n.start);
        int pitch = n.pitch;  // folded by octaves into the instrument's range: only the context moves
        while (pitch < low && pitch + 12 <= 127) pitch += 12;
        while (pitch > high && pitch - 12 >= 0) pitch -= 12;
        std::memcpy(rec + p::note::kTimeOffset, &time, 8);
        rec[p::note::kPitchOffset] = static_cast<std::uint8_t>(pitch);
        std::memcpy(rec + p::note::kDurationOffset, &duration, 8);
        rec[p::note::kVelocityOffset] = std::max<std::uint8_t>(1, n.velocity);
    }
    pk.pack_map(2);
    packStr(pk, "dtype"); packStr(pk, p::dtype::kNotes);
    packStr(pk, "shape"); pk.pack_array(1); pk.pack(static_cast<std::uint64_t>(context.size()));
    pk.pack_map(2);
    packStr(pk, "dtype"); packStr(pk, p::dtype::kUInt8);
    packStr(pk, "shape"); pk.pack_array(1); pk.pack(static_cast<std::uint64_t>(context.size()));
    const std::vector<std::uint8_t> parts(context.size(), 0);
    const auto more = zmq::send_flags::sndmore | zmq::send_flags::dontwait;
    sock.send(zmq::buffer(buf.data(), buf.size()), more);
    sock.send(zmq::buffer(noteFrame.data(), noteFrame.size()), more);
    sock.send(zmq::buffer(parts.data(), parts.size()), zmq::send_flags::dontwait);
}

void sendCancel(zmq::socket_t& sock, std::uint64_t id, const std::string& jobStr, std::int64_t jobInt) {
    msgpack::sbuffer buf;
    Packer pk(buf);
    packHead(pk, p::request::kCancel, id, 1);
    packStr(pk, "job");
    if (!jobStr.empty()) pk.pack(jobStr); else pk.pack(jobInt);
    packStr(pk, "frames"); pk.pack_array(0);
    sock.send(zmq::buffer(buf.data(), buf.size()), zmq::send_flags::dontwait);
}

struct Reply {
    std::string type;
    std::uint64_t id = 0;
    std::int64_t seq = -1;  // notes, audio: the reply's number within its job
    std::string jobStr;     // accepted: the job id, a string or an integer
    std::int64_t jobInt = -1;
    std::vector<std::string> frameDtypes;
    std::vector<std::vector<std::uint64_t>> frameShapes;
    std::vector<std::string> ensembles;  // welcome: ensembles of the online (live) arrangers, sorted, satb first
    std::string composeInstrument;       // welcome: the first compose model's first instrument
    int composeLow = 0, composeHigh = 127;  // and its range
    std::int64_t latencySamples = -1;    // done: stats.latency_samples (live_perform), -1 when absent
};

const msgpack::object* mapGet(const msgpack::object& map, const char* key) {
    if (map.type != msgpack::type::MAP)
        return nullptr;
    for (std::uint32_t j = 0; j < map.via.map.size; ++j)
        if (map.via.map.ptr[j].key.type == msgpack::type::STR && map.via.map.ptr[j].key.as<std::string>() == key)
            return &map.via.map.ptr[j].val;
    return nullptr;
}

std::string mapStr(const msgpack::object& map, const char* key) {
    const msgpack::object* v = mapGet(map, key);
    return v && v->type == msgpack::type::STR ? v->as<std::string>() : std::string();
}

bool parseHeader(const zmq::message_t& msg, Reply& out) {
    try {
        msgpack::object_handle oh = msgpack::unpack(static_cast<const char*>(msg.data()), msg.size());
        const msgpack::object& obj = oh.get();
        if (obj.type != msgpack::type::MAP)
            return false;
        if (const msgpack::object* v = mapGet(obj, "v");
            !v || v->type != msgpack::type::POSITIVE_INTEGER || v->as<int>() != p::kProtocolVersion)
            return false;  // another protocol version: ignore the message
        out.type = mapStr(obj, "type");
        if (const msgpack::object* id = mapGet(obj, "id"); id && id->type == msgpack::type::POSITIVE_INTEGER)
            out.id = id->as<std::uint64_t>();
        if (const msgpack::object* seq = mapGet(obj, "seq"); seq && seq->type == msgpack::type::POSITIVE_INTEGER)
            out.seq = seq->as<std::int64_t>();
        if (const msgpack::object* job = mapGet(obj, "job")) {
            if (job->type == msgpack::type::STR)
                out.jobStr = job->as<std::string>();
            else if (job->type == msgpack::type::POSITIVE_INTEGER)
                out.jobInt = job->as<std::int64_t>();
        }
        if (const msgpack::object* frames = mapGet(obj, "frames"); frames && frames->type == msgpack::type::ARRAY)
            for (std::uint32_t f = 0; f < frames->via.array.size; ++f) {
                const msgpack::object& d = frames->via.array.ptr[f];
                out.frameDtypes.push_back(mapStr(d, "dtype"));
                std::vector<std::uint64_t> shape;
                if (const msgpack::object* s = mapGet(d, "shape"); s && s->type == msgpack::type::ARRAY)
                    for (std::uint32_t k = 0; k < s->via.array.size; ++k)
                        shape.push_back(s->via.array.ptr[k].type == msgpack::type::POSITIVE_INTEGER
                                            ? s->via.array.ptr[k].as<std::uint64_t>() : 0);
                out.frameShapes.push_back(shape);
            }
        if (const msgpack::object* stats = mapGet(obj, "stats"); out.type == p::reply::kDone && stats) {
            const msgpack::object* latency = mapGet(*stats, "latency_samples");
            if (latency && latency->type == msgpack::type::POSITIVE_INTEGER)
                out.latencySamples = latency->as<std::int64_t>();
        }
        if (const msgpack::object* models = mapGet(obj, "models");
            out.type == p::reply::kWelcome && models && models->type == msgpack::type::ARRAY) {
            for (std::uint32_t m = 0; m < models->via.array.size; ++m) {
                const msgpack::object& model = models->via.array.ptr[m];
                const std::string ensemble = mapStr(model, "ensemble");
                if (mapStr(model, "task") == "compose" && out.composeInstrument.empty()) {
                // Generate's context (the notes played) goes in as the model's first instrument,
                // folded by octaves into its range.
                const msgpack::object* instruments = mapGet(model, "instruments");  // [{name, program, low, high}]
                if (instruments && instruments->type == msgpack::type::ARRAY && instruments->via.array.size > 0) {
                    const msgpack::object& first = instruments->via.array.ptr[0];
                    out.composeInstrument = mapStr(first, "name");
                    const msgpack::object* low = mapGet(first, "low");
                    const msgpack::object* high = mapGet(first, "high");
                    if (low && high && low->type == msgpack::type::POSITIVE_INTEGER
                        && high->type == msgpack::type::POSITIVE_INTEGER) {
                        out.composeLow = low->as<int>();
                        out.composeHigh = high->as<int>();
                    }
                }
            }
            if (mapStr(model, "task") == "arrange" && mapStr(model, "mode") == p::kModeOnline
                    && !ensemble.empty())
                    out.ensembles.push_back(ensemble);
            }
            std::sort(out.ensembles.begin(), out.ensembles.end());
            out.ensembles.erase(std::unique(out.ensembles.begin(), out.ensembles.end()), out.ensembles.end());
            // SATB first when the engine has it: the Ensemble parameter's default (index 0) stays the
            // four-part choir whatever other arrangers are installed (five_voices sorts before it)
            auto satb = std::find(out.ensembles.begin(), out.ensembles.end(), std::string("satb"));
            if (satb != out.ensembles.end())
                std::rotate(out.ensembles.begin(), satb, satb + 1);
        }
        return !out.type.empty();
    } catch (const std::exception&) {
        return false;  // never trust wire input: a malformed reply is dropped, the worker goes on
    }
}

// A block sent and not yet answered: where its audio goes, when it left (for the round trip) and,
// in Arrange, the frame each of its notes was played at, in the order sent.
struct InFlight {
    std::uint64_t seq = 0;
    std::int64_t frame = 0;
    std::uint32_t frames = 0;
    Clock::time_point sent;
    std::vector<std::int64_t> noteFrames;  // worker thread only; keeps its capacity from block to block
};
constexpr std::size_t kInFlightSlots = 1024;
constexpr std::int64_t kMaxEngineLatencyFrames = 1 << 20;  // a reported latency past this is not believed
constexpr std::size_t kMaxPlayed = 4096;  // Generate: played notes remembered
constexpr int kContextBars = 2;  // Generate: bars of played notes sent as context  // blocks; older ones are long late
constexpr auto kLateLogInterval = std::chrono::milliseconds(1000);  // at most one late-notes line a second

}  // namespace

EngineLink::EngineLink(std::string endpoint, std::string session, double sampleRateHz, std::size_t audioFrames)
    : fAudio(audioFrames), fEndpoint(std::move(endpoint)), fSession(std::move(session)),
      fSampleRateHz(sampleRateHz) {
#ifdef __linux__
    fWakeFd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
#endif
}

EngineLink::~EngineLink() {
    stop();
#ifdef __linux__
    if (fWakeFd >= 0)
        close(fWakeFd);
#endif
}

void EngineLink::wake() noexcept {
#ifdef __linux__
    if (fWakeFd >= 0) {
        const std::uint64_t one = 1;
        [[maybe_unused]] const ssize_t written = write(fWakeFd, &one, sizeof(one));
    }
#endif
}

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
    std::vector<OutgoingEvent> notes, releases;
    notes.reserve(4096);
    releases.reserve(4096);
    std::vector<InFlight> inFlight(kInFlightSlots);
    bool resetArrange = true, resetPerform = true;
    int ensembleIndex = 0, program = 0;
    int renderer = 0;  // Render's renderer (OutgoingEvent::renderer)
    bool welcomed = false;  // the ensemble list is the engine's
    bool firstAttempt = true;  // until the first welcome or kStartupGrace: queue notes, let offline wait
    std::uint64_t lastBlock = 0;
    std::uint32_t loggedLateNotes = 0;
    Clock::time_point lastLateLog;
    std::vector<float> right;  // planar audio: the right channel, copied out of an unaligned frame
    std::vector<float> left;
    // Generate: the notes played (context), the job in flight and where its bars go.
    std::vector<PlayedNote> played;
    std::vector<PlayedNote> contextNotes;
    struct ComposeJob {
        std::uint64_t seq = 0;     // the request's block number (its id); 0: none
        std::int64_t startFrame = 0, endFrame = 0, contextTicks = 0;
        double framesPerTick = 0.0, barFrames = 0.0;
        std::string jobStr;        // from its `accepted`, for a cancel
        std::int64_t jobInt = -1;
    } compose;
    std::string composeInstrument;
    int composeLow = 0, composeHigh = 127;
    // Jobs stopped or replaced: their replies still in flight are dropped, not taken for arranged notes.
    std::uint64_t staleCompose[16] = {};
    std::size_t staleNext = 0;
    const auto retire = [&](std::uint64_t seq) {
        if (seq != 0)
            staleCompose[staleNext++ % 16] = seq;
    };
    std::random_device seeds;
    Clock::time_point composeSent;
    FILE* rttLog = nullptr;  // $DEEP_MUSICIAN_RTT_LOG: one line per answered block, for benchmarks
    if (const char* path = std::getenv("DEEP_MUSICIAN_RTT_LOG"); path && path[0] != '\0')
        rttLog = std::fopen(path, "a");

    const auto connect = [&] {
        sock = std::make_unique<zmq::socket_t>(context, zmq::socket_type::dealer);
        sock->set(zmq::sockopt::linger, 0);
        sock->set(zmq::sockopt::sndhwm, 1000);
        sock->connect(fEndpoint);
        sendSimple(*sock, p::request::kHello, nextId++);
        lastHeard = lastPing = connectedAt = Clock::now();
        resetArrange = resetPerform = true;  // a restarted engine has lost the sessions' state
    };
    connect();
    const std::string performSession = fSession + "-render";  // the engine keeps one task per session

    while (fRunning.load(std::memory_order_relaxed)) {
        zmq::pollitem_t items[] = {{static_cast<void*>(*sock), 0, ZMQ_POLLIN, 0},
                                   {nullptr, fWakeFd, ZMQ_POLLIN, 0}};
        zmq::poll(items, fWakeFd >= 0 ? 2 : 1, std::chrono::milliseconds(kPollMs));
#ifdef __linux__
        if (fWakeFd >= 0 && (items[1].revents & ZMQ_POLLIN)) {
            std::uint64_t count;
            [[maybe_unused]] const ssize_t got = read(fWakeFd, &count, sizeof(count));
        }
#endif

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
            if (std::find(std::begin(staleCompose), std::end(staleCompose), reply.id) != std::end(staleCompose))
                continue;
            const bool composeReply = compose.seq != 0 && reply.id == compose.seq;
            if (composeReply && reply.type == p::reply::kAccepted) {
                compose.jobStr = reply.jobStr;
                compose.jobInt = reply.jobInt;
            } else if (composeReply && reply.type == p::reply::kNotes && parts.size() >= 3
                       && reply.frameDtypes.size() >= 2 && reply.frameDtypes[0] == p::dtype::kNotes) {
                // One bar of the composition: each note at its place on the plugin's frame counter,
                // its instrument's index the channel.
                const std::size_t n = parts[1].size() / p::note::kSizeBytes;
                const auto* bytes = static_cast<const std::uint8_t*>(parts[1].data());
                const auto* instruments = static_cast<const std::uint8_t*>(parts[2].data());
                if (parts[2].size() == n)
                    for (std::size_t i = 0; i < n; ++i) {
                        const std::uint8_t* rec = bytes + i * p::note::kSizeBytes;
                        ArrangedNote note{};
                        std::memcpy(&note.timeTicks, rec + p::note::kTimeOffset, 8);
                        std::memcpy(&note.durationTicks, rec + p::note::kDurationOffset, 8);
                        note.pitch = rec[p::note::kPitchOffset];
                        note.velocity = rec[p::note::kVelocityOffset];
                        note.part = instruments[i];
                        note.generated = true;
                        note.job = compose.seq;
                        note.frame = compose.startFrame + std::llround((note.timeTicks - compose.contextTicks)
                                                                       * compose.framesPerTick);
                        note.durationFrames = std::max<std::int64_t>(1, std::llround(note.durationTicks
                                                                                     * compose.framesPerTick));
                        if (note.timeTicks >= compose.contextTicks)
                            fArranged.push(note);
                    }
                if (reply.seq >= 0)  // bar `seq` (context bars included) has arrived
                    fComposedThrough.store(std::max<std::int64_t>(fComposedThrough.load(),
                        compose.startFrame + std::llround((reply.seq + 1) * compose.barFrames
                                                          - compose.contextTicks * compose.framesPerTick)));
            } else if (composeReply && (reply.type == p::reply::kDone || reply.type == p::reply::kError)) {
                if (reply.type == p::reply::kError)
                    fErrors.fetch_add(1, std::memory_order_relaxed);
                fComposedThrough.store(INT64_MAX);  // nothing more comes: no one waits
                if (const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                        Clock::now() - composeSent).count(); reply.type == p::reply::kDone)
                    fRoundTripUs.store(static_cast<std::uint32_t>(us), std::memory_order_relaxed);
                retire(compose.seq);
                compose.seq = 0;
            } else if (reply.type == p::reply::kWelcome) {
                composeInstrument = reply.composeInstrument;
                composeLow = reply.composeLow;
                composeHigh = reply.composeHigh;
                const int count = std::min<int>(static_cast<int>(reply.ensembles.size()), kMaxEnsembles);
                for (int i = 0; i < count; ++i)
                    std::snprintf(fEnsembleNames[i], sizeof(fEnsembleNames[i]), "%s", reply.ensembles[i].c_str());
                fEnsembleCount.store(count);
                welcomed = true;
                std::string listed;
                for (int i = 0; i < count; ++i)
                    listed += " " + std::to_string(i) + "=" + fEnsembleNames[i];
                std::fprintf(stderr, "deep-musician plugin: engine at %s, live ensembles:%s\n",
                             fEndpoint.c_str(), listed.empty() ? " none" : listed.c_str());
            } else if (reply.type == p::reply::kNotes && parts.size() >= 2 && !reply.frameDtypes.empty()
                && reply.frameDtypes[0] == p::dtype::kNotes) {
                const zmq::message_t& noteFrame = parts[1];
                const std::size_t n = noteFrame.size() / p::note::kSizeBytes;
                const bool hasParts = parts.size() >= 3 && reply.frameDtypes.size() >= 2
                                      && reply.frameDtypes[1] == p::dtype::kUInt8 && parts[2].size() == n;
                const auto* bytes = static_cast<const std::uint8_t*>(noteFrame.data());
                const InFlight& block = inFlight[reply.id % kInFlightSlots];
                const bool matched = reply.id < (1ull << 40) && block.seq == reply.id && block.noteFrames.size() == n;
                for (std::size_t i = 0; i < n; ++i) {
                    const std::uint8_t* rec = bytes + i * p::note::kSizeBytes;
                    ArrangedNote note{};
                    std::memcpy(&note.timeTicks, rec + p::note::kTimeOffset, 8);
                    std::memcpy(&note.durationTicks, rec + p::note::kDurationOffset, 8);
                    note.pitch = rec[p::note::kPitchOffset];
                    note.velocity = rec[p::note::kVelocityOffset];
                    note.part = hasParts ? static_cast<const std::uint8_t*>(parts[2].data())[i] : 0;
                    note.frame = matched ? block.noteFrames[i] : -1;
                    fArranged.push(note);
                }
            } else if (reply.type == p::reply::kAudio && parts.size() >= 2 && !reply.frameDtypes.empty()
                       && reply.frameDtypes[0] == p::dtype::kFloat32 && reply.frameShapes[0].size() == 2
                       && reply.frameShapes[0][0] == 2) {
                const InFlight& block = inFlight[reply.id % kInFlightSlots];
                const std::size_t n = reply.frameShapes[0][1];
                if (block.seq == reply.id && n == block.frames && parts[1].size() == 2 * n * sizeof(float)) {
                    left.resize(n);
                    right.resize(n);
                    const auto* bytes = static_cast<const std::uint8_t*>(parts[1].data());
                    std::memcpy(left.data(), bytes, n * sizeof(float));
                    std::memcpy(right.data(), bytes + n * sizeof(float), n * sizeof(float));
                    if (block.frame < fReadFrame.load(std::memory_order_acquire))
                        fLateBlocks.fetch_add(1, std::memory_order_relaxed);  // the audio thread passed it
                    fAudio.write(block.frame, left.data(), right.data(), n);
                }
            } else if (reply.type == p::reply::kDone || reply.type == p::reply::kError) {
                if (reply.type == p::reply::kError)
                    fErrors.fetch_add(1, std::memory_order_relaxed);
                if (reply.id < (1ull << 40)) {
                    const InFlight& block = inFlight[reply.id % kInFlightSlots];
                    if (block.seq == reply.id && reply.latencySamples >= 0)  // a perform block's
                        fEngineLatency.store(static_cast<std::uint32_t>(std::min<std::int64_t>(
                                                 reply.latencySamples, kMaxEngineLatencyFrames)),
                                             std::memory_order_relaxed);
                    if (block.seq == reply.id) {
                        const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                            Clock::now() - block.sent).count();
                        fRoundTripUs.store(static_cast<std::uint32_t>(us), std::memory_order_relaxed);
                        if (rttLog)
                            std::fprintf(rttLog, "%llu %lld\n", static_cast<unsigned long long>(reply.id),
                                         static_cast<long long>(us));
                    }
                    if (reply.id > fAnsweredBlock.load())
                        fAnsweredBlock.store(reply.id);
                }
            }
        }

        OutgoingEvent ev;
        while (fOutgoing.pop(ev)) {
            if (ev.task == OutgoingEvent::kGenerate) {
                if (ev.kind == OutgoingEvent::kNote) {
                    if (played.size() >= kMaxPlayed)  // the oldest go: far more than any context needs
                        played.erase(played.begin(), played.begin() + kMaxPlayed / 2);
                    played.push_back({ev.ticks, -1, ev.pitch, ev.velocity});
                } else if (ev.kind == OutgoingEvent::kRelease) {
                    for (PlayedNote& n : played)
                        if (n.pitch == ev.pitch && n.end < 0) { n.end = ev.ticks; break; }
                } else if (ev.kind == OutgoingEvent::kStopCompose) {
                    if (compose.seq != 0 && compose.seq == ev.blockSeq && (!compose.jobStr.empty() || compose.jobInt >= 0))
                        sendCancel(*sock, nextId++, compose.jobStr, compose.jobInt);
                    retire(compose.seq);
                    compose.seq = 0;
                } else if (ev.kind == OutgoingEvent::kCompose) {
                    // The context: what was played in the bars before the first composed one.
                    const double quarters = ev.pitch * 4.0 / std::max<int>(1, ev.velocity);
                    const std::int64_t barTicks = std::llround(quarters * EngineLink::kResolution);
                    const std::int64_t from = ev.ticks - kContextBars * barTicks;
                    contextNotes.clear();
                    for (const PlayedNote& n : played)
                        if (n.start >= from && n.start < ev.ticks)
                            contextNotes.push_back(n);
                    const bool given = !contextNotes.empty() && !composeInstrument.empty();
                    retire(compose.seq);
                    compose = ComposeJob{};
                    compose.seq = ev.blockSeq;
                    compose.startFrame = ev.frame;
                    compose.framesPerTick = 60.0 / (ev.qpm > 0.0 ? ev.qpm : p::kDefaultQpm) * fSampleRateHz
                                            / EngineLink::kResolution;
                    compose.barFrames = barTicks * compose.framesPerTick;
                    compose.contextTicks = given ? kContextBars * barTicks : 0;
                    fComposedThrough.store(ev.frame);
                    fComposedSeq.store(ev.blockSeq);
                    const std::uint32_t seed = seeds() % 1000000;
                    std::fprintf(stderr, "deep-musician plugin: composing %u bars (seed %u) from frame %lld, "
                                 "%zu played notes as context\n", ev.frames, seed,
                                 static_cast<long long>(ev.frame), given ? contextNotes.size() : std::size_t(0));
                    if (fConnected.load() || firstAttempt)
                        sendCompose(*sock, ev.blockSeq, ev, seed, given ? contextNotes : std::vector<PlayedNote>{},
                                    kContextBars, barTicks, composeInstrument, composeLow, composeHigh);
                    else
                        fComposedThrough.store(INT64_MAX);  // no engine: no one waits
                    composeSent = Clock::now();
                }
                continue;
            }
            if (ev.kind == OutgoingEvent::kNote) {
                notes.push_back(ev);
            } else if (ev.kind == OutgoingEvent::kRelease) {
                releases.push_back(ev);
            } else if (ev.kind == OutgoingEvent::kReset) {
                if (ev.task == OutgoingEvent::kArrange)
                    resetArrange = true;  // the engine follows a new program without a reset
                ensembleIndex = ev.pitch;
                program = ev.velocity;
                if (ev.task == OutgoingEvent::kPerform && ev.renderer != renderer) {
                    renderer = ev.renderer;
                    resetPerform = true;  // the engine keeps one renderer per session
                }
            } else {
                lastBlock = ev.blockSeq;
                const bool connected = fConnected.load(std::memory_order_relaxed);
                const bool perform = ev.task == OutgoingEvent::kPerform;
                const int ensembles = fEnsembleCount.load();
                const char* ensemble = nullptr;
                if (welcomed)
                    ensemble = ensembleIndex < ensembles ? fEnsembleNames[ensembleIndex] : nullptr;
                else if (ensembleIndex < kShippedEnsembleCount)
                    ensemble = kShippedEnsembles[ensembleIndex];
                fResolvedEnsemble.store(ensemble != nullptr ? ensembleIndex : -1);
                const bool wanted = perform || ((!notes.empty() || !releases.empty()) && ensemble != nullptr);
                if (wanted && (connected || firstAttempt)) {
                    // Before the first welcome the DEALER queues the message until it connects.
                    InFlight& slot = inFlight[ev.blockSeq % kInFlightSlots];
                    slot.seq = ev.blockSeq;
                    slot.frame = ev.frame;
                    slot.frames = ev.frames;
                    slot.sent = Clock::now();
                    slot.noteFrames.clear();
                    for (const OutgoingEvent& note : notes)
                        slot.noteFrames.push_back(note.frame);
                    if (perform) {
                        sendLivePerform(*sock, performSession, ev.blockSeq, ev, fSampleRateHz, program,
                                        renderer, resetPerform, notes, releases);
                        resetPerform = false;
                    } else {
                        sendLiveArrange(*sock, fSession, ev.blockSeq, ev.ticks, ev.qpm, ensemble, resetArrange,
                                        notes, releases);
                        resetArrange = false;
                    }
                } else {
                    // Nothing to send, or no engine: answered at once, so an offline host never
                    // waits on an absent engine.
                    fAnsweredBlock.store(ev.blockSeq);
                }
                notes.clear();
                releases.clear();
            }
        }

        const auto now = Clock::now();
        // The audio thread counts arranged notes that came back after their slot; it cannot print.
        if (const std::uint32_t late = fLateNotes.load(std::memory_order_relaxed);
            late != loggedLateNotes && now - lastLateLog > kLateLogInterval) {
            std::fprintf(stderr, "deep-musician plugin: %u arranged notes came back too late for their "
                                 "place (at worst %lld frames late); raise the engine headroom\n",
                         late, static_cast<long long>(fWorstLateFrames.load(std::memory_order_relaxed)));
            loggedLateNotes = late;
            lastLateLog = now;
        }
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
    if (rttLog)
        std::fclose(rttLog);
}

}  // namespace dm
