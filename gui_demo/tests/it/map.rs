//! The 3D-channel map: shown with its range when the statistics carry a spatial view, absent in
//! a 2D channel.

use crate::common;

use common::*;
use egui_kittest::kittest::Queryable;
use voice_client::Position;
use voice_core::engine::{ConnectionState, SpatialView};

#[test]
fn the_map_appears_only_in_a_3d_channel() {
    let (mut h, handle) = connected();
    let flat = stats_with(vec![remote(5, "erin")], ConnectionState::Connected, -40.0);
    handle.stats.send(flat.clone()).unwrap();
    h.run();
    assert!(h.query_by_label("Map (3D channel)").is_none());
    let mut spatial = flat;
    spatial.spatial = Some(SpatialView {
        range: 30.0,
        me: Some(Position::new(0.0, 0.0, 0.0)),
        listener_position: Position::new(0.0, 0.0, 0.0),
        listener_forward: [0.0, 0.0, -1.0],
        others: vec![(
            voice_client::SessionToken(5),
            Position::new(10.0, 0.0, -5.0),
        )],
    });
    handle.stats.send(spatial).unwrap();
    h.run();
    h.get_by_label("Map (3D channel)");
    h.get_by_label("range 30 units");
}
