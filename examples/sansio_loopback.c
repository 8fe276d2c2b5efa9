/*
 * Sans-IO voice over "your own netcode": an encoder and a receiver joined by a simulated lossy,
 * jittery link (deterministic), run on simulated time. Also checks that misuse returns error
 * codes. Exit status 0 when every check holds.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "voice.h"

#define FRAMES 500
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "check failed: " __VA_ARGS__);                                         \
            fprintf(stderr, "\n");                                                                 \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

typedef struct {
    uint8_t bytes[VOICE_MAX_DATAGRAM];
    size_t len;
    uint64_t arrival_us;
    int used;
} packet;

static uint32_t lcg = 12345;
static uint32_t rnd(void) {
    lcg = lcg * 1103515245u + 12345u;
    return (lcg >> 16) & 0x7fff;
}

static int misuse(void) {
    voice_encoder_config ec;
    voice_receiver_config rc;
    voice_encoder *enc = NULL;
    voice_receiver *rx = NULL;
    int16_t pcm[VOICE_FRAME_SAMPLES] = {0};
    uint8_t small[8];
    size_t n = 0;
    uint32_t src = 0;
    char msg[64];

    CHECK(voice_encoder_config_default(NULL) == VOICE_ERR_NULL, "NULL config out");
    CHECK(voice_encoder_config_default(&ec) == VOICE_OK, "default config");
    CHECK(voice_encoder_new(&ec, NULL) == VOICE_ERR_NULL, "NULL out handle");
    ec.bitrate = 1;
    CHECK(voice_encoder_new(&ec, &enc) == VOICE_ERR_INVALID_ARGUMENT && enc == NULL,
          "bad bitrate rejected, out untouched");
    voice_encoder_config_default(&ec);
    CHECK(voice_encoder_new(&ec, &enc) == VOICE_OK, "encoder");
    CHECK(voice_encoder_encode(NULL, pcm, VOICE_FRAME_SAMPLES, 0, false, small, sizeof small, &n) ==
              VOICE_ERR_NULL,
          "NULL encoder");
    CHECK(voice_encoder_encode(enc, pcm, 100, 0, false, small, sizeof small, &n) ==
              VOICE_ERR_INVALID_ARGUMENT,
          "wrong frame size");
    n = 777;
    CHECK(voice_encoder_encode(enc, pcm, VOICE_FRAME_SAMPLES, 0, false, small, sizeof small, &n) ==
              VOICE_ERR_BUFFER_TOO_SMALL && n == 777,
          "too-small buffer, written untouched");
    CHECK(voice_receiver_config_default(&rc) == VOICE_OK, "receiver config");
    rc.policy = VOICE_PLAYOUT_FIXED;
    rc.watermark_packets = VOICE_MAX_WATERMARK + 1;
    CHECK(voice_receiver_new(&rc, &rx) == VOICE_ERR_INVALID_ARGUMENT && rx == NULL,
          "watermark out of range");
    CHECK(voice_receiver_config_default(&rc) == VOICE_OK, "receiver config");
    CHECK(voice_receiver_new(&rc, &rx) == VOICE_OK, "receiver");
    CHECK(voice_receiver_push(rx, 0, small, 3) == VOICE_ERR_MALFORMED, "short datagram");
    CHECK(voice_receiver_pop(rx, 0, pcm, 10, &src) == VOICE_ERR_BUFFER_TOO_SMALL, "small pcm");
    CHECK(voice_receiver_pop(rx, 0, pcm, VOICE_FRAME_SAMPLES, NULL) == VOICE_ERR_NULL, "NULL src");
    CHECK(voice_encoder_free(enc) == VOICE_OK, "free encoder");
    CHECK(voice_encoder_free(enc) == VOICE_ERR_INVALID_HANDLE, "double free detected");
    CHECK(voice_encoder_encode(enc, pcm, VOICE_FRAME_SAMPLES, 0, false, small, sizeof small, &n) ==
              VOICE_ERR_INVALID_HANDLE,
          "use after free detected");
    CHECK(voice_receiver_free(rx) == VOICE_OK, "free receiver");
    CHECK(voice_receiver_free(NULL) == VOICE_OK, "free NULL is fine");
    CHECK(voice_error_message(VOICE_ERR_NULL, msg, sizeof msg, &n) == VOICE_OK && n > 0,
          "error message");
    CHECK(voice_error_message(VOICE_ERR_NULL, NULL, 0, &n) == VOICE_ERR_BUFFER_TOO_SMALL &&
              n == strlen(msg),
          "error message size query");
    voice_client *client = NULL;
    voice_client_config cc;
    voice_client_config_default(&cc);
    CHECK(voice_client_new(&cc, &client) == VOICE_ERR_NULL && client == NULL, "missing server");
    cc.server = "not an address";
    cc.name = "x";
    CHECK(voice_client_new(&cc, &client) == VOICE_ERR_INVALID_ARGUMENT, "bad server address");
    CHECK(voice_client_join(NULL, 1) == VOICE_ERR_NULL, "NULL client");
    return 0;
}

/* Runs FRAMES frames through the link into a receiver with `policy`; fills `st`. */
static int run_link(uint32_t policy, voice_stream_stats *st, int *dropped_out, int *played_out,
                    int *filled_out) {
    voice_encoder_config ec;
    voice_encoder_config_default(&ec);
    ec.session = 42;
    voice_receiver_config rc;
    voice_receiver_config_default(&rc);
    rc.policy = policy;       /* VOICE_PLAYOUT_ADAPTIVE is the default */
    rc.watermark_packets = 2; /* used by VOICE_PLAYOUT_FIXED */
    rc.max_delay_ms = 300;    /* used by VOICE_PLAYOUT_ADAPTIVE */
    rc.sender = ec.session;   /* datagrams of anyone else are dropped and counted */
    voice_encoder *enc = NULL;
    voice_receiver *rx = NULL;
    CHECK(voice_encoder_new(&ec, &enc) == VOICE_OK, "encoder");
    CHECK(voice_receiver_new(&rc, &rx) == VOICE_OK, "receiver");

    static packet link[FRAMES];
    int16_t pcm[VOICE_FRAME_SAMPLES];
    int dropped = 0;
    lcg = 12345;
    for (int f = 0; f < FRAMES; f++) {
        /* A voiced, speech-like signal: harmonics of a gliding pitch under a syllable envelope. */
        for (int i = 0; i < VOICE_FRAME_SAMPLES; i++) {
            const double two_pi = 2.0 * 3.14159265358979;
            double t = (double)(f * VOICE_FRAME_SAMPLES + i) / 48000.0;
            double env = 0.5 - 0.5 * cos(two_pi * 3.0 * t);
            double f0 = 150.0 + 40.0 * sin(two_pi * 0.9 * t);
            double v = 0;
            for (int h = 1; h < 6; h++) v += sin(two_pi * f0 * h * t) / h;
            pcm[i] = (int16_t)(7000.0 * env * env * v);
        }
        packet *p = &link[f];
        voice_result r = voice_encoder_encode(enc, pcm, VOICE_FRAME_SAMPLES, 0, f == FRAMES - 1,
                                              p->bytes, sizeof p->bytes, &p->len);
        CHECK(r == VOICE_OK, "encode %d", f);
        /* 3% loss, 30 ms base latency, up to 25 ms jitter (so some packets overtake others);
         * from frame 200 to 300 a congested stretch adds up to 120 ms more. */
        p->used = (rnd() % 100) >= 3;
        if (!p->used) dropped++;
        uint64_t extra = (f >= 200 && f < 300) ? (uint64_t)(rnd() % 120) * 1000u : 0;
        p->arrival_us = (uint64_t)f * 20000u + 30000u + (uint64_t)(rnd() % 25) * 1000u + extra;
    }

    int played = 0, concealed = 0, fec = 0;
    double energy = 0;
    const int ticks = FRAMES + 50;
    for (int tick = 0; tick < ticks; tick++) {
        uint64_t now = (uint64_t)tick * 20000u;
        for (int f = 0; f < FRAMES; f++) {
            if (link[f].used == 1 && link[f].arrival_us <= now) {
                voice_result r = voice_receiver_push(rx, link[f].arrival_us, link[f].bytes,
                                                     link[f].len);
                CHECK(r == VOICE_OK, "push");
                link[f].used = 2;
            }
        }
        uint32_t src = 0;
        CHECK(voice_receiver_pop(rx, now, pcm, VOICE_FRAME_SAMPLES, &src) == VOICE_OK, "pop");
        if (src != VOICE_SOURCE_SILENCE) played++;
        if (src == VOICE_SOURCE_CONCEALED) concealed++;
        if (src == VOICE_SOURCE_FEC) fec++;
        for (int i = 0; i < VOICE_FRAME_SAMPLES; i++) energy += (double)pcm[i] * pcm[i];
    }
    CHECK(voice_receiver_stats(rx, (uint64_t)ticks * 20000u, st) == VOICE_OK, "stats");
    CHECK(energy > 0, "audio came out");
    CHECK(fec > 0, "some losses recovered from FEC");
    CHECK(voice_encoder_free(enc) == VOICE_OK && voice_receiver_free(rx) == VOICE_OK, "free");
    *dropped_out = dropped;
    *played_out = played;
    *filled_out = concealed + fec;
    return 0;
}

