// The Deep Musician plugin: notes played into it go to the engine, and what the engine answers comes
// back out: arranged notes on the MIDI output, one channel per part (Arrange), or the engine's
// rendering on the audio output, a fixed latency later (Render). The audio thread never blocks on
// the engine, allocates or touches a socket, except in the explicit "offline wait" mode, which
// waits a bounded time for the engine so offline bounces come out complete.
#include "DistrhoPlugin.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "EngineLink.hpp"
#include "protocol.hpp"

START_NAMESPACE_DISTRHO

// Render and Arrange answer a block played at frame f at frame f + latency: Render's audio of the
// block, Arrange's arranged notes, each at its own played frame + latency, to the sample. A block's
// notes are all known when run() starts, so its request goes out at once and its answer is needed
// k blocks later, when run() reaches frame f + latency: the engine has k periods to answer. The
// latency is the mode's engine headroom rounded up to whole blocks, at least one (run() cannot wait
// for its own block). The engine renders a block in about 1 ms (median; 2.7-5.6 ms p99 under JACK,
// benchmarks/RESULTS.md), so Render's default 6 ms gives 2 blocks at 256 frames (10.7 ms at
// 48 kHz), 3 at 128 (8 ms) and 1 at 512 or more. An arrange block runs the online model: 1.4-5 ms
// median, but 4-28 ms p90 and up to ~100 ms on a heavily loaded two-core machine
// (plugin_stub/README.md), so Arrange's default is 20 ms: 1,024 frames at 48 kHz with blocks of
// 128 to 1,024 (21.3 ms).
// An answer that misses its slot is silence for that span (Render, a late block) or notes played
// as soon as they come (Arrange, late notes): raise the headroom when those counts climb.
// Render with the neural performer adds the engine's own latency on top: its audio of a block played
// at frame f sounds the notes of frame f - L (L: `latency_samples` in the engine's `done`, host frames;
// 3,453 at 22,050 Hz, 7,902 at 44,100, 7,579 at 48,000), so the plugin reports headroom + L. The ring
// is still read `fLatency` behind: the delay is already in the engine's audio. L is known once the
// engine has answered a neural block (the first block with the offline wait on); until then the
// headroom alone is reported.
constexpr float kDefaultHeadroomMs = 6.0f;
constexpr float kDefaultArrangeHeadroomMs = 20.0f;
constexpr float kMaxHeadroomMs = 200.0f;
constexpr float kMaxArrangeHeadroomMs = 1000.0f;  // no audio ring to size: a slow engine may need more
// Generate composes whole bars from a bar line of the host's timeline: the first bar line at least the
// lead ahead, so the engine has that long to write the first bar (the shipped composer writes 8 bars
// of four parts in ~0.6 s on a 2-core CPU; the first bar arrives well before). Later bars stream in
// while earlier ones play. Nothing is reported as latency: composed notes answer no played note.
constexpr float kDefaultGenerateBars = 4.0f;
constexpr float kMaxGenerateBars = 32.0f;
constexpr float kDefaultGenerateLeadMs = 500.0f;

inline uint32_t engineLatencyFrames(uint32_t block, double sampleRate, float headroomMs) {
    const double headroom = headroomMs / 1000.0 * sampleRate;
    return block * std::max<uint32_t>(1, static_cast<uint32_t>(std::ceil(headroom / block)));
}

// One parameter's setup (DeepMusicianPlugin::kParameterSpecs).
struct ParameterSpec {
    uint32_t hints;
    const char* name;
    const char* symbol;
    const char* unit;
    float def, min, max;
};

class DeepMusicianPlugin : public Plugin {
public:
    enum Parameters {
        kParameterMode,
        kParameterEnsemble,          // an index into the engine's online ensembles (its welcome)
        kParameterOfflineWait,
        kParameterOfflineTimeoutMs,
        kParameterProgram,           // Render: General MIDI program of the played part
        kParameterTemperature,       // Generate: compose's temperature (Generate is not wired yet)
        kParameterEngineConnected,   // output: 1 while the engine answers
        kParameterArrangedNotes,     // output: notes the engine has arranged since activate()
        kParameterEnsembleInUse,     // output: the ensemble index sent; -1 when the engine lists none there
        kParameterEngineEnsembles,   // output: how many online ensembles the engine listed
        kParameterLatencySamples,    // output: the latency reported to the host (Arrange, Render; 0 in Generate;
                                     // Render with Neural: the headroom's plus the engine's neural latency)
        kParameterRoundTripUs,       // output: the last block's request -> reply time
        kParameterLateBlocks,        // output: Render blocks whose audio came back too late to play
        kParameterEngineErrors,      // output: error replies since activate() (refused blocks)
        kParameterHeadroomMs,        // Render: the engine's time to answer a block; sets the latency
        kParameterArrangeHeadroomMs, // Arrange: the same for an arrange block
        kParameterLateNotes,         // output: Arrange notes that came back too late to go out at their place
        kParameterGenerateBars,      // Generate: bars each request composes
        kParameterGenerateTrigger,   // Generate: 0 -> 1 composes the next bars (transport start does too)
        kParameterGenerateLeadMs,    // Generate: the engine's time before the first composed bar line
        kParameterGeneratedNotes,    // output: composed notes received since activate()
        kParameterRenderer,          // Render: the SoundFont (0) or the neural performer (1: the engine's
                                     // default synthesis model, 2: the first one; both add its latency)
        kParameterCount
    };
    enum Mode { kModeArrange, kModeRender, kModeGenerate };
    enum Renderer { kRendererSoundFont, kRendererNeural, kRendererNeuralPlain };
    enum States { kStateEndpoint, kStateSession, kStateCount };

