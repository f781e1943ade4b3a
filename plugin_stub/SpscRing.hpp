// A lock-free single-producer single-consumer ring of trivially copyable items. One thread pushes,
// one thread pops; neither blocks nor allocates after construction (allocation happens in
// activate(), on the host's non-real-time thread).
#pragma once

#include <atomic>
#include <cstddef>
#include <type_traits>
#include <vector>

namespace dm {

template <typename T>
class SpscRing {
    static_assert(std::is_trivially_copyable<T>::value, "ring items are copied by value");

public:
    explicit SpscRing(std::size_t capacity) : fItems(capacity + 1) {}

    // Producer thread only. False (item dropped) when the ring is full.
    bool push(const T& item) noexcept {
        const std::size_t head = fHead.load(std::memory_order_relaxed);
        const std::size_t next = (head + 1) % fItems.size();
        if (next == fTail.load(std::memory_order_acquire))
            return false;
        fItems[head] = item;
        fHead.store(next, std::memory_order_release);
        return true;
    }

    // Consumer thread only. False when the ring is empty.
    bool pop(T& item) noexcept {
        const std::size_t tail = fTail.load(std::memory_order_relaxed);
        if (tail == fHead.load(std::memory_order_acquire))
            return false;
        item = fItems[tail];
        fTail.store((tail + 1) % fItems.size(), std::memory_order_release);
        return true;
    }

private:
    std::vector<T> fItems;
    alignas(64) std::atomic<std::size_t> fHead{0};
    alignas(64) std::atomic<std::size_t> fTail{0};
};

}  // namespace dm
