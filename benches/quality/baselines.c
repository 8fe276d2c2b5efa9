/* Baseline receivers for benches/quality.sh: the same packets and the same trace as voice-sim,
 * only the receiver differs.
 *
 *   baselines --receiver speex|plain|plain-fec --packets P.bin --trace T.csv
 *             --output OUT.wav --stats S.json [--tick-phase MS]
 *
 * P.bin is `voice-sim --write-packets`: per packet a u32 LE index, a u16 LE length, the Opus
 * payload. T.csv is voice-sim's trace format (`seq,send_ms,arrival_ms`, empty arrival = lost,
 * `#` comments). The receiver ticks every 20 ms at MS + 20 k ms of the sender's clock, delivering
 * first every packet that has arrived by then; OUT.wav is 48 kHz mono 16-bit and its sample 0 is
 * the sender's time 0 (MS ms of silence, then one 20 ms frame per tick), as voice-sim's.
 *
 * Receivers:
 *  - speex: the speexdsp jitter buffer driven as Mumble's AudioOutputSpeech drives it
 *    (src/mumble/AudioOutputSpeech.cpp): jitter_buffer_init(10 ms), margin = iJitterBufferSize (1,
 *    Mumble's default) x 10 ms, put with timestamp = 10 ms x frame number and span = the packet's
 *    samples; per 10 ms step of the audio callback (here one callback of 20 ms per tick):
 *    the fAverageAvailable start wait, jitter_buffer_get(10 ms) -> decode the whole packet and
 *    tick once per 10 ms decoded, or on a miss update_delay + 10 ms of Opus PLC + one tick;
 *    update_delay after a quiet frame (Mumble's power tracker), fade-in at the start, fade-out and
 *    teardown after 10 misses or the terminator (a new buffer for the next packet).
 *  - plain: starts when 2 packets are held, then plays one packet per tick in sequence order,
 *    Opus PLC when the packet is missing, drops packets that arrive after their slot, no FEC.
 *  - plain-fec: plain, plus Opus in-band FEC from the next packet when it is held.
 */
#include <math.h>
#include <opus.h>
#include <speex/speex_jitter.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RATE 48000
#define FRAME 960 /* 20 ms: a packet and a tick */
#define STEP 480  /* 10 ms: Mumble's iFrameSize (per channel) */
#define MAX_DECODE 2880
#define FRAME_NUMBER_BASE 1000 /* the sender's 10 ms frame counter at packet 0 */

static void die(const char *msg, const char *arg) {
    fprintf(stderr, "baselines: %s%s%s\n", msg, arg ? " " : "", arg ? arg : "");
    exit(2);
}

/* ---- inputs ---- */

typedef struct {
    unsigned char *data;
    int len;
} Packet;

/* Every packet, by index (the jitter buffer carries the index in user_data). */
static Packet *g_packets;

static Packet *read_packets(const char *path, int *count) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open packets", path);
    int cap = 1024, n = 0;
    Packet *p = calloc((size_t)cap, sizeof *p);
    unsigned char hdr[6];
    while (fread(hdr, 1, 6, f) == 6) {
        uint32_t index = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 |
                         (uint32_t)hdr[3] << 24;
        int len = hdr[4] | hdr[5] << 8;
        if ((int)index != n) die("packets out of order in", path);
        if (n == cap) {
            cap *= 2;
            p = realloc(p, (size_t)cap * sizeof *p);
        }
        p[n].data = malloc((size_t)len + 1);
        p[n].len = len;
        if (fread(p[n].data, 1, (size_t)len, f) != (size_t)len) die("truncated packets", path);
        n++;
    }
    fclose(f);
    if (n == 0) die("no packets in", path);
    *count = n;
    return p;
}

typedef struct {
    double at;
    int seq;
    int order;
} Arrival;

static int by_time(const void *a, const void *b) {
    const Arrival *x = a, *y = b;
    if (x->at != y->at) return x->at < y->at ? -1 : 1;
    return x->order - y->order; /* stable: equal times keep file order */
}