    // Indexed by Parameters; initParameter adds Mode's and Ensemble's enumerations.
    static constexpr uint32_t kIn = kParameterIsAutomatable, kInt = kParameterIsInteger;
    static constexpr uint32_t kOut = kParameterIsOutput | kParameterIsInteger;
    static constexpr ParameterSpec kParameterSpecs[kParameterCount] = {
        {kIn | kInt, "Mode", "mode", "", kModeArrange, kModeArrange, kModeGenerate},
        {kIn | kInt, "Ensemble", "ensemble", "", 0.0f, 0.0f, dm::kMaxEnsembles - 1},
        {kIn | kParameterIsBoolean, "Offline: wait for engine", "offline_wait", "", 0.0f, 0.0f, 1.0f},
        {kIn | kInt, "Offline wait timeout", "offline_timeout_ms", "ms", 1000.0f, 10.0f, 10000.0f},
        {kIn | kInt, "Render program", "program", "", 0.0f, 0.0f, 127.0f},  // General MIDI, 0 = piano
        {kIn, "Temperature", "temperature", "", 1.0f, 0.05f, 2.0f},
        {kParameterIsOutput | kParameterIsBoolean, "Engine connected", "engine_connected", "", 0.0f, 0.0f, 1.0f},
        {kOut, "Arranged notes", "arranged_notes", "", 0.0f, 0.0f, 1e6f},
        {kOut, "Ensemble in use", "ensemble_in_use", "", -1.0f, -1.0f, dm::kMaxEnsembles - 1},
        {kOut, "Engine ensembles", "engine_ensembles", "", 0.0f, 0.0f, dm::kMaxEnsembles},
        {kOut, "Reported latency", "latency_samples", "samples", 0.0f, 0.0f, 1e6f},
        {kOut, "Engine round trip", "round_trip_us", "us", 0.0f, 0.0f, 1e7f},
        {kOut, "Late blocks", "late_blocks", "", 0.0f, 0.0f, 1e9f},
        {kOut, "Engine errors", "engine_errors", "", 0.0f, 0.0f, 1e9f},
        {kIn, "Engine headroom", "headroom_ms", "ms", kDefaultHeadroomMs, 0.0f, kMaxHeadroomMs},
        {kIn, "Arrange headroom", "arrange_headroom_ms", "ms", kDefaultArrangeHeadroomMs, 0.0f, kMaxArrangeHeadroomMs},
        {kOut, "Late notes", "late_notes", "", 0.0f, 0.0f, 1e9f},
        {kIn | kInt, "Generate bars", "generate_bars", "", kDefaultGenerateBars, 1.0f, kMaxGenerateBars},
        {kIn | kParameterIsBoolean | kParameterIsTrigger, "Generate", "generate", "", 0.0f, 0.0f, 1.0f},
        {kIn, "Generate lead", "generate_lead_ms", "ms", kDefaultGenerateLeadMs, 0.0f, 4000.0f},
        {kOut, "Generated notes", "generated_notes", "", 0.0f, 0.0f, 1e9f},
        {kIn | kInt, "Renderer", "renderer", "", kRendererSoundFont, kRendererSoundFont, kRendererNeuralPlain},
    };

    DeepMusicianPlugin()
        : Plugin(kParameterCount, 0, kStateCount),
          fEndpoint(dm::protocol::kDefaultEndpoint) {
        // No threads or sockets here: the LV2 ttl generator instantiates the plugin without a host.
        std::random_device rd;
        char session[32];
        std::snprintf(session, sizeof(session), "plugin-%08x%08x", rd(), rd());
        fSession = session;
        // The environment names the engine for hosts without saved state (tests, CI); saved state wins.
        if (const char* endpoint = std::getenv("DEEP_MUSICIAN_ENDPOINT"); endpoint && endpoint[0] != '\0')
            fEndpoint = endpoint;
        // The JACK standalone has no UI to set parameters with: the environment picks its mode and headrooms.
        if (const char* mode = std::getenv("DEEP_MUSICIAN_MODE"); mode != nullptr)
            fMode = std::strcmp(mode, "render") == 0     ? kModeRender
                    : std::strcmp(mode, "generate") == 0 ? kModeGenerate
                                                         : kModeArrange;
        if (const char* headroom = std::getenv("DEEP_MUSICIAN_HEADROOM_MS"); headroom != nullptr)
            fHeadroomMs = std::clamp(static_cast<float>(std::atof(headroom)), 0.0f, kMaxHeadroomMs);
        if (const char* headroom = std::getenv("DEEP_MUSICIAN_ARRANGE_HEADROOM_MS"); headroom != nullptr)
            fArrangeHeadroomMs = std::clamp(static_cast<float>(std::atof(headroom)), 0.0f, kMaxArrangeHeadroomMs);
    }

protected:
    // Information
    const char* getLabel() const override { return "DeepMusician"; }
    const char* getDescription() const override {
        return "Thin client of the Deep Musician engine: arranges or renders the notes you play.";
    }
    const char* getMaker() const override { return "Deep Musician"; }
    const char* getLicense() const override { return "MIT"; }
    uint32_t getVersion() const override { return d_version(0, 2, 0); }
    int64_t getUniqueId() const override { return d_cconst('D', 'p', 'M', 's'); }

