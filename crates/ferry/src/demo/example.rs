//! The example config of `examples/quickstart`, built into the binary so `ferry demo` runs
//! from any directory.

use std::path::Path;

/// (relative path, contents) of every file of the quickstart example.
pub const FILES: &[(&str, &str)] = &[
    (
        "ferry.yaml",
        include_str!("../../../../examples/quickstart/ferry.yaml"),
    ),
    (
        "systems.yaml",
        include_str!("../../../../examples/quickstart/systems.yaml"),
    ),
    (
        "flows/billing-events.yaml",
        include_str!("../../../../examples/quickstart/flows/billing-events.yaml"),
    ),
    (
        "flows/shop-orders.yaml",
        include_str!("../../../../examples/quickstart/flows/shop-orders.yaml"),
    ),
    (
        "schemas/order.created.json",
        include_str!("../../../../examples/quickstart/schemas/order.created.json"),
    ),
    (
        "schemas/warehouse.order.json",
        include_str!("../../../../examples/quickstart/schemas/warehouse.order.json"),
    ),
    (
        "secrets/admin-token",
        include_str!("../../../../examples/quickstart/secrets/admin-token"),
    ),
    (
        "secrets/billing-webhook-secret",
        include_str!("../../../../examples/quickstart/secrets/billing-webhook-secret"),
    ),
    (
        "secrets/crm-signing-secret",
        include_str!("../../../../examples/quickstart/secrets/crm-signing-secret"),
    ),
    (
        "secrets/shop-webhook-secret",
        include_str!("../../../../examples/quickstart/secrets/shop-webhook-secret"),
    ),
    (
        "secrets/warehouse-api-key",
        include_str!("../../../../examples/quickstart/secrets/warehouse-api-key"),
    ),
];

/// Write the example into `dir`.
pub fn write_to(dir: &Path) -> std::io::Result<()> {
    for (rel, contents) in FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, contents)?;
    }
    Ok(())
}

/// Read one secret of the example (trimmed).
pub fn secret(name: &str) -> String {
    FILES
        .iter()
        .find(|(rel, _)| rel.strip_prefix("secrets/") == Some(name))
        .map(|(_, c)| c.trim().to_string())
        .unwrap_or_default()
}
