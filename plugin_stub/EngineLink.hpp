// The plugin's connection to the engine: a worker thread that owns a ZeroMQ DEALER socket and talks
// to the audio thread only through SpscRings and atomics. Created and started in activate(), never
// in the plugin's constructor (the LV2 ttl generator instantiates the plugin without a host).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "SpscRing.hpp"

namespace dm {

// Engine ensemble names, by the plugin's Ensemble parameter index (the engine lists its own in
// `welcome`; these are the ones its shipped online arrangers serve).
constexpr const char* kEnsembles[] = {"satb", "string_quartet"};
constexpr int kEnsembleCount = 2;

// Audio thread -> worker. kNote: one played note-on; kBlockEnd: the block's notes are complete,
// send them (`ticks` is the block's start position, `qpm` the host tempo); kReset: start the
// session afresh with ensemble index `pitch`.
struct OutgoingEvent {
    enum Kind : std::uint8_t { kNote, kBlockEnd, kReset } kind;
    std::uint8_t pitch;
    std::uint8_t velocity;
    std::int64_t ticks;
    double qpm;
    std::uint64_t blockSeq;  // kBlockEnd: numbers the block, for the offline wait
};

// Worker -> audio thread: one arranged note, its part index is the MIDI channel it goes out on.
struct ArrangedNote {
    std::int64_t timeTicks;
    std::int64_t durationTicks;
    std::uint8_t pitch;
    std::uint8_t velocity;
    std::uint8_t part;
};

class EngineLink {
public:
    static constexpr int kResolution = 960;  // ticks per quarter note the plugin sends

    EngineLink(std::string endpoint, std::string session);
    ~EngineLink();  // stops the worker; closing never blocks (linger 0)

    void start();
    void stop();

    SpscRing<OutgoingEvent> fOutgoing{4096};
    SpscRing<ArrangedNote> fArranged{4096};

    std::atomic<bool> fConnected{false};          // a welcome or pong arrived within the timeout
    std::atomic<std::uint64_t> fAnsweredBlock{0};  // highest kBlockEnd seq the engine has answered
    std::atomic<std::uint32_t> fErrors{0};         // error replies received (for status and tests)

private:
    void workerLoop();

    std::string fEndpoint;
    std::string fSession;
    std::atomic<bool> fRunning{false};
    std::thread fThread;
};

}  // namespace dm
