/*
 * Positional audio with the sans-IO pieces: an encoder that puts the talker's position on every
 * datagram, a receiver that reports it, and a spatializer that renders the decoded voice in
 * stereo for a listener. A talker 3 units to the listener's right must come out louder on the
 * right (by the model's 10 dB at 90°) and quieter than at 1 unit (inverse model: 1/3, -9.5 dB).
 * Also checks that bad positions, poses and models are refused. Exit status 0 when every check
 * holds.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>

#include "voice.h"

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "check failed: " __VA_ARGS__);                                         \
            fprintf(stderr, "\n");                                                                 \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

/* Runs 60 frames of a 300 Hz tone from `at` through encoder → receiver → spatializer; writes the
 * RMS of the left and right channels over the last 30 frames. */
static int render(voice_position at, double *left, double *right) {
    voice_encoder_config ec;
    voice_receiver_config rc;
    voice_encoder *enc = NULL;
    voice_receiver *rx = NULL;
    voice_spatializer *sp = NULL;
    voice_attenuation att;
    voice_listener_pose pose = {{0, 0, 0}, {0, 0, -1}, {0, 1, 0}};
    int16_t pcm[VOICE_FRAME_SAMPLES];
    float stereo[VOICE_STEREO_FRAME_SAMPLES];
    uint8_t dgram[VOICE_MAX_DATAGRAM];
    double l = 0, r = 0;
    int k, i;

    CHECK(voice_encoder_config_default(&ec) == VOICE_OK, "encoder config");
    ec.session = 7;
    CHECK(voice_encoder_new(&ec, &enc) == VOICE_OK, "encoder");
    CHECK(voice_receiver_config_default(&rc) == VOICE_OK, "receiver config");
    CHECK(voice_receiver_new(&rc, &rx) == VOICE_OK, "receiver");
    CHECK(voice_spatializer_new(&sp) == VOICE_OK, "spatializer");
    CHECK(voice_attenuation_default(&att) == VOICE_OK, "attenuation");
    CHECK(voice_encoder_set_position(enc, &at) == VOICE_OK, "position");
    for (k = 0; k < 60; k++) {
        size_t n = 0;
        uint32_t source = 0;
        uint64_t now = (uint64_t)k * 20000;
        voice_position heard = {0, 0, 0};
        bool known = false;
        for (i = 0; i < VOICE_FRAME_SAMPLES; i++) {
            double t = (double)(k * VOICE_FRAME_SAMPLES + i) / 48000.0;
            pcm[i] = (int16_t)(8000.0 * sin(2.0 * 3.14159265358979 * 300.0 * t));
        }
        CHECK(voice_encoder_encode(enc, pcm, VOICE_FRAME_SAMPLES, 0, false, dgram, sizeof dgram,
                                   &n) == VOICE_OK,
              "encode");
        CHECK(voice_receiver_push(rx, now, dgram, n) == VOICE_OK, "push");
        CHECK(voice_receiver_position(rx, &heard, &known) == VOICE_OK && known &&
                  heard.x == at.x && heard.z == at.z,
              "the receiver reports the sender's position");
        CHECK(voice_receiver_pop(rx, now, pcm, VOICE_FRAME_SAMPLES, &source) == VOICE_OK, "pop");
        for (i = 0; i < VOICE_STEREO_FRAME_SAMPLES; i++) stereo[i] = 0.0f;
        CHECK(voice_spatializer_render(sp, &pose, &heard, &att, 1.0f, pcm, VOICE_FRAME_SAMPLES,
                                       stereo, VOICE_STEREO_FRAME_SAMPLES) == VOICE_OK,
              "render");
        if (k >= 30) {
            for (i = 0; i < VOICE_FRAME_SAMPLES; i++) {
                l += (double)stereo[2 * i] * stereo[2 * i];
                r += (double)stereo[2 * i + 1] * stereo[2 * i + 1];
            }
        }
    }
    *left = sqrt(l / (30.0 * VOICE_FRAME_SAMPLES));
    *right = sqrt(r / (30.0 * VOICE_FRAME_SAMPLES));
    CHECK(voice_spatializer_free(sp) == VOICE_OK, "free spatializer");
    CHECK(voice_receiver_free(rx) == VOICE_OK, "free receiver");
    CHECK(voice_encoder_free(enc) == VOICE_OK, "free encoder");
    return 0;
}

