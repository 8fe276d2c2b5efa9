/*
 * A minimal C client: connect to a relay, join a channel, talk from a WAV file, record what it
 * hears, print events, then print stats and clean up.
 *
 *   client HOST:PORT NAME IN.wav OUT.wav SECONDS [CHANNEL]
 *
 * Exit status 0 when the client was welcomed, bound UDP and joined its channel.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "voice.h"

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void die(const char *what, voice_result r) {
    char msg[128];
    size_t n = 0;
    voice_error_message(r, msg, sizeof msg, &n);
    fprintf(stderr, "%s: %s (%u)\n", what, msg, (unsigned)r);
    exit(1);
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s HOST:PORT NAME IN.wav OUT.wav SECONDS [CHANNEL]\n", argv[0]);
        return 2;
    }
    if (voice_abi_version() != VOICE_ABI_VERSION) {
        fprintf(stderr, "ABI mismatch\n");
        return 1;
    }
    printf("voice engine %s\n", voice_version());

    voice_client_config cfg;
    voice_result r = voice_client_config_default(&cfg);
    if (r != VOICE_OK) die("config", r);
    cfg.server = argv[1];
    cfg.name = argv[2];
    /* TLS: pin the certificate fingerprint the relay printed (NULL: public CAs only). */
    cfg.tls_fingerprint = getenv("VOICE_RELAY_FINGERPRINT");
    /* The access token the relay requires (`relay token --name NAME`); NULL for an --open relay. */
    cfg.access_token = getenv("VOICE_ACCESS_TOKEN");
    cfg.audio = VOICE_AUDIO_FILES;
    cfg.input_wav = argv[3];
    cfg.output_wav = argv[4];
    cfg.transmit_mode = VOICE_TRANSMIT_CONTINUOUS;
    cfg.initial_channel = argc > 6 ? (uint32_t)atoi(argv[6]) : 0;

    voice_client *client = NULL;
    r = voice_client_new(&cfg, &client);
    if (r != VOICE_OK) die("voice_client_new", r);

    int welcomed = 0, udp = 0, joined = 0, chatted = 0;
    long seconds = atol(argv[5]);
    for (long t = 0; t < seconds * 100; t++) {
        voice_event ev;
        bool got = false;
        while ((r = voice_client_poll_event(client, &ev, &got)) == VOICE_OK && got) {
            switch (ev.kind) {
            case VOICE_EVENT_CONNECTED:
                welcomed = 1;
                printf("connected as #%u (%s)\n", ev.session, ev.name);
                break;
            case VOICE_EVENT_UDP_READY:
                udp = 1;
                printf("udp ready\n");
                break;
            case VOICE_EVENT_CHANNEL_JOINED:
                joined = 1;
                printf("joined channel %u (%s), %.0f members\n", ev.channel, ev.name, ev.value);
                if (!chatted) {
                    const char *hello = "hello from C";
                    r = voice_client_send_chat(client, (const uint8_t *)hello, strlen(hello));
                    if (r != VOICE_OK) die("send_chat", r);
                    chatted = 1;
                }
                break;
            case VOICE_EVENT_MEMBER:
            case VOICE_EVENT_USER_JOINED:
                /* text: the stable user id (keep per-user settings by it); flag / flag2: the
                   user muted / deafened themselves. */
                printf("member #%u %s (id %s) in channel %u%s%s%s\n", ev.session, ev.name, ev.text,
                       ev.channel,
                       ev.session >= VOICE_FIRST_REMOTE_SESSION ? " (on another relay)" : "",
                       ev.flag ? " [muted]" : "", ev.flag2 ? " [deafened]" : "");
                break;
            case VOICE_EVENT_USER_STATE:
                printf("#%u %s, %s\n", ev.session, ev.flag ? "muted" : "unmuted",
                       ev.flag2 ? "deafened" : "hears");
                break;
            case VOICE_EVENT_CHANNEL_MEMBERS:
                /* Cluster: a channel's whole member list; MEMBER events follow. */
                printf("channel %u (hosted by %s): %.0f members\n", ev.channel,
                       ev.text_len ? ev.text : "nobody", ev.value);
                break;
            case VOICE_EVENT_USER_LEFT:
                printf("#%u left channel %u\n", ev.session, ev.channel);
                break;
            case VOICE_EVENT_CHAT:
                printf("chat from %s: %s\n", ev.name, ev.text);
                break;
            case VOICE_EVENT_SPEAKING:
                printf("#%u %s speaking\n", ev.session, ev.flag ? "started" : "stopped");
                break;
            case VOICE_EVENT_RTT:
                printf("rtt %.2f ms\n", ev.value);
                break;
            case VOICE_EVENT_STATUS:
                /* One event per change of the connection status. */
                switch (ev.code) {
                case VOICE_STATUS_CONNECTING:
                    printf("status: connecting (attempt %.0f)%s%s\n", ev.value,
                           ev.text_len ? ", last error: " : "", ev.text);
                    break;
                case VOICE_STATUS_CONNECTED:
                    printf("status: connected, voice over %s\n",
                           ev.value == VOICE_PATH_TUNNEL ? "the TCP tunnel" : "UDP");
                    break;
                case VOICE_STATUS_RECONNECTING:
                    printf("status: reconnecting in %.0f ms: %s\n", ev.value, ev.text);
                    break;
                case VOICE_STATUS_FAILED:
                    printf("status: failed: %s\n", ev.text);
                    break;
                default:
                    break;
                }
                break;
            case VOICE_EVENT_DISCONNECTED:
            case VOICE_EVENT_ERROR:
            case VOICE_EVENT_COMMAND_FAILED:
            case VOICE_EVENT_AUDIO_NOTICE:
                printf("notice (%u): %s\n", ev.kind, ev.text);
                break;
            default:
                break;
            }
        }
        if (r != VOICE_OK) die("poll_event", r);
        sleep_ms(10);
    }

    voice_connection conn;
    r = voice_client_connection(client, &conn);
    if (r != VOICE_OK) die("connection", r);
    printf("connection status %u path %u (tunnel: %llu sent, %llu received)\n", conn.status,
           conn.path, (unsigned long long)conn.tunnel_tx_packets,
           (unsigned long long)conn.tunnel_rx_packets);

    voice_stats st;
    r = voice_client_stats(client, &st);
    if (r != VOICE_OK) die("stats", r);
    printf("state %u session #%u channel %u rtt %.2f ms sent %llu packets, %zu remote(s)\n",
           st.state, st.session, st.channel, st.rtt_ms, (unsigned long long)st.tx_packets,
           st.remote_count);
    for (size_t i = 0; i < st.remote_count; i++) {
        const voice_remote_stats *rs = &st.remotes[i];
        printf("  from #%u: received %llu lost %llu late %llu concealed %llu fec %llu loss10s %.1f%% depth %u\n",
               rs->session, (unsigned long long)rs->stream.packets_received,
               (unsigned long long)rs->stream.packets_lost, (unsigned long long)rs->stream.packets_late,
               (unsigned long long)rs->stream.frames_concealed,
               (unsigned long long)rs->stream.frames_fec_recovered, rs->stream.loss_percent_10s,
               rs->stream.buffer_depth);
    }

    r = voice_client_free(client);
    if (r != VOICE_OK) die("free", r);
    /* A second free is caught, not a crash. */
    if (voice_client_free(client) != VOICE_ERR_INVALID_HANDLE) {
        fprintf(stderr, "double free not detected\n");
        return 1;
    }
    if (!(welcomed && udp && joined)) {
        fprintf(stderr, "did not connect fully (welcomed %d udp %d joined %d)\n", welcomed, udp,
                joined);
        return 1;
    }
    return 0;
}
