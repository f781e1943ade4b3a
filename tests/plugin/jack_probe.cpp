// A JACK test client for the plugin in real time (the JACK standalone, or the LV2 in jalv): plays
// notes into TARGET's MIDI input and records TARGET's audio and MIDI output, all on JACK's frame
// clock. Two clients, so the graph is probe-send -> TARGET -> probe-recv with no cycle: a note sent
// at frame F reaches TARGET in the same period, and what TARGET outputs in a period is recorded in
// that period.
// Usage: jack_probe TARGET SECONDS FIRST_MS INTERVAL_MS LENGTH_MS AUDIO_PATH PITCH...
// Prints "rate R", "period P", "xruns N", "note FRAME PITCH" per note sent and "midi FRAME STATUS
// DATA1 DATA2" per MIDI event received; frames count from the first period recorded. AUDIO_PATH gets
// raw float32 interleaved stereo from that frame on. Built by tests/plugin/test_jack.py with -ljack.
#include <jack/jack.h>
#include <jack/midiport.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Note { int64_t frame; uint8_t pitch; bool on; };
struct MidiIn { int64_t frame; uint8_t data[3]; };

jack_client_t* gSend = nullptr;
jack_client_t* gRecv = nullptr;
jack_port_t* gMidiOut = nullptr;
jack_port_t* gAudioIn[2] = {nullptr, nullptr};
jack_port_t* gMidiIn = nullptr;
std::vector<Note> gNotes;            // sorted by frame, relative to gOrigin
std::size_t gNextNote = 0;
std::atomic<int64_t> gOrigin{-1};    // absolute JACK frame of recorded frame 0, set by the recv client
std::vector<float> gAudio;           // interleaved stereo, preallocated
std::atomic<int64_t> gRecorded{0};   // frames recorded
std::vector<MidiIn> gMidi;           // preallocated
std::atomic<std::size_t> gMidiCount{0};
std::atomic<int> gXruns{0};

int sendProcess(jack_nframes_t nframes, void*) {
    void* buf = jack_port_get_buffer(gMidiOut, nframes);
    jack_midi_clear_buffer(buf);
    const int64_t origin = gOrigin.load();
    if (origin < 0)
        return 0;
    const int64_t start = static_cast<int64_t>(jack_last_frame_time(gSend)) - origin;
    while (gNextNote < gNotes.size() && gNotes[gNextNote].frame < start + nframes) {
        const Note& n = gNotes[gNextNote++];
        const int64_t offset = n.frame < start ? 0 : n.frame - start;
        const jack_midi_data_t msg[3] = {static_cast<jack_midi_data_t>(n.on ? 0x90 : 0x80), n.pitch,
                                         static_cast<jack_midi_data_t>(n.on ? 100 : 0)};
        jack_midi_event_write(buf, static_cast<jack_nframes_t>(offset), msg, 3);
    }
    return 0;
}

int recvProcess(jack_nframes_t nframes, void*) {
    const int64_t now = jack_last_frame_time(gRecv);
    int64_t origin = gOrigin.load();
    if (origin < 0) {
        origin = now;
        gOrigin.store(origin);
    }
    const int64_t at = now - origin;
    const float* in[2] = {static_cast<const float*>(jack_port_get_buffer(gAudioIn[0], nframes)),
                          static_cast<const float*>(jack_port_get_buffer(gAudioIn[1], nframes))};
    for (jack_nframes_t i = 0; i < nframes; ++i) {
        const std::size_t k = 2 * static_cast<std::size_t>(at + i);
        if (k + 1 < gAudio.size()) {
            gAudio[k] = in[0][i];
            gAudio[k + 1] = in[1][i];
        }
    }
    gRecorded.store(at + nframes);
    void* buf = jack_port_get_buffer(gMidiIn, nframes);
    const jack_nframes_t count = jack_midi_get_event_count(buf);
    for (jack_nframes_t e = 0; e < count; ++e) {
        jack_midi_event_t ev;
        if (jack_midi_event_get(&ev, buf, e) != 0 || ev.size != 3)
            continue;
        const std::size_t n = gMidiCount.load();
        if (n < gMidi.size()) {
            gMidi[n] = {at + ev.time, {ev.buffer[0], ev.buffer[1], ev.buffer[2]}};
            gMidiCount.store(n + 1);
        }
    }
    return 0;
}

