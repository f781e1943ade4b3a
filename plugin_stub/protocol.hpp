// The wire protocol as the plugin sees it: a mirror of bridge/protocol.py (docs/protocol.md is the
// spec). Nothing else in the plugin defines a message name, version or limit.
// tests/plugin/test_protocol_header.py parses this file and checks it against bridge.protocol, so
// keep one definition per line in the forms below when changing it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dm::protocol {

constexpr int kProtocolVersion = 3;
constexpr const char* kDefaultEndpoint = "tcp://127.0.0.1:5555";

// Requests go client -> engine; every reply echoes its request's `id`.
namespace request {
constexpr const char* kHello = "hello";
constexpr const char* kArrange = "arrange";
constexpr const char* kCompose = "compose";
constexpr const char* kPerform = "perform";
constexpr const char* kLiveNotes = "live_notes";
constexpr const char* kLivePerform = "live_perform";
constexpr const char* kCancel = "cancel";
constexpr const char* kStatus = "status";
constexpr const char* kPing = "ping";
}  // namespace request

namespace reply {
constexpr const char* kWelcome = "welcome";
constexpr const char* kAccepted = "accepted";
constexpr const char* kNotes = "notes";
constexpr const char* kAudio = "audio";
constexpr const char* kProgress = "progress";
constexpr const char* kDone = "done";
constexpr const char* kError = "error";
constexpr const char* kPong = "pong";
constexpr const char* kStatusReply = "status_reply";
}  // namespace reply

// Stable error codes a client may branch on (docs/protocol.md says when each is sent).
namespace error {
constexpr const char* kBadHeader = "bad_header";
constexpr const char* kBadVersion = "bad_version";
constexpr const char* kUnknownType = "unknown_type";
constexpr const char* kMissingField = "missing_field";
constexpr const char* kBadField = "bad_field";
constexpr const char* kFrameMismatch = "frame_mismatch";
constexpr const char* kBadNotes = "bad_notes";
constexpr const char* kTooLarge = "too_large";
constexpr const char* kTooManyNotes = "too_many_notes";
constexpr const char* kTooMuchAudio = "too_much_audio";
constexpr const char* kTooManyJobs = "too_many_jobs";
constexpr const char* kUnknownJob = "unknown_job";
constexpr const char* kNoModel = "no_model";
constexpr const char* kBadInput = "bad_input";
constexpr const char* kCancelled = "cancelled";
constexpr const char* kInternal = "internal";
}  // namespace error

// Wire dtype names of raw frames ("notes" is the packed 18-byte note record below).
namespace dtype {
constexpr const char* kNotes = "notes";
constexpr const char* kFloat32 = "<f4";
constexpr const char* kInt64 = "<i8";
constexpr const char* kInt32 = "<i4";
constexpr const char* kUInt8 = "|u1";
}  // namespace dtype

constexpr int kMaxNdim = 4;

// Arrange modes (field choices).
constexpr const char* kModeOnline = "online";
constexpr const char* kModeOffline = "offline";

// Default limits (the engine reports its own in `welcome`).
namespace limits {
constexpr std::int64_t kMaxMessageBytes = 67108864;
constexpr std::int64_t kMaxHeaderBytes = 1048576;
constexpr std::int64_t kMaxNotesPerRequest = 200000;
constexpr double kMaxAudioSPerJob = 600.0;
constexpr std::int64_t kMaxJobsPerClient = 8;
}  // namespace limits

// Default ticks per quarter note and tempo when a message leaves them out (bridge/score.py).
constexpr int kDefaultResolution = 24;
constexpr double kDefaultQpm = 120.0;

// A `notes` record: 18 bytes, packed, little-endian. Read and write with memcpy at these offsets.
namespace note {
constexpr std::size_t kTimeOffset = 0;       // int64_t, onset in ticks
constexpr std::size_t kPitchOffset = 8;      // uint8_t, MIDI 0..127
constexpr std::size_t kDurationOffset = 9;   // int64_t, ticks
constexpr std::size_t kVelocityOffset = 17;  // uint8_t, MIDI 1..127
constexpr std::size_t kSizeBytes = 18;
}  // namespace note

}  // namespace dm::protocol