    // Init
    void initParameter(uint32_t index, Parameter& parameter) override {
        if (index >= kParameterCount)
            return;
        const ParameterSpec& spec = kParameterSpecs[index];
        parameter.hints = spec.hints;
        parameter.name = spec.name;
        parameter.symbol = spec.symbol;
        parameter.unit = spec.unit;
        parameter.ranges = ParameterRanges(spec.def, spec.min, spec.max);
        if (index == kParameterMode) {
            setEnumeration(parameter, {{kModeArrange, "Arrange"}, {kModeRender, "Render"},
                                       {kModeGenerate, "Generate"}});
        } else if (index == kParameterRenderer) {
            setEnumeration(parameter, {{kRendererSoundFont, "SoundFont"}, {kRendererNeural, "Neural"},
                                       {kRendererNeuralPlain, "Neural plain"}});
        } else if (index == kParameterEnsemble) {
            // DPF 1.6 fixes enumeration labels when the plugin is created, before any engine answers:
            // the labels say the index and, in brackets, what the shipped engine serves there.
            std::vector<std::pair<float, const char*>> labels;
            for (int i = 0; i < dm::kMaxEnsembles; ++i)
                labels.emplace_back(static_cast<float>(i), kEnsembleLabels[i]);
            setEnumeration(parameter, labels);
        }
    }

    static void setEnumeration(Parameter& parameter, const std::vector<std::pair<float, const char*>>& labels) {
        ParameterEnumerationValue* values = new ParameterEnumerationValue[labels.size()];  // DPF frees it
        for (std::size_t i = 0; i < labels.size(); ++i)
            values[i] = ParameterEnumerationValue(labels[i].first, labels[i].second);
        parameter.enumValues.count = static_cast<uint8_t>(labels.size());
        parameter.enumValues.restrictedMode = true;
        parameter.enumValues.values = values;
    }

    void initState(uint32_t index, State& state) override {
        state.hints = kStateIsOnlyForDSP;
        if (index == kStateEndpoint) {
            state.key = "endpoint";
            state.defaultValue = dm::protocol::kDefaultEndpoint;
            state.label = "Engine endpoint";
        } else if (index == kStateSession) {
            state.key = "session";
            state.defaultValue = "";
            state.label = "Engine session";
        }
    }

    // Internal data
    float getParameterValue(uint32_t index) const override {
        switch (index) {
        case kParameterMode: return static_cast<float>(fMode);
        case kParameterEnsemble: return static_cast<float>(fEnsemble);
        case kParameterOfflineWait: return fOfflineWait ? 1.0f : 0.0f;
        case kParameterOfflineTimeoutMs: return fOfflineTimeoutMs;
        case kParameterProgram: return static_cast<float>(fProgram);
        case kParameterTemperature: return fTemperature;
        case kParameterEngineConnected: return fLink && fLink->fConnected.load() ? 1.0f : 0.0f;
        case kParameterArrangedNotes: return static_cast<float>(fArrangedCount);
        case kParameterEnsembleInUse: return fLink ? static_cast<float>(fLink->fResolvedEnsemble.load()) : -1.0f;
        case kParameterEngineEnsembles: return fLink ? static_cast<float>(fLink->fEnsembleCount.load()) : 0.0f;
        case kParameterLatencySamples: return static_cast<float>(reportedLatency());
        case kParameterRoundTripUs: return fLink ? static_cast<float>(fLink->fRoundTripUs.load()) : 0.0f;
        case kParameterLateBlocks: return fLink ? static_cast<float>(fLink->fLateBlocks.load()) : 0.0f;
        case kParameterEngineErrors: return fLink ? static_cast<float>(fLink->fErrors.load()) : 0.0f;
        case kParameterHeadroomMs: return fHeadroomMs;
        case kParameterArrangeHeadroomMs: return fArrangeHeadroomMs;
        case kParameterLateNotes: return fLink ? static_cast<float>(fLink->fLateNotes.load()) : 0.0f;
        case kParameterGenerateBars: return static_cast<float>(fGenerateBars);
        case kParameterGenerateTrigger: return fGenerateTrigger ? 1.0f : 0.0f;
        case kParameterGenerateLeadMs: return fGenerateLeadMs;
        case kParameterGeneratedNotes: return static_cast<float>(fGeneratedCount);
        case kParameterRenderer: return static_cast<float>(fRenderer);
        }
        return 0.0f;
    }