static Arrival *read_trace(const char *path, int packets, int *count) {
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open trace", path);
    char line[512];
    int cap = 1024, n = 0, header = 0;
    Arrival *a = malloc((size_t)cap * sizeof *a);
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n' || line[0] == '\r') continue;
        if (!header) {
            if (strncmp(line, "seq,send_ms,arrival_ms", 22) != 0) die("bad trace header in", path);
            header = 1;
            continue;
        }
        char *c1 = strchr(line, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
        if (!c2) die("bad trace line in", path);
        int seq = atoi(line);
        char *end;
        double at = strtod(c2 + 1, &end);
        if (end == c2 + 1) continue; /* lost */
        if (seq < 0 || seq >= packets) continue;
        if (n == cap) {
            cap *= 2;
            a = realloc(a, (size_t)cap * sizeof *a);
        }
        a[n].at = at;
        a[n].seq = seq;
        a[n].order = n;
        n++;
    }
    fclose(f);
    if (!header) die("no header in trace", path);
    qsort(a, (size_t)n, sizeof *a, by_time);
    *count = n;
    return a;
}

/* ---- output ---- */

typedef struct {
    int16_t *s;
    size_t len, cap;
} Pcm;

static void pcm_push(Pcm *o, const int16_t *x, size_t n) {
    if (o->len + n > o->cap) {
        o->cap = (o->len + n) * 2;
        o->s = realloc(o->s, o->cap * sizeof *o->s);
    }
    memcpy(o->s + o->len, x, n * sizeof *x);
    o->len += n;
}

static void put_u32(FILE *f, uint32_t v) {
    unsigned char b[4] = {v & 255, v >> 8 & 255, v >> 16 & 255, v >> 24 & 255};
    fwrite(b, 1, 4, f);
}

static void put_u16(FILE *f, unsigned v) {
    unsigned char b[2] = {v & 255, v >> 8 & 255};
    fwrite(b, 1, 2, f);
}

static void write_wav(const char *path, const Pcm *o) {
    FILE *f = fopen(path, "wb");
    if (!f) die("cannot write", path);
    uint32_t bytes = (uint32_t)(o->len * 2);
    fwrite("RIFF", 1, 4, f);
    put_u32(f, 36 + bytes);
    fwrite("WAVEfmt ", 1, 8, f);
    put_u32(f, 16);
    put_u16(f, 1);
    put_u16(f, 1);
    put_u32(f, RATE);
    put_u32(f, RATE * 2);
    put_u16(f, 2);
    put_u16(f, 16);
    fwrite("data", 1, 4, f);
    put_u32(f, bytes);
    for (size_t i = 0; i < o->len; i++) put_u16(f, (uint16_t)o->s[i]);
    fclose(f);
}

static int16_t to_i16(float x) {
    float v = x * 32768.0f;
    if (v > 32767.0f) v = 32767.0f;
    if (v < -32768.0f) v = -32768.0f;
    return (int16_t)lrintf(v);
}

/* ---- counters ---- */

typedef struct {
    long played;       /* 20 ms frames decoded from their own packet */
    long fec;          /* 20 ms frames recovered from the next packet's FEC */
    long concealed_10; /* 10 ms units of PLC */
    long late;         /* packets dropped: arrived after their slot */
    long duplicate;    /* extra copies */
    long resets;       /* speex: buffer torn down (10 misses or terminator) */
} Counts;

/* ---- plain and plain-fec ---- */

typedef struct {
    int fec, started, next, packets, held_count;
    unsigned char *held;
    OpusDecoder *dec;
} Plain;

static void plain_put(Plain *r, int seq, Counts *c) {
    if (r->started && seq < r->next) {
        c->late++;
        return;
    }
    if (r->held[seq]) {
        c->duplicate++;
        return;
    }
    r->held[seq] = 1;
    r->held_count++;
}

