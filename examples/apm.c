/*
 * apm.c: the sans-IO capture processor from C (issue 15). A "game" that owns its audio plays a
 * far-end signal, its microphone hears that through a small room (delay + decaying echo), and the
 * processor removes the echo. Prints the echo return loss enhancement over the last second and
 * fails when it is under 20 dB; then checks that misuse returns codes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "voice.h"

#define SR 48000
#define BLOCK VOICE_FRAME_SAMPLES /* 20 ms */
#define SECONDS 4
#define DELAY (SR * 60 / 1000)    /* 60 ms device + room delay */

static uint32_t rng = 12345;
static float noise(void) {
    rng = rng * 1664525u + 1013904223u;
    return (float)((int32_t)(rng >> 8) - (1 << 23)) / (float)(1 << 23);
}

#define CHECK(call)                                                              \
    do {                                                                         \
        voice_result r_ = (call);                                                \
        if (r_ != VOICE_OK) {                                                    \
            char m_[128];                                                        \
            size_t w_ = 0;                                                       \
            voice_error_message(r_, m_, sizeof m_, &w_);                         \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, m_);   \
            return 1;                                                            \
        }                                                                        \
    } while (0)

int main(void) {
    const size_t n = (size_t)SR * SECONDS;
    float *far = calloc(n, sizeof *far);
    float *room = calloc(SR / 4, sizeof *room);
    if (!far || !room) return 1;
    /* Far end: noise bursts shaped like syllables (4 per second). */
    float lp = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float env = sinf(3.14159265f * (float)(i % (SR / 4)) / (float)(SR / 4));
        lp = 0.7f * lp + 0.3f * noise();
        far[i] = 0.3f * env * env * lp;
    }
    /* Room: a direct path at -6 dB and reflections every 32 samples decaying 60 dB in 250 ms. */
    for (size_t k = 0; k < SR / 4; k += 32) {
        float t = (float)k / SR;
        room[k] = (k == 0 ? 0.5f : 0.1f * noise()) * expf(-6.9f * t / 0.25f);
    }

    struct voice_processor_config cfg;
    CHECK(voice_processor_config_default(&cfg));
    cfg.noise_suppression = false; /* measure the canceller alone */
    cfg.gain_control = false;
    cfg.echo_delay_ms = 60;
    struct voice_processor *p = NULL;
    CHECK(voice_processor_new(&cfg, &p));

    int16_t far_block[BLOCK], mic_block[BLOCK];
    double in_energy = 0.0, out_energy = 0.0;
    for (size_t b = 0; b + BLOCK <= n; b += BLOCK) {
        for (size_t i = 0; i < BLOCK; i++) {
            size_t t = b + i;
            float echo = 0.0f;
            for (size_t k = 0; k < SR / 4 && k + DELAY <= t; k += 32) {
                echo += room[k] * far[t - DELAY - k];
            }
            far_block[i] = (int16_t)lrintf(far[t] * 32767.0f);
            mic_block[i] = (int16_t)lrintf(fmaxf(-1.0f, fminf(1.0f, echo)) * 32767.0f);
        }
        CHECK(voice_processor_far_end(p, far_block, BLOCK));
        double e_in = 0.0;
        for (size_t i = 0; i < BLOCK; i++) e_in += (double)mic_block[i] * mic_block[i];
        bool speech = false;
        CHECK(voice_processor_process(p, mic_block, BLOCK, &speech));
        if (b >= n - SR) {
            in_energy += e_in;
            for (size_t i = 0; i < BLOCK; i++) out_energy += (double)mic_block[i] * mic_block[i];
        }
    }
    double erle = 10.0 * log10(in_energy / (out_energy + 1.0));
    struct voice_capture_stats st;
    CHECK(voice_processor_stats(p, &st));
    printf("apm: ERLE over the last second %.1f dB (canceller's own estimate %.1f dB, delay %d ms, "
           "clock drift %.1f ppm), %llu frames\n",
           erle, st.erle_db, st.echo_delay_ms, st.clock_drift_ppm, (unsigned long long)st.frames);

    /* Misuse returns codes. */
    bool speech = false;
    int16_t short_block[100] = {0};
    int bad = voice_processor_process(p, short_block, 100, &speech) != VOICE_ERR_INVALID_ARGUMENT ||
              voice_processor_process(p, NULL, BLOCK, &speech) != VOICE_ERR_NULL ||
              voice_processor_set_echo_delay(p, 10000) != VOICE_ERR_INVALID_ARGUMENT;
    struct voice_processor *q = NULL;
    cfg.background_voice_margin_db = -1.0f;
    bad |= voice_processor_new(&cfg, &q) != VOICE_ERR_INVALID_ARGUMENT || q != NULL;
    cfg.background_voice_margin_db = 6.0f;
    cfg.suppression_level = 99;
    cfg.noise_suppression = true;
    bad |= voice_processor_new(&cfg, &q) != VOICE_ERR_INVALID_ARGUMENT || q != NULL;
    CHECK(voice_processor_free(p));
    bad |= voice_processor_free(p) != VOICE_ERR_INVALID_HANDLE;
    free(far);
    free(room);
    if (bad) {
        fprintf(stderr, "apm: misuse was not refused\n");
        return 1;
    }
    if (erle < 20.0) {
        fprintf(stderr, "apm: ERLE %.1f dB < 20 dB\n", erle);
        return 1;
    }
    return 0;
}