    void setParameterValue(uint32_t index, float value) override {
        switch (index) {
        case kParameterMode:
            fMode = std::clamp(static_cast<int>(value + 0.5f), 0, 2);
            applyHeadroom();
            break;
        case kParameterEnsemble:
            fEnsemble = std::clamp(static_cast<int>(value + 0.5f), 0, dm::kMaxEnsembles - 1);
            break;
        case kParameterOfflineWait: fOfflineWait = value > 0.5f; break;
        case kParameterOfflineTimeoutMs: fOfflineTimeoutMs = std::clamp(value, 10.0f, 10000.0f); break;
        case kParameterProgram: fProgram = std::clamp(static_cast<int>(value + 0.5f), 0, 127); break;
        case kParameterRenderer: {
            const int renderer = std::clamp(static_cast<int>(value + 0.5f), static_cast<int>(kRendererSoundFont),
                                            static_cast<int>(kRendererNeuralPlain));
            if (renderer != fRenderer) {  // Neural adds the engine's latency (its last stated figure)
                fRenderer = renderer;
                reportLatency();
            }
            break;
        }
        case kParameterTemperature: fTemperature = std::clamp(value, 0.05f, 2.0f); break;
        case kParameterHeadroomMs: fHeadroomMs = std::clamp(value, 0.0f, kMaxHeadroomMs); break;
        case kParameterArrangeHeadroomMs: fArrangeHeadroomMs = std::clamp(value, 0.0f, kMaxArrangeHeadroomMs); break;
        case kParameterGenerateBars:
            fGenerateBars = std::clamp(static_cast<int>(value + 0.5f), 1, static_cast<int>(kMaxGenerateBars));
            break;
        case kParameterGenerateTrigger: {
            const bool on = value > 0.5f;
            if (on && !fGenerateTrigger)
                fGenerateRequested.store(true, std::memory_order_relaxed);  // run() starts it
            fGenerateTrigger = on;
            break;
        }
        case kParameterGenerateLeadMs: fGenerateLeadMs = std::clamp(value, 0.0f, 4000.0f); break;
        }
    }

    // Called on a non-real-time thread; a changed endpoint or session takes effect on the next
    // activate() (hosts restore state before activating).
    void setState(const char* key, const char* value) override {
        if (std::strcmp(key, "endpoint") == 0 && value[0] != '\0')
            fEndpoint = value;
        else if (std::strcmp(key, "session") == 0 && value[0] != '\0')
            fSession = value;
    }

    String getState(const char* key) const override {
        if (std::strcmp(key, "endpoint") == 0)
            return String(fEndpoint.c_str());
        if (std::strcmp(key, "session") == 0)
            return String(fSession.c_str());
        return String();
    }

    // Processing
    void activate() override {
        const uint32_t block = std::max<uint32_t>(1, getBufferSize());
        fEngineLatency = 0;  // a new link: the engine states it again with its first answer
        applyHeadroom();
        // The ring holds the largest latency the headroom allows plus a second, so very late blocks
        // land harmlessly and a changed headroom never reallocates it.
        const std::size_t ringFrames = 2 * (engineLatencyFrames(block, getSampleRate(), kMaxHeadroomMs) + block)
                                       + static_cast<std::size_t>(getSampleRate());
        fLink = std::make_unique<dm::EngineLink>(fEndpoint, fSession, getSampleRate(), ringFrames);
        fSentEnsemble = -1;  // the first block names the ensemble
        fSentProgram = -1;
        fLink->start();
        fPendingCount = 0;
        fPendingOrder = 0;
        fArrangedCount = 0;
        fGeneratedCount = 0;
        fGenerateSeq = 0;
        fPendingSorted = true;
        for (auto& channel : fGeneratedOn)
            std::fill(channel, channel + 128, 0);
        fBlockSeq = 0;
        fFrame = 0;
        fWasPlaying = false;
        fWasConnected = false;
        std::fill(fSoundingCount, fSoundingCount + 128, 0);
        std::fill(fEarlyCount, fEarlyCount + 128, 0);
        fPedalDown = false;
        std::fill(fKeyDown, fKeyDown + 128, 0);
        std::fill(fSustained, fSustained + 128, 0);
    }

    void deactivate() override {
        if (fLink)
            fLink->stop();
        fLink.reset();
    }