static int misuse(void) {
    voice_encoder_config ec;
    voice_encoder *enc = NULL;
    voice_spatializer *sp = NULL;
    voice_attenuation att;
    voice_position nan_pos = {NAN, 0, 0}, origin = {0, 0, 0};
    voice_listener_pose flat = {{0, 0, 0}, {0, 1, 0}, {0, 2, 0}};
    voice_listener_pose pose = {{0, 0, 0}, {0, 0, -1}, {0, 1, 0}};
    int16_t pcm[VOICE_FRAME_SAMPLES] = {0};
    float stereo[VOICE_STEREO_FRAME_SAMPLES] = {0};
    float gain = -1.0f;

    CHECK(voice_encoder_config_default(&ec) == VOICE_OK, "encoder config");
    CHECK(voice_encoder_new(&ec, &enc) == VOICE_OK, "encoder");
    CHECK(voice_encoder_set_position(enc, &nan_pos) == VOICE_ERR_INVALID_ARGUMENT, "NaN position");
    CHECK(voice_encoder_set_position(enc, NULL) == VOICE_OK, "NULL stops positions");
    CHECK(voice_encoder_free(enc) == VOICE_OK, "free encoder");
    CHECK(voice_attenuation_default(&att) == VOICE_OK, "attenuation");
    CHECK(voice_attenuation_gain(&att, 2.0f, &gain) == VOICE_OK && fabsf(gain - 0.5f) < 1e-6f,
          "inverse model: half the gain at twice the minimum distance");
    att.min_distance = att.max_distance;
    CHECK(voice_attenuation_gain(&att, 2.0f, &gain) == VOICE_ERR_INVALID_ARGUMENT, "min >= max");
    voice_attenuation_default(&att);
    att.model = 9;
    CHECK(voice_attenuation_gain(&att, 2.0f, &gain) == VOICE_ERR_INVALID_ARGUMENT, "bad model");
    voice_attenuation_default(&att);
    CHECK(voice_spatializer_new(&sp) == VOICE_OK, "spatializer");
    CHECK(voice_spatializer_render(sp, &flat, &origin, &att, 1.0f, pcm, VOICE_FRAME_SAMPLES, stereo,
                                   VOICE_STEREO_FRAME_SAMPLES) == VOICE_ERR_INVALID_ARGUMENT,
          "parallel forward and up");
    CHECK(voice_spatializer_render(sp, &pose, &origin, &att, 1.0f, pcm, VOICE_FRAME_SAMPLES, stereo,
                                   10) == VOICE_ERR_BUFFER_TOO_SMALL,
          "small stereo buffer");
    CHECK(voice_spatializer_free(sp) == VOICE_OK, "free spatializer");
    CHECK(voice_spatializer_free(sp) == VOICE_ERR_INVALID_HANDLE, "double free detected");
    return 0;
}

int main(void) {
    double l1, r1, l3, r3, ild, fade;
    voice_position near = {1, 0, 0}, far = {3, 0, 0};
    if (misuse() != 0) return 1;
    if (render(near, &l1, &r1) != 0) return 1;
    if (render(far, &l3, &r3) != 0) return 1;
    ild = 20.0 * log10(r3 / l3);
    fade = 20.0 * log10(r3 / r1);
    printf("talker at 90 deg: right %.1f dB over left; 3 units vs 1: %.1f dB\n", ild, fade);
    CHECK(fabs(ild - 10.0) < 1.0, "ILD %.2f dB, want 10", ild);
    CHECK(fabs(fade + 9.54) < 1.0, "distance fade %.2f dB, want -9.54", fade);
    printf("spatial: ok\n");
    return 0;
}
