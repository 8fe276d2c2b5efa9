/*
 * A relay restart seen from C: start a relay, connect a client to it, kill the relay, start it
 * again on the same port, and check that the client reports the drop, reconnects and rejoins,
 * with stats read from the main thread throughout. Then free everything: run under valgrind /
 * LeakSanitizer, nothing may be left behind (not even "possibly lost").
 *
 *   reconnect RELAY_BINARY PORT
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "voice.h"

extern char **environ;

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static pid_t start_relay(const char *bin, const char *listen) {
    char *argv[] = {(char *)bin, "--listen", (char *)listen, NULL};
    pid_t pid = 0;
    if (posix_spawn(&pid, bin, NULL, NULL, argv, environ) != 0) return -1;
    return pid;
}

static void stop_relay(pid_t pid) {
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

/* Polls events (reading stats between polls, as a game's UI would) until `kind` arrives. */
static int wait_for(voice_client *c, uint32_t kind, int seconds, const char *what) {
    for (int i = 0; i < seconds * 100; i++) {
        voice_event ev;
        bool got = false;
        while (voice_client_poll_event(c, &ev, &got) == VOICE_OK && got) {
            if (ev.kind == VOICE_EVENT_DISCONNECTED) printf("disconnected (VOICE_DISCONNECT_* %u): %s\n", ev.code, ev.text);
            if (ev.kind == kind) {
                printf("%s\n", what);
                return 1;
            }
        }
        if (i % 10 == 0) {
            voice_stats st;
            if (voice_client_stats(c, &st) != VOICE_OK) {
                fprintf(stderr, "stats failed\n");
                return 0;
            }
        }
        sleep_ms(10);
    }
    fprintf(stderr, "timed out waiting for: %s\n", what);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s RELAY_BINARY PORT\n", argv[0]);
        return 2;
    }
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%s", argv[2]);
    pid_t relay = start_relay(argv[1], listen);
    if (relay <= 0) {
        fprintf(stderr, "cannot start %s\n", argv[1]);
        return 1;
    }
    voice_client_config cfg;
    voice_client_config_default(&cfg);
    cfg.server = listen;
    cfg.name = "restart-c";
    /* The relay keeps its self-signed identity across the restart (./relay-identity): the first
     * certificate seen is pinned, and the restarted relay presents the same one. */
    cfg.tls_trust_on_first_use = true;
    /* Minted with `relay token --identity-dir relay-identity --name restart-c`: the relay's own
     * signing key lives next to its certificate and survives the restart too. */
    cfg.access_token = getenv("VOICE_ACCESS_TOKEN");
    cfg.audio = VOICE_AUDIO_NULL;
    cfg.reconnect = true;
    voice_client *c = NULL;
    int ok = voice_client_new(&cfg, &c) == VOICE_OK;
    ok = ok && wait_for(c, VOICE_EVENT_CHANNEL_JOINED, 10, "joined");
    stop_relay(relay);
    ok = ok && wait_for(c, VOICE_EVENT_DISCONNECTED, 10, "saw the relay go");
    relay = start_relay(argv[1], listen);
    ok = ok && relay > 0;
    ok = ok && wait_for(c, VOICE_EVENT_CHANNEL_JOINED, 15, "rejoined after the restart");
    voice_stats st;
    ok = ok && voice_client_stats(c, &st) == VOICE_OK && st.state == 2;
    if (c != NULL && voice_client_free(c) != VOICE_OK) ok = 0;
    if (relay > 0) stop_relay(relay);
    printf(ok ? "reconnect: ok\n" : "reconnect: FAILED\n");
    return ok ? 0 : 1;
}