int onXrun(void*) {
    gXruns.fetch_add(1);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 8) {
        std::fprintf(stderr, "usage: %s TARGET SECONDS FIRST_MS INTERVAL_MS LENGTH_MS AUDIO_PATH PITCH...\n", argv[0]);
        return 2;
    }
    const std::string target = argv[1];
    const double seconds = std::atof(argv[2]);
    const double firstMs = std::atof(argv[3]), intervalMs = std::atof(argv[4]), lengthMs = std::atof(argv[5]);
    const char* audioPath = argv[6];

    jack_status_t status;
    gSend = jack_client_open("dm-probe-send", JackNoStartServer, &status);
    gRecv = jack_client_open("dm-probe-recv", JackNoStartServer, &status);
    if (!gSend || !gRecv) {
        std::fprintf(stderr, "no JACK server (status 0x%x)\n", status);
        return 1;
    }
    const double rate = jack_get_sample_rate(gRecv);
    for (int i = 7; i < argc; ++i) {
        const auto pitch = static_cast<uint8_t>(std::atoi(argv[i]));
        const auto on = static_cast<int64_t>((firstMs + (i - 7) * intervalMs) / 1000.0 * rate);
        gNotes.push_back({on, pitch, true});
        gNotes.push_back({on + static_cast<int64_t>(lengthMs / 1000.0 * rate), pitch, false});
    }
    std::sort(gNotes.begin(), gNotes.end(), [](const Note& a, const Note& b) { return a.frame < b.frame; });
    gAudio.assign(2 * static_cast<std::size_t>(seconds * rate + rate), 0.0f);
    gMidi.resize(65536);

    gMidiOut = jack_port_register(gSend, "midi_out", JACK_DEFAULT_MIDI_TYPE, JackPortIsOutput, 0);
    gAudioIn[0] = jack_port_register(gRecv, "in_1", JACK_DEFAULT_AUDIO_TYPE, JackPortIsInput, 0);
    gAudioIn[1] = jack_port_register(gRecv, "in_2", JACK_DEFAULT_AUDIO_TYPE, JackPortIsInput, 0);
    gMidiIn = jack_port_register(gRecv, "midi_in", JACK_DEFAULT_MIDI_TYPE, JackPortIsInput, 0);
    jack_set_process_callback(gSend, sendProcess, nullptr);
    jack_set_process_callback(gRecv, recvProcess, nullptr);
    jack_set_xrun_callback(gRecv, onXrun, nullptr);

    // JACK connects only active clients' ports; the notes start FIRST_MS after the first period.
    jack_activate(gSend);
    jack_activate(gRecv);
    const char** ports = jack_get_ports(gSend, (target + ":").c_str(), nullptr, 0);
    int audioOut = 0, midiIns = 0;
    for (int i = 0; ports && ports[i]; ++i) {
        jack_port_t* port = jack_port_by_name(gSend, ports[i]);
        const int flags = jack_port_flags(port);
        const bool midi = std::strcmp(jack_port_type(port), JACK_DEFAULT_MIDI_TYPE) == 0;
        if (midi && (flags & JackPortIsInput)) {
            midiIns += jack_connect(gSend, jack_port_name(gMidiOut), ports[i]) == 0;
        } else if (midi && (flags & JackPortIsOutput)) {
            jack_connect(gSend, ports[i], (std::string("dm-probe-recv:midi_in")).c_str());
        } else if (!midi && (flags & JackPortIsOutput) && audioOut < 2) {
            jack_connect(gSend, ports[i], (std::string("dm-probe-recv:in_") + std::to_string(++audioOut)).c_str());
        }
    }
    if (ports)
        jack_free(ports);
    if (midiIns == 0 || audioOut == 0) {
        std::fprintf(stderr, "no client %s with a MIDI input and audio outputs\n", target.c_str());
        return 1;
    }

    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds + 5.0);
    while (gRecorded.load() < static_cast<int64_t>(seconds * rate) && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    jack_deactivate(gRecv);
    jack_deactivate(gSend);

    std::printf("rate %.0f\nperiod %u\nxruns %d\n", rate, jack_get_buffer_size(gRecv), gXruns.load());
    for (const Note& n : gNotes)
        if (n.on)
            std::printf("note %lld %d\n", static_cast<long long>(n.frame), n.pitch);
    for (std::size_t i = 0; i < gMidiCount.load(); ++i)
        std::printf("midi %lld %d %d %d\n", static_cast<long long>(gMidi[i].frame), gMidi[i].data[0],
                    gMidi[i].data[1], gMidi[i].data[2]);
    if (FILE* f = std::fopen(audioPath, "wb")) {
        std::fwrite(gAudio.data(), sizeof(float), 2 * static_cast<std::size_t>(gRecorded.load()), f);
        std::fclose(f);
    }
    jack_client_close(gSend);
    jack_client_close(gRecv);
    return 0;
}
