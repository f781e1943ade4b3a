// The plugin's connection to the engine: a worker thread that owns a ZeroMQ DEALER socket and talks
// to the audio thread only through SpscRings and atomics. Created and started in activate(), never
// in the plugin's constructor (the LV2 ttl generator instantiates the plugin without a host).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>

#include "AudioRing.hpp"
#include "SpscRing.hpp"

namespace dm {

// The Ensemble parameter is an index into the ensembles of the engine's online arrangers, as its
// `welcome` lists them (sorted by name). Before the first welcome (notes played in the first moments
// after activate()) the index means the shipped engine's list.
constexpr int kMaxEnsembles = 8;
constexpr const char* kShippedEnsembles[] = {"satb", "string_quartet"};
constexpr int kShippedEnsembleCount = 2;
// Render's renderers past the SoundFont: the synthesis model each names in `live_perform`'s `model`
// (nullptr: none named, the engine's default, performer-synth-expressive as shipped; "Neural plain":
// performer-synth, the first model, every note at mf as the plain chorales it heard).
constexpr const char* kRendererModels[] = {nullptr, nullptr, "performer-synth"};
constexpr int kRendererCount = 3;

// Audio thread -> worker. kNote: one played note-on (`ticks` its position, `frame` the same on the
// plugin's own frame counter); kRelease: one played note-off (Render sends it as a releases row);
// kBlockEnd: the block's events are complete, send them (`ticks` is the block's start position,
// `qpm` the host tempo, `frame` the block's first frame on the plugin's own counter, `frames` its
// length, `task` arrange or perform); kReset: start a session afresh (`task` says which) with
// ensemble index `pitch` and General MIDI program `velocity` (and, for perform, `renderer`: a new one
// starts the engine's perform session afresh). Generate: kNote/kRelease with task
// kGenerate are played notes kept as context; kCompose asks for `frames` bars of meter `pitch` /
// `velocity` from tick `ticks` (a bar line at plugin frame `frame`) at `qpm`, numbered `blockSeq`;
// kStopCompose cancels job `blockSeq`.
struct OutgoingEvent {
    enum Kind : std::uint8_t { kNote, kRelease, kBlockEnd, kReset, kCompose, kStopCompose } kind;
    enum Task : std::uint8_t { kArrange, kPerform, kGenerate } task;
    std::uint8_t pitch;
    std::uint8_t velocity;
    std::int64_t ticks;
    double qpm;
    std::uint64_t blockSeq;  // kBlockEnd: numbers the block, for the offline wait
    std::int64_t frame;
    std::uint32_t frames;
    float temperature = 1.0f;  // kCompose
    std::uint8_t renderer = 0;  // kReset of kPerform: 0 the SoundFont, 1 the neural performer, 2 it with
                                // the first synthesis model (kRendererModels)
};

// Worker -> audio thread: one arranged note, its part index is the MIDI channel it goes out on.
// `frame` is where the note was played, on the plugin's own frame counter: the engine answers a
// block with its notes in the order sent (a label each), so the worker takes the frame from the
// note it sent at the same index of the same block (the reply's id). Ticks cannot give it back: at
// 960 per quarter and 120 qpm a tick is 25 frames at 48 kHz. -1 when the reply matches no block
// still remembered (then the note goes out at once, counted late).
// A composed note (Generate) has `generated` set, `job` its request's number, `frame` its onset and
// `durationFrames` its length on the plugin's frame counter (the worker converts the ticks).
struct ArrangedNote {
    std::int64_t timeTicks;
    std::int64_t durationTicks;
    std::int64_t frame;
    std::uint8_t pitch;
    std::uint8_t velocity;
    std::uint8_t part;
    bool generated = false;
    std::uint64_t job = 0;
    std::int64_t durationFrames = 0;
};

class EngineLink {
public:
    static constexpr int kResolution = 960;  // ticks per quarter note the plugin sends

    // `audioFrames`: the capacity of the rendered-audio ring (more than the latency plus a block).
    EngineLink(std::string endpoint, std::string session, double sampleRateHz, std::size_t audioFrames);
    ~EngineLink();  // stops the worker; closing never blocks (linger 0)

    void start();
    void stop();

    // Audio thread: after pushing a block's events, so the worker sends them now rather than at its
    // next poll timeout. A non-blocking eventfd write on Linux (no lock, no allocation); elsewhere a
    // no-op and the worker's 1 ms poll picks the block up.
    void wake() noexcept;

    SpscRing<OutgoingEvent> fOutgoing{4096};
    SpscRing<ArrangedNote> fArranged{4096};
    AudioRing fAudio;

    std::atomic<bool> fConnected{false};          // a welcome or pong arrived within the timeout
    std::atomic<std::uint64_t> fAnsweredBlock{0};  // highest kBlockEnd seq the engine has answered
    std::atomic<std::uint32_t> fErrors{0};         // error replies received (for status and tests)
    std::atomic<std::uint32_t> fRoundTripUs{0};    // the last block's request -> reply, microseconds
    std::atomic<std::uint32_t> fLateBlocks{0};     // Render: blocks whose audio missed its slot (worker's view)
    std::atomic<std::uint32_t> fLateNotes{0};      // Arrange: notes back too late for their slot (audio thread's count)
    std::atomic<std::int64_t> fWorstLateFrames{0};  // Arrange: the most frames one of them was past its slot
    std::atomic<std::int64_t> fReadFrame{0};       // Render: the audio thread has played up to here
    std::atomic<std::uint32_t> fEngineLatency{0};  // Render: the engine's own latency, host frames: its last
                                                   // perform block's `done` stats.latency_samples (the neural
                                                   // performer's lookahead and resampler; 0 for the SoundFont)
    std::atomic<int> fEnsembleCount{0};            // online ensembles the engine's welcome listed
    std::atomic<int> fResolvedEnsemble{-1};        // the index in use; -1: none (not listed yet, or too high)
    std::atomic<std::uint64_t> fComposedSeq{0};      // Generate: the job whose bars fComposedThrough counts
    std::atomic<std::int64_t> fComposedThrough{0};   // its bars have arrived up to this frame (max: finished)

private:
    void workerLoop();

    char fEnsembleNames[kMaxEnsembles][64] = {};  // worker thread only
    std::string fEndpoint;
    std::string fSession;
    double fSampleRateHz;
    int fWakeFd = -1;
    std::atomic<bool> fRunning{false};
    std::thread fThread;
};

}  // namespace dm
