// A minimal CLAP host for tests: plays MIDI notes into a plugin with a playing transport and prints
// the plugin's reported latency ("latency <frames>", before and after playing), the longest process()
// call ("max_process_us <us>"), its MIDI output, one line per event:
// "midi <frame> <status> <data1> <data2>", and at the end every parameter's value through CLAP's
// params extension ("param <id> <value>": the outputs say what the plugin counted). With
// $CLAP_HOST_AUDIO set, the audio output goes to that file as raw little-endian float32, interleaved
// stereo. With $CLAP_HOST_FIFO=1 a real-time run calls process() from a SCHED_FIFO thread where the
// system allows it, as JACK and DAWs run their audio threads (else it says so and runs as it is).
// Usage: clap_host PLUGIN.clap SAMPLE_RATE BLOCK BLOCKS REALTIME(0|1) PARAM=VALUE... -- FRAME:PITCH[:LENGTH]...
// (a LENGTH plays a note-off LENGTH frames after the note-on; FRAME:cNUMBER=VALUE plays a controller).
// Built against the CLAP headers inside dpf-source (tests/plugin/test_clap.py compiles it).
#include <clap/entry.h>
#include <clap/events.h>
#include <clap/ext/latency.h>
#include <clap/ext/params.h>
#include <clap/host.h>
#include <clap/plugin-factory.h>
#include <clap/plugin.h>
#include <clap/process.h>

#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

struct InEvents {
    std::vector<const clap_event_header_t*> items;
};
struct OutEvents {
    int64_t blockStart = 0;
};

uint32_t inSize(const clap_input_events_t* list) {
    return static_cast<uint32_t>(static_cast<InEvents*>(list->ctx)->items.size());
}
const clap_event_header_t* inGet(const clap_input_events_t* list, uint32_t i) {
    return static_cast<InEvents*>(list->ctx)->items[i];
}
bool outPush(const clap_output_events_t* list, const clap_event_header_t* ev) {
    if (ev->space_id == CLAP_CORE_EVENT_SPACE_ID && ev->type == CLAP_EVENT_MIDI) {
        const auto* m = reinterpret_cast<const clap_event_midi_t*>(ev);
        std::printf("midi %lld %d %d %d\n",
                    static_cast<long long>(static_cast<OutEvents*>(list->ctx)->blockStart + ev->time),
                    m->data[0], m->data[1], m->data[2]);
    }
    return true;
}

// DPF calls the host's latency extension without checking for it, when its latency changes.
void hostLatencyChanged(const clap_host_t*) {}
const clap_host_latency_t kHostLatency{hostLatencyChanged};