/* Returns 1 while it has more to play. */
static int plain_frame(Plain *r, const Packet *pk, int16_t *out, Counts *c) {
    memset(out, 0, FRAME * sizeof *out);
    if (!r->started) {
        if (r->held_count < 2) return 1;
        r->started = 1;
        r->next = 0;
        while (!r->held[r->next]) r->next++;
    }
    if (r->next >= r->packets) return 0;
    int k = r->next, n;
    if (r->held[k]) {
        n = opus_decode(r->dec, pk[k].data, pk[k].len, out, FRAME, 0);
        c->played++;
    } else if (r->fec && k + 1 < r->packets && r->held[k + 1]) {
        n = opus_decode(r->dec, pk[k + 1].data, pk[k + 1].len, out, FRAME, 1);
        c->fec++;
    } else {
        n = opus_decode(r->dec, NULL, 0, out, FRAME, 0);
        c->concealed_10 += 2;
    }
    if (n != FRAME) memset(out, 0, FRAME * sizeof *out);
    if (r->held[k]) r->held_count--;
    r->held[k] = 0;
    r->next++;
    return r->next < r->packets;
}

/* ---- speex, driven as Mumble's AudioOutputSpeech ---- */

typedef struct {
    /* ClientUser state: outlives the AudioOutputSpeech object. */
    float average_available, power_max, power_min;
    /* AudioOutputSpeech: exists from a packet's arrival until it reports itself dead. */
    int exists;
    JitterBuffer *jb;
    OpusDecoder *dec;
    float buf[FRAME + MAX_DECODE];
    unsigned filled, last_consume;
    int alive, miss_count, pending, has_terminator;
    float fade_in[STEP], fade_out[STEP];
    int packets;
} Speex;

static void speex_create(Speex *s) {
    int err;
    s->jb = jitter_buffer_init(STEP);
    int margin = 1 * STEP; /* Settings::iJitterBufferSize = 1 */
    jitter_buffer_ctl(s->jb, JITTER_BUFFER_SET_MARGIN, &margin);
    s->dec = opus_decoder_create(RATE, 1, &err);
    if (err != OPUS_OK) die("opus_decoder_create failed", NULL);
    s->filled = s->last_consume = 0;
    s->alive = 1;
    s->miss_count = 0;
    s->pending = -1;
    s->has_terminator = 0;
    s->exists = 1;
}

static void speex_destroy(Speex *s) {
    jitter_buffer_destroy(s->jb);
    opus_decoder_destroy(s->dec);
    s->exists = 0;
}

static void speex_put(Speex *s, int seq, const Packet *pk) {
    if (!s->exists) speex_create(s);
    JitterBufferPacket p;
    memset(&p, 0, sizeof p);
    p.data = (char *)pk[seq].data;
    p.len = (spx_uint32_t)pk[seq].len;
    p.span = (spx_uint32_t)opus_packet_get_nb_samples(pk[seq].data, pk[seq].len, RATE);
    /* Mumble's frame number counts 10 ms frames since the sender's client started: never 0 for
     * a packet, so a pointer timestamp of 0 means "nothing taken yet" (the start wait, fade-in). */
    p.timestamp = (spx_uint32_t)(STEP * (FRAME_NUMBER_BASE + 2 * seq));
    p.user_data = (spx_uint32_t)seq;
    jitter_buffer_put(s->jb, &p);
}

