// Rendered audio on its way from the worker to the audio thread, indexed by the plugin's own frame
// counter (frames since activate()). The worker writes a block's audio at the frame the block was
// played; the audio thread reads it `latency` frames later. Each sample carries a stamp (the frame it
// holds), so a block that has not come back yet, or came back too late and was overwritten, reads as
// silence. Lock-free: one writer, one reader; no allocation after construction (in activate()).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace dm {

class AudioRing {
public:
    // `minFrames` is rounded up to a power of two; it must exceed the latency plus a host block,
    // so the reader never meets a slot the writer is filling (the writer only writes frames the
    // reader has not reached yet, or has passed: both lie within one capacity of each other).
    explicit AudioRing(std::size_t minFrames) {
        std::size_t capacity = 1;
        while (capacity < minFrames)
            capacity <<= 1;
        fMask = capacity - 1;
        fLeft = std::make_unique<float[]>(capacity);
        fRight = std::make_unique<float[]>(capacity);
        fStamp = std::make_unique<std::atomic<std::int64_t>[]>(capacity);
        for (std::size_t i = 0; i < capacity; ++i)
            fStamp[i].store(-1, std::memory_order_relaxed);
    }

    std::size_t capacity() const noexcept { return fMask + 1; }

    // Worker thread: `frames` samples of planar stereo (left then right) for plugin frame `start` on.
    void write(std::int64_t start, const float* left, const float* right, std::size_t frames) noexcept {
        for (std::size_t i = 0; i < frames; ++i) {
            const std::int64_t frame = start + static_cast<std::int64_t>(i);
            const std::size_t slot = static_cast<std::size_t>(frame) & fMask;
            fStamp[slot].store(-1, std::memory_order_relaxed);  // a reader racing here sees silence
            std::atomic_thread_fence(std::memory_order_release);
            fLeft[slot] = left[i];
            fRight[slot] = right[i];
            fStamp[slot].store(frame, std::memory_order_release);
        }
    }

    // Audio thread: the samples of frames [start, start + frames) into out; silence where none
    // arrived. Returns how many samples were present.
    std::size_t read(std::int64_t start, float* left, float* right, std::size_t frames) const noexcept {
        std::size_t present = 0;
        for (std::size_t i = 0; i < frames; ++i) {
            const std::int64_t frame = start + static_cast<std::int64_t>(i);
            const std::size_t slot = static_cast<std::size_t>(frame) & fMask;
            left[i] = right[i] = 0.0f;
            if (frame < 0 || fStamp[slot].load(std::memory_order_acquire) != frame)
                continue;
            const float l = fLeft[slot], r = fRight[slot];
            std::atomic_thread_fence(std::memory_order_acquire);
            if (fStamp[slot].load(std::memory_order_relaxed) != frame)
                continue;  // a very late block for a frame one capacity ago is being written here
            left[i] = l;
            right[i] = r;
            ++present;
        }
        return present;
    }

private:
    std::size_t fMask = 0;
    std::unique_ptr<float[]> fLeft, fRight;
    std::unique_ptr<std::atomic<std::int64_t>[]> fStamp;
};

}  // namespace dm
