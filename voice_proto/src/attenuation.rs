//! Distance attenuation for positional audio: the model a channel announces on the wire
//! (`ChannelSpatial`), the gain a client renders, and the range beyond which the relay does not
//! forward a voice.
//!
//! The clamped models of OpenAL 1.1 (§3.4), which Vivox also uses, with `min_distance` as OpenAL's
//! reference distance (the distance clamped to `[min_distance, max_distance]`):
//!
//! | model | gain |
//! |---|---|
//! | none | 1 |
//! | inverse | min / (min + rolloff · (d − min)) |
//! | linear | 1 − rolloff · (d − min) / (max − min) |
//! | exponential | (d / min)^(−rolloff) |
//!
//! Beyond `max_distance` a voice is inaudible (gain 0): that is the range the relay culls by, so
//! what the relay does not forward is exactly what would not be heard.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// How gain falls off with distance (OpenAL's clamped models).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum DistanceModel {
    /// No attenuation (but still inaudible beyond the maximum distance).
    None,
    /// Inverse distance, clamped.
    #[default]
    Inverse,
    /// Linear, clamped.
    Linear,
    /// Exponential, clamped.
    Exponential,
}

impl DistanceModel {
    /// Lower-case name (`none`, `inverse`, `linear`, `exponential`).
    pub fn name(self) -> &'static str {
        match self {
            DistanceModel::None => "none",
            DistanceModel::Inverse => "inverse",
            DistanceModel::Linear => "linear",
            DistanceModel::Exponential => "exponential",
        }
    }

    /// Parses [`DistanceModel::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "none" => DistanceModel::None,
            "inverse" => DistanceModel::Inverse,
            "linear" => DistanceModel::Linear,
            "exponential" => DistanceModel::Exponential,
            _ => return None,
        })
    }
}

/// Why attenuation settings were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error, Serialize)]
pub enum SpatialError {
    /// A distance or rolloff is negative, NaN or infinite, or min ≥ max, or min is 0.
    #[error("need 0 < min_distance < max_distance (finite) and a finite rolloff >= 0")]
    BadAttenuation,
    /// The forward and up vectors are zero, not finite, or parallel (or the position is not
    /// finite).
    #[error("forward and up must be finite, non-zero and not parallel; position finite")]
    BadOrientation,
    /// A position with a NaN or infinite coordinate.
    #[error("position must be finite")]
    BadPosition,
}

/// A channel's distance attenuation: model, distances in game units, rolloff factor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Attenuation {
    /// The model.
    pub model: DistanceModel,
    /// Below this distance the gain is 1 (OpenAL's reference distance).
    pub min_distance: f32,
    /// Beyond this distance the voice is inaudible and the relay does not forward it.
    pub max_distance: f32,
    /// Rolloff factor (1 = the model's natural slope).
    pub rolloff: f32,
}

impl Default for Attenuation {
    /// Inverse distance from 1 to 50 units, rolloff 1.
    fn default() -> Self {
        Attenuation {
            model: DistanceModel::Inverse,
            min_distance: 1.0,
            max_distance: 50.0,
            rolloff: 1.0,
        }
    }
}

impl Attenuation {
    /// Checks the ranges (see [`SpatialError::BadAttenuation`]).
    pub fn validate(&self) -> Result<(), SpatialError> {
        let ok = self.min_distance.is_finite()
            && self.max_distance.is_finite()
            && self.rolloff.is_finite()
            && self.min_distance > 0.0
            && self.min_distance < self.max_distance
            && self.rolloff >= 0.0;
        if ok {
            Ok(())
        } else {
            Err(SpatialError::BadAttenuation)
        }
    }

    /// Whether a voice at `distance` can be heard at all (`distance <= max_distance`).
    pub fn audible(&self, distance: f32) -> bool {
        distance <= self.max_distance
    }

    /// Linear gain at `distance`: the clamped model, 0 beyond `max_distance`.
    pub fn gain(&self, distance: f32) -> f32 {
        if !self.audible(distance) {
            return 0.0;
        }
        let (min, max, r) = (self.min_distance, self.max_distance, self.rolloff);
        let d = distance.clamp(min, max);
        let g = match self.model {
            DistanceModel::None => 1.0,
            DistanceModel::Inverse => min / (min + r * (d - min)),
            DistanceModel::Linear => 1.0 - r * (d - min) / (max - min),
            DistanceModel::Exponential => (d / min).powf(-r),
        };
        g.clamp(0.0, 1.0)
    }
}
