// Drives plugin_stub's AudioRing and SpscRing for tests/plugin/test_rings.py.
// Commands on stdin, one per line; answers on stdout:
//   audio CAPACITY               a new AudioRing (capacity rounded up to a power of two)
//   w START N                    write frames START.. with left = frame, right = -frame
//   r START N                    read frames START..: prints "present P" then the N left values
//   stress BLOCKS BLOCK LATENCY WAIT
//                                a writer thread and a reader thread LATENCY frames behind, the
//                                writer at most LATENCY ahead (as the worker and the audio thread);
//                                with WAIT 0 the reader never waits (real time: some blocks late):
//                                prints "torn T present P" (T: samples whose left/right disagree
//                                with the frame they were read for; must be 0)
//   spsc CAPACITY COUNT          a producer thread pushes 0..COUNT-1 through an SpscRing, the
//                                consumer pops: prints "spsc ok" if every item arrived once, in order
#include "../../plugin_stub/AudioRing.hpp"
#include "../../plugin_stub/SpscRing.hpp"

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

int main() {
    std::unique_ptr<dm::AudioRing> ring;
    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream in(line);
        std::string cmd;
        in >> cmd;
        if (cmd == "audio") {
            std::size_t capacity;
            in >> capacity;
            ring = std::make_unique<dm::AudioRing>(capacity);
            std::printf("capacity %zu\n", ring->capacity());
        } else if (cmd == "w") {
            long long start, n;
            in >> start >> n;
            std::vector<float> l(n), r(n);
            for (long long i = 0; i < n; ++i) { l[i] = float(start + i); r[i] = -float(start + i); }
            ring->write(start, l.data(), r.data(), n);
        } else if (cmd == "r") {
            long long start, n;
            in >> start >> n;
            std::vector<float> l(n), r(n);
            const std::size_t present = ring->read(start, l.data(), r.data(), n);
            std::printf("present %zu\n", present);
            for (long long i = 0; i < n; ++i)
                std::printf("%.0f%c", l[i], i + 1 == n ? '\n' : ' ');
        } else if (cmd == "stress") {
            long long blocks, block, latency, wait;
            in >> blocks >> block >> latency >> wait;
            dm::AudioRing shared(4 * (latency + block));
            std::atomic<long long> written{0}, readAt{-latency};
            std::thread writer([&] {
                std::vector<float> l(block), r(block);
                for (long long b = 0; b < blocks; ++b) {
                    // As in the plugin: a block is rendered only after the audio thread sent it,
                    // i.e. once the reader (latency frames behind) has reached b * block - latency.
                    while (readAt.load() < b * block - latency) std::this_thread::yield();
                    for (long long i = 0; i < block; ++i) { l[i] = float(b * block + i); r[i] = -l[i]; }
                    shared.write(b * block, l.data(), r.data(), block);
                    written.store((b + 1) * block);
                }
            });
            long long torn = 0, present = 0;
            std::vector<float> l(block), r(block);
            for (long long at = -latency; at < blocks * block - latency;) {
                if (wait && written.load() < at + latency) {
                    std::this_thread::yield();
                    continue;  // offline wait: the block is there before it is read
                }
                present += shared.read(at, l.data(), r.data(), block);
                readAt.store(at + block);
                for (long long i = 0; i < block; ++i)
                    if ((l[i] != 0.0f || r[i] != 0.0f) && (l[i] != float(at + i) || r[i] != -float(at + i)))
                        ++torn;
                at += block;
            }
            writer.join();
            std::printf("torn %lld present %lld\n", torn, present);
        } else if (cmd == "spsc") {
            std::size_t capacity;
            long long count;
            in >> capacity >> count;
            dm::SpscRing<long long> spsc(capacity);
            std::thread producer([&] {
                for (long long i = 0; i < count;)
                    if (spsc.push(i)) ++i; else std::this_thread::yield();
            });
            long long expected = 0, item;
            bool ok = true;
            while (expected < count)
                if (spsc.pop(item)) ok &= item == expected++; else std::this_thread::yield();
            producer.join();
            std::printf("spsc %s\n", ok && !spsc.pop(item) ? "ok" : "bad");
        }
        std::fflush(stdout);
    }
    return 0;
}
