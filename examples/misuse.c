/*
 * What an integrator gets wrong, from C: each mistake must come back as a result code, never a
 * crash, a sanitizer report or a leak. Compiled -pedantic and run under valgrind and under
 * AddressSanitizer + UndefinedBehaviorSanitizer by examples/run.sh.
 *
 *   misuse CLOSED_PORT     (a 127.0.0.1 port nothing listens on)
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Every struct has a tag: it can be forward-declared before the header is included. */
struct voice_client_config;
struct voice_stream_stats;
static int takes_forward_declared(const struct voice_client_config *c) { return c != NULL; }

#include "voice.h"

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "check failed (line %d): ", __LINE__);                                 \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- four threads on one encoder ---- */
typedef struct {
    voice_encoder *enc;
    int ok, busy, other;
} worker;

static void *encode_loop(void *arg) {
    worker *w = arg;
    int16_t pcm[VOICE_FRAME_SAMPLES];
    uint8_t out[VOICE_MAX_DATAGRAM];
    for (int i = 0; i < VOICE_FRAME_SAMPLES; i++) pcm[i] = (int16_t)((i * 37) % 2000 - 1000);
    for (int i = 0; i < 3000 && w->busy < 20; i++) {
        size_t n = 0;
        voice_result r =
            voice_encoder_encode(w->enc, pcm, VOICE_FRAME_SAMPLES, 0, false, out, sizeof out, &n);
        if (r == VOICE_OK)
            w->ok++;
        else if (r == VOICE_ERR_BUSY)
            w->busy++;
        else
            w->other++;
    }
    return NULL;
}

static int threads_on_one_encoder(void) {
    voice_encoder_config ec;
    voice_encoder *enc = NULL;
    CHECK(voice_encoder_config_default(&ec) == VOICE_OK, "encoder config");
    CHECK(ec.packet_loss_percent == VOICE_DEFAULT_LOSS_PERCENT, "documented loss hint");
    CHECK(voice_encoder_new(&ec, &enc) == VOICE_OK, "encoder");
    worker w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){enc, 0, 0, 0};
        CHECK(pthread_create(&t[i], NULL, encode_loop, &w[i]) == 0, "thread");
    }
    int ok = 0, busy = 0, other = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        ok += w[i].ok;
        busy += w[i].busy;
        other += w[i].other;
    }
    printf("4 threads on one encoder: %d encoded, %d refused as busy, %d other\n", ok, busy,
           other);
    CHECK(other == 0 && ok > 0, "only OK or BUSY");
    CHECK(voice_encoder_free(enc) == VOICE_OK, "free");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s CLOSED_PORT\n", argv[0]);
        return 2;
    }
    char server[64];
    snprintf(server, sizeof server, "127.0.0.1:%s", argv[1]);

    /* Configuration strings need not outlive voice_client_new: these are freed right after. */
    char *name = strdup("misuser");
    char *addr = strdup(server);
    voice_client_config cfg;
    CHECK(voice_client_config_default(&cfg) == VOICE_OK && takes_forward_declared(&cfg), "config");
    cfg.server = addr;
    cfg.name = name;
    cfg.audio = VOICE_AUDIO_NULL;
    cfg.reconnect = false;
    voice_client *c = NULL;
    CHECK(voice_client_new(&cfg, &c) == VOICE_OK, "client");
    memset(name, 'X', strlen(name));
    free(name);
    free(addr);

    /* Nothing listens: the refusal arrives at once as an event, and is not retried. */
    int refused = 0;
    for (int i = 0; i < 200 && !refused; i++) {
        voice_event ev;
        bool got = false;
        CHECK(voice_client_poll_event(c, &ev, &got) == VOICE_OK, "poll");
        if (got && ev.kind == VOICE_EVENT_DISCONNECTED) {
            printf("refused at once: %s\n", ev.text);
            refused = 1;
        }
        if (!got) sleep_ms(5);
    }
    CHECK(refused, "no event for the refused connection within 1 s");

    /* Chat: the length is checked before the text is read; NUL is refused. */
    const uint8_t one[1] = {'x'};
    CHECK(voice_client_send_chat(c, one, SIZE_MAX) == VOICE_ERR_INVALID_ARGUMENT, "SIZE_MAX");
    CHECK(voice_client_send_chat(c, one, 0) == VOICE_ERR_INVALID_ARGUMENT, "empty chat");
    CHECK(voice_client_send_chat(c, (const uint8_t *)"a\0b", 3) == VOICE_ERR_INVALID_ARGUMENT,
          "embedded NUL");
    CHECK(voice_client_send_chat(c, one, 1) == VOICE_ERR_NOT_CONNECTED, "not connected");

    /* Handles of the wrong kind. */
    voice_encoder_config ec;
    voice_receiver_config rc;
    voice_encoder *enc = NULL;
    voice_receiver *rx = NULL;
    voice_encoder_config_default(&ec);
    voice_receiver_config_default(&rc);
    CHECK(voice_encoder_new(&ec, &enc) == VOICE_OK, "encoder");
    CHECK(voice_receiver_new(&rc, &rx) == VOICE_OK, "receiver");
    CHECK(voice_client_leave((const voice_client *)(const void *)rx) == VOICE_ERR_INVALID_HANDLE,
          "receiver as client");
    CHECK(voice_encoder_skip_frame((voice_encoder *)(void *)c) == VOICE_ERR_INVALID_HANDLE,
          "client as encoder");
    CHECK(voice_receiver_free((voice_receiver *)(void *)enc) == VOICE_ERR_INVALID_HANDLE,
          "encoder freed as receiver");
    voice_stream_stats st;
    CHECK(voice_receiver_stats(rx, 0, &st) == VOICE_OK && st.datagrams_malformed == 0, "stats");
    CHECK(voice_receiver_push(rx, 0, one, 1) == VOICE_ERR_MALFORMED, "short datagram");
    CHECK(voice_receiver_stats(rx, 0, &st) == VOICE_OK && st.datagrams_malformed == 1,
          "malformed datagram counted");
    CHECK(voice_encoder_free(enc) == VOICE_OK && voice_receiver_free(rx) == VOICE_OK, "frees");

    /* Error text: ask for the size, then fetch it. */
    size_t need = 0;
    CHECK(voice_error_message(VOICE_ERR_BUSY, NULL, 0, &need) == VOICE_ERR_BUFFER_TOO_SMALL &&
              need > 0,
          "size query");
    char *msg = malloc(need + 1);
    size_t got_len = 0;
    CHECK(msg && voice_error_message(VOICE_ERR_BUSY, msg, need + 1, &got_len) == VOICE_OK &&
              got_len == need && strlen(msg) == need,
          "message fits");
    printf("VOICE_ERR_BUSY: %s\n", msg);
    free(msg);

    if (threads_on_one_encoder() != 0) return 1;

    CHECK(voice_client_free(c) == VOICE_OK, "free client");
    CHECK(voice_client_free(c) == VOICE_ERR_INVALID_HANDLE, "double free");
    printf("misuse: ok\n");
    return 0;
}
