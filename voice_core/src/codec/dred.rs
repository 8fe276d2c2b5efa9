//! Deep REDundancy (DRED) on the receive side: parsing the DRED a packet carries and how far back
//! it reaches. The audio itself is decoded by [`super::Decoder::decode_dred`].

use std::ptr::NonNull;

use opusic_sys as sys;

use super::{check_code, CodecError, OpusError};
use crate::{FRAME_SAMPLES, SAMPLE_RATE};

/// How far back the DRED of the last parsed packet reaches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DredSpan {
    /// Samples (48 kHz) before the packet's first sample where the DRED's oldest audio starts;
    /// 0 when the packet carried no DRED.
    pub reach: usize,
    /// Samples just before the packet that the DRED does not describe (its newest data ends this
    /// far before the packet; usually 0).
    pub gap: usize,
}

impl DredSpan {
    /// The packet carried no usable DRED.
    pub fn is_empty(&self) -> bool {
        self.reach == 0
    }

    /// Whole 20 ms frames before the packet that the DRED reaches.
    pub fn frames(&self) -> usize {
        self.reach / FRAME_SAMPLES
    }

    /// Whether frame `frames_back` before the packet (1 = the one just before) can be recovered.
    pub fn covers(&self, frames_back: usize) -> bool {
        frames_back >= 1 && frames_back <= self.frames()
    }
}

/// The DRED decoder of one stream: the neural DRED decoder and the state of the last parsed
/// packet. Create one per stream (it allocates ~13 KiB once; the model weights are static);
/// [`DredRecovery::parse`] does not allocate.
pub struct DredRecovery {
    /// Owned libopus DRED decoder (`opus_dred_decoder_create`, destroyed in `Drop`).
    dec: NonNull<sys::OpusDREDDecoder>,
    /// Owned DRED state (`opus_dred_alloc`, freed in `Drop`); meaningful only while `span` is not
    /// empty.
    dred: NonNull<sys::OpusDRED>,
    span: DredSpan,
}

// SAFETY: both states are plain memory owned exclusively by this value (no thread-local or shared
// state in libopus); mutation goes through `&mut self`, and `decode_dred` only reads the state.
unsafe impl Send for DredRecovery {}

impl std::fmt::Debug for DredRecovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DredRecovery")
            .field("span", &self.span)
            .finish_non_exhaustive()
    }
}

impl Drop for DredRecovery {
    fn drop(&mut self) {
        // SAFETY: both pointers came from their libopus constructors and are released exactly
        // once, here, by the matching destructor.
        unsafe {
            sys::opus_dred_free(self.dred.as_ptr());
            sys::opus_dred_decoder_destroy(self.dec.as_ptr());
        }
    }
}

impl DredRecovery {
    /// A DRED decoder with libopus's built-in model.
    pub fn new() -> Result<Self, CodecError> {
        let mut err = 0;
        // SAFETY: plain constructor; `err` is a valid out-pointer for the duration of the call.
        let dec = unsafe { sys::opus_dred_decoder_create(&mut err) };
        check_code(err)?;
        let dec = NonNull::new(dec).ok_or(OpusError(sys::OPUS_ALLOC_FAIL))?;
        // SAFETY: as above.
        let dred = unsafe { sys::opus_dred_alloc(&mut err) };
        let dred = match (check_code(err), NonNull::new(dred)) {
            (Ok(_), Some(d)) => d,
            (r, _) => {
                // SAFETY: `dec` came from `opus_dred_decoder_create` and is not used again.
                unsafe { sys::opus_dred_decoder_destroy(dec.as_ptr()) };
                return Err(r.err().unwrap_or(OpusError(sys::OPUS_ALLOC_FAIL)).into());
            }
        };
        Ok(DredRecovery {
            dec,
            dred,
            span: DredSpan::default(),
        })
    }

    /// Parses and decodes the DRED in `packet`, as much as is needed to recover `frames_wanted`
    /// frames before it (the neural decoding cost grows with that; at most 50 frames = 1 s are
    /// decoded). Returns how far back it reaches (possibly further than asked); an empty span when the packet has no DRED.
    /// A malformed packet is an error and leaves the span empty.
    pub fn parse(&mut self, packet: &[u8], frames_wanted: usize) -> Result<DredSpan, CodecError> {
        self.span = DredSpan::default();
        if packet.is_empty() {
            return Err(OpusError(sys::OPUS_INVALID_PACKET).into());
        }
        let len = i32::try_from(packet.len()).map_err(|_| OpusError(sys::OPUS_INVALID_PACKET))?;
        // One frame more than wanted: libopus decodes DRED in 40 ms latents counted from an
        // offset, and asked for exactly k frames it can stop one latent short of the k-th
        // (measured: asked for 5 frames, it reached 95 ms).
        let max_samples = frames_wanted
            .saturating_add(1)
            .saturating_mul(FRAME_SAMPLES)
            .min(SAMPLE_RATE as usize) as i32;
        let mut end = 0;
        // SAFETY: `dec` and `dred` are live states owned by `self` (exclusive through `&mut`);
        // `packet` is a live slice of `len` bytes that libopus only reads; `end` is a valid
        // out-pointer; defer_processing = 0 so the state is fully decoded on return.
        let r = unsafe {
            sys::opus_dred_parse(
                self.dec.as_ptr(),
                self.dred.as_ptr(),
                packet.as_ptr(),
                len,
                max_samples,
                SAMPLE_RATE as i32,
                &mut end,
                0,
            )
        };
        let reach = check_code(r)?;
        self.span = DredSpan {
            reach,
            gap: usize::try_from(end).unwrap_or(0),
        };
        Ok(self.span)
    }

    /// The span of the last successful [`DredRecovery::parse`] (empty before any, or after a
    /// failed one or [`DredRecovery::clear`]).
    pub fn span(&self) -> DredSpan {
        self.span
    }

    /// Forgets the parsed DRED (e.g. when the stream resets).
    pub fn clear(&mut self) {
        self.span = DredSpan::default();
    }

    /// The parsed DRED state, for `opus_decoder_dred_decode`.
    pub(super) fn state_ptr(&self) -> *const sys::OpusDRED {
        self.dred.as_ptr()
    }
}
