/*
 * A game that uses its own libopus and links the voice library beside it: libvoice.a (from
 * scripts/build-c-lib.sh) exports only voice_*, so Debian's libopus links into the same program
 * without duplicate definitions, and the game's opus_* calls reach Debian's libopus.
 */
#define _POSIX_C_SOURCE 200809L
#include <opus/opus.h>
#include <stdio.h>
#include <string.h>

#include "voice.h"

int main(void) {
    int err = 0;
    OpusEncoder *game = opus_encoder_create(48000, 1, OPUS_APPLICATION_VOIP, &err);
    if (err != OPUS_OK || game == NULL) return 1;
    opus_int16 pcm[VOICE_FRAME_SAMPLES];
    for (int i = 0; i < VOICE_FRAME_SAMPLES; i++) pcm[i] = (opus_int16)((i * 53) % 4000 - 2000);
    unsigned char packet[1500];
    opus_int32 n = opus_encode(game, pcm, VOICE_FRAME_SAMPLES, packet, sizeof packet);
    opus_encoder_destroy(game);
    if (n <= 0) return 1;

    voice_encoder_config ec;
    voice_receiver_config rc;
    voice_encoder *enc = NULL;
    voice_receiver *rx = NULL;
    if (voice_encoder_config_default(&ec) != VOICE_OK || voice_encoder_new(&ec, &enc) != VOICE_OK)
        return 1;
    if (voice_receiver_config_default(&rc) != VOICE_OK || voice_receiver_new(&rc, &rx) != VOICE_OK)
        return 1;
    uint8_t dgram[VOICE_MAX_DATAGRAM];
    size_t len = 0;
    if (voice_encoder_encode(enc, pcm, VOICE_FRAME_SAMPLES, 0, false, dgram, sizeof dgram, &len) !=
        VOICE_OK)
        return 1;
    if (voice_receiver_push(rx, 0, dgram, len) != VOICE_OK) return 1;
    voice_encoder_free(enc);
    voice_receiver_free(rx);
    printf("system %s: %d bytes; voice %s: %zu-byte datagram\n", opus_get_version_string(),
           (int)n, voice_version(), len);
    return 0;
}
