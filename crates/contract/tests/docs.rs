//! `docs/events.md`'s reference part is generated from the contract. This test writes it and
//! fails when it was out of date (as rust-analyzer's generated-docs tests do): run
//! `cargo test -p contract --test docs` after changing a `.proto` file and commit the page.

use std::path::Path;

use contract::docs::{BEGIN_MARKER, END_MARKER, events_reference, splice};

#[test]
fn the_events_reference_is_generated_from_the_contract() {
    let pool = contract::decode_pool(emporium_proto::FILE_DESCRIPTOR_SET)
        .expect("the compiled-in descriptor set decodes");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/events.md");
    let docs = std::fs::read_to_string(&path).expect("docs/events.md exists");

    let generated = events_reference(&pool);
    let expected = splice(&docs, &generated).unwrap_or_else(|| {
        panic!("docs/events.md lacks the markers `{BEGIN_MARKER}` and `{END_MARKER}`")
    });

    if docs != expected {
        std::fs::write(&path, &expected).expect("docs/events.md is writable");
        panic!(
            "docs/events.md was out of date with the contract and has been regenerated: review \
             and commit it"
        );
    }
    for event_type in [
        "emporium.catalog.product.created",
        "emporium.identity.account.password_changed",
        "emporium.identity.audit.account.accessed",
    ] {
        assert!(generated.contains(event_type), "{event_type} is missing");
    }
}