    // Called on the audio thread.
    void run(const float**, float** outputs, uint32_t frames, const MidiEvent* midiEvents,
             uint32_t midiEventCount) override {
        std::fill(outputs[0], outputs[0] + frames, 0.0f);
        std::fill(outputs[1], outputs[1] + frames, 0.0f);
        if (!fLink)
            return;
        if (modeHeadroomMs() != fLatencyHeadroomMs)  // DPF lets run() report a new latency
            applyHeadroom();

        const TimePosition& time = getTimePosition();
        const double qpm = time.bbt.valid && time.bbt.beatsPerMinute > 0.0
                               ? time.bbt.beatsPerMinute : dm::protocol::kDefaultQpm;
        const double ticksPerFrame = qpm / 60.0 * dm::EngineLink::kResolution / getSampleRate();
        // The timeline is the host's while its transport rolls; while it stands (a live player with
        // the DAW stopped, the JACK standalone) it is the plugin's own frame count, which never goes
        // back (the online arranger refuses notes earlier than those it has seen).
        const int64_t positionFrame = time.playing ? static_cast<int64_t>(time.frame) : fFrame;
        const int64_t blockTicks = static_cast<int64_t>(positionFrame * ticksPerFrame);
        using Ev = dm::OutgoingEvent;
        const bool transportStarted = time.playing && (!fWasPlaying || time.frame != fExpectedFrame);
        const bool transportStopped = !time.playing && fWasPlaying;
        // A transport start, stop or jump, or a new ensemble, starts the arrange session afresh; a
        // new program goes with the next render block (the engine switches without a reset).
        if (time.playing != fWasPlaying || (time.playing && time.frame != fExpectedFrame)
            || fEnsemble != fSentEnsemble) {
            fLink->fOutgoing.push({Ev::kReset, Ev::kArrange, static_cast<uint8_t>(fEnsemble),
                                   static_cast<uint8_t>(fProgram), 0, 0.0, 0, 0, 0});
            std::fill(fEarlyCount, fEarlyCount + 128, 0);
        }
        if (fProgram != fSentProgram || fRenderer != fSentRenderer)
            fLink->fOutgoing.push({Ev::kReset, Ev::kPerform, static_cast<uint8_t>(fEnsemble),
                                   static_cast<uint8_t>(fProgram), 0, 0.0, 0, 0, 0, 1.0f,
                                   static_cast<uint8_t>(fRenderer)});
        fSentEnsemble = fEnsemble;
        fSentProgram = fProgram;
        fSentRenderer = fRenderer;
        fWasPlaying = time.playing;
        fExpectedFrame = time.frame + frames;
        // Lost the engine: notes in flight never come back, so their early note-offs are dropped.
        const bool connected = fLink->fConnected.load(std::memory_order_relaxed);
        if (fWasConnected && !connected)
            std::fill(fEarlyCount, fEarlyCount + 128, 0);
        fWasConnected = connected;

        if (fMode == kModeArrange || fMode == kModeRender) {
            const Ev::Task task = fMode == kModeRender ? Ev::kPerform : Ev::kArrange;
            bool sent = false;  // notes or releases: the offline wait waits for the engine's answer
            for (uint32_t i = 0; i < midiEventCount; ++i) {
                const MidiEvent& ev = midiEvents[i];
                const uint8_t status = ev.data[0] & 0xF0;
                if (ev.size != 3 || (status != 0x90 && status != 0x80 && status != 0xB0))
                    continue;
                const int64_t ticks = blockTicks + static_cast<int64_t>(ev.frame * ticksPerFrame);
                const int64_t frame = fFrame + ev.frame;
                const uint8_t pitch = ev.data[1] & 0x7F;
                if (status == 0xB0) {
                    // The sustain pedal lengthens notes (a key let go while it is down sounds until
                    // it comes up), as the engine's models see pedalled notes; All Notes Off and All
                    // Sound Off end everything. Other controllers are not the engine's.
                    if (ev.data[1] == 64) {
                        const bool down = ev.data[2] >= 64;
                        if (fPedalDown && !down)
                            sent |= releaseSustained(task, ticks, qpm, frame, false);
                        fPedalDown = down;
                    } else if (ev.data[1] == 120 || ev.data[1] == 123) {
                        sent |= releaseSustained(task, ticks, qpm, frame, true);
                        fPedalDown = false;
                    }
                } else if (status == 0x90 && ev.data[2] != 0) {
                    // Struck again while it still sounds from the pedal: the old note ends here.
                    for (; fSustained[pitch] > 0; --fSustained[pitch])
                        sent |= releaseNote(task, pitch, ticks, qpm, frame);
                    fKeyDown[pitch] = static_cast<uint8_t>(std::min(fKeyDown[pitch] + 1, 255));
                    sent |= fLink->fOutgoing.push({Ev::kNote, task, pitch, ev.data[2], ticks, qpm, 0, frame, 0});
                } else if (fKeyDown[pitch] > 0) {
                    --fKeyDown[pitch];
                    if (fPedalDown)
                        ++fSustained[pitch];
                    else
                        sent |= releaseNote(task, pitch, ticks, qpm, frame);
                }
            }
            const uint64_t seq = ++fBlockSeq;
            fLink->fOutgoing.push({Ev::kBlockEnd, task, 0, 0, blockTicks, qpm, seq, fFrame, frames});
            fLink->wake();
            // Offline only: an offline host calls run() faster than real time, so wait (bounded) for
            // the engine's answer to this block instead of letting it arrive blocks late.
            if (fOfflineWait && (sent || task == Ev::kPerform))
                waitForEngine(seq);
            if (task == Ev::kPerform) {
                const int64_t playFrame = fFrame - static_cast<int64_t>(fLatency);
                fLink->fAudio.read(playFrame, outputs[0], outputs[1], frames);
                fLink->fReadFrame.store(playFrame + frames, std::memory_order_release);
            }
            // The engine's own latency as its last answer stated it (an atomic load: never waits).
            const uint32_t engineLatency = fLink->fEngineLatency.load(std::memory_order_relaxed);
            if (engineLatency != fEngineLatency) {
                fEngineLatency = engineLatency;
                reportLatency();
            }
        } else {
            generateBlock(time, transportStarted, transportStopped, midiEvents, midiEventCount, positionFrame, qpm,
                          ticksPerFrame, frames);
        }
        collectArranged();
        expireEarlyReleases();
        emitDue(frames);
        fFrame += frames;
    }

private:
    // Generate: notes played into the plugin go to the worker, which keeps the last bars of them as
    // the context of the next request; a transport start (or jump) or the Generate trigger asks the
    // engine to compose fGenerateBars bars from the first bar line at least the lead ahead, in the
    // host's tempo and meter. Bars stream back while earlier ones play; each part comes out on its
    // own channel at its place on the timeline (collectArranged). A transport stop cancels the job
    // and silences what was composed.
    void generateBlock(const TimePosition& time, bool started, bool stopped, const MidiEvent* midiEvents,
                       uint32_t midiEventCount, int64_t positionFrame, double qpm, double ticksPerFrame,
                       uint32_t frames) {
        // Ticks rounded, not truncated: a bar line falls on its tick exactly.
        const auto ticksAt = [&](double frame) { return static_cast<int64_t>(std::llround(frame * ticksPerFrame)); };
        using Ev = dm::OutgoingEvent;
        for (uint32_t i = 0; i < midiEventCount; ++i) {
            const MidiEvent& ev = midiEvents[i];
            const uint8_t status = ev.data[0] & 0xF0;
            if (ev.size != 3 || (status != 0x90 && status != 0x80))
                continue;
            const int64_t ticks = ticksAt(static_cast<double>(positionFrame + ev.frame));
            const bool on = status == 0x90 && ev.data[2] != 0;
            fLink->fOutgoing.push({on ? Ev::kNote : Ev::kRelease, Ev::kGenerate, static_cast<uint8_t>(ev.data[1] & 0x7F),
                                   ev.data[2], ticks, qpm, 0, fFrame + ev.frame, 0});
        }
        const bool requested = fGenerateRequested.exchange(false, std::memory_order_relaxed);
        if (stopped || started || requested)
            stopGenerated();
        if (started || requested) {
            // The first bar line at least the lead ahead: beats of the host's meter, `qpm` of them a minute.
            const double sampleRate = getSampleRate();
            const double framesPerBeat = 60.0 / qpm * sampleRate;
            const bool bbt = time.playing && time.bbt.valid && time.bbt.beatsPerBar > 0.0f;
            const double beatsPerBar = bbt ? time.bbt.beatsPerBar : 4.0;
            const double beatType = bbt && time.bbt.beatType > 0.0f ? time.bbt.beatType : 4.0;
            const double beatInBar = bbt && time.bbt.ticksPerBeat > 0.0
                                         ? (time.bbt.beat - 1) + time.bbt.tick / time.bbt.ticksPerBeat : 0.0;
            const double barFrames = beatsPerBar * framesPerBeat;
            double toBar = beatInBar > 1e-6 ? (beatsPerBar - beatInBar) * framesPerBeat : 0.0;
            const double lead = fGenerateLeadMs / 1000.0 * sampleRate;
            while (toBar + 0.5 < lead)
                toBar += barFrames;
            fGenerateStart = fFrame + static_cast<int64_t>(std::llround(toBar));
            fGenerateEnd = fGenerateStart + static_cast<int64_t>(std::llround(fGenerateBars * barFrames));
            fGenerateSeq = ++fBlockSeq;
            Ev request{Ev::kCompose, Ev::kGenerate, static_cast<uint8_t>(beatsPerBar), static_cast<uint8_t>(beatType),
                       ticksAt(positionFrame + toBar), qpm, fGenerateSeq,
                       fGenerateStart, static_cast<uint32_t>(fGenerateBars)};
            request.temperature = fTemperature;
            fLink->fOutgoing.push(request);
            fLink->wake();
        }
        // Offline only: wait (bounded) until the bars that sound in this block have arrived.
        if (fOfflineWait && fGenerateSeq != 0 && fFrame + frames > fGenerateStart && fFrame < fGenerateEnd) {
            const int64_t needed = std::min<int64_t>(fFrame + frames, fGenerateEnd);
            const auto deadline = std::chrono::steady_clock::now()
                                  + std::chrono::microseconds(static_cast<int64_t>(fOfflineTimeoutMs * 1000));
            while (!(fLink->fComposedSeq.load() == fGenerateSeq && fLink->fComposedThrough.load() >= needed)
                   && std::chrono::steady_clock::now() < deadline)
                std::this_thread::sleep_for(std::chrono::microseconds(50));
        }
    }