static void print_stats(const char *name, const voice_stream_stats *st) {
    printf("%-8s received %llu lost %llu late %llu played %llu concealed %llu fec %llu "
           "stretched +%llu/-%llu samples, buffer delay mean %.1f ms p95 %.1f ms\n",
           name, (unsigned long long)st->packets_received, (unsigned long long)st->packets_lost,
           (unsigned long long)st->packets_late, (unsigned long long)st->frames_played,
           (unsigned long long)st->frames_concealed,
           (unsigned long long)st->frames_fec_recovered,
           (unsigned long long)st->samples_inserted, (unsigned long long)st->samples_removed,
           st->mean_buffer_delay_ms, st->p95_buffer_delay_ms);
}

int main(void) {
    if (misuse() != 0) return 1;

    voice_stream_stats fixed, adaptive;
    int dropped = 0, played = 0, filled = 0;
    if (run_link(VOICE_PLAYOUT_FIXED, &fixed, &dropped, &played, &filled) != 0) return 1;
    print_stats("fixed", &fixed);
    /* Fixed: exactly one frame per packet slot, every loss filled by FEC or concealment. */
    CHECK(fixed.packets_received + fixed.packets_lost == FRAMES, "every packet accounted for");
    CHECK(fixed.packets_lost == (uint64_t)dropped, "lost %llu == dropped %d",
          (unsigned long long)fixed.packets_lost, dropped);
    CHECK(played == FRAMES, "one frame per packet slot: %d", played);
    CHECK(filled >= dropped + (int)fixed.packets_late, "every gap filled");
    CHECK(fixed.samples_inserted == 0 && fixed.samples_removed == 0, "fixed never stretches");

    if (run_link(VOICE_PLAYOUT_ADAPTIVE, &adaptive, &dropped, &played, &filled) != 0) return 1;
    print_stats("adaptive", &adaptive);
    /* Adaptive: same accounting; the delay grew over the congested stretch (fewer late packets
     * than the fixed 40 ms): late packets are waited for, and the delay comes back down in
     * pauses or, far above its target, by shortening voiced audio. */
    CHECK(adaptive.packets_received + adaptive.packets_lost == FRAMES, "every packet accounted");
    CHECK(adaptive.packets_lost == (uint64_t)dropped, "adaptive lost == dropped");
    CHECK(adaptive.packets_late < fixed.packets_late, "adaptive late %llu < fixed late %llu",
          (unsigned long long)adaptive.packets_late, (unsigned long long)fixed.packets_late);
    CHECK(adaptive.p95_buffer_delay_ms > fixed.p95_buffer_delay_ms,
          "adaptive held more delay where it avoided lateness (p95 %.1f > %.1f ms)",
          adaptive.p95_buffer_delay_ms, fixed.p95_buffer_delay_ms);
    CHECK(adaptive.datagrams_wrong_sender == 0 && adaptive.datagrams_malformed == 0,
          "nothing foreign");
    printf("sansio_loopback: ok\n");
    return 0;
}