/* AudioOutputSpeech::prepareSampleBuffer(960) followed by the mixer taking 960 samples. */
static void speex_frame(Speex *s, int16_t *out, Counts *c) {
    memset(out, 0, FRAME * sizeof *out);
    if (!s->exists) return;
    for (unsigned i = s->last_consume; i < s->filled; ++i) s->buf[i - s->last_consume] = s->buf[i];
    s->filled -= s->last_consume;
    s->last_consume = FRAME;
    int nextalive = s->alive;
    while (s->filled < FRAME) {
        int decoded = STEP;
        float *o = s->buf + s->filled;
        if (!s->alive) {
            memset(o, 0, STEP * sizeof *o);
        } else {
            int avail = 0;
            int ts = jitter_buffer_get_pointer_timestamp(s->jb);
            jitter_buffer_ctl(s->jb, JITTER_BUFFER_GET_AVAILABLE_COUNT, &avail);
            if (ts == 0) {
                int want = (int)s->average_available;
                if (avail < want) {
                    ++s->miss_count;
                    if (s->miss_count < 20) {
                        memset(o, 0, STEP * sizeof *o);
                        goto nextframe;
                    }
                }
            }
            if (s->pending < 0) {
                char data[4096];
                JitterBufferPacket p;
                memset(&p, 0, sizeof p);
                p.data = data;
                p.len = sizeof data;
                spx_int32_t startofs = 0;
                if (jitter_buffer_get(s->jb, &p, STEP, &startofs) == JITTER_BUFFER_OK) {
                    s->miss_count = 0;
                    s->pending = (int)p.user_data;
                    s->has_terminator = s->pending == s->packets - 1; /* END_OF_SPURT */
                    float a = (float)avail;
                    if (a >= s->average_available)
                        s->average_available = a;
                    else
                        s->average_available *= 0.99f;
                } else {
                    jitter_buffer_update_delay(s->jb, &p, NULL);
                    s->miss_count++;
                    if (s->miss_count > 10) nextalive = 0;
                }
            }
            if (s->pending >= 0) {
                /* Decoded from the stored copy: the same bytes the buffer returned. */
                const Packet *pk = &g_packets[s->pending];
                decoded = opus_decode_float(s->dec, pk->data, pk->len, o, MAX_DECODE, 0);
                if (decoded < 0) {
                    decoded = STEP;
                    memset(o, 0, STEP * sizeof *o);
                }
                c->played++;
                float pw = 0.0f;
                for (int i = 0; i < decoded; ++i) pw += o[i] * o[i];
                pw = sqrtf(pw / (float)decoded);
                if (pw >= s->power_max) {
                    s->power_max = pw;
                } else if (pw <= s->power_min) {
                    s->power_min = pw;
                } else {
                    s->power_max = 0.99f * s->power_max;
                    s->power_min += 0.0001f * pw;
                }
                int update = pw < s->power_min + 0.01f * (s->power_max - s->power_min);
                s->pending = -1;
                if (update) jitter_buffer_update_delay(s->jb, NULL, NULL);
                if (s->has_terminator) nextalive = 0;
            } else {
                decoded = opus_decode_float(s->dec, NULL, 0, o, STEP, 0);
                if (decoded < 0) {
                    decoded = STEP;
                    memset(o, 0, STEP * sizeof *o);
                }
                c->concealed_10++;
            }
            if (!nextalive) {
                for (int i = 0; i < STEP; ++i) o[i] *= s->fade_out[i];
            } else if (ts == 0) {
                for (int i = 0; i < STEP; ++i) o[i] *= s->fade_in[i];
            }
            for (int i = decoded / STEP; i > 0; --i) jitter_buffer_tick(s->jb);
        }
    nextframe:
        s->filled += (unsigned)decoded;
    }
    int was_alive = s->alive;
    s->alive = nextalive;
    if (!was_alive) {
        /* prepareSampleBuffer returned false: the mixer drops this user's buffer unmixed. */
        c->resets++;
        speex_destroy(s);
        return;
    }
    for (int i = 0; i < FRAME; ++i) out[i] = to_i16(s->buf[i]);
}