    // Drops the composed notes not yet played and ends those sounding (a new request, a stop).
    void stopGenerated() {
        if (fGenerateSeq == 0)
            return;
        fLink->fOutgoing.push({dm::OutgoingEvent::kStopCompose, dm::OutgoingEvent::kGenerate, 0, 0, 0, 0.0,
                               fGenerateSeq, 0, 0});
        fGenerateSeq = 0;
        uint32_t kept = 0;
        for (uint32_t i = 0; i < fPendingCount; ++i)
            if (!fPending[i].generated)
                fPending[kept++] = fPending[i];
        fPendingCount = kept;
        for (int channel = 0; channel < 16; ++channel) {
            for (int pitch = 0; pitch < 128; ++pitch)
                if (fGeneratedOn[channel][pitch] > 0)
                    addPending(fFrame, 0x80 | channel, static_cast<uint8_t>(pitch), 0);
            std::fill(fGeneratedOn[channel], fGeneratedOn[channel] + 128, 0);
        }
    }

    void waitForEngine(uint64_t seq) {
        const auto deadline = std::chrono::steady_clock::now()
                              + std::chrono::microseconds(static_cast<int64_t>(fOfflineTimeoutMs * 1000));
        while (fLink->fAnsweredBlock.load() < seq && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::microseconds(50));
    }

    struct PendingMidi {
        int64_t frame;  // on the plugin's own frame counter fFrame
        uint32_t order;  // ties at one frame keep the order they were added in (a note-on before its off)
        uint8_t data[3];
        bool generated;  // Generate's: dropped when the job is stopped
    };

    void addPending(int64_t frame, uint8_t status, uint8_t pitch, uint8_t velocity, bool generated = false) {
        if (fPendingCount < kMaxPending) {
            fPending[fPendingCount++] = {frame, fPendingOrder++, {status, pitch, velocity}, generated};
            fPendingSorted = false;
        }
    }

    // The latency from the mode's engine headroom; reported to the host in Arrange and Render
    // (Generate's notes answer no played note: nothing to compensate).
    float modeHeadroomMs() const { return fMode == kModeArrange ? fArrangeHeadroomMs : fHeadroomMs; }