const void* hostGetExtension(const clap_host_t*, const char* id) {
    return std::strcmp(id, CLAP_EXT_LATENCY) == 0 ? &kHostLatency : nullptr;
}
void hostNoop(const clap_host_t*) {}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 6) {
        std::fprintf(stderr, "usage: %s PLUGIN.clap SAMPLE_RATE BLOCK BLOCKS REALTIME [ID=VALUE...] "
                             "[-- FRAME:PITCH...]\n", argv[0]);
        return 2;
    }
    const double sampleRate = std::atof(argv[2]);
    const uint32_t block = static_cast<uint32_t>(std::atoi(argv[3]));
    const int blocks = std::atoi(argv[4]);
    const bool realtime = std::atoi(argv[5]) != 0;
    std::vector<clap_event_param_value_t> params;
    std::vector<std::pair<int64_t, clap_event_param_value_t>> timedParams;  // FRAME:pID=VALUE
    // The transport: 120 qpm in 4/4 unless $CLAP_HOST_TEMPO and $CLAP_HOST_METER ("3/4") say otherwise.
    const double tempo = std::getenv("CLAP_HOST_TEMPO") ? std::atof(std::getenv("CLAP_HOST_TEMPO")) : 120.0;
    uint16_t tsigNum = 4, tsigDenom = 4;
    if (const char* meter = std::getenv("CLAP_HOST_METER"); meter && std::strchr(meter, '/')) {
        tsigNum = static_cast<uint16_t>(std::atoi(meter));
        tsigDenom = static_cast<uint16_t>(std::atoi(std::strchr(meter, '/') + 1));
    }
    struct Note { int64_t frame; uint8_t status, data1, data2; };
    std::vector<Note> notes;
    bool afterDashes = false;
    for (int i = 6; i < argc; ++i) {
        if (std::strcmp(argv[i], "--") == 0) { afterDashes = true; continue; }
        const char* sep = std::strchr(argv[i], afterDashes ? ':' : '=');
        if (!sep) { std::fprintf(stderr, "bad argument %s\n", argv[i]); return 2; }
        if (afterDashes) {
            const int64_t frame = std::atoll(argv[i]);
            if (sep[1] == 'p') {  // FRAME:pID=VALUE, a parameter change at that frame
                const char* value = std::strchr(sep, '=');
                if (!value) { std::fprintf(stderr, "bad parameter change %s\n", argv[i]); return 2; }
                clap_event_param_value_t p{};
                p.header = {sizeof(p), 0, CLAP_CORE_EVENT_SPACE_ID, CLAP_EVENT_PARAM_VALUE, 0};
                p.param_id = static_cast<clap_id>(std::atoi(sep + 2));
                p.note_id = -1; p.port_index = -1; p.channel = -1; p.key = -1;
                p.value = std::atof(value + 1);
                timedParams.push_back({frame, p});
                continue;
            }
            if (sep[1] == 'c') {  // FRAME:cNUMBER=VALUE
                const char* value = std::strchr(sep, '=');
                if (!value) { std::fprintf(stderr, "bad controller %s\n", argv[i]); return 2; }
                notes.push_back({frame, 0xB0, static_cast<uint8_t>(std::atoi(sep + 2)),
                                 static_cast<uint8_t>(std::atoi(value + 1))});
                continue;
            }
            const auto pitch = static_cast<uint8_t>(std::atoi(sep + 1));
            notes.push_back({frame, 0x90, pitch, 100});
            if (const char* length = std::strchr(sep + 1, ':'))
                notes.push_back({frame + std::atoll(length + 1), 0x80, pitch, 0});
        } else {
            clap_event_param_value_t p{};
            p.header = {sizeof(p), 0, CLAP_CORE_EVENT_SPACE_ID, CLAP_EVENT_PARAM_VALUE, 0};
            p.param_id = static_cast<clap_id>(std::atoi(argv[i]));
            p.note_id = -1; p.port_index = -1; p.channel = -1; p.key = -1;
            p.value = std::atof(sep + 1);
            params.push_back(p);
        }
    }

    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) { std::fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
    const auto* entry = static_cast<const clap_plugin_entry_t*>(dlsym(lib, "clap_entry"));
    if (!entry || !entry->init(argv[1])) { std::fprintf(stderr, "no clap_entry\n"); return 1; }
    const auto* factory = static_cast<const clap_plugin_factory_t*>(entry->get_factory(CLAP_PLUGIN_FACTORY_ID));
    const clap_plugin_descriptor_t* desc = factory->get_plugin_descriptor(factory, 0);

    clap_host_t host{CLAP_VERSION, nullptr, "dm-test-host", "deep-musician", "", "0.1",
                     hostGetExtension, hostNoop, hostNoop, hostNoop};
    const clap_plugin_t* plugin = factory->create_plugin(factory, &host, desc->id);
    if (!plugin || !plugin->init(plugin)) { std::fprintf(stderr, "create/init failed\n"); return 1; }
    if (!plugin->activate(plugin, sampleRate, block, block)) { std::fprintf(stderr, "activate failed\n"); return 1; }
    if (const auto* latency = static_cast<const clap_plugin_latency_t*>(plugin->get_extension(plugin, CLAP_EXT_LATENCY)))
        std::printf("latency %u\n", latency->get(plugin));
    // $CLAP_HOST_WARMUP_MS: wait after activating, as a DAW does before the user presses play.
    if (const char* warmup = std::getenv("CLAP_HOST_WARMUP_MS"))
        std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(warmup)));
    if (const char* fifo = std::getenv("CLAP_HOST_FIFO"); realtime && fifo && std::strcmp(fifo, "1") == 0) {
        sched_param param{};
        param.sched_priority = 70;  // JACK's default is 10 + 60 for its clients' process threads
        if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &param) != 0)
            std::fprintf(stderr, "clap_host: no SCHED_FIFO here, processing at normal priority\n");
    }
    plugin->start_processing(plugin);
    FILE* audioFile = nullptr;
    if (const char* path = std::getenv("CLAP_HOST_AUDIO"); path && path[0] != '\0')
        audioFile = std::fopen(path, "wb");
    std::vector<float> interleaved(2 * block);

    std::vector<float> left(block), right(block);
    float* channels[2] = {left.data(), right.data()};
    clap_audio_buffer_t out{};
    out.data32 = channels;
    out.channel_count = 2;

    std::vector<clap_event_midi_t> midi(notes.size());
    OutEvents outCtx;
    clap_output_events_t outEvents{&outCtx, outPush};
    const auto start = std::chrono::steady_clock::now();
    double maxProcessUs = 0.0, maxLagS = 0.0;  // lag: how far behind the clock a real-time block began
    for (int b = 0; b < blocks; ++b) {
        const int64_t blockStart = static_cast<int64_t>(b) * block;
        InEvents in;
        if (b == 0)
            for (auto& p : params) in.items.push_back(&p.header);
        for (auto& [frame, p] : timedParams)
            if (frame >= blockStart && frame < blockStart + block) {
                p.header.time = static_cast<uint32_t>(frame - blockStart);
                in.items.push_back(&p.header);
            }
        for (std::size_t i = 0; i < notes.size(); ++i)
            if (notes[i].frame >= blockStart && notes[i].frame < blockStart + block) {
                midi[i].header = {sizeof(clap_event_midi_t), static_cast<uint32_t>(notes[i].frame - blockStart),
                                  CLAP_CORE_EVENT_SPACE_ID, CLAP_EVENT_MIDI, 0};
                midi[i].port_index = 0;
                midi[i].data[0] = notes[i].status;
                midi[i].data[1] = notes[i].data1;
                midi[i].data[2] = notes[i].data2;
                in.items.push_back(&midi[i].header);
            }
        std::stable_sort(in.items.begin(), in.items.end(),  // CLAP wants events in time order
                         [](const clap_event_header_t* a, const clap_event_header_t* b) { return a->time < b->time; });
        clap_input_events_t inEvents{&in, inSize, inGet};
        const double seconds = blockStart / sampleRate;
        clap_event_transport_t transport{};
        transport.header = {sizeof(transport), 0, CLAP_CORE_EVENT_SPACE_ID, CLAP_EVENT_TRANSPORT, 0};
        transport.flags = CLAP_TRANSPORT_HAS_TEMPO | CLAP_TRANSPORT_HAS_BEATS_TIMELINE |
                          CLAP_TRANSPORT_HAS_SECONDS_TIMELINE | CLAP_TRANSPORT_HAS_TIME_SIGNATURE |
                          CLAP_TRANSPORT_IS_PLAYING;
        transport.tempo = tempo;
        transport.song_pos_beats = static_cast<clap_beattime>(std::llround(seconds * tempo / 60.0 * CLAP_BEATTIME_FACTOR));
        transport.song_pos_seconds = static_cast<clap_sectime>(seconds * CLAP_SECTIME_FACTOR);
        transport.tsig_num = tsigNum; transport.tsig_denom = tsigDenom;

        clap_process_t process{};
        process.steady_time = blockStart;
        process.frames_count = block;
        process.transport = &transport;
        process.audio_outputs = &out;
        process.audio_outputs_count = 1;
        process.in_events = &inEvents;
        process.out_events = &outEvents;
        outCtx.blockStart = blockStart;
        const auto before = std::chrono::steady_clock::now();
        plugin->process(plugin, &process);
        maxProcessUs = std::max(maxProcessUs, std::chrono::duration<double, std::micro>(
                                                  std::chrono::steady_clock::now() - before).count());
        for (uint32_t i = 0; i < block; ++i)
            if (left[i] != 0.0f || right[i] != 0.0f) { std::printf("audio %lld\n", static_cast<long long>(blockStart + i)); break; }
        if (audioFile) {
            for (uint32_t i = 0; i < block; ++i) { interleaved[2 * i] = left[i]; interleaved[2 * i + 1] = right[i]; }
            std::fwrite(interleaved.data(), sizeof(float), interleaved.size(), audioFile);
        }
        if (realtime) {
            const auto due = start + std::chrono::duration<double>((b + 1) * block / sampleRate);
            maxLagS = std::max(maxLagS, std::chrono::duration<double>(std::chrono::steady_clock::now() - due).count());
            std::this_thread::sleep_until(due);
        }
    }
    std::printf("max_process_us %.0f\n", maxProcessUs);
    // steady_clock is CLOCK_MONOTONIC on Linux, as Python's time.monotonic(): tests map times to frames.
    std::printf("clock_start_s %.6f\nmax_lag_s %.6f\n",
                std::chrono::duration<double>(start.time_since_epoch()).count(), maxLagS);
    // Again after playing: the parameters sent with the first block (the mode) may have changed it.
    if (const auto* latency = static_cast<const clap_plugin_latency_t*>(plugin->get_extension(plugin, CLAP_EXT_LATENCY)))
        std::printf("latency %u\n", latency->get(plugin));
    if (const auto* params = static_cast<const clap_plugin_params_t*>(plugin->get_extension(plugin, CLAP_EXT_PARAMS)))
        for (uint32_t i = 0; i < params->count(plugin); ++i) {
            clap_param_info_t info{};
            double value = 0.0;
            if (params->get_info(plugin, i, &info) && params->get_value(plugin, info.id, &value))
                std::printf("param %u %g\n", info.id, value);
        }
    std::fflush(stdout);
    if (audioFile)
        std::fclose(audioFile);
    plugin->stop_processing(plugin);
    plugin->deactivate(plugin);
    plugin->destroy(plugin);
    entry->deinit();
    dlclose(lib);
    return 0;
}
