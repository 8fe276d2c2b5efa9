//! `docs/PROTOCOL.md` lists every relay counter, in the order of the `Stats` reply: the table there
//! and [`relay::Counter::ALL`] must name the same counters in the same order.

use relay::Counter;

#[test]
fn the_counter_table_of_the_protocol_document_matches_the_relay() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md");
    let section = doc
        .split("\n## Relay counters\n")
        .nth(1)
        .expect("a `## Relay counters` section");
    let section = section.split("\n## ").next().unwrap();
    let documented: Vec<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(name, _)| name))
        .collect();
    let code: Vec<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
    assert_eq!(documented, code);
}

#[test]
fn the_operator_guide_names_every_counter() {
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/OPERATORS.md"))
        .expect("relay/OPERATORS.md");
    for c in Counter::ALL {
        assert!(
            guide.contains(&format!("`{}`", c.name())),
            "OPERATORS.md does not mention `{}`",
            c.name()
        );
    }
}