    void applyHeadroom() {
        fLatencyHeadroomMs = modeHeadroomMs();
        fLatency = engineLatencyFrames(std::max<uint32_t>(1, getBufferSize()), getSampleRate(), fLatencyHeadroomMs);
        reportLatency();
    }

    uint32_t reportedLatency() const {
        if (fMode == kModeGenerate)
            return 0;
        return fMode == kModeRender && fRenderer != kRendererSoundFont ? fLatency + fEngineLatency : fLatency;
    }
    void reportLatency() { setLatency(reportedLatency()); }

    // The engine hears every release: Render ends the note, Arrange frees its part and the arranged
    // note's note-off follows, the latency after the played one. True when the release went out.
    bool releaseNote(dm::OutgoingEvent::Task task, uint8_t pitch, int64_t ticks, double qpm, int64_t frame) {
        const bool sent = fLink->fOutgoing.push({dm::OutgoingEvent::kRelease, task, pitch, 0, ticks, qpm, 0, 0, 0});
        if (task == dm::OutgoingEvent::kArrange)
            releaseArranged(pitch, frame + fLatency);
        return sent;
    }

    // Pedal up: every note let go while it was down ends now. `all` (All Notes Off) ends held keys too.
    bool releaseSustained(dm::OutgoingEvent::Task task, int64_t ticks, double qpm, int64_t frame, bool all) {
        bool sent = false;
        for (int pitch = 0; pitch < 128; ++pitch) {
            for (int n = fSustained[pitch] + (all ? fKeyDown[pitch] : 0); n > 0; --n)
                sent |= releaseNote(task, static_cast<uint8_t>(pitch), ticks, qpm, frame);
            fSustained[pitch] = 0;
            if (all)
                fKeyDown[pitch] = 0;
        }
        return sent;
    }

    // Arrange note-offs. A played note's arranged note-on comes back later (within the latency in
    // real time, the same block in offline wait). Each pitch keeps a FIFO of its arranged notes still
    // sounding (their channel) and one of played note-offs that came before their arranged note-on;
    // a note-off goes out on the channel its note-on went to, never before that note-on. Frames here
    // are output frames: played frame + latency.
    struct Voice {
        int64_t onFrame;
        uint8_t channel;
    };

    void releaseArranged(uint8_t pitch, int64_t frame) {
        if (fSoundingCount[pitch] > 0) {
            const Voice v = fSounding[pitch][0];
            std::copy(fSounding[pitch] + 1, fSounding[pitch] + fSoundingCount[pitch], fSounding[pitch]);
            --fSoundingCount[pitch];
            addPending(std::max(frame, v.onFrame + 1), 0x80 | v.channel, pitch, 0);
        } else if (fEarlyCount[pitch] < kVoicesPerPitch) {
            fEarly[pitch][fEarlyCount[pitch]++] = frame;
        }
    }

    // Each arranged note goes out at its played frame + the latency; one that comes back after that
    // frame has passed goes out at once (this block's first frame) and counts as late.
    void collectArranged() {
        dm::ArrangedNote note;
        while (fLink->fArranged.pop(note)) {
            if (note.generated) {
                addGenerated(note);
                continue;
            }
            ++fArrangedCount;
            int64_t onset = note.frame < 0 ? fFrame : note.frame + static_cast<int64_t>(fLatency);
            if (onset < fFrame) {
                const int64_t lateFrames = fFrame - onset;
                fLink->fLateNotes.fetch_add(1, std::memory_order_relaxed);
                if (lateFrames > fLink->fWorstLateFrames.load(std::memory_order_relaxed))
                    fLink->fWorstLateFrames.store(lateFrames, std::memory_order_relaxed);
                onset = fFrame;
            } else if (note.frame < 0) {
                fLink->fLateNotes.fetch_add(1, std::memory_order_relaxed);  // its place is unknown
            }
            const uint8_t channel = note.part & 0x0F;
            const uint8_t pitch = note.pitch & 0x7F;
            // An earlier note of this pitch and channel ends no later than this one starts (they
            // overlap when this one came back late).
            for (uint32_t i = 0; i < fPendingCount; ++i)
                if (fPending[i].data[0] == (0x80 | channel) && fPending[i].data[1] == pitch
                    && fPending[i].frame > onset)
                    fPending[i].frame = onset;
            addPending(onset, 0x90 | channel, pitch, note.velocity);
            if (fEarlyCount[pitch] > 0) {  // played and released before it came back: end it right after
                const int64_t released = fEarly[pitch][0];
                std::copy(fEarly[pitch] + 1, fEarly[pitch] + fEarlyCount[pitch], fEarly[pitch]);
                --fEarlyCount[pitch];
                addPending(std::max(released, onset + 1), 0x80 | channel, pitch, 0);
            } else {
                if (fSoundingCount[pitch] == kVoicesPerPitch)  // full: the oldest ends now
                    releaseArranged(pitch, onset);
                fSounding[pitch][fSoundingCount[pitch]++] = {onset, channel};
            }
        }
    }

    // A composed note goes out at its place on the timeline, or at once (counted late) when it came
    // back after that place had passed; one of a job since stopped is dropped.
    void addGenerated(const dm::ArrangedNote& note) {
        if (note.job != fGenerateSeq || fGenerateSeq == 0)
            return;
        ++fGeneratedCount;
        int64_t onset = note.frame;
        if (onset < fFrame) {
            fLink->fLateNotes.fetch_add(1, std::memory_order_relaxed);
            onset = fFrame;
        }
        const uint8_t channel = note.part & 0x0F;
        const uint8_t pitch = note.pitch & 0x7F;
        addPending(onset, 0x90 | channel, pitch, note.velocity, true);
        addPending(std::max(onset + 1, note.frame + note.durationFrames), 0x80 | channel, pitch, 0, true);
    }

