// The C header from C++17: RAII ownership of handles and the sans-IO stream API.
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "voice.h"

namespace {
struct EncoderFree {
    void operator()(voice_encoder *e) const { voice_encoder_free(e); }
};
struct ReceiverFree {
    void operator()(voice_receiver *r) const { voice_receiver_free(r); }
};
using Encoder = std::unique_ptr<voice_encoder, EncoderFree>;
using Receiver = std::unique_ptr<voice_receiver, ReceiverFree>;
}  // namespace

int main() {
    voice_encoder_config cfg{};
    if (voice_encoder_config_default(&cfg) != VOICE_OK) return 1;
    voice_encoder *raw_enc = nullptr;
    voice_receiver *raw_rx = nullptr;
    if (voice_encoder_new(&cfg, &raw_enc) != VOICE_OK) return 1;
    Encoder enc(raw_enc);
    voice_receiver_config rcfg{};
    if (voice_receiver_config_default(&rcfg) != VOICE_OK) return 1;
    rcfg.policy = VOICE_PLAYOUT_FIXED;
    if (voice_receiver_new(&rcfg, &raw_rx) != VOICE_OK) return 1;
    Receiver rx(raw_rx);

    std::vector<int16_t> pcm(VOICE_FRAME_SAMPLES);
    std::vector<uint8_t> datagram(VOICE_MAX_DATAGRAM);
    double energy = 0;
    int decoded = 0;
    for (int f = 0; f < 100; ++f) {
        for (size_t i = 0; i < pcm.size(); ++i) {
            double t = double(f * VOICE_FRAME_SAMPLES + i) / 48000.0;
            pcm[i] = int16_t(6000.0 * std::sin(2.0 * M_PI * 330.0 * t));
        }
        size_t len = 0;
        if (voice_encoder_encode(enc.get(), pcm.data(), pcm.size(), 0, f == 99, datagram.data(),
                                 datagram.size(), &len) != VOICE_OK)
            return 1;
        uint64_t now = uint64_t(f) * 20000u;
        if (voice_receiver_push(rx.get(), now + 5000u, datagram.data(), len) != VOICE_OK) return 1;
        uint32_t source = 0;
        if (voice_receiver_pop(rx.get(), now + 10000u, pcm.data(), pcm.size(), &source) != VOICE_OK)
            return 1;
        if (source == VOICE_SOURCE_PACKET) ++decoded;
        for (int16_t s : pcm) energy += double(s) * s;
    }
    std::printf("stream.cpp: decoded %d frames, energy %.3g\n", decoded, energy);
    return (decoded > 90 && energy > 0) ? 0 : 1;
}
