//! The contract lint over Emporium's real descriptor set (it must pass) and over a deliberately
//! broken fixture (it must name everything the fixture forgets, saying what to add).

use contract::access::{Access, AccessProblem, method_access};
use contract::lint::{Finding, lint, unused_exemptions};
use prost_reflect::DescriptorPool;

#[test]
fn emporiums_contracts_keep_to_every_convention() {
    let pool = emporium_pool();

    let findings = lint(&pool);

    assert!(
        findings.is_empty(),
        "the contract lint failed:\n{}",
        report(&findings)
    );
}

#[test]
fn every_exemption_still_covers_a_real_gap() {
    let pool = emporium_pool();

    let unused = unused_exemptions(&pool);

    assert!(
        unused.is_empty(),
        "these gaps are fixed: remove their exemptions from contract::lint::EXEMPTIONS: {unused:?}"
    );
}

#[test]
fn every_rpc_of_catalog_and_identity_declares_who_may_call_it() {
    let pool = emporium_pool();

    let methods = method_access(&pool);

    for service in [
        "emporium.catalog.v1.CatalogService",
        "emporium.identity.v1.IdentityService",
    ] {
        let n_methods = methods
            .iter()
            .filter(|method| method.service == service)
            .count();
        assert!(
            n_methods > 10,
            "{service} has {n_methods} RPCs in the descriptor set"
        );
    }
    let undeclared: Vec<_> = methods
        .iter()
        .filter(|method| method.access.is_err())
        .collect();
    assert!(undeclared.is_empty(), "{undeclared:#?}");
    let create_product = methods
        .iter()
        .find(|method| method.path == "/emporium.catalog.v1.CatalogService/CreateProduct")
        .expect("CreateProduct is in the descriptor set");
    assert_eq!(
        create_product.access,
        Ok(Access::AnyRoleOf(vec![
            "admin".to_owned(),
            "catalog-manager".to_owned()
        ]))
    );
    let get_product = methods
        .iter()
        .find(|method| method.path == "/emporium.catalog.v1.CatalogService/GetProduct")
        .expect("GetProduct is in the descriptor set");
    assert_eq!(get_product.access, Ok(Access::Visitors));
}

#[test]
fn the_descriptor_set_carries_the_contracts_comments() {
    let pool = emporium_pool();
    let category = pool
        .get_message_by_name("emporium.catalog.v1.Category")
        .expect("Category is in the descriptor set");

    let comments = category
        .parent_file()
        .file_descriptor_proto()
        .source_code_info
        .as_ref()
        .map(|info| {
            info.location
                .iter()
                .filter(|location| location.path == category.path())
                .filter_map(|location| location.leading_comments.clone())
                .collect::<String>()
        })
        .unwrap_or_default();

    assert_eq!(comments.trim(), "A group of products, e.g. `Tea`.");
}

