// The Deep Musician plugin: notes played into it go to the engine, and what the engine answers comes
// back out (arranged notes on the MIDI output, one channel per part). The audio thread never blocks
// on the engine, allocates or touches a socket, except in the explicit "offline wait" mode, which
// waits a bounded time for the engine so offline bounces come out complete.
#include "DistrhoPlugin.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <thread>

#include "EngineLink.hpp"
#include "protocol.hpp"

START_NAMESPACE_DISTRHO

class DeepMusicianPlugin : public Plugin {
public:
    enum Parameters {
        kParameterMode,
        kParameterEnsemble,
        kParameterOfflineWait,
        kParameterOfflineTimeoutMs,
        kParameterEngineConnected,  // output: 1 while the engine answers
        kParameterArrangedNotes,    // output: notes the engine has arranged since activate()
        kParameterCount
    };
    enum Mode { kModeArrange, kModeRender, kModeGenerate };  // Render and Generate: placeholders
    enum States { kStateEndpoint, kStateSession, kStateCount };

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
    }

protected:
    // Information
    const char* getLabel() const override { return "DeepMusician"; }
    const char* getDescription() const override {
        return "Thin client of the Deep Musician engine: arranges the notes you play.";
    }
    const char* getMaker() const override { return "Deep Musician"; }
    const char* getLicense() const override { return "MIT"; }
    uint32_t getVersion() const override { return d_version(0, 1, 0); }
    int64_t getUniqueId() const override { return d_cconst('D', 'p', 'M', 's'); }

    // Init
    void initParameter(uint32_t index, Parameter& parameter) override {
        switch (index) {
        case kParameterMode: {
            parameter.hints = kParameterIsAutomatable | kParameterIsInteger;
            parameter.name = "Mode";
            parameter.symbol = "mode";
            parameter.ranges = ParameterRanges(kModeArrange, kModeArrange, kModeGenerate);
            ParameterEnumerationValue* values = new ParameterEnumerationValue[3];
            values[0] = ParameterEnumerationValue(kModeArrange, "Arrange");
            values[1] = ParameterEnumerationValue(kModeRender, "Render");
            values[2] = ParameterEnumerationValue(kModeGenerate, "Generate");
            parameter.enumValues.count = 3;
            parameter.enumValues.restrictedMode = true;
            parameter.enumValues.values = values;
            break;
        }
        case kParameterEnsemble: {
            parameter.hints = kParameterIsAutomatable | kParameterIsInteger;
            parameter.name = "Ensemble";
            parameter.symbol = "ensemble";
            parameter.ranges = ParameterRanges(0, 0, kEnsembleCount - 1);
            ParameterEnumerationValue* values = new ParameterEnumerationValue[kEnsembleCount];
            for (int i = 0; i < kEnsembleCount; ++i)
                values[i] = ParameterEnumerationValue(i, kEnsembleLabels[i]);
            parameter.enumValues.count = kEnsembleCount;
            parameter.enumValues.restrictedMode = true;
            parameter.enumValues.values = values;
            break;
        }
        case kParameterOfflineWait:
            parameter.hints = kParameterIsAutomatable | kParameterIsBoolean;
            parameter.name = "Offline: wait for engine";
            parameter.symbol = "offline_wait";
            parameter.ranges = ParameterRanges(0.0f, 0.0f, 1.0f);
            break;
        case kParameterOfflineTimeoutMs:
            parameter.hints = kParameterIsAutomatable | kParameterIsInteger;
            parameter.name = "Offline wait timeout";
            parameter.symbol = "offline_timeout_ms";
            parameter.unit = "ms";
            parameter.ranges = ParameterRanges(1000.0f, 10.0f, 10000.0f);
            break;
        case kParameterEngineConnected:
            parameter.hints = kParameterIsOutput | kParameterIsBoolean;
            parameter.name = "Engine connected";
            parameter.symbol = "engine_connected";
            parameter.ranges = ParameterRanges(0.0f, 0.0f, 1.0f);
            break;
        case kParameterArrangedNotes:
            parameter.hints = kParameterIsOutput | kParameterIsInteger;
            parameter.name = "Arranged notes";
            parameter.symbol = "arranged_notes";
            parameter.ranges = ParameterRanges(0.0f, 0.0f, 1e6f);
            break;
        }
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
        case kParameterEngineConnected: return fLink && fLink->fConnected.load() ? 1.0f : 0.0f;
        case kParameterArrangedNotes: return static_cast<float>(fArrangedCount);
        }
        return 0.0f;
    }

    void setParameterValue(uint32_t index, float value) override {
        switch (index) {
        case kParameterMode: fMode = std::clamp(static_cast<int>(value + 0.5f), 0, 2); break;
        case kParameterEnsemble: fEnsemble = std::clamp(static_cast<int>(value + 0.5f), 0, kEnsembleCount - 1); break;
        case kParameterOfflineWait: fOfflineWait = value > 0.5f; break;
        case kParameterOfflineTimeoutMs: fOfflineTimeoutMs = std::clamp(value, 10.0f, 10000.0f); break;
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
        fLink = std::make_unique<dm::EngineLink>(fEndpoint, fSession);
        fSentEnsemble = -1;  // the first block names the ensemble
        fLink->start();
        fPendingCount = 0;
        fArrangedCount = 0;
        fBlockSeq = 0;
        fFrame = 0;
        fWasPlaying = false;
    }

    void deactivate() override {
        if (fLink)
            fLink->stop();
        fLink.reset();
    }

    // Called on the audio thread.
    void run(const float**, float** outputs, uint32_t frames, const MidiEvent* midiEvents,
             uint32_t midiEventCount) override {
        std::fill(outputs[0], outputs[0] + frames, 0.0f);  // Render is not wired yet: silence
        std::fill(outputs[1], outputs[1] + frames, 0.0f);
        if (!fLink)
            return;

        const TimePosition& time = getTimePosition();
        const double qpm = time.bbt.valid && time.bbt.beatsPerMinute > 0.0
                               ? time.bbt.beatsPerMinute : dm::protocol::kDefaultQpm;
        const double ticksPerFrame = qpm / 60.0 * dm::EngineLink::kResolution / getSampleRate();
        const int64_t blockTicks = static_cast<int64_t>(time.frame * ticksPerFrame);
        // A transport jump or a new ensemble starts the engine's session afresh.
        if ((time.playing && (!fWasPlaying || time.frame != fExpectedFrame)) || fEnsemble != fSentEnsemble)
            fLink->fOutgoing.push({dm::OutgoingEvent::kReset, static_cast<uint8_t>(fEnsemble), 0, 0, 0.0, 0});
        fSentEnsemble = fEnsemble;
        fWasPlaying = time.playing;
        fExpectedFrame = time.frame + frames;

        if (fMode == kModeArrange) {
            bool sentNotes = false;
            for (uint32_t i = 0; i < midiEventCount; ++i) {
                const MidiEvent& ev = midiEvents[i];
                if (ev.size != 3 || (ev.data[0] & 0xF0) != 0x90 || ev.data[2] == 0)
                    continue;  // note-ons only: the engine arranges onsets
                const int64_t ticks = blockTicks + static_cast<int64_t>(ev.frame * ticksPerFrame);
                sentNotes |= fLink->fOutgoing.push({dm::OutgoingEvent::kNote, ev.data[1], ev.data[2],
                                                    ticks, qpm, 0});
            }
            const uint64_t seq = ++fBlockSeq;
            fLink->fOutgoing.push({dm::OutgoingEvent::kBlockEnd, 0, 0, blockTicks, qpm, seq});
            if (sentNotes && fOfflineWait)
                waitForEngine(seq);
        }
        collectArranged(blockTicks, ticksPerFrame);
        emitDue(frames);
        fFrame += frames;
    }

private:
    // Offline mode only: an offline host calls run() faster than real time, so wait (bounded) for
    // the engine's answer to this block instead of letting it arrive blocks late.
    void waitForEngine(uint64_t seq) {
        const auto deadline = std::chrono::steady_clock::now()
                              + std::chrono::microseconds(static_cast<int64_t>(fOfflineTimeoutMs * 1000));
        while (fLink->fAnsweredBlock.load() < seq && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::microseconds(50));
    }

    struct PendingMidi {
        int64_t frame;  // on the plugin's own frame counter fFrame
        uint8_t data[3];
    };

    void addPending(int64_t frame, uint8_t status, uint8_t pitch, uint8_t velocity) {
        if (fPendingCount < kMaxPending)
            fPending[fPendingCount++] = {frame, {status, pitch, velocity}};
    }

    void collectArranged(int64_t blockTicks, double ticksPerFrame) {
        dm::ArrangedNote note;
        while (fLink->fArranged.pop(note)) {
            ++fArrangedCount;
            const int64_t onset = fFrame + std::max<int64_t>(
                0, static_cast<int64_t>((note.timeTicks - blockTicks) / ticksPerFrame));  // late: now
            const int64_t off = onset + std::max<int64_t>(1, static_cast<int64_t>(note.durationTicks / ticksPerFrame));
            const uint8_t channel = note.part & 0x0F;
            addPending(onset, 0x90 | channel, note.pitch, note.velocity);
            addPending(off, 0x80 | channel, note.pitch, 0);
        }
    }

    // Writes the pending events that fall in this block, in frame order; keeps the rest.
    void emitDue(uint32_t frames) {
        std::sort(fPending, fPending + fPendingCount,
                  [](const PendingMidi& a, const PendingMidi& b) { return a.frame < b.frame; });
        uint32_t kept = 0;
        for (uint32_t i = 0; i < fPendingCount; ++i) {
            const PendingMidi& pm = fPending[i];
            if (pm.frame < fFrame + frames) {
                MidiEvent ev;
                ev.frame = static_cast<uint32_t>(pm.frame - fFrame);
                ev.size = 3;
                std::memcpy(ev.data, pm.data, 3);
                ev.dataExt = nullptr;
                writeMidiEvent(ev);
            } else {
                fPending[kept++] = pm;
            }
        }
        fPendingCount = kept;
    }

    static constexpr uint32_t kMaxPending = 1024;
    static constexpr int kEnsembleCount = dm::kEnsembleCount;
    static constexpr const char* kEnsembleLabels[kEnsembleCount] = {"SATB choir", "String quartet"};

    int fMode = kModeArrange;
    int fEnsemble = 0;  // an index of dm::kEnsembles
    int fSentEnsemble = -1;
    bool fOfflineWait = false;
    float fOfflineTimeoutMs = 1000.0f;
    std::string fEndpoint;
    std::string fSession;
    std::unique_ptr<dm::EngineLink> fLink;
    PendingMidi fPending[kMaxPending];
    uint32_t fPendingCount = 0;
    uint64_t fBlockSeq = 0;
    uint32_t fArrangedCount = 0;
    int64_t fFrame = 0;
    uint64_t fExpectedFrame = 0;
    bool fWasPlaying = false;

    DISTRHO_DECLARE_NON_COPYABLE_WITH_LEAK_DETECTOR(DeepMusicianPlugin)
};

Plugin* createPlugin() { return new DeepMusicianPlugin(); }

END_NAMESPACE_DISTRHO