int main(int argc, char **argv) {
    const char *receiver = NULL, *packets_path = NULL, *trace_path = NULL, *out_path = NULL,
               *stats_path = NULL;
    double phase = 0.0;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (i + 1 >= argc) die("missing value for", f);
        const char *v = argv[++i];
        if (!strcmp(f, "--receiver")) receiver = v;
        else if (!strcmp(f, "--packets")) packets_path = v;
        else if (!strcmp(f, "--trace")) trace_path = v;
        else if (!strcmp(f, "--output")) out_path = v;
        else if (!strcmp(f, "--stats")) stats_path = v;
        else if (!strcmp(f, "--tick-phase")) {
            char *end;
            phase = strtod(v, &end);
            if (*end || phase < 0.0 || phase >= 20.0) die("--tick-phase must be 0 <= MS < 20:", v);
        } else die("unknown argument", f);
    }
    if (!receiver || !packets_path || !trace_path || !out_path || !stats_path)
        die("usage: baselines --receiver speex|plain|plain-fec --packets P.bin --trace T.csv "
            "--output OUT.wav --stats S.json [--tick-phase MS]",
            NULL);
    int kind = !strcmp(receiver, "speex") ? 0 : !strcmp(receiver, "plain") ? 1
             : !strcmp(receiver, "plain-fec")                             ? 2
                                                                          : -1;
    if (kind < 0) die("unknown receiver", receiver);

    int n = 0, arrivals = 0;
    g_packets = read_packets(packets_path, &n);
    Arrival *arr = read_trace(trace_path, n, &arrivals);

    Counts c;
    memset(&c, 0, sizeof c);
    Plain plain;
    memset(&plain, 0, sizeof plain);
    Speex *sp = calloc(1, sizeof *sp);
    int err;
    if (kind == 0) {
        sp->packets = n;
        float mul = (float)(M_PI / (2.0 * STEP));
        for (int i = 0; i < STEP; ++i) sp->fade_in[i] = sp->fade_out[STEP - i - 1] = sinf((float)i * mul);
    } else {
        plain.fec = kind == 2;
        plain.packets = n;
        plain.held = calloc((size_t)n, 1);
        plain.dec = opus_decoder_create(RATE, 1, &err);
        if (err != OPUS_OK) die("opus_decoder_create failed", NULL);
    }

    int phase_samples = (int)lround(phase * 48.0);
    double phase_ms = phase_samples / 48.0;
    Pcm out = {0};
    int16_t frame[FRAME];
    memset(frame, 0, sizeof frame);
    for (int i = 0; i < phase_samples; i++) pcm_push(&out, frame, 1);
    double last = arrivals ? arr[arrivals - 1].at : 0.0;
    long max_ticks = (long)ceil(last / 20.0) + 2L * n + 200;
    int next = 0, more = 1;
    long ticks = 0;
    for (long tick = 0; tick < max_ticks; tick++) {
        double now = phase_ms + 20.0 * (double)tick;
        while (next < arrivals && arr[next].at <= now) {
            if (kind == 0) speex_put(sp, arr[next].seq, g_packets);
            else plain_put(&plain, arr[next].seq, &c);
            next++;
        }
        if (kind == 0) speex_frame(sp, frame, &c);
        else more = plain_frame(&plain, g_packets, frame, &c);
        pcm_push(&out, frame, FRAME);
        ticks++;
        int done = kind == 0 ? !sp->exists : !more;
        if (next >= arrivals && done && out.len >= (size_t)n * FRAME + (size_t)phase_samples) break;
    }
    write_wav(out_path, &out);
    FILE *f = fopen(stats_path, "w");
    if (!f) die("cannot write", stats_path);
    fprintf(f,
            "{\n  \"receiver\": \"%s\",\n  \"packets_sent\": %d,\n  \"frames_played\": %ld,\n"
            "  \"frames_fec_recovered\": %ld,\n  \"frames_concealed\": %.1f,\n"
            "  \"concealed_10ms\": %ld,\n  \"packets_late\": %ld,\n  \"packets_duplicate\": %ld,\n"
            "  \"resets\": %ld,\n  \"output_frames\": %ld,\n  \"tick_phase_ms\": %.3f\n}\n",
            receiver, n, c.played, c.fec, c.concealed_10 / 2.0, c.concealed_10, c.late,
            c.duplicate, c.resets, ticks, phase_ms);
    fclose(f);
    return 0;
}