#[test]
fn a_contract_that_forgets_the_conventions_gets_a_finding_for_each_saying_what_to_add() {
    let pool = broken_pool();

    let findings = lint(&pool);

    let found: Vec<(&str, &str)> = findings
        .iter()
        .map(|finding| (finding.rule, finding.location.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![
            ("event-type", "emporium.broken.Widget"),
            ("event-type", "emporium.broken.audit.gadget.read"),
            ("event-type", "emporium.broken.widget.created"),
            ("event-type", "emporium.broken.widget.updated"),
            ("event-type", "emporium.catalog.audit.widget.read"),
            ("field-behavior", "emporium.broken.v1.Widget.label"),
            ("field-comment", "emporium.broken.v1.Widget.label"),
            ("message-comment", "emporium.broken.v1.ListWidgetsRequest"),
            (
                "method-access",
                "emporium.broken.v1.BrokenService.DeleteWidget"
            ),
            (
                "method-access",
                "emporium.broken.v1.BrokenService.ListWidgets"
            ),
            (
                "method-comment",
                "emporium.broken.v1.BrokenService.ListWidgets"
            ),
            ("resource-annotation", "emporium.broken.v1.Gizmo"),
            ("resource-annotation", "emporium.broken.v1.Gizmo"),
            ("resource-annotation", "emporium.broken.v1.Gizmo"),
            ("resource-annotation", "emporium.broken.v1.Gizmo"),
            ("resource-events", "emporium.broken.widget.deleted"),
            ("resource-reference", "emporium.broken.v1.Widget.gadget_id"),
            (
                "resource-standard-fields",
                "emporium.broken.v1.Widget.update_time"
            ),
            (
                "standard-method-fields",
                "emporium.broken.v1.DeleteWidgetRequest.expected_version"
            ),
            (
                "standard-method-fields",
                "emporium.broken.v1.GetWidgetRequest.id"
            ),
            (
                "standard-method-fields",
                "emporium.broken.v1.ListWidgetsRequest.page_token"
            ),
            (
                "standard-methods",
                "emporium.broken.v1.BrokenService.BatchGetWidgets"
            ),
            (
                "standard-methods",
                "emporium.broken.v1.BrokenService.CreateWidget"
            ),
            (
                "standard-methods",
                "emporium.broken.v1.BrokenService.UpdateWidget"
            ),
        ],
        "\n{}",
        report(&findings)
    );
    assert_eq!(
        message_of(
            &findings,
            "resource-events",
            "emporium.broken.widget.deleted"
        ),
        vec![
            "resource Widget declares no `emporium.broken.widget.deleted` event: add `option \
             (emporium.api.v1.events) = {type: \"emporium.broken.widget.deleted\" description: \
             \"…\"};` to the message, its data being the record after the change"
        ]
    );
    assert_eq!(
        message_of(
            &findings,
            "resource-standard-fields",
            "emporium.broken.v1.Widget.update_time"
        ),
        vec![
            "resource Widget has no `google.protobuf.Timestamp update_time`: add \
             `google.protobuf.Timestamp update_time = N [(google.api.field_behavior) = \
             OUTPUT_ONLY];` with a comment"
        ]
    );
    assert_eq!(
        message_of(
            &findings,
            "standard-methods",
            "emporium.broken.v1.BrokenService.CreateWidget"
        ),
        vec![
            "resource Widget has no standard method CreateWidget: add `rpc \
             CreateWidget(CreateWidgetRequest) returns (Widget)` to BrokenService"
        ]
    );
    assert_eq!(
        message_of(
            &findings,
            "standard-method-fields",
            "emporium.broken.v1.GetWidgetRequest.id"
        ),
        vec![
            "GetWidgetRequest has no standard field `id`: add `string id = N \
             [(google.api.field_behavior) = …, (google.api.resource_reference).type = \
             \"broken.emporium.dev/Widget\"];` with a comment"
        ]
    );
    assert_eq!(
        message_of(&findings, "resource-annotation", "emporium.broken.v1.Gizmo"),
        vec![
            "resource Gizmo has no `name_field`: set `name_field: \"id\"` (the field that names \
             it in Get, Update and Delete) in its (google.api.resource)",
            "resource Gizmo has no `pattern`: set `pattern: \"gizmos/{gizmo}\"` in its \
             (google.api.resource)",
            "resource Gizmo has no `plural`: set `plural: \"gizmos\"` (lowerCamelCase) in its \
             (google.api.resource)",
            "resource Gizmo has no `singular`: set `singular: \"gizmo\"` in its \
             (google.api.resource)",
        ]
    );
    let undeclared = message_of(
        &findings,
        "method-access",
        "emporium.broken.v1.BrokenService.ListWidgets",
    );
    assert!(
        undeclared[0].starts_with(
            "rpc ListWidgets declares no access: add `option (emporium.api.v1.access) = {roles: \
             [\"admin\"]};`"
        ),
        "{undeclared:?}"
    );
    let field_behavior = message_of(
        &findings,
        "field-behavior",
        "emporium.broken.v1.Widget.label",
    );
    assert!(
        field_behavior[0].contains("add `[(google.api.field_behavior) = REQUIRED]`"),
        "{field_behavior:?}"
    );
}

#[test]
fn a_method_whose_access_is_broken_is_reported_as_such() {
    let pool = broken_pool();

    let methods = method_access(&pool);

    let access_of = |name: &str| {
        methods
            .iter()
            .find(|method| method.method == name)
            .map(|method| method.access.clone())
    };
    assert_eq!(access_of("GetWidget"), Some(Ok(Access::AnySignedInCaller)));
    assert_eq!(
        access_of("ListWidgets"),
        Some(Err(AccessProblem::Undeclared))
    );
    assert_eq!(
        access_of("DeleteWidget"),
        Some(Err(AccessProblem::SeveralRules))
    );
}

fn emporium_pool() -> DescriptorPool {
    contract::decode_pool(emporium_proto::FILE_DESCRIPTOR_SET).expect("the descriptor set decodes")
}

/// The fixture compiled as `crates/proto` compiles the real contracts.
fn broken_pool() -> DescriptorPool {
    let manifest_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    contract::fixtures::compile(
        &manifest_dir.join("tests/fixtures"),
        &manifest_dir.join("../../proto"),
        "emporium/broken/v1/broken.proto",
    )
    .expect("the fixture compiles")
}

fn message_of<'a>(findings: &'a [Finding], rule: &str, location: &str) -> Vec<&'a str> {
    findings
        .iter()
        .filter(|finding| finding.rule == rule && finding.location == location)
        .map(|finding| finding.message.as_str())
        .collect()
}

fn report(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|finding| format!("  {finding}\n"))
        .collect()
}