    // A played note-off waits for its arranged note-on at most two seconds: a note whose block the
    // engine never answered (refused, engine gone) would otherwise end the next note of its pitch.
    void expireEarlyReleases() {
        const int64_t horizon = fFrame - static_cast<int64_t>(2.0 * getSampleRate());
        for (int p = 0; p < 128; ++p)
            while (fEarlyCount[p] > 0 && fEarly[p][0] < horizon) {
                std::copy(fEarly[p] + 1, fEarly[p] + fEarlyCount[p], fEarly[p]);
                --fEarlyCount[p];
            }
    }

    // Writes the pending events that fall in this block, in frame order; keeps the rest.
    void emitDue(uint32_t frames) {
        if (!fPendingSorted)
            std::sort(fPending, fPending + fPendingCount, [](const PendingMidi& a, const PendingMidi& b) {
                return a.frame != b.frame ? a.frame < b.frame : a.order < b.order;
            });
        fPendingSorted = true;
        uint32_t kept = 0;
        for (uint32_t i = 0; i < fPendingCount; ++i) {
            const PendingMidi& pm = fPending[i];
            if (pm.frame < fFrame + frames) {
                MidiEvent ev;
                ev.frame = static_cast<uint32_t>(std::max<int64_t>(0, pm.frame - fFrame));
                ev.size = 3;
                std::memcpy(ev.data, pm.data, 3);
                ev.dataExt = nullptr;
                writeMidiEvent(ev);
                if (pm.generated) {  // what sounds, for stopGenerated
                    uint8_t& on = fGeneratedOn[pm.data[0] & 0x0F][pm.data[1] & 0x7F];
                    on = (pm.data[0] & 0xF0) == 0x90 ? static_cast<uint8_t>(std::min(on + 1, 255)) : (on > 0 ? on - 1 : 0);
                }
            } else {
                fPending[kept++] = pm;
            }
        }
        fPendingCount = kept;
    }

    static constexpr uint32_t kMaxPending = 8192;  // Generate: 32 bars of four busy parts, on and off
    static constexpr int kVoicesPerPitch = 8;
    static constexpr const char* kEnsembleLabels[dm::kMaxEnsembles] = {
        "1 (satb)", "2 (string_quartet)", "3", "4", "5", "6", "7", "8"};

    int fMode = kModeArrange;
    int fEnsemble = 0;  // an index into the engine's online ensembles
    int fSentEnsemble = -1;
    int fProgram = 0;
    int fSentProgram = -1;
    int fRenderer = kRendererSoundFont;
    int fSentRenderer = -1;
    float fTemperature = 1.0f;
    int fGenerateBars = static_cast<int>(kDefaultGenerateBars);
    bool fGenerateTrigger = false;
    std::atomic<bool> fGenerateRequested{false};  // the trigger went 0 -> 1; run() starts the job
    float fGenerateLeadMs = kDefaultGenerateLeadMs;
    uint64_t fGenerateSeq = 0;  // the job whose notes are wanted (its request's block number); 0: none
    int64_t fGenerateStart = 0, fGenerateEnd = 0;  // its bars' frames on the plugin's own counter
    uint32_t fGeneratedCount = 0;
    uint8_t fGeneratedOn[16][128] = {};  // composed notes sounding, per channel and pitch
    bool fOfflineWait = false;
    float fOfflineTimeoutMs = 1000.0f;
    float fHeadroomMs = kDefaultHeadroomMs;
    float fArrangeHeadroomMs = kDefaultArrangeHeadroomMs;
    float fLatencyHeadroomMs = kDefaultHeadroomMs;  // the headroom fLatency was computed for
    uint32_t fLatency = 0;  // frames; set in activate(), reported in Arrange and Render
    uint32_t fEngineLatency = 0;  // frames: the engine's own (neural) latency, added in Render with Neural
    std::string fEndpoint;
    std::string fSession;
    std::unique_ptr<dm::EngineLink> fLink;
    PendingMidi fPending[kMaxPending];
    uint32_t fPendingCount = 0;
    uint32_t fPendingOrder = 0;
    bool fPendingSorted = true;
    Voice fSounding[128][kVoicesPerPitch];
    uint8_t fSoundingCount[128] = {};
    int64_t fEarly[128][kVoicesPerPitch];
    uint8_t fEarlyCount[128] = {};
    uint64_t fBlockSeq = 0;
    uint32_t fArrangedCount = 0;
    int64_t fFrame = 0;
    uint64_t fExpectedFrame = 0;
    bool fWasPlaying = false;
    bool fWasConnected = false;
    bool fPedalDown = false;     // the sustain pedal (CC 64) as played
    uint8_t fKeyDown[128] = {};    // notes on per key as played (a note-off for a key not down is ignored)
    uint8_t fSustained[128] = {};  // notes let go while the pedal was down: released when it comes up

    DISTRHO_DECLARE_NON_COPYABLE_WITH_LEAK_DETECTOR(DeepMusicianPlugin)
};

Plugin* createPlugin() { return new DeepMusicianPlugin(); }

END_NAMESPACE_DISTRHO
